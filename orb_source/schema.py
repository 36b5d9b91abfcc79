"""Schema hints: the declared shape of every table, so types never depend on the first page.

Money and quantities are DECIMAL, timestamps are UTC-aware, `metadata` is one JSON column,
and declared columns exist from the first load even while every value is still NULL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

import dlt
from dlt.common.schema import Schema
from dlt.common.schema.typing import (
    TColumnSchema,
    TTableSchemaColumns,
    TWriteDispositionConfig,
)
from dlt.extract.hints import TResourceNestedHints

from .catalog import EMITTED_ONCE
from .precision import PRECISION, SCALE

MONEY: TColumnSchema = {
    "data_type": "decimal",
    "precision": PRECISION,
    "scale": SCALE,
    "nullable": True,
}
"""Every money field and quantity; `precision.py` says why this size and what does not fit."""
TIMESTAMP: TColumnSchema = {"data_type": "timestamp", "timezone": True, "nullable": True}
JSON: TColumnSchema = {"data_type": "json", "nullable": True}
TEXT: TColumnSchema = {"data_type": "text", "nullable": True}
BIGINT: TColumnSchema = {"data_type": "bigint", "nullable": True}
BOOL: TColumnSchema = {"data_type": "bool", "nullable": True}


@dataclass(frozen=True)
class Shape:
    """Columns by type; names are dlt's flattened names (`auto_collection__next_attempt_at`)."""

    decimal: tuple[str, ...] = ()
    timestamp: tuple[str, ...] = ()
    json: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    bigint: tuple[str, ...] = ()
    bool: tuple[str, ...] = ()
    nested: Mapping[tuple[str, ...], Shape] = field(default_factory=dict)

    def columns(self) -> TTableSchemaColumns:
        typed = (
            (self.text, TEXT),
            (self.bool, BOOL),
            (self.bigint, BIGINT),
            (self.decimal, MONEY),
            (self.timestamp, TIMESTAMP),
            (self.json, JSON),
        )
        return {name: {"name": name, **hint} for names, hint in typed for name in names}


def address_columns(prefix: str) -> tuple[str, ...]:
    """An Orb Address object, flattened the way dlt names its columns."""
    parts = ("line1", "line2", "city", "state", "postal_code", "country")
    return tuple(f"{prefix}__{part}" for part in parts)


def tax_id_columns(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}__{part}" for part in ("country", "type", "value"))


ROOT = Shape(text=("id",), timestamp=("deleted_at", "synced_at"))
"""Columns every table has: Orb's id, the deletion marker and when the row was last read."""

PRICE = Shape(
    decimal=(
        "minimum_amount",
        "maximum_amount",
        "fixed_price_quantity",
        "conversion_rate",
        "unit_config__unit_amount",
        "package_config__package_amount",
        "package_config__package_size",
    ),
    timestamp=("created_at",),
    text=(
        "id",
        "name",
        "model_type",
        "currency",
        "cadence",
        "price_type",
        "external_price_id",
        "invoice_grouping_key",
        "replaces_price_id",
        "billable_metric__id",
    ),
    bigint=("plan_phase_order",),
    json=(
        "metadata",
        "credit_allocation",
        "dimensional_price_configuration",
        "discount",
        "invoicing_cycle_configuration",
        "minimum",
        "maximum",
    ),
    nested={("tiered_config__tiers",): Shape(decimal=("unit_amount", "first_unit", "last_unit"))},
)

