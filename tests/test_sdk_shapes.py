"""Every object the sandbox serves validates against Orb's official SDK models (orb-billing).

The SDK is generated from Orb's OpenAPI spec, so its pydantic models are the reference for
response shapes, field types and enum values. Objects are validated from the served JSON in
strict mode: a string where Orb sends a number (or the reverse), an unknown enum value or a
missing required field fails. The SDK models accept undeclared fields, so the tests also walk
each validated object and require that the sandbox sends exactly the fields the model declares:
none it does not know, none left out.
"""

from __future__ import annotations

import functools
import json
import random
import re
import typing
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pydantic
import pytest
from orb._models import BaseModel as SdkModel
from orb._utils import PropertyInfo
from orb.types import (
    Alert,
    BillableMetric,
    Coupon,
    CreditBlockRetrieveResponse,
    Customer,
    DimensionalPriceGroup,
    Item,
    LicenseListResponse,
    LicenseTypeListResponse,
    Plan,
    Subscription,
    SubscriptionChangeListResponse,
    SubscriptionFetchScheduleResponse,
    WebhookEndpoint,
)
from orb.types.customers import BalanceTransactionListResponse, CreditListResponse
from orb.types.customers.credits import LedgerListResponse, TopUpListResponse
from orb.types.events import BackfillListResponse, EventVolumes
from orb.types.events.event_volumes import Data as EventVolume
from orb.types.plans import MigrationListResponse
from orb.types.shared import CreditNote, Invoice, Price
from orb.types.subscription_fetch_costs_response import SubscriptionFetchCostsResponse
from orb.types.subscription_usage import GroupedSubscriptionUsage, UngroupedSubscriptionUsage

from orb_source.sandbox import Account, generate_account, simulate_day
from orb_source.sandbox.api import INVOICE_STATUSES, Api
from orb_source.sandbox.usage import GROUP_KEY, usage_metrics

# The module's tests share a loaded fixture, built once on each worker that runs one of them.

NOW = datetime(2026, 3, 15, 12, 0, 0, tzinfo=UTC)


def transport(api: Api, shapes: Shapes) -> httpx.MockTransport:
    """The sandbox's request handling in process, without a socket; every body it answers
    is scanned for numbers as Orb writes them."""

    def handle(request: httpx.Request) -> httpx.Response:
        path = urlsplit(str(request.url)).path.removeprefix("/v1")
        query = parse_qs(request.url.query.decode(), keep_blank_values=True)
        with api.account.lock:
            reply = api.handle(path, query)
        shapes.scan(reply.body)
        return httpx.Response(reply.status, content=reply.body)

    return httpx.MockTransport(handle)


def walk(client: httpx.Client, path: str, **params: Any) -> Iterator[bytes]:
    """The JSON text of every item of a list endpoint, as served."""
    cursor = None
    while True:
        query = dict(params, limit=100, **({"cursor": cursor} if cursor else {}))
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = json.loads(response.content)
        for item in body["data"]:
            yield json.dumps(item).encode()
        cursor = body["pagination_metadata"]["next_cursor"]
        if not body["pagination_metadata"]["has_more"]:
            return


@functools.cache
def adapter(model: type[SdkModel]) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(model)


def member(union: Any, obj: dict[str, Any]) -> type[SdkModel]:
    """The union member the SDK's discriminator picks for a JSON object."""
    args = typing.get_args(union)
    info = next(a for a in args[1:] if isinstance(a, PropertyInfo))
    for candidate in typing.get_args(args[0]):
        field = candidate.model_fields[info.discriminator or ""]
        if obj.get(field.alias or info.discriminator) in typing.get_args(field.annotation):
            return candidate  # type: ignore[no-any-return]
    raise AssertionError(f"no {union} member for {obj}")


MARKERS = (
    b"542.6099999999999",
    b"0.30000000000000004",
    b"33.333333333333336",
    b'"0.0000000375"',
)
"""Numbers exactly as Orb encodes them: doubles with every digit, rates as decimal strings."""
EIGHTEEN_PLACES = re.compile(rb'"-?\d+\.\d{18}"')


def is_literal(annotation: Any) -> bool:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return typing.get_origin(annotation) is typing.Literal or (
        len(args) == 1 and typing.get_origin(args[0]) is typing.Literal
    )


