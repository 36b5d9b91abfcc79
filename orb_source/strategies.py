"""How each kind of endpoint follows Orb, which has no `updated_at` and no "changed since" filter.

Three sync strategies, chosen per endpoint in the catalog:

- `read_refresh`: the complete listing, every run. Cheap for catalogs and per-customer lists
  without cursors, and the basis of deletion detection.
- `read_watermark`: append-only data, from the last cursor minus an overlap window. Per-customer
  endpoints keep one cursor per customer (one shared cursor loses rows).
- `read_lifecycle`: new objects by watermark, a re-read of the open set (drafts, issued,
  active...), and a fetch by id of every object that left the open set or that a newer
  object points at (a credit note on an old paid invoice).

Generators record what they listed completely in source state (`listings`). State is
committed only with the data of a successful extract, and the deletion sweep (`sweep.py`)
reads it after the load.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dlt

from .catalog import Cursor, Endpoint, OpenSet
from .client import PAGE_SIZE, OrbClient, OrbNotFound, Page, rate_class

logger = logging.getLogger(__name__)

State = dict[str, Any]


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class SyncContext:
    """What every strategy needs for one run; one instance per source."""

    client: OrbClient
    started_at: datetime
    full_refresh: bool = False
    start_date: datetime | None = None
    full_refresh_every: timedelta | None = None
    max_concurrency: int = 32
    schema_changes: set[str] = field(default_factory=set)
    _pools: dict[str, ThreadPoolExecutor] = field(default_factory=dict, repr=False)
    _customer_ids: list[str] | None = field(default=None, repr=False)
    _pools_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _customers_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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

    def customer_ids(self) -> list[str]:
        """Every live customer's id, listed once per run for all per-customer endpoints."""
        with self._customers_lock:
            if self._customer_ids is None:
                pages = self.client.paginate("/customers")
                self._customer_ids = [obj["id"] for page in pages for obj in page]
            return self._customer_ids

    def record_listing(self, table: str, where: Mapping[str, Any] | None = None) -> None:
        """Note that `table` was listed completely (or completely within `where`) this run."""
        entry = dlt.current.source_state().setdefault("listings", {}).setdefault(table, {})
        key = "complete" if where is None else "partial"
        entry[key] = {"at": self.started_at.isoformat(), **(where or {})}

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


class Watermark:
    """The cursor of one listing: where to start, and where the next run may start.

    The new value is the newest cursor seen, never later than the run's start (drafts can
    be dated in the future) and never past a row that is still `hold_while` (a pending
    ledger entry can still change). It is only read after the listing was exhausted.
    """

    def __init__(self, cursor: Cursor, previous: str | None, ceiling: datetime) -> None:
        self.cursor = cursor
        self.previous = previous
        self.ceiling = ceiling
        self._newest: datetime | None = None
        self._held: datetime | None = None

    def params(self, floor: datetime | None) -> dict[str, str]:
        since = parse_time(self.previous) - self.cursor.overlap if self.previous else floor
        return {f"{self.cursor.param}[gte]": since.isoformat()} if since else {}

    def observe(self, page: Iterable[Mapping[str, Any]]) -> None:
        hold, ignore = self.cursor.hold_while, self.cursor.ignore_while
        for obj in page:
            value = obj.get(self.cursor.field)
            if not isinstance(value, str) or (ignore and obj.get(ignore[0]) in ignore[1]):
                continue
            stamp = parse_time(value)
            if self._newest is None or stamp > self._newest:
                self._newest = stamp
            if hold and obj.get(hold[0]) in hold[1] and (self._held is None or stamp < self._held):
                self._held = stamp

    @property
    def value(self) -> str | None:
        reached = self._held or self._newest
        if reached is None:
            return self.previous
        reached = min(reached, self.ceiling)
        if self._held is None and self.previous and parse_time(self.previous) > reached:
            return self.previous
        return reached.isoformat()


def read_refresh(ctx: SyncContext, endpoint: Endpoint, state: State) -> Iterator[Page]:
    yield from ctx.client.paginate(endpoint.path, endpoint.params)
    ctx.record_listing(endpoint.table)


def read_watermark(ctx: SyncContext, endpoint: Endpoint, state: State) -> Iterator[Page]:
    full = ctx.is_full(state)
    watermark = _watermark(ctx, endpoint, None if full else state.get("cursor"))
    for page in ctx.client.paginate(
        endpoint.path, {**endpoint.params, **watermark.params(ctx.start_date)}
    ):
        watermark.observe(page)
        yield page
    state["cursor"] = watermark.value
    _finish_full(ctx, endpoint, state, full)


