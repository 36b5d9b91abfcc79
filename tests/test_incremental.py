"""Exact mirror: incremental runs catch updates and deletions, round after round."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import pytest

from orb_source.catalog import EMITTED_ONCE, TABLES
from orb_source.runner import make_pipeline, run_pipeline
from orb_source.sandbox import Account, SandboxServer, simulate_day
from orb_source.sandbox.mutations import delete_block
from tests.conftest import restore_first_load
from tests.warehouse import assert_mirror, fetch_table, query, reading

VOLATILE = {"synced_at", "_dlt_load_id", "_dlt_id"}
LISTED_UNDER = (
    "subscription_changes",
    "plan_migrations",
    "subscription_schedules",
    "licenses",
    "coupon_subscriptions",
    "dimensional_price_group_prices",
)
"""Tables listed per status or per parent: each day changes the first four (a new
subscription's coupon, a deleted customer's, changes the fifth), and the run after it must
catch it."""


def table_contents(pipeline: dlt.Pipeline) -> dict[str, dict[str, dict[str, Any]]]:
    with reading(pipeline):
        return {
            table: {
                row_id: {k: v for k, v in row.items() if k not in VOLATILE}
                for row_id, row in fetch_table(pipeline, table).items()
            }
            for table in TABLES
        }


@pytest.mark.slow
def test_three_days_of_changes_then_a_quiet_run(
    sandbox: SandboxServer, account: Account, loaded: dlt.Pipeline
) -> None:
    assert_mirror(loaded, account)
    rng = random.Random(2026)

    changed_any: set[str] = set()
    for _ in range(3):
        before = {table: account.objects(table) for table in LISTED_UNDER}
        with account.lock:
            changes = simulate_day(account, rng)
        assert len(changes) >= 15
        changed = {table for table in LISTED_UNDER if account.objects(table) != before[table]}
        assert changed >= set(LISTED_UNDER[:4]), changed
        changed_any |= changed
        run_pipeline(pipeline=loaded)
        assert_mirror(loaded, account)
    assert "coupon_subscriptions" in changed_any

    for table in ("customers", "invoices", "invoice_line_items", "top_ups", "alerts"):
        deleted = {i for i, row in fetch_table(loaded, table).items() if row["deleted_at"]}
        assert deleted and deleted == account.gone(table) & set(fetch_table(loaded, table)), table

    before = table_contents(loaded)
    run_pipeline(pipeline=loaded)
    assert table_contents(loaded) == before


def test_a_new_destination_file_gets_a_full_sync_not_an_incremental_one(
    sandbox: SandboxServer, account: Account, loaded: dlt.Pipeline, tmp_path: Path
) -> None:
    (tmp_path / "orb_billing.duckdb").unlink()
    with account.lock:
        simulate_day(account, random.Random(7))

    report = run_pipeline(pipeline=loaded)

    assert_mirror(loaded, account)
    loaded = {summary.table: summary.rows for summary in report.tables}
    assert loaded["invoices"] == len(account.objects("invoices"))
    assert "syncing from scratch" not in " ".join(report.schema_changes)


def dispositions(pipeline: dlt.Pipeline, tables: frozenset[str]) -> dict[str, str]:
    """Each table's write disposition in the last load, as dlt stored it in the schema."""
    schema = pipeline.default_schema.tables
    return {table: str(schema[table].get("write_disposition")) for table in sorted(tables)}


def staged_tables(pipeline: dlt.Pipeline) -> set[str]:
    rows = query(
        pipeline,
        "SELECT table_name FROM information_schema.tables"
        f" WHERE table_schema = '{pipeline.dataset_name}_staging'",
    )
    return {table for (table,) in rows}


def invoice_family(pipeline: dlt.Pipeline) -> list[str]:
    return [
        table
        for table in pipeline.default_schema.data_table_names(seen_data_only=True)
        if table.split("__")[0] in ("invoices", "invoice_line_items")
    ]


@pytest.mark.parametrize("arrow", [True, False], ids=["arrow", "dicts"])
def test_a_first_load_appends_and_every_later_run_merges(
    sandbox: SandboxServer, account: Account, pipeline: dlt.Pipeline, arrow: bool
) -> None:
    run_pipeline(pipeline=pipeline, arrow=arrow)

    assert dispositions(pipeline, EMITTED_ONCE) == dict.fromkeys(sorted(EMITTED_ONCE), "append")
    assert dispositions(pipeline, frozenset({"customers"})) == {"customers": "merge"}
    assert not staged_tables(pipeline) & set(invoice_family(pipeline))
    assert_mirror(pipeline, account)

    with account.lock:
        changes = simulate_day(account, random.Random(11))
    assert any("line item" in change for change in changes)
    run_pipeline(pipeline=pipeline, arrow=arrow)

    assert dispositions(pipeline, EMITTED_ONCE) == dict.fromkeys(sorted(EMITTED_ONCE), "merge")
    assert_mirror(pipeline, account)
    nested = [table for table in invoice_family(pipeline) if "__" in table]
    assert len(nested) >= 4
    for table in nested:
        [(orphans,)] = query(
            pipeline, f"SELECT count(*) FROM {{{table}}} WHERE _dlt_root_id IS NULL"
        )
        assert orphans == 0, table


