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
import typing
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
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
    Item,
    Plan,
    Subscription,
)
from orb.types.customers import BalanceTransactionListResponse, CreditListResponse
from orb.types.customers.credits import LedgerListResponse, TopUpListResponse
from orb.types.shared import CreditNote, Invoice, Price

from orb_source.sandbox import Account, generate_account, simulate_day
from orb_source.sandbox.api import INVOICE_STATUSES, Api

NOW = datetime(2026, 3, 15, 12, 0, 0, tzinfo=UTC)


def transport(api: Api) -> httpx.MockTransport:
    """The sandbox's request handling in process, without a socket."""

    def handle(request: httpx.Request) -> httpx.Response:
        path = urlsplit(str(request.url)).path.removeprefix("/v1")
        query = parse_qs(request.url.query.decode(), keep_blank_values=True)
        with api.account.lock:
            reply = api.handle(path, query)
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


class Shapes:
    """Validates served objects and collects what was seen: fields, models, enum values."""

    def __init__(self) -> None:
        self.undeclared: set[str] = set()
        self.missing: set[str] = set()
        self.models: Counter[str] = Counter()
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
        self.visit(validated, model.__name__)
        return validated  # type: ignore[no-any-return]

    def visit(self, value: Any, path: str) -> None:
        if isinstance(value, SdkModel):
            kind = type(value)
            self.models[kind.__name__] += 1
            for name in value.model_extra or {}:
                self.undeclared.add(f"{path}.{name}")
            for name, field in kind.model_fields.items():
                if name not in value.model_fields_set:
                    self.missing.add(f"{path}.{field.alias or name}")
                self.visit(getattr(value, name), f"{path}.{field.alias or name}<{kind.__name__}>")
        elif isinstance(value, list):
            for item in value:
                self.visit(item, f"{path}[]")
        elif isinstance(value, dict):
            for item in value.values():
                if isinstance(item, SdkModel | list):
                    self.visit(item, f"{path}{{}}")


def served(account: Account) -> Shapes:
    """Validate every object of every endpoint the source reads; return what was seen."""
    shapes = Shapes()
    with httpx.Client(base_url="http://sandbox/v1", transport=transport(Api(account))) as client:
        customers = [shapes.check("customers", Customer, t) for t in walk(client, "/customers")]
        for path, model, params in (
            ("/subscriptions", Subscription, {}),
            ("/invoices", Invoice, {"status[]": list(INVOICE_STATUSES)}),
            ("/credit_notes", CreditNote, {}),
            ("/plans", Plan, {}),
            ("/prices", Price, {}),
            ("/items", Item, {}),
            ("/coupons", Coupon, {"show_archived": "true"}),
            ("/metrics", BillableMetric, {}),
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
    return shapes


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
        "credits/ledger",
        "credits",
        "credit_blocks/{id}",
        "credits/top_ups",
        "balance_transactions",
        "alerts",
    }
    assert sorted(demo_shapes.undeclared) == []


def test_every_declared_field_is_sent(demo_shapes: Shapes) -> None:
    assert sorted(demo_shapes.missing) == []


def test_a_day_of_changes_still_validates() -> None:
    account = generate_account(customers=20, seed=5, now=NOW)
    for _ in range(2):
        simulate_day(account, random.Random(3))
    shapes = served(account)
    assert sorted(shapes.undeclared) == [] and sorted(shapes.missing) == []


def literals(model: type[SdkModel], name: str) -> set[str]:
    return set(typing.get_args(model.model_fields[name].annotation))


def union_members(union: Any) -> list[type[SdkModel]]:
    args = typing.get_args(union)
    inner = args[0] if typing.get_origin(union) is typing.Annotated else union
    return list(typing.get_args(inner))


def test_sandbox_rejects_a_wrong_shape() -> None:
    """The check itself can fail: a number sent as a string, an unknown enum, a new field."""
    account = generate_account(customers=2, seed=1, now=NOW)
    entry = next(iter(next(iter(account.owned["credit_ledger_entries"].values())).values()))
    text = json.dumps({**json.loads(json.dumps(entry, default=str)), "amount": "1.5"}).encode()
    with pytest.raises(AssertionError, match="amount"):
        Shapes().check("ledger", LedgerListResponse, text)
    shapes = Shapes()
    price = json.loads(Api(account).handle("/prices", {}).body)["data"][0]
    shapes.check("prices", Price, json.dumps({**price, "surprise": 1}).encode())
    assert any(path.endswith(".surprise") for path in shapes.undeclared)
    with pytest.raises(AssertionError):
        shapes.check("prices", Price, json.dumps({**price, "cadence": "weekly"}).encode())


_ = (Decimal, defaultdict, literals, union_members)
