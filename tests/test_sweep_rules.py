"""Each deletion-sweep rule applied on its own to a real DuckDB database, through dlt's SQL
client and a schema built here: no pipeline run, no HTTP, well under a second per test.

Rows are written as the loads would have left them (`synced_at` is the start of the run that
last read the row, `deleted_at` NULL while live, cleared by the merge when an object comes
back), listings are the dicts the strategies record in source state, and every test sweeps
twice: the second sweep must change nothing.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from dlt.common.destination.typing import PreparedTableSchema
from dlt.common.schema import Schema
from dlt.common.schema.typing import TColumnSchema
from dlt.common.schema.utils import new_table
from dlt.destinations import duckdb as duckdb_destination
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient

from orb_source.client import OrbClient
from orb_source.strategies import SyncContext
from orb_source.sweep import apply_rules, row_keys

RUN1 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
RUN2 = RUN1 + timedelta(days=1)
RUN3 = RUN2 + timedelta(days=1)
LOAD1, LOAD2, LOAD3 = "1772344800.101", "1772431200.202", "1772517600.303"
"""dlt load ids of the three runs (their start in seconds since the epoch, as dlt makes them)."""

CAPABILITIES = duckdb_destination().capabilities()

ROW = {"id": "text", "_dlt_id": "text", "_dlt_load_id": "text"}
SYNC = {"synced_at": "timestamp", "deleted_at": "timestamp"}
TABLES: Mapping[str, Mapping[str, str]] = {
    "customers": {},
    "subscriptions": {"customer_id": "text", "status": "text"},
    "invoices": {"customer_id": "text", "status": "text"},
    "invoice_line_items": {"invoice_id": "text"},
    "credit_notes": {"customer_id": "text"},
    "plans": {},
    "alerts": {"customer_id": "text"},
    "credit_ledger_entries": {"customer_id": "text"},
    "credit_blocks": {"customer_id": "text"},
    "top_ups": {"customer_id": "text"},
    "customer_balance_transactions": {"customer_id": "text"},
    "subscription_schedules": {"subscription_id": "text"},
    "licenses": {"subscription_id": "text"},
    "plan_migrations": {"plan_id": "text"},
}
"""The source's tables, with the columns the rules read."""

CUSTOMER_LINKED = (
    "subscriptions",
    "invoices",
    "credit_notes",
    "alerts",
    "credit_ledger_entries",
    "credit_blocks",
    "top_ups",
    "customer_balance_transactions",
)
"""Tables whose rows follow their customer when it is deleted (README, "Deletions")."""

CHILD = {
    "_dlt_id": "text",
    "_dlt_parent_id": "text",
    "_dlt_root_id": "text",
    "_dlt_list_idx": "bigint",
}
"""Columns dlt gives a row of a child table."""
LINE_ITEM_TAXES = "invoice_line_items__tax_amounts"
PRICE_IDS = "invoices__discounts__applies_to_price_ids"
"""Child tables of Arrow data (dlt registers them without a parent), one and two levels deep."""
SUB_LINE_ITEMS = "invoice_line_items__sub_line_items"
"""A child table without parent whose rows carry no `_dlt_load_id`."""


def table_columns(columns: Mapping[str, str]) -> list[TColumnSchema]:
    return [
        {"name": name, "data_type": data_type, "nullable": not name.startswith("_dlt_")}  # type: ignore[typeddict-item]
        for name, data_type in columns.items()
    ]


def orb_schema(
    standalone: Mapping[str, Mapping[str, str]] | None = None,
    nested: Mapping[str, tuple[str, Mapping[str, str]]] | None = None,
) -> Schema:
    """The source's tables, plus child tables of Arrow data (`standalone`, no parent) and dlt's
    own nested tables (`nested`: name -> (parent, columns))."""
    schema = Schema("orb")
    for name, columns in TABLES.items():
        schema.update_table(new_table(name, columns=table_columns({**ROW, **SYNC, **columns})))
    for name, columns in (standalone or {}).items():
        schema.update_table(new_table(name, columns=table_columns(columns)))
    for name, (parent, columns) in (nested or {}).items():
        schema.update_table(
            new_table(name, parent_table_name=parent, columns=table_columns(columns))
        )
    return schema


