"""The endpoint catalog: every Orb list endpoint the source reads, described as data.

Resources that differ only in these fields share all their code (see `strategies.py`).
Why each table syncs the way it does is explained in the README, "How incremental sync works".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import StrEnum
from typing import Any, Literal

from . import schema, transform, wire
from .client import rate_class
from .schema import Shape

ALL_INVOICE_STATUSES = ["draft", "issued", "paid", "synced", "void"]
CUSTOMERS = "/customers"
"""The listing that every per-customer endpoint fans out over."""
SUBSCRIPTION_CHANGE_STATUSES = ("pending", "applied", "cancelled")


class Sync(StrEnum):
    """How a table follows Orb, which has no `updated_at` and no "changed since" filter."""

    REFRESH = "refresh"
    """Re-read the complete listing every run; what is missing from it is deleted."""

    WATERMARK = "watermark"
    """Append-only data: read from the last cursor minus an overlap window."""

    LIFECYCLE = "lifecycle"
    """New objects by watermark, plus a re-read of the open set and a fetch of its leavers."""

    ON_ACTIVITY = "on_activity"
    """Per-customer lists re-read for the customers whose activity feed moved since the last
    run, open objects re-read by id; every customer on a full run."""

    OPEN_PARENTS = "open_parents"
    """Per parent, the lists of the parents that can still change them: the open ones, those
    created since the last run, and those that left the open set since (by id); every parent
    on a full run."""

    RESTATED = "restated"
    """A time series Orb computes from events (usage, costs, event volume): late events
    change recent windows, so each run reads from where the last one ended minus a
    restatement window, and each window's row replaces the one loaded before."""


class Scope(StrEnum):
    ACCOUNT = "account"
    CUSTOMER = "customer"
    """Orb only lists these per customer: the source fans out over every customer."""
    SUBSCRIPTION = "subscription"
    """Orb serves these per subscription: the source fans out over the subscriptions that can
    have new or restated windows (`series.py`)."""
    PARENT = "parent"
    """Orb lists these per object of another listing (a plan's migrations, a coupon's
    subscriptions): the source fans out over that listing's ids (`Endpoint.parent`)."""


@dataclass(frozen=True)
class InState:
    """Objects whose `field` holds one of `values` (Orb's list filter of the same name)."""

    field: str
    values: tuple[str, ...]

    def holds(self, obj: Mapping[str, Any]) -> bool:
        return obj.get(self.field) in self.values


@dataclass(frozen=True)
class Cursor:
    """The object's own timestamp and the list filter that selects on it."""

    field: str
    param: str
    overlap: timedelta = timedelta(hours=1)
    """Re-read window before the watermark: late-visible rows and clock skew."""

    open_while: InState | None = None
    """Rows in this state can still change (a pending ledger entry): the next listing starts
    early enough to read them again."""

    ignore_while: InState | None = None
    """Rows in these states never move the watermark (a draft's invoice_date is a scheduled
    date, possibly in the future)."""


@dataclass(frozen=True)
class OpenSet:
    """Objects whose state can still change: re-listed every run, leavers fetched by id.

    Incremental runs list new objects in the `closed` statuses only: open ones, new or not,
    come with the open-set listing.
    """

    status_field: str
    statuses: tuple[str, ...]
    closed: tuple[str, ...]
    param: str
    retrieve_path: str
    closed_on: str | None = None
    """The date a closed object became history, when the listing cannot filter on it (a
    subscription's `end_date`; `GET /subscriptions` filters on `created_at` only):
    `--start-date` is applied to it after listing, not to the cursor."""


@dataclass(frozen=True)
class Backdated:
    """Closed objects that can be created with a date already in the past (a one-off invoice
    dated last week and paid at once): each run re-lists the ones dated within `window`."""

    window: timedelta
    params: Mapping[str, str | bool | list[str]]


@dataclass(frozen=True)
class Awaited:
    """Objects an open object waits on, listed account-wide once a run, each with its
    `customer`: a block awaiting payment turns active when its purchase invoice, a one-off
    invoice of its customer, is paid (`GET /invoices?is_recurring=false`, draft, issued, or
    synced to another invoicing system until marked paid)."""

    path: str
    params: Mapping[str, str | bool | list[str]]


