"""The sandbox account: the single source of truth the fake API serves and tests check."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

Obj = dict[str, Any]

TOP_LEVEL = (
    "customers",
    "subscriptions",
    "invoices",
    "credit_notes",
    "plans",
    "prices",
    "items",
    "coupons",
    "billable_metrics",
    "dimensional_price_groups",
    "license_types",
    "webhook_endpoints",
    "event_backfills",
    "subscription_changes",
)
PER_PARENT = ("plan_migrations", "licenses", "dimensional_price_group_prices", "scheduled_plans")
"""Objects Orb lists under another object, by the parent's id: a plan's migrations, a
subscription's licenses, a price group's prices, a subscription's scheduled plan changes."""
DERIVED = ("subscription_schedules", "coupon_subscriptions")
"""Tables the API derives from other objects: a subscription's plan schedule (its plan,
then its scheduled changes) and the subscriptions that redeemed each coupon."""
PER_CUSTOMER = (
    "credit_ledger_entries",
    "credit_blocks",
    "top_ups",
    "customer_balance_transactions",
    "alerts",
)
# Per-customer objects with no customer field in Orb's shape; objects() adds one for joins.
NEEDS_CUSTOMER_ID = frozenset({"credit_blocks", "top_ups", "customer_balance_transactions"})


class Number(Decimal):
    """A value Orb sends as a JSON number, a double (quantities, ledger amounts, balances,
    percentages), not as a string.

    It must be exactly the shortest text of a double, as Orb prints it ("542.6099999999999"),
    so serialising it as a float changes no digit; anything else is refused here rather than
    silently rounded on the wire. Compute doubles in float arithmetic and wrap them with
    `double`.
    """

    __slots__ = ()

    def __new__(cls, value: object = 0) -> Number:
        number = super().__new__(cls, value)  # type: ignore[arg-type]
        if Decimal(repr(float(number))) != number:
            raise ValueError(f"{value!r} is not a double's shortest text")
        return number


def double(value: float) -> Number:
    """A double as Orb sends it: its shortest round-tripping text (what `repr` prints)."""
    return Number(repr(float(value)))


class Shared(Mapping[str, Any]):
    """A read-only view of an object embedded in many others (a price in every line item).

    Its JSON is encoded once and spliced into every payload that embeds it, which keeps
    large invoice and subscription pages cheap. Only wrap objects the sandbox never edits.
    """

    __slots__ = ("_json", "obj")

    def __init__(self, obj: Obj) -> None:
        self.obj = obj
        self._json: bytes | None = None

    def __getitem__(self, key: str) -> Any:
        return self.obj[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.obj)

    def __len__(self) -> int:
        return len(self.obj)

    def json(self) -> bytes:
        if self._json is None:
            self._json = dumps(self.obj)
        return self._json


_SPLICE = re.compile(rb'"\\u0000(\d+)"')


def dumps(value: object) -> bytes:
    """Serialise account objects to Orb's wire JSON: a Decimal as a plain decimal string with
    every digit ("0.0000000375", never "3.75E-8"), a Number as a JSON double."""
    spliced: list[bytes] = []

    def encode(item: object) -> object:
        if isinstance(item, Number):
            return float(item)
        if isinstance(item, Decimal):
            text = str(item)  # fast, but exponent notation for tiny or scaled values
            return format(item, "f") if "E" in text else text
        if isinstance(item, Shared):
            spliced.append(item.json())
            return f"\x00{len(spliced) - 1}"
        raise TypeError(f"cannot encode {type(item).__name__}")

    text = orjson.dumps(value, default=encode)
    return _SPLICE.sub(lambda match: spliced[int(match[1])], text) if spliced else text


