"""Restated series (usage, costs, event volume): windows, spans and row keys, in process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orb_source.catalog import ENDPOINTS
from orb_source.client import OrbClient, rate_class
from orb_source.series import _final, _span, restated_from, window_start
from orb_source.state import SeriesRead
from orb_source.strategies import SyncContext
from orb_source.transform import cost_rows, usage_rows, volume_rows

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
