"""Time series Orb computes from events: usage, costs and event volume (`Sync.RESTATED`).

Orb has no "changed since" for them, and a late event changes the window of its timestamp,
not the latest one. So each run reads a series from where the last run ended minus the
restatement window (`restatement_days`), cut at whole windows, and each window's row replaces
the one loaded before (the row id is the window's key). Orb takes events older than its grace
period only through a backfill, so each run also reads again the timeframe of every backfill
reflected or reverted since the last run (`GET /events/backfills`): for the backfill's
customer's subscriptions, or every subscription for an account-wide backfill.

Per subscription, a run reads the subscriptions that can have new or restated windows: the
active and upcoming ones, those created since the last run (one that started and ended in
between), and those that ended within the restatement window. A first run reads every
subscription from its start (or the start date). The periodic full refresh does not apply:
rows of a series are never deleted, so there is nothing for it to find.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as day_start
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .catalog import SUBSCRIPTIONS_OPEN, Cursor, Endpoint, Scope, Series, Sync
from .client import PAGE_SIZE, OrbForbidden, OrbNotFound
from .state import ListingState, SeriesRead
from .strategies import (
    Listed,
    Reader,
    SyncContext,
    Watermark,
    bounded_map,
    fetch_by_id,
    open_and_new,
    parse_time,
)
from .transform import Row

logger = logging.getLogger(__name__)

SUBSCRIPTIONS = "/subscriptions"
BACKFILLS = "/events/backfills"
CREATED = Cursor("created_at", "created_at")
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def orb_now(ctx: SyncContext) -> datetime:
    """Now on Orb's clock (its `Date` headers), or the run's start before any answer."""
    return ctx.client.clock.orb_time(time.time()) or ctx.started_at


def window_start(moment: datetime, window: str, timezone: str = "UTC") -> datetime:
    """The start of the window `moment` falls in: the hour (UTC), or the day at the
    customer's local midnight, as Orb cuts daily usage and costs."""
    if window == "hour":
        return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local_day = moment.astimezone(zone).date()
    return datetime.combine(local_day, day_start(), zone).astimezone(UTC)


def restated_from(ctx: SyncContext, series: Series, read_to: str, timezone: str) -> datetime:
    """Where a series last read up to `read_to` is read again: whole windows, from the
    restatement window before it."""
    back = max(ctx.restatement, series.at_least)
    return window_start(parse_time(read_to) - back, series.window, timezone)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def read_account_series(ctx: SyncContext, endpoint: Endpoint, state: ListingState) -> Listed:
    """The account's series (event volume), from its start on a first run: the hour the
    account's first customer was created, or the start date if later."""
    series = _series(endpoint)
    read_to = None if ctx.full_refresh else state.get("read_to")
    backfills = _backfills(ctx, state, read_to is not None)
    if read_to:
        start: datetime | None = min(
            [restated_from(ctx, series, read_to, "UTC"), *(b.start for b in backfills)]
        )
    else:
        start = _first_customer(ctx)
    if ctx.start_date:  # history before it is skipped, backfilled or not
        start = max(start or ctx.start_date, ctx.start_date)
    end = orb_now(ctx)
    if start is not None and start < end:
        step = PAGE_SIZE * (HOUR if series.window == "hour" else DAY)
        chunks = _chunks(window_start(start, series.window), end, step)

        def read_chunk(key: str) -> list[Row]:
            since, until = chunks[key]
            params = {
                **endpoint.params,
                "timeframe_start": _iso(since),
                "timeframe_end": _iso(until),
            }
            return [row for page in ctx.client.paginate(endpoint.path, params) for row in page]

        for rows in bounded_map(ctx.pool(endpoint.rate_class), read_chunk, sorted(chunks)):
            yield None, series.rows(rows, {})
    state["read_to"] = end.isoformat()


