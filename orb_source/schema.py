"""Schema hints: the declared shape of every table, so types never depend on the first page.

Money and quantities are DECIMAL, timestamps are UTC-aware, `metadata` is one JSON column,
and declared columns exist from the first load even while every value is still NULL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from dlt.common.schema.typing import (
    TColumnSchema,
    TTableSchemaColumns,
)

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

    def merged(self, other: Shape) -> Shape:
        """Both shapes' columns, table by table."""
        nested = dict(self.nested)
        for hops, shape in other.nested.items():
            nested[hops] = nested[hops].merged(shape) if hops in nested else shape
        columns = {
            kind: tuple(dict.fromkeys((*getattr(self, kind), *getattr(other, kind))))
            for kind in KINDS
        }
        return replace(self, **columns, nested=nested)

    def under(self, prefix: str) -> Shape:
        """This object's shape as a nested object `prefix` of its owner (`price__...`)."""
        columns = {
            kind: tuple(f"{prefix}__{name}" for name in getattr(self, kind)) for kind in KINDS
        }
        nested = {(f"{prefix}__{hops[0]}", *hops[1:]): n for hops, n in self.nested.items()}
        return replace(self, **columns, nested=nested)

    def listed_in(self, array: tuple[str, ...]) -> Shape:
        """This object's shape as the items of its owner's array (a child table)."""
        nested = {(*array, *hops): shape for hops, shape in self.nested.items()}
        return Shape(nested={array: replace(self, nested={}), **nested})

    def nesting(self) -> int:
        """dlt's `max_table_nesting` that keeps every declared column out of JSON: each nested
        object and each array on the way to a column counts one level."""
        levels = [
            len(hops) + sum(name.count("__") for name in hops) + name.count("__")
            for hops, shape in [((), self), *self.nested.items()]
            for name in shape.decimal
        ]
        return max([2, *levels])


KINDS = ("decimal", "timestamp", "json", "text", "bigint", "bool")


def money(*paths: str) -> Shape:
    """DECIMAL columns from Orb's field paths, `[]` marking an array: `tiers[].unit_amount`
    is column `unit_amount` of child table `tiers`."""
    shape = Shape()
    for path in paths:
        *arrays, leaf = path.split("[].")
        hops = tuple(hop.replace(".", "__") for hop in arrays)
        column = Shape(decimal=(leaf.replace(".", "__"),))
        shape = shape.merged(column.listed_in(hops) if hops else column)
        for depth in range(1, len(hops)):
            shape = shape.merged(Shape().listed_in(hops[:depth]))
    return shape


def at(prefix: str, paths: Iterable[str]) -> tuple[str, ...]:
    return tuple(prefix + path for path in paths)


def address_columns(prefix: str) -> tuple[str, ...]:
    """An Orb Address object, flattened the way dlt names its columns."""
    parts = ("line1", "line2", "city", "state", "postal_code", "country")
    return tuple(f"{prefix}__{part}" for part in parts)


def tax_id_columns(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}__{part}" for part in ("country", "type", "value"))


ROOT = Shape(text=("id",), timestamp=("deleted_at", "synced_at"))
"""Columns every table has: Orb's id, the deletion marker and when the row was last read."""