@dataclass(frozen=True)
class Activity:
    """A per-customer feed that every change of an endpoint's objects leaves an entry in.

    Each balance change of a credit block is a ledger entry, so a one-row question to the
    ledger ("anything since the last run?") tells whether the customer's blocks can have
    changed. `open` objects change without an entry (a block awaiting payment turns active
    when its invoice is paid): they are re-read by id (`retrieve_path`), every run, or with
    `awaits` once something their customer had open when they were first seen open has
    left that listing.
    """

    path: str
    cursor: Cursor
    open: InState
    retrieve_path: str
    feed: str | None = None
    """The table whose per-customer watermark listing is this feed (the ledger's): a run that
    reads both lists each customer's feed once, and each takes what it needs from it."""
    awaits: Awaited | None = None


@dataclass(frozen=True)
class Series:
    """A time series read by timeframe (`timeframe_start`, `timeframe_end`), in windows of a
    `day` (at the customer's local midnight, as Orb cuts them) or an `hour` (UTC)."""

    window: Literal["day", "hour"]
    rows: Callable[[Any, Mapping[str, Any]], list[dict[str, Any]]]
    """The table's rows from one response (`transform.py`), given what the request was for
    (`subscription_id`, `customer_id`)."""
    paginated: bool = False
    """Listed page by page (event volume), rather than answered in one body."""
    grouped: bool = False
    """Also read per configured grouping key of a billable metric (`usage_group_by`)."""
    at_least: timedelta = timedelta(0)
    """Read again at least this far back, whatever `restatement_days` says: a change to an
    invoice still in draft (a line item added or removed) reprices every day of its billing
    period, a month and the day or so before it is issued."""


@dataclass(frozen=True)
class ChildTable:
    """An array of each object split out into a table of its own (an invoice's line items)."""

    field: str
    table: str
    link: str
    """The column of the child table that holds its parent's id."""
    shape: Shape
    """Its declared columns and nested tables (`schema.py`)."""


@dataclass(frozen=True)
class Kinds:
    """A discriminator whose variants shape a table (a price's `model_type`): a value the
    catalog does not know is loaded, and named in a warning."""

    field: str
    known: frozenset[str]


@dataclass(frozen=True)
class Refetch:
    """Objects re-read because a newer object points at them (a credit note on an old invoice):
    the newer objects' listing and the field that holds the id."""

    path: str
    id_field: str
    changed_field: str | None = None
    """A field of the newer objects that dates a later change of theirs which the object they
    point at also shows (a voided credit note is voided in its invoice's `credit_notes` too)."""
    changed_within: timedelta = timedelta(0)
    """How long after its creation such a change is looked for."""
    listing_of: str | None = None
    """The table whose watermark listing of `path` this is too (credit notes): a run that
    reads both lists once, from the earlier of the two starts, and each takes its rows."""


@dataclass(frozen=True)
class ListedForNew:
    """Closed objects of parents created since the last run, listed by `param` (a subscription
    started in the past comes with past invoices, possibly paid already)."""

    parent_path: str
    param: str


@dataclass(frozen=True)
class ListedBy:
    """A filter that takes one value, read once per value: together the listings hold every
    object (`GET /subscription_changes?status=` for each status)."""

    param: str
    values: tuple[str, ...]


SubRows = Callable[[Mapping[str, Any], str], dict[str, Any]]
"""The row of one object listed under a parent, given the parent's id."""


@dataclass(frozen=True)
class Parent:
    """The listing a per-parent endpoint fans out over, and how its objects name the parent.

    `param` is the placeholder of the parent's id in the endpoint's path and params
    (`/plans/{plan_id}/migrations`), and the column of the rows that holds it.
    """

    table: str
    """The table of the parents: rows of a parent marked deleted follow it."""
    path: str
    param: str
    params: Mapping[str, str | bool | list[str]] = field(default_factory=dict)
    """The parents' listing, as their own table lists them: a run lists it once for both."""
    open_set: OpenSet | None = None
    """`Sync.OPEN_PARENTS`: the parents whose children can still change."""
    created: Cursor | None = None
    """`Sync.OPEN_PARENTS`: the parents' creation time, to list those created since."""
    rows: SubRows | None = None
    """For objects with no id of their own (a schedule entry) or link rows (a coupon's
    subscriptions): the row each becomes. Otherwise the object, with the parent's id."""


