"""The sync strategies in process: each listing's rows, saved state and requests, exactly.

The sandbox's `Api` answers through `httpx.MockTransport` (no socket, no dlt pipeline, no
destination), so each test runs its listings in a fraction of a second. The strategies are
called as the source calls them, through `endpoint_pages`, with a plain dict as the resource
state and a `SyncContext` whose own `state` receives the listings the deletion sweep reads.

Without a `Date` header (the default here) a cursor is the newest timestamp listed, never
later than the run's start, so every cursor is known exactly; `test_cursors_on_orbs_clock`
answers with Orb's `Date`.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from orb_source.catalog import ENDPOINTS
from orb_source.client import OrbClient, OrbForbidden, OrbNotFound, RateLimits
from orb_source.sandbox import Account, generate_account
from orb_source.sandbox.account import Obj
from orb_source.sandbox.api import Api
from orb_source.sandbox.generator import customer_ref, void_credit_note
from orb_source.sandbox.mutations import add_customer
from orb_source.source import endpoint_pages
from orb_source.state import ListingState
from orb_source.strategies import SyncContext

State = dict[str, Any]
"""A resource's state, as dlt keeps it between runs."""

NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)
"""The sandbox account's clock; its newest objects are from just before."""
FIRST = NOW + timedelta(hours=2)
"""When the first run starts."""
NEXT = NOW + timedelta(days=1)
"""When the second run starts, a day later."""
HOUR = timedelta(hours=1)
CLOSED_INVOICE = ["paid", "synced", "void"]
OPEN_INVOICE = ["draft", "issued"]


@dataclass(frozen=True)
class Request:
    path: str
    query: dict[str, list[str]]

    @property
    def params(self) -> dict[str, str | list[str]]:
        """The query as sent: one value per key, a list for Orb's `key[]` arrays."""
        return {k: v if k.endswith("[]") else v[0] for k, v in self.query.items()}


@dataclass
class FakeOrb:
    """The sandbox's API behind an `httpx.MockTransport`, recording every request."""

    account: Account
    send_date: bool = False
    """Answer with a `Date` header on the account's clock, as Orb and the sandbox server do."""
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.api = Api(self.account)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1")
        query = parse_qs(request.url.query.decode(), keep_blank_values=True)
        with self.account.lock:
            self.requests.append(Request(path, query))
            reply = self.api.handle(path, query)
            date = formatdate(self.account.now.timestamp(), usegmt=True)
        headers = {"Date": date} if self.send_date else {}
        return httpx.Response(reply.status, content=reply.body, headers=headers)

    def client(self) -> OrbClient:
        """A client without retries or rate budget: one request per call, at once."""
        return OrbClient(
            "test-key",
            "https://orb.test/v1",
            rate_limits=RateLimits(read=1e6, credit_balance=1e6, analytics=1e6),
            max_concurrency=4,
            max_attempts=1,
            timeout=2.0,
            transport=httpx.MockTransport(self.handle),
        )


@dataclass
class Run:
    """What one listing emitted, the listings it recorded and the requests it made."""

    rows: list[tuple[str | None, dict[str, Any]]]
    listings: dict[str, Any]
    requests: list[Request]

    @property
    def ids(self) -> list[str]:
        return [row["id"] for _, row in self.rows]

    def row(self, object_id: str) -> dict[str, Any]:
        return next(row for _, row in self.rows if row["id"] == object_id)

    def by_customer(self) -> dict[str | None, list[str]]:
        """Sorted ids per customer the rows were listed for."""
        grouped: dict[str | None, list[str]] = {}
        for customer_id, row in self.rows:
            grouped.setdefault(customer_id, []).append(row["id"])
        return {customer_id: sorted(ids) for customer_id, ids in grouped.items()}

    def params(self, path: str) -> list[dict[str, str | list[str]]]:
        """The query of every request to `path`, in the order they were made."""
        return [request.params for request in self.requests if request.path == path]

    def paths(self, prefix: str) -> list[str]:
        """Sorted paths requested that start with `prefix` (objects fetched by id)."""
        return sorted(request.path for request in self.requests if request.path.startswith(prefix))


def run(
    orb: FakeOrb,
    table: str,
    state: State,
    started_at: datetime,
    *,
    before: Callable[[SyncContext], None] | None = None,
    **options: Any,
) -> Run:
    """One listing of `table` as a run starting at `started_at` reads it; `before` acts on the
    run's context first (lists the customers, say, before one is deleted)."""
    client = orb.client()
    ctx = SyncContext(client=client, started_at=started_at, state={}, **options)
    first_request = len(orb.requests)
    try:
        if before is not None:
            before(ctx)
        rows = [
            (customer_id, row)
            for customer_id, page in endpoint_pages(ctx, ENDPOINTS[table], state)
            for row in page
        ]
    finally:
        ctx.close()
        client.close()
    assert ctx.state is not None
    return Run(rows, ctx.state.get("listings", {}), orb.requests[first_request:])


def run_together(
    orb: FakeOrb,
    states: dict[str, State],
    started_at: datetime,
    order: list[str],
    before: Callable[[str], None] = lambda table: None,
) -> dict[str, Run]:
    """One run reading the tables of `states`, each listing to its end in `order`, sharing
    one context as the source's resources do: `states` is the source state's resources.
    `before(table)` acts on the account before each listing."""
    client = orb.client()
    ctx = SyncContext(
        client=client,
        started_at=started_at,
        state={"resources": states},
        selected=frozenset(states),
    )
    runs = {}
    try:
        for table in order:
            before(table)
            first_request = len(orb.requests)
            rows = [
                (customer_id, row)
                for customer_id, page in endpoint_pages(ctx, ENDPOINTS[table], states[table])
                for row in page
            ]
            runs[table] = Run(rows, {}, orb.requests[first_request:])
    finally:
        ctx.close()
        client.close()
    return runs


_new_ids = itertools.count()


def add(orb: FakeOrb, table: str, like: Obj, customer_id: str | None = None, **fields: Any) -> Obj:
    """A new object shaped like `like`, with a fresh id and `fields` set."""
    obj = {**like, "id": f"test_{table}_{next(_new_ids)}", **fields}
    orb.account.add(table, obj, customer_id)
    return obj


def add_entry(orb: FakeOrb, customer_id: str, created_at: datetime, status: str) -> str:
    """A ledger entry of the customer's, created at `created_at` in `status`."""
    entries = orb.account.of_customer("credit_ledger_entries", customer_id)
    like = next(iter(entries.values()))
    entry = add(
        orb,
        "credit_ledger_entries",
        like,
        customer_id,
        created_at=created_at,
        entry_status=status,
    )
    return str(entry["id"])


def activity_state(state: State) -> State:
    """The state of an on-activity listing, without the per-customer cursors and open rows
    the fan-out keeps (empty: it has no watermark)."""
    assert not state.get("cursors") and not state.get("open_rows")
    return {k: v for k, v in state.items() if k not in ("cursors", "open_rows")}


