"""Restated series (usage, costs, event volume): windows, spans and row keys, in process."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from orb_source.catalog import ENDPOINTS
from orb_source.client import OrbClient, rate_class
from orb_source.sandbox import generate_account
from orb_source.series import _final, _span, restated_from, window_start
from orb_source.state import SeriesRead
from orb_source.strategies import SyncContext
from orb_source.transform import cost_rows, usage_rows, volume_rows
from tests.test_strategies import FakeOrb, State, run

NOW = datetime(2026, 3, 30, 15, 20, tzinfo=UTC)
USAGE = ENDPOINTS["subscription_usage"]
DAY = timedelta(days=1)


def context(**options: object) -> SyncContext:
    return SyncContext(client=OrbClient("key", "http://127.0.0.1:9"), started_at=NOW, **options)  # type: ignore[arg-type]


def test_days_start_at_the_customers_midnight_and_hours_in_utc() -> None:
    moment = datetime(2026, 3, 30, 3, 30, tzinfo=UTC)
    # 05:30 in Berlin (summer time since 29 March): the day began at 22:00 UTC the day before
    assert window_start(moment, "day", "Europe/Berlin") == datetime(2026, 3, 29, 22, tzinfo=UTC)
    # 23:30 the day before in New York (EDT)
    assert window_start(moment, "day", "America/New_York") == datetime(2026, 3, 29, 4, tzinfo=UTC)
    assert window_start(moment, "day", "Etc/UTC") == datetime(2026, 3, 30, tzinfo=UTC)
    assert window_start(moment, "hour") == datetime(2026, 3, 30, 3, tzinfo=UTC)
    # a time zone Python does not know cuts days in UTC rather than failing the run
    assert window_start(moment, "day", "Mars/Olympus") == datetime(2026, 3, 30, tzinfo=UTC)


def test_a_restatement_window_reaches_back_whole_days_across_a_clock_change() -> None:
    series = USAGE.series
    assert series is not None
    ctx = context(restatement=timedelta(days=3))
    # read up to 30 March 17:20 Berlin; three days back is 27 March, before the change to
    # summer time: that day began at 23:00 UTC
    assert restated_from(ctx, series, NOW.isoformat(), "Europe/Berlin") == datetime(
        2026, 3, 26, 23, tzinfo=UTC
    )
    assert restated_from(context(restatement=DAY), series, NOW.isoformat(), "UTC") == datetime(
        2026, 3, 29, tzinfo=UTC
    )


def read(start: str, end: str | None = None, read_to: str | None = None) -> SeriesRead:
    series = SeriesRead(customer_id="c", timezone="UTC", start_date=start, end_date=end)
    if read_to:
        series["read_to"] = read_to
    return series


def test_the_span_of_a_subscription() -> None:
    series = USAGE.series
    assert series is not None
    ctx = context()
    started = "2025-06-10T00:00:00+00:00"
    # never read: from its start to now
    assert _span(ctx, series, read(started), NOW) == (datetime(2025, 6, 10, tzinfo=UTC), NOW)
    # with a start date, from that day
    dated = context(start_date=datetime(2026, 1, 1, tzinfo=UTC))
    assert _span(dated, series, read(started), NOW) == (datetime(2026, 1, 1, tzinfo=UTC), NOW)
    # read before: three days back from there
    last = read(started, read_to="2026-03-29T15:00:00+00:00")
    assert _span(ctx, series, last, NOW) == (datetime(2026, 3, 26, tzinfo=UTC), NOW)
    # ended: up to its end only
    ended = read(started, "2026-03-28T00:00:00+00:00", "2026-03-29T15:00:00+00:00")
    assert _span(ctx, series, ended, NOW) == (
        datetime(2026, 3, 26, tzinfo=UTC),
        datetime(2026, 3, 28, tzinfo=UTC),
    )
    # upcoming: nothing yet
    assert _span(ctx, series, read("2026-04-01T00:00:00+00:00"), NOW) is None


def test_an_ended_subscription_is_followed_for_one_restatement_window() -> None:
    series = USAGE.series
    assert series is not None
    ctx = context(restatement=timedelta(days=3))
    ended = read("2025-01-01T00:00:00+00:00", "2026-03-28T00:00:00+00:00", NOW.isoformat())
    assert not _final(ctx, series, ended, NOW)
    assert _final(ctx, series, ended, datetime(2026, 3, 31, tzinfo=UTC))
    # never read yet: not final, whenever it ended
    assert not _final(
        ctx, series, read("2025-01-01T00:00:00+00:00", "2025-02-01T00:00:00+00:00"), NOW
    )
    assert not _final(ctx, series, read("2025-01-01T00:00:00+00:00"), NOW)


def test_a_window_has_one_key_however_orb_spells_its_time() -> None:
    of = {"subscription_id": "s1", "customer_id": "c1"}
    data = [
        {
            "billable_metric": {"id": "m1", "name": "API calls"},
            "view_mode": "periodic",
            "usage": [
                {
                    "quantity": 3.5,
                    "timeframe_start": "2026-03-01T05:00:00Z",
                    "timeframe_end": "2026-03-02T05:00:00Z",
                }
            ],
        }
    ]
    again = [
        {
            **data[0],
            "usage": [
                {
                    "quantity": 4.0,
                    "timeframe_start": "2026-03-01T00:00:00-05:00",
                    "timeframe_end": "2026-03-02T00:00:00-05:00",
                }
            ],
        }
    ]
    grouped = [{**data[0], "metric_group": {"property_key": "region", "property_value": "eu"}}]
    first, second = usage_rows(data, of), usage_rows(again, of)
    assert first[0]["id"] == second[0]["id"] == "s1/m1/2026-03-01T05:00:00+00:00"
    assert first[0] | {"quantity": 4.0} == {
        **second[0],
        "timeframe_start": "2026-03-01T05:00:00Z",
        "timeframe_end": "2026-03-02T05:00:00Z",
    }
    assert usage_rows(grouped, of)[0]["id"] == "s1/m1/2026-03-01T05:00:00+00:00/region=eu"
    assert usage_rows(grouped, of)[0]["property_value"] == "eu"


def test_cost_rows_hold_each_price_by_id() -> None:
    of = {"subscription_id": "s1", "customer_id": "c1"}
    window = {
        "timeframe_start": "2026-03-01T00:00:00+00:00",
        "timeframe_end": "2026-03-02T00:00:00+00:00",
        "subtotal": "10.00",
        "total": "9.00",
        "per_price_costs": [
            {
                "price": {"id": "p1", "name": "big"},
                "price_id": "p1",
                "subtotal": "10.00",
                "total": "9.00",
                "quantity": 5.0,
            }
        ],
    }
    (row,) = cost_rows([window], of)
    assert row["id"] == "s1/2026-03-01T00:00:00+00:00"
    assert row["per_price_costs"] == [
        {"price_id": "p1", "subtotal": "10.00", "total": "9.00", "quantity": 5.0}
    ]
    assert (row["subtotal"], row["total"], row["customer_id"]) == ("10.00", "9.00", "c1")
    hour = {"count": 7, "timeframe_start": "2026-03-01T10:00:00Z", "timeframe_end": "x"}
    assert volume_rows([hour], {}) == [{"id": "2026-03-01T10:00:00+00:00", **hour}]


def test_usage_and_costs_count_against_the_analytics_class() -> None:
    assert rate_class("/subscriptions/s1/usage") == "analytics"
    assert rate_class("/subscriptions/s1/costs") == "analytics"
    assert rate_class("/customers/c1/costs") == "analytics"
    assert rate_class("/subscriptions/s1") == "read"
    assert rate_class("/events/volume") == "read"
    assert rate_class("/customers/c1/credits") == "credit_balance"
    assert {e.table: e.rate_class for e in ENDPOINTS.values() if e.series} == {
        "subscription_usage": "analytics",
        "subscription_costs": "analytics",
        "event_volume": "read",
    }


def test_costs_are_read_again_over_a_draft_invoices_period() -> None:
    costs = ENDPOINTS["subscription_costs"].series
    assert costs is not None
    ctx = context(restatement=timedelta(days=3))
    last = NOW.isoformat()
    assert restated_from(ctx, costs, last, "UTC") == datetime(2026, 2, 23, tzinfo=UTC)
    assert restated_from(context(restatement=timedelta(days=40)), costs, last, "UTC") == (
        datetime(2026, 2, 18, tzinfo=UTC)
    )
    ended = read("2025-01-01T00:00:00+00:00", "2026-03-20T00:00:00+00:00", last)
    assert not _final(ctx, costs, ended, NOW)
    assert _final(ctx, costs, ended, datetime(2026, 4, 24, tzinfo=UTC))


# The readers in process, through the sandbox's `Api` (`tests/test_strategies.py`)

ACCOUNT_NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)


@pytest.fixture
def orb() -> FakeOrb:
    """Four customers, three months; answers carry Orb's `Date`, so "now" is the account's."""
    return FakeOrb(generate_account(customers=4, seed=7, months=3, now=ACCOUNT_NOW), send_date=True)


def midnight(moment: datetime, timezone: str) -> str:
    return window_start(moment, "day", timezone).isoformat()


def begun(orb: FakeOrb) -> dict[str, dict[str, object]]:
    return {
        sid: sub
        for sid, sub in orb.account.subscriptions.items()
        if sub["start_date"] < orb.account.now
    }


def test_a_first_read_covers_each_subscription_then_each_run_its_restatement_window(
    orb: FakeOrb,
) -> None:
    state: State = {}
    first = run(orb, "subscription_usage", state, ACCOUNT_NOW)

    subs = begun(orb)
    assert first.params("/subscriptions") == [{"limit": "100"}], "every status, once"
    asked = {r.path.split("/")[2]: r.params for r in first.requests if r.path.endswith("/usage")}
    assert set(asked) == set(subs) and len(subs) < len(orb.account.subscriptions)
    for sid, params in asked.items():
        start = orb.account.subscriptions[sid]["start_date"]
        assert params["timeframe_start"] == start.isoformat()
        assert (params["granularity"], params["view_mode"]) == ("day", "periodic")
    assert {row["subscription_id"] for _, row in first.rows} <= set(subs)
    assert first.listings == {}, "a series records no listing: its rows are never swept"

    with orb.account.lock:
        orb.account.now += timedelta(days=1)
    second = run(orb, "subscription_usage", state, ACCOUNT_NOW + DAY)

    statuses, created = second.params("/subscriptions")
    assert statuses == {"status[]": ["active", "upcoming"], "limit": "100"}
    assert set(created) == {"created_at[gte]", "limit"}
    again = {r.path.split("/")[2]: r.params for r in second.requests if r.path.endswith("/usage")}
    following = {
        sid
        for sid, sub in subs.items()
        if sub["end_date"] is None or sub["end_date"] > ACCOUNT_NOW - timedelta(days=3)
    }
    assert set(again) == following
    for sid, params in again.items():
        zone = orb.account.subscriptions[sid]["customer"]["timezone"]
        read_to = datetime.fromisoformat(state["subscriptions"][sid]["read_to"])
        assert read_to >= orb.account.now
        assert params["timeframe_start"] == midnight(ACCOUNT_NOW - timedelta(days=3), zone)
    windows = {row["timeframe_start"] for _, row in second.rows}
    assert min(windows) >= (ACCOUNT_NOW - timedelta(days=4)).isoformat()


def test_an_ended_subscription_is_followed_through_the_window_then_dropped(
    orb: FakeOrb,
) -> None:
    state: State = {}
    run(orb, "subscription_usage", state, ACCOUNT_NOW)
    active = next(sid for sid, sub in begun(orb).items() if sub["status"] == "active")
    with orb.account.lock:
        ended = ACCOUNT_NOW + timedelta(hours=6)
        orb.account.subscriptions[active].update(status="ended", end_date=ended)
        orb.account.now += DAY

    second = run(orb, "subscription_usage", state, ACCOUNT_NOW + DAY)

    assert second.paths(f"/subscriptions/{active}") == [
        f"/subscriptions/{active}",
        f"/subscriptions/{active}/usage",
    ], "fetched by id when it left the open listing, then read to its end"
    (params,) = [r.params for r in second.requests if r.path == f"/subscriptions/{active}/usage"]
    assert datetime.fromisoformat(str(params["timeframe_end"])) == ended
    assert state["subscriptions"][active]["end_date"] == ended.isoformat()

    read: list[bool] = []
    for day in (2, 5, 6):
        with orb.account.lock:
            orb.account.now = ACCOUNT_NOW + day * DAY
        later = run(orb, "subscription_usage", state, ACCOUNT_NOW + day * DAY)
        read.append(f"/subscriptions/{active}/usage" in later.paths("/subscriptions/"))
    assert read == [True, True, False], "its last days, until they cannot change any more"
    assert active not in state["subscriptions"]


def test_configured_metrics_are_also_read_grouped(orb: FakeOrb) -> None:
    state: State = {}
    whole = run(orb, "subscription_usage", {}, ACCOUNT_NOW)
    metric = next(row["billable_metric_id"] for _, row in whole.rows)

    grouped = run(orb, "subscription_usage", state, ACCOUNT_NOW, usage_group_by={metric: "region"})

    asked = [r.params for r in grouped.requests if "group_by" in r.params]
    having = {
        row["subscription_id"] for _, row in whole.rows if row["billable_metric_id"] == metric
    }
    assert len(asked) == len(having) > 0
    assert all(p["billable_metric_id"] == metric and p["group_by"] == "region" for p in asked)
    by_group = [row for _, row in grouped.rows if row["property_key"] == "region"]
    assert by_group and all(
        row["id"].endswith(f"/region={row['property_value']}") for row in by_group
    )
    plain = {row["id"]: row["quantity"] for _, row in whole.rows}
    assert {r["id"]: r["quantity"] for _, r in grouped.rows if r["property_key"] is None} == plain
    # every day's groups add up to the day's usage of the metric
    totals: dict[str, object] = {}
    for row in by_group:
        key = row["id"].rsplit("/", 1)[0]
        totals[key] = totals.get(key, 0) + row["quantity"]
    assert totals == {key: plain[key] for key in totals}


def test_event_volume_starts_at_the_first_customer_then_reads_the_window(orb: FakeOrb) -> None:
    state: State = {}
    first = run(orb, "event_volume", state, ACCOUNT_NOW)

    oldest = min(c["created_at"] for c in orb.account.customers.values())
    asked = sorted(first.params("/events/volume"), key=lambda p: str(p["timeframe_start"]))
    assert asked[0]["timeframe_start"] == window_start(oldest, "hour").isoformat()
    hours = (ACCOUNT_NOW - window_start(oldest, "hour")) // timedelta(hours=1)
    # one request per page of hours, each its own timeframe, read at once
    assert len(first.rows) == len({row["id"] for _, row in first.rows}) == hours
    assert len(asked) == -(-hours // 100)
    assert all(p["timeframe_end"] == q["timeframe_start"] for p, q in itertools.pairwise(asked))
    assert sum(row["count"] for _, row in first.rows) > 0

    with orb.account.lock:
        orb.account.now += DAY
    second = run(orb, "event_volume", state, ACCOUNT_NOW + DAY)

    (params,) = second.params("/events/volume")
    assert (
        params["timeframe_start"]
        == window_start(ACCOUNT_NOW - timedelta(days=3), "hour").isoformat()
    )
    assert len(second.rows) == 4 * 24


def test_a_backfill_reads_its_customers_subscriptions_over_its_timeframe_again(
    orb: FakeOrb,
) -> None:
    state: State = {}
    run(orb, "subscription_usage", state, ACCOUNT_NOW)
    customer = next(iter(begun(orb).values()))["customer"]["id"]
    with orb.account.lock:
        orb.account.now += DAY
        like = next(iter(orb.account.event_backfills.values()))
        orb.account.add(
            "event_backfills",
            {
                **like,
                "id": "test_backfill",
                "customer_id": customer,
                "status": "reflected",
                "close_time": orb.account.now,
                "timeframe_start": ACCOUNT_NOW - timedelta(days=20),
                "timeframe_end": ACCOUNT_NOW - timedelta(days=10),
            },
        )

    second = run(orb, "subscription_usage", state, ACCOUNT_NOW + DAY)

    assert {"customer_id": customer, "limit": "100"} in second.params("/subscriptions")
    for request in second.requests:
        if request.path.endswith("/usage"):
            sub = orb.account.subscriptions[request.path.split("/")[2]]
            zone = sub["customer"]["timezone"]
            back = 20 if sub["customer"]["id"] == customer else 3
            start = max(sub["start_date"].isoformat(), midnight(ACCOUNT_NOW - back * DAY, zone))
            assert request.params["timeframe_start"] == start, request.path
