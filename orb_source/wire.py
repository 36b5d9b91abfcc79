"""Orb's JSON as Python objects: exact decimals, and invoice pages decoded without a parse per
embedded price.

Every JSON number with a fraction or exponent becomes a `Decimal` straight from its text, so
no amount ever passes through a float. Invoice pages are the bulk of an account, and each of
their line items embeds its whole price: a page of 100 invoices repeats a few prices hundreds
of times. They are decoded against the invoice's documented fields (orb-api.md §3.3) with each
price left as raw text, and each distinct price text is decoded once and shared by the line
items that carry it. A page with a field that list does not name, or without one it names,
is decoded the generic way: same objects, only slower, and a warning (once per process for
each difference) names the fields, so a new Orb field does not silently cost the speed-up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from decimal import Decimal
from types import GenericAlias
from typing import Any

import msgspec

logger = logging.getLogger(__name__)

INVOICE_FIELDS = (
    "id",
    "invoice_number",
    "created_at",
    "invoice_date",
    "due_date",
    "status",
    "issued_at",
    "paid_at",
    "voided_at",
    "payment_received_at",
    "payment_started_at",
    "payment_failed_at",
    "issue_failed_at",
    "sync_failed_at",
    "eligible_to_issue_at",
    "scheduled_issue_at",
    "amount_due",
    "subtotal",
    "total",
    "minimum_amount",
    "maximum_amount",
    "currency",
    "customer",
    "subscription",
    "invoice_source",
    "line_items",
    "customer_balance_transactions",
    "credit_notes",
    "payment_attempts",
    "auto_collection",
    "discounts",
    "discount",
    "minimum",
    "maximum",
    "billing_address",
    "shipping_address",
    "customer_tax_id",
    "metadata",
    "memo",
    "invoice_pdf",
    "hosted_invoice_url",
    "will_auto_issue",
    "hidden_line_item_count",
)
"""The Invoice model's fields, in the order Orb sends them."""

LINE_ITEM_FIELDS = (
    "id",
    "name",
    "start_date",
    "end_date",
    "price",
    "credits_applied",
    "partially_invoiced_amount",
    "filter",
    "grouping",
    "usage_customer_ids",
    "adjustments",
    "tax_amounts",
    "quantity",
    "subtotal",
    "adjusted_subtotal",
    "amount",
    "sub_line_items",
)
"""The invoice LineItem model's fields, in the order Orb sends them."""

_ANY = msgspec.json.Decoder(float_hook=Decimal)


def _exactly(name: str, fields: Iterable[str], typed: Mapping[str, Any]) -> Any:
    """A struct of exactly these fields, all required, each `Any` unless `typed` says."""
    spec = [(field, typed.get(field, Any)) for field in fields]
    return msgspec.defstruct(name, spec, forbid_unknown_fields=True)


def _list_of(struct: type) -> GenericAlias:
    """`list[struct]` for a struct built at run time."""
    return GenericAlias(list, (struct,))


_LineItem = _exactly("_LineItem", LINE_ITEM_FIELDS, {"price": msgspec.Raw})
_Invoice = _exactly("_Invoice", INVOICE_FIELDS, {"line_items": _list_of(_LineItem)})
_InvoicePage = _exactly(
    "_InvoicePage", ("data", "pagination_metadata"), {"data": _list_of(_Invoice)}
)
_INVOICE_PAGE = msgspec.json.Decoder(_InvoicePage, float_hook=Decimal)

_asdict = msgspec.structs.asdict


def decode(content: bytes) -> Any:
    """Any JSON body; raises `msgspec.DecodeError` if it is not JSON."""
    return _ANY.decode(content)


def decode_invoice_page(content: bytes) -> Any:
    """A page of `GET /invoices`, equal to what `decode` returns for it."""
    try:
        page: Any = _INVOICE_PAGE.decode(content)
    except msgspec.ValidationError as exc:
        generic = decode(content)
        _warn_generic(generic, exc)
        return generic
    prices: dict[bytes, Any] = {}
    return {
        "data": [_invoice(invoice, prices) for invoice in page.data],
        "pagination_metadata": page.pagination_metadata,
    }


def _invoice(invoice: Any, prices: dict[bytes, Any]) -> dict[str, Any]:
    row = _asdict(invoice)
    row["line_items"] = [_line_item(item, prices) for item in invoice.line_items]
    return row


def _line_item(item: Any, prices: dict[bytes, Any]) -> dict[str, Any]:
    """The line item with its price shared with every other line item of the page that
    carries the same price text. Nothing downstream changes a price in place."""
    row = _asdict(item)
    text = bytes(row["price"])
    price = prices.get(text)
    if price is None:
        price = prices[text] = _ANY.decode(text)
    row["price"] = price
    return row


_WARNED: set[str] = set()
"""Differences from the documented fields already named in a warning by this process."""


def _warn_generic(page: Any, error: msgspec.ValidationError) -> None:
    difference = _difference(page) or str(error)
    if difference in _WARNED:
        return
    _WARNED.add(difference)
    logger.warning(
        "invoice pages decoded the generic, slower way: %s (update wire.INVOICE_FIELDS or"
        " LINE_ITEM_FIELDS)",
        difference,
    )


def _difference(page: Any) -> str:
    """Fields the invoices and line items of a page have that the documented lists do not
    name, and documented fields they lack, as `invoice.field` and `line_item.field`."""
    invoices = (
        [i for i in page.get("data", ()) if isinstance(i, dict)] if isinstance(page, dict) else []
    )
    items = [item for i in invoices for item in i.get("line_items") or () if isinstance(item, dict)]
    parts = []
    for kind, objects, known in (
        ("invoice", invoices, INVOICE_FIELDS),
        ("line_item", items, LINE_ITEM_FIELDS),
    ):
        present = {name for obj in objects for name in obj}
        unknown = sorted(present - set(known))
        missing = sorted({name for obj in objects for name in known if name not in obj})
        parts += [f"unknown field {kind}.{name}" for name in unknown]
        parts += [f"missing field {kind}.{name}" for name in missing]
    return ", ".join(parts)