@dataclass(frozen=True)
class Strategy:
    """What a sync strategy (`strategies.READERS`) needs of a catalog entry, and what it
    promises the rest of the code."""

    required: frozenset[str] = frozenset()
    """Endpoint fields it cannot do without."""
    optional: frozenset[str] = frozenset()
    """Endpoint fields it reads when set; any other of `STRATEGY_FIELDS` is refused."""
    emits_once: bool = False
    """Each object reaches the load at most once per run, so the merge can skip its
    deduplication pass over the staged rows."""
    records: str = ""
    """The listing it records for the deletion sweep (`sweep.py`)."""


STRATEGY_FIELDS = frozenset(
    {
        "cursor",
        "open_set",
        "refetch",
        "backdated",
        "listed_for_new",
        "activity",
        "feature",
        "series",
        "parent",
        "listed_by",
    }
)
"""Endpoint fields that only some strategies read: set where no strategy reads them, they would
be ignored, silently."""

STRATEGIES: Mapping[tuple[Scope, Sync], Strategy] = {
    (Scope.ACCOUNT, Sync.REFRESH): Strategy(
        optional=frozenset({"feature", "listed_by"}),
        records="complete, every run; none when skipped",
    ),
    (Scope.ACCOUNT, Sync.WATERMARK): Strategy(
        required=frozenset({"cursor"}), records="complete, on full runs without a start date"
    ),
    (Scope.ACCOUNT, Sync.LIFECYCLE): Strategy(
        required=frozenset({"cursor", "open_set"}),
        optional=frozenset({"refetch", "backdated", "listed_for_new"}),
        emits_once=True,
        records="the open set by status on runs from a date; complete on full runs",
    ),
    (Scope.CUSTOMER, Sync.REFRESH): Strategy(records="complete, every run"),
    (Scope.CUSTOMER, Sync.WATERMARK): Strategy(
        required=frozenset({"cursor"}), records="complete, on full runs without a start date"
    ),
    (Scope.CUSTOMER, Sync.ON_ACTIVITY): Strategy(
        required=frozenset({"activity"}),
        records="the customers listed again; complete on a pass over every customer",
    ),
    (Scope.PARENT, Sync.REFRESH): Strategy(
        required=frozenset({"parent"}),
        optional=frozenset({"feature"}),
        records="complete, every run; none when skipped",
    ),
    (Scope.PARENT, Sync.OPEN_PARENTS): Strategy(
        required=frozenset({"parent"}),
        optional=frozenset({"feature"}),
        records="the parents listed again; complete on a pass over every parent",
    ),
    (Scope.ACCOUNT, Sync.RESTATED): Strategy(
        required=frozenset({"series"}),
        emits_once=True,
        records="nothing: a window's row is replaced, never deleted",
    ),
    (Scope.SUBSCRIPTION, Sync.RESTATED): Strategy(
        required=frozenset({"series"}),
        emits_once=True,
        records="nothing: a window's row is replaced, never deleted",
    ),
}
"""Every (scope, sync) a strategy implements."""