@pytest.fixture
def sql() -> Iterator[DuckDbSqlClient]:
    """dlt's SQL client on an in-memory DuckDB database, dataset `orb` created."""
    connection = duckdb.connect()
    credentials = DuckDbCredentials(connection)
    credentials.resolve()
    client = DuckDbSqlClient("orb", "orb_staging", credentials, CAPABILITIES)
    with client:
        client.create_dataset()
        yield client
    connection.close()


def create_tables(sql: DuckDbSqlClient, schema: Schema) -> None:
    """Every table of the schema and dlt's loads table, typed as dlt types them on DuckDB."""
    types = CAPABILITIES.get_type_mapper()
    for name in [*schema.data_table_names(), schema.loads_table_name]:
        table = schema.tables[name]
        columns = ", ".join(
            f"{sql.escape_column_name(column_name)}"
            f" {types.to_destination_type(column, cast(PreparedTableSchema, table))}"
            f"{'' if column.get('nullable', True) else ' NOT NULL'}"
            for column_name, column in table["columns"].items()
        )
        sql.execute_sql(f"CREATE TABLE {sql.make_qualified_table_name(name)} ({columns})")


def insert(sql: DuckDbSqlClient, table: str, *rows: Mapping[str, Any]) -> None:
    for row in rows:
        columns = ", ".join(sql.escape_column_name(column) for column in row)
        sql.execute_sql(
            f"INSERT INTO {sql.make_qualified_table_name(table)} ({columns})"
            f" VALUES ({', '.join(['%s'] * len(row))})",
            *row.values(),
        )


def row(
    id: str,
    synced_at: datetime,
    deleted_at: datetime | None = None,
    load_id: str = LOAD1,
    **columns: Any,
) -> dict[str, Any]:
    """A row of one of the source's tables; its row key is its Orb id, as dlt's merge keeps it."""
    return {
        "id": id,
        "_dlt_id": id,
        "_dlt_load_id": load_id,
        "synced_at": synced_at,
        "deleted_at": deleted_at,
        **columns,
    }


def child_row(key: str, root: str, load_id: str, parent: str | None = None) -> dict[str, Any]:
    """A row of a child table of Arrow data; its row key is its parent's key plus a position."""
    return {
        "_dlt_id": key,
        "_dlt_parent_id": parent or root,
        "_dlt_root_id": root,
        "_dlt_list_idx": int(key[-1]),
        "_dlt_load_id": load_id,
    }


def record_loads(sql: DuckDbSqlClient, schema: Schema, *load_ids: str) -> None:
    """Rows of dlt's loads table for loads that completed."""
    for load_id in load_ids:
        insert(
            sql,
            schema.loads_table_name,
            {
                "load_id": load_id,
                "schema_name": schema.name,
                "status": 0,
                "inserted_at": RUN1,
                "schema_version_hash": schema.version_hash,
            },
        )


Rows = dict[str, dict[str, dict[str, Any]]]


def dump(sql: DuckDbSqlClient, schema: Schema) -> Rows:
    """Every row of every data table, by table and row key."""
    rows: Rows = {}
    for name in schema.data_table_names():
        with sql.execute_query(f"SELECT * FROM {sql.make_qualified_table_name(name)}") as cursor:
            columns = [c[0] for c in cursor.description]
            records = [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]
        rows[name] = {record["_dlt_id"]: record for record in records}
    return rows


class Swept:
    """What one sweep did: rows marked deleted (`deleted_at` set, nothing else changed) and
    rows removed, per table. Tables with neither are left out."""

    def __init__(self, before: Rows, after: Rows) -> None:
        self.marked: dict[str, dict[str, datetime]] = {}
        self.removed: dict[str, set[str]] = {}
        for table, rows in before.items():
            assert set(after[table]) <= set(rows), f"the sweep added rows to {table}"
            gone = set(rows) - set(after[table])
            if gone:
                self.removed[table] = gone
            for key, new in after[table].items():
                old = rows[key]
                if new == old:
                    continue
                assert {c for c in new if new[c] != old[c]} == {"deleted_at"}, (table, old, new)
                assert old["deleted_at"] is None, f"{table} {key}: a deletion date was rewritten"
                self.marked.setdefault(table, {})[key] = new["deleted_at"]


