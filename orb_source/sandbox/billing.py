"""Invoice arithmetic shared by the generator and the daily mutations, so money always adds up."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from orb_source.sandbox.account import Number, Obj

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
Price = Mapping[str, Any]


def money(value: Decimal | int | str) -> Decimal:
    """Round to cents the way an invoice shows money."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def _flat(price: Price, quantity: int, amount: Decimal) -> list[Obj]:
    return [
        {
            "type": "null",
            "amount": amount,
            "grouping": None,
            "name": price["name"],
            "quantity": quantity,
        }
    ]


def _unit(price: Price, quantity: int) -> tuple[Decimal, list[Obj]]:
    amount = money(quantity * price["unit_config"]["unit_amount"])
    return amount, _flat(price, quantity, amount)


def _package(price: Price, quantity: int) -> tuple[Decimal, list[Obj]]:
    config = price["package_config"]
    packages = -(-quantity // config["package_size"])
    amount = money(packages * config["package_amount"])
    return amount, _flat(price, quantity, amount)


def _bulk(price: Price, quantity: int) -> tuple[Decimal, list[Obj]]:
    tiers = price["bulk_config"]["tiers"]
    rate = next(
        t["unit_amount"]
        for t in tiers
        if t["maximum_units"] is None or quantity <= t["maximum_units"]
    )
    amount = money(quantity * rate)
    return amount, _flat(price, quantity, amount)


def _tiered(price: Price, quantity: int) -> tuple[Decimal, list[Obj]]:
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


def _matrix(price: Price, quantity: int) -> tuple[Decimal, list[Obj]]:
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


CHARGES: dict[str, Callable[[Price, int], tuple[Decimal, list[Obj]]]] = {
    "unit": _unit,
    "package": _package,
    "bulk": _bulk,
    "tiered": _tiered,
    "matrix": _matrix,
}


def new_line(
    line_id: str,
    price: Price,
    quantity: int,
    period: tuple[datetime, datetime],
    *,
    tax_rate: Decimal,
    discount: tuple[str, Decimal] | None = None,
) -> Obj:
    """A priced invoice line item; a discount is (adjustment id, fraction)."""
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
        "adjustments": [],
        "tax_amounts": [],
    }
    if discount is not None:
        line["adjustments"].append(_discount(discount[0], price["id"], discount[1]))
    if tax_rate:
        line["tax_amounts"].append(
            {
                "amount": ZERO,
                "tax_rate_description": f"Sales tax {tax_rate}%",
                "tax_rate_percentage": tax_rate,
                "tax_reason": None,
            }
        )
    reprice(line, quantity)
    return line


def _discount(adjustment_id: str, price_id: str, fraction: Decimal) -> Obj:
    return {
        "id": adjustment_id,
        "adjustment_type": "percentage_discount",
        "amount": ZERO,
        "applies_to_price_ids": [price_id],
        "filters": [],
        "is_invoice_level": False,
        "percentage_discount": Number(fraction),
        "reason": "Partner discount",
        "replaces_adjustment_id": None,
    }


def reprice(line: Obj, quantity: int) -> None:
    """Recompute a line item for a new quantity, keeping its discount and tax rate."""
    subtotal, subs = charge(line["price"], quantity)
    discount = ZERO
    for adjustment in line["adjustments"]:
        adjustment["amount"] = money(subtotal * adjustment["percentage_discount"])
        discount += adjustment["amount"]
    amount = subtotal - discount
    line.update(
        quantity=quantity,
        subtotal=subtotal,
        adjusted_subtotal=amount,
        amount=amount,
        sub_line_items=subs,
    )
    for tax in line["tax_amounts"]:
        tax["amount"] = money(amount * tax["tax_rate_percentage"] / 100)


def charge(price: Price, quantity: int) -> tuple[Decimal, list[Obj]]:
    """Subtotal and sub-line items of a quantity under a price's model."""
    return CHARGES[price["model_type"]](price, quantity)


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