@dataclass(frozen=True)
class Endpoint:
    """One Orb list endpoint and the table(s) it fills: all the code needs to know about it."""

    table: str
    path: str
    sync: Sync
    shape: Shape
    """Its declared columns and nested tables (`schema.py`)."""
    scope: Scope = Scope.ACCOUNT
    params: Mapping[str, str | bool | list[str]] = field(default_factory=dict)
    cursor: Cursor | None = None
    open_set: OpenSet | None = None
    links: Mapping[str, str] = field(default_factory=dict)
    """Embedded Orb object -> id column that replaces it (`customer` -> `customer_id`)."""

    refetch: Refetch | None = None
    backdated: Backdated | None = None
    listed_for_new: ListedForNew | None = None
    child_table: ChildTable | None = None
    activity: Activity | None = None
    """What `Sync.ON_ACTIVITY` asks before re-reading a customer's list."""

    arrow: bool = False
    """A high-volume table, built as Arrow tables (`arrow.py`) when the source's `arrow` is on."""
    decoder: Callable[[bytes], Any] | None = None
    """A decoder of its list pages of its own (`wire.py`); others go to `wire.decode`."""
    kinds: Kinds | None = None
    feature: str | None = None
    """The Orb feature the endpoint belongs to, for an account may lack it: Orb then answers
    404 or 403, and the table is skipped with one info line."""
    series: Series | None = None
    """What `Sync.RESTATED` reads: the windows and how a response becomes rows."""
    parent: Parent | None = None
    """What `Scope.PARENT` fans out over."""
    listed_by: ListedBy | None = None

    def __post_init__(self) -> None:
        strategy = STRATEGIES.get((self.scope, self.sync))
        if strategy is None:
            raise ValueError(
                f"catalog entry {self.table}: no strategy reads {self.scope} {self.sync}"
            )
        given = {name for name in STRATEGY_FIELDS if getattr(self, name) is not None}
        if missing := strategy.required - given:
            raise ValueError(f"catalog entry {self.table}: {self.sync} needs {sorted(missing)}")
        if unread := given - strategy.required - strategy.optional:
            raise ValueError(
                f"catalog entry {self.table}: the {self.scope} {self.sync} strategy"
                f" does not read {sorted(unread)}"
            )
        if self.cursor and self.cursor.open_while and self.scope is not Scope.CUSTOMER:
            raise ValueError(f"catalog entry {self.table}: open_while is read per customer only")
        if self.parent is not None:
            following = self.parent.open_set is not None and self.parent.created is not None
            if following != (self.sync is Sync.OPEN_PARENTS):
                raise ValueError(
                    f"catalog entry {self.table}: a parent's open_set and created are read"
                    f" by {Sync.OPEN_PARENTS} only, which needs both"
                )

    @property
    def strategy(self) -> Strategy:
        return STRATEGIES[(self.scope, self.sync)]

    @property
    def rate_class(self) -> str:
        """The Orb rate class its list requests count against."""
        return rate_class(self.path)

    @property
    def shapes(self) -> dict[str, Shape]:
        """The declared shape of each table it fills."""
        child = self.child_table
        return {self.table: self.shape, **({child.table: child.shape} if child else {})}

    @property
    def tables(self) -> tuple[str, ...]:
        """The table and the one split out of its objects, if any."""
        return (self.table, self.child_table.table) if self.child_table else (self.table,)


SUBSCRIPTIONS_OPEN = OpenSet(
    "status",
    ("upcoming", "active"),
    ("ended",),
    "status[]",
    "/subscriptions/{id}",
    closed_on="end_date",
)
OPEN_SUBSCRIPTIONS = Parent(
    "subscriptions",
    "/subscriptions",
    "subscription_id",
    open_set=SUBSCRIPTIONS_OPEN,
    created=Cursor("created_at", "created_at"),
)
"""The subscriptions whose schedule and licenses can still change: open ones, those created
since the last run, and those that left the open set since."""