def test_a_new_pipeline_folder_merges_into_the_tables_it_finds(
    sandbox: SandboxServer, account: Account, tmp_path: Path, first_load: Path
) -> None:
    """A scheduler that starts every run without the last run's pipeline folder must not append
    a second copy of what the destination already holds."""
    restore_first_load(first_load, account, tmp_path / "first")
    fresh = make_pipeline(pipelines_dir=str(tmp_path / "second"))

    run_pipeline(pipeline=fresh)

    assert dispositions(fresh, EMITTED_ONCE) == dict.fromkeys(sorted(EMITTED_ONCE), "merge")
    assert_mirror(fresh, account)


def test_a_run_in_a_new_pipeline_folder_takes_its_state_from_the_destination(
    sandbox: SandboxServer, account: Account, tmp_path: Path, first_load: Path
) -> None:
    """A scheduler that runs each sync on a fresh machine still syncs incrementally."""
    restore_first_load(first_load, account, tmp_path / "first")
    with account.lock:
        simulate_day(account, random.Random(5))
    fresh = make_pipeline(pipelines_dir=str(tmp_path / "second"))

    report = run_pipeline(pipeline=fresh)

    loaded = {summary.table: summary.rows for summary in report.tables}
    assert 0 < loaded["invoices"] < len(account.objects("invoices")) / 2
    assert_mirror(fresh, account)


def test_an_incremental_run_reads_only_what_can_have_changed(
    sandbox: SandboxServer, account: Account, loaded: dlt.Pipeline
) -> None:
    """Rows seen before are not read again; credit blocks are listed only where the ledger
    moved, and blocks awaiting payment elsewhere are re-read by id where a one-off invoice
    their customer had open was paid or voided since. Each customer's ledger is listed once
    for the ledger and the blocks, from its oldest entry still pending where that is older."""
    since = account.now - timedelta(hours=1)
    oldest_pending: dict[str, datetime] = {}
    for entry in owned(account, "credit_ledger_entries"):
        if entry["pending"]:
            customer = entry["customer"]
            oldest_pending[customer] = min(entry["at"], oldest_pending.get(customer, entry["at"]))
    customers_before = set(account.customers)
    awaiting_payment = [
        b for b in owned(account, "credit_blocks") if b["status"] == "pending_payment"
    ]
    one_offs_before = open_one_offs(account)
    with account.lock:
        simulate_day(account, random.Random(11))
    sandbox.reset_stats()

    run_pipeline(pipeline=loaded)

    assert_mirror(loaded, account)
    rows, requests = sandbox.stats.rows_by_route, sandbox.stats.by_route
    new_txns = [t for t in owned(account, "customer_balance_transactions") if t["at"] >= since]
    assert rows["/customers/{id}/balance_transactions"] == len(new_txns) > 0

    new_entries = [e for e in owned(account, "credit_ledger_entries") if e["at"] >= since]
    moved = {e["customer"] for e in new_entries}
    assert requests["/customers/{id}/credits"] == len(moved) < len(account.customers)
    blocks_of_moved = [b for b in owned(account, "credit_blocks") if b["customer"] in moved]
    assert rows["/customers/{id}/credits"] == len(blocks_of_moved)
    elsewhere = [
        b
        for b in awaiting_payment
        if b["customer"] not in moved and b["customer"] in account.customers
    ]
    one_offs_after = open_one_offs(account)
    settled = [
        b
        for b in elsewhere
        if not one_offs_before.get(b["customer"])
        or not one_offs_before[b["customer"]] <= one_offs_after.get(b["customer"], set())
    ]
    assert requests["/credit_blocks/{id}"] == len(settled) > 0
    assert len(settled) < len(elsewhere)
    # a block whose purchase invoice was paid leaves no ledger entry: the re-read by id finds it
    now_active = {b["id"] for b in owned(account, "credit_blocks") if b["status"] == "active"}
    activated = {b["id"] for b in elsewhere} & now_active
    assert activated and activated <= {b["id"] for b in settled}
    assert {fetch_table(loaded, "credit_blocks")[i]["status"] for i in activated} == {"active"}

    ledger_requests = Counter(
        path.split("/")[2] for _, path, _ in sandbox.stats.log if path.endswith("/credits/ledger")
    )
    stayed = customers_before & set(account.customers)
    assert {c: ledger_requests[c] for c in stayed} == dict.fromkeys(stayed, 1)
    entries = owned(account, "credit_ledger_entries")
    # a new customer's ledger is listed whole, and the blocks ask with one row: never a
    # second listing from the cursor the ledger's reader has just moved
    joined = set(account.customers) - customers_before
    assert joined and {c: ledger_requests[c] for c in joined} == dict.fromkeys(joined, 2)
    expected = sum(
        1
        for e in entries
        if e["customer"] in joined
        or e["at"] >= min(since, oldest_pending.get(e["customer"], since))
    )
    assert oldest_pending and min(oldest_pending.values()) < since
    assert expected <= rows["/customers/{id}/credits/ledger"] <= expected + len(joined)