@dataclass
class UsageLog:
    """When usage reached invoice lines, so the daily usage behind each line can be derived.

    A line made before its billing period ended holds the usage up to the moment it was made
    (`opened`); usage added to a draft line later (late-arriving events) is recorded in `late`.
    A line missing from both holds its whole period's usage. A line deleted from a draft
    leaves its events behind (`dropped`): the usage happened, only the invoice lost it.
    """

    opened: dict[str, datetime] = field(default_factory=dict)
    """Line id -> account time when the line was made, for lines made mid-period."""
    late: dict[str, list[tuple[datetime, Any]]] = field(default_factory=dict)
    """Line id -> (account time, quantity added) for each later increment of its quantity."""
    dropped: dict[str, list[Obj]] = field(default_factory=dict)
    """Subscription id -> line items deleted from its drafts, as they were when deleted."""
    version: int = 0
    """Bumped on every record, so caches of derived usage know to refresh."""

    def open(self, line_id: str, at: datetime) -> None:
        self.opened[line_id] = at
        self.version += 1

    def add(self, line_id: str, at: datetime, quantity: Any) -> None:
        self.late.setdefault(line_id, []).append((at, quantity))
        self.version += 1

    def drop(self, subscription_id: str, line: Obj) -> None:
        self.dropped.setdefault(subscription_id, []).append(line)
        self.version += 1


def utc(moment: datetime) -> str:
    """A moment as one spelling: UTC, ISO 8601."""
    return moment.astimezone(UTC).isoformat()


def plan_ref(plan: Mapping[str, Any]) -> Obj:
    """The {id, external_plan_id, name} reference a plan schedule embeds."""
    return {"id": plan["id"], "external_plan_id": plan["external_plan_id"], "name": plan["name"]}


def wire(value: object) -> Any:
    """Round-trip through the wire so callers see what a client parses (floats as Decimal)."""
    return json.loads(dumps(value), parse_float=Decimal)