def sweep(sql: DuckDbSqlClient, listings: Mapping[str, Any], schema: Schema) -> Swept:
    """Apply the rules, then again: the second time must find nothing left to do."""
    before = dump(sql, schema)
    apply_rules(sql, listings, schema)
    after = dump(sql, schema)
    apply_rules(sql, listings, schema)
    assert dump(sql, schema) == after, "a second sweep changed rows"
    return Swept(before, after)


def complete(at: datetime) -> dict[str, Any]:
    """A table's entry in `listings` for a complete listing started at `at`."""
    return {"complete": {"at": at.isoformat()}}


def partial(at: datetime, column: str, values: list[str]) -> dict[str, Any]:
    """A table's entry in `listings` for a listing complete within `column IN values`."""
    return {"partial": {"at": at.isoformat(), "column": column, "values": values}}


def test_listings_here_are_what_the_strategies_record() -> None:
    """The listings these tests sweep with are the ones a run records in source state."""
    state: dict[str, Any] = {}
    with OrbClient("test-key") as client:
        context = SyncContext(client=client, started_at=RUN2, state=state)
        context.record_listing("customers")
        context.record_listing("invoices", {"column": "status", "values": ["draft", "issued"]})
    assert state["listings"] == {
        "customers": complete(RUN2),
        "invoices": partial(RUN2, "status", ["draft", "issued"]),
    }


@pytest.fixture
def schema(sql: DuckDbSqlClient) -> Schema:
    """The source's tables, created empty."""
    schema = orb_schema()
    create_tables(sql, schema)
    return schema


def test_complete_listing_marks_rows_it_did_not_return(
    sql: DuckDbSqlClient, schema: Schema
) -> None:
    """A row older than a complete listing of its table was not in it: marked deleted at the
    listing's time. Rows the listing returned, and every other table, stay as they are."""
    insert(
        sql,
        "plans",
        row("plan_kept", RUN2, load_id=LOAD2),
        row("plan_gone", RUN1),
        row("plan_gone_too", RUN1 - timedelta(days=30)),
    )
    insert(sql, "customers", row("cus_1", RUN1))
    swept = sweep(sql, {"plans": complete(RUN2)}, schema)
    assert swept.marked == {"plans": {"plan_gone": RUN2, "plan_gone_too": RUN2}}
    assert swept.removed == {}


def test_listing_that_returned_nothing_marks_every_row(
    sql: DuckDbSqlClient, schema: Schema
) -> None:
    """An account whose top-ups were all deactivated lists none: every row is gone."""
    insert(
        sql,
        "top_ups",
        row("tu_1", RUN1, customer_id="cus_1"),
        row("tu_2", RUN2, customer_id="cus_2"),
    )
    swept = sweep(sql, {"top_ups": complete(RUN3)}, schema)
    assert swept.marked == {"top_ups": {"tu_1": RUN3, "tu_2": RUN3}}


def test_rows_read_at_or_after_the_listing_stay(sql: DuckDbSqlClient, schema: Schema) -> None:
    """A listing recorded by an earlier run proves nothing about rows read since: only rows
    read before the listing started are marked; a row read by the listing's own run is not."""
    insert(
        sql,
        "customers",
        row("cus_before", RUN1 - timedelta(microseconds=1)),
        row("cus_same_run", RUN1),
        row("cus_later_run", RUN2, load_id=LOAD2),
    )
    swept = sweep(sql, {"customers": complete(RUN1)}, schema)
    assert swept.marked == {"customers": {"cus_before": RUN1}}


def test_deletion_date_is_kept_and_a_returned_row_stays_live(
    sql: DuckDbSqlClient, schema: Schema
) -> None:
    """A row marked by an earlier sweep keeps its date when later listings miss it again. A
    row that came back was rewritten by the merge with `deleted_at` NULL: the sweep leaves it
    live (it never clears a date itself) and does not mark it again."""
    insert(
        sql,
        "customers",
        row("cus_still_gone", RUN1 - timedelta(days=1), deleted_at=RUN1),
        row("cus_came_back", RUN3, load_id=LOAD3),
        row("cus_gone_now", RUN2, load_id=LOAD2),
    )
    swept = sweep(sql, {"customers": complete(RUN3)}, schema)
    assert swept.marked == {"customers": {"cus_gone_now": RUN3}}
    with sql.execute_query(
        f"SELECT id, deleted_at FROM {sql.make_qualified_table_name('customers')} ORDER BY id"
    ) as cursor:
        assert cursor.fetchall() == [
            ("cus_came_back", None),
            ("cus_gone_now", RUN3),
            ("cus_still_gone", RUN1),
        ]


