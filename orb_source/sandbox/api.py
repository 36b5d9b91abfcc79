"""Routing, filters and keyset pagination of the fake Orb API, independent of HTTP."""

from __future__ import annotations

import base64
import binascii
import json
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from orb_source.sandbox import usage
from orb_source.sandbox.account import Account, Obj, dumps, utc

ERROR_TYPE = "https://docs.withorb.com/reference/error-responses#"
MAX_LIMIT = 100
DEFAULT_LIMIT = 20
DEFAULT_INVOICE_STATUSES = ("issued", "paid", "synced")
INVOICE_STATUSES = ("draft", "issued", "paid", "synced", "void")
LEDGER_TYPES = (
    "increment",
    "decrement",
    "expiration_change",
    "credit_block_expiry",
    "void",
    "void_initiated",
    "amendment",
)
SUBSCRIPTION_CHANGE_STATUSES = ("pending", "applied", "cancelled")
BACKFILL_STATUSES = ("pending", "reflected", "pending_revert", "reverted")
RANGE_OPS = ("gt", "gte", "lt", "lte")
VIEW_MODES = ("periodic", "cumulative")
VOLUME_CURSOR = "volume"

Query = dict[str, list[str]]
SortKey = tuple[datetime, str]


class ApiError(Exception):
    """An error answered with Orb's RFC 7807 body."""

    def __init__(self, status: int, kind: str, title: str, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.extra = extra


def invalid(detail: str) -> ApiError:
    """A 400 request-validation error listing the problem."""
    return ApiError(
        400,
        "400-request-validation-errors",
        "Request validation error",
        detail,
        validation_errors=[detail],
    )


def not_found(what: str, obj_id: str) -> ApiError:
    return ApiError(
        404, "404-resource-not-found", "Resource not found", f"{what} {obj_id} does not exist"
    )


@dataclass
class Reply:
    """A response ready to send: status, JSON body bytes, the route template and rows served."""

    status: int
    body: bytes
    route: str
    rows: int = 0
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(error: ApiError, route: str, headers: dict[str, str] | None = None) -> Reply:
    payload: Obj = {"type": ERROR_TYPE + error.kind, "status": error.status, "title": error.title}
    payload["detail"] = error.detail
    payload.update(error.extra)
    return Reply(error.status, json.dumps(payload).encode(), route, headers=headers or {})


def encode_cursor(key: SortKey) -> str:
    """An opaque cursor holding the last served sort key and id."""
    return base64.urlsafe_b64encode(json.dumps([key[0].isoformat(), key[1]]).encode()).decode()


def decode_cursor(cursor: str) -> SortKey:
    try:
        stamp, obj_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        moment = datetime.fromisoformat(stamp)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise invalid("cursor: not a valid cursor") from exc
    if moment.tzinfo is None or not isinstance(obj_id, str):
        raise invalid("cursor: not a valid cursor")
    return moment, obj_id


def parse_time(key: str, value: str) -> datetime:
    """ISO-8601 datetime or plain date (naive = UTC); tolerates a '+' decoded as a space."""
    text = re.sub(r" (\d\d:\d\d)$", r"+\1", value.strip())
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise invalid(f"{key}: {value!r} is not an ISO-8601 datetime") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def one(query: Query, key: str) -> str | None:
    values = query.get(key)
    return values[-1] if values else None


def many(query: Query, key: str) -> list[str]:
    """Values given as `key=a` or bracket-style `key[]=a&key[]=b`."""
    return query.get(key, []) + query.get(f"{key}[]", [])


def choices(query: Query, key: str, allowed: Iterable[str]) -> list[str]:
    values = many(query, key)
    allowed = tuple(allowed)
    for value in values:
        if value not in allowed:
            raise invalid(f"{key}: {value!r} is not one of {', '.join(allowed)}")
    return values


def flag(query: Query, key: str) -> bool:
    value = one(query, key)
    if value is None or value.lower() == "false":
        return False
    if value.lower() == "true":
        return True
    raise invalid(f"{key}: {value!r} is not a boolean")


def page_size(query: Query) -> int:
    value = one(query, "limit")
    if value is None:
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise invalid(f"limit: must be an integer between 1 and {MAX_LIMIT}")
    return int(value)


@dataclass
class Order:
    """A collection sorted ascending by (sort time, id); pages walk it newest first."""

    revision: int
    keys: list[SortKey]
    stamps: list[datetime]
    objs: list[Obj]


@dataclass
class Call:
    """One request: its parameters, the ids captured from the path and the account."""

    api: Api
    query: Query
    ids: tuple[str, ...]
    repeat_cursor: bool = False

    @property
    def account(self) -> Account:
        return self.api.account

    def page(
        self,
        name: str,
        source: Callable[[], Iterable[Obj]],
        key: Callable[[Obj], datetime],
        range_param: str | None = None,
        keep: Callable[[Obj], bool] | None = None,
    ) -> Obj:
        """One page in newest-first order strictly after the cursor, within the range filters."""
        limit = page_size(self.query)
        order = self.api.order(name, self.ids[0] if self.ids else None, source, key)
        low, high = 0, len(order.keys)
        cursor = one(self.query, "cursor")
        if cursor:
            high = bisect_left(order.keys, decode_cursor(cursor))
        if range_param is not None:
            low, high = self.narrow(order.stamps, range_param, low, high)
        served: list[int] = []
        index = high - 1
        while index >= low and len(served) <= limit:
            if keep is None or keep(order.objs[index]):
                served.append(index)
            index -= 1
        has_more = len(served) > limit
        served = served[:limit]
        next_cursor = encode_cursor(order.keys[served[-1]]) if has_more else None
        if self.repeat_cursor and served:
            next_cursor, has_more = (
                cursor or next_cursor or encode_cursor(order.keys[served[-1]]),
                True,
            )
        return {
            "data": [order.objs[i] for i in served],
            "pagination_metadata": {"has_more": has_more, "next_cursor": next_cursor},
        }

    def narrow(self, stamps: list[datetime], param: str, low: int, high: int) -> tuple[int, int]:
        """Apply `param[gt|gte|lt|lte]` to the sort time by bisection."""
        for op in RANGE_OPS:
            key = f"{param}[{op}]"
            value = one(self.query, key)
            if value is None:
                continue
            moment = parse_time(key, value)
            if op == "gt":
                low = max(low, bisect_right(stamps, moment))
            elif op == "gte":
                low = max(low, bisect_left(stamps, moment))
            elif op == "lt":
                high = min(high, bisect_left(stamps, moment))
            else:
                high = min(high, bisect_right(stamps, moment))
        return low, high

    def customer(self) -> str:
        """The path's customer id, if that customer is live."""
        customer_id = self.ids[0]
        if customer_id not in self.account.customers:
            raise not_found("Customer", customer_id)
        return customer_id

    def owned(self, table: str) -> Callable[[], Iterable[Obj]]:
        customer_id = self.customer()
        return lambda: self.account.of_customer(table, customer_id).values()


def created(obj: Obj) -> datetime:
    return obj["created_at"]  # type: ignore[no-any-return]


def found(table: dict[str, Obj], obj_id: str, what: str) -> Obj:
    if obj_id not in table:
        raise not_found(what, obj_id)
    return table[obj_id]


def list_customers(call: Call) -> Obj:
    return call.page("customers", call.account.customers.values, created, "created_at")


def list_subscriptions(call: Call) -> Obj:
    query = call.query
    customers = set(many(query, "customer_id"))
    externals = set(many(query, "external_customer_id"))
    statuses = set(choices(query, "status", ("active", "ended", "upcoming")))
    plan_id, external_plan = one(query, "plan_id"), one(query, "external_plan_id")

    def keep(sub: Obj) -> bool:
        return (
            (not customers or sub["customer"]["id"] in customers)
            and (not externals or sub["customer"]["external_customer_id"] in externals)
            and (not statuses or sub["status"] in statuses)
            and (plan_id is None or sub["plan"]["id"] == plan_id)
            and (external_plan is None or sub["plan"]["external_plan_id"] == external_plan)
        )

    return call.page(
        "subscriptions", call.account.subscriptions.values, created, "created_at", keep
    )


def list_invoices(call: Call) -> Obj:
    query = call.query
    statuses = set(choices(query, "status", INVOICE_STATUSES) or DEFAULT_INVOICE_STATUSES)
    customer_id, external = one(query, "customer_id"), one(query, "external_customer_id")
    subscription_id = one(query, "subscription_id")
    recurring = None if one(query, "is_recurring") is None else flag(query, "is_recurring")

    def keep(inv: Obj) -> bool:
        return (
            inv["status"] in statuses
            and (recurring is None or (inv["invoice_source"] != "one_off") == recurring)
            and (customer_id is None or inv["customer"]["id"] == customer_id)
            and (external is None or inv["customer"]["external_customer_id"] == external)
            and (
                subscription_id is None or (inv["subscription"] or {}).get("id") == subscription_id
            )
        )

    def by_date(inv: Obj) -> datetime:
        return inv["invoice_date"]  # type: ignore[no-any-return]

    return call.page("invoices", call.account.invoices.values, by_date, "invoice_date", keep)


def list_credit_notes(call: Call) -> Obj:
    return call.page("credit_notes", call.account.credit_notes.values, created, "created_at")


def list_plans(call: Call) -> Obj:
    statuses = set(choices(call.query, "status", ("active", "archived", "draft")))
    return call.page(
        "plans",
        call.account.plans.values,
        created,
        "created_at",
        lambda p: not statuses or p["status"] in statuses,
    )


def list_prices(call: Call) -> Obj:
    return call.page("prices", call.account.prices.values, created)


def list_items(call: Call) -> Obj:
    return call.page("items", call.account.items.values, created)


def list_coupons(call: Call) -> Obj:
    archived = flag(call.query, "show_archived")
    code = one(call.query, "redemption_code")

    def keep(coupon: Obj) -> bool:
        return (archived or coupon["archived_at"] is None) and (
            code is None or coupon["redemption_code"] == code
        )

    return call.page("coupons", call.account.coupons.values, call.api.born, None, keep)


def list_metrics(call: Call) -> Obj:
    statuses = set(choices(call.query, "status", ("active", "archived", "draft")))
    return call.page(
        "metrics",
        call.account.billable_metrics.values,
        call.api.born,
        "created_at",
        lambda m: not statuses or m["status"] in statuses,
    )


def list_alerts(call: Call) -> Obj:
    account, query = call.account, call.query
    customer_id, external = one(query, "customer_id"), one(query, "external_customer_id")
    subscription_id = one(query, "subscription_id")
    if customer_id is None and external is None and subscription_id is None:
        raise invalid("one of customer_id, external_customer_id or subscription_id is required")
    if subscription_id is not None:
        customer_id = found(account.subscriptions, subscription_id, "Subscription")["customer"][
            "id"
        ]
    elif external is not None:
        matches = [
            c["id"] for c in account.customers.values() if c["external_customer_id"] == external
        ]
        if not matches:
            raise not_found("Customer with external id", external)
        customer_id = matches[0]
    assert customer_id is not None
    scoped = Call(call.api, query, (customer_id,), call.repeat_cursor)

    def keep(alert: Obj) -> bool:
        return subscription_id is None or (alert["subscription"] or {}).get("id") == subscription_id

    return scoped.page("alerts", scoped.owned("alerts"), created, "created_at", keep)


def list_ledger(call: Call) -> Obj:
    query = call.query
    statuses = set(choices(query, "entry_status", ("committed", "pending")))
    kinds = set(choices(query, "entry_type", LEDGER_TYPES))
    currency = one(query, "currency")

    def keep(entry: Obj) -> bool:
        return (
            (not statuses or entry["entry_status"] in statuses)
            and (not kinds or entry["entry_type"] in kinds)
            and (currency is None or entry["currency"] == currency)
        )

    return call.page("ledger", call.owned("credit_ledger_entries"), created, "created_at", keep)


def list_credit_blocks(call: Call) -> Obj:
    everything = flag(call.query, "include_all_blocks")
    now = call.account.now

    def keep(block: Obj) -> bool:
        live = block["expiry_date"] is None or block["expiry_date"] > now
        return everything or (live and block["balance"] != 0)

    def effective(block: Obj) -> datetime:
        return block["effective_date"]  # type: ignore[no-any-return]

    return call.page(
        "credit_blocks", call.owned("credit_blocks"), effective, "effective_date", keep
    )


def list_top_ups(call: Call) -> Obj:
    return call.page("top_ups", call.owned("top_ups"), call.api.born)


def list_balance_transactions(call: Call) -> Obj:
    source = call.owned("customer_balance_transactions")
    return call.page("balance_transactions", source, created, "operation_time")


def list_dimensional_price_groups(call: Call) -> Obj:
    metric = one(call.query, "billable_metric_id")
    return call.page(
        "dimensional_price_groups",
        call.account.dimensional_price_groups.values,
        call.api.born,
        None,
        lambda group: metric is None or group["billable_metric_id"] == metric,
    )


def list_license_types(call: Call) -> Obj:
    return call.page("license_types", call.account.license_types.values, call.api.born)


def list_webhook_endpoints(call: Call) -> Obj:
    return call.page("webhook_endpoints", call.account.webhook_endpoints.values, created)


def list_backfills(call: Call) -> Obj:
    customer_id = one(call.query, "customer_id")
    statuses = set(choices(call.query, "status", BACKFILL_STATUSES))

    def keep(backfill: Obj) -> bool:
        return (customer_id is None or backfill["customer_id"] == customer_id) and (
            not statuses or backfill["status"] in statuses
        )

    return call.page("event_backfills", call.account.event_backfills.values, created, None, keep)


def list_subscription_changes(call: Call) -> Obj:
    status = option(call.query, "status", SUBSCRIPTION_CHANGE_STATUSES, None)
    customer_id = one(call.query, "customer_id")
    external = one(call.query, "external_customer_id")
    account = call.account

    def keep(change: Obj) -> bool:
        if status is not None and change["status"] != status:
            return False
        if customer_id is None and external is None:
            return True
        sub = account.subscriptions.get(change["subscription_id"] or "")
        customer = sub["customer"] if sub else {}
        return (customer_id is None or customer.get("id") == customer_id) and (
            external is None or customer.get("external_customer_id") == external
        )

    source = account.subscription_changes.values
    return call.page("subscription_changes", source, call.api.born, None, keep)


def list_plan_migrations(call: Call) -> Obj:
    plan_id = found(call.account.plans, call.ids[0], "Plan")["id"]
    source = call.account.of_parent("plan_migrations", plan_id).values
    return call.page("plan_migrations", source, call.api.born)


def get_subscription_schedule(call: Call) -> Obj:
    sub = found(call.account.subscriptions, call.ids[0], "Subscription")
    entries = {utc(entry["start_date"]): entry for entry in call.account.schedule(sub)}
    call.account.note_served("subscription_schedules", [f"{sub['id']}/{k}" for k in entries])

    def start(entry: Obj) -> datetime:
        return entry["start_date"]  # type: ignore[no-any-return]

    return call.page("schedule", lambda: entries.values(), start, "start_date")


def list_licenses(call: Call) -> Obj:
    subscription_id = one(call.query, "subscription_id")
    if subscription_id is None:
        raise invalid("subscription_id: field required")
    found(call.account.subscriptions, subscription_id, "Subscription")
    status = option(call.query, "status", ("active", "inactive"), None)
    type_id = one(call.query, "license_type_id")
    external = one(call.query, "external_license_id")

    def keep(license: Obj) -> bool:
        return (
            (status is None or license["status"] == status)
            and (type_id is None or license["license_type_id"] == type_id)
            and (external is None or license["external_license_id"] == external)
        )

    scoped = Call(call.api, call.query, (subscription_id,), call.repeat_cursor)
    source = call.account.of_parent("licenses", subscription_id).values
    return scoped.page("licenses", source, call.api.born, None, keep)


def list_coupon_subscriptions(call: Call) -> Obj:
    coupon_id = found(call.account.coupons, call.ids[0], "Coupon")["id"]
    served = [f"{coupon_id}/{sub['id']}" for sub in call.account.coupon_subscriptions(coupon_id)]
    call.account.note_served("coupon_subscriptions", served)
    return call.page(
        "coupon_subscriptions", lambda: call.account.coupon_subscriptions(coupon_id), created
    )


def list_group_prices(call: Call) -> Obj:
    group = found(call.account.dimensional_price_groups, call.ids[0], "Price group")
    option(call.query, "status", ("active", "archived", "all"), "active")
    source = call.account.of_parent("dimensional_price_group_prices", group["id"]).values
    return call.page("dimensional_price_group_prices", source, created)


def option(query: Query, key: str, allowed: tuple[str, ...], default: str | None) -> str | None:
    """A single-valued parameter that must be one of `allowed`."""
    value = one(query, key)
    if value is None:
        return default
    if value not in allowed:
        raise invalid(f"{key}: {value!r} is not one of {', '.join(allowed)}")
    return value


def timeframe(query: Query) -> tuple[datetime | None, datetime | None]:
    """`timeframe_start` and `timeframe_end`: both or neither, the end not before the start."""
    start, end = one(query, "timeframe_start"), one(query, "timeframe_end")
    if (start is None) != (end is None):
        raise invalid("timeframe_start and timeframe_end must be specified together")
    if start is None or end is None:
        return None, None
    low, high = parse_time("timeframe_start", start), parse_time("timeframe_end", end)
    if high < low:
        raise invalid("timeframe_end must not be before timeframe_start")
    return low, high


def get_subscription_usage(call: Call) -> Obj:
    """Usage per billable metric in windows of the customer's local days (`usage` module)."""
    query = call.query
    sub = found(call.account.subscriptions, call.ids[0], "Subscription")
    start, end = timeframe(query)
    granularity = option(query, "granularity", ("day",), None)
    view_mode = option(query, "view_mode", VIEW_MODES, "periodic")
    metric_id, group_by = one(query, "billable_metric_id"), one(query, "group_by")
    if (metric_id is None) != (group_by is None):
        raise invalid("billable_metric_id and group_by must be specified together")
    return usage.subscription_usage(
        call.account,
        sub["id"],
        start,
        end,
        granularity=granularity,
        view_mode=view_mode or "periodic",
        billable_metric_id=metric_id,
        group_by=group_by,
    )


def get_subscription_costs(call: Call) -> Obj:
    """Costs per price per local day, cumulative in the billing period by default."""
    sub = found(call.account.subscriptions, call.ids[0], "Subscription")
    start, end = timeframe(call.query)
    view_mode = option(call.query, "view_mode", VIEW_MODES, "cumulative")
    return usage.subscription_costs(
        call.account, sub["id"], start, end, view_mode=view_mode or "cumulative"
    )


def list_event_volume(call: Call) -> Obj:
    """Events per UTC hour, ascending, every hour of the timeframe, in pages."""
    query = call.query
    value = one(query, "timeframe_start")
    if value is None:
        raise invalid("timeframe_start: required")
    start = parse_time("timeframe_start", value)
    end_value = one(query, "timeframe_end")
    end = call.account.now if end_value is None else parse_time("timeframe_end", end_value)
    end = min(end, call.account.now)  # no hour after the account's clock has events yet
    limit = page_size(query)
    first, last = usage.hour_floor(start), usage.hour_ceil(end)
    cursor = one(query, "cursor")
    if cursor:
        first = max(first, usage.hour_floor(decode_cursor(cursor)[0]) + 1)
    stop = min(first + limit, last)
    rows = usage.event_volume(call.account, usage.at_hour(first), usage.at_hour(stop))
    has_more = stop < last
    next_cursor = encode_cursor((rows[-1]["timeframe_start"], VOLUME_CURSOR)) if has_more else None
    if call.repeat_cursor and rows:
        next_cursor = cursor or next_cursor or encode_cursor((rows[-1]["timeframe_start"], ""))
        has_more = True
    return {"data": rows, "pagination_metadata": {"has_more": has_more, "next_cursor": next_cursor}}


def getter(table: str, what: str) -> Callable[[Call], Obj]:
    def get(call: Call) -> Obj:
        return found(call.account.table(table), call.ids[0], what)

    return get


def get_credit_block(call: Call) -> Obj:
    for blocks in call.account.owned["credit_blocks"].values():
        if call.ids[0] in blocks:
            return blocks[call.ids[0]]
    raise not_found("Credit block", call.ids[0])


def get_price(call: Call) -> Obj:
    price = call.account.price(call.ids[0])
    if price is None:
        raise not_found("Price", call.ids[0])
    return price


Handler = Callable[[Call], Obj]
ROUTES: tuple[tuple[str, Handler], ...] = (
    ("/customers", list_customers),
    ("/customers/{id}", getter("customers", "Customer")),
    ("/customers/{id}/credits/ledger", list_ledger),
    ("/customers/{id}/credits", list_credit_blocks),
    ("/customers/{id}/credits/top_ups", list_top_ups),
    ("/customers/{id}/balance_transactions", list_balance_transactions),
    ("/credit_blocks/{id}", get_credit_block),
    ("/subscriptions", list_subscriptions),
    ("/subscriptions/{id}", getter("subscriptions", "Subscription")),
    ("/subscriptions/{id}/usage", get_subscription_usage),
    ("/subscriptions/{id}/costs", get_subscription_costs),
    ("/invoices", list_invoices),
    ("/invoices/{id}", getter("invoices", "Invoice")),
    ("/credit_notes", list_credit_notes),
    ("/credit_notes/{id}", getter("credit_notes", "Credit note")),
    ("/plans", list_plans),
    ("/plans/{id}", getter("plans", "Plan")),
    ("/prices", list_prices),
    ("/prices/{id}", get_price),
    ("/items", list_items),
    ("/items/{id}", getter("items", "Item")),
    ("/coupons", list_coupons),
    ("/coupons/{id}", getter("coupons", "Coupon")),
    ("/metrics", list_metrics),
    ("/metrics/{id}", getter("billable_metrics", "Billable metric")),
    ("/alerts", list_alerts),
    ("/dimensional_price_groups", list_dimensional_price_groups),
    ("/dimensional_price_groups/{id}", getter("dimensional_price_groups", "Price group")),
    ("/license_types", list_license_types),
    ("/license_types/{id}", getter("license_types", "License type")),
    ("/webhook_endpoints", list_webhook_endpoints),
    ("/webhook_endpoints/{id}", getter("webhook_endpoints", "Webhook endpoint")),
    ("/events/backfills", list_backfills),
    ("/events/backfills/{id}", getter("event_backfills", "Backfill")),
    ("/events/volume", list_event_volume),
    ("/subscription_changes", list_subscription_changes),
    ("/plans/{id}/migrations", list_plan_migrations),
    ("/subscriptions/{id}/schedule", get_subscription_schedule),
    ("/licenses", list_licenses),
    ("/coupons/{id}/subscriptions", list_coupon_subscriptions),
    ("/dimensional_price_groups/{id}/prices", list_group_prices),
)
PATTERNS = tuple(
    (
        re.compile("^" + re.escape(template).replace(re.escape("{id}"), "([^/]+)") + "/?$"),
        template,
        handler,
    )
    for template, handler in ROUTES
)
UNKNOWN_ROUTE = "<unknown>"


def resolve(path: str) -> tuple[str, Handler | None, tuple[str, ...]]:
    """The route template, handler and path ids of a path below /v1."""
    for pattern, template, handler in PATTERNS:
        match = pattern.match(path)
        if match:
            return template, handler, match.groups()
    return UNKNOWN_ROUTE, None, ()


class Api:
    """Answers requests from the account; call `handle` with the account lock held."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self._orders: dict[tuple[str, str | None], Order] = {}

    def born(self, obj: Obj) -> datetime:
        """Creation time of objects without created_at (coupons, metrics, top-ups)."""
        return self.account.born[obj["id"]]

    def order(
        self,
        name: str,
        scope: str | None,
        source: Callable[[], Iterable[Obj]],
        key: Callable[[Obj], datetime],
    ) -> Order:
        """The sorted collection, cached until the account's membership changes."""
        cached = self._orders.get((name, scope))
        if cached is not None and cached.revision == self.account.revision:
            return cached
        pairs = sorted(
            (((key(obj), obj.get("id", "")), obj) for obj in source()), key=lambda pair: pair[0]
        )
        keys = [pair[0] for pair in pairs]
        order = Order(
            self.account.revision, keys, [k[0] for k in keys], [pair[1] for pair in pairs]
        )
        self._orders[(name, scope)] = order
        return order

    def check_feature(self, route: str) -> None:
        """Orb's answer to a route of a feature the account lacks."""
        status = self.account.unavailable.get(route)
        if status == 404:
            raise ApiError(
                404,
                "404-feature-not-available",
                "Feature not available",
                "This feature is not available for your account.",
            )
        if status is not None:
            raise ApiError(status, f"{status}-forbidden", "Forbidden", "Not allowed.")

    def handle(self, path: str, query: Query, repeat_cursor: bool = False) -> Reply:
        """Answer a GET for `path` (without /v1)."""
        route, handler, ids = resolve(path)
        if handler is None:
            error = ApiError(
                404, "404-url-not-found", "URL not found", f"No route matches GET /v1{path}"
            )
            return error_reply(error, route)
        try:
            self.check_feature(route)
            payload = handler(Call(self, query, ids, repeat_cursor))
        except ApiError as error:
            return error_reply(error, route)
        rows = len(payload["data"]) if "pagination_metadata" in payload else 0
        return Reply(200, dumps(payload), route, rows)
