"""The `orb` dlt source: one resource per table, built from the endpoint catalog."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict, Unpack, cast

import dlt
from dlt.common.storages.exceptions import CurrentLoadPackageStateNotAvailable
from dlt.common.typing import TSecretStrValue
from dlt.extract import DltResource, DltSource

from . import series, strategies
from .arrow import Held, arrow_items
from .catalog import (
    ARROW_TABLES,
    CATALOG,
    EMITTED_ONCE,
    PAGE_DECODERS,
    TABLES,
    Endpoint,
    Scope,
    Sync,
)
from .client import (
    DEFAULT_BASE_URL,
    MAX_ATTEMPTS,
    MAX_CONCURRENCY,
    REQUEST_TIMEOUT,
    OrbClient,
    RateLimits,
    RequestStats,
    counted_for,
)
from .drift import mismatched_types, unknown_kinds
from .hints import resource_hints
from .lakehouse import MERGING_FORMATS, propagate_load_id
from .precision import Fitting, fit_rows, objects_at
from .state import ListingState
from .strategies import Listed, Reader, SyncContext
from .transform import Row, split_children, to_rows, without_field

logger = logging.getLogger(__name__)

BATCH_ROWS = 1_000
"""Pages are handed to dlt in batches: its per-item overhead is about 20 ms for Arrow data."""


class SourceOptions(TypedDict, total=False):
    """The settings of `orb()` a caller of `runner.run_pipeline` may give; the others the
    runner sets itself (credentials, start date, state). Defaults are `orb_tables`'."""

    full_refresh_every_days: int | None
    max_concurrency: int
    read_rate_limit: float
    credit_balance_rate_limit: float
    analytics_rate_limit: float
    restatement_days: int
    usage_group_by: dict[str, str] | None
    request_timeout: float
    max_attempts: int
    arrow: bool


@dataclass(frozen=True)
class Output:
    """How rows reach dlt: which tables go as Arrow tables rather than dicts, which are
    loaded for the first time (appended, see `write_disposition`), and in which table format
    (`lakehouse.py`) on the filesystem destination."""

    arrow_tables: frozenset[str] = frozenset()
    first_loads: frozenset[str] = frozenset()
    table_format: str | None = None
    emitted: dict[str, set[str]] = field(default_factory=dict)
    """Ids emitted so far this run, for the tables whose merge needs each object once."""

    def __post_init__(self) -> None:
        # An upsert of two copies of one object fails (Delta) or stores both (a new table).
        # Lifecycle reads already emit each object once; the other tables are deduplicated here.
        if self.table_format in MERGING_FORMATS:
            self.emitted.update({table: set() for table in TABLES if table not in EMITTED_ONCE})

    def hints(self, table: str) -> dict[str, Any]:
        return resource_hints(
            table, table in self.first_loads, self.table_format, table in self.arrow_tables
        )

    def emit(self, table: str, rows: list[Row]) -> Iterator[Any]:
        if table in self.emitted:
            rows = _first_copies(rows, self.emitted[table])
        if not rows:
            return
        if table in self.arrow_tables:
            first_load = table in self.first_loads
            yield from arrow_items(table, rows, first_load, self.table_format, _load_id())
        else:
            yield rows


def _load_id() -> str | None:
    """The id of the load package being extracted; None for a source iterated on its own
    (`list(source)`), which has no package."""
    try:
        return str(dlt.current.load_package_state()["load_id"])
    except CurrentLoadPackageStateNotAvailable:
        return None


def _first_copies(rows: list[Row], seen: set[str]) -> list[Row]:
    """The rows whose ids were not emitted before; `seen` remembers them."""
    fresh = []
    for row in rows:
        if row["id"] not in seen:
            seen.add(row["id"])
            fresh.append(row)
    return fresh


class OrbOptions(SourceOptions, total=False):
    """Every setting of `orb()` but the credentials; see `orb_tables` for each."""

    start_date: str | None
    full_refresh: bool
    stats: RequestStats | None
    schema_changes: set[str] | None
    first_load_tables: Collection[str]
    table_format: str | None


