"""How each kind of endpoint follows Orb, which has no `updated_at` and no "changed since" filter.

`READERS` holds one reader per (scope, sync) the catalog declares (`catalog.STRATEGIES`):

- `read_refresh`: the complete listing, every run. Cheap for catalogs, and the basis of
  deletion detection.
- `read_watermark`: append-only data, from the last cursor minus an overlap window.
- `read_lifecycle`: new objects by watermark, closed objects created with a past date
  (backdated one-offs, invoices of a subscription started in the past), a re-read of the open
  set (drafts, issued, active...), and a fetch by id of every object that left the open set or
  that a newer object points at (a credit note on an old paid invoice).
- Per customer, `fan_out` reads each customer's list concurrently for
  `read_customers_refresh` (every list, every run), `read_customers_watermark` (one cursor per
  customer: one shared cursor loses rows; each listing starts early enough to read again the
  rows still open, such as pending ledger entries) and `read_customers_on_activity` (only the
  customers whose activity feed moved, plus open objects by id: `_ActivityCheck`). A run that
  reads both an activity feed's table and its watcher lists each customer's feed once for the
  two (`SyncContext.feed_listing`).
- Per parent object (a plan's migrations, a coupon's subscriptions, a subscription's
  schedule), the same `fan_out` reads each parent's list: `read_parents_refresh` for every
  parent of a listing it shares with the parents' table, `read_open_parents` for the parents
  that can still change them (open, created since, or left the open set since).

Generators record what they listed completely in source state (`listings`). State is
committed only with the data of a successful extract, and the deletion sweep (`sweep.py`)
reads it after the load.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import dlt

from .account import record_account
from .catalog import (
    CUSTOMERS,
    ENDPOINTS,
    REFETCHED_BY,
    SHARED_LISTINGS,
    Activity,
    Cursor,
    Endpoint,
    OpenSet,
    Scope,
    Sync,
    listing_key,
)
from .client import (
    MAX_CONCURRENCY,
    PAGE_SIZE,
    OrbClient,
    OrbForbidden,
    OrbNotFound,
    Page,
    Params,
    ServerClock,
    in_context,
    rate_class,
)
from .state import ListingState, listings_of, record_listing

logger = logging.getLogger(__name__)

State = ListingState
T = TypeVar("T")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class FeedListing:
    """A listing from a timestamp on, made once for a run and read by the tables that share
    it: a customer's activity feed (its ledger), or the credit notes. Every row created
    since `since` (every row: None)."""

    since: datetime | None
    rows: Page
    listed_from: float
    """When the listing began (`time.time()`): where the next one may start, on Orb's clock."""

    def covers(self, since: datetime | None) -> bool:
        """Whether it holds every row a listing from `since` would."""
        return self.since is None or (since is not None and self.since <= since)

    def rows_since(self, field_name: str, since: datetime | None) -> Page:
        """Its rows a listing from `since` would have read."""
        if since is None:
            return list(self.rows)
        return [
            row
            for row in self.rows
            if not isinstance(row.get(field_name), str) or parse_time(row[field_name]) >= since
        ]


@dataclass(frozen=True)
class SharedListing:
    """A listing several tables read this run, requested once (`SyncContext.shared_listing`)."""

    pages: list[Page]
    listed_from: float
    """When the listing began (`time.time()`): where the next one may start, on Orb's clock."""

    @property
    def rows(self) -> Page:
        return [row for page in self.pages for row in page]