def test_partial_listing_by_status_marks_only_within_its_statuses(
    sql: DuckDbSqlClient, schema: Schema
) -> None:
    """The open-set listing of invoices (drafts and issued ones, listed whole) proves a deleted
    draft; paid and void invoices outside it are not read every run and stay."""
    insert(
        sql,
        "invoices",
        row("in_draft_gone", RUN1, status="draft", customer_id="cus_1"),
        row("in_issued_gone", RUN1, status="issued", customer_id="cus_1"),
        row("in_draft_kept", RUN2, load_id=LOAD2, status="draft", customer_id="cus_1"),
        row("in_paid", RUN1, status="paid", customer_id="cus_1"),
        row("in_void", RUN1, status="void", customer_id="cus_1"),
    )
    listings = {"invoices": partial(RUN2, "status", ["draft", "issued"])}
    swept = sweep(sql, listings, schema)
    assert swept.marked == {"invoices": {"in_draft_gone": RUN2, "in_issued_gone": RUN2}}


def test_partial_listing_by_customer_marks_only_those_customers_rows(
    sql: DuckDbSqlClient, schema: Schema
) -> None:
    """Credit blocks re-read for the customers whose ledger moved: a block of one of them that
    was not returned is gone; the blocks of customers not re-read stay."""
    insert(
        sql,
        "credit_blocks",
        row("cb_1_gone", RUN1, customer_id="cus_1"),
        row("cb_1_kept", RUN2, load_id=LOAD2, customer_id="cus_1"),
        row("cb_2_gone", RUN1, customer_id="cus_2"),
        row("cb_3_not_read", RUN1, customer_id="cus_3"),
    )
    listings = {"credit_blocks": partial(RUN2, "customer_id", ["cus_1", "cus_2"])}
    swept = sweep(sql, listings, schema)
    assert swept.marked == {"credit_blocks": {"cb_1_gone": RUN2, "cb_2_gone": RUN2}}


def test_partial_listing_of_many_customers(sql: DuckDbSqlClient, schema: Schema) -> None:
    """A run that re-read thousands of customers' blocks: one statement, every id in scope."""
    ids = [f"cus_{n:05}" for n in range(5000)]
    insert(sql, "credit_blocks", row("cb_last", RUN1, customer_id=ids[-1]))
    insert(sql, "credit_blocks", row("cb_outside", RUN1, customer_id="cus_other"))
    swept = sweep(sql, {"credit_blocks": partial(RUN2, "customer_id", ids)}, schema)
    assert swept.marked == {"credit_blocks": {"cb_last": RUN2}}


def test_partial_listing_of_no_customers_marks_nothing(
    sql: DuckDbSqlClient, schema: Schema
) -> None:
    """No customer's ledger moved, so no block was listed: nothing is proven gone."""
    insert(sql, "credit_blocks", row("cb_1", RUN1, customer_id="cus_1"))
    swept = sweep(sql, {"credit_blocks": partial(RUN2, "customer_id", [])}, schema)
    assert swept.marked == {}


def test_complete_and_partial_listing_of_one_table_both_apply(
    sql: DuckDbSqlClient, schema: Schema
) -> None:
    """State keeps the last complete listing (the weekly full run) next to this run's partial
    one: each marks within its own scope and from its own time."""
    insert(
        sql,
        "credit_blocks",
        row("cb_before_full_run", RUN1 - timedelta(days=8), customer_id="cus_3"),
        row("cb_3_since_full_run", RUN1, customer_id="cus_3"),
        row("cb_1_gone", RUN1, customer_id="cus_1"),
    )
    listings = {
        "credit_blocks": {
            **complete(RUN1),
            **partial(RUN2, "customer_id", ["cus_1"]),
        }
    }
    swept = sweep(sql, listings, schema)
    assert swept.marked == {"credit_blocks": {"cb_before_full_run": RUN1, "cb_1_gone": RUN2}}