def test_a_deleted_block_awaiting_payment_is_marked_deleted(
    sandbox: SandboxServer, account: Account, loaded: dlt.Pipeline
) -> None:
    """A block awaiting payment is deleted, which voids its purchase invoice: it is re-read
    by id, and the 404 sends its customer back to a complete listing, so the sweep marks the
    block deleted. The blocks whose invoices are still open are not read."""
    since = account.now - timedelta(hours=1)
    moved = {e["customer"] for e in owned(account, "credit_ledger_entries") if e["at"] >= since}
    awaiting = [
        b
        for b in owned(account, "credit_blocks")
        if b["status"] == "pending_payment" and b["customer"] not in moved
    ]
    gone = awaiting[0]
    with account.lock:
        delete_block(account, gone["customer"], gone["id"])
        account.now += timedelta(days=1)
    sandbox.reset_stats()

    run_pipeline(pipeline=loaded)

    assert_mirror(loaded, account)
    assert fetch_table(loaded, "credit_blocks")[gone["id"]]["deleted_at"] is not None
    requests = sandbox.stats.by_route
    of_customer = [b for b in awaiting if b["customer"] == gone["customer"]]
    assert requests["/credit_blocks/{id}"] == len(of_customer) < len(awaiting)
    assert requests["/customers/{id}/credits"] == len(moved) + 1


def test_selecting_invoices_also_loads_their_line_items(
    sandbox: SandboxServer, account: Account, pipeline: dlt.Pipeline
) -> None:
    """Both tables come from one listing with one cursor: a run that loaded invoices alone
    would move the cursor past line items it never loaded."""
    report = run_pipeline(pipeline=pipeline, resources=["invoices"])

    loaded = {t.table: t.rows for t in report.tables}
    lines = sum(len(inv["line_items"]) for inv in account.invoices.values())
    assert loaded["invoice_line_items"] == lines > 0
    assert "customers" not in loaded
    with account.lock:
        simulate_day(account, random.Random(5))
    run_pipeline(pipeline=pipeline)
    assert_mirror(pipeline, account)


def open_one_offs(account: Account) -> dict[str, set[str]]:
    """Each customer's one-off invoices in draft, issued or synced: what a block awaiting
    payment may be waiting on."""
    found: dict[str, set[str]] = {}
    for invoice in account.objects("invoices").values():
        if invoice["invoice_source"] == "one_off" and invoice["status"] in (
            "draft",
            "issued",
            "synced",
        ):
            found.setdefault(invoice["customer"]["id"], set()).add(invoice["id"])
    return found


def owned(account: Account, table: str) -> list[dict[str, Any]]:
    """Live per-customer objects with their owner, creation time and state."""
    return [
        {
            "id": obj["id"],
            "customer": customer_id,
            "at": obj.get("created_at"),
            "pending": obj.get("entry_status") == "pending",
            "status": obj.get("status"),
        }
        for customer_id, objs in account.owned[table].items()
        if customer_id in account.customers
        for obj in objs.values()
    ]


def test_cursors_are_set_on_orbs_clock_not_the_local_one(
    sandbox: SandboxServer, account: Account, pipeline: dlt.Pipeline
) -> None:
    """The sandbox's clock is weeks behind this machine's: cursors follow the server's `Date`."""
    assert datetime.now(UTC) - account.now > timedelta(days=1)

    run_pipeline(pipeline=pipeline)

    resources = pipeline.state["sources"]["orb"]["resources"]
    cursors = resources["customer_balance_transactions"]["cursors"]
    assert len(cursors) == len(account.customers)
    for cursor in cursors.values():
        assert abs(datetime.fromisoformat(cursor) - account.now) < timedelta(minutes=1)
    since = datetime.fromisoformat(resources["credit_blocks"]["activity_since"])
    assert abs(since - account.now) < timedelta(minutes=1)
