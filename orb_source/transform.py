"""Row shaping between Orb's objects and the contract's tables.

Orb embeds copies of related objects (a subscription carries its whole customer and plan);
the tables hold ids instead, so an analyst joins to the one current copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

Row = dict[str, Any]


def to_row(
    obj: Mapping[str, Any],
    links: Mapping[str, str],
    synced_at: datetime,
    customer_id: str | None = None,
) -> Row:
    """One table row: embedded objects replaced by their ids, plus the sync columns."""
    row = dict(obj)
    for embedded, column in links.items():
        if embedded in row:
            row[column] = _id_of(row.pop(embedded))
    if customer_id is not None:
        row.setdefault("customer_id", customer_id)
    row["deleted_at"] = None
    row["synced_at"] = synced_at
    return row


def to_rows(
    page: Iterable[Mapping[str, Any]],
    links: Mapping[str, str],
    synced_at: datetime,
    customer_id: str | None = None,
) -> list[Row]:
    return [to_row(obj, links, synced_at, customer_id) for obj in page]


def without_field(rows: Iterable[Row], name: str) -> list[Row]:
    """Parent rows minus an array that lives in a table of its own."""
    return [{key: value for key, value in row.items() if key != name} for row in rows]


def split_children(
    rows: Iterable[Row], array_field: str, link_column: str, synced_at: datetime
) -> list[Row]:
    """Rows of a child table (`invoice_line_items`), each linked to its parent's id."""
    children: list[Row] = []
    for row in rows:
        for child in row.get(array_field) or ():
            children.append(line_item_row(child, row["id"], link_column, synced_at))
    return children


def line_item_row(child: Mapping[str, Any], parent_id: str, link: str, synced_at: datetime) -> Row:
    row = dict(child)
    price = row.get("price")
    row["price_id"] = price.get("id") if isinstance(price, Mapping) else None
    row[link] = parent_id
    row["deleted_at"] = None
    row["synced_at"] = synced_at
    return row


def _id_of(value: Any) -> Any:
    return value.get("id") if isinstance(value, Mapping) else value


def window_key(timestamp: str) -> str:
    """A window's start as one spelling (UTC, ISO 8601), however Orb wrote it: part of the
    row id, so a restated window replaces its row."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone(UTC).isoformat()


def schedule_row(entry: Mapping[str, Any], subscription_id: str) -> Row:
    """One entry of a subscription's plan schedule: it has no id, so its key is the
    subscription and the moment the plan starts."""
    return {
        "id": f"{subscription_id}/{window_key(entry['start_date'])}",
        "subscription_id": subscription_id,
        **entry,
    }


def coupon_subscription_row(subscription: Mapping[str, Any], coupon_id: str) -> Row:
    """A coupon's redemption by a subscription: the two ids (`subscriptions` holds the rest)."""
    return {
        "id": f"{coupon_id}/{subscription['id']}",
        "coupon_id": coupon_id,
        "subscription_id": subscription["id"],
    }


def usage_rows(data: Iterable[Mapping[str, Any]], of: Mapping[str, Any]) -> list[Row]:
    """One row per billable metric (and group), per window of a subscription's usage."""
    rows: list[Row] = []
    for series in data:
        metric = series.get("billable_metric") or {}
        group = series.get("metric_group") or {}
        key, value = group.get("property_key"), group.get("property_value")
        suffix = f"/{key}={value}" if group else ""
        for window in series.get("usage") or ():
            start = window_key(window["timeframe_start"])
            rows.append(
                {
                    "id": f"{of['subscription_id']}/{metric.get('id')}/{start}{suffix}",
                    **of,
                    "billable_metric_id": metric.get("id"),
                    "billable_metric_name": metric.get("name"),
                    "property_key": key,
                    "property_value": value,
                    "timeframe_start": window["timeframe_start"],
                    "timeframe_end": window["timeframe_end"],
                    "quantity": window.get("quantity"),
                }
            )
    return rows


def cost_rows(data: Iterable[Mapping[str, Any]], of: Mapping[str, Any]) -> list[Row]:
    """One row per window of a subscription's costs; each price's costs as a child array,
    its price as `price_id` (the `prices` table holds the price)."""
    return [
        {
            "id": f"{of['subscription_id']}/{window_key(window['timeframe_start'])}",
            **of,
            **{key: value for key, value in window.items() if key != "per_price_costs"},
            "per_price_costs": [
                {key: value for key, value in cost.items() if key != "price"}
                for cost in window.get("per_price_costs") or ()
            ],
        }
        for window in data
    ]


def volume_rows(data: Iterable[Mapping[str, Any]], of: Mapping[str, Any]) -> list[Row]:
    """One row per hour of the account's event volume."""
    return [{"id": window_key(hour["timeframe_start"]), **of, **hour} for hour in data]