CATALOG: tuple[Endpoint, ...] = (
    Endpoint("customers", CUSTOMERS, Sync.REFRESH, schema.CUSTOMERS),
    Endpoint(
        "subscriptions",
        "/subscriptions",
        Sync.LIFECYCLE,
        schema.SUBSCRIPTIONS,
        cursor=Cursor("created_at", "created_at"),
        open_set=SUBSCRIPTIONS_OPEN,
        links={"customer": "customer_id", "plan": "plan_id"},
    ),
    Endpoint(
        "invoices",
        "/invoices",
        Sync.LIFECYCLE,
        schema.INVOICES,
        params={"status[]": ALL_INVOICE_STATUSES},
        cursor=Cursor("invoice_date", "invoice_date", ignore_while=InState("status", ("draft",))),
        open_set=OpenSet(
            "status", ("draft", "issued"), ("paid", "synced", "void"), "status[]", "/invoices/{id}"
        ),
        links={"customer": "customer_id", "subscription": "subscription_id"},
        refetch=Refetch(
            "/credit_notes", "invoice_id", "voided_at", timedelta(days=35), "credit_notes"
        ),
        backdated=Backdated(timedelta(days=35), {"is_recurring": False}),
        listed_for_new=ListedForNew("/subscriptions", "subscription_id"),
        child_table=ChildTable(
            "line_items", "invoice_line_items", "invoice_id", schema.INVOICE_LINE_ITEMS
        ),
        decoder=wire.decode_invoice_page,
        arrow=True,
    ),
    Endpoint(
        "credit_notes",
        "/credit_notes",
        Sync.WATERMARK,
        schema.CREDIT_NOTES,
        cursor=Cursor("created_at", "created_at", overlap=timedelta(days=35)),
        links={"customer": "customer_id"},
    ),
    Endpoint("plans", "/plans", Sync.REFRESH, schema.PLANS),
    Endpoint(
        "prices",
        "/prices",
        Sync.REFRESH,
        schema.PRICES,
        kinds=Kinds("model_type", schema.PRICE_MODEL_TYPES),
    ),
    Endpoint("items", "/items", Sync.REFRESH, schema.ITEMS),
    Endpoint("coupons", "/coupons", Sync.REFRESH, schema.COUPONS, params={"show_archived": True}),
    Endpoint("billable_metrics", "/metrics", Sync.REFRESH, schema.BILLABLE_METRICS),
    Endpoint(
        "alerts",
        "/alerts",
        Sync.REFRESH,
        schema.ALERTS,
        scope=Scope.CUSTOMER,
        params={"customer_id": "{customer_id}"},
        links={"customer": "customer_id", "subscription": "subscription_id"},
    ),
    Endpoint(
        "credit_ledger_entries",
        "/customers/{customer_id}/credits/ledger",
        Sync.WATERMARK,
        schema.CREDIT_LEDGER_ENTRIES,
        scope=Scope.CUSTOMER,
        cursor=Cursor("created_at", "created_at", open_while=InState("entry_status", ("pending",))),
        links={"customer": "customer_id"},
        arrow=True,
        kinds=Kinds("entry_type", schema.LEDGER_ENTRY_TYPES),
    ),
    Endpoint(
        "credit_blocks",
        "/customers/{customer_id}/credits",
        Sync.ON_ACTIVITY,
        schema.CREDIT_BLOCKS,
        scope=Scope.CUSTOMER,
        params={"include_all_blocks": True},
        activity=Activity(
            "/customers/{customer_id}/credits/ledger",
            Cursor("created_at", "created_at"),
            open=InState("status", ("pending_payment",)),
            retrieve_path="/credit_blocks/{id}",
            feed="credit_ledger_entries",
            awaits=Awaited(
                "/invoices", {"status[]": ["draft", "issued", "synced"], "is_recurring": False}
            ),
        ),
    ),
    Endpoint(
        "top_ups",
        "/customers/{customer_id}/credits/top_ups",
        Sync.REFRESH,
        schema.TOP_UPS,
        scope=Scope.CUSTOMER,
    ),
    Endpoint(
        "customer_balance_transactions",
        "/customers/{customer_id}/balance_transactions",
        Sync.WATERMARK,
        schema.CUSTOMER_BALANCE_TRANSACTIONS,
        scope=Scope.CUSTOMER,
        cursor=Cursor("created_at", "operation_time"),
        links={"invoice": "invoice_id", "credit_note": "credit_note_id"},
    ),
    Endpoint(
        "dimensional_price_groups",
        "/dimensional_price_groups",
        Sync.REFRESH,
        schema.DIMENSIONAL_PRICE_GROUPS,
        feature="dimensional pricing",
    ),
    Endpoint(
        "license_types", "/license_types", Sync.REFRESH, schema.LICENSE_TYPES, feature="licenses"
    ),
    Endpoint(
        "webhook_endpoints",
        "/webhook_endpoints",
        Sync.REFRESH,
        schema.WEBHOOK_ENDPOINTS,
        feature="webhooks",
    ),
    Endpoint(
        "event_backfills",
        "/events/backfills",
        Sync.REFRESH,
        schema.EVENT_BACKFILLS,
        feature="event backfills",
    ),
    Endpoint(
        "subscription_changes",
        "/subscription_changes",
        Sync.REFRESH,
        schema.SUBSCRIPTION_CHANGES,
        listed_by=ListedBy("status", SUBSCRIPTION_CHANGE_STATUSES),
    ),
    Endpoint(
        "plan_migrations",
        "/plans/{plan_id}/migrations",
        Sync.REFRESH,
        schema.PLAN_MIGRATIONS,
        scope=Scope.PARENT,
        parent=Parent("plans", "/plans", "plan_id"),
    ),
    Endpoint(
        "subscription_schedules",
        "/subscriptions/{subscription_id}/schedule",
        Sync.OPEN_PARENTS,
        schema.SUBSCRIPTION_SCHEDULES,
        scope=Scope.PARENT,
        parent=replace(OPEN_SUBSCRIPTIONS, rows=transform.schedule_row),
        links={"plan": "plan_id"},
    ),
    Endpoint(
        "licenses",
        "/licenses",
        Sync.OPEN_PARENTS,
        schema.LICENSES,
        scope=Scope.PARENT,
        params={"subscription_id": "{subscription_id}"},
        parent=OPEN_SUBSCRIPTIONS,
        feature="licenses",
    ),
    Endpoint(
        "coupon_subscriptions",
        "/coupons/{coupon_id}/subscriptions",
        Sync.REFRESH,
        schema.COUPON_SUBSCRIPTIONS,
        scope=Scope.PARENT,
        parent=Parent(
            "coupons",
            "/coupons",
            "coupon_id",
            {"show_archived": True},
            rows=transform.coupon_subscription_row,
        ),
    ),
    Endpoint(
        "dimensional_price_group_prices",
        "/dimensional_price_groups/{dimensional_price_group_id}/prices",
        Sync.REFRESH,
        schema.DIMENSIONAL_PRICE_GROUP_PRICES,
        scope=Scope.PARENT,
        params={"status": "all"},
        parent=Parent(
            "dimensional_price_groups", "/dimensional_price_groups", "dimensional_price_group_id"
        ),
        kinds=Kinds("model_type", schema.PRICE_MODEL_TYPES),
        feature="dimensional pricing",
    ),
    Endpoint(
        "subscription_usage",
        "/subscriptions/{subscription_id}/usage",
        Sync.RESTATED,
        schema.SUBSCRIPTION_USAGE,
        scope=Scope.SUBSCRIPTION,
        params={"granularity": "day", "view_mode": "periodic"},
        series=Series("day", transform.usage_rows, grouped=True),
        arrow=True,
    ),
    Endpoint(
        "subscription_costs",
        "/subscriptions/{subscription_id}/costs",
        Sync.RESTATED,
        schema.SUBSCRIPTION_COSTS,
        scope=Scope.SUBSCRIPTION,
        params={"view_mode": "periodic"},
        series=Series("day", transform.cost_rows, at_least=timedelta(days=35)),
        arrow=True,
    ),
    Endpoint(
        "event_volume",
        "/events/volume",
        Sync.RESTATED,
        schema.EVENT_VOLUME,
        series=Series("hour", transform.volume_rows, paginated=True),
        arrow=True,
    ),
)