PRICE_MONEY = (
    "conversion_rate",
    "fixed_price_quantity",
    "minimum_amount",
    "maximum_amount",
    "minimum.minimum_amount",
    "maximum.maximum_amount",
    "discount.amount_discount",
    "discount.percentage_discount",
    "discount.usage_discount",
    "discount.trial_amount_discount",
    "discount.trial_percentage_discount",
    "discount.tiers[].lower_bound",
    "discount.tiers[].upper_bound",
    "discount.tiers[].percentage",
    "conversion_rate_config.unit_config.unit_amount",
    "conversion_rate_config.tiered_config.tiers[].first_unit",
    "conversion_rate_config.tiered_config.tiers[].last_unit",
    "conversion_rate_config.tiered_config.tiers[].unit_amount",
    "unit_config.unit_amount",
    "unit_config.scaling_factor",
    "tiered_config.tiers[].first_unit",
    "tiered_config.tiers[].last_unit",
    "tiered_config.tiers[].unit_amount",
    "bulk_config.tiers[].maximum_units",
    "bulk_config.tiers[].unit_amount",
    "bulk_with_filters_config.tiers[].tier_lower_bound",
    "bulk_with_filters_config.tiers[].unit_amount",
    "bulk_with_proration_config.tiers[].tier_lower_bound",
    "bulk_with_proration_config.tiers[].unit_amount",
    "package_config.package_amount",
    "package_with_allocation_config.allocation",
    "package_with_allocation_config.package_amount",
    "package_with_allocation_config.package_size",
    "matrix_config.default_unit_amount",
    "matrix_config.scaling_factor",
    "matrix_config.matrix_values[].scaling_factor",
    "matrix_config.matrix_values[].unit_amount",
    "matrix_with_allocation_config.allocation",
    "matrix_with_allocation_config.default_unit_amount",
    "matrix_with_allocation_config.scaling_factor",
    "matrix_with_allocation_config.matrix_values[].scaling_factor",
    "matrix_with_allocation_config.matrix_values[].unit_amount",
    "matrix_with_display_name_config.unit_amounts[].unit_amount",
    "matrix_with_threshold_discounts_config.default_unit_amount",
    "matrix_with_threshold_discounts_config.matrix_values[].unit_amount",
    "matrix_with_threshold_discounts_config.threshold_discount_groups[]"
    ".above_threshold_discount_percentage",
    "matrix_with_threshold_discounts_config.threshold_discount_groups[]"
    ".below_threshold_discount_percentage",
    "matrix_with_threshold_discounts_config.threshold_discount_groups[].threshold_amount",
    "threshold_total_amount_config.consumption_table[].threshold",
    "threshold_total_amount_config.consumption_table[].total_amount",
    "tiered_package_config.package_size",
    "tiered_package_config.tiers[].per_unit",
    "tiered_package_config.tiers[].tier_lower_bound",
    "tiered_package_with_minimum_config.package_size",
    "tiered_package_with_minimum_config.tiers[].minimum_amount",
    "tiered_package_with_minimum_config.tiers[].per_unit",
    "tiered_package_with_minimum_config.tiers[].tier_lower_bound",
    "tiered_with_minimum_config.tiers[].minimum_amount",
    "tiered_with_minimum_config.tiers[].tier_lower_bound",
    "tiered_with_minimum_config.tiers[].unit_amount",
    "tiered_with_proration_config.tiers[].tier_lower_bound",
    "tiered_with_proration_config.tiers[].unit_amount",
    "tiered_matrix_with_allocation_config.allocation",
    "tiered_matrix_with_allocation_config.default_unit_amount",
    "tiered_matrix_with_allocation_config.tiers[].tier_lower_bound",
    "tiered_matrix_with_allocation_config.tiers[].unit_amount",
    "grouped_tiered_config.tiers[].tier_lower_bound",
    "grouped_tiered_config.tiers[].unit_amount",
    "grouped_tiered_matrix_config.default_unit_amount",
    "grouped_tiered_matrix_config.tiers[].tier_lower_bound",
    "grouped_tiered_matrix_config.tiers[].unit_amount",
    "grouped_tiered_package_config.package_size",
    "grouped_tiered_package_config.tiers[].per_unit",
    "grouped_tiered_package_config.tiers[].tier_lower_bound",
    "max_group_tiered_package_config.package_size",
    "max_group_tiered_package_config.tiers[].tier_lower_bound",
    "max_group_tiered_package_config.tiers[].unit_amount",
    "grouped_allocation_config.allocation",
    "grouped_allocation_config.overage_unit_rate",
    "grouped_with_prorated_minimum_config.minimum",
    "grouped_with_prorated_minimum_config.unit_rate",
    "grouped_with_metered_minimum_config.minimum_unit_amount",
    "grouped_with_metered_minimum_config.scaling_factors[].scaling_factor",
    "grouped_with_metered_minimum_config.unit_amounts[].unit_amount",
    "grouped_with_min_max_thresholds_config.maximum_charge",
    "grouped_with_min_max_thresholds_config.minimum_charge",
    "grouped_with_min_max_thresholds_config.per_unit_rate",
    "scalable_matrix_with_unit_pricing_config.unit_price",
    "scalable_matrix_with_unit_pricing_config.matrix_scaling_factors[].scaling_factor",
    "scalable_matrix_with_tiered_pricing_config.matrix_scaling_factors[].scaling_factor",
    "scalable_matrix_with_tiered_pricing_config.tiers[].tier_lower_bound",
    "scalable_matrix_with_tiered_pricing_config.tiers[].unit_amount",
    "cumulative_grouped_bulk_config.dimension_values[].tier_lower_bound",
    "cumulative_grouped_bulk_config.dimension_values[].unit_amount",
    "cumulative_grouped_allocation_config.cumulative_allocation",
    "cumulative_grouped_allocation_config.group_allocation",
    "cumulative_grouped_allocation_config.unit_amount",
    "unit_with_percent_config.percent",
    "unit_with_percent_config.unit_amount",
    "unit_with_proration_config.unit_amount",
    "daily_credit_allowance_config.daily_allowance",
    "daily_credit_allowance_config.default_unit_amount",
    "daily_credit_allowance_config.matrix_values[].unit_amount",
    "metered_allowance_config.unit_amount",
    "minimum_composite_config.minimum_amount",
    "percent_config.percent",
    "percent_config.minimum_amount",
    "percent_config.maximum_amount",
    "event_output_config.default_unit_rate",
)
"""Money, rates, quantities and percentages of all 36 price models (orb-api.md §3.8), as
Orb's field paths."""

