"""Property-based: random ledger entries, valid for Orb's models but extreme, go through the
source into DuckDB on both paths.

Entries of every type and of a type Orb may add later, with an unknown status, doubles from
the whole range (subnormal, 1e300, full-precision noise), decimal strings with up to 25 places
and 31 digits, nulls in every nullable field and fields the schema does not know. Properties:
the run succeeds; every amount reads back equal under the precision policy (rounded half-even
to the column's scale, or kept as text when too large); the Arrow path and the dict path load
the same table."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import dlt
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from orb_source.precision import INFERRED_SCALE, PRECISION, SCALE, to_scale
from orb_source.runner import make_pipeline, run_pipeline
from orb_source.sandbox import Account, SandboxServer, generate_account
from orb_source.sandbox.account import Number
from tests.warehouse import query

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
KINDS = [
    "increment",
    "decrement",
    "expiration_change",
    "credit_block_expiry",
    "void",
    "void_initiated",
    "amendment",
    "a_kind_orb_adds_later",
]
MONEY = ("amount", "starting_balance", "ending_balance", "void_amount")

doubles = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([542.6099999999999, 0.30000000000000004, 33.333333333333336, 5e-324, -1e300]),
).map(lambda value: Number(repr(value)))
"""JSON doubles as Orb sends them: the shortest text that round-trips the double."""

decimal_strings = st.builds(
    lambda digits, places: Decimal(digits).scaleb(-places),
    st.integers(-(10**31), 10**31),
    st.integers(0, 25),
)
"""Money as decimal strings: up to 31 digits, up to 25 places."""

extra_values = st.sampled_from(
    [
        st.text(max_size=12),
        st.integers(-(2**62), 2**62),
        doubles,
        st.dictionaries(st.sampled_from(["a", "b"]), st.text(max_size=5), max_size=2),
    ]
)
"""A field Orb adds later: one type (or null) in every entry, as a model field has."""


@st.composite
def ledger_entries(draw: st.DrawFn) -> list[dict[str, Any]]:
    entries = []
    new_field = st.none() | draw(extra_values)
    for index in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(KINDS))
        entry: dict[str, Any] = {
            "id": f"entry_{index}",
            "created_at": NOW - timedelta(hours=index + 1),
            "entry_type": kind,
            "entry_status": draw(st.sampled_from(["committed", "pending", "settling"])),
            "ledger_sequence_number": index,
            "amount": draw(doubles),
            "starting_balance": draw(doubles),
            "ending_balance": draw(doubles),
            "currency": "USD",
            "credit_block": {
                "id": "block_1",
                "expiry_date": draw(st.none() | st.just(NOW + timedelta(days=30))),
                "filters": [],
                "per_unit_cost_basis": draw(st.none() | decimal_strings),
            },
            "description": draw(st.none() | st.text(max_size=20)),
            "metadata": draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5))),
        }
        if kind in ("void", "void_initiated"):
            entry["void_amount"] = draw(st.none() | doubles)
            entry["void_reason"] = draw(st.none() | st.text(max_size=10))
        if draw(st.booleans()):
            entry["a_field_orb_adds_later"] = draw(new_field)
        entries.append(entry)
    return entries


def expected(value: Any, scale: int = SCALE) -> tuple[Decimal | None, str | None]:
    """(column, `__v_text` column) under the precision policy."""
    if value is None:
        return None, None
    number = Decimal(str(value))
    if number.adjusted() >= PRECISION - scale:
        return None, str(value) if isinstance(value, str) else format(number, "f")
    return to_scale(number, scale), None


@contextmanager
def served(account: Account) -> Iterator[None]:
    with SandboxServer(account) as server:
        saved = {name: os.environ.get(name) for name in ("ORB_API_KEY", "ORB_BASE_URL")}
        os.environ.update(ORB_API_KEY=server.api_key, ORB_BASE_URL=server.base_url)
        try:
            yield
        finally:
            for name, value in saved.items():
                os.environ.pop(name, None) if value is None else os.environ.update({name: value})


def loaded(pipeline: dlt.Pipeline, column: str) -> dict[str, tuple[Any, Any]]:
    columns = {
        name
        for (name,) in query(
            pipeline,
            "SELECT column_name FROM information_schema.columns"
            f" WHERE table_schema = '{pipeline.dataset_name}'"
            " AND table_name = 'credit_ledger_entries'",
        )
    }
    value = column if column in columns else "NULL"
    text = f"{column}__v_text" if f"{column}__v_text" in columns else "NULL"
    rows = query(pipeline, f"SELECT id, {value}, {text} FROM {{credit_ledger_entries}}")
    return {row_id: (value, as_text) for row_id, value, as_text in rows}


def by_id(pipeline: dlt.Pipeline) -> dict[str, dict[str, Any]]:
    """The ledger rows by id, without dlt's bookkeeping and the run's own times."""
    with pipeline.sql_client() as sql:
        table = sql.make_qualified_table_name("credit_ledger_entries")
        with sql.execute_query(f"SELECT * FROM {table}") as cursor:
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    skip = {"synced_at", "deleted_at"}
    return {
        row["id"]: {k: v for k, v in row.items() if k not in skip and not k.startswith("_dlt")}
        for row in rows
    }


ACCOUNT = generate_account(customers=1, seed=3, now=NOW, months=2)
CUSTOMER = next(iter(ACCOUNT.customers))


@settings(
    max_examples=10,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(entries=ledger_entries())
def test_random_ledger_entries_load_exactly_under_the_policy_on_both_paths(
    entries: list[dict[str, Any]],
) -> None:
    with ACCOUNT.lock:
        ACCOUNT.owned["credit_ledger_entries"][CUSTOMER] = {e["id"]: e for e in entries}
        ACCOUNT.touch()
    with tempfile.TemporaryDirectory() as folder, served(ACCOUNT):
        os.chdir(folder)
        pipelines = {
            arrow: make_pipeline(dataset_name=f"p{int(arrow)}", pipelines_dir=f"{folder}/{arrow}")
            for arrow in (True, False)
        }
        for arrow, pipeline in pipelines.items():
            run_pipeline(pipeline=pipeline, arrow=arrow, resources=["credit_ledger_entries"])
        arrow_rows, dict_rows = (by_id(pipelines[arrow]) for arrow in (True, False))
        assert arrow_rows.keys() == dict_rows.keys()
        for row_id, row in arrow_rows.items():
            differing = {
                c: (row.get(c), dict_rows[row_id].get(c))
                for c in row.keys() | dict_rows[row_id].keys()
                if row.get(c) != dict_rows[row_id].get(c)
            }
            assert not differing, f"{row_id} (Arrow path, dict path): {differing}"
        for pipeline in pipelines.values():
            for column in MONEY:
                stored = loaded(pipeline, column)
                for entry in entries:
                    if entry.get(column) is not None:
                        assert stored[entry["id"]] == expected(entry[column]), column
            basis = loaded(pipeline, "credit_block__per_unit_cost_basis")
            extra = loaded(pipeline, "a_field_orb_adds_later")
            for entry in entries:
                cost = entry["credit_block"]["per_unit_cost_basis"]
                if cost is not None:
                    assert basis[entry["id"]] == expected(format(cost, "f")), cost
                value = entry.get("a_field_orb_adds_later")
                if isinstance(value, Number):
                    assert extra[entry["id"]] == expected(value, INFERRED_SCALE), value