def test_table_without_listing_this_run_stays(sql: DuckDbSqlClient, schema: Schema) -> None:
    """Only listed tables are swept by listing: old rows of a table read incrementally stay."""
    insert(sql, "plans", row("plan_gone", RUN1))
    insert(sql, "credit_notes", row("cn_old", RUN1, customer_id="cus_1"))
    insert(sql, "customers", row("cus_1", RUN2, load_id=LOAD2))
    swept = sweep(sql, {"plans": complete(RUN2), "customers": complete(RUN2)}, schema)
    assert swept.marked == {"plans": {"plan_gone": RUN2}}


def test_rows_of_a_deleted_customer_follow_it_in_every_linked_table(
    sql: DuckDbSqlClient, schema: Schema
) -> None:
    """A customer missing from the complete customer listing takes its rows with it in every
    customer-linked table, and the line items of its invoices follow their invoice, in one
    sweep. Rows of live customers, and rows already marked, keep what they had."""
    insert(sql, "customers", row("cus_gone", RUN1), row("cus_live", RUN2, load_id=LOAD2))
    for table in CUSTOMER_LINKED:
        prefix = table[:2]
        insert(
            sql,
            table,
            row(f"{prefix}_of_gone", RUN1, customer_id="cus_gone"),
            row(
                f"{prefix}_of_gone_marked",
                RUN1 - timedelta(days=1),
                deleted_at=RUN1,
                customer_id="cus_gone",
            ),
            row(f"{prefix}_of_live", RUN1, customer_id="cus_live"),
        )
    insert(
        sql,
        "invoice_line_items",
        row("li_of_gone", RUN1, invoice_id="in_of_gone"),
        row("li_of_live", RUN1, invoice_id="in_of_live"),
    )
    swept = sweep(sql, {"customers": complete(RUN2)}, schema)
    assert swept.marked == {
        "customers": {"cus_gone": RUN2},
        **{table: {f"{table[:2]}_of_gone": RUN2} for table in CUSTOMER_LINKED},
        "invoice_line_items": {"li_of_gone": RUN2},
    }


def test_rows_listed_per_subscription_follow_it_and_their_partial_listing(
    sql: DuckDbSqlClient, schema: Schema
) -> None:
    """A subscription deleted with its customer takes its schedule and licenses with it in
    the same sweep, though their listing did not read it (it had ended); a subscription
    read again loses the entry it no longer lists (a cancelled plan change); those not
    read again keep theirs. A plan gone from the plans' listing takes its migrations."""
    insert(sql, "customers", row("cus_gone", RUN1), row("cus_live", RUN2, load_id=LOAD2))
    insert(
        sql,
        "subscriptions",
        row("sub_ended_of_gone", RUN1, customer_id="cus_gone"),
        row("sub_read", RUN2, load_id=LOAD2, customer_id="cus_live"),
        row("sub_not_read", RUN1, customer_id="cus_live"),
    )
    insert(
        sql,
        "subscription_schedules",
        row("sub_ended_of_gone/1", RUN1, subscription_id="sub_ended_of_gone"),
        row("sub_read/1", RUN2, load_id=LOAD2, subscription_id="sub_read"),
        row("sub_read/2", RUN1, subscription_id="sub_read"),
        row("sub_not_read/1", RUN1, subscription_id="sub_not_read"),
    )
    insert(sql, "licenses", row("lic_1", RUN1, subscription_id="sub_ended_of_gone"))
    insert(sql, "plans", row("plan_gone", RUN1), row("plan_live", RUN2, load_id=LOAD2))
    insert(
        sql,
        "plan_migrations",
        row("mig_gone", RUN1, plan_id="plan_gone"),
        row("mig_live", RUN2, load_id=LOAD2, plan_id="plan_live"),
    )
    listings = {
        "customers": complete(RUN2),
        "plans": complete(RUN2),
        "subscription_schedules": partial(RUN2, "subscription_id", ["sub_read"]),
        "licenses": partial(RUN2, "subscription_id", ["sub_read"]),
    }
    swept = sweep(sql, listings, schema)
    assert swept.marked == {
        "customers": {"cus_gone": RUN2},
        "subscriptions": {"sub_ended_of_gone": RUN2},
        "subscription_schedules": {"sub_ended_of_gone/1": RUN2, "sub_read/2": RUN2},
        "licenses": {"lic_1": RUN2},
        "plans": {"plan_gone": RUN2},
        "plan_migrations": {"mig_gone": RUN2},
    }


