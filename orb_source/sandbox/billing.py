"""Invoice arithmetic shared by the generator and the daily mutations, so money always adds up."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from orb_source.sandbox.account import Number, Obj
from orb_source.sandbox.prices import nominal_rate

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
Price = Mapping[str, Any]


def money(value: Decimal | int | str) -> Decimal:
    """Round to cents the way an invoice shows money."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


Quantity = int | Decimal
"""Whole units, or a Number (a double) for metered quantities such as GB-months."""
OTHER = "'null'"
"""The `type` of a sub-line item that is neither a matrix cell nor a tier: Orb's enum value
is the five characters 'null', quotes included."""


def _flat(price: Price, quantity: Quantity, amount: Decimal) -> list[Obj]:
    return [
        {
            "type": OTHER,
            "amount": amount,
            "grouping": None,
            "name": price["name"],
            "quantity": quantity,
        }
    ]


def _unit(price: Price, quantity: Quantity) -> tuple[Decimal, list[Obj]]:
    amount = money(quantity * price["unit_config"]["unit_amount"])
    return amount, _flat(price, quantity, amount)


def _package(price: Price, quantity: Quantity) -> tuple[Decimal, list[Obj]]:
    config = price["package_config"]
    packages = math.ceil(quantity / config["package_size"])
    amount = money(packages * config["package_amount"])
    return amount, _flat(price, quantity, amount)


def _bulk(price: Price, quantity: Quantity) -> tuple[Decimal, list[Obj]]:
    tiers = price["bulk_config"]["tiers"]
    rate = next(
        t["unit_amount"]
        for t in tiers
        if t["maximum_units"] is None or quantity <= t["maximum_units"]
    )
    amount = money(quantity * rate)
    return amount, _flat(price, quantity, amount)


def _tiered(price: Price, quantity: Quantity) -> tuple[Decimal, list[Obj]]:
    subs: list[Obj] = []
    for number, tier in enumerate(price["tiered_config"]["tiers"], start=1):
        first, last = tier["first_unit"], tier["last_unit"]
        units = max(0, (quantity if last is None else min(quantity, last)) - first)
        if units == 0 and subs:
            break
        subs.append(
            {
                "type": "tier",
                "amount": money(units * tier["unit_amount"]),
                "grouping": None,
                "name": f"Tier {number}",
                "quantity": units,
                "tier_config": {
                    "first_unit": first,
                    "last_unit": last,
                    "unit_amount": tier["unit_amount"],
                },
            }
        )
    return sum((s["amount"] for s in subs), ZERO), subs


def _matrix(price: Price, quantity: Quantity) -> tuple[Decimal, list[Obj]]:
    config = price["matrix_config"]
    cells = config["matrix_values"]
    share, rest = divmod(quantity, len(cells))
    subs: list[Obj] = []
    for index, cell in enumerate(cells):
        units = share + (rest if index == 0 else 0)
        value = cell["dimension_values"][0]
        subs.append(
            {
                "type": "matrix",
                "amount": money(units * cell["unit_amount"]),
                "grouping": {"key": config["dimensions"][0], "value": value},
                "matrix_config": {"dimension_values": [value]},
                "name": f"{price['name']} ({value})",
                "quantity": units,
                "scaled_quantity": None,
            }
        )
    return sum((s["amount"] for s in subs), ZERO), subs


def _nominal(price: Price, quantity: Quantity) -> tuple[Decimal, list[Obj]]:
    """Every other model, billed at its first rate: the totals add up, the model's own
    arithmetic (allocations, groupings, prorations) is not reproduced."""
    amount = money(quantity * nominal_rate(price))
    return amount, _flat(price, quantity, amount)


CHARGES: dict[str, Callable[[Price, Quantity], tuple[Decimal, list[Obj]]]] = {
    "unit": _unit,
    "package": _package,
    "bulk": _bulk,
    "tiered": _tiered,
    "matrix": _matrix,
}


