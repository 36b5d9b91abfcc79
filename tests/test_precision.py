"""The precision policy (`orb_source/precision.py`) on the values Orb really sends: the run never
fails, values that fit read back exactly, the rest are rounded half-even to 18 places or kept as
text, with one warning per column, and the Arrow path loads what the dict path loads."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import dlt
import pytest

from orb_source.precision import SCALE, Fitting, fit_rows, to_scale
from orb_source.runner import make_pipeline, run_pipeline
from orb_source.sandbox import Account
from orb_source.sandbox.account import Number
from tests.conftest import default_account, isolate, serving
from tests.warehouse import query

# The module's tests share a loaded fixture, built once on each worker that runs one of them
# (xdist's `worksteal` keeps a module's tests together). It is session-scoped: a module-scoped
# one is built again whenever another module's test runs between two of them on that worker.

DOUBLES = [
    "542.6099999999999",
    "0.30000000000000004",
    "33.333333333333336",
    "-1.5e-10",
    "1.2345678901234568e-05",
    "-9.87654321987654e+19",
    "5e-324",
    "1e+25",
]
"""JSON doubles as Orb encodes them (shortest round-trip text): exact, 23 places (rounded),
5e-324 (rounded to 0), and one beyond 20 integer digits (kept as text)."""

DECIMAL_STRINGS = [
    "0.0000000375",
    "0.01999999999999999872",
    "-99999999999999999999.999999999999999999",
    "123456789012345678901.5",
    "0.000000000000000000005",
    "7",
]
"""Money as decimal strings: 10 places, 20 places (rounded), the largest that fits, one too
large (kept as text), one that rounds to zero."""


def under_policy(text: str) -> tuple[Decimal | None, str | None]:
    """What the column and its `__v_text` column hold for a value Orb sent as `text`."""
    number = Decimal(text)
    if number.adjusted() >= 38 - SCALE:
        return None, text if "e" not in text else format(number, "f")
    return to_scale(number), None


def inject(account: Account) -> dict[str, list[tuple[str, str]]]:
    """Put the extreme values into ledger amounts (doubles, Arrow path), line item quantities
    (doubles, Arrow path), customer balances and add-on prices' unit amounts (strings)."""
    placed: dict[str, list[tuple[str, str]]] = {"ledger": [], "line": [], "cust": [], "price": []}
    entries = [e for objs in account.owned["credit_ledger_entries"].values() for e in objs.values()]
    for entry, text in zip(entries, DOUBLES, strict=False):
        entry["amount"] = Number(text)
        placed["ledger"].append((entry["id"], text))
    lines = [line for inv in account.invoices.values() for line in inv["line_items"]]
    for line, text in zip(lines, DOUBLES, strict=False):
        line["quantity"] = Number(text)
        placed["line"].append((line["id"], text))
    for customer, text in zip(account.customers.values(), DECIMAL_STRINGS, strict=False):
        customer["balance"] = Decimal(text)
        placed["cust"].append((customer["id"], text))
    unit_prices = [p for p in account.prices.values() if p.get("model_type") == "unit"]
    for price, text in zip(unit_prices, DECIMAL_STRINGS, strict=False):
        price["unit_config"]["unit_amount"] = Decimal(text)
        placed["price"].append((price["id"], text))
    account.touch()
    return placed


TARGETS = {
    "ledger": ("credit_ledger_entries", "amount"),
    "line": ("invoice_line_items", "quantity"),
    "cust": ("customers", "balance"),
    "price": ("prices", "unit_config__unit_amount"),
}


def stored(pipeline: dlt.Pipeline, table: str, column: str, ids: list[str]) -> dict[str, Any]:
    columns = {c for (c,) in query(pipeline, _columns_sql(pipeline, table))}
    text = f"{column}__v_text" if f"{column}__v_text" in columns else "NULL"
    rows = query(pipeline, f"SELECT id, {column}, {text} FROM {{{table}}}")
    return {row_id: (value, as_text) for row_id, value, as_text in rows if row_id in ids}


def _columns_sql(pipeline: dlt.Pipeline, table: str) -> str:
    return (
        "SELECT column_name FROM information_schema.columns"
        f" WHERE table_schema = '{pipeline.dataset_name}' AND table_name = '{table}'"
    )


Loaded = tuple[dict[str, list[tuple[str, str]]], dict[bool, dlt.Pipeline], list[str]]


@pytest.fixture(scope="session")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    """The account with Orb's extreme values placed, loaded by each path: once for the tests
    that only read it."""
    folder = tmp_path_factory.mktemp("precision")
    account = default_account()
    placed = inject(account)
    warnings: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("orb_source").addHandler(handler)
    pipelines = {}
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            isolate(folder, monkeypatch)
            with serving(account, monkeypatch):
                for arrow in (True, False):
                    pipelines[arrow] = make_pipeline(
                        dataset_name=f"orb_{'arrow' if arrow else 'dicts'}",
                        pipelines_dir=str(folder / str(arrow)),
                    )
                    run_pipeline(
                        pipeline=pipelines[arrow],
                        arrow=arrow,
                        resources=["credit_ledger_entries", "invoices", "customers", "prices"],
                    )
    finally:
        logging.getLogger("orb_source").removeHandler(handler)
    return placed, pipelines, warnings