SHAPES: Mapping[str, Shape] = {
    "customers": Shape(
        decimal=("balance",),
        timestamp=("created_at",),
        text=(
            "external_customer_id",
            "name",
            "email",
            "currency",
            "timezone",
            "portal_url",
            *address_columns("billing_address"),
            *address_columns("shipping_address"),
            *tax_id_columns("tax_id"),
        ),
        bool=("auto_collection", "auto_issuance", "email_delivery"),
        json=(
            "metadata",
            "hierarchy",
            "accounting_sync_configuration",
            "reporting_configuration",
            "payment_configuration",
        ),
    ),
    "subscriptions": Shape(
        decimal=("invoicing_threshold",),
        timestamp=(
            "created_at",
            "start_date",
            "end_date",
            "current_billing_period_start_date",
            "current_billing_period_end_date",
            "trial_info__end_date",
            "redeemed_coupon__start_date",
            "redeemed_coupon__end_date",
        ),
        text=(
            "customer_id",
            "plan_id",
            "status",
            "name",
            "default_invoice_memo",
            "redeemed_coupon__coupon_id",
        ),
        bigint=(
            "active_plan_phase_order",
            "billing_cycle_day",
            "net_terms",
            "billing_cycle_anchor_configuration__day",
            "billing_cycle_anchor_configuration__month",
            "billing_cycle_anchor_configuration__year",
        ),
        json=("metadata", "pending_subscription_change"),
        nested={
            ("price_intervals",): Shape(
                timestamp=(
                    "start_date",
                    "end_date",
                    "current_billing_period_start_date",
                    "current_billing_period_end_date",
                ),
                json=("price", "filter", "fixed_fee_quantity_transitions", "usage_customer_ids"),
            ),
        },
    ),
    "invoices": Shape(
        decimal=("amount_due", "subtotal", "total", "minimum_amount", "maximum_amount"),
        timestamp=(
            "created_at",
            "invoice_date",
            "due_date",
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
            "auto_collection__next_attempt_at",
            "auto_collection__previously_attempted_at",
        ),
        text=(
            "customer_id",
            "subscription_id",
            "status",
            "currency",
            "invoice_number",
            "invoice_source",
            "memo",
            *address_columns("billing_address"),
            *address_columns("shipping_address"),
            *tax_id_columns("customer_tax_id"),
        ),
        json=("metadata", "discount", "minimum", "maximum"),
        nested={
            ("credit_notes",): Shape(decimal=("total",), timestamp=("voided_at",)),
            ("payment_attempts",): Shape(
                decimal=("amount",), timestamp=("created_at",), text=("receipt_pdf",)
            ),
            ("customer_balance_transactions",): Shape(
                decimal=("amount", "starting_balance", "ending_balance"),
                timestamp=("created_at",),
            ),
        },
    ),
    "invoice_line_items": Shape(
        decimal=(
            "amount",
            "subtotal",
            "adjusted_subtotal",
            "credits_applied",
            "partially_invoiced_amount",
            "quantity",
        ),
        timestamp=("start_date", "end_date"),
        text=("invoice_id", "name", "price_id"),
        json=("price", "filter", "grouping", "usage_customer_ids"),
        nested={
            ("sub_line_items",): Shape(
                decimal=(
                    "amount",
                    "quantity",
                    "scaled_quantity",
                    "tier_config__unit_amount",
                    "tier_config__first_unit",
                    "tier_config__last_unit",
                ),
                json=("matrix_config", "grouping"),
            ),
            ("tax_amounts",): Shape(
                decimal=("amount", "tax_rate_percentage"), text=("tax_reason",)
            ),
            ("adjustments",): Shape(
                decimal=("amount", "percentage_discount", "amount_discount"),
                text=("replaces_adjustment_id",),
            ),
        },
    ),
    "credit_notes": Shape(
        decimal=("subtotal", "total", "minimum_amount_refunded"),
        timestamp=("created_at", "voided_at"),
        text=("customer_id", "invoice_id", "credit_note_number", "type", "reason", "memo"),
        json=("maximum_amount_adjustment",),
        nested={
            ("line_items",): Shape(
                decimal=("amount", "subtotal", "quantity"),
                timestamp=("start_time_inclusive", "end_time_exclusive"),
            ),
            ("discounts",): Shape(decimal=("amount_applied",)),
        },
    ),
    "plans": Shape(
        decimal=("minimum_amount", "maximum_amount"),
        timestamp=("created_at", "product__created_at"),
        text=(
            "name",
            "status",
            "currency",
            "external_plan_id",
            "description",
            "base_plan_id",
            "default_invoice_memo",
        ),
        bigint=("trial_config__trial_period",),
        json=("metadata", "base_plan", "discount", "minimum", "maximum"),
        nested={
            ("prices",): PRICE,
            ("prices", "tiered_config__tiers"): PRICE.nested[("tiered_config__tiers",)],
            ("plan_phases",): Shape(decimal=("minimum_amount", "maximum_amount")),
        },
    ),
    "prices": PRICE,
    "items": Shape(timestamp=("created_at", "archived_at"), text=("name",), json=("metadata",)),
    "coupons": Shape(
        decimal=(
            "discount__amount_discount",
            "discount__percentage_discount",
            "discount__usage_discount",
        ),
        timestamp=("archived_at",),
        text=("redemption_code", "discount__reason"),
        bigint=("times_redeemed", "max_redemptions", "duration_in_months"),
    ),
    "billable_metrics": Shape(
        timestamp=("item__created_at", "item__archived_at"),
        text=("name", "description", "status", "sql"),
        json=("metadata", "item__metadata"),
    ),
    "alerts": Shape(
        timestamp=("created_at",),
        text=("customer_id", "subscription_id", "type", "currency"),
        bool=("enabled",),
        json=(
            "grouping_keys",
            "license_type",
            "metric",
            "plan",
            "price_filters",
            "threshold_overrides",
        ),
        nested={
            ("thresholds",): Shape(decimal=("value",)),
            ("balance_alert_status",): Shape(decimal=("threshold_value",)),
        },
    ),
    "credit_ledger_entries": Shape(
        decimal=(
            "amount",
            "starting_balance",
            "ending_balance",
            "void_amount",
            "credit_block__per_unit_cost_basis",
        ),
        timestamp=("created_at", "new_block_expiry_date", "credit_block__expiry_date"),
        text=(
            "customer_id",
            "entry_type",
            "entry_status",
            "currency",
            "description",
            "invoice_id",
            "price_id",
            "void_reason",
            "event_id",
            "credit_block__id",
        ),
        bigint=("ledger_sequence_number",),
        json=("metadata", "created_invoices", "credit_block__filters"),
    ),
    "credit_blocks": Shape(
        decimal=("balance", "maximum_initial_balance", "per_unit_cost_basis"),
        timestamp=("effective_date", "expiry_date"),
        text=("customer_id", "status", "credit_block_source"),
        json=("metadata", "filters", "credit_allocation", "credit_commitment"),
    ),
    "top_ups": Shape(
        decimal=("amount", "threshold", "per_unit_cost_basis"),
        text=("customer_id", "currency", "expires_after_unit", "invoice_settings__memo"),
        bigint=("expires_after",),
    ),
    "customer_balance_transactions": Shape(
        decimal=("amount", "starting_balance", "ending_balance"),
        timestamp=("created_at",),
        text=("customer_id", "invoice_id", "credit_note_id", "type", "action", "description"),
    ),
}


