"""Row shaping between Orb's objects and the contract's tables.

Orb embeds copies of related objects (a subscription carries its whole customer and plan);
the tables hold ids instead, so an analyst joins to the one current copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
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
