"""Invoice pages decode to exactly what any other body decodes to, each distinct price once."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import httpx
import msgspec
import pytest

from orb_source import wire
from orb_source.catalog import ALL_INVOICE_STATUSES
from orb_source.sandbox import SandboxServer

ENCODER = msgspec.json.Encoder(decimal_format="number")
"""Re-encodes a decoded page exactly: decimals back to JSON numbers."""


@pytest.fixture
def invoice_bodies(sandbox: SandboxServer) -> list[bytes]:
    """Every page of `GET /invoices`, as the bytes the sandbox sent."""
    bodies: list[bytes] = []
    params: dict[str, Any] = {"limit": 100, "status[]": ALL_INVOICE_STATUSES}
    headers = {"Authorization": f"Bearer {sandbox.api_key}"}
    with httpx.Client(base_url=sandbox.base_url, headers=headers) as http:
        while True:
            response = http.get("/invoices", params=params)
            response.raise_for_status()
            bodies.append(response.content)
            cursor = response.json()["pagination_metadata"]["next_cursor"]
            if not cursor:
                return bodies
            params["cursor"] = cursor


def prices(page: dict[str, Any]) -> list[dict[str, Any]]:
    return [item["price"] for invoice in page["data"] for item in invoice["line_items"]]


def test_invoice_pages_equal_the_generic_decoding_with_each_price_decoded_once(
    invoice_bodies: list[bytes],
) -> None:
    assert len(invoice_bodies) >= 2
    for body in invoice_bodies:
        page = wire.decode_invoice_page(body)
        assert page == wire.decode(body)
        carried = prices(page)
        distinct = {ENCODER.encode(price) for price in carried}
        assert len({id(price) for price in carried}) == len(distinct) < len(carried)


def reshaped(body: bytes, change: str) -> bytes:
    page = wire.decode(body)
    invoice = page["data"][0]
    if change == "new invoice field":
        invoice["tax_summary"] = {"rate": Decimal("0.0825")}
    elif change == "missing invoice field":
        del invoice["memo"]
    elif change == "new line item field":
        invoice["line_items"][0]["credit_grant_id"] = "grant_1"
    return ENCODER.encode(page)


@pytest.mark.parametrize(
    "change", ["new invoice field", "missing invoice field", "new line item field"]
)
def test_a_page_unlike_the_documented_model_is_decoded_the_generic_way(
    invoice_bodies: list[bytes], change: str
) -> None:
    body = reshaped(invoice_bodies[0], change)

    page = wire.decode_invoice_page(body)

    assert page == wire.decode(body)
    carried = prices(page)
    assert len({id(price) for price in carried}) == len(carried), "decoded the typed way"
    if change == "new invoice field":
        assert page["data"][0]["tax_summary"] == {"rate": Decimal("0.0825")}


def test_a_body_that_is_not_json_is_an_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        wire.decode_invoice_page(b'{"data": [{"id": "in_1", ')


WARNINGS = {
    "new invoice field": "unknown field invoice.tax_summary",
    "missing invoice field": "missing field invoice.memo",
    "new line item field": "unknown field line_item.credit_grant_id",
}


@pytest.mark.parametrize("change", sorted(WARNINGS))
def test_the_generic_decoding_is_named_in_one_warning(
    invoice_bodies: list[bytes],
    change: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wire, "_WARNED", set())
    body = reshaped(invoice_bodies[0], change)
    with caplog.at_level(logging.WARNING, logger="orb_source.wire"):
        for _ in range(3):
            wire.decode_invoice_page(body)
    warnings = [r.getMessage() for r in caplog.records if r.name == "orb_source.wire"]
    assert len(warnings) == 1, warnings
    assert WARNINGS[change] in warnings[0]
    assert warnings[0].startswith("invoice pages decoded the generic, slower way: ")


def test_the_sandbox_pages_decode_the_typed_way(
    invoice_bodies: list[bytes], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wire, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="orb_source.wire"):
        for body in invoice_bodies:
            wire.decode_invoice_page(body)
    assert not [r for r in caplog.records if r.name == "orb_source.wire"]
