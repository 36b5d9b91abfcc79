"""Orb's official models (the `orb-billing` SDK) as field paths, and where each lands in the
dataset according to the declared schema: the reference the schema tests check against.

A path is a tuple of Orb's JSON field names, `[]` marking an array: `("tiered_config", "tiers",
"[]", "unit_amount")`. Unions (price models, ledger entry types, adjustments) contribute the
paths of every member."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orb.types as orb_types
from orb.types.customers.balance_transaction_list_response import (
    BalanceTransactionListResponse,
)
from orb.types.customers.credit_list_response import CreditListResponse
from orb.types.customers.credits.ledger_list_response import LedgerListResponse
from orb.types.customers.credits.top_up_list_response import TopUpListResponse
from orb.types.events.backfill_list_response import BackfillListResponse
from orb.types.plans.migration_list_response import MigrationListResponse
from orb.types.shared.credit_note import CreditNote
from orb.types.shared.invoice import Invoice, LineItem
from orb.types.shared.price import Price
from pydantic import BaseModel

from orb_source.catalog import ENDPOINTS, SHAPES
from orb_source.schema import Shape

Path = tuple[str, ...]

MODELS: dict[str, Any] = {
    "customers": orb_types.Customer,
    "subscriptions": orb_types.Subscription,
    "invoices": Invoice,
    "invoice_line_items": LineItem,
    "credit_notes": CreditNote,
    "plans": orb_types.Plan,
    "prices": Price,
    "items": orb_types.Item,
    "coupons": orb_types.Coupon,
    "billable_metrics": orb_types.BillableMetric,
    "alerts": orb_types.Alert,
    "credit_ledger_entries": LedgerListResponse,
    "credit_blocks": CreditListResponse,
    "top_ups": TopUpListResponse,
    "customer_balance_transactions": BalanceTransactionListResponse,
    "dimensional_price_groups": orb_types.DimensionalPriceGroup,
    "license_types": orb_types.LicenseTypeListResponse,
    "webhook_endpoints": orb_types.WebhookEndpoint,
    "event_backfills": BackfillListResponse,
    "subscription_changes": orb_types.SubscriptionChangeListResponse,
    "plan_migrations": MigrationListResponse,
    "subscription_schedules": orb_types.SubscriptionFetchScheduleResponse,
    "licenses": orb_types.LicenseListResponse,
    "dimensional_price_group_prices": Price,
}
"""The SDK model of each table's objects. `coupon_subscriptions` has none: its rows are two
ids, not the Subscription objects `GET /coupons/{id}/subscriptions` lists."""

MONEY_STRINGS = frozenset(
    [
        "above_threshold_discount_percentage",
        "adjusted_subtotal",
        "allocation",
        "amount",
        "amount_applied",
        "amount_discount",
        "amount_due",
        "balance",
        "below_threshold_discount_percentage",
        "credits_applied",
        "cumulative_allocation",
        "daily_allowance",
        "default_unit_amount",
        "default_unit_rate",
        "ending_balance",
        "group_allocation",
        "invoicing_threshold",
        "maximum_amount",
        "maximum_charge",
        "minimum",
        "minimum_amount",
        "minimum_amount_refunded",
        "minimum_charge",
        "minimum_unit_amount",
        "overage_unit_rate",
        "package_amount",
        "package_size",
        "partially_invoiced_amount",
        "per_unit",
        "per_unit_cost_basis",
        "per_unit_rate",
        "percent",
        "scaling_factor",
        "starting_balance",
        "subtotal",
        "tax_rate_percentage",
        "threshold",
        "threshold_amount",
        "tier_lower_bound",
        "total",
        "total_amount",
        "trial_amount_discount",
        "unit_amount",
        "unit_price",
        "unit_rate",
    ]
)
"""Fields the SDK types `str` that hold an amount, a rate, a quantity or a percentage (Orb's
docs, orb-api.md §3). Every other `str` is text: ids, names, grouping and dimension values."""


def members(annotation: Any) -> list[Any]:
    """The types a field can hold: unions and `Optional` unpacked, `Annotated` unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in members(arg)]
    return [annotation]


def field_paths(model: Any) -> dict[Path, set[str]]:
    """Every leaf path of a model with the scalar types the SDK allows there."""
    paths: dict[Path, set[str]] = {}
    _walk(model, (), paths, ())
    return paths


def _walk(
    annotation: Any, prefix: Path, paths: dict[Path, set[str]], seen: tuple[Any, ...]
) -> None:
    for member in members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            if member in seen:
                paths.setdefault(prefix, set()).add("object")
                continue
            for name, info in member.model_fields.items():
                _walk(info.annotation, (*prefix, info.alias or name), paths, (*seen, member))
        elif typing.get_origin(member) is list:
            _walk(typing.get_args(member)[0], (*prefix, "[]"), paths, seen)
        elif typing.get_origin(member) is dict or member is object:
            paths.setdefault(prefix, set()).add("object")
        elif member is not type(None):
            paths.setdefault(prefix, set()).add(_type_name(member))


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is typing.Literal:
        return "str"
    if kind is datetime or kind is date:
        return "datetime"
    return getattr(kind, "__name__", str(kind))


def is_money(path: Path, kinds: set[str]) -> bool:
    return "float" in kinds or ("str" in kinds and path[-1] in MONEY_STRINGS)


@dataclass(frozen=True)
class Landing:
    """Where a field path lands: a column of a table, or inside a JSON column of one."""

    table: str
    column: str
    declared: str | None
    """The column's declared type, None when dlt infers it."""
    in_json: bool = False
    link: bool = False
    """An embedded copy of another object, replaced by its id (`customer` -> `customer_id`)."""
    whole: bool = False
    """The path's value is the whole JSON column (a scalar declared JSON lands as JSON text)."""


def landing(table: str, path: Path) -> Landing:
    """Where dlt puts `path` of an object of `table`, given the declared schema and the table's
    nesting level (each object and array on the way counts one level, as dlt counts)."""
    endpoint = ENDPOINTS.get(table)
    links = endpoint.links if endpoint else {}
    if path[0] in links:
        return Landing(table, links[path[0]], "text", link=True)
    nesting = SHAPES[table].nesting()
    hops: list[str] = []
    column: list[str] = []
    depth = 0
    for index, part in enumerate(path):
        if part != "[]":
            column.append(part)
            if index + 1 == len(path) or path[index + 1] == "[]":
                continue
        name = "__".join(column)
        shape = nested_shape(table, tuple(hops))
        if (shape is not None and name in shape.json) or depth >= nesting:
            return Landing(_name(table, hops), name, "json", in_json=True)
        depth += 1
        if part == "[]":
            hops.append(name)
            column = []
    name = "__".join(column) or "value"
    shape = nested_shape(table, tuple(hops))
    if shape is not None and name in shape.json:
        return Landing(_name(table, hops), name, "json", in_json=True, whole=True)
    return Landing(_name(table, hops), name, _declared(shape, name))


def _name(table: str, hops: list[str]) -> str:
    return "__".join((table, *hops))


def nested_shape(table: str, hops: Path) -> Shape | None:
    if not hops:
        return SHAPES[table]
    return SHAPES[table].nested.get(hops)


def _declared(shape: Shape | None, name: str) -> str | None:
    if shape is None:
        return None
    for kind in ("decimal", "timestamp", "json", "text", "bigint", "bool"):
        if name in getattr(shape, kind):
            return kind
    return None


def money_landings(table: str) -> Iterator[tuple[Path, Landing]]:
    for path, kinds in sorted(field_paths(MODELS[table]).items()):
        if is_money(path, kinds):
            yield path, landing(table, path)
