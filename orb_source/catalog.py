"""The endpoint catalog: every Orb list endpoint the source reads, described as data.

Resources that differ only in these fields share all their code (see `strategies.py`).
Why each table syncs the way it does is explained in the README, "How incremental sync works".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

ALL_INVOICE_STATUSES = ["draft", "issued", "paid", "synced", "void"]
CUSTOMERS = "/customers"
"""The listing that every per-customer endpoint fans out over."""


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


class Scope(StrEnum):
    ACCOUNT = "account"
    CUSTOMER = "customer"
    """Orb only lists these per customer: the source fans out over every customer."""


@dataclass(frozen=True)
class Cursor:
    """The object's own timestamp and the list filter that selects on it."""

    field: str
    param: str
    overlap: timedelta = timedelta(hours=1)
    """Re-read window before the watermark: late-visible rows and clock skew."""

    open_while: tuple[str, str] | None = None
    """(filter, value): rows in this state can still change (a pending ledger entry). Each run
    re-lists the older ones by that filter, and re-reads by timestamp those that left it."""

    ignore_while: tuple[str, tuple[str, ...]] | None = None
    """(field, values): rows in these states never move the watermark (a draft's invoice_date is
    a scheduled date, possibly in the future)."""


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
class Activity:
    """A per-customer feed that every change of an endpoint's objects leaves an entry in.

    Each balance change of a credit block is a ledger entry, so a one-row question to the
    ledger ("anything since the last run?") tells whether the customer's blocks can have
    changed. `open` objects change without an entry (a block awaiting payment turns active
    when its invoice is paid): each run re-reads them by id (`retrieve_path`).
    """

    path: str
    cursor: Cursor
    open: tuple[str, tuple[str, ...]]
    retrieve_path: str


@dataclass(frozen=True)
class Endpoint:
    table: str
    path: str
    sync: Sync
    scope: Scope = Scope.ACCOUNT
    params: Mapping[str, str | bool | list[str]] = field(default_factory=dict)
    cursor: Cursor | None = None
    open_set: OpenSet | None = None
    links: Mapping[str, str] = field(default_factory=dict)
    """Embedded Orb object -> id column that replaces it (`customer` -> `customer_id`)."""

    refetch_from: tuple[str, str] | None = None
    """(list path, id field): objects re-read because a newer object points at them."""

    backdated: Backdated | None = None

    listed_for_new: tuple[str, str] | None = None
    """(parent list path, filter): closed objects of parents created since the last run,
    listed by that filter (a subscription started in the past comes with past invoices,
    possibly paid already)."""

    child_table: tuple[str, str, str] | None = None
    """(array field, table, link column): an array split out into a table of its own."""

    activity: Activity | None = None
    """What `Sync.ON_ACTIVITY` asks before re-reading a customer's list."""