ENDPOINTS: Mapping[str, Endpoint] = {endpoint.table: endpoint for endpoint in CATALOG}


def listing_key(path: str, params: Mapping[str, Any]) -> str:
    """A listing's identity: its path and filters, a filter's list of values in any order."""
    filters = sorted((k, sorted(v) if isinstance(v, list) else v) for k, v in params.items())
    return f"{path}?{filters}"


def _parent_listings(parent: Parent) -> Iterator[Mapping[str, Any]]:
    """The listings of the parents a per-parent endpoint reads: all of them, and where only
    the open ones can change, those (`Sync.OPEN_PARENTS`)."""
    yield parent.params
    if parent.open_set is not None:
        yield {**parent.params, parent.open_set.param: list(parent.open_set.statuses)}


SHARED_LISTINGS: frozenset[str] = frozenset(
    listing_key(endpoint.parent.path, params)
    for endpoint in CATALOG
    if endpoint.parent
    for params in _parent_listings(endpoint.parent)
)
"""Listings (`listing_key`) some per-parent endpoint reads: the parents' own table shares
them (`SyncContext.listing`)."""


def check_feeds(endpoints: Mapping[str, Endpoint]) -> None:
    """An activity feed shared with a table must be that table's per-customer watermark
    listing, on the same cursor: the two read one listing."""
    for endpoint in endpoints.values():
        activity = endpoint.activity
        if activity is None or activity.feed is None:
            continue
        source = endpoints.get(activity.feed)
        if (
            source is None
            or (source.scope, source.sync) != (Scope.CUSTOMER, Sync.WATERMARK)
            or source.path != activity.path
            or source.cursor is None
            or source.cursor.param != activity.cursor.param
        ):
            raise ValueError(
                f"catalog entry {endpoint.table}: its activity feed {activity.feed} is not a"
                f" per-customer watermark listing of {activity.path} by {activity.cursor.param}"
            )