def read_lifecycle(ctx: SyncContext, endpoint: Endpoint, state: State) -> Iterator[Page]:
    """New objects, then the open set, then whatever left it or was pointed at since."""
    open_set = _required(endpoint.open_set, endpoint)
    full = ctx.is_full(state)
    tracker = _OpenSetTracker(open_set)
    watermark = _watermark(ctx, endpoint, None if full else state.get("cursor"))
    new_objects = {**endpoint.params, **watermark.params(ctx.start_date)}
    if not full:
        new_objects[open_set.param] = list(open_set.closed)
    for page in ctx.client.paginate(endpoint.path, new_objects):
        watermark.observe(page)
        yield from tracker.fresh(page)
    if not full:
        reopened = {**endpoint.params, open_set.param: list(open_set.statuses)}
        for page in ctx.client.paginate(endpoint.path, reopened):
            yield from tracker.fresh(page)
        ctx.record_listing(
            endpoint.table, {"column": open_set.status_field, "values": list(open_set.statuses)}
        )
        stale = set(state.get("open_ids", ())) | _pointed_at(ctx, endpoint, state)
        for page in fetch_by_id(ctx, open_set.retrieve_path, sorted(stale - tracker.seen)):
            yield from tracker.fresh(page)
    if full:
        _pointed_at(ctx, endpoint, state)
    state["cursor"] = watermark.value
    state["open_ids"] = sorted(tracker.open_ids)
    _finish_full(ctx, endpoint, state, full)


def read_per_customer(
    ctx: SyncContext, endpoint: Endpoint, state: State
) -> Iterator[tuple[str, Page]]:
    """Fan out over every customer; watermark endpoints keep one cursor per customer."""
    full = ctx.is_full(state)
    cursors: dict[str, str] = state.setdefault("cursors", {})

    def read_one(customer_id: str) -> tuple[str, Page, str | None]:
        path = endpoint.path.format(customer_id=customer_id)
        params = {
            k: v.format(customer_id=customer_id) if isinstance(v, str) else v
            for k, v in endpoint.params.items()
        }
        watermark = (
            _watermark(ctx, endpoint, None if full else cursors.get(customer_id))
            if endpoint.cursor
            else None
        )
        if watermark:
            params |= watermark.params(ctx.start_date)
        rows: Page = []
        try:
            for page in ctx.client.paginate(path, params):
                if watermark:
                    watermark.observe(page)
                rows.extend(page)
        except OrbNotFound:
            logger.warning(
                "customer %s disappeared during the run; its %s are marked deleted",
                customer_id,
                endpoint.table,
            )
            return customer_id, [], None
        return customer_id, rows, watermark.value if watermark else None

    for customer_id, rows, cursor in bounded_map(
        ctx.pool(rate_class(endpoint.path)), read_one, ctx.customer_ids()
    ):
        if cursor:
            cursors[customer_id] = cursor
        if rows:
            yield customer_id, rows
    if endpoint.cursor is None:
        ctx.record_listing(endpoint.table)
    else:
        _finish_full(ctx, endpoint, state, full)


def fetch_by_id(ctx: SyncContext, path_template: str, ids: list[str]) -> Iterator[Page]:
    """Retrieve objects one by one, concurrently; a 404 means the object is gone."""

    def retrieve(object_id: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = ctx.client.get(path_template.format(id=object_id))
            return obj
        except OrbNotFound:
            return None

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
                pending.add(pool.submit(fn, key))
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
    """Ids that newer objects point at, e.g. invoices that got a credit note since last run.

    A full run calls it only to move the cursor, which must come from Orb's own timestamps.
    """
    if endpoint.refetch_from is None:
        return set()
    path, id_field = endpoint.refetch_from
    created = Cursor("created_at", "created_at")
    watermark = Watermark(created, state.get("refetch_cursor"), ctx.started_at)
    ids: set[str] = set()
    for page in ctx.client.paginate(path, watermark.params(None)):
        watermark.observe(page)
        ids.update(obj[id_field] for obj in page if obj.get(id_field))
    state["refetch_cursor"] = watermark.value
    return ids


def _watermark(ctx: SyncContext, endpoint: Endpoint, previous: str | None) -> Watermark:
    return Watermark(_required(endpoint.cursor, endpoint), previous, ctx.started_at)


def _finish_full(ctx: SyncContext, endpoint: Endpoint, state: State, full: bool) -> None:
    """A full listing resets the periodic sweep; it proves deletions only without a start date."""
    if not full:
        return
    state["last_full_sync"] = ctx.started_at.isoformat()
    if ctx.start_date is None:
        ctx.record_listing(endpoint.table)


def _required(value: Any, endpoint: Endpoint) -> Any:
    if value is None:
        raise ValueError(f"catalog entry {endpoint.table} lacks what its sync strategy needs")
    return value