ADJUSTMENT_TYPES = (
    "usage_discount",
    "amount_discount",
    "percentage_discount",
    "tiered_percentage_discount",
    "minimum",
    "maximum",
)
"""Orb's adjustment kinds, in the order they apply to a line: discounts, then minimum, maximum."""


def new_line(
    line_id: str,
    price: Price,
    quantity: Quantity,
    period: tuple[datetime, datetime],
    *,
    tax_rate: Decimal,
    adjustments: list[Obj] | None = None,
) -> Obj:
    """A priced invoice line item; `adjustments` (from `adjustment`) apply in order."""
    line: Obj = {
        "id": line_id,
        "name": price["name"],
        "start_date": period[0],
        "end_date": period[1],
        "price": price,
        "credits_applied": ZERO,
        "partially_invoiced_amount": ZERO,
        "filter": None,
        "grouping": None,
        "usage_customer_ids": None,
        "adjustments": adjustments or [],
        "tax_amounts": [],
    }
    if tax_rate:
        line["tax_amounts"].append(
            {
                "amount": ZERO,
                "tax_rate_description": f"Sales tax {tax_rate}%",
                "tax_rate_percentage": tax_rate,
                "tax_reason": "taxed",
            }
        )
    reprice(line, quantity)
    return line


def adjustment(kind: str, adjustment_id: str, price: Price, value: Decimal) -> Obj:
    """A line item adjustment of one of Orb's kinds, its `amount` set by `reprice`.

    `value` is the fraction of a percentage discount (a double, e.g. 0.30000000000000004 for
    stacked 10% and 20% discounts), the units of a usage discount, or the money of an amount
    discount, a minimum or a maximum.
    """
    obj: Obj = {
        "id": adjustment_id,
        "adjustment_type": kind,
        "amount": ZERO,
        "applies_to_price_ids": [price["id"]],
        "filters": [],
        "is_invoice_level": False,
        "reason": None,
        "replaces_adjustment_id": None,
    }
    if kind == "percentage_discount":
        obj.update(percentage_discount=value, reason="Partner discount")
    elif kind == "usage_discount":
        obj.update(usage_discount=value, reason="Free units")
    elif kind == "amount_discount":
        obj.update(amount_discount=value, reason="Loyalty credit")
    elif kind == "tiered_percentage_discount":
        obj["tiers"] = [
            {"lower_bound": Number(0), "upper_bound": Number(1000), "percentage": Number("0.05")},
            {"lower_bound": Number(1000), "upper_bound": None, "percentage": value},
        ]
    elif kind == "minimum":
        obj.update(minimum_amount=value, item_id=price["item"]["id"])
    else:
        obj["maximum_amount"] = value
    return obj


def on_line(adjustment: Obj, price: Price) -> Obj:
    """A subscription's or plan's adjustment as it appears on one line item."""
    applied = {key: value for key, value in adjustment.items() if key != "plan_phase_order"}
    applied.update(amount=ZERO, applies_to_price_ids=[price["id"]])
    return applied


def _adjusted(adjustment: Obj, running: Decimal, subtotal: Decimal, quantity: Quantity) -> Decimal:
    """The size of one adjustment given the line's amount so far; discounts never go below 0."""
    kind = adjustment["adjustment_type"]
    if kind == "percentage_discount":
        return money(subtotal * adjustment["percentage_discount"])
    if kind == "usage_discount":
        units = min(adjustment["usage_discount"], quantity)
        return money(subtotal * units / quantity) if quantity else ZERO
    if kind == "amount_discount":
        return min(adjustment["amount_discount"], running)
    if kind == "tiered_percentage_discount":
        tier = next(
            t for t in adjustment["tiers"] if t["upper_bound"] is None or running < t["upper_bound"]
        )
        return money(running * tier["percentage"])
    if kind == "minimum":
        return max(adjustment["minimum_amount"] - running, ZERO)
    return max(running - adjustment["maximum_amount"], ZERO)