check_feeds(ENDPOINTS)


def check_refetches(endpoints: Mapping[str, Endpoint]) -> None:
    """A refetch listing shared with a table must be that table's account-wide watermark
    listing of the same path on `created_at`, with no other filter: the two read one
    listing."""
    for endpoint in endpoints.values():
        refetch = endpoint.refetch
        if refetch is None or refetch.listing_of is None:
            continue
        source = endpoints.get(refetch.listing_of)
        if (
            source is None
            or (source.scope, source.sync) != (Scope.ACCOUNT, Sync.WATERMARK)
            or source.path != refetch.path
            or source.cursor is None
            or source.cursor.param != "created_at"
            or source.params
        ):
            raise ValueError(
                f"catalog entry {endpoint.table}: its refetch listing {refetch.listing_of} is"
                f" not an account-wide watermark listing of {refetch.path} by created_at"
            )


check_refetches(ENDPOINTS)

REFETCHED_BY: Mapping[str, Endpoint] = {
    endpoint.refetch.listing_of: endpoint
    for endpoint in CATALOG
    if endpoint.refetch and endpoint.refetch.listing_of
}
"""Table -> the endpoint whose refetch reads that table's listing (`Refetch.listing_of`)."""

CHILD_TABLES: Mapping[str, tuple[str, str]] = {
    endpoint.child_table.table: (endpoint.table, endpoint.child_table.link)
    for endpoint in CATALOG
    if endpoint.child_table
}
"""Tables split out of another endpoint's objects -> (the table they come from, link column)."""

SHAPES: Mapping[str, Shape] = {
    table: shape for endpoint in CATALOG for table, shape in endpoint.shapes.items()
}
"""The declared shape of every table, from the catalog's entries."""

PAGE_DECODERS: Mapping[str, Callable[[bytes], Any]] = {
    endpoint.path: endpoint.decoder for endpoint in CATALOG if endpoint.decoder
}
"""List paths whose pages have a decoder of their own (`OrbClient(decoders=...)`)."""

TABLES: tuple[str, ...] = tuple(table for endpoint in CATALOG for table in endpoint.tables)


def read_together(tables: Iterable[str]) -> list[str]:
    """The tables plus those filled from the same objects (`invoices`, `invoice_line_items`).

    They share one listing and its cursor: loading one without the other would move the
    cursor past rows the other never received.
    """
    chosen = set(tables)
    families = [set(endpoint.tables) for endpoint in CATALOG]
    return [table for table in TABLES if any(table in f and f & chosen for f in families)]


EMITTED_ONCE: frozenset[str] = frozenset(
    table for endpoint in CATALOG if endpoint.strategy.emits_once for table in endpoint.tables
)
"""Tables whose objects reach the load at most once per run (`Strategy.emits_once`)."""

ARROW_TABLES: frozenset[str] = frozenset(
    table for endpoint in CATALOG if endpoint.arrow for table in endpoint.tables
)
"""The high-volume tables, built as Arrow tables when the source's `arrow` is on."""

SERIES_TABLES: frozenset[str] = frozenset(
    table for endpoint in CATALOG if endpoint.series for table in endpoint.tables
)
"""The time series (`Sync.RESTATED`): usage, costs, event volume."""
