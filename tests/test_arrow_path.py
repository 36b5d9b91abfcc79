"""The Arrow path loads exactly what dlt's dict normalizer loads: tables, columns, types, rows."""

from __future__ import annotations

import copy
import logging
import random
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import dlt
import pyarrow as pa
import pytest

from orb_source.arrow import (
    Held,
    _Columnar,
    _encode_json,
    _Flattener,
    _Misfit,
    _shared_fields,
    _struct_array,
    _to_arrow,
    arrow_items,
)
from orb_source.catalog import ALL_INVOICE_STATUSES, ARROW_TABLES
from orb_source.client import OrbClient
from orb_source.hints import arrow_columns
from orb_source.precision import Fitting, fit_rows
from orb_source.runner import make_pipeline, run_pipeline
from orb_source.sandbox import Account, SandboxServer, simulate_day
from orb_source.transform import split_children, to_rows, without_field
from tests.conftest import default_account, isolate, serving
from tests.warehouse import assert_mirror, query, reading

# The module's tests share a loaded fixture, built once on each worker that runs one of them
# (xdist's `worksteal` keeps a module's tests together). It is session-scoped: a module-scoped
# one is built again whenever another module's test runs between two of them on that worker.


def column_types(pipeline: dlt.Pipeline) -> dict[tuple[str, str], str]:
    rows = query(
        pipeline,
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        f" WHERE table_schema = '{pipeline.dataset_name}' AND column_name NOT LIKE '_dlt%'",
    )
    return {(table, column): data_type for table, column, data_type in rows}


def arrow_family(pipeline: dlt.Pipeline) -> list[str]:
    return sorted(
        {table for table, _ in column_types(pipeline) if table.split("__")[0] in ARROW_TABLES}
    )


def contents(pipeline: dlt.Pipeline, table: str) -> Counter[tuple[Any, ...]]:
    """Rows without dlt's bookkeeping; child rows keyed by their root object's Orb id.

    `synced_at` and the time in `deleted_at` are each pipeline's own run times."""
    root = table.split("__")[0]
    columns = sorted(c for t, c in column_types(pipeline) if t == table and c != "synced_at")
    select = ", ".join("c.deleted_at IS NULL" if c == "deleted_at" else f"c.{c}" for c in columns)
    if root == table:
        sql = f"SELECT {select} FROM {{{table}}} c"
    else:
        sql = (
            f"SELECT r.id, c._dlt_list_idx, {select} FROM {{{table}}} c"
            f" JOIN {{{root}}} r ON c._dlt_root_id = r._dlt_id"
        )
    return Counter(tuple(map(str, row)) for row in query(pipeline, sql))


BothPaths = tuple[dlt.Pipeline, dlt.Pipeline, Account]


@pytest.fixture(scope="session")
def both_paths(tmp_path_factory: pytest.TempPathFactory) -> BothPaths:
    """The account loaded by each path, then a day of changes: loaded once for the tests that
    only read it."""
    folder = tmp_path_factory.mktemp("both_paths")
    account = default_account()
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate(folder, monkeypatch)
        with serving(account, monkeypatch):
            arrow = make_pipeline(dataset_name="orb_arrow", pipelines_dir=str(folder / "arrow"))
            dicts = make_pipeline(dataset_name="orb_dicts", pipelines_dir=str(folder / "dicts"))
            rng = random.Random(3)
            for day in range(2):
                if day:
                    with account.lock:
                        simulate_day(account, rng)
                run_pipeline(pipeline=arrow, arrow=True)
                run_pipeline(pipeline=dicts, arrow=False)
    return arrow, dicts, account


def test_same_tables_columns_and_types(both_paths: BothPaths) -> None:
    arrow, dicts, _ = both_paths
    assert arrow_family(arrow) == arrow_family(dicts)
    assert len(arrow_family(arrow)) >= 7
    assert column_types(arrow) == column_types(dicts)


def test_same_rows_after_a_day_of_changes(both_paths: BothPaths) -> None:
    arrow, dicts, account = both_paths
    with reading(arrow), reading(dicts):
        for table in arrow_family(arrow):
            assert contents(arrow, table) == contents(dicts, table), table
    assert_mirror(arrow, account)


def sandbox_rows(server: SandboxServer, table: str) -> list[dict[str, Any]]:
    """One table's rows shaped as the source shapes them, read over HTTP from the sandbox."""
    rows = _read(server, table)
    fit_rows(table, rows, Fitting())
    return rows


def _read(server: SandboxServer, table: str) -> list[dict[str, Any]]:
    synced_at = datetime.now(UTC)
    with OrbClient(server.api_key, server.base_url) as client:
        if table == "credit_ledger_entries":
            customers = [c["id"] for page in client.paginate("/customers") for c in page]
            return [
                row
                for customer in customers
                for page in client.paginate(f"/customers/{customer}/credits/ledger")
                for row in to_rows(page, {"customer": "customer_id"}, synced_at, customer)
            ]
        invoices = [
            row
            for page in client.paginate("/invoices", {"status[]": ALL_INVOICE_STATUSES})
            for row in to_rows(page, {"customer": "customer_id"}, synced_at)
        ]
    if table == "invoices":
        return without_field(invoices, "line_items")
    return split_children(invoices, "line_items", "invoice_id", synced_at)


def by_row_and_by_column(root: str, rows: list[dict[str, Any]]) -> tuple[Any, Any]:
    """The tables built by the columnar path and by the row-by-row flattener, same input."""
    _encode_json(root, rows)
    columnar = _Columnar(root).tables(copy.deepcopy(rows))
    flat = _Flattener(root).flatten(copy.deepcopy(rows))
    by_row = {
        name: _to_arrow(part, arrow_columns(root, name)) for name, part in flat.items() if part
    }
    return columnar, by_row