@dataclass
class SyncContext:
    """What every strategy needs for one run; one instance per source."""

    client: OrbClient
    started_at: datetime
    full_refresh: bool = False
    start_date: datetime | None = None
    full_refresh_every: timedelta | None = None
    max_concurrency: int = MAX_CONCURRENCY
    schema_changes: set[str] = field(default_factory=set)
    restatement: timedelta = timedelta(days=3)
    """How far back restated series are read again each run (`series.py`)."""
    usage_group_by: Mapping[str, str] = field(default_factory=dict)
    """Billable metric id -> the event property its usage is also read grouped by."""
    state: dict[str, Any] | None = None
    """The source state complete listings and the account are noted in: bound by the source's
    resources (`bind`), or a dict of its own for a listing read outside a pipeline
    (`reconcile`)."""
    selected: frozenset[str] = frozenset()
    """The tables this run reads, as far as known: an activity feed is shared between its
    table and the tables watching it only when the run reads both (`watchers`)."""
    _pools: dict[str, ThreadPoolExecutor] = field(default_factory=dict, repr=False)
    _feed_listings: dict[str, Future[FeedListing]] = field(default_factory=dict, repr=False)
    _customer_pages: list[Page] | None = field(default=None, repr=False)
    _shared: dict[str, Future[SharedListing]] = field(default_factory=dict, repr=False)
    _retrieved: dict[str, Future[dict[str, Any] | None]] = field(default_factory=dict, repr=False)
    _start_cursors: dict[str, Future[dict[str, str]]] = field(default_factory=dict, repr=False)
    _pools_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _customers_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _leases: int = field(default=0, repr=False)

    def is_full(self, state: State) -> bool:
        """A full listing on request, on first sync, and when the periodic sweep is due."""
        last = state.get("last_full_sync")
        if self.full_refresh or last is None:
            return True
        return bool(
            self.full_refresh_every
            and self.started_at - parse_time(last) >= self.full_refresh_every
        )

    def pool(self, klass: str) -> ThreadPoolExecutor:
        """One pool per Orb rate class, so a slow class never holds the other's threads."""
        with self._pools_lock:
            if klass not in self._pools:
                size = (
                    self.max_concurrency if klass == "read" else max(2, self.max_concurrency // 8)
                )
                self._pools[klass] = ThreadPoolExecutor(size, thread_name_prefix=f"orb-{klass}")
            return self._pools[klass]

    def customer_pages(self) -> list[Page]:
        """The run's one listing of customers: the `customers` table and every fan-out share it."""
        with self._customers_lock:
            if self._customer_pages is None:
                self._customer_pages = list(self.client.paginate(CUSTOMERS))
                customers = (obj for page in self._customer_pages for obj in page)
                record_account(self.source_state(), self.client.base_url, customers)
            return self._customer_pages

    def shared_listing(self, path: str, params: Params) -> SharedListing:
        """A listing several tables read this run (the subscriptions whose usage, costs,
        schedules and licenses are read), requested once: the first to ask lists it, the
        others wait for it."""

        def listing() -> SharedListing:
            listed_from = time.time()
            return SharedListing(list(self.client.paginate(path, params)), listed_from)

        return self._once(self._shared, listing_key(path, params), listing)

    def listing(self, path: str, params: Params) -> Iterator[Page]:
        """A listing's pages: requested once a run where other tables read the same listing
        (`catalog.SHARED_LISTINGS`), else streamed."""
        if listing_key(path, params) in SHARED_LISTINGS:
            yield from self.shared_listing(path, params).pages
        else:
            yield from self.client.paginate(path, params)

    def retrieve(self, path: str) -> dict[str, Any] | None:
        """One object by its path, None where Orb answers 404; requested once this run,
        however many tables ask (a subscription that left the open set, say)."""

        def get() -> dict[str, Any] | None:
            try:
                obj: dict[str, Any] = self.client.get(path)
                return obj
            except OrbNotFound:
                return None

        return self._once(self._retrieved, path, get)

    def cursors_at_start(self, table: str, state: State) -> Mapping[str, str]:
        """The per-customer cursors in `table`'s `state` as the run found them. Its reader
        moves them as it goes; a table watching its listings must not take a moved cursor for
        the start of a listing the reader never made."""
        return self._once(self._start_cursors, table, lambda: dict(state.get("cursors", {})))

    def _once(self, memo: dict[str, Future[T]], key: str, make: Callable[[], T]) -> T:
        """`make()`, called by the first to ask for `key` this run; the others wait for it."""
        with self._pools_lock:
            future = memo.get(key)
            first = future is None
            if future is None:
                future = memo[key] = Future()
        if first:
            try:
                future.set_result(make())
            except BaseException as exc:
                future.set_exception(exc)
                raise
        return future.result()

    def customer_ids(self) -> list[str]:
        return [obj["id"] for page in self.customer_pages() for obj in page]

    def record_listing(self, table: str, where: Mapping[str, Any] | None = None) -> None:
        """Note that `table` was listed completely (or completely within `where`) this run."""
        record_listing(listings_of(self.source_state()), table, self.started_at, where)

    def bind(self, source_state: dict[str, Any], selected: Iterable[str] = ()) -> None:
        """Record into this run's source state, which dlt hands out only during extract, and
        note the tables the run reads."""
        with self._pools_lock:
            if self.state is None:
                self.state = source_state
                self.selected = frozenset(selected)

    def source_state(self) -> dict[str, Any]:
        if self.state is None:
            raise RuntimeError("no source state to record in: bind one before reading")
        return self.state

    def listing_state(self, table: str) -> State:
        """Another table's listing state, as its resource holds it (`source.listing_state`)."""
        return cast(State, dlt.current.resource_state(table, self.source_state()))

    def watchers(self, feed: str) -> list[Endpoint]:
        """The tables this run reads that watch `feed` as their activity feed, when the run
        reads the feed's table too: the two share its listing (`feed_listing`)."""
        if feed not in self.selected:
            return []
        return [
            endpoint
            for endpoint in ENDPOINTS.values()
            if endpoint.activity
            and endpoint.activity.feed == feed
            and endpoint.table in self.selected
        ]

    def feed_listing(self, path: str, cursor: Cursor, since: datetime | None) -> FeedListing:
        """`path` listed from `since` (None: whole), once per run: a customer's activity feed,
        or the credit notes.

        The first of the tables sharing it to ask lists it; the others wait for that listing
        and take it as it is (`FeedListing.covers` says what it covers).
        """

        def listing() -> FeedListing:
            listed_from = time.time()
            params = {f"{cursor.param}[gte]": since.isoformat()} if since else {}
            rows = [row for page in self.client.paginate(path, params) for row in page]
            return FeedListing(since, rows, listed_from)

        return self._once(self._feed_listings, path, listing)

    @contextmanager
    def lease(self) -> Iterator[None]:
        """Held by each resource while it reads: the first opens the client (again, when dlt
        ran the resources before it to their end) and the last to end, done or failed, closes
        it and the pools."""
        with self._pools_lock:
            if self._leases == 0:
                self.client.open()
            self._leases += 1
        try:
            yield
        finally:
            with self._pools_lock:
                self._leases -= 1
                if self._leases == 0:
                    self._close()

    def close(self) -> None:
        """The pools and the client, for a context used without leases (`reconcile`)."""
        with self._pools_lock:
            self._close()

    def _close(self) -> None:
        while self._pools:
            self._pools.popitem()[1].shutdown(wait=False, cancel_futures=True)
        self.client.close()


class Watermark:
    """The cursor of one listing: where to start, and where the next run may start.

    The next run starts where this listing started, on Orb's clock: every row created before
    then has been read (the overlap window covers rows that become visible late), so rows
    seen before are not read again. Without Orb's clock (no `Date` header) it is the newest
    cursor seen, never later than the run's start. It is only read after the listing was
    exhausted.
    """

    def __init__(
        self, cursor: Cursor, previous: str | None, ceiling: datetime, clock: ServerClock
    ) -> None:
        self.cursor = cursor
        self.previous = previous
        self.ceiling = ceiling
        self.clock = clock
        self._listed_from = time.time()
        self._newest: datetime | None = None

    def since(self, floor: datetime | None) -> datetime | None:
        return parse_time(self.previous) - self.cursor.overlap if self.previous else floor

    def params(self, floor: datetime | None) -> dict[str, str]:
        since = self.since(floor)
        return {f"{self.cursor.param}[gte]": since.isoformat()} if since else {}

    def took(self, listing: FeedListing | SharedListing) -> Page:
        """The rows of a listing made for this one and maybe others (`SyncContext.feed_listing`,
        `SyncContext.shared_listing`), observed. The next run starts where that listing
        began, so the tables sharing it keep sharing it."""
        self._listed_from = listing.listed_from
        self.observe(listing.rows)
        return list(listing.rows)

    def observe(self, page: Iterable[Mapping[str, Any]]) -> None:
        ignore = self.cursor.ignore_while
        for obj in page:
            value = obj.get(self.cursor.field)
            if not isinstance(value, str) or (ignore and ignore.holds(obj)):
                continue
            stamp = parse_time(value)
            if self._newest is None or stamp > self._newest:
                self._newest = stamp

    @property
    def value(self) -> str | None:
        reached = self.clock.orb_time(self._listed_from)
        if reached is None and self._newest is not None:
            reached = min(self._newest, self.ceiling)
        if reached is None or (self.previous and parse_time(self.previous) > reached):
            return self.previous
        return reached.isoformat()


Listed = Iterator[tuple[str | None, Page]]
"""A strategy's pages, each with the customer it was listed for (None: account-wide)."""
Reader = Callable[["SyncContext", Endpoint, State], Listed]


def account_wide(read: Callable[[SyncContext, Endpoint, State], Iterator[Page]]) -> Reader:
    """An account-wide reader's pages, listed for no customer."""

    def listed(ctx: SyncContext, endpoint: Endpoint, state: State) -> Listed:
        for page in read(ctx, endpoint, state):
            yield None, page

    return listed


def read_refresh(ctx: SyncContext, endpoint: Endpoint, state: State) -> Iterator[Page]:
    if endpoint.path == CUSTOMERS:
        yield from ctx.customer_pages()
    else:
        path = endpoint.path
        pages = (page for params in _listings(endpoint) for page in ctx.listing(path, params))
        if (yield from _unless_lacking(endpoint, pages)):
            return
    ctx.record_listing(endpoint.table)


def _listings(endpoint: Endpoint) -> list[Params]:
    """The params of each listing that together read the endpoint whole: one, or one per
    value of a filter that takes one value (`ListedBy`)."""
    listed_by = endpoint.listed_by
    if listed_by is None:
        return [dict(endpoint.params)]
    return [{**endpoint.params, listed_by.param: value} for value in listed_by.values]


def _unless_lacking(endpoint: Endpoint, items: Iterator[T]) -> Generator[T, None, bool]:
    """`items`; True once Orb answers 404 or 403 for an endpoint of a feature the account
    lacks, which is skipped with one info line. The reader then records no listing, so the
    sweep leaves the rows of an earlier run as they are."""
    try:
        yield from items
    except (OrbNotFound, OrbForbidden) as exc:
        if endpoint.feature is None:
            raise
        logger.info("%s skipped: no %s on this account (%s)", endpoint.table, endpoint.feature, exc)
        return True
    return False


def read_watermark(ctx: SyncContext, endpoint: Endpoint, state: State) -> Iterator[Page]:
    """Rows created since the cursor minus the overlap. Where another table's refetch reads
    the same listing this run (`Refetch.listing_of`), the two list once."""
    full = ctx.is_full(state)
    watermark = _watermark(ctx, endpoint, None if full else state.get("cursor"))
    since = watermark.since(ctx.start_date)
    cursor = _required(endpoint.cursor, endpoint)
    refetcher = REFETCHED_BY.get(endpoint.table)
    listing = None
    if refetcher and {refetcher.table, endpoint.table} <= ctx.selected:
        other = _refetch_start(ctx, refetcher, ctx.listing_state(refetcher.table))
        listing = ctx.feed_listing(endpoint.path, cursor, _earlier(since, other))
    if listing is not None and listing.covers(since):
        watermark.took(listing)
        rows = listing.rows_since(cursor.field, since)
        if rows:
            yield rows
    else:
        for page in ctx.client.paginate(
            endpoint.path, {**endpoint.params, **watermark.params(ctx.start_date)}
        ):
            watermark.observe(page)
            yield page
    state["cursor"] = watermark.value
    _finish_full(ctx, endpoint, state, full)


def _earlier(one: datetime | None, other: datetime | None) -> datetime | None:
    """The earlier start of two listings; None (from the beginning) if either is."""
    return None if one is None or other is None else min(one, other)


def read_lifecycle(ctx: SyncContext, endpoint: Endpoint, state: State) -> Iterator[Page]:
    """New objects, then the open set, then whatever left it or was pointed at since."""
    open_set = _required(endpoint.open_set, endpoint)
    full = ctx.is_full(state)
    # Closed objects are read from a date on (the cursor, or --start-date); open ones always whole.
    from_date = not full or ctx.start_date is not None
    # Read from a date, objects pointed at since the last run may be older than that date.
    refetch = from_date and (not full or "refetch_cursor" in state)
    tracker = _OpenSetTracker(open_set)
    watermark = _watermark(ctx, endpoint, None if full else state.get("cursor"))
    closed = dict(endpoint.params)
    if from_date:
        closed[open_set.param] = list(open_set.closed)
    floor = None if open_set.closed_on else ctx.start_date
    for page in ctx.listing(endpoint.path, {**closed, **watermark.params(floor)}):
        watermark.observe(page)
        yield from tracker.fresh(_closed_since(page, open_set, ctx.start_date if full else None))
    if not full:
        for page in _created_closed(ctx, endpoint, closed, watermark):
            yield from tracker.fresh(page)
    if from_date:
        reopened = {**endpoint.params, open_set.param: list(open_set.statuses)}
        for page in ctx.listing(endpoint.path, reopened):
            yield from tracker.fresh(page)
        ctx.record_listing(
            endpoint.table, {"column": open_set.status_field, "values": list(open_set.statuses)}
        )
        stale = set(state.get("open_ids", ()))
        if refetch:
            stale |= _pointed_at(ctx, endpoint, state)
        for page in fetch_by_id(ctx, open_set.retrieve_path, sorted(stale - tracker.seen)):
            yield from tracker.fresh(page)
    if not refetch:
        _pointed_at(ctx, endpoint, state)
    state["cursor"] = watermark.value
    state["open_ids"] = sorted(tracker.open_ids)
    _finish_full(ctx, endpoint, state, full)


def _closed_since(page: Page, open_set: OpenSet, start: datetime | None) -> Page:
    """Without the objects that closed before `start`, where the listing cannot filter on the
    date they closed (`OpenSet.closed_on`)."""
    if start is None or open_set.closed_on is None:
        return page
    field_name = open_set.closed_on
    return [
        obj
        for obj in page
        if not isinstance(obj.get(field_name), str) or parse_time(obj[field_name]) >= start
    ]


def _created_closed(
    ctx: SyncContext, endpoint: Endpoint, closed: Mapping[str, Any], watermark: Watermark
) -> Iterator[Page]:
    """Closed objects dated before the watermark but created since the last run: backdated
    ones within their window, and those of parents created since (a backdated subscription)."""
    if watermark.previous is None:
        return
    if endpoint.backdated:
        since = parse_time(watermark.previous) - endpoint.backdated.window
        param = f"{watermark.cursor.param}[gte]"
        yield from ctx.client.paginate(
            endpoint.path, {**closed, **endpoint.backdated.params, param: since.isoformat()}
        )
    if listed_for := endpoint.listed_for_new:
        since = parse_time(watermark.previous) - watermark.cursor.overlap
        new_parents = {"created_at[gte]": since.isoformat()}
        parents = [
            obj["id"]
            for page in ctx.client.paginate(listed_for.parent_path, new_parents)
            for obj in page
        ]

        def objects_of(parent_id: str) -> Page:
            params = {**closed, listed_for.param: parent_id}
            return [obj for page in ctx.client.paginate(endpoint.path, params) for obj in page]

        for page in bounded_map(ctx.pool(endpoint.rate_class), objects_of, parents):
            if page:
                yield page


def fan_out(
    ctx: SyncContext,
    endpoint: Endpoint,
    parents: Iterable[str],
    read_one: Callable[[str, str, Params], T],
    key: str = "customer_id",
) -> Iterator[tuple[str, T | None]]:
    """Each parent's list (a customer's, by default) read by `read_one(parent_id, path,
    params)`, concurrently, in completion order; None for a parent deleted during the run (its
    rows are then marked deleted). `key` names the parent's id in the endpoint's path and
    params. An account without the endpoint's feature fails the fan-out (`lacks_feature`)."""
    kind = key.removesuffix("_id").replace("_", " ")

    def read(parent_id: str) -> tuple[str, T | None]:
        path = endpoint.path.format(**{key: parent_id})
        params = {
            k: v.format(**{key: parent_id}) if isinstance(v, str) else v
            for k, v in endpoint.params.items()
        }
        try:
            return parent_id, read_one(parent_id, path, params)
        except OrbNotFound as exc:
            if endpoint.feature is not None and exc.type.endswith("feature-not-available"):
                raise
            logger.warning(
                "%s %s disappeared during the run; its %s are marked deleted",
                kind,
                parent_id,
                endpoint.table,
            )
            return parent_id, None

    yield from bounded_map(ctx.pool(endpoint.rate_class), read, parents)


def read_parents_refresh(ctx: SyncContext, endpoint: Endpoint, state: State) -> Listed:
    """Every parent's complete list, every run (a plan's migrations, a coupon's
    subscriptions); the parents' listing is shared with their own table."""
    parent = _required(endpoint.parent, endpoint)

    def listed() -> Listed:
        ids = [obj["id"] for obj in ctx.shared_listing(parent.path, parent.params).rows]
        yield from _children(ctx, endpoint, ids)

    if not (yield from _unless_lacking(endpoint, listed())):
        ctx.record_listing(endpoint.table)


def read_open_parents(ctx: SyncContext, endpoint: Endpoint, state: State) -> Listed:
    """The lists of the parents that can still change them (`Sync.OPEN_PARENTS`): the open
    ones, those created since the last run, and by id those that left the open set since;
    every parent on a full run. A parent gone from Orb is listed as read, without rows, so
    the sweep marks its rows deleted."""
    parent = _required(endpoint.parent, endpoint)
    open_set, created = _required(parent.open_set, endpoint), _required(parent.created, endpoint)
    full = ctx.is_full(state)
    watermark = Watermark(
        created, None if full else state.get("cursor"), ctx.started_at, ctx.client.clock
    )
    found: dict[str, Mapping[str, Any]] = {}
    gone: list[str] = []

    def listed() -> Listed:
        found.update(open_and_new(ctx, parent.path, parent.params, open_set, watermark, full))
        if not full:
            left = sorted(set(state.get("open_ids", ())) - set(found))
            for page in fetch_by_id(ctx, open_set.retrieve_path, left):
                found.update((obj["id"], obj) for obj in page)
            gone.extend(parent_id for parent_id in left if parent_id not in found)
        yield from _children(ctx, endpoint, sorted(found))

    if (yield from _unless_lacking(endpoint, listed())):
        return
    state["cursor"] = watermark.value
    state["open_ids"] = sorted(
        parent_id
        for parent_id, obj in found.items()
        if obj.get(open_set.status_field) in open_set.statuses
    )
    if full:
        state["last_full_sync"] = ctx.started_at.isoformat()
        ctx.record_listing(endpoint.table)
    else:
        read = sorted([*found, *gone])
        ctx.record_listing(endpoint.table, {"column": parent.param, "values": read})


def open_and_new(
    ctx: SyncContext,
    path: str,
    params: Params,
    open_set: OpenSet,
    created: Watermark,
    full: bool,
) -> dict[str, Mapping[str, Any]]:
    """Every object of a listing on a full run; else the open ones and those created since
    the last run (`created`), whatever their status. The listings are shared by the tables
    that read them this run (subscription schedules, licenses, usage, costs)."""
    if full:
        listings = [ctx.shared_listing(path, params)]
    else:
        since = created.since(None)
        newer = {f"{created.cursor.param}[gte]": since.isoformat()} if since else {}
        listings = [
            ctx.shared_listing(path, {**params, open_set.param: sorted(open_set.statuses)}),
            ctx.shared_listing(path, {**params, **newer}),
        ]
    found: dict[str, Mapping[str, Any]] = {}
    for listing in listings:
        for page in listing.pages:
            found.update((obj["id"], obj) for obj in page)
    created.took(listings[-1])
    return found


def _children(ctx: SyncContext, endpoint: Endpoint, parents: Iterable[str]) -> Listed:
    """The objects listed under each parent, as rows that name the parent (`Parent.rows`)."""
    parent = _required(endpoint.parent, endpoint)

    def with_parent(obj: Mapping[str, Any], parent_id: str) -> dict[str, Any]:
        return {**obj, parent.param: obj.get(parent.param) or parent_id}

    row = parent.rows or with_parent
    for parent_id, rows in fan_out(ctx, endpoint, parents, _all_rows(ctx), parent.param):
        if rows:
            yield None, [row(obj, parent_id) for obj in rows]


def read_customers_refresh(ctx: SyncContext, endpoint: Endpoint, state: State) -> Listed:
    """Every customer's complete list, every run."""
    for customer_id, rows in fan_out(ctx, endpoint, ctx.customer_ids(), _all_rows(ctx)):
        if rows:
            yield customer_id, rows
    ctx.record_listing(endpoint.table)


def read_customers_watermark(ctx: SyncContext, endpoint: Endpoint, state: State) -> Listed:
    """Append-only per-customer lists, with one cursor per customer (one shared cursor loses
    rows). A customer's listing starts early enough to hold its rows still open last run
    (pending ledger entries), so one listing reads them again until they close. Where a
    table watches the list as its activity feed (credit blocks, the ledger) and the run reads
    both, each customer's list is read once for the two (`SyncContext.feed_listing`)."""
    full = ctx.is_full(state)
    cursor = _required(endpoint.cursor, endpoint)
    previous = ctx.cursors_at_start(endpoint.table, state)
    cursors: dict[str, str] = state.setdefault("cursors", {})
    open_rows: dict[str, dict[str, str]] = state.setdefault("open_rows", {})
    shared = not full and bool(ctx.watchers(endpoint.table))

    def read_one(customer_id: str, path: str, params: Params) -> tuple[Page, str | None]:
        watermark = _watermark(ctx, endpoint, None if full else previous.get(customer_id))
        since = watermark.since(ctx.start_date)
        if since is not None and not full:
            since = _open_from(since, open_rows.get(customer_id))
        shared_since = _feed_since(ctx, endpoint, customer_id) if shared else None
        listing = ctx.feed_listing(path, cursor, shared_since) if shared_since else None
        rows: Page = []
        if listing is not None and since is not None and listing.covers(since):
            rows = watermark.took(listing)
        else:
            since_params = {f"{cursor.param}[gte]": since.isoformat()} if since else {}
            for page in ctx.client.paginate(path, {**params, **since_params}):
                watermark.observe(page)
                rows.extend(page)
        return rows, watermark.value

    for customer_id, read in fan_out(ctx, endpoint, ctx.customer_ids(), read_one):
        rows, value = read or ([], None)
        if value:
            cursors[customer_id] = value
        if cursor.open_while:
            _remember_open(open_rows, customer_id, rows, cursor)
        if rows:
            yield customer_id, rows
    _finish_full(ctx, endpoint, state, full)


def read_customers_on_activity(ctx: SyncContext, endpoint: Endpoint, state: State) -> Listed:
    """The lists of the customers whose activity feed moved since the last run, and their
    open objects by id (`_ActivityCheck`); every customer on a full pass."""
    activity = _ActivityCheck(
        ctx, endpoint, _required(endpoint.activity, endpoint), state, ctx.is_full(state)
    )

    def relisted(customers: Iterable[str]) -> Listed:
        for customer_id, rows in fan_out(ctx, endpoint, customers, _all_rows(ctx)):
            activity.listed(customer_id, rows or [])
            if rows:
                yield customer_id, rows

    activity.list_awaited()
    yield from relisted(activity.customers())
    yield from activity.reread_open()
    yield from relisted(activity.vanished)
    activity.finish(endpoint.table)


def _all_rows(ctx: SyncContext) -> Callable[[str, str, Params], Page]:
    """A reader of a customer's complete list."""

    def read_one(customer_id: str, path: str, params: Params) -> Page:
        return [row for page in ctx.client.paginate(path, params) for row in page]

    return read_one


READERS: Mapping[tuple[Scope, Sync], Reader] = {
    (Scope.ACCOUNT, Sync.REFRESH): account_wide(read_refresh),
    (Scope.ACCOUNT, Sync.WATERMARK): account_wide(read_watermark),
    (Scope.ACCOUNT, Sync.LIFECYCLE): account_wide(read_lifecycle),
    (Scope.CUSTOMER, Sync.REFRESH): read_customers_refresh,
    (Scope.CUSTOMER, Sync.WATERMARK): read_customers_watermark,
    (Scope.CUSTOMER, Sync.ON_ACTIVITY): read_customers_on_activity,
    (Scope.PARENT, Sync.REFRESH): read_parents_refresh,
    (Scope.PARENT, Sync.OPEN_PARENTS): read_open_parents,
}
"""The reader of each strategy the catalog declares (`catalog.STRATEGIES`)."""


def fetch_by_id(ctx: SyncContext, path_template: str, ids: list[str]) -> Iterator[Page]:
    """Retrieve objects one by one, concurrently; a 404 means the object is gone."""

    def retrieve(object_id: str) -> dict[str, Any] | None:
        return ctx.retrieve(path_template.format(id=object_id))

    page: Page = []
    for obj in bounded_map(ctx.pool(rate_class(path_template)), retrieve, ids):
        if obj is not None:
            page.append(obj)
        if len(page) == PAGE_SIZE:
            yield page
            page = []
    if page:
        yield page


def bounded_map(
    pool: ThreadPoolExecutor, fn: Callable[[str], Any], keys: Iterable[str], window: int = 256
) -> Iterator[Any]:
    """`pool.map` that keeps at most `window` calls in flight and yields in completion order."""
    pending: set[Future[Any]] = set()
    keys_left = iter(keys)
    try:
        while True:
            for key in keys_left:
                pending.add(pool.submit(in_context(fn), key))
                if len(pending) >= window:
                    break
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:
        for future in pending:
            future.cancel()


def _open_from(since: datetime, open_rows: Mapping[str, str] | None) -> datetime:
    """Where a customer's listing starts: `since`, or its oldest row still open last run,
    if older. Reading from there costs a few rows and no request; the open rows come back
    whatever they became, and those gone are forgotten (`_remember_open`)."""
    stamps = [parse_time(stamp) for stamp in (open_rows or {}).values()]
    return min([since, *stamps])


def _remember_open(
    open_rows: dict[str, dict[str, str]], customer_id: str, rows: Page, cursor: Cursor
) -> None:
    """Ids and cursors of the customer's rows still open, where its next listing starts
    (`_open_from`)."""
    open_while = cursor.open_while
    still = {
        row["id"]: row[cursor.field]
        for row in rows
        if open_while and open_while.holds(row) and isinstance(row.get(cursor.field), str)
    }
    if still:
        open_rows[customer_id] = still
    else:
        open_rows.pop(customer_id, None)


class _ActivityCheck:
    """Which customers `Sync.ON_ACTIVITY` re-reads, and what it remembers for the next run.

    Each live customer's feed is asked whether it has entries since the customer was last
    checked. Where the run also reads the feed's own table (the ledger), the answer comes
    from that table's listing of the customer, if it starts early enough
    (`SyncContext.feed_listing`); otherwise a one-row request asks. Times are on Orb's clock
    when it answers with a `Date`, else the run's own start. State written before open
    objects were remembered by id gets one complete pass.

    An open object that `awaits` something (a block, its purchase invoice) remembers what its
    customer had open in that listing when it was first seen open. Its customer's open
    objects are read again by id once one of those has left the listing, and every run where
    none was remembered. The listing is made before any object is read, so a change that
    happens during the run is seen by the next.
    """

    def __init__(
        self, ctx: SyncContext, endpoint: Endpoint, activity: Activity, state: State, full: bool
    ) -> None:
        self.ctx = ctx
        self.activity = activity
        self.state = state
        self.full = full or "open_objects" not in state
        self.feed_listed: dict[str, str] = {} if self.full else dict(state.get("feed_listed", {}))
        self.feed = (
            ENDPOINTS[activity.feed]
            if activity.feed and endpoint in ctx.watchers(activity.feed)
            else None
        )
        self.open_ids: dict[str, list[str]] = dict(state.get("open_objects", {}))
        self.awaiting: dict[str, list[str]] = {} if self.full else dict(state.get("awaiting", {}))
        self.awaited_open: dict[str, set[str]] = {}
        self.listed_ids: list[str] = []
        self.vanished: list[str] = []
        self._checked_from = time.time()

    def list_awaited(self) -> None:
        """What each customer has open that its open objects may be waiting on, now."""
        awaits = self.activity.awaits
        if awaits is None:
            return
        for page in self.ctx.client.paginate(awaits.path, awaits.params):
            for obj in page:
                customer = obj.get("customer") or {}
                self.awaited_open.setdefault(customer.get("id", ""), set()).add(obj["id"])

    def _may_have_changed(self, object_id: str, customer_id: str) -> bool:
        """Whether an open object can have changed without a feed entry since it was read."""
        if self.activity.awaits is None:
            return True
        awaited = self.awaiting.get(object_id)
        return not awaited or not set(awaited) <= self.awaited_open.get(customer_id, set())

    def customers(self) -> Iterator[str]:
        """Every live customer on a complete pass, else those whose feed moved."""
        live = self.ctx.customer_ids()
        if self.full:
            yield from live
            return
        for customer_id, moved, listed in bounded_map(self.ctx.pool("read"), self._moved, live):
            if listed:
                self.feed_listed[customer_id] = listed
            else:
                self.feed_listed.pop(customer_id, None)
            if moved:
                yield customer_id

    def _moved(self, customer_id: str) -> tuple[str, bool, str | None]:
        """Whether the customer's feed has entries since its last check, and when the listing
        that answered began, if it was the feed table's."""
        since = _checked_since(self.ctx, self.state, self.activity, customer_id)
        if since is None:
            return customer_id, True, None
        path = self.activity.path.format(customer_id=customer_id)
        field_name = self.activity.cursor.field
        try:
            listing = self._feed_listing(customer_id, path, since)
            if listing is not None:
                moved = any(
                    isinstance(row.get(field_name), str) and parse_time(row[field_name]) >= since
                    for row in listing.rows
                )
                began = self.ctx.client.clock.orb_time(listing.listed_from) or self.ctx.started_at
                return customer_id, moved, began.isoformat()
            params: Params = {f"{self.activity.cursor.param}[gte]": since.isoformat(), "limit": 1}
            body = self.ctx.client.get(path, params)
        except OrbNotFound:
            return customer_id, True, None
        return customer_id, bool(isinstance(body, dict) and body.get("data")), None

    def _feed_listing(self, customer_id: str, path: str, since: datetime) -> FeedListing | None:
        """The feed table's listing of the customer this run, when it covers `since`."""
        shared_since = _feed_since(self.ctx, self.feed, customer_id) if self.feed else None
        if shared_since is None or self.feed is None:
            return None
        listing = self.ctx.feed_listing(path, _required(self.feed.cursor, self.feed), shared_since)
        return listing if listing.covers(since) else None

    def listed(self, customer_id: str, rows: Page) -> None:
        self.listed_ids.append(customer_id)
        self._remember(customer_id, rows)

    def reread_open(self) -> Iterator[tuple[str, Page]]:
        """Open objects of the customers not re-listed, by id, where one of them may have
        changed. A customer whose open object is gone (404) lands in `vanished`, to be
        re-listed so the sweep sees the deletion."""
        listed, live = set(self.listed_ids), set(self.ctx.customer_ids())
        owners = {
            object_id: customer_id
            for customer_id, object_ids in self.open_ids.items()
            if customer_id in live
            and customer_id not in listed
            and any(self._may_have_changed(o, customer_id) for o in object_ids)
            for object_id in object_ids
        }
        found: dict[str, Page] = {}
        for page in fetch_by_id(self.ctx, self.activity.retrieve_path, sorted(owners)):
            for obj in page:
                found.setdefault(owners.pop(obj["id"]), []).append(obj)
        self.vanished = sorted(set(owners.values()))
        for customer_id, rows in found.items():
            if customer_id not in self.vanished:
                self._remember(customer_id, rows)
                yield customer_id, rows

    def _remember(self, customer_id: str, rows: Page) -> None:
        open_ids = [row["id"] for row in rows if self.activity.open.holds(row)]
        if open_ids:
            self.open_ids[customer_id] = open_ids
        else:
            self.open_ids.pop(customer_id, None)
        awaited = sorted(self.awaited_open.get(customer_id, ()))
        for object_id in open_ids:
            if self.activity.awaits is not None and object_id not in self.awaiting:
                self.awaiting[object_id] = awaited

    def finish(self, table: str) -> None:
        checked_from = self.ctx.client.clock.orb_time(self._checked_from) or self.ctx.started_at
        live = set(self.ctx.customer_ids())
        self.state["activity_since"] = checked_from.isoformat()
        self.state["open_objects"] = {
            customer_id: ids for customer_id, ids in self.open_ids.items() if customer_id in live
        }
        still_open = {o for ids in self.state["open_objects"].values() for o in ids}
        awaiting = {o: ids for o, ids in self.awaiting.items() if o in still_open}
        if awaiting:
            self.state["awaiting"] = awaiting
        else:
            self.state.pop("awaiting", None)
        feed_listed = {c: at for c, at in self.feed_listed.items() if c in live}
        if feed_listed:
            self.state["feed_listed"] = feed_listed
        else:
            self.state.pop("feed_listed", None)
        self.state.pop("open_customers", None)
        if self.full:
            self.state["last_full_sync"] = self.ctx.started_at.isoformat()
            self.ctx.record_listing(table)
        else:
            self.ctx.record_listing(table, {"column": "customer_id", "values": self.listed_ids})


def _checked_since(
    ctx: SyncContext, state: State, activity: Activity, customer_id: str
) -> datetime | None:
    """Where a watcher's question to a customer's feed starts: its last check of the customer
    minus the overlap. None on a complete pass."""
    if ctx.is_full(state) or "open_objects" not in state:
        return None
    checked = state.get("feed_listed", {}).get(customer_id) or state.get("activity_since")
    return parse_time(checked) - activity.cursor.overlap if checked else None


def _feed_since(ctx: SyncContext, feed: Endpoint, customer_id: str) -> datetime | None:
    """Where this run's shared listing of a customer's feed starts, the same for the feed's
    table and its watchers, whichever asks first: the feed table's cursor minus the overlap,
    or up to one overlap earlier where a watcher last checked the customer before that (the
    blocks' checks begin before the ledger's listings in the same run), or earlier still where
    the customer has rows still open (`_open_from`). None where the feed
    table lists the customer from the start (a full pass, a new customer), in which case the
    watchers ask on their own."""
    state = ctx.listing_state(feed.table)
    cursor = _required(feed.cursor, feed)
    previous = ctx.cursors_at_start(feed.table, state).get(customer_id)
    full_now = ctx.is_full(state) or state.get("last_full_sync") == ctx.started_at.isoformat()
    if full_now or previous is None:
        return None
    since = parse_time(previous) - cursor.overlap
    for watcher in ctx.watchers(feed.table):
        activity = _required(watcher.activity, watcher)
        checked = _checked_since(ctx, ctx.listing_state(watcher.table), activity, customer_id)
        if checked is not None and since - cursor.overlap <= checked < since:
            since = checked
    return _open_from(since, state.get("open_rows", {}).get(customer_id))


class _OpenSetTracker:
    """Drops objects already emitted this run and remembers which ones are still open."""

    def __init__(self, open_set: OpenSet) -> None:
        self.open_set = open_set
        self.seen: set[str] = set()
        self.open_ids: set[str] = set()

    def fresh(self, page: Page) -> Iterator[Page]:
        new = [obj for obj in page if obj["id"] not in self.seen]
        self.seen.update(obj["id"] for obj in new)
        statuses = self.open_set.statuses
        self.open_ids.update(
            obj["id"] for obj in new if obj.get(self.open_set.status_field) in statuses
        )
        if new:
            yield new


def _pointed_at(ctx: SyncContext, endpoint: Endpoint, state: State) -> set[str]:
    """Ids that newer objects point at, e.g. invoices that got a credit note since last run,
    or whose credit note was voided since (`Refetch.changed_field`).

    The first run and a listing of every status call it only to move the cursor, which must
    come from Orb's own timestamps.
    """
    refetch = endpoint.refetch
    if refetch is None:
        return set()
    watermark = Watermark(REFETCH, state.get("refetch_cursor"), ctx.started_at, ctx.client.clock)
    since = watermark.since(None)
    start = _refetch_start(ctx, endpoint, state)

    def moved(obj: Mapping[str, Any]) -> bool:
        stamps = (obj.get("created_at"), obj.get(refetch.changed_field or ""))
        return since is None or any(isinstance(s, str) and parse_time(s) >= since for s in stamps)

    listing = None
    if refetch.listing_of and {refetch.listing_of, endpoint.table} <= ctx.selected:
        other = _watermark_start(ctx, ENDPOINTS[refetch.listing_of])
        listing = ctx.feed_listing(refetch.path, REFETCH, _earlier(start, other))
    pages: Iterable[Page]
    if listing is not None and listing.covers(start):
        watermark.took(listing)
        pages = [listing.rows_since(REFETCH.field, start)]
    else:
        params = {f"{REFETCH.param}[gte]": start.isoformat()} if start else {}
        pages = ctx.client.paginate(refetch.path, params)
    ids: set[str] = set()
    for page in pages:
        watermark.observe(page)
        ids.update(
            obj[refetch.id_field] for obj in page if obj.get(refetch.id_field) and moved(obj)
        )
    state["refetch_cursor"] = watermark.value
    return ids


REFETCH = Cursor("created_at", "created_at")
"""The cursor of a refetch listing: the newer objects' creation."""


def _watermark_start(ctx: SyncContext, endpoint: Endpoint) -> datetime | None:
    """Where another table's account-wide watermark listing starts this run (None: whole).
    Asked before that table has listed, its cursor has not moved yet."""
    state = ctx.listing_state(endpoint.table)
    previous = None if ctx.is_full(state) else state.get("cursor")
    return _watermark(ctx, endpoint, previous).since(ctx.start_date)


def _refetch_start(ctx: SyncContext, endpoint: Endpoint, state: State) -> datetime | None:
    """Where `endpoint`'s refetch listing starts this run: its cursor minus the overlap, and
    minus `Refetch.changed_within` where later changes are looked for; None: from the start."""
    refetch = _required(endpoint.refetch, endpoint)
    previous = state.get("refetch_cursor")
    if previous is None:
        return None
    since = parse_time(previous) - REFETCH.overlap
    return since - refetch.changed_within if refetch.changed_field else since


def _watermark(ctx: SyncContext, endpoint: Endpoint, previous: str | None) -> Watermark:
    return Watermark(
        _required(endpoint.cursor, endpoint), previous, ctx.started_at, ctx.client.clock
    )


def _finish_full(ctx: SyncContext, endpoint: Endpoint, state: State, full: bool) -> None:
    """A full listing resets the periodic sweep; it proves deletions only without a start date."""
    if not full:
        return
    state["last_full_sync"] = ctx.started_at.isoformat()
    if ctx.start_date is None:
        ctx.record_listing(endpoint.table)


def _required(value: T | None, endpoint: Endpoint) -> T:
    """A field the catalog guarantees for the endpoint's strategy (`Endpoint.__post_init__`)."""
    if value is None:
        raise ValueError(f"catalog entry {endpoint.table} lacks what its sync strategy needs")
    return value