ADJUSTMENT_MONEY = (
    "amount",
    "amount_discount",
    "percentage_discount",
    "usage_discount",
    "minimum_amount",
    "maximum_amount",
    "tiers[].lower_bound",
    "tiers[].upper_bound",
    "tiers[].percentage",
)
"""Every member of the adjustment union (`adjustment_type`)."""

DISCOUNT_MONEY = (
    "amount_discount",
    "percentage_discount",
    "usage_discount",
    "trial_amount_discount",
    "trial_percentage_discount",
    "tiers[].lower_bound",
    "tiers[].upper_bound",
    "tiers[].percentage",
)
"""Every member of the discount union (`discount_type`)."""

PRICE = Shape(
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
        "invoicing_cycle_configuration",
    ),
).merged(money(*PRICE_MONEY))
"""A price, wherever it sits: its own table, a plan's prices, a price interval, a line item."""

CUSTOMERS = Shape(
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
)

SUBSCRIPTIONS = (
    Shape(
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
                text=("filter",),
                json=("usage_customer_ids",),
            ),
        },
    )
    .merged(PRICE.under("price").listed_in(("price_intervals",)))
    .merged(
        money(
            "price_intervals[].fixed_fee_quantity_transitions[].quantity",
            *at("adjustment_intervals[].adjustment.", ADJUSTMENT_MONEY),
            *at("discount_intervals[].", DISCOUNT_MONEY),
            "minimum_intervals[].minimum_amount",
            "maximum_intervals[].maximum_amount",
            "fixed_fee_quantity_schedule[].quantity",
        )
    )
)

INVOICES = Shape(
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
    json=("metadata", "discount"),
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
).merged(
    money(
        *at("discounts[].", DISCOUNT_MONEY),
        "minimum.minimum_amount",
        "maximum.maximum_amount",
    )
)

INVOICE_LINE_ITEMS = (
    Shape(
        decimal=(
            "amount",
            "subtotal",
            "adjusted_subtotal",
            "credits_applied",
            "partially_invoiced_amount",
            "quantity",
        ),
        timestamp=("start_date", "end_date"),
        text=("invoice_id", "name", "price_id", "filter", "grouping"),
        json=("usage_customer_ids",),
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
            ("adjustments",): Shape(text=("replaces_adjustment_id",)),
        },
    )
    .merged(PRICE.under("price"))
    .merged(money(*at("adjustments[].", ADJUSTMENT_MONEY)))
)

CREDIT_NOTES = Shape(
    decimal=("subtotal", "total", "minimum_amount_refunded"),
    timestamp=("created_at", "voided_at"),
    text=("customer_id", "invoice_id", "credit_note_number", "type", "reason", "memo"),
    nested={
        ("line_items",): Shape(
            decimal=("amount", "subtotal", "quantity"),
            timestamp=("start_time_inclusive", "end_time_exclusive"),
        ),
        ("discounts",): Shape(decimal=("amount_applied",)),
    },
).merged(
    money(
        "discounts[].percentage_discount",
        "line_items[].discounts[].amount_applied",
        "line_items[].discounts[].amount_discount",
        "line_items[].discounts[].percentage_discount",
        "line_items[].tax_amounts[].amount",
        "line_items[].tax_amounts[].tax_rate_percentage",
        "maximum_amount_adjustment.amount_applied",
        "maximum_amount_adjustment.percentage_discount",
    )
)

PLANS = (
    Shape(
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
        json=("metadata", "base_plan"),
        nested={("plan_phases",): Shape(decimal=("minimum_amount", "maximum_amount"))},
    )
    .merged(PRICE.listed_in(("prices",)))
    .merged(
        money(
            *at("adjustments[].", ADJUSTMENT_MONEY),
            *at("discount.", DISCOUNT_MONEY),
            "minimum.minimum_amount",
            "maximum.maximum_amount",
            *at("plan_phases[].discount.", DISCOUNT_MONEY),
            "plan_phases[].minimum.minimum_amount",
            "plan_phases[].maximum.maximum_amount",
        )
    )
)

PRICES = PRICE

ITEMS = Shape(timestamp=("created_at", "archived_at"), text=("name",), json=("metadata",))

COUPONS = Shape(
    decimal=(
        "discount__amount_discount",
        "discount__percentage_discount",
        "discount__usage_discount",
    ),
    timestamp=("archived_at",),
    text=("redemption_code", "discount__reason"),
    bigint=("times_redeemed", "max_redemptions", "duration_in_months"),
)