CATALOG: tuple[Endpoint, ...] = (
    Endpoint("customers", CUSTOMERS, Sync.REFRESH),
    Endpoint(
        "subscriptions",
        "/subscriptions",
        Sync.LIFECYCLE,
        cursor=Cursor("created_at", "created_at"),
        open_set=OpenSet(
            "status",
            ("upcoming", "active"),
            ("ended",),
            "status[]",
            "/subscriptions/{id}",
            closed_on="end_date",
        ),
        links={"customer": "customer_id", "plan": "plan_id"},
    ),
    Endpoint(
        "invoices",
        "/invoices",
        Sync.LIFECYCLE,
        params={"status[]": ALL_INVOICE_STATUSES},
        cursor=Cursor("invoice_date", "invoice_date", ignore_while=("status", ("draft",))),
        open_set=OpenSet(
            "status", ("draft", "issued"), ("paid", "synced", "void"), "status[]", "/invoices/{id}"
        ),
        links={"customer": "customer_id", "subscription": "subscription_id"},
        refetch_from=("/credit_notes", "invoice_id"),
        backdated=Backdated(timedelta(days=35), {"is_recurring": False}),
        listed_for_new=("/subscriptions", "subscription_id"),
        child_table=("line_items", "invoice_line_items", "invoice_id"),
    ),
    Endpoint(
        "credit_notes",
        "/credit_notes",
        Sync.WATERMARK,
        cursor=Cursor("created_at", "created_at", overlap=timedelta(days=35)),
        links={"customer": "customer_id"},
    ),
    Endpoint("plans", "/plans", Sync.REFRESH),
    Endpoint("prices", "/prices", Sync.REFRESH),
    Endpoint("items", "/items", Sync.REFRESH),
    Endpoint("coupons", "/coupons", Sync.REFRESH, params={"show_archived": True}),
    Endpoint("billable_metrics", "/metrics", Sync.REFRESH),
    Endpoint(
        "alerts",
        "/alerts",
        Sync.REFRESH,
        scope=Scope.CUSTOMER,
        params={"customer_id": "{customer_id}"},
        links={"customer": "customer_id", "subscription": "subscription_id"},
    ),
    Endpoint(
        "credit_ledger_entries",
        "/customers/{customer_id}/credits/ledger",
        Sync.WATERMARK,
        scope=Scope.CUSTOMER,
        cursor=Cursor("created_at", "created_at", open_while=("entry_status", "pending")),
        links={"customer": "customer_id"},
    ),
    Endpoint(
        "credit_blocks",
        "/customers/{customer_id}/credits",
        Sync.ON_ACTIVITY,
        scope=Scope.CUSTOMER,
        params={"include_all_blocks": True},
        activity=Activity(
            "/customers/{customer_id}/credits/ledger",
            Cursor("created_at", "created_at"),
            open=("status", ("pending_payment",)),
            retrieve_path="/credit_blocks/{id}",
        ),
    ),
    Endpoint(
        "top_ups",
        "/customers/{customer_id}/credits/top_ups",
        Sync.REFRESH,
        scope=Scope.CUSTOMER,
    ),
    Endpoint(
        "customer_balance_transactions",
        "/customers/{customer_id}/balance_transactions",
        Sync.WATERMARK,
        scope=Scope.CUSTOMER,
        cursor=Cursor("created_at", "operation_time"),
        links={"invoice": "invoice_id", "credit_note": "credit_note_id"},
    ),
)

ENDPOINTS: Mapping[str, Endpoint] = {endpoint.table: endpoint for endpoint in CATALOG}

CHILD_TABLES: Mapping[str, tuple[str, str]] = {
    endpoint.child_table[1]: (endpoint.table, endpoint.child_table[2])
    for endpoint in CATALOG
    if endpoint.child_table
}
"""Tables split out of another endpoint's objects -> (the table they come from, link column)."""


def read_together(tables: Iterable[str]) -> list[str]:
    """The tables plus those filled from the same objects (`invoices`, `invoice_line_items`).

    They share one listing and its cursor: loading one without the other would move the
    cursor past rows the other never received.
    """
    families = [
        {endpoint.table, *(endpoint.child_table[1:2] if endpoint.child_table else ())}
        for endpoint in CATALOG
    ]
    chosen = set(tables)
    return [table for table in TABLES if any(table in f and f & chosen for f in families)]


TABLES: tuple[str, ...] = tuple(
    table
    for endpoint in CATALOG
    for table in (endpoint.table, *(endpoint.child_table[1:2] if endpoint.child_table else ()))
)

EMITTED_ONCE: frozenset[str] = frozenset(
    table
    for endpoint in CATALOG
    if endpoint.sync is Sync.LIFECYCLE
    for table in (endpoint.table, *(endpoint.child_table[1:2] if endpoint.child_table else ()))
)
"""Tables whose objects reach the load at most once per run (a lifecycle read drops an object
it already emitted), so the merge can skip its deduplication pass over the staged rows."""
