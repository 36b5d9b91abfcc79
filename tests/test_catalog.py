"""The catalog refuses entries no strategy implements, and every declared strategy has a reader."""

from __future__ import annotations

from typing import Any

import pytest

from orb_source.catalog import (
    ARROW_TABLES,
    CATALOG,
    EMITTED_ONCE,
    STRATEGIES,
    Activity,
    Cursor,
    Endpoint,
    InState,
    ListedBy,
    OpenSet,
    Parent,
    Refetch,
    Scope,
    Sync,
)
from orb_source.schema import Shape
from orb_source.source import READERS

CREATED = Cursor("created_at", "created_at")
OPEN_SET = OpenSet("status", ("active",), ("ended",), "status[]", "/things/{id}")
ACTIVITY = Activity("/feed", CREATED, InState("status", ("open",)), "/things/{id}")
PARENT = Parent("parents", "/parents", "parent_id")
OPEN_PARENT = Parent("parents", "/parents", "parent_id", open_set=OPEN_SET, created=CREATED)


def test_every_declared_strategy_has_a_reader_and_every_reader_a_declaration() -> None:
    assert set(READERS) == set(STRATEGIES)
    assert {(endpoint.scope, endpoint.sync) for endpoint in CATALOG} <= set(READERS)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sync": Sync.REFRESH, "cursor": CREATED}, "does not read ['cursor']"),
        ({"sync": Sync.WATERMARK}, "watermark needs ['cursor']"),
        ({"sync": Sync.LIFECYCLE, "cursor": CREATED}, "lifecycle needs ['open_set']"),
        (
            {"sync": Sync.WATERMARK, "cursor": CREATED, "refetch": Refetch("/x", "thing_id")},
            "does not read ['refetch']",
        ),
        ({"sync": Sync.ON_ACTIVITY, "activity": ACTIVITY}, "no strategy reads account"),
        (
            {
                "sync": Sync.LIFECYCLE,
                "scope": Scope.CUSTOMER,
                "cursor": CREATED,
                "open_set": OPEN_SET,
            },
            "no strategy reads customer lifecycle",
        ),
        (
            {
                "sync": Sync.WATERMARK,
                "scope": Scope.CUSTOMER,
                "cursor": CREATED,
                "activity": ACTIVITY,
            },
            "does not read ['activity']",
        ),
        (
            {
                "sync": Sync.WATERMARK,
                "cursor": Cursor("created_at", "created_at", open_while=InState("s", ("open",))),
            },
            "open_while is read per customer only",
        ),
        ({"sync": Sync.REFRESH, "scope": Scope.PARENT}, "refresh needs ['parent']"),
        ({"sync": Sync.REFRESH, "parent": PARENT}, "does not read ['parent']"),
        (
            {"sync": Sync.REFRESH, "scope": Scope.PARENT, "parent": OPEN_PARENT},
            "read by open_parents only",
        ),
        (
            {"sync": Sync.OPEN_PARENTS, "scope": Scope.PARENT, "parent": PARENT},
            "read by open_parents only, which needs both",
        ),
        ({"sync": Sync.OPEN_PARENTS, "parent": OPEN_PARENT}, "no strategy reads account"),
        (
            {"sync": Sync.REFRESH, "scope": Scope.CUSTOMER, "listed_by": ListedBy("s", ("a",))},
            "does not read ['listed_by']",
        ),
    ],
)
def test_an_entry_no_strategy_implements_is_refused_by_name(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match="catalog entry things") as raised:
        Endpoint("things", "/things", shape=Shape(), **fields)
    assert message in str(raised.value)


def test_what_the_catalog_derives_from_its_entries() -> None:
    assert {
        "subscriptions",
        "invoices",
        "invoice_line_items",
        "subscription_usage",
        "subscription_costs",
        "event_volume",
    } == EMITTED_ONCE
    assert {
        "invoices",
        "invoice_line_items",
        "credit_ledger_entries",
        "subscription_usage",
        "subscription_costs",
        "event_volume",
    } == ARROW_TABLES