def table_columns(table: str) -> TTableSchemaColumns:
    """The declared columns of a contract table: the common ones, then the table's own."""
    columns = ROOT.columns() | SHAPES[table].columns()
    columns["id"] = {**columns["id"], "nullable": False}
    return columns


def write_disposition(table: str, first_load: bool = False) -> TWriteDispositionConfig:
    """Merge on `id`; without dlt's deduplication when the source already emits each object once
    (on a large first load that window over the staged rows was most of the load step).

    Such a table's first load, into a table the destination does not hold yet, is an append:
    a merge into an empty table would only copy every row through the staging dataset."""
    if table not in EMITTED_ONCE:
        return "merge"
    if first_load:
        return "append"
    return {"disposition": "merge", "strategy": "delete-insert", "deduplicated": True}


def nested_hints(table: str) -> dict[str | tuple[str, ...], TResourceNestedHints]:
    """DECIMAL and timestamp hints for dlt's child tables (`invoice_line_items__tax_amounts`)."""
    return {
        path: dlt.mark.make_nested_hints(columns=shape.columns())
        for path, shape in SHAPES[table].nested.items()
    }


PRICE_MODEL_TYPES = frozenset(
    [
        "unit",
        "tiered",
        "bulk",
        "bulk_with_filters",
        "package",
        "matrix",
        "threshold_total_amount",
        "tiered_package",
        "tiered_with_minimum",
        "grouped_tiered",
        "grouped_tiered_matrix",
        "tiered_package_with_minimum",
        "package_with_allocation",
        "unit_with_percent",
        "matrix_with_allocation",
        "tiered_matrix_with_allocation",
        "matrix_with_threshold_discounts",
        "tiered_with_proration",
        "unit_with_proration",
        "grouped_allocation",
        "bulk_with_proration",
        "grouped_with_prorated_minimum",
        "grouped_with_metered_minimum",
        "grouped_with_min_max_thresholds",
        "matrix_with_display_name",
        "grouped_tiered_package",
        "max_group_tiered_package",
        "scalable_matrix_with_unit_pricing",
        "scalable_matrix_with_tiered_pricing",
        "cumulative_grouped_bulk",
        "cumulative_grouped_allocation",
        "daily_credit_allocation",
        "metered_allowance",
        "minimum_composite",
        "percent",
        "event_output",
    ]
)