def sorted_columns(table: pa.Table) -> pa.Table:
    return table.select(sorted(table.column_names))


@pytest.mark.parametrize(
    ("root", "tables"), [("invoices", 8), ("invoice_line_items", 46), ("credit_ledger_entries", 1)]
)
def test_columnar_path_builds_what_the_flattener_builds(
    sandbox: SandboxServer, root: str, tables: int
) -> None:
    rows = sandbox_rows(sandbox, root)
    columnar, by_row = by_row_and_by_column(root, rows)
    assert sorted(columnar) == sorted(by_row)
    assert len(columnar) == tables
    assert columnar[root].num_rows == len(rows)
    for name, table in by_row.items():
        assert sorted_columns(columnar[name]).equals(sorted_columns(table)), name


def test_a_new_nested_field_is_flattened_and_typed_like_dlt(sandbox: SandboxServer) -> None:
    rows = sandbox_rows(sandbox, "invoice_line_items")
    rows[3]["usage_detail"] = {"meter": "api_calls", "rate": Decimal("0.0025"), "units": 7}
    columnar, by_row = by_row_and_by_column("invoice_line_items", rows)
    line_items = columnar["invoice_line_items"]
    assert line_items.schema.field("usage_detail__rate").type == pa.decimal128(38, 9)
    assert line_items.schema.field("usage_detail__units").type == pa.int64()
    assert line_items["usage_detail__rate"][3].as_py() == Decimal("0.0025")
    for name, table in by_row.items():
        assert sorted_columns(columnar[name]).equals(sorted_columns(table)), name


def test_a_value_that_does_not_fit_its_column_goes_row_by_row(sandbox: SandboxServer) -> None:
    rows = sandbox_rows(sandbox, "invoice_line_items")
    rows[5]["quantity"] = "several"
    _encode_json("invoice_line_items", rows)
    with pytest.raises(_Misfit):
        _Columnar("invoice_line_items").tables(copy.deepcopy(rows))
    items = {
        item.meta.hints["table_name"]: item.data for item in arrow_items("invoice_line_items", rows)
    }
    line_items = items["invoice_line_items"]
    assert line_items["quantity"][5].as_py() is None
    assert line_items["quantity__v_text"][5].as_py() == "several"
    assert line_items["quantity"][4].as_py() == Decimal(str(rows[4]["quantity"]))


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_dlt_does_not_log_a_notice_per_arrow_table(
    sandbox: SandboxServer, pipeline: dlt.Pipeline
) -> None:
    records = Records()
    dlt_logger = logging.getLogger("dlt")
    level = dlt_logger.level
    dlt_logger.addHandler(records)
    dlt_logger.setLevel(logging.INFO)
    try:
        report = run_pipeline(pipeline=pipeline, resources=["invoices", "credit_ledger_entries"])
    finally:
        dlt_logger.removeHandler(records)
        dlt_logger.setLevel(level)
    assert {"invoices", "invoice_line_items", "credit_ledger_entries"} <= {
        t.table for t in report.tables if t.rows
    }
    assert any("directly imported without normalization" in m for m in records.messages)
    assert not [m for m in records.messages if "merging arrow schema" in m]


def test_a_shared_price_is_converted_once_into_the_same_array() -> None:
    """Line items that share price objects, some with none or without the field, give the
    struct array Arrow builds from every row: same fields, order, types and values."""
    tiered = {"id": "p1", "tiered_config": {"tiers": [{"first_unit": "0", "unit_amount": "1"}]}}
    unit = {"id": "p2", "unit_config": {"unit_amount": "0.5"}, "metadata": "{}"}
    prices: list[dict[str, Any] | None] = [tiered, unit, tiered, None, tiered, unit]
    rows: list[dict[str, Any]] = [
        {"id": f"li{i}", "price": price, "quantity": str(i)} for i, price in enumerate(prices)
    ]
    rows.append({"id": "li_last", "quantity": "7", "name": "new field"})
    assert _shared_fields(rows) == ["price"]
    built = _struct_array(rows)
    assert built.equals(pa.array(rows))
    assert built.type == pa.array(rows).type
    assert built.to_pylist() == pa.array(rows).to_pylist()


def _item(table: str, columns: dict[str, pa.Array]) -> Any:
    return dlt.mark.with_hints(
        pa.table(columns), dlt.mark.make_hints(table_name=table, write_disposition="merge"), True
    )


def test_held_tables_reach_dlt_concatenated_and_every_row_with_them() -> None:
    """Small tables of one name go as one item once they reach the threshold or the resource
    ends; rows lists pass at once; tables whose types differ go as they came."""
    held = Held(rows=5)
    batches = [
        [_item("tiers", {"a": pa.array([1, 2])}), ["a", "dict", "batch"]],
        [_item("tiers", {"a": pa.array([3, 4]), "b": pa.array(["x", "y"])})],
        [_item("tiers", {"a": pa.array([5])}), _item("filters", {"v": pa.array([1])})],
        [_item("filters", {"v": pa.array(["text"])})],
    ]
    released = [list(held.add(batch)) for batch in batches]
    assert released[0] == [["a", "dict", "batch"]]
    assert released[1] == []
    [tiers] = released[2]
    assert tiers.meta.hints["table_name"] == "tiers"
    assert tiers.meta.hints["write_disposition"] == "merge"
    assert tiers.data.to_pydict() == {"a": [1, 2, 3, 4, 5], "b": [None, None, "x", "y", None]}
    assert released[3] == []
    rest = list(held.flush())
    assert [item.data.to_pydict() for item in rest] == [{"v": [1]}, {"v": ["text"]}]
    assert all(item.meta.hints["table_name"] == "filters" for item in rest)
    assert list(held.flush()) == []