def iso(moment: datetime) -> str:
    return moment.isoformat()


def newest(objects: Iterable[Obj], stamp: str) -> str:
    return iso(max(obj[stamp] for obj in objects))


@pytest.fixture
def orb() -> FakeOrb:
    """A fresh four-customer account per test (a few milliseconds): tests edit it freely."""
    return FakeOrb(generate_account(customers=4, seed=7, months=3, now=NOW))


@pytest.fixture
def customers(orb: FakeOrb) -> list[str]:
    ids = sorted(orb.account.customers)
    assert len(ids) == 4
    return ids


# Refresh


def test_refresh_lists_everything_every_run(orb: FakeOrb) -> None:
    """A refreshed table is listed whole on every run, and each listing is recorded as
    complete, which is what lets the sweep mark what it no longer holds as deleted."""
    plans = orb.account.plans
    state: State = {}
    first = run(orb, "plans", state, FIRST)
    assert sorted(first.ids) == sorted(plans)
    assert first.params("/plans") == [{"limit": "100"}]
    assert first.listings == {"plans": {"complete": {"at": iso(FIRST)}}}

    retired = sorted(plans)[0]
    orb.account.remove("plans", retired)
    new = add(orb, "plans", next(iter(plans.values())), created_at=NOW + HOUR)
    second = run(orb, "plans", state, NEXT)
    assert sorted(second.ids) == sorted(plans)
    assert new["id"] in second.ids and retired not in second.ids
    assert second.params("/plans") == [{"limit": "100"}]
    assert second.listings == {"plans": {"complete": {"at": iso(NEXT)}}}
    assert state == {}


def test_refresh_per_customer_lists_each_customer(orb: FakeOrb, customers: list[str]) -> None:
    """A per-customer refresh lists the customers once, then each customer's objects with its
    id filled into the endpoint's parameters, and records one complete listing."""
    result = run(orb, "alerts", {}, FIRST)
    assert result.by_customer() == {
        customer_id: sorted(alerts)
        for customer_id, alerts in orb.account.owned["alerts"].items()
        if alerts
    }
    assert result.params("/customers") == [{"limit": "100"}]
    assert sorted(params["customer_id"] for params in result.params("/alerts")) == customers
    assert len(result.requests) == 1 + len(customers)
    assert result.listings == {"alerts": {"complete": {"at": iso(FIRST)}}}


# Watermark, account-wide


def test_watermark_reads_from_cursor_minus_overlap(orb: FakeOrb) -> None:
    """The first run lists every credit note and keeps the newest `created_at`; the next run
    asks from that cursor minus the 35-day overlap and gets exactly the notes in that window,
    late ones included, and moves the cursor to the newest."""
    notes = orb.account.credit_notes
    like = next(iter(notes.values()))
    add(orb, "credit_notes", like, created_at=NOW - timedelta(days=3))
    state: State = {}
    first = run(orb, "credit_notes", state, FIRST)
    assert sorted(first.ids) == sorted(notes)
    assert first.params("/credit_notes") == [{"limit": "100"}]
    cursor = NOW - timedelta(days=3)
    assert state == {"cursor": iso(cursor), "last_full_sync": iso(FIRST)}
    assert first.listings == {"credit_notes": {"complete": {"at": iso(FIRST)}}}

    late = add(orb, "credit_notes", like, created_at=cursor - timedelta(days=10))["id"]
    too_old = add(orb, "credit_notes", like, created_at=cursor - timedelta(days=40))["id"]
    new = add(orb, "credit_notes", like, created_at=NOW + 12 * HOUR)["id"]
    second = run(orb, "credit_notes", state, NEXT)
    since = cursor - timedelta(days=35)
    assert second.params("/credit_notes") == [{"limit": "100", "created_at[gte]": iso(since)}]
    assert sorted(second.ids) == sorted(i for i, n in notes.items() if n["created_at"] >= since)
    assert late in second.ids and new in second.ids and too_old not in second.ids
    assert state == {"cursor": iso(NOW + 12 * HOUR), "last_full_sync": iso(FIRST)}
    assert second.listings == {}


def test_watermark_start_date_floors_a_full_run(orb: FakeOrb) -> None:
    """With a start date, a full run asks from that date, and records no complete listing:
    the notes before it are not deletions."""
    notes = orb.account.credit_notes
    like = next(iter(notes.values()))
    add(orb, "credit_notes", like, created_at=NOW - timedelta(days=60))
    add(orb, "credit_notes", like, created_at=NOW - timedelta(days=2))
    start = NOW - timedelta(days=30)
    state: State = {}
    result = run(orb, "credit_notes", state, FIRST, start_date=start)
    assert result.params("/credit_notes") == [{"limit": "100", "created_at[gte]": iso(start)}]
    expected = sorted(i for i, n in notes.items() if n["created_at"] >= start)
    assert sorted(result.ids) == expected and len(expected) < len(notes)
    assert state == {"cursor": iso(NOW - timedelta(days=2)), "last_full_sync": iso(FIRST)}
    assert result.listings == {}


def test_watermark_never_passes_the_run_start_nor_moves_back(orb: FakeOrb) -> None:
    """A note dated after the run started (clock skew) does not carry the cursor past the
    run's start, and a run that sees only older notes keeps the cursor where it was."""
    notes = orb.account.credit_notes
    like = next(iter(notes.values()))
    ahead = add(orb, "credit_notes", like, created_at=FIRST + timedelta(days=1))["id"]
    older = add(orb, "credit_notes", like, created_at=NOW - timedelta(days=2))["id"]
    state: State = {}
    run(orb, "credit_notes", state, FIRST)
    assert state["cursor"] == iso(FIRST)

    orb.account.remove("credit_notes", ahead)
    second = run(orb, "credit_notes", state, NEXT)
    assert second.ids == [older]
    assert state["cursor"] == iso(FIRST)


CURSORS: dict[str, Callable[[State], list[str]]] = {
    "credit_notes": lambda state: [state["cursor"]],
    "credit_ledger_entries": lambda state: list(state["cursors"].values()),
    "invoices": lambda state: [state["cursor"], state["refetch_cursor"]],
    "credit_blocks": lambda state: [state["activity_since"]],
}


@pytest.mark.parametrize("table", sorted(CURSORS))
def test_cursors_on_orbs_clock(orb: FakeOrb, table: str) -> None:
    """When Orb answers with a `Date`, every cursor is the moment its listing started on
    Orb's clock (the sandbox's stands still at NOW), not the newest timestamp listed nor
    this machine's time."""
    orb.send_date = True
    state: State = {}
    run(orb, table, state, datetime.now(UTC))
    cursors = CURSORS[table](state)
    assert cursors
    for cursor in cursors:
        assert abs(datetime.fromisoformat(cursor) - NOW) < timedelta(seconds=5), cursor