def orb(
    api_key: str | None = None, base_url: str | None = None, **options: Unpack[OrbOptions]
) -> DltSource:
    """The `orb` dlt source: every Orb table of the contract, kept equal to the API's state.

    Args:
        api_key: Orb API key; else `ORB_API_KEY`, else dlt's `sources.orb.api_key`.
        base_url: API root; else `ORB_BASE_URL`, else `sources.orb.base_url`, else Orb's.
        **options: the other arguments of `orb_tables`, which dlt takes from
            `sources.orb.<name>` (`SOURCES__ORB__MAX_ATTEMPTS`, config.toml) when not given.

    dlt fills a source's arguments from its config and cannot tell a configured value from
    one passed in, so the credentials are resolved here (`orb_credentials`) and passed on
    explicitly: dlt injects only the arguments a call leaves out.
    """
    api_key, base_url = orb_credentials(api_key, base_url)
    return orb_tables(api_key=api_key, base_url=base_url, **options)


def orb_credentials(api_key: str | None = None, base_url: str | None = None) -> tuple[str, str]:
    """The API key and base URL as the contract resolves them: an explicit argument, then
    Orb's env vars, then dlt's `sources.orb.*` (README, "Configuration")."""
    api_key = api_key or os.environ.get("ORB_API_KEY") or dlt.secrets.get("sources.orb.api_key")
    base_url = base_url or os.environ.get("ORB_BASE_URL") or dlt.config.get("sources.orb.base_url")
    return str(api_key or ""), str(base_url or DEFAULT_BASE_URL)


# `root_key`: dlt's nested tables keep `_dlt_root_id` even when a first load appends, so the
# next run can merge into them.
@dlt.source(name="orb", max_table_nesting=2, root_key=True)
def orb_tables(
    api_key: TSecretStrValue,
    base_url: str,
    start_date: str | None = None,
    full_refresh: bool = False,
    full_refresh_every_days: int | None = 7,
    max_concurrency: int = MAX_CONCURRENCY,
    read_rate_limit: float = RateLimits.read,
    credit_balance_rate_limit: float = RateLimits.credit_balance,
    analytics_rate_limit: float = RateLimits.analytics,
    restatement_days: int = 3,
    usage_group_by: dict[str, str] | None = None,
    request_timeout: float = REQUEST_TIMEOUT,
    max_attempts: int = MAX_ATTEMPTS,
    stats: RequestStats | None = None,
    schema_changes: set[str] | None = None,
    arrow: bool = True,
    first_load_tables: Collection[str] = (),
    table_format: str | None = None,
) -> list[DltResource]:
    """The source behind `orb()`, which resolves the credentials; dlt injects the others.

    Args:
        api_key: Orb API key, never taken from dlt's config here (no default): see `orb()`.
        base_url: API root, likewise.
        start_date: ISO date; closed history dated before it is skipped on full listings
            (README, "Start date"); open objects are always loaded.
        full_refresh: re-read everything and detect every deletion this run.
        full_refresh_every_days: periodic safety sweep; a full listing once this many days
            have passed since the last one. None or 0 turns it off.
        max_concurrency: requests in flight at once, across all endpoints.
        read_rate_limit: requests per second for Orb's read class.
        credit_balance_rate_limit: requests per second for the credit-balance class.
        analytics_rate_limit: requests per second for the Analytics class (usage, costs).
        restatement_days: days of usage, costs and event volume read again each run, for
            the events that arrive late (`series.py`).
        usage_group_by: billable metric id -> event property: that metric's usage is also
            loaded grouped by the property (one more request per subscription and metric).
        request_timeout: seconds before a request is abandoned and retried.
        max_attempts: tries per request before the run fails (429, 5xx, timeouts, drops).
        stats: counters the caller reads after the run (requests, retries, 429s).
        schema_changes: collects what changed in Orb's data (new kinds, changed types).
        arrow: build the high-volume tables as Arrow tables (`arrow.py`) instead of passing
            dicts through dlt's normalizer: same tables, columns and types, more than three
            times as fast end to end (benchmarks/RESULTS.md).
        first_load_tables: tables the destination does not hold yet (`run_pipeline` finds
            them); those whose objects reach the load once are appended instead of merged.
        table_format: `delta`, `iceberg` or `parquet` on the filesystem destination
            (`lakehouse.py`): Delta and Iceberg tables are merged by upsert, Parquet appended.

    The client and the thread pools open when the first resource starts reading and close
    when the last one ends (`SyncContext.lease`); building the source changes nothing
    outside it.
    """
    client = OrbClient(
        api_key,
        base_url,
        rate_limits=RateLimits(read_rate_limit, credit_balance_rate_limit, analytics_rate_limit),
        decoders=PAGE_DECODERS,
        max_concurrency=max_concurrency,
        timeout=request_timeout,
        max_attempts=max_attempts,
        stats=stats,
    )
    ctx = SyncContext(
        client=client,
        started_at=datetime.now(UTC),
        full_refresh=full_refresh,
        start_date=parse_start_date(start_date) if start_date else None,
        full_refresh_every=timedelta(days=full_refresh_every_days)
        if full_refresh_every_days
        else None,
        max_concurrency=max_concurrency,
        schema_changes=set() if schema_changes is None else schema_changes,
        restatement=timedelta(days=restatement_days),
        usage_group_by=dict(usage_group_by or {}),
    )
    if table_format in MERGING_FORMATS:
        propagate_load_id(dlt.current.source_schema())
    output = Output(
        ARROW_TABLES if arrow else frozenset(), frozenset(first_load_tables), table_format
    )
    return [
        resource for endpoint in CATALOG for resource in endpoint_resources(ctx, endpoint, output)
    ]