def test_extreme_values_load_under_the_policy_on_both_paths(
    loaded: Loaded,
) -> None:
    placed, pipelines, _ = loaded
    for key, (table, column) in TARGETS.items():
        assert len(placed[key]) >= 3, key
        ids = [row_id for row_id, _ in placed[key]]
        arrow = stored(pipelines[True], table, column, ids)
        dicts = stored(pipelines[False], table, column, ids)
        assert arrow == dicts, table
        for row_id, text in placed[key]:
            assert arrow[row_id] == under_policy(text), (table, column, text, arrow[row_id])


def test_the_values_orb_sends_read_back_exactly(
    loaded: Loaded,
) -> None:
    placed, pipelines, _ = loaded
    for pipeline in pipelines.values():
        for key, (table, column) in TARGETS.items():
            values = {text: stored(pipeline, table, column, [i])[i][0] for i, text in placed[key]}
            exact = ("542.6099999999999", "0.30000000000000004", "0.0000000375")
            for text in set(exact) & set(values):
                assert values[text] == Decimal(text), (table, text)
        types = dict(
            query(
                pipeline,
                "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
                f" WHERE table_schema = '{pipeline.dataset_name}'"
                " AND column_name IN ('amount', 'quantity', 'balance', 'unit_config__unit_amount')",
            )
        )
        assert types["credit_ledger_entries.amount"] == "DECIMAL(38,18)"
        assert types["prices.unit_config__unit_amount"] == "DECIMAL(38,18)"


def test_one_warning_per_column_names_count_and_largest_difference(
    loaded: Loaded,
) -> None:
    _, _, warnings = loaded
    rounded = [w for w in warnings if "rounded half-even" in w]
    assert sum("credit_ledger_entries.amount: 2 value(s)" in w for w in rounded) == 2, (
        rounded
    )  # 1.2345678901234568e-05 and 5e-324, once per path
    assert any(
        w.startswith("customers.balance: 2 value(s)")
        and w.endswith("(largest difference 0.00000000000000000028)")
        for w in rounded
    ), rounded
    kept = [w for w in warnings if "kept as text" in w]
    assert sum(w.startswith("invoice_line_items.quantity: 1 value(s)") for w in kept) == 2, kept


def test_fit_rows_rounds_in_place_and_counts() -> None:
    rows: list[dict[str, Any]] = [
        {"id": "a", "amount": Decimal("1.0000000000000000005"), "credit_block": {}},
        {"id": "b", "amount": Decimal("2.5"), "credit_block": {"per_unit_cost_basis": "1e-20"}},
    ]
    fitting = Fitting()
    fit_rows("credit_ledger_entries", rows, fitting)
    assert rows[0]["amount"] == "1.000000000000000000"
    assert rows[1]["amount"] == "2.5"
    assert rows[1]["credit_block"]["per_unit_cost_basis"] == "0.000000000000000000"
    assert fitting.columns["credit_ledger_entries.amount"].rounded == 1
    assert fitting.columns["credit_ledger_entries.amount"].largest_difference == Decimal("5e-19")
    basis = fitting.columns["credit_ledger_entries.credit_block__per_unit_cost_basis"]
    assert basis.rounded == 1


def test_strings_and_integers_at_the_edges_of_the_column() -> None:
    """Short decimal strings, integers below 10**20 and doubles of few digits pass unchanged
    (numbers as their text); one place or digit more and the policy rounds or keeps the value
    as text."""
    values = {
        "fits": "99999999999999999.5",
        "places": "0.1234567890123456785",
        "exponent": "1e3",
        "digits": "123456789012345678901",
        "widest": 10**20 - 1,
        "too_wide": -(10**20),
        "double": Decimal("542.6099999999999"),
        "long_double": Decimal("-0.1234567890123456785"),
        "huge_double": Decimal("1E+25"),
    }
    rows: list[dict[str, Any]] = [
        {"id": name, "amount": value, "starting_balance": None, "ending_balance": True}
        for name, value in values.items()
    ]
    fitting = Fitting()
    fit_rows("credit_ledger_entries", rows, fitting)
    amounts = {row["id"]: (row["amount"], row.get("amount__v_text")) for row in rows}
    assert amounts == {
        "fits": ("99999999999999999.5", None),
        "places": ("0.123456789012345678", None),
        "exponent": ("1000.000000000000000000", None),
        "digits": (None, "123456789012345678901"),
        "widest": ("99999999999999999999", None),
        "too_wide": (None, "-100000000000000000000"),
        "double": ("542.6099999999999", None),
        "long_double": ("-0.123456789012345678", None),
        "huge_double": (None, "10000000000000000000000000"),
    }
    assert [row["ending_balance"] for row in rows] == [True] * len(rows)
    fitted = fitting.columns["credit_ledger_entries.amount"]
    assert (fitted.rounded, fitted.kept_as_text) == (2, 3)
    assert fitted.largest_difference == Decimal("5e-19")