class Shapes:
    """Validates served objects and collects what was seen, by field path (`invoices.
    line_items[].price`): the SDK classes, enum values, non-empty lists and number markers."""

    def __init__(self) -> None:
        self.undeclared: set[str] = set()
        self.missing: set[str] = set()
        self.classes: defaultdict[str, set[str]] = defaultdict(set)
        self.values: defaultdict[str, set[object]] = defaultdict(set)
        self.filled: set[str] = set()
        self.markers: set[bytes] = set()
        self.objects: Counter[str] = Counter()

    def check(self, endpoint: str, model: Any, text: bytes) -> SdkModel:
        """Validate one served object strictly and record its shape."""
        if typing.get_origin(model) is typing.Annotated:
            model = member(model, json.loads(text))
        try:
            validated = adapter(model).validate_json(text, strict=True)
        except pydantic.ValidationError as error:
            raise AssertionError(f"{endpoint}: {str(error)[:3000]}\n{text[:2000]!r}") from error
        self.objects[endpoint] += 1
        self.visit(validated, endpoint)
        return validated  # type: ignore[no-any-return]

    def scan(self, body: bytes) -> None:
        """Record which exact numbers a served body holds, as the bytes on the wire."""
        self.markers.update(m for m in MARKERS if m in body)
        if EIGHTEEN_PLACES.search(body):
            self.markers.add(b"18 places")

    def visit(self, value: Any, path: str) -> None:
        if isinstance(value, SdkModel):
            kind = type(value)
            self.classes[path].add(kind.__name__)
            for name in value.model_extra or {}:
                self.undeclared.add(f"{path}.{name} ({kind.__name__})")
            for name, field in kind.model_fields.items():
                key = f"{path}.{field.alias or name}"
                if name not in value.model_fields_set:
                    self.missing.add(f"{key} ({kind.__name__})")
                item = getattr(value, name)
                if is_literal(field.annotation):
                    self.values[key].add(item)
                self.visit(item, key)
        elif isinstance(value, list):
            if value:
                self.filled.add(path)
            for item in value:
                self.visit(item, f"{path}[]")
        elif isinstance(value, dict):
            for item in value.values():
                if isinstance(item, SdkModel | list):
                    self.visit(item, f"{path}{{}}")


def served(account: Account) -> Shapes:
    """Validate every object of every endpoint the source reads; return what was seen."""
    shapes = Shapes()
    http = transport(Api(account), shapes)
    with httpx.Client(base_url="http://sandbox/v1", transport=http) as client:
        customers = [shapes.check("customers", Customer, t) for t in walk(client, "/customers")]
        for customer in customers:
            by_id = client.get(f"/customers/{customer.id}")
            assert (
                by_id.status_code == 200 and Customer.model_validate_json(by_id.content) == customer
            )
        for path, model, params in (
            ("/subscriptions", Subscription, {}),
            ("/invoices", Invoice, {"status[]": list(INVOICE_STATUSES)}),
            ("/credit_notes", CreditNote, {}),
            ("/plans", Plan, {}),
            ("/prices", Price, {}),
            ("/items", Item, {}),
            ("/coupons", Coupon, {"show_archived": "true"}),
            ("/metrics", BillableMetric, {}),
            ("/dimensional_price_groups", DimensionalPriceGroup, {}),
            ("/license_types", LicenseTypeListResponse, {}),
            ("/webhook_endpoints", WebhookEndpoint, {}),
            ("/events/backfills", BackfillListResponse, {}),
        ):
            for text in walk(client, path, **params):
                obj = shapes.check(path.strip("/"), model, text)
                by_id = client.get(f"{path}/{obj.id}")
                assert by_id.status_code == 200, by_id.text
                assert json.loads(by_id.content) == json.loads(text)
        for customer in customers:
            base = f"/customers/{customer.id}"
            for path, model, params in (
                ("/credits/ledger", LedgerListResponse, {}),
                ("/credits", CreditListResponse, {"include_all_blocks": "true"}),
                ("/credits/top_ups", TopUpListResponse, {}),
                ("/balance_transactions", BalanceTransactionListResponse, {}),
            ):
                for text in walk(client, base + path, **params):
                    obj = shapes.check(path.strip("/"), model, text)
                    if model is CreditListResponse:
                        block = client.get(f"/credit_blocks/{obj.id}").content
                        shapes.check("credit_blocks/{id}", CreditBlockRetrieveResponse, block)
            for text in walk(client, "/alerts", customer_id=customer.id):
                shapes.check("alerts", Alert, text)
        listed_under(client, shapes)
    return shapes