def parse_start_date(value: str) -> datetime:
    """`YYYY-MM-DD` (or a full ISO timestamp) as an aware UTC datetime."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def endpoint_resources(ctx: SyncContext, endpoint: Endpoint, output: Output) -> list[DltResource]:
    """The table's resource, or a hidden page reader feeding a parent and a child table."""
    if endpoint.child_table is None:
        rows = table_rows(ctx, endpoint, output)
        hints = output.hints(endpoint.table)
        return [dlt.resource(rows, name=endpoint.table, parallelized=True, **hints)]
    child = endpoint.child_table
    page_rows = table_rows(ctx, endpoint, Output())

    def pages() -> Iterator[Any]:
        yield from page_rows()
        yield END_OF_PAGES

    reader = dlt.resource(pages, name=f"{endpoint.table}_pages", selected=False, parallelized=True)
    parent = transformed(
        endpoint.table, lambda rows: without_field(rows, child.field), reader, output
    )
    children = transformed(
        child.table,
        lambda rows: split_children(rows, child.field, child.link, ctx.started_at),
        reader,
        output,
    )
    return [parent, children]


class EndOfPages:
    """The last item of a page reader: its transformers hand dlt the Arrow tables they hold."""


END_OF_PAGES = EndOfPages()


def transformed(
    table: str, shape: Callable[[list[Row]], list[Row]], reader: DltResource, output: Output
) -> DltResource:
    """A table filled from a page reader's rows, shaped by `shape`."""
    held = Held()

    def rows(page_rows: list[Row] | EndOfPages) -> Iterator[Any]:
        if isinstance(page_rows, EndOfPages):
            yield from held.flush()
        else:
            yield from held.add(output.emit(table, shape(page_rows)))

    return dlt.transformer(rows, data_from=reader, name=table, **output.hints(table))


def table_rows(ctx: SyncContext, endpoint: Endpoint, output: Output) -> Callable[[], Iterator[Any]]:
    """The generator behind one resource: its strategy's pages, shaped into rows, read
    under a lease on the client and pools (`SyncContext.lease`)."""

    def rows() -> Iterator[Any]:
        with ctx.lease():
            yield from shaped_rows(ctx, endpoint, output)

    return rows


