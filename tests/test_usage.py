"""Usage, costs and event volume over HTTP into DuckDB: exact after a first load, and after a
day whose late events restated recent days and whose subscriptions started and ended."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import dlt

from orb_source.runner import run_pipeline
from orb_source.sandbox import Account, SandboxServer, simulate_day
from tests.warehouse import assert_series_mirror, expected_series, fetch_rows, volume_start

RESTATEMENT = timedelta(days=3)


def test_usage_costs_and_volume_follow_restated_days_and_subscription_changes(
    sandbox: SandboxServer, account: Account, loaded: dlt.Pipeline
) -> None:
    since, loaded_at = volume_start(account), account.now
    assert_series_mirror(loaded, account, since)
    before = expected_series(account, since)["subscription_usage"]

    with account.lock:
        changes = simulate_day(account, random.Random(11))
    after = expected_series(account, since)["subscription_usage"]
    restated = {
        row_id
        for row_id, row in after.items()
        if row_id in before
        and row["quantity"] != before[row_id]["quantity"]
        and datetime.fromisoformat(row["timeframe_end"]) <= loaded_at
    }
    assert restated, "the day brought no late events for days already loaded"
    assert any(" started" in c for c in changes) and any(" ended" in c for c in changes)
    sandbox.reset_stats()

    run_pipeline(pipeline=loaded)

    assert_series_mirror(loaded, account, since)
    # Read again: each subscription alive since the restatement window began (35 days for
    # costs: a draft's change reprices its period), and the backfilled customer's
    # subscriptions over the backfill's timeframe; no other.
    backfills = [b for b in account.event_backfills.values() if b["close_time"] == account.now]
    assert any(b["id"].endswith("_backfill") for b in backfills), "the backdated subscription's"
    backfilled = {
        sub["id"]
        for b in backfills
        for sub in account.subscriptions.values()
        if sub["customer"]["id"] == b["customer_id"]
        and sub["start_date"] < b["timeframe_end"]
        and (sub["end_date"] or account.now) > b["timeframe_start"]
    }

    def alive_since(horizon: datetime) -> set[str]:
        return backfilled | {
            sub["id"]
            for sub in account.subscriptions.values()
            if sub["start_date"] < account.now and (sub["end_date"] or account.now) > horizon
        }

    horizon = loaded_at - RESTATEMENT - timedelta(days=1)
    requests = sandbox.stats.by_route
    usage_read = alive_since(horizon)
    assert requests["/subscriptions/{id}/usage"] == len(usage_read) < len(account.subscriptions)
    assert requests["/subscriptions/{id}/costs"] == len(alive_since(horizon - timedelta(days=32)))
    earliest = min(b["timeframe_start"] for b in backfills)
    hours = (account.now - earliest) // timedelta(hours=1)
    # a page of hours per request, from where the backfill began to a moment past the last hour
    assert -(-hours // 100) <= requests["/events/volume"] <= -(-hours // 100) + 1
    # Days before the window were not read again where no backfill reached: their rows are
    # still the first load's.
    old = [
        row["_dlt_load_id"]
        for row in fetch_rows(loaded, "subscription_usage")
        if row["id"] in before
        and row["timeframe_end"] <= horizon
        and row["subscription_id"] not in backfilled
    ]
    assert old and len(set(old)) == 1