def test_children_follow_a_parent_marked_by_an_earlier_sweep(
    sql: DuckDbSqlClient, schema: Schema
) -> None:
    """A sweep that died after marking a customer: the next one, with no listing of its own,
    marks the customer's rows with the customer's date, and line items with their invoice's."""
    insert(sql, "customers", row("cus_gone", RUN1 - timedelta(days=1), deleted_at=RUN1))
    insert(
        sql,
        "invoices",
        row("in_of_gone", RUN1 - timedelta(days=1), customer_id="cus_gone", status="paid"),
        row("in_voided_gone", RUN1, deleted_at=RUN2, customer_id="cus_live", status="draft"),
    )
    insert(
        sql,
        "invoice_line_items",
        row("li_of_customer_gone", RUN1 - timedelta(days=1), invoice_id="in_of_gone"),
        row("li_of_draft_gone", RUN1, invoice_id="in_voided_gone"),
    )
    insert(sql, "top_ups", row("tu_of_gone", RUN1 - timedelta(days=1), customer_id="cus_gone"))
    swept = sweep(sql, {}, schema)
    assert swept.marked == {
        "invoices": {"in_of_gone": RUN1},
        "invoice_line_items": {"li_of_customer_gone": RUN1, "li_of_draft_gone": RUN2},
        "top_ups": {"tu_of_gone": RUN1},
    }


def test_complete_invoice_listing_is_one_of_their_line_items(
    sql: DuckDbSqlClient, schema: Schema
) -> None:
    """Line items are read with their invoices: a complete listing of invoices also marks a
    line item it did not return, even one whose invoice row is not there to follow."""
    insert(sql, "invoices", row("in_1", RUN2, load_id=LOAD2, customer_id="cus_1", status="paid"))
    insert(
        sql,
        "invoice_line_items",
        row("li_kept", RUN2, load_id=LOAD2, invoice_id="in_1"),
        row("li_orphan", RUN1, invoice_id="in_unknown"),
    )
    swept = sweep(sql, {"invoices": complete(RUN2)}, schema)
    assert swept.marked == {"invoice_line_items": {"li_orphan": RUN2}}


def test_partial_invoice_listing_is_not_one_of_their_line_items(
    sql: DuckDbSqlClient, schema: Schema
) -> None:
    """A listing of open invoices says nothing about line items of invoices it did not cover
    (line items have no status): those stay, whatever their age."""
    insert(
        sql,
        "invoices",
        row("in_paid", RUN1, customer_id="cus_1", status="paid"),
        row("in_draft", RUN2, load_id=LOAD2, customer_id="cus_1", status="draft"),
    )
    insert(
        sql,
        "invoice_line_items",
        row("li_of_paid", RUN1, invoice_id="in_paid"),
        row("li_of_draft", RUN2, load_id=LOAD2, invoice_id="in_draft"),
        row("li_orphan", RUN1, invoice_id="in_unknown"),
    )
    swept = sweep(sql, {"invoices": partial(RUN2, "status", ["draft", "issued"])}, schema)
    assert swept.marked == {}


def test_line_items_a_reread_invoice_no_longer_has_are_marked(
    sql: DuckDbSqlClient, schema: Schema
) -> None:
    """A recomputed draft read again without one of its line items: that line item is marked
    with the time its invoice was read. Line items of invoices not read again stay, and so
    does everything after a first load, where every row is as new as its invoice."""
    insert(
        sql,
        "invoices",
        row("in_reread", RUN2, load_id=LOAD2, customer_id="cus_1", status="draft"),
        row("in_not_reread", RUN1, customer_id="cus_1", status="paid"),
    )
    insert(
        sql,
        "invoice_line_items",
        row("li_still_there", RUN2, load_id=LOAD2, invoice_id="in_reread"),
        row("li_dropped", RUN1, invoice_id="in_reread"),
        row(
            "li_dropped_earlier", RUN1 - timedelta(days=1), deleted_at=RUN1, invoice_id="in_reread"
        ),
        row("li_of_not_reread", RUN1, invoice_id="in_not_reread"),
    )
    swept = sweep(sql, {}, schema)
    assert swept.marked == {"invoice_line_items": {"li_dropped": RUN2}}