def shaped_rows(ctx: SyncContext, endpoint: Endpoint, output: Output) -> Iterator[Any]:
    """The endpoint's rows as its strategy reads them, handed to dlt in batches."""
    started, read, children = time.monotonic(), 0, 0
    batch: list[Row] = []
    ctx.bind(dlt.current.source_state(), dlt.current.source().resources.selected)
    fitting = Fitting()
    held = Held()
    pages = endpoint_pages(ctx, endpoint, listing_state(endpoint))
    for customer_id, page in counted_for(endpoint.table, pages):
        shaped = to_rows(page, endpoint.links, ctx.started_at, customer_id)
        _warn_drift(endpoint.table, shaped, ctx.schema_changes)
        _fit_numbers(endpoint, shaped, fitting)
        read += len(shaped)
        if endpoint.child_table:
            children += sum(len(row.get(endpoint.child_table.field) or ()) for row in shaped)
        batch.extend(shaped)
        if len(batch) >= BATCH_ROWS:
            yield from held.add(output.emit(endpoint.table, batch))
            batch = []
    yield from held.add(output.emit(endpoint.table, batch))
    yield from held.flush()
    fitting.report()
    also = f" (and {children:,} {endpoint.child_table.table})" if endpoint.child_table else ""
    logger.info(
        "%s: %s rows read%s, %s requests, %.1f s",
        endpoint.table,
        f"{read:,}",
        also,
        f"{ctx.client.stats.by_table.get(endpoint.table, 0):,}",
        time.monotonic() - started,
    )


def listing_state(endpoint: Endpoint) -> ListingState:
    """The state of an endpoint's listing (cursors, open sets), held by its table's resource.

    dlt's `pipeline drop <table>` resets the state of the resource that fills the table, and
    the next run then lists it from scratch. A listing that fills two tables (invoices and
    their line items) keeps its state on the first table's resource and a mark on the
    second's, so dropping either table resets both.
    """
    state = dlt.current.resource_state(endpoint.table)
    if endpoint.child_table is None:
        return cast(ListingState, state)
    mark = cast(ListingState, dlt.current.resource_state(endpoint.child_table.table))
    if mark.get("listing_state_of") != endpoint.table:
        state.clear()
        mark["listing_state_of"] = endpoint.table
    # Earlier versions held it on a hidden page resource, which dlt's drop never reset.
    dlt.current.source_state().get("resources", {}).pop(f"{endpoint.table}_pages", None)
    return cast(ListingState, state)


READERS: dict[tuple[Scope, Sync], Reader] = {**strategies.READERS, **series.READERS}
"""The reader of each strategy the catalog declares (`catalog.STRATEGIES`)."""


def endpoint_pages(ctx: SyncContext, endpoint: Endpoint, state: ListingState) -> Listed:
    """The endpoint's pages by its strategy, with the customer each was listed for (None
    for account-wide listings)."""
    return READERS[(endpoint.scope, endpoint.sync)](ctx, endpoint, state)


def _fit_numbers(endpoint: Endpoint, rows: list[Row], fitting: Fitting) -> None:
    """The precision policy, applied once for both paths, to the table and its child table."""
    fit_rows(endpoint.table, rows, fitting)
    if endpoint.child_table is not None:
        child = endpoint.child_table
        fit_rows(child.table, objects_at(rows, (child.field,)), fitting)


def _warn_drift(table: str, rows: list[Row], reported: set[str]) -> None:
    """New kinds of ledger entries or prices, and fields that changed type, once per run.

    Types are checked on the first row of each page: a change of type reaches every row.
    """
    if not rows:
        return
    news = {f"new {table} kind {kind!r}" for kind in unknown_kinds(table, rows)}
    for change in sorted(news | mismatched_types(table, rows[0]) - reported):
        logger.warning("schema change: %s; loaded as-is", change)
        reported.add(change)