@pytest.mark.parametrize("order", [["credit_notes", "invoices"], ["invoices", "credit_notes"]])
def test_credit_notes_and_the_invoices_refetch_list_the_notes_once(
    orb: FakeOrb, order: list[str]
) -> None:
    """A run that reads credit notes and invoices lists the credit notes once, from the
    earlier of the two starts, whichever asks first: the table takes the notes from its own
    start, and the invoices' refetch fetches the invoice a new note points at. Both cursors
    end where that listing began, so the next run's two starts are one."""
    notes = orb.account.credit_notes
    like = next(iter(notes.values()))
    states: dict[str, State] = {"credit_notes": {}, "invoices": {}}
    first = run_together(orb, states, FIRST, order)
    assert [p for r in first.values() for p in r.params("/credit_notes")] == [{"limit": "100"}]
    assert sorted(first["credit_notes"].ids) == sorted(notes)
    assert states["credit_notes"]["cursor"] == states["invoices"]["refetch_cursor"]

    states["credit_notes"]["cursor"] = iso(NOW - timedelta(days=1))
    states["invoices"]["refetch_cursor"] = iso(NOW - timedelta(days=2))
    notes_start = NOW - timedelta(days=36)
    refetch_start = NOW - timedelta(days=37) - HOUR
    before_notes = add(orb, "credit_notes", like, created_at=notes_start - HOUR)["id"]
    paid = next(i for i in orb.account.invoices.values() if i["status"] == "paid")
    new = add(orb, "credit_notes", like, created_at=NOW + 6 * HOUR, invoice_id=paid["id"])["id"]
    second = run_together(orb, states, NEXT, order)

    requests = [p for r in second.values() for p in r.params("/credit_notes")]
    assert requests == [{"limit": "100", "created_at[gte]": iso(refetch_start)}]
    expected = sorted(i for i, n in notes.items() if n["created_at"] >= notes_start)
    assert before_notes not in expected and new in expected
    assert sorted(second["credit_notes"].ids) == expected
    assert f"/invoices/{paid['id']}" in second["invoices"].paths("/invoices/")
    assert states["credit_notes"]["cursor"] == states["invoices"]["refetch_cursor"]
    assert states["credit_notes"]["cursor"] == iso(NOW + 6 * HOUR)


# Watermark, one cursor per customer


def test_ledger_cursor_per_customer_and_pending_entries(orb: FakeOrb, customers: list[str]) -> None:
    """Ledger entries keep one cursor per customer and remember pending entries. The next run
    lists each customer once, from its own cursor minus an hour, or from its oldest entry
    pending last run where that is older: an entry still pending and one committed since
    both come back from that one listing. A new customer is listed whole."""
    entries = orb.account.owned["credit_ledger_entries"]
    for by_customer in entries.values():
        for entry in by_customer.values():
            entry["entry_status"] = "committed"
    c0, c1, c2, c3 = customers
    still = add_entry(orb, c0, NOW - timedelta(days=5), "pending")
    add_entry(orb, c0, NOW - timedelta(minutes=10), "committed")
    left = add_entry(orb, c1, NOW - timedelta(days=4), "pending")
    add_entry(orb, c1, NOW - timedelta(minutes=10), "committed")
    recent = add_entry(orb, c3, NOW - timedelta(minutes=30), "pending")

    state: State = {}
    first = run(orb, "credit_ledger_entries", state, FIRST)
    assert first.by_customer() == {c: sorted(entries[c]) for c in customers}
    for c in customers:
        assert first.params(f"/customers/{c}/credits/ledger") == [{"limit": "100"}]
    cursors = {c: newest(entries[c].values(), "created_at") for c in customers}
    stamp = {
        e: iso(entries[c][e]["created_at"]) for c, e in ((c0, still), (c1, left), (c3, recent))
    }
    assert state == {
        "cursors": cursors,
        "open_rows": {
            c0: {still: stamp[still]},
            c1: {left: stamp[left]},
            c3: {recent: stamp[recent]},
        },
        "last_full_sync": iso(FIRST),
    }
    assert first.listings == {"credit_ledger_entries": {"complete": {"at": iso(FIRST)}}}

    entries[c1][left]["entry_status"] = "committed"
    new = add_entry(orb, c2, NOW + 12 * HOUR, "committed")
    orb.account.now = NEXT - HOUR
    joined = add_customer(orb.account, random.Random(1))["id"]
    second = run(orb, "credit_ledger_entries", state, NEXT)

    def since(c: str) -> datetime:
        return datetime.fromisoformat(cursors[c]) - HOUR

    start = {
        c0: datetime.fromisoformat(stamp[still]),
        c1: datetime.fromisoformat(stamp[left]),
        c2: since(c2),
        c3: since(c3),
    }
    assert start[c0] < since(c0) and start[c1] < since(c1)
    assert datetime.fromisoformat(stamp[recent]) >= since(c3)
    window = {
        c: {e for e, v in entries[c].items() if v["created_at"] >= start[c]} for c in customers
    }
    assert still in window[c0] and left in window[c1]
    assert new in window[c2] and recent in window[c3]
    assert second.by_customer() == {
        **{c: sorted(window[c]) for c in customers},
        joined: sorted(entries[joined]),
    }
    assert second.row(left)["entry_status"] == "committed"
    assert second.row(still)["entry_status"] == "pending"
    page = {"limit": "100"}
    for c in customers:
        assert second.params(f"/customers/{c}/credits/ledger") == [
            {**page, "created_at[gte]": iso(start[c])}
        ]
    assert second.params(f"/customers/{joined}/credits/ledger") == [page]
    assert state == {
        "cursors": {
            **cursors,
            c2: iso(NOW + 12 * HOUR),
            joined: newest(entries[joined].values(), "created_at"),
        },
        "open_rows": {
            c0: {still: stamp[still]},
            c3: {recent: stamp[recent]},
            joined: {
                e: iso(v["created_at"])
                for e, v in entries[joined].items()
                if v["entry_status"] == "pending"
            },
        },
        "last_full_sync": iso(FIRST),
    }
    assert state["open_rows"][joined]
    assert second.listings == {}