KNOWN_KINDS: Mapping[str, tuple[str, frozenset[str]]] = {
    "credit_ledger_entries": (
        "entry_type",
        frozenset(
            {
                "increment",
                "decrement",
                "expiration_change",
                "credit_block_expiry",
                "void",
                "void_initiated",
                "amendment",
            }
        ),
    ),
    "prices": ("model_type", PRICE_MODEL_TYPES),
}
"""Discriminators whose variants shape a table: a new one is loaded, and named in a warning."""


def mismatched_types(table: str, row: Mapping[str, Any]) -> set[str]:
    """Declared columns whose value arrived as another JSON type. dlt stores a number sent
    for a text column as text without a variant column, so only this check names it."""
    columns = _declared_types(table)
    return {
        f"{table}.{name} arrived as {type(value).__name__}, declared {columns[name]}"
        for name, value in row.items()
        if name in columns and value is not None and not _fits(value, columns[name])
    }


@cache
def _declared_types(table: str) -> dict[str, str]:
    return {name: str(column.get("data_type")) for name, column in table_columns(table).items()}


def _fits(value: Any, data_type: str) -> bool:
    if isinstance(value, bool):
        return data_type in ("bool", "json")
    expected: dict[str, tuple[type, ...]] = {
        "text": (str,),
        "decimal": (str, int, Decimal),
        "timestamp": (str, datetime),
        "bigint": (int,),
        "bool": (bool,),
    }
    return data_type not in expected or isinstance(value, expected[data_type])


def unknown_kinds(table: str, rows: list[dict[str, Any]]) -> set[str]:
    if table not in KNOWN_KINDS:
        return set()
    field_name, known = KNOWN_KINDS[table]
    return {str(row[field_name]) for row in rows if row.get(field_name) not in known} - {"None"}


def schema_changes(before: Mapping[str, Iterable[str]], after: Schema) -> list[str]:
    """What a run added to tables that existed before it: new columns, and variant columns
    (`total__v_text`) that appear when a field changes type."""
    changes: list[str] = []
    for table, known in before.items():
        if table not in after.tables:
            continue
        for name, column in after.get_table_columns(table).items():
            if name in known:
                continue
            kind = "changed type" if "__v_" in name else "new field"
            changes.append(f"{kind}: {table}.{name} ({column.get('data_type')})")
    return changes


def loaded_columns(schema: Schema) -> dict[str, set[str]]:
    return {name: set(schema.get_table_columns(name)) for name in schema.data_table_names()}