def _chunks(
    start: datetime, end: datetime, step: timedelta
) -> dict[str, tuple[datetime, datetime]]:
    """The timeframe in parts of one page of windows each, read at once rather than page
    after page: a year of hours is 88 pages."""
    bounds = [start + index * step for index in range(-(-(end - start) // step))] + [end]
    return {_iso(since): (since, min(until, end)) for since, until in itertools.pairwise(bounds)}


def _first_customer(ctx: SyncContext) -> datetime | None:
    created = [
        parse_time(obj["created_at"])
        for page in ctx.customer_pages()
        for obj in page
        if isinstance(obj.get("created_at"), str)
    ]
    return min(created, default=None)


def read_subscription_series(ctx: SyncContext, endpoint: Endpoint, state: ListingState) -> Listed:
    """Each subscription's series that can have new or restated windows, concurrently in
    Orb's Analytics rate class; the grouped usage of `usage_group_by` with it."""
    series = _series(endpoint)
    full = ctx.full_refresh or "subscriptions" not in state
    tracked: dict[str, SeriesRead] = {} if full else dict(state.get("subscriptions", {}))
    watermark = Watermark(
        CREATED, None if full else state.get("cursor"), ctx.started_at, ctx.client.clock
    )
    listed = dict(open_and_new(ctx, SUBSCRIPTIONS, {}, SUBSCRIPTIONS_OPEN, watermark, full))
    backfilled = _backfilled(ctx, _backfills(ctx, state, not full))
    listed.update((sid, sub) for sid, (sub, _) in backfilled.items())
    quiet = sorted(sid for sid, read in tracked.items() if sid not in listed and _may_end(read))
    for page in fetch_by_id(ctx, SUBSCRIPTIONS + "/{id}", quiet):
        listed.update((sub["id"], sub) for sub in page)
    for sid in quiet:
        if sid not in listed:
            tracked.pop(sid)  # gone from Orb: its rows stay as they were loaded
    for sid, sub in listed.items():
        tracked[sid] = _tracked(sub, tracked.get(sid))
    now = orb_now(ctx)
    windows = {
        sid: span
        for sid, read in tracked.items()
        if (span := _span(ctx, series, read, now, backfilled.get(sid, (None, None))[1]))
    }

    def read_one(sid: str) -> tuple[str, list[Row] | None]:
        start, end = windows[sid]
        read = tracked[sid]
        path = endpoint.path.format(subscription_id=sid)
        params = {**endpoint.params, "timeframe_start": _iso(start), "timeframe_end": _iso(end)}
        of = {"subscription_id": sid, "customer_id": read["customer_id"]}
        try:
            rows = series.rows(ctx.client.get(path, params)["data"], of)
            if series.grouped:
                rows += _grouped(ctx, path, params, series, rows, of)
        except OrbNotFound:
            return sid, None
        return sid, rows

    for sid, rows in bounded_map(ctx.pool(endpoint.rate_class), read_one, sorted(windows)):
        if rows is None:
            tracked.pop(sid, None)
            continue
        tracked[sid]["read_to"] = _iso(windows[sid][1])
        if rows:
            yield tracked[sid]["customer_id"], rows
    state["subscriptions"] = {
        sid: read for sid, read in tracked.items() if not _final(ctx, series, read, now)
    }
    state["cursor"] = watermark.value


@dataclass(frozen=True)
class Backfill:
    """The events of `customer_id` (None: every customer) from `start` to `end` were
    replaced or added since the last run."""

    customer_id: str | None
    start: datetime
    end: datetime


def _backfills(ctx: SyncContext, state: ListingState, incremental: bool) -> list[Backfill]:
    """The backfills reflected or reverted since this table last asked (one overlap window
    back); none on a first run, which reads everything anyway, or on an account without
    backfills."""
    since, state["backfills_checked"] = state.get("backfills_checked"), orb_now(ctx).isoformat()
    if not incremental or since is None:
        return []
    try:
        pages = ctx.shared_listing(BACKFILLS, {}).pages
    except (OrbNotFound, OrbForbidden):
        return []
    moved = parse_time(since) - CREATED.overlap
    return [
        Backfill(
            row.get("customer_id"),
            parse_time(row["timeframe_start"]),
            parse_time(row["timeframe_end"]),
        )
        for page in pages
        for row in page
        if any(
            isinstance(row.get(name), str) and parse_time(row[name]) >= moved
            for name in ("close_time", "reverted_at")
        )
    ]


def _backfilled(
    ctx: SyncContext, backfills: list[Backfill]
) -> dict[str, tuple[Mapping[str, Any], datetime]]:
    """The subscriptions whose life overlaps a backfill of their customer (or of every
    customer), with where the earliest such backfill begins."""
    found: dict[str, tuple[Mapping[str, Any], datetime]] = {}
    for backfill in backfills:
        params = {"customer_id": backfill.customer_id} if backfill.customer_id else {}
        for page in ctx.shared_listing(SUBSCRIPTIONS, params).pages:
            for sub in page:
                ended = sub.get("end_date")
                if parse_time(sub["start_date"]) >= backfill.end or (
                    ended and parse_time(ended) <= backfill.start
                ):
                    continue
                before = found.get(sub["id"])
                start = min(backfill.start, before[1]) if before else backfill.start
                found[sub["id"]] = (sub, start)
    return found


def _tracked(sub: Mapping[str, Any], before: SeriesRead | None) -> SeriesRead:
    customer = sub.get("customer") or {}
    read = SeriesRead(
        customer_id=str(customer.get("id")),
        timezone=str(customer.get("timezone") or "UTC"),
        start_date=sub["start_date"],
        end_date=sub.get("end_date"),
    )
    if before and before.get("read_to"):
        read["read_to"] = before["read_to"]
    return read


def _may_end(read: SeriesRead) -> bool:
    """Not known to have ended before it was last read: it left the open listing, so Orb
    holds its end date."""
    end_date, read_to = read.get("end_date"), read.get("read_to")
    return not end_date or not read_to or parse_time(end_date) > parse_time(read_to)


def _span(
    ctx: SyncContext,
    series: Series,
    read: SeriesRead,
    now: datetime,
    backfilled: datetime | None = None,
) -> tuple[datetime, datetime] | None:
    """The timeframe this run reads of one subscription, None when it has nothing new: from
    the restatement window, or from where a backfill began if that is earlier."""
    start = parse_time(read["start_date"])
    zone = read["timezone"]
    since = [window_start(backfilled, series.window, zone)] if backfilled else []
    if read.get("read_to"):
        since.append(restated_from(ctx, series, read["read_to"], zone))
    if since:
        start = max(start, min(since))
    if ctx.start_date:
        start = max(start, window_start(ctx.start_date, series.window, zone))
    end_date = read.get("end_date")
    end = min(now, parse_time(end_date)) if end_date else now
    return (start, end) if start < end else None


def _final(ctx: SyncContext, series: Series, read: SeriesRead, now: datetime) -> bool:
    """Ended long enough ago that no window of it can be restated any more."""
    end_date = read.get("end_date")
    back = max(ctx.restatement, series.at_least)
    return bool(end_date and read.get("read_to") and parse_time(end_date) + back <= now)


def _grouped(
    ctx: SyncContext,
    path: str,
    params: Mapping[str, Any],
    series: Series,
    rows: list[Row],
    of: Mapping[str, Any],
) -> list[Row]:
    """The usage of each billable metric the subscription has, grouped by its configured
    property (`usage_group_by`)."""
    metrics = {row["billable_metric_id"] for row in rows}
    grouped: list[Row] = []
    for metric_id, key in sorted(ctx.usage_group_by.items()):
        if metric_id in metrics:
            query = {**params, "billable_metric_id": metric_id, "group_by": key}
            grouped += series.rows(ctx.client.get(path, query)["data"], of)
    return grouped


def _series(endpoint: Endpoint) -> Series:
    if endpoint.series is None:
        raise ValueError(f"catalog entry {endpoint.table} lacks what its sync strategy needs")
    return endpoint.series


READERS: Mapping[tuple[Scope, Sync], Reader] = {
    (Scope.ACCOUNT, Sync.RESTATED): read_account_series,
    (Scope.SUBSCRIPTION, Sync.RESTATED): read_subscription_series,
}
"""The readers of the restated strategies (`catalog.STRATEGIES`)."""