def test_ledger_customer_deleted_during_the_run(
    orb: FakeOrb, customers: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A customer listed at the start of the run and deleted before its ledger is read (404)
    yields no entries, is forgotten from the open rows, and is named in a warning; the others
    are read as usual."""
    c0, c1, _, _ = customers
    pending = add_entry(orb, c1, NOW - timedelta(days=4), "pending")
    state: State = {}
    run(orb, "credit_ledger_entries", state, FIRST)
    assert pending in state["open_rows"][c1]

    def delete_after_listing(ctx: SyncContext) -> None:
        assert c1 in ctx.customer_ids()
        orb.account.delete_customer(c1)

    with caplog.at_level(logging.WARNING, logger="orb_source"):
        second = run(orb, "credit_ledger_entries", state, NEXT, before=delete_after_listing)
    assert c1 not in second.by_customer() and c0 in second.by_customer()
    assert len(second.params(f"/customers/{c1}/credits/ledger")) == 1
    assert c1 not in state["open_rows"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"customer {c1} disappeared during the run; its credit_ledger_entries are marked deleted"
    ]


# Lifecycle


def test_invoices_lifecycle(orb: FakeOrb) -> None:
    """Invoices: a full first run lists every status and keeps the newest closed
    `invoice_date` (drafts, dated ahead, never move it). The next run lists new closed ones
    by watermark and backdated one-offs, re-lists the open set, and fetches by id what left
    it (paid: the invoice; deleted draft: a 404) and what a new credit note points at. Each
    invoice is emitted once, a new one-off found by two listings too. The re-listing of the
    open set is recorded as a partial listing."""
    invoices = orb.account.invoices

    def having(*statuses: str) -> list[str]:
        return sorted(i for i, v in invoices.items() if v["status"] in statuses)

    noted = {note["invoice_id"] for note in orb.account.credit_notes.values()}
    credited = min(
        (
            v
            for v in invoices.values()
            if v["status"] == "paid" and v["subscription"] and v["id"] not in noted
        ),
        key=lambda v: (v["invoice_date"], v["id"]),
    )
    cursor = NOW - timedelta(days=1)
    add(orb, "invoices", credited, invoice_date=cursor)
    state: State = {}
    first = run(orb, "invoices", state, FIRST)
    assert sorted(first.ids) == sorted(invoices)
    every_status = ["draft", "issued", "paid", "synced", "void"]
    assert first.params("/invoices") == [{"limit": "100", "status[]": every_status}]
    assert first.params("/credit_notes") == [{"limit": "100"}]
    assert max(invoices[i]["invoice_date"] for i in having("draft")) > cursor
    refetch_cursor = newest(orb.account.credit_notes.values(), "created_at")
    assert state == {
        "cursor": iso(cursor),
        "open_ids": having(*OPEN_INVOICE),
        "refetch_cursor": refetch_cursor,
        "last_full_sync": iso(FIRST),
    }
    assert first.listings == {"invoices": {"complete": {"at": iso(FIRST)}}}

    paid_now, still_issued = having("issued")[:2]
    invoices[paid_now]["status"] = "paid"
    deleted = having("draft")[0]
    orb.account.remove("invoices", deleted)
    new = add(orb, "invoices", credited, invoice_date=NOW + 12 * HOUR)["id"]
    one_off = next(v for v in invoices.values() if v["invoice_source"] == "one_off")
    recent_one_off = add(orb, "invoices", one_off, status="paid", invoice_date=NOW + 13 * HOUR)
    note = next(iter(orb.account.credit_notes.values()))
    add(orb, "credit_notes", note, created_at=NOW + 6 * HOUR, invoice_id=credited["id"])
    add(orb, "credit_notes", note, created_at=NOW + 7 * HOUR, invoice_id=new)
    assert credited["invoice_date"] < cursor - HOUR
    second = run(orb, "invoices", state, NEXT)

    assert second.params("/invoices") == [
        {"limit": "100", "status[]": CLOSED_INVOICE, "invoice_date[gte]": iso(cursor - HOUR)},
        {
            "limit": "100",
            "status[]": CLOSED_INVOICE,
            "is_recurring": "false",
            "invoice_date[gte]": iso(cursor - timedelta(days=35)),
        },
        {"limit": "100", "status[]": OPEN_INVOICE},
    ]
    assert second.params("/subscriptions") == [
        {"limit": "100", "created_at[gte]": iso(cursor - HOUR)}
    ]
    assert second.params("/credit_notes") == [
        {
            "limit": "100",
            "created_at[gte]": iso(
                datetime.fromisoformat(refetch_cursor) - HOUR - timedelta(days=35)
            ),
        }
    ]
    assert second.paths("/invoices/") == sorted(
        f"/invoices/{i}" for i in (paid_now, deleted, credited["id"], *noted)
    )

    def closed_since(moment: datetime, one_off: bool = False) -> set[str]:
        return {
            i
            for i, v in invoices.items()
            if v["status"] in CLOSED_INVOICE
            and v["invoice_date"] >= moment
            and (not one_off or v["invoice_source"] == "one_off")
        }

    expected = (
        closed_since(cursor - HOUR)
        | closed_since(cursor - timedelta(days=35), one_off=True)
        | set(having(*OPEN_INVOICE))
        | {paid_now, credited["id"], *noted}
    )
    assert len(second.ids) == len(set(second.ids))
    assert sorted(second.ids) == sorted(expected)
    assert {new, still_issued, recent_one_off["id"]} <= expected and deleted not in second.ids
    assert second.row(paid_now)["status"] == "paid"
    assert state == {
        "cursor": iso(NOW + 13 * HOUR),
        "open_ids": having(*OPEN_INVOICE),
        "refetch_cursor": iso(NOW + 7 * HOUR),
        "last_full_sync": iso(FIRST),
    }
    assert second.listings == {
        "invoices": {"partial": {"at": iso(NEXT), "column": "status", "values": OPEN_INVOICE}}
    }


def test_invoices_of_a_new_subscription_started_in_the_past(orb: FakeOrb) -> None:
    """A subscription created since the last run but started months ago comes with paid
    invoices dated before the cursor's window: they are listed by that subscription."""
    invoices = orb.account.invoices
    paid = min(
        (v for v in invoices.values() if v["status"] == "paid" and v["subscription"]),
        key=lambda v: (v["invoice_date"], v["id"]),
    )
    cursor = NOW - timedelta(days=1)
    add(orb, "invoices", paid, invoice_date=cursor)
    state: State = {}
    run(orb, "invoices", state, FIRST)
    assert state["cursor"] == iso(cursor)

    like = next(iter(orb.account.subscriptions.values()))
    started = add(orb, "subscriptions", like, created_at=NOW + 12 * HOUR)["id"]
    of_started = {**paid["subscription"], "id": started}
    past = add(
        orb, "invoices", paid, invoice_date=NOW - timedelta(days=40), subscription=of_started
    )
    second = run(orb, "invoices", state, NEXT)
    assert second.params("/subscriptions") == [
        {"limit": "100", "created_at[gte]": iso(cursor - HOUR)}
    ]
    assert second.params("/invoices")[2] == {
        "limit": "100",
        "status[]": CLOSED_INVOICE,
        "subscription_id": started,
    }
    assert len(second.params("/invoices")) == 4
    assert second.ids.count(past["id"]) == 1
    assert f"/invoices/{past['id']}" not in second.paths("/invoices/")


def test_invoice_pointed_at_before_a_full_run_with_start_date(orb: FakeOrb) -> None:
    """An invoice dated before the start date is loaded while open and re-read by id when it
    closes. A credit note on it that comes before the next periodic full run (which lists
    closed invoices from the start date on) gets it re-read by id too: that run moves the
    credit notes' cursor past the note, and no later run would read the invoice again."""
    invoices = orb.account.invoices
    start, every = NOW - timedelta(days=10), timedelta(days=7)
    issued = sorted(i for i, v in invoices.items() if v["status"] == "issued")[0]
    assert invoices[issued]["invoice_date"] < start
    state: State = {}
    run(orb, "invoices", state, FIRST, start_date=start, full_refresh_every=every)
    assert issued in state["open_ids"]
    invoices[issued]["status"] = "paid"
    closing = run(orb, "invoices", state, NEXT, start_date=start, full_refresh_every=every)
    assert f"/invoices/{issued}" in closing.paths("/invoices/")
    assert issued not in state["open_ids"]

    note = next(iter(orb.account.credit_notes.values()))
    add(orb, "credit_notes", note, created_at=NEXT + 2 * HOUR, invoice_id=issued)
    day8 = FIRST + timedelta(days=8)
    full = run(orb, "invoices", state, day8, start_date=start, full_refresh_every=every)
    assert state["last_full_sync"] == iso(day8)
    assert f"/invoices/{issued}" in full.paths("/invoices/")
    assert full.ids.count(issued) == 1
    assert state["refetch_cursor"] == iso(NEXT + 2 * HOUR)


def test_an_invoice_whose_credit_note_was_voided_is_read_again(orb: FakeOrb) -> None:
    """Voiding a credit note also voids its summary in the invoice's `credit_notes`: the next
    run fetches that invoice by id, though the note was created before the last run, and
    leaves alone the invoice of an older note that did not change."""
    orb.send_date = True
    invoices = orb.account.invoices
    like = next(iter(orb.account.credit_notes.values()))
    summary = next(s for i in invoices.values() for s in i["credit_notes"])
    # closed subscription invoices dated before the first run: no listing of the next run
    # reads them again unless something points at them
    paid = sorted(
        i
        for i, v in invoices.items()
        if v["status"] == "paid"
        and v["invoice_source"] != "one_off"
        and v["invoice_date"] < NOW - timedelta(days=1)
    )
    paid = paid[:2]
    notes = []
    for invoice_id in paid:
        note = add(
            orb,
            "credit_notes",
            like,
            created_at=NOW - timedelta(days=10),
            voided_at=None,
            invoice_id=invoice_id,
        )
        invoices[invoice_id]["credit_notes"].append(
            {**summary, "id": note["id"], "voided_at": None}
        )
        notes.append(note)
    state: State = {}
    run(orb, "invoices", state, FIRST)
    void_credit_note(orb.account, notes[0], NOW + 3 * HOUR)
    second = run(orb, "invoices", state, NEXT)
    assert second.paths("/invoices/") == [f"/invoices/{paid[0]}"]
    assert paid[1] not in second.ids
    [voided] = [s for s in second.row(paid[0])["credit_notes"] if s["id"] == notes[0]["id"]]
    assert voided["voided_at"] is not None


def test_subscriptions_lifecycle_with_start_date(orb: FakeOrb) -> None:
    """Subscriptions: with a start date, ended ones are kept only if they ended since
    (`end_date`; the listing filters on `created_at` only) and open ones always; the open set
    listing is recorded as partial. The next run lists ended ones created since the cursor,
    re-lists the open set and fetches by id a subscription that ended in between."""
    subs = orb.account.subscriptions
    active = sorted(
        (s for s in subs.values() if s["status"] == "active"),
        key=lambda s: (s["created_at"], s["id"]),
    )
    ending, long_ended, recently_ended = active[0], active[-1], active[-2]
    long_ended.update(status="ended", end_date=NOW - timedelta(days=60))
    recently_ended.update(status="ended", end_date=NOW - timedelta(days=5))
    start = NOW - timedelta(days=30)

    def open_ids() -> list[str]:
        return sorted(i for i, s in subs.items() if s["status"] in ("upcoming", "active"))

    state: State = {}
    first = run(orb, "subscriptions", state, FIRST, start_date=start)
    assert first.params("/subscriptions") == [
        {"limit": "100", "status[]": ["ended"]},
        {"limit": "100", "status[]": ["upcoming", "active"]},
    ]
    assert sorted(first.ids) == sorted([*open_ids(), recently_ended["id"]])
    cursor = long_ended["created_at"]
    assert state == {"cursor": iso(cursor), "open_ids": open_ids(), "last_full_sync": iso(FIRST)}
    partial = {"column": "status", "values": ["upcoming", "active"]}
    assert first.listings == {"subscriptions": {"partial": {"at": iso(FIRST), **partial}}}

    ending.update(status="ended", end_date=NOW + HOUR)
    new = add(orb, "subscriptions", active[1], created_at=NOW + 12 * HOUR)["id"]
    assert ending["created_at"] < cursor - HOUR
    second = run(orb, "subscriptions", state, NEXT, start_date=start)
    assert second.params("/subscriptions") == [
        {"limit": "100", "status[]": ["ended"], "created_at[gte]": iso(cursor - HOUR)},
        {"limit": "100", "status[]": ["upcoming", "active"]},
    ]
    assert second.paths("/subscriptions/") == [f"/subscriptions/{ending['id']}"]
    ended_since = {
        i for i, s in subs.items() if s["status"] == "ended" and s["created_at"] >= cursor - HOUR
    }
    assert len(second.ids) == len(set(second.ids))
    assert sorted(second.ids) == sorted(ended_since | set(open_ids()) | {ending["id"]})
    assert new in second.ids and second.row(ending["id"])["status"] == "ended"
    assert state == {"cursor": iso(cursor), "open_ids": open_ids(), "last_full_sync": iso(FIRST)}
    assert second.listings == {"subscriptions": {"partial": {"at": iso(NEXT), **partial}}}


# On activity


def awaiting_payment(orb: FakeOrb) -> Callable[[str, str], str]:
    """Makes every block active and every one-off invoice paid; the function returned puts a
    block of a customer's back awaiting payment, with an issued purchase invoice, whose id
    it returns."""
    for by_customer in orb.account.owned["credit_blocks"].values():
        for block in by_customer.values():
            block["status"] = "active"
    one_offs = [i for i in orb.account.invoices.values() if i["invoice_source"] == "one_off"]
    for invoice in one_offs:
        invoice["status"] = "paid"

    def purchase(customer_id: str, block_id: str) -> str:
        orb.account.owned["credit_blocks"][customer_id][block_id]["status"] = "pending_payment"
        customer = orb.account.customers[customer_id]
        invoice = add(orb, "invoices", one_offs[0], customer=customer_ref(customer))
        invoice.update(status="issued", invoice_source="one_off", subscription=None)
        return str(invoice["id"])

    return purchase


def test_credit_blocks_on_activity(orb: FakeOrb, customers: list[str]) -> None:
    """Credit blocks: the first run lists the one-off invoices still open, then every
    customer, and remembers the blocks awaiting payment with the invoices their customer had
    open. The next run asks each customer's ledger for one entry since the last run,
    re-lists only the customer whose ledger moved, re-reads by id the awaiting blocks whose
    customer's invoice left the open ones (one paid, so the block is active; one voided as
    its block was deleted: its customer is re-listed), and records a partial listing of the
    customers it re-listed."""
    blocks = orb.account.owned["credit_blocks"]
    purchase = awaiting_payment(orb)
    c0, c1, _, c3 = customers
    paid_later = sorted(blocks[c1])[0]
    vanishing = sorted(blocks[c3])[0]
    paid_invoice = purchase(c1, paid_later)
    voided_invoice = purchase(c3, vanishing)

    state: State = {}
    first = run(orb, "credit_blocks", state, FIRST)
    assert first.by_customer() == {c: sorted(blocks[c]) for c in customers if blocks[c]}
    awaited = {"limit": "100", "status[]": ["draft", "issued", "synced"], "is_recurring": "false"}
    assert first.params("/invoices") == [awaited]
    assert first.requests[0].path == "/invoices"
    for c in customers:
        assert first.params(f"/customers/{c}/credits") == [
            {"limit": "100", "include_all_blocks": "true"}
        ]
    assert not [r for r in first.requests if r.path.endswith("/ledger")]
    assert activity_state(state) == {
        "activity_since": iso(FIRST),
        "open_objects": {c1: [paid_later], c3: [vanishing]},
        "awaiting": {paid_later: [paid_invoice], vanishing: [voided_invoice]},
        "last_full_sync": iso(FIRST),
    }
    assert first.listings == {"credit_blocks": {"complete": {"at": iso(FIRST)}}}

    add_entry(orb, c0, NOW + 12 * HOUR, "committed")
    blocks[c1][paid_later]["status"] = "active"
    orb.account.invoices[paid_invoice]["status"] = "paid"
    orb.account.remove("credit_blocks", vanishing, c3)
    orb.account.invoices[voided_invoice]["status"] = "void"
    second = run(orb, "credit_blocks", state, NEXT)

    for c in customers:
        assert second.params(f"/customers/{c}/credits/ledger") == [
            {"created_at[gte]": iso(FIRST - HOUR), "limit": "1"}
        ]
    listed = [r.path for r in second.requests if r.path.endswith("/credits")]
    assert listed == [f"/customers/{c0}/credits", f"/customers/{c3}/credits"]
    assert second.paths("/credit_blocks/") == sorted(
        f"/credit_blocks/{b}" for b in (paid_later, vanishing)
    )
    expected = {c0: sorted(blocks[c0]), c1: [paid_later]}
    if blocks[c3]:
        expected[c3] = sorted(blocks[c3])
    assert second.by_customer() == expected
    assert second.row(paid_later)["status"] == "active"
    assert activity_state(state) == {
        "activity_since": iso(NEXT),
        "open_objects": {},
        "last_full_sync": iso(FIRST),
    }
    assert second.listings == {
        "credit_blocks": {"partial": {"at": iso(NEXT), "column": "customer_id", "values": [c0, c3]}}
    }


def test_a_block_awaiting_payment_is_read_again_once_its_invoice_is_paid(
    orb: FakeOrb, customers: list[str]
) -> None:
    """While every one-off invoice its customer had open when the block was first seen
    awaiting payment is still open, the block is not read again: its purchase invoice is
    unpaid. Once one is paid it is read by id, and again every run while it still awaits
    payment (Orb may activate it a little after the payment). A block whose customer had no
    one-off invoice open (its invoice synced elsewhere, say) is read by id every run."""
    blocks = orb.account.owned["credit_blocks"]
    purchase = awaiting_payment(orb)
    c0, _, c2, _ = customers
    waiting = sorted(blocks[c0])[0]
    other = purchase(c0, waiting)
    unpaid = purchase(c0, waiting)
    unknown = sorted(blocks[c2])[0]
    blocks[c2][unknown]["status"] = "pending_payment"
    state: State = {}
    run(orb, "credit_blocks", state, FIRST)
    assert state["awaiting"] == {waiting: sorted([other, unpaid]), unknown: []}

    later = FIRST
    for day, paid in enumerate((None, other, None), start=1):
        if paid:
            orb.account.invoices[paid]["status"] = "paid"
        later = FIRST + timedelta(days=day)
        result = run(orb, "credit_blocks", state, later)
        reread = {waiting, unknown} if day > 1 else {unknown}
        assert result.paths("/credit_blocks/") == sorted(f"/credit_blocks/{b}" for b in reread)
        assert result.params("/invoices") == [
            {"limit": "100", "status[]": ["draft", "issued", "synced"], "is_recurring": "false"}
        ]
        assert state["open_objects"] == {c0: [waiting], c2: [unknown]}
        assert state["awaiting"] == {waiting: sorted([other, unpaid]), unknown: []}

    blocks[c0][waiting]["status"] = "active"
    result = run(orb, "credit_blocks", state, later + timedelta(days=1))
    assert result.row(waiting)["status"] == "active"
    assert state["open_objects"] == {c2: [unknown]}
    assert state["awaiting"] == {unknown: []}


def test_blocks_take_their_activity_from_the_ledger_listing(
    orb: FakeOrb, customers: list[str]
) -> None:
    """A run that reads both the ledger and credit blocks lists each customer's ledger once:
    whichever of the two asks first lists it, and blocks re-list only the customers with new
    entries, without a one-row ledger request. Blocks read alone ask with one row again,
    from where the shared listing began."""
    for by_customer in orb.account.owned["credit_ledger_entries"].values():
        for entry in by_customer.values():
            entry["entry_status"] = "committed"
    for by_customer in orb.account.owned["credit_blocks"].values():
        for block in by_customer.values():
            block["status"] = "active"
    entries = orb.account.owned["credit_ledger_entries"]
    blocks = orb.account.owned["credit_blocks"]
    c0, _, c2, c3 = customers
    ledger, credit_blocks = "credit_ledger_entries", "credit_blocks"
    states: dict[str, State] = {ledger: {}, credit_blocks: {}}
    page = {"limit": "100"}

    first = run_together(orb, states, FIRST, [ledger, credit_blocks])
    for c in customers:
        assert first[ledger].params(f"/customers/{c}/credits/ledger") == [page]
    assert not [r for r in first[credit_blocks].requests if r.path.endswith("/ledger")]
    assert "feed_listed" not in states[credit_blocks]

    def one_listing_each(result: dict[str, Run], cursors: dict[str, str]) -> None:
        requests = result[ledger].requests + result[credit_blocks].requests
        for c in customers:
            since = iso(datetime.fromisoformat(cursors[c]) - HOUR)
            ledger_requests = [
                r.params for r in requests if r.path == f"/customers/{c}/credits/ledger"
            ]
            assert ledger_requests == [{**page, "created_at[gte]": since}], c
            window = {
                e for e, v in entries[c].items() if v["created_at"] >= datetime.fromisoformat(since)
            }
            assert result[ledger].by_customer().get(c, []) == sorted(window), c

    for when, order, moved in (
        (NEXT, [ledger, credit_blocks], c0),
        (NEXT + timedelta(days=1), [credit_blocks, ledger], c2),
    ):
        cursors = dict(states[ledger]["cursors"])
        add_entry(orb, moved, when - 12 * HOUR, "committed")
        result = run_together(orb, states, when, order)
        one_listing_each(result, cursors)
        listed = [r.path for r in result[credit_blocks].requests if r.path.endswith("/credits")]
        assert listed == [f"/customers/{moved}/credits"]
        assert result[credit_blocks].by_customer() == {moved: sorted(blocks[moved])}
        assert states[credit_blocks]["feed_listed"] == {c: iso(when) for c in customers}
        assert states[credit_blocks]["activity_since"] == iso(when)

    later = NEXT + timedelta(days=2)
    add_entry(orb, c3, later - 12 * HOUR, "committed")
    alone = run(orb, credit_blocks, states[credit_blocks], later)
    for c in customers:
        assert alone.params(f"/customers/{c}/credits/ledger") == [
            {"created_at[gte]": iso(NEXT + timedelta(days=1) - HOUR), "limit": "1"}
        ]
    assert alone.by_customer() == {c3: sorted(blocks[c3])}
    assert "feed_listed" not in states[credit_blocks]


def test_blocks_ask_on_their_own_where_the_ledger_listing_starts_too_late(
    orb: FakeOrb, customers: list[str]
) -> None:
    """The ledger read alone moves its cursors past the blocks' last check: a later run of
    both cannot answer for the blocks from the ledger's listing, so it asks with one row
    as well, and still re-lists the customer whose ledger moved in between."""
    for by_customer in orb.account.owned["credit_ledger_entries"].values():
        for entry in by_customer.values():
            entry["entry_status"] = "committed"
    c0 = customers[0]
    ledger, credit_blocks = "credit_ledger_entries", "credit_blocks"
    states: dict[str, State] = {ledger: {}, credit_blocks: {}}
    run_together(orb, states, FIRST, [ledger, credit_blocks])

    add_entry(orb, c0, NEXT - 2 * HOUR, "committed")
    orb.account.now = NEXT
    orb.send_date = True
    run(orb, ledger, states[ledger], NEXT)
    cursors = {c: datetime.fromisoformat(v) for c, v in states[ledger]["cursors"].items()}
    assert all(cursor >= NEXT for cursor in cursors.values())

    result = run_together(orb, states, NEXT + HOUR, [ledger, credit_blocks])
    requests = result[ledger].requests + result[credit_blocks].requests
    for c in customers:
        ledger_requests = [r.params for r in requests if r.path == f"/customers/{c}/credits/ledger"]
        assert ledger_requests == [
            {"limit": "100", "created_at[gte]": iso(cursors[c] - HOUR)},
            {"created_at[gte]": iso(FIRST - HOUR), "limit": "1"},
        ], c
    listed = [r.path for r in result[credit_blocks].requests if r.path.endswith("/credits")]
    assert listed == [f"/customers/{c0}/credits"]


def test_blocks_ask_on_their_own_when_the_ledger_is_listed_whole(
    orb: FakeOrb, customers: list[str]
) -> None:
    """With the ledger's state dropped, the run lists each ledger whole; the blocks, still
    incremental, ask with one row and do not list the ledger again from its new cursors,
    whichever of the two reads first."""
    ledger, credit_blocks = "credit_ledger_entries", "credit_blocks"
    states: dict[str, State] = {ledger: {}, credit_blocks: {}}
    run_together(orb, states, FIRST, [ledger, credit_blocks])
    for when, order in ((NEXT, [ledger, credit_blocks]), (NEXT + HOUR, [credit_blocks, ledger])):
        states[ledger] = {}
        checked = datetime.fromisoformat(states[credit_blocks]["activity_since"]) - HOUR
        result = run_together(orb, states, when, order)
        requests = result[ledger].requests + result[credit_blocks].requests
        for c in customers:
            ledger_requests = sorted(
                (r.params for r in requests if r.path == f"/customers/{c}/credits/ledger"),
                key=len,
            )
            assert ledger_requests == [
                {"limit": "100"},
                {"created_at[gte]": iso(checked), "limit": "1"},
            ], (order, c)


def test_a_new_customers_ledger_is_listed_once_whichever_reads_first(
    orb: FakeOrb, customers: list[str]
) -> None:
    """A customer new since the last run has its ledger listed whole by the ledger's reader,
    which then moves its cursor. The blocks ask with one row, never listing the ledger again
    from that moved cursor, whether they ask before or after the ledger's reader is done."""
    ledger, credit_blocks = "credit_ledger_entries", "credit_blocks"
    states: dict[str, State] = {ledger: {}, credit_blocks: {}}
    run_together(orb, states, FIRST, [ledger, credit_blocks])
    for when, order in ((NEXT, [ledger, credit_blocks]), (NEXT + HOUR, [credit_blocks, ledger])):
        orb.account.now = when - HOUR
        joined = add_customer(orb.account, random.Random(len(orb.account.customers)))["id"]
        assert orb.account.of_customer("credit_ledger_entries", joined)
        checked = datetime.fromisoformat(states[credit_blocks]["activity_since"]) - HOUR
        result = run_together(orb, states, when, order)
        requests = result[ledger].requests + result[credit_blocks].requests
        ledger_requests = sorted(
            (r.params for r in requests if r.path == f"/customers/{joined}/credits/ledger"),
            key=len,
        )
        assert ledger_requests == [
            {"limit": "100"},
            {"created_at[gte]": iso(checked), "limit": "1"},
        ], order
        assert joined in states[ledger]["cursors"]


def test_a_ledger_listing_a_little_later_than_the_blocks_check_is_shared(
    orb: FakeOrb, customers: list[str]
) -> None:
    """In one run the blocks' check begins before the ledger's listings (here 10 minutes on
    Orb's clock). The next run's shared listing starts at the earlier of the two, within one
    overlap, so the blocks can take their answer from it right after a full run."""
    for by_customer in orb.account.owned["credit_ledger_entries"].values():
        for entry in by_customer.values():
            entry["entry_status"] = "committed"
    ledger, credit_blocks = "credit_ledger_entries", "credit_blocks"
    states: dict[str, State] = {ledger: {}, credit_blocks: {}}
    orb.send_date = True
    checks_begin = NOW + 2 * HOUR

    def clock(table: str) -> None:
        orb.account.now = checks_begin + (timedelta(minutes=10) if table == ledger else timedelta())

    def near(value: str, moment: datetime) -> bool:
        """On Orb's clock, which the client reads to the second from the `Date` header."""
        return abs(datetime.fromisoformat(value) - moment) < timedelta(seconds=1)

    run_together(orb, states, checks_begin, [credit_blocks, ledger], before=clock)
    checked = states[credit_blocks]["activity_since"]
    assert near(checked, checks_begin)
    for cursor in states[ledger]["cursors"].values():
        assert near(cursor, checks_begin + timedelta(minutes=10))

    c2 = customers[2]
    add_entry(orb, c2, NEXT - HOUR, "committed")
    orb.account.now = NEXT
    result = run_together(orb, states, NEXT, [ledger, credit_blocks])
    requests = result[ledger].requests + result[credit_blocks].requests
    for c in customers:
        ledger_requests = [r.params for r in requests if r.path == f"/customers/{c}/credits/ledger"]
        since = iso(datetime.fromisoformat(checked) - HOUR)
        assert ledger_requests == [{"limit": "100", "created_at[gte]": since}]
    listed = [r.path for r in result[credit_blocks].requests if r.path.endswith("/credits")]
    assert listed == [f"/customers/{c2}/credits"]
    assert states[credit_blocks]["feed_listed"].keys() == set(customers)
    for c in customers:
        assert states[credit_blocks]["feed_listed"][c] == states[ledger]["cursors"][c]
        assert near(states[ledger]["cursors"][c], NEXT)


@pytest.mark.parametrize("status", [404, 403])
def test_an_endpoint_of_a_feature_the_account_lacks_is_skipped(
    orb: FakeOrb, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Orb answers 404 or 403 for a feature the account lacks: the table gets no rows, one
    info line says why, and no listing is recorded, so no row of an earlier run is marked
    deleted. Another account-wide listing answering so still fails the run."""
    orb.account.unavailable["/license_types"] = status
    with caplog.at_level(logging.INFO, logger="orb_source.strategies"):
        result = run(orb, "license_types", {}, FIRST)
    assert result.rows == [] and result.listings == {}
    assert [r.path for r in result.requests] == ["/license_types"]
    lines = [r for r in caplog.records if "license_types" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert lines[0].getMessage().startswith("license_types skipped: no licenses on this account")
    assert str(status) in lines[0].getMessage()

    del orb.account.unavailable["/license_types"]
    served = run(orb, "license_types", {}, FIRST)
    assert sorted(served.ids) == sorted(orb.account.license_types)
    assert served.listings == {"license_types": {"complete": {"at": iso(FIRST)}}}

    orb.account.unavailable["/items"] = status
    with pytest.raises(OrbForbidden if status == 403 else OrbNotFound):
        run(orb, "items", {}, FIRST)


# Full refresh due


def test_full_refresh_every_turns_a_run_full(orb: FakeOrb) -> None:
    """`full_refresh_every` keeps runs incremental until that long after the last full
    listing, then lists everything, records a complete listing and restarts the count;
    `full_refresh` forces one at once."""
    every = timedelta(days=7)
    state: State = {}
    run(orb, "credit_notes", state, FIRST, full_refresh_every=every)
    cursor = datetime.fromisoformat(state["cursor"])
    since = {"limit": "100", "created_at[gte]": iso(cursor - timedelta(days=35))}

    day6 = FIRST + timedelta(days=6)
    incremental = run(orb, "credit_notes", state, day6, full_refresh_every=every)
    assert incremental.params("/credit_notes") == [since]
    assert incremental.listings == {} and state["last_full_sync"] == iso(FIRST)

    day8 = FIRST + timedelta(days=8)
    due = run(orb, "credit_notes", state, day8, full_refresh_every=every)
    assert due.params("/credit_notes") == [{"limit": "100"}]
    assert due.listings == {"credit_notes": {"complete": {"at": iso(day8)}}}
    assert state["last_full_sync"] == iso(day8)

    day9 = FIRST + timedelta(days=9)
    again = run(orb, "credit_notes", state, day9, full_refresh_every=every)
    assert again.params("/credit_notes") == [since]
    forced = run(orb, "credit_notes", state, day9, full_refresh=True, full_refresh_every=every)
    assert forced.params("/credit_notes") == [{"limit": "100"}]
    assert state["last_full_sync"] == iso(day9)


def test_full_refresh_every_lists_every_customer_on_activity(
    orb: FakeOrb, customers: list[str]
) -> None:
    """A due periodic full run of an on-activity table skips the ledger checks, lists every
    customer and records a complete listing."""
    every = timedelta(days=7)
    state: State = {}
    run(orb, "credit_blocks", state, FIRST, full_refresh_every=every)
    day8 = FIRST + timedelta(days=8)
    due = run(orb, "credit_blocks", state, day8, full_refresh_every=every)
    assert not [r for r in due.requests if r.path.endswith("/ledger")]
    listed = sorted(r.path for r in due.requests if r.path.endswith("/credits"))
    assert listed == [f"/customers/{c}/credits" for c in customers]
    assert due.listings == {"credit_blocks": {"complete": {"at": iso(day8)}}}
    assert state["last_full_sync"] == iso(day8) and state["activity_since"] == iso(day8)


def test_state_in_todays_format_is_read_unchanged(orb: FakeOrb, customers: list[str]) -> None:
    """State as this release writes it, taken from a real run and written out literally: the
    next run continues from it (no full listing, cursors honoured), and every key it keeps is
    one `state.ListingState` declares, so a renamed key cannot silently reset a cursor."""
    day_before = iso(NOW - timedelta(days=1))
    first, second = customers[0], customers[1]
    pending = add_entry(orb, first, NOW - timedelta(days=3), "pending")
    saved: dict[str, State] = {
        "credit_notes": {"cursor": day_before, "last_full_sync": day_before},
        "invoices": {
            "cursor": day_before,
            "open_ids": [],
            "refetch_cursor": day_before,
            "last_full_sync": day_before,
        },
        "credit_ledger_entries": {
            "cursors": {first: day_before, second: day_before},
            "open_rows": {first: {pending: iso(NOW - timedelta(days=3))}},
            "last_full_sync": day_before,
        },
        "credit_blocks": {
            "activity_since": day_before,
            "open_objects": {},
            "last_full_sync": day_before,
        },
    }
    since = iso(NOW - timedelta(days=1) - HOUR)
    for table, state in saved.items():
        result = run(orb, table, state, NEXT, full_refresh_every=timedelta(days=7))
        assert "complete" not in result.listings.get(table, {}), table
        assert set(state) <= set(ListingState.__annotations__), table
        assert state["last_full_sync"] == day_before, table
        if table == "credit_notes":
            [params] = result.params("/credit_notes")
            assert params["created_at[gte]"] == iso(NOW - timedelta(days=36))
        if table == "invoices":
            assert {"invoice_date[gte]": since}.items() <= result.params("/invoices")[0].items()
        if table == "credit_ledger_entries":
            ledger = result.params(f"/customers/{first}/credits/ledger")
            assert [params["created_at[gte]"] for params in ledger] == [
                iso(NOW - timedelta(days=3))
            ]
            assert pending in result.ids
        if table == "credit_blocks":
            assert result.params(f"/customers/{first}/credits/ledger") == [
                {"created_at[gte]": since, "limit": "1"}
            ]