@dataclass(eq=False)
class Account:
    """Current state of one Orb account; `lock` guards every server read and every mutation.

    Add and remove objects through add()/remove() (or call touch()) so the server rebuilds
    its cached list orders; editing fields of existing objects in place needs nothing else.
    """

    now: datetime
    customers: dict[str, Obj] = field(default_factory=dict)
    subscriptions: dict[str, Obj] = field(default_factory=dict)
    invoices: dict[str, Obj] = field(default_factory=dict)
    credit_notes: dict[str, Obj] = field(default_factory=dict)
    plans: dict[str, Obj] = field(default_factory=dict)
    prices: dict[str, Obj] = field(default_factory=dict)
    items: dict[str, Obj] = field(default_factory=dict)
    coupons: dict[str, Obj] = field(default_factory=dict)
    billable_metrics: dict[str, Obj] = field(default_factory=dict)
    dimensional_price_groups: dict[str, Obj] = field(default_factory=dict)
    license_types: dict[str, Obj] = field(default_factory=dict)
    webhook_endpoints: dict[str, Obj] = field(default_factory=dict)
    event_backfills: dict[str, Obj] = field(default_factory=dict)
    subscription_changes: dict[str, Obj] = field(default_factory=dict)
    served: dict[str, set[str]] = field(default_factory=dict)
    """Ids of per-parent and derived tables served so far (`gone`)."""
    under: dict[str, dict[str, dict[str, Obj]]] = field(
        default_factory=lambda: {table: {} for table in PER_PARENT}
    )
    """Per-parent objects (`PER_PARENT`): table -> parent id -> object id -> object."""
    owned: dict[str, dict[str, dict[str, Obj]]] = field(
        default_factory=lambda: {table: {} for table in PER_CUSTOMER}
    )
    born: dict[str, datetime] = field(default_factory=dict)
    removed: dict[str, set[str]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    views: dict[str, Shared] = field(default_factory=dict, repr=False)
    revision: int = 0
    usage_log: UsageLog = field(default_factory=UsageLog, repr=False)
    unavailable: dict[str, int] = field(default_factory=dict)
    """Routes of features this account lacks (`/license_types`), and the status Orb answers
    them with: 404 (`404-feature-not-available`) or 403."""
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def touch(self) -> None:
        """Record that membership changed so cached list orders get rebuilt."""
        self.revision += 1

    def table(self, name: str) -> dict[str, Obj]:
        """The live dict of an account-level table."""
        if name not in TOP_LEVEL:
            raise KeyError(name)
        table: dict[str, Obj] = getattr(self, name)
        return table

    def of_customer(self, name: str, customer_id: str) -> dict[str, Obj]:
        """The live dict of one customer's objects in a per-customer table."""
        return self.owned[name].setdefault(customer_id, {})

    def of_parent(self, name: str, parent_id: str) -> dict[str, Obj]:
        """The live dict of one parent's objects in a per-parent table (`PER_PARENT`)."""
        return self.under[name].setdefault(parent_id, {})

    def schedule(self, sub: Obj) -> list[Obj]:
        """A subscription's plan schedule, as `GET /subscriptions/{id}/schedule` lists it: its
        plan from its start, then each scheduled plan change, each until the next one."""
        changes = sorted(
            self.of_parent("scheduled_plans", sub["id"]).values(), key=lambda c: c["start_date"]
        )
        starts = [change["start_date"] for change in changes]
        entries = [
            {
                "created_at": sub["created_at"],
                "start_date": sub["start_date"],
                "plan": plan_ref(sub["plan"]),
            }
        ]
        entries += [
            {"created_at": c["created_at"], "start_date": c["start_date"], "plan": c["plan"]}
            for c in changes
        ]
        ends = [*starts, sub["end_date"]]
        return [{**entry, "end_date": end} for entry, end in zip(entries, ends, strict=True)]

    def coupon_subscriptions(self, coupon_id: str) -> list[Obj]:
        """The subscriptions that redeemed a coupon (`GET /coupons/{id}/subscriptions`)."""
        return [
            sub
            for sub in self.subscriptions.values()
            if (sub["redeemed_coupon"] or {}).get("coupon_id") == coupon_id
        ]

    def add(self, name: str, obj: Obj, customer_id: str | None = None) -> Obj:
        """Insert an object; per-customer tables need the owning customer id."""
        target = self.table(name) if customer_id is None else self.of_customer(name, customer_id)
        target[obj["id"]] = obj
        self.touch()
        return obj

    def remove(self, name: str, obj_id: str, customer_id: str | None = None) -> None:
        """Take an object out of the API and remember it as gone (with an invoice's line items)."""
        target = self.table(name) if customer_id is None else self.of_customer(name, customer_id)
        obj = target.pop(obj_id)
        self.removed.setdefault(name, set()).add(obj_id)
        if name == "invoices":
            self.removed.setdefault("invoice_line_items", set()).update(
                line["id"] for line in obj["line_items"]
            )
        self.touch()

    def remove_line(self, invoice: Obj, line_id: str) -> None:
        """Drop a line item from a (draft) invoice and remember it as gone; the usage log
        keeps its events."""
        for line in invoice["line_items"]:
            if line["id"] == line_id and invoice["subscription"] is not None:
                self.usage_log.drop(invoice["subscription"]["id"], line)
        invoice["line_items"] = [line for line in invoice["line_items"] if line["id"] != line_id]
        self.removed.setdefault("invoice_line_items", set()).add(line_id)

    def delete_customer(self, customer_id: str) -> None:
        """Soft-delete a customer: it and everything it owns disappear from the API."""
        for sub_id in [
            s["id"] for s in self.subscriptions.values() if s["customer"]["id"] == customer_id
        ]:
            self.remove("subscriptions", sub_id)
        for name in ("invoices", "credit_notes"):
            table = self.table(name)
            for obj_id in [k for k, v in table.items() if v["customer"]["id"] == customer_id]:
                self.remove(name, obj_id)
        for name in PER_CUSTOMER:
            for obj_id in list(self.owned[name].get(customer_id, {})):
                self.remove(name, obj_id, customer_id)
            self.owned[name].pop(customer_id, None)
        self.remove("customers", customer_id)

    def shared(self, obj: Obj) -> Shared:
        """The one embeddable view of an object the sandbox never edits (prices, plans)."""
        view = self.views.get(obj["id"])
        if view is None:
            view = self.views[obj["id"]] = Shared(obj)
        return view

    def next_number(self, kind: str) -> int:
        """Next value of a per-account sequence (invoice and credit note numbers)."""
        self.counters[kind] = self.counters.get(kind, 0) + 1
        return self.counters[kind]

    def price(self, price_id: str) -> Obj | None:
        """Any price by id: add-on prices and the prices inside plans."""
        if price_id in self.prices:
            return self.prices[price_id]
        for plan in self.plans.values():
            for price in plan["prices"]:
                if price["id"] == price_id:
                    return price
        return None

    def objects(self, table: str) -> dict[str, Obj]:
        """Live objects of one contract table keyed by id, exactly as a client parses them."""
        with self.lock:
            rows = self._rows(table)
            parsed: list[Obj] = wire(rows)
        return {row["id"]: row for row in parsed}

    def gone(self, table: str) -> set[str]:
        """Ids once served by the API that it no longer serves: those removed, and the rows of
        per-parent and derived tables served (or listed by `objects`) that are there no more
        (a cancelled scheduled plan change, the schedule of a deleted subscription)."""
        with self.lock:
            gone = set(self.removed.get(table, ()))
            if table in PER_PARENT or table in DERIVED:
                current = {row["id"] for row in self._parent_rows(table)}
                gone |= self.served.get(table, set()) - current
            return gone

    def note_served(self, table: str, ids: Iterator[str] | set[str] | list[str]) -> None:
        """Remember ids of a per-parent or derived table the API served (`gone`)."""
        self.served.setdefault(table, set()).update(ids)

    def _rows(self, table: str) -> list[Obj]:
        if table in PER_PARENT or table in DERIVED:
            return self._parent_rows(table)
        return self._own_rows(table)

    def _parent_rows(self, table: str) -> list[Obj]:
        """Per-parent and derived tables, as the source's rows hold them: only those of
        live parents, and keyed as the source keys them where Orb gives no id."""
        rows = self._parent_rows_now(table)
        self.note_served(table, [row["id"] for row in rows])
        return rows

    def _parent_rows_now(self, table: str) -> list[Obj]:
        if table == "subscription_schedules":
            return [
                {"id": f"{sid}/{utc(entry['start_date'])}", "subscription_id": sid, **entry}
                for sid, sub in self.subscriptions.items()
                for entry in self.schedule(sub)
            ]
        if table == "coupon_subscriptions":
            return [
                {"id": f"{cid}/{sub['id']}", "coupon_id": cid, "subscription_id": sub["id"]}
                for cid in self.coupons
                for sub in self.coupon_subscriptions(cid)
            ]
        parents: Mapping[str, Any] = {
            "plan_migrations": self.plans,
            "licenses": self.subscriptions,
            "dimensional_price_group_prices": self.dimensional_price_groups,
        }[table]
        extra = table == "dimensional_price_group_prices"
        return [
            {**obj, "dimensional_price_group_id": parent_id} if extra else obj
            for parent_id, objs in self.under[table].items()
            if parent_id in parents
            for obj in objs.values()
        ]

    def _own_rows(self, table: str) -> list[Obj]:
        if table == "invoice_line_items":
            return [
                {**line, "invoice_id": inv["id"]}
                for inv in self.invoices.values()
                for line in inv["line_items"]
            ]
        if table in PER_CUSTOMER:
            extra = table in NEEDS_CUSTOMER_ID
            return [
                {**obj, "customer_id": customer_id} if extra else obj
                for customer_id, objs in self.owned[table].items()
                for obj in objs.values()
            ]
        return list(self.table(table).values())