SUBSCRIPTIONS: tuple[str, dict[str, str]] = ("/subscriptions", {})
PRICE_GROUPS: tuple[str, dict[str, str]] = ("/dimensional_price_groups", {})


def listed_under(client: httpx.Client, shapes: Shapes) -> None:
    """The lists the source reads per status or per parent object."""
    for status in ("pending", "applied", "cancelled"):
        for text in walk(client, "/subscription_changes", status=status):
            change = shapes.check("subscription_changes", SubscriptionChangeListResponse, text)
            assert change.status == status
    for path, model, params, parents in (
        ("/plans/{}/migrations", MigrationListResponse, {}, ("/plans", {})),
        ("/subscriptions/{}/schedule", SubscriptionFetchScheduleResponse, {}, SUBSCRIPTIONS),
        ("/licenses", LicenseListResponse, {}, SUBSCRIPTIONS),
        ("/coupons/{}/subscriptions", Subscription, {}, ("/coupons", {"show_archived": "true"})),
        ("/dimensional_price_groups/{}/prices", Price, {"status": "all"}, PRICE_GROUPS),
    ):
        parent_path, parent_params = parents
        ids = [json.loads(t)["id"] for t in walk(client, parent_path, **parent_params)]
        assert ids, path
        name = path.replace("/{}", "").strip("/")
        for parent_id in ids:
            if path == "/licenses":
                texts = walk(client, path, subscription_id=parent_id)
            else:
                texts = walk(client, path.format(parent_id), **params)
            for text in texts:
                shapes.check(name, model, text)


@pytest.fixture(scope="module")
def demo() -> Account:
    """The account `orb-pipeline demo` serves (100 customers, seed 42), at a fixed clock."""
    return generate_account(customers=100, seed=42, now=NOW)


@pytest.fixture(scope="module")
def demo_shapes(demo: Account) -> Shapes:
    return served(demo)


def test_every_served_object_validates_against_the_sdk(demo_shapes: Shapes) -> None:
    assert set(demo_shapes.objects) == {
        "customers",
        "subscriptions",
        "invoices",
        "credit_notes",
        "plans",
        "prices",
        "items",
        "coupons",
        "metrics",
        "dimensional_price_groups",
        "license_types",
        "webhook_endpoints",
        "events/backfills",
        "credits/ledger",
        "credits",
        "credit_blocks/{id}",
        "credits/top_ups",
        "balance_transactions",
        "alerts",
        "subscription_changes",
        "plans/migrations",
        "subscriptions/schedule",
        "licenses",
        "coupons/subscriptions",
        "dimensional_price_groups/prices",
    }
    assert sorted(demo_shapes.undeclared) == []


def test_the_lists_read_per_status_and_per_parent_have_every_state(demo_shapes: Shapes) -> None:
    """Subscription changes in each status, migrations in each status and with each kind of
    effective time, active and inactive licenses, a schedule entry of a plan change."""
    values = demo_shapes.values
    assert values["subscription_changes.status"] == literals(
        SubscriptionChangeListResponse, "status"
    )
    assert values["plans/migrations.status"] == literals(MigrationListResponse, "status")
    assert values["licenses.status"] == {"active", "inactive"}
    assert demo_shapes.objects["coupons/subscriptions"] >= 2
    assert demo_shapes.objects["dimensional_price_groups/prices"] >= 2
    assert demo_shapes.objects["subscriptions/schedule"] > demo_shapes.objects["subscriptions"]


def test_every_declared_field_is_sent(demo_shapes: Shapes) -> None:
    assert sorted(demo_shapes.missing) == []


def test_a_day_of_changes_still_validates() -> None:
    account = generate_account(customers=20, seed=5, now=NOW)
    for _ in range(2):
        simulate_day(account, random.Random(3))
    shapes = served(account)
    assert sorted(shapes.undeclared) == [] and sorted(shapes.missing) == []


