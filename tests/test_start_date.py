"""`--start-date` limits history, not the present: closed objects dated before it are skipped,
every open object is loaded, and later runs stay exact without marking anything deleted."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import dlt
import pytest

from orb_source.runner import run_pipeline
from orb_source.sandbox import Account, SandboxServer, simulate_day
from tests.conftest import SANDBOX_NOW
from tests.warehouse import (
    LISTED_TABLES,
    assert_same_fields,
    assert_series_mirror,
    fetch_table,
    reading,
)

START = (SANDBOX_NOW - timedelta(days=60)).replace(hour=0, minute=0)
START_DATE = START.date().isoformat()

SKIPPING = (
    "subscriptions",
    "invoices",
    "invoice_line_items",
    "credit_notes",
    "credit_ledger_entries",
    "customer_balance_transactions",
)


def dated(obj: Mapping[str, Any], field: str) -> datetime | None:
    value = obj.get(field)
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def kept(account: Account, table: str, start: datetime) -> set[str]:
    """The ids a load with this start date must hold: every open object, closed ones from it."""
    objects = account.objects(table)

    def since(obj: Mapping[str, Any], field: str) -> bool:
        moment = dated(obj, field)
        return moment is None or moment >= start

    if table == "subscriptions":
        return {i for i, s in objects.items() if s["status"] != "ended" or since(s, "end_date")}
    if table == "invoices":
        return {
            i
            for i, inv in objects.items()
            if inv["status"] in ("draft", "issued") or since(inv, "invoice_date")
        }
    if table == "invoice_line_items":
        invoices = kept(account, "invoices", start)
        return {i for i, line in objects.items() if line["invoice_id"] in invoices}
    if table in ("credit_notes", "credit_ledger_entries", "customer_balance_transactions"):
        return {i for i, obj in objects.items() if since(obj, "created_at")}
    return set(objects)


def assert_start_dated_mirror(pipeline: dlt.Pipeline, account: Account) -> None:
    """Everything the start date keeps is live and equal to the API; nothing live is stale or
    gone from the API; nothing the API still serves is marked deleted."""
    with reading(pipeline):
        tables = {table: fetch_table(pipeline, table) for table in LISTED_TABLES}
    assert_series_mirror(pipeline, account, START, from_date=START)
    for table, rows in tables.items():
        objects = account.objects(table)
        live = {i for i, row in rows.items() if row["deleted_at"] is None}
        missing = kept(account, table, START) - live
        assert not missing, f"{table}: {len(missing)} missing, e.g. {sorted(missing)[:3]}"
        assert live <= set(objects), f"{table}: live rows the API no longer serves"
        wrongly_deleted = {i for i, row in rows.items() if row["deleted_at"]} & set(objects)
        assert not wrongly_deleted, f"{table}: marked deleted but served: {wrongly_deleted}"
        for row_id in live:
            assert_same_fields(table, objects[row_id], rows[row_id])


def test_first_load_keeps_every_open_object_and_skips_older_closed_history(
    sandbox: SandboxServer, account: Account, pipeline: dlt.Pipeline
) -> None:
    run_pipeline(pipeline=pipeline, start_date=START_DATE)

    with reading(pipeline):
        tables = {table: set(fetch_table(pipeline, table)) for table in LISTED_TABLES}
    for table, loaded in tables.items():
        assert loaded == kept(account, table, START), table
        if table in SKIPPING:
            assert loaded < set(account.objects(table)), f"{table}: nothing was older"
    subscriptions = account.objects("subscriptions").values()
    open_subscriptions = {s["id"] for s in subscriptions if s["status"] in ("active", "upcoming")}
    assert len(open_subscriptions) >= 20
    assert open_subscriptions <= set(fetch_table(pipeline, "subscriptions"))
    invoices = fetch_table(pipeline, "invoices")
    issued = [row for row in invoices.values() if row["status"] == "issued"]
    assert any(row["invoice_date"] < START for row in issued), "no open invoice before START"
    linked = {row["subscription_id"] for row in invoices.values() if row["subscription_id"]}
    dangling = linked - set(fetch_table(pipeline, "subscriptions"))
    assert not dangling, f"{len(dangling)} invoices point at a subscription not loaded"
    assert_start_dated_mirror(pipeline, account)


@pytest.mark.slow
@pytest.mark.parametrize("days", [2])
def test_later_runs_stay_exact_and_never_mark_skipped_history_deleted(
    sandbox: SandboxServer, account: Account, pipeline: dlt.Pipeline, days: int
) -> None:
    run_pipeline(pipeline=pipeline, start_date=START_DATE)
    rng = random.Random(404)

    for _ in range(days):
        with account.lock:
            simulate_day(account, rng)
        run_pipeline(pipeline=pipeline, start_date=START_DATE)
        assert_start_dated_mirror(pipeline, account)

    with account.lock:
        simulate_day(account, rng)
    run_pipeline(pipeline=pipeline, start_date=START_DATE, full_refresh=True)
    assert_start_dated_mirror(pipeline, account)
    with reading(pipeline):
        gone = {
            table: {i for i, row in fetch_table(pipeline, table).items() if row["deleted_at"]}
            for table in LISTED_TABLES
        }
    assert any(gone.values()), "the simulated days deleted something"
    for table, ids in gone.items():
        assert ids <= account.gone(table), table