def test_first_load_marks_nothing(sql: DuckDbSqlClient, schema: Schema) -> None:
    """Every row was read by the run whose listings are recorded: nothing is older."""
    insert(sql, "customers", row("cus_1", RUN1))
    insert(sql, "invoices", row("in_1", RUN1, customer_id="cus_1", status="draft"))
    insert(sql, "invoice_line_items", row("li_1", RUN1, invoice_id="in_1"))
    insert(sql, "credit_blocks", row("cb_1", RUN1, customer_id="cus_1"))
    listings = {
        "customers": complete(RUN1),
        "invoices": complete(RUN1),
        "credit_blocks": complete(RUN1),
    }
    swept = sweep(sql, listings, schema)
    assert swept.marked == {}
    assert swept.removed == {}


def test_arrow_child_rows_a_reread_parent_no_longer_has_are_removed(
    sql: DuckDbSqlClient,
) -> None:
    """Child tables of Arrow data are merged on their root key, which keeps the elements a
    re-read parent no longer has (all of them when its array is now empty): rows older than
    their root row are removed, at any depth.
    dlt's own nested tables (they have a parent) are left to dlt's merge, and so is a child
    table without load ids, where nothing tells an old row from a current one."""
    standalone = {
        LINE_ITEM_TAXES: {**CHILD, "_dlt_load_id": "text", "amount": "text"},
        PRICE_IDS: {**CHILD, "_dlt_load_id": "text", "value": "text"},
        SUB_LINE_ITEMS: CHILD,
    }
    nested = {
        "subscriptions__price_intervals": ("subscriptions", {**CHILD, "_dlt_load_id": "text"})
    }
    schema = orb_schema(standalone, nested)
    create_tables(sql, schema)
    record_loads(sql, schema, LOAD1, LOAD2)
    insert(
        sql,
        "invoice_line_items",
        row("li_reread", RUN2, load_id=LOAD2, invoice_id="in_1"),
        row("li_emptied", RUN2, load_id=LOAD2, invoice_id="in_1"),
        row("li_not_reread", RUN1, invoice_id="in_2"),
    )
    insert(
        sql,
        LINE_ITEM_TAXES,
        child_row("li_reread.tax_amounts0", "li_reread", LOAD2),
        child_row("li_reread.tax_amounts1", "li_reread", LOAD1),
        child_row("li_reread.tax_amounts2", "li_reread", LOAD1),
        child_row("li_emptied.tax_amounts0", "li_emptied", LOAD1),
        child_row("li_emptied.tax_amounts1", "li_emptied", LOAD1),
        child_row("li_not_reread.tax_amounts0", "li_not_reread", LOAD1),
        child_row("li_not_reread.tax_amounts1", "li_not_reread", LOAD1),
    )
    insert(
        sql,
        "invoices",
        row("in_1", RUN2, load_id=LOAD2, customer_id="cus_1", status="draft"),
        row("in_2", RUN1, customer_id="cus_1", status="paid"),
    )
    insert(
        sql,
        PRICE_IDS,
        child_row("in_1.discounts0.applies_to_price_ids0", "in_1", LOAD2, "in_1.discounts0"),
        child_row("in_1.discounts0.applies_to_price_ids1", "in_1", LOAD1, "in_1.discounts0"),
        child_row("in_2.discounts0.applies_to_price_ids0", "in_2", LOAD1, "in_2.discounts0"),
    )
    insert(
        sql,
        SUB_LINE_ITEMS,
        *(
            {k: v for k, v in child_row(key, "li_reread", LOAD1).items() if k != "_dlt_load_id"}
            for key in ("li_reread.sub_line_items0", "li_reread.sub_line_items1")
        ),
    )
    insert(sql, "subscriptions", row("sub_1", RUN2, load_id=LOAD2, customer_id="cus_1"))
    insert(
        sql,
        "subscriptions__price_intervals",
        child_row("sub_1.price_intervals0", "sub_1", LOAD2),
        child_row("sub_1.price_intervals1", "sub_1", LOAD1),
    )
    swept = sweep(sql, {}, schema)
    assert swept.removed == {
        LINE_ITEM_TAXES: {
            "li_reread.tax_amounts1",
            "li_reread.tax_amounts2",
            "li_emptied.tax_amounts0",
            "li_emptied.tax_amounts1",
        },
        PRICE_IDS: {"in_1.discounts0.applies_to_price_ids1"},
    }
    assert swept.marked == {}