def literals(model: type[SdkModel], name: str) -> set[object]:
    return set(typing.get_args(model.model_fields[name].annotation))


def members(union: Any) -> set[str]:
    """Class names of a union's members, as the SDK declares them."""
    inner = typing.get_args(union)[0] if typing.get_origin(union) is typing.Annotated else union
    return {m.__name__ for m in typing.get_args(inner)}


def test_demo_account_has_every_union_member(demo_shapes: Shapes) -> None:
    """Every price model, ledger entry, adjustment, discount and sub-line item Orb defines."""
    prices = members(Price)
    assert len(prices) == 36
    for path in (
        "prices",
        "plans.prices[]",
        "subscriptions.plan.prices[]",
        "subscriptions.price_intervals[].price",
        "invoices.line_items[].price",
    ):
        assert demo_shapes.classes[path] == prices, path
    assert demo_shapes.classes["credits/ledger"] == members(LedgerListResponse)
    assert len(demo_shapes.classes["credits/ledger"]) == 7
    line_item = Invoice.model_fields["line_items"].annotation
    line_model = typing.get_args(line_item)[0]
    for path, model, field in (
        ("invoices.line_items[].adjustments[]", line_model, "adjustments"),
        ("invoices.line_items[].sub_line_items[]", line_model, "sub_line_items"),
        ("invoices.discounts[]", Invoice, "discounts"),
        ("subscriptions.discount_intervals[]", Subscription, "discount_intervals"),
        ("plans.adjustments[]", Plan, "adjustments"),
        ("coupons.discount", Coupon, "discount"),
    ):
        annotation = model.model_fields[field].annotation
        while typing.get_origin(annotation) is list:
            annotation = typing.get_args(annotation)[0]
        assert demo_shapes.classes[path] == members(annotation), path
    adjustment = typing.get_args(Subscription.model_fields["adjustment_intervals"].annotation)[0]
    assert demo_shapes.classes["subscriptions.adjustment_intervals[].adjustment"] == members(
        adjustment.model_fields["adjustment"].annotation
    )
    assert demo_shapes.classes["invoices.line_items[].adjustments[]"] >= {
        "MonetaryUsageDiscountAdjustment",
        "MonetaryAmountDiscountAdjustment",
        "MonetaryPercentageDiscountAdjustment",
        "MonetaryMinimumAdjustment",
        "MonetaryMaximumAdjustment",
    }


def test_demo_account_has_every_enum_value_and_filled_list(demo_shapes: Shapes) -> None:
    values = demo_shapes.values
    actions = literals(BalanceTransactionListResponse, "action")
    assert len(actions) == 11 and values["balance_transactions.action"] == actions
    assert values["invoices.status"] == set(INVOICE_STATUSES)
    assert values["credits.credit_block_source"] == literals(
        CreditListResponse, "credit_block_source"
    )
    assert values["credit_notes.type"] == literals(CreditNote, "type")
    assert values["credit_notes.line_items[].discounts[].discount_type"] == {"percentage", "amount"}
    for path in (
        "subscriptions.adjustment_intervals",
        "subscriptions.discount_intervals",
        "subscriptions.minimum_intervals",
        "subscriptions.maximum_intervals",
        "subscriptions.fixed_fee_quantity_schedule",
        "subscriptions.price_intervals[].fixed_fee_quantity_transitions",
        "plans.plan_phases",
        "plans.adjustments",
        "invoices.discounts",
        "invoices.line_items[].tax_amounts",
        "credit_notes.discounts",
        "credit_notes.line_items[].discounts",
        "credit_notes.line_items[].tax_amounts",
        "credits.filters",
        "credits/ledger.credit_block.filters",
        "credits/ledger.created_invoices",
        "prices.composite_price_filters",
    ):
        assert path in demo_shapes.filled, path
    for path in (
        "customers.billing_address",
        "customers.shipping_address",
        "customers.default_payment_method",
        "invoices.billing_address",
        "invoices.minimum",
        "invoices.maximum",
        "plans.plan_phases[].discount",
        "prices.credit_allocation",
        "prices.conversion_rate_config",
        "prices.license_type",
        "credits.credit_allocation",
        "credit_notes.maximum_amount_adjustment",
    ):
        assert demo_shapes.classes[path], path