def reprice(line: Obj, quantity: Quantity) -> None:
    """Recompute a line item for a new quantity, keeping its adjustments and tax rate.

    Each adjustment's `amount` is its size: discounts and a maximum lower the line, a minimum
    raises it to the minimum.
    """
    subtotal, subs = charge(line["price"], quantity)
    running, sizes = _apply(line["adjustments"], subtotal, quantity)
    for adjustment, size in zip(line["adjustments"], sizes, strict=True):
        adjustment["amount"] = size
    line.update(
        quantity=quantity,
        subtotal=subtotal,
        adjusted_subtotal=running,
        amount=running,
        sub_line_items=subs,
    )
    for tax in line["tax_amounts"]:
        tax["amount"] = money(running * tax["tax_rate_percentage"] / 100)


def _apply(
    adjustments: list[Obj], subtotal: Decimal, quantity: Quantity
) -> tuple[Decimal, list[Decimal]]:
    """The amount after the adjustments, applied in order, and the size of each."""
    running, sizes = subtotal, []
    for adjustment in adjustments:
        size = _adjusted(adjustment, running, subtotal, quantity)
        if adjustment["adjustment_type"] == "minimum":
            running += size
        else:
            size = min(size, running)
            running -= size
        sizes.append(size)
    return running, sizes


def priced(line: Obj, quantity: Quantity) -> tuple[Decimal, Decimal]:
    """A line's subtotal and adjusted amount were its quantity `quantity`; the line is unchanged."""
    subtotal, _ = charge(line["price"], quantity)
    return subtotal, _apply(line["adjustments"], subtotal, quantity)[0]


def charge(price: Price, quantity: Quantity) -> tuple[Decimal, list[Obj]]:
    """Subtotal and sub-line items of a quantity under a price's model."""
    return CHARGES.get(price["model_type"], _nominal)(price, quantity)


def settle(invoice: Obj) -> None:
    """Make the invoice totals agree with its line items (subtotal + tax = total)."""
    lines = invoice["line_items"]
    subtotal = sum((line["amount"] for line in lines), ZERO)
    tax = sum((t["amount"] for line in lines for t in line["tax_amounts"]), ZERO)
    invoice.update(subtotal=subtotal, total=subtotal + tax, amount_due=subtotal + tax)


def issue(invoice: Obj, at: datetime, net_terms: int = 30) -> None:
    """Freeze a draft: due date, issue time and document links appear."""
    invoice.update(
        status="issued",
        issued_at=at,
        due_date=max(invoice["invoice_date"], at) + timedelta(days=net_terms),
        invoice_pdf=f"https://assets.withorb.com/invoice/{invoice['id']}.pdf",
        hosted_invoice_url=f"https://portal.withorb.com/view?token={invoice['id']}",
        scheduled_issue_at=None,
    )


def pay(invoice: Obj, at: datetime, attempt_id: str) -> None:
    """Mark an issued invoice paid by a successful card payment."""
    invoice.update(status="paid", paid_at=at, payment_received_at=at, payment_started_at=at)
    invoice["payment_attempts"].append(
        {
            "id": attempt_id,
            "amount": invoice["amount_due"],
            "created_at": at,
            "payment_provider": "stripe",
            "payment_provider_id": f"pi_{attempt_id[:14]}",
            "receipt_pdf": None,
            "succeeded": True,
        }
    )
    auto = invoice["auto_collection"]
    auto.update(
        num_attempts=auto["num_attempts"] + 1, previously_attempted_at=at, next_attempt_at=None
    )


def void(invoice: Obj, at: datetime) -> None:
    """Void an issued invoice."""
    invoice.update(status="void", voided_at=at)


def sync(invoice: Obj) -> None:
    """Mark an issued invoice as pushed to an external invoicing system."""
    invoice["status"] = "synced"