def test_arrow_child_rows_of_a_first_load_stay(sql: DuckDbSqlClient) -> None:
    """Rows written by the same load as their root row are its current elements."""
    schema = orb_schema({LINE_ITEM_TAXES: {**CHILD, "_dlt_load_id": "text"}})
    create_tables(sql, schema)
    record_loads(sql, schema, LOAD1)
    insert(sql, "invoice_line_items", row("li_1", RUN1, invoice_id="in_1"))
    insert(sql, LINE_ITEM_TAXES, child_row("li_1.tax_amounts0", "li_1", LOAD1))
    swept = sweep(sql, {}, schema)
    assert swept.removed == {}


def test_tables_not_loaded_yet_are_skipped(sql: DuckDbSqlClient) -> None:
    """A sweep before some tables exist (a run limited to a few tables, or an account with no
    invoices yet) applies the rules to the tables there are and skips the others."""
    schema = orb_schema({LINE_ITEM_TAXES: {**CHILD, "_dlt_load_id": "text"}})
    create_tables(sql, orb_schema())
    for table in ("subscriptions", "invoices", "invoice_line_items", "top_ups"):
        sql.execute_sql(f"DROP TABLE {sql.make_qualified_table_name(table)}")
    sql.execute_sql(f"DROP TABLE {sql.make_qualified_table_name(schema.loads_table_name)}")
    insert(sql, "customers", row("cus_gone", RUN1))
    insert(sql, "credit_blocks", row("cb_of_gone", RUN1, customer_id="cus_gone"))
    listings = {
        "customers": complete(RUN2),
        "invoices": complete(RUN2),
        "top_ups": partial(RUN2, "customer_id", ["cus_gone"]),
    }
    for _ in range(2):
        apply_rules(sql, listings, schema)
    with sql.execute_query(
        "SELECT c.deleted_at, b.deleted_at"
        f" FROM {sql.make_qualified_table_name('customers')} AS c,"
        f" {sql.make_qualified_table_name('credit_blocks')} AS b"
    ) as cursor:
        assert cursor.fetchall() == [(RUN2, RUN2)]


def test_row_keys_of_job_files(tmp_path: Path) -> None:
    """Row keys of load job files, as crash recovery deletes them before a job runs again:
    Parquet, CSV with line breaks inside quoted values, and gzip-compressed CSV."""
    keys = ["in_1", "in_1.line_items0", "in_2"]
    table = pa.table({"memo": ["one line", "two\nlines", 'a "quoted"\r\nvalue'], "_dlt_id": keys})
    parquet = tmp_path / "invoices.parquet"
    pq.write_table(table, parquet)
    csv = tmp_path / "invoices.csv"
    pa_csv.write_csv(table, csv)
    compressed = tmp_path / "invoices.csv.gz"
    compressed.write_bytes(gzip.compress(csv.read_bytes()))
    assert row_keys(str(parquet), "parquet") == keys
    assert row_keys(str(csv), "csv") == keys
    assert row_keys(str(compressed), "csv") == keys


def test_row_keys_of_a_csv_file_larger_than_one_read_block(tmp_path: Path) -> None:
    """Arrow reads a CSV file in blocks of 1 MiB: a block boundary inside a multi-line value
    must not split the value into rows of their own."""
    keys = [f"in_{n}" for n in range(3000)]
    csv = tmp_path / "invoices.csv"
    pa_csv.write_csv(pa.table({"memo": ["line\n" * 200] * len(keys), "_dlt_id": keys}), csv)
    assert csv.stat().st_size > 2 * 2**20
    assert row_keys(str(csv), "csv") == keys