def test_demo_account_numbers_and_text_as_orb_sends_them(
    demo: Account, demo_shapes: Shapes
) -> None:
    """Doubles with all their digits, rates with up to 18 places, quotes and non-ASCII text."""
    assert demo_shapes.markers == {*MARKERS, b"18 places"}
    customers = demo.objects("customers").values()
    names = [c["name"] for c in customers]
    notes = [value for c in customers for value in c["metadata"].values()]
    for text in (names, notes):
        assert any("'" in t for t in text) and any('"' in t for t in text)
        assert any(any(ord(ch) > 0xFFFF for ch in t) for t in text)  # emoji
        assert any(any(0x80 <= ord(ch) < 0x250 for ch in t) for t in text)  # accents
    filters = {
        interval["filter"]
        for sub in demo.objects("subscriptions").values()
        for interval in sub["price_intervals"]
    }
    assert any(isinstance(f, str) and "'" in f for f in filters)


def test_the_check_fails_on_a_wrong_shape(demo: Account) -> None:
    """Each way the fake could drift from Orb is caught: a double sent as a string, a decimal
    string sent as a number, an unknown enum value, a missing required field, a field the
    model does not declare, a declared field left out."""
    api = Api(demo)
    customer = next(iter(demo.customers))
    entry = json.loads(api.handle(f"/customers/{customer}/credits/ledger", {}).body)["data"][0]
    price = next(
        p
        for p in json.loads(api.handle("/prices", {"limit": ["100"]}).body)["data"]
        if p["model_type"] == "unit"
    )
    wrong = (
        ("credits/ledger", LedgerListResponse, {**entry, "amount": str(entry["amount"])}),
        ("prices", Price, {**price, "unit_config": {**price["unit_config"], "unit_amount": 1.5}}),
        ("prices", Price, {**price, "cadence": "weekly"}),
        ("prices", Price, {k: v for k, v in price.items() if k != "currency"}),
    )
    for endpoint, model, obj in wrong:
        with pytest.raises(AssertionError, match=endpoint):
            Shapes().check(endpoint, model, json.dumps(obj).encode())
    shapes = Shapes()
    shapes.check("prices", Price, json.dumps({**price, "surprise": 1}).encode())
    assert shapes.undeclared == {"prices.surprise (UnitPrice)"} and not shapes.missing
    without = {k: v for k, v in price.items() if k != "discount"}
    shapes.check("prices", Price, json.dumps(without).encode())
    assert shapes.missing == {"prices.discount (UnitPrice)"}


def served_analytics(account: Account) -> Shapes:
    """Validate the analytics answers: usage (per metric and grouped, both view modes), costs
    (both view modes) of every subscription, over its current billing period and over a
    timeframe spanning a period boundary (20 days), and every page of a week of event volume."""
    shapes = Shapes()
    http = transport(Api(account), shapes)
    span = {
        "timeframe_start": (account.now - timedelta(days=20)).isoformat(),
        "timeframe_end": account.now.isoformat(),
    }
    with httpx.Client(base_url="http://sandbox/v1", transport=http) as client:

        def check(endpoint: str, model: Any, path: str, **params: Any) -> Any:
            response = client.get(path, params=params)
            assert response.status_code == 200, response.text
            return shapes.check(endpoint, model, response.content)

        subs = sorted(account.subscriptions.values(), key=lambda s: (s["created_at"], s["id"]))
        every_model = max(subs, key=lambda s: len(s["price_intervals"]))
        sample = [*subs[::10], every_model]
        for sub in subs:
            base = f"/subscriptions/{sub['id']}"
            check("usage", UngroupedSubscriptionUsage, base + "/usage")
            check("costs", SubscriptionFetchCostsResponse, base + "/costs")
        for sub in sample:
            base = f"/subscriptions/{sub['id']}"
            for mode in ("periodic", "cumulative"):
                for path, model in (
                    ("usage", UngroupedSubscriptionUsage),
                    ("costs", SubscriptionFetchCostsResponse),
                ):
                    check(path, model, f"{base}/{path}", granularity="day", view_mode=mode, **span)
            for metric in usage_metrics(sub):
                check(
                    "usage grouped",
                    GroupedSubscriptionUsage,
                    base + "/usage",
                    billable_metric_id=metric,
                    group_by=GROUP_KEY,
                    granularity="day",
                    **span,
                )
        start = (account.now - timedelta(days=7)).isoformat()
        for text in walk(client, "/events/volume", timeframe_start=start):
            shapes.check("events/volume", EventVolume, text)
        page = json.loads(client.get("/events/volume", params={"timeframe_start": start}).content)
        assert set(page) == {"data", "pagination_metadata"}
        # The SDK's EventVolumes declares `data` only, though Orb documents the list as paginated.
        shapes.check(
            "events/volume page", EventVolumes, json.dumps({"data": page["data"]}).encode()
        )
    return shapes