BILLABLE_METRICS = Shape(
    timestamp=("item__created_at", "item__archived_at"),
    text=("name", "description", "status", "sql"),
    json=("metadata", "item__metadata"),
)

DIMENSIONAL_PRICE_GROUPS = Shape(
    text=("billable_metric_id", "external_dimensional_price_group_id", "name"),
    bigint=("price_count",),
    json=("dimensions", "metadata"),
)

LICENSE_TYPES = Shape(text=("grouping_key", "name"))

WEBHOOK_ENDPOINTS = Shape(
    timestamp=("created_at",),
    text=("payload_style", "url"),
    bool=("enabled",),
    json=("enabled_event_types",),
)

EVENT_BACKFILLS = Shape(
    timestamp=("close_time", "created_at", "reverted_at", "timeframe_end", "timeframe_start"),
    text=("customer_id", "status", "deprecation_filter"),
    bigint=("events_ingested",),
    bool=("replace_existing_events",),
)

SUBSCRIPTION_CHANGES = Shape(
    timestamp=("expiration_time", "applied_at", "cancelled_at"),
    text=("status", "subscription_id"),
)

PLAN_MIGRATIONS = Shape(text=("plan_id", "status", "effective_time"))
"""`effective_time` is a date, a datetime or `end_of_term`/`end_of_invoice`: stored as Orb
wrote it."""

SUBSCRIPTION_SCHEDULES = Shape(
    timestamp=("created_at", "start_date", "end_date"), text=("subscription_id", "plan_id")
)

LICENSES = Shape(
    timestamp=("start_date", "end_date"),
    text=("external_license_id", "license_type_id", "status", "subscription_id"),
)

COUPON_SUBSCRIPTIONS = Shape(text=("coupon_id", "subscription_id"))

DIMENSIONAL_PRICE_GROUP_PRICES = PRICES.merged(Shape(text=("dimensional_price_group_id",)))

SUBSCRIPTION_USAGE = Shape(
    timestamp=("timeframe_start", "timeframe_end"),
    text=(
        "subscription_id",
        "customer_id",
        "billable_metric_id",
        "billable_metric_name",
        "property_key",
        "property_value",
    ),
    decimal=("quantity",),
)
"""A day of one billable metric's usage (`id`: subscription/metric/day[/key=value])."""

SUBSCRIPTION_COSTS = Shape(
    timestamp=("timeframe_start", "timeframe_end"),
    text=("subscription_id", "customer_id"),
    decimal=("subtotal", "total"),
    nested={
        ("per_price_costs",): Shape(text=("price_id",), decimal=("subtotal", "total", "quantity")),
    },
)
"""A day of a subscription's costs (`id`: subscription/day), each price's in a child table."""

EVENT_VOLUME = Shape(timestamp=("timeframe_start", "timeframe_end"), bigint=("count",))
"""An hour's count of events (`id`: the hour)."""

ALERTS = Shape(
    timestamp=("created_at",),
    text=("customer_id", "subscription_id", "type", "currency"),
    bool=("enabled",),
    json=(
        "grouping_keys",
        "license_type",
        "metric",
        "plan",
        "price_filters",
    ),
    nested={
        ("thresholds",): Shape(decimal=("value",)),
        ("balance_alert_status",): Shape(decimal=("threshold_value",)),
    },
).merged(money("threshold_overrides[].thresholds[].value"))

CREDIT_LEDGER_ENTRIES = Shape(
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
)

CREDIT_BLOCKS = Shape(
    decimal=("balance", "maximum_initial_balance", "per_unit_cost_basis"),
    timestamp=("effective_date", "expiry_date"),
    text=("customer_id", "status", "credit_block_source"),
    json=("metadata", "filters", "credit_allocation", "credit_commitment"),
)

TOP_UPS = Shape(
    decimal=("amount", "threshold", "per_unit_cost_basis"),
    text=("customer_id", "currency", "expires_after_unit", "invoice_settings__memo"),
    bigint=("expires_after",),
)

CUSTOMER_BALANCE_TRANSACTIONS = Shape(
    decimal=("amount", "starting_balance", "ending_balance"),
    timestamp=("created_at",),
    text=("customer_id", "invoice_id", "credit_note_id", "type", "action", "description"),
)


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
        "daily_credit_allowance",
        "metered_allowance",
        "minimum_composite",
        "percent",
        "event_output",
    ]
)

LEDGER_ENTRY_TYPES = frozenset(
    {
        "increment",
        "decrement",
        "expiration_change",
        "credit_block_expiry",
        "void",
        "void_initiated",
        "amendment",
    }
)