@pytest.fixture(scope="module")
def analytics_shapes(demo: Account) -> Shapes:
    return served_analytics(demo)


def test_analytics_answers_validate_against_the_sdk(analytics_shapes: Shapes) -> None:
    """Usage, costs and event volume: strict validation, no field undeclared or left out, and
    every part filled somewhere (windows, groups, per-price costs with full prices)."""
    objects = analytics_shapes.objects
    assert set(objects) == {
        "usage",
        "usage grouped",
        "costs",
        "events/volume",
        "events/volume page",
    }
    assert objects["events/volume"] == 7 * 24
    assert sorted(analytics_shapes.undeclared) == []
    assert sorted(analytics_shapes.missing) == []
    for path in (
        "usage.data",
        "usage.data[].usage",
        "usage grouped.data",
        "usage grouped.data[].usage",
        "costs.data",
        "costs.data[].per_price_costs",
    ):
        assert path in analytics_shapes.filled, path
    assert analytics_shapes.values["usage.data[].view_mode"] == {"periodic", "cumulative"}
    assert analytics_shapes.values["usage grouped.data[].view_mode"] == {"periodic"}
    assert len(analytics_shapes.classes["costs.data[].per_price_costs[].price"]) >= 30
    assert analytics_shapes.classes["usage grouped.pagination_metadata"] == {"PaginationMetadata"}


def test_analytics_after_a_day_of_changes_still_validate() -> None:
    account = generate_account(customers=20, seed=5, now=NOW)
    for _ in range(2):
        simulate_day(account, random.Random(3))
    shapes = served_analytics(account)
    assert shapes.objects["usage"] and shapes.objects["costs"]
    assert sorted(shapes.undeclared) == [] and sorted(shapes.missing) == []


def test_the_check_fails_on_a_wrong_analytics_shape(demo: Account) -> None:
    """A quantity sent as a string, money sent as a number, a count sent as a double, an
    unknown view mode and an extra field are each caught."""
    api = Api(demo)
    sub = next(s for s in demo.subscriptions.values() if s["status"] == "active")
    usage = json.loads(api.handle(f"/subscriptions/{sub['id']}/usage", {}).body)
    point = usage["data"][0]["usage"][0]
    entry = usage["data"][0]
    costs = json.loads(api.handle(f"/subscriptions/{sub['id']}/costs", {}).body)
    window = costs["data"][0]
    start = [(demo.now - timedelta(hours=2)).isoformat()]
    volume = json.loads(api.handle("/events/volume", {"timeframe_start": start}).body)
    hour = volume["data"][0]
    wrong = (
        (UngroupedSubscriptionUsage, {"data": [{**entry, "usage": [{**point, "quantity": "1"}]}]}),
        (UngroupedSubscriptionUsage, {"data": [{**entry, "view_mode": "daily"}]}),
        (SubscriptionFetchCostsResponse, {"data": [{**window, "subtotal": 1.5}]}),
        (EventVolume, {**hour, "count": 1.5}),
    )
    for model, obj in wrong:
        with pytest.raises(AssertionError, match="analytics"):
            Shapes().check("analytics", model, json.dumps(obj).encode())
    shapes = Shapes()
    shapes.check("analytics", EventVolume, json.dumps({**hour, "surprise": 1}).encode())
    assert shapes.undeclared == {"analytics.surprise (Data)"}
