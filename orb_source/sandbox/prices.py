"""Every price model Orb offers, with its configuration filled the way Orb sends it.

Rates are decimal strings on the wire (`Decimal` here), some with many places: a per-token
price is "0.0000000375". Unit bounds, scaling factors and package sizes Orb types as numbers
stay numbers; a few config fields Orb types as strings even when they count units
(`package_size` of `tiered_package`), and stay strings here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from orb_source.sandbox.account import Number, Obj

D = Decimal
Config = Callable[[random.Random], Obj]
PER_TOKEN = D("0.0000000375")
"""$0.0375 per million tokens: the smallest rate Orb's customers price with."""


def _unit(rng: random.Random) -> Obj:
    return {
        "unit_amount": D(rng.choice(("0.002", "0.01", "0.25", "1.50"))),
        "prorated": None,
        "scaling_factor": None,
    }


def _tiered(rng: random.Random) -> Obj:
    return {
        "tiers": [
            {"first_unit": 0, "last_unit": 1000, "unit_amount": D("0.00")},
            {
                "first_unit": 1000,
                "last_unit": 10000,
                "unit_amount": D(rng.choice(("0.05", "0.08"))),
            },
            {
                "first_unit": 10000,
                "last_unit": None,
                "unit_amount": D(rng.choice(("0.02", "0.03"))),
            },
        ],
        "prorated": None,
    }


def _bulk(rng: random.Random) -> Obj:
    return {
        "tiers": [
            {"maximum_units": 5000, "unit_amount": D("0.10")},
            {"maximum_units": None, "unit_amount": D("0.07")},
        ]
    }


def _bulk_with_filters(rng: random.Random) -> Obj:
    return {
        "filters": [{"property_key": "region", "property_value": rng.choice(("us", "eu"))}],
        "tiers": [
            {"tier_lower_bound": None, "unit_amount": D("0.12")},
            {"tier_lower_bound": D("1000"), "unit_amount": D("0.09")},
        ],
    }


def _package(rng: random.Random) -> Obj:
    return {"package_amount": D(rng.choice(("5.00", "12.50"))), "package_size": 1000}


def _matrix(rng: random.Random) -> Obj:
    return {
        "default_unit_amount": D("0.05"),
        "dimensions": ["region"],
        "matrix_values": [
            {"dimension_values": ["us"], "unit_amount": D("0.04"), "scaling_factor": None},
            {"dimension_values": ["eu"], "unit_amount": D("0.06"), "scaling_factor": None},
        ],
        "scaling_factor": None,
    }


def _threshold_total_amount(rng: random.Random) -> Obj:
    return {
        "consumption_table": [
            {"threshold": D("1000"), "total_amount": D("49.00")},
            {"threshold": D("10000"), "total_amount": D("399.00")},
        ],
        "prorate": False,
    }


def _tiered_package(rng: random.Random) -> Obj:
    return {
        "package_size": D("100"),
        "tiers": [
            {"tier_lower_bound": D("0"), "per_unit": D("2.50")},
            {"tier_lower_bound": D("10"), "per_unit": D("1.75")},
        ],
    }


def _tiered_with_minimum(rng: random.Random) -> Obj:
    return {
        "tiers": [
            {"tier_lower_bound": D("0"), "unit_amount": D("0.10"), "minimum_amount": D("25.00")},
            {"tier_lower_bound": D("5000"), "unit_amount": D("0.06"), "minimum_amount": D("0.00")},
        ],
        "hide_zero_amount_tiers": True,
        "prorate": False,
    }


def _grouped_tiered(rng: random.Random) -> Obj:
    return {
        "grouping_key": "workspace_id",
        "tiers": [
            {"tier_lower_bound": D("0"), "unit_amount": D("0.20")},
            {"tier_lower_bound": D("500"), "unit_amount": D("0.15")},
        ],
    }


def _grouped_tiered_matrix(rng: random.Random) -> Obj:
    return {
        "default_unit_amount": D("0.30"),
        "dimension": "region",
        "tiers": [
            {"dimension_value": "us", "tier_lower_bound": D("0"), "unit_amount": D("0.25")},
            {"dimension_value": "eu", "tier_lower_bound": D("0"), "unit_amount": D("0.28")},
        ],
    }


def _tiered_package_with_minimum(rng: random.Random) -> Obj:
    return {
        "package_size": Number(100),
        "tiers": [
            {"tier_lower_bound": D("0"), "per_unit": D("3.00"), "minimum_amount": D("30.00")},
            {"tier_lower_bound": D("20"), "per_unit": D("2.00"), "minimum_amount": D("0.00")},
        ],
    }


def _package_with_allocation(rng: random.Random) -> Obj:
    return {"allocation": D("100.00"), "package_amount": D("10.00"), "package_size": D("500")}


def _unit_with_percent(rng: random.Random) -> Obj:
    return {"percent": D("2.5"), "unit_amount": D("0.04")}


def _matrix_with_allocation(rng: random.Random) -> Obj:
    return {
        "allocation": D("250.00"),
        "default_unit_amount": D("0.05"),
        "dimensions": ["region", None],
        "matrix_values": [
            {"dimension_values": ["us", None], "unit_amount": D("0.04"), "scaling_factor": None},
            {
                "dimension_values": ["eu", None],
                "unit_amount": D("0.06"),
                "scaling_factor": D("1.25"),
            },
        ],
        "scaling_factor": None,
    }


def _tiered_matrix_with_allocation(rng: random.Random) -> Obj:
    return {
        "allocation": D("1000"),
        "default_unit_amount": D("0.02"),
        "dimensions": ["model"],
        "tiers": [
            {"dimension_values": ["small"], "tier_lower_bound": D("0"), "unit_amount": D("0.01")},
            {"dimension_values": ["large"], "tier_lower_bound": D("0"), "unit_amount": D("0.03")},
        ],
    }


def _matrix_with_threshold_discounts(rng: random.Random) -> Obj:
    return {
        "default_unit_amount": D("0.10"),
        "first_dimension": "region",
        "second_dimension": "tier",
        "matrix_values": [
            {
                "first_dimension_value": "us",
                "second_dimension_value": "gold",
                "unit_amount": D("0.08"),
            },
            {
                "first_dimension_value": "eu",
                "second_dimension_value": None,
                "unit_amount": D("0.09"),
            },
        ],
        "threshold_discount_groups": [
            {
                "cell_coordinates": "us:gold",
                "threshold_amount": D("500.00"),
                "below_threshold_discount_percentage": D("0"),
                "above_threshold_discount_percentage": D("12.5"),
                "description": 'Volume discount above "gold" threshold',
            }
        ],
    }


def _tiered_with_proration(rng: random.Random) -> Obj:
    return {
        "tiers": [
            {"tier_lower_bound": D("0"), "unit_amount": D("12.00")},
            {"tier_lower_bound": D("50"), "unit_amount": D("9.00")},
        ]
    }


def _unit_with_proration(rng: random.Random) -> Obj:
    return {"unit_amount": D("15.00")}


def _grouped_allocation(rng: random.Random) -> Obj:
    return {
        "allocation": D("5000"),
        "grouping_key": "project_id",
        "overage_unit_rate": D("0.0015"),
    }


def _bulk_with_proration(rng: random.Random) -> Obj:
    return {
        "tiers": [
            {"tier_lower_bound": None, "unit_amount": D("8.00")},
            {"tier_lower_bound": D("100"), "unit_amount": D("6.50")},
        ]
    }


def _grouped_with_prorated_minimum(rng: random.Random) -> Obj:
    return {"grouping_key": "cluster_id", "minimum": D("100.00"), "unit_rate": D("0.45")}


def _grouped_with_metered_minimum(rng: random.Random) -> Obj:
    return {
        "grouping_key": "team_id",
        "minimum_unit_amount": D("20.00"),
        "pricing_key": "instance_type",
        "scaling_key": "region",
        "scaling_factors": [
            {"scaling_value": "us", "scaling_factor": D("1")},
            {"scaling_value": "eu", "scaling_factor": D("1.1")},
        ],
        "unit_amounts": [
            {"pricing_value": "standard", "unit_amount": D("0.09")},
            {"pricing_value": "gpu", "unit_amount": D("2.40")},
        ],
    }


def _grouped_with_min_max_thresholds(rng: random.Random) -> Obj:
    return {
        "grouping_key": "seat_id",
        "minimum_charge": D("5.00"),
        "maximum_charge": D("50.00"),
        "per_unit_rate": D("0.75"),
    }


def _matrix_with_display_name(rng: random.Random) -> Obj:
    return {
        "dimension": "model",
        "unit_amounts": [
            {"dimension_value": "small", "display_name": "Small model", "unit_amount": D("0.0004")},
            {
                "dimension_value": "large",
                "display_name": "Large model “pro” 🚀",
                "unit_amount": D("0.0030"),
            },
        ],
    }


def _grouped_tiered_package(rng: random.Random) -> Obj:
    return {
        "grouping_key": "account_id",
        "package_size": D("10"),
        "tiers": [
            {"tier_lower_bound": D("0"), "per_unit": D("4.00")},
            {"tier_lower_bound": D("100"), "per_unit": D("3.20")},
        ],
    }


def _max_group_tiered_package(rng: random.Random) -> Obj:
    return {
        "grouping_key": "region",
        "package_size": D("5"),
        "tiers": [
            {"tier_lower_bound": D("0"), "unit_amount": D("1.00")},
            {"tier_lower_bound": D("50"), "unit_amount": D("0.80")},
        ],
    }


def _scalable_matrix_with_unit_pricing(rng: random.Random) -> Obj:
    return {
        "first_dimension": "region",
        "second_dimension": "tier",
        "grouping_key": None,
        "prorate": False,
        "unit_price": D("0.50"),
        "matrix_scaling_factors": [
            {
                "first_dimension_value": "us",
                "second_dimension_value": "standard",
                "scaling_factor": D("1"),
            },
            {
                "first_dimension_value": "eu",
                "second_dimension_value": None,
                "scaling_factor": D("1.333333333333333333"),
            },
        ],
    }


def _scalable_matrix_with_tiered_pricing(rng: random.Random) -> Obj:
    return {
        "first_dimension": "region",
        "second_dimension": None,
        "matrix_scaling_factors": [
            {
                "first_dimension_value": "us",
                "second_dimension_value": None,
                "scaling_factor": D("1"),
            },
            {
                "first_dimension_value": "eu",
                "second_dimension_value": None,
                "scaling_factor": D("1.2"),
            },
        ],
        "tiers": [
            {"tier_lower_bound": D("0"), "unit_amount": D("0.40")},
            {"tier_lower_bound": D("1000"), "unit_amount": D("0.25")},
        ],
    }


def _cumulative_grouped_bulk(rng: random.Random) -> Obj:
    return {
        "group": "storage_class",
        "dimension_values": [
            {"grouping_key": "hot", "tier_lower_bound": D("0"), "unit_amount": D("0.023")},
            {"grouping_key": "cold", "tier_lower_bound": D("0"), "unit_amount": D("0.004")},
        ],
    }


def _cumulative_grouped_allocation(rng: random.Random) -> Obj:
    return {
        "cumulative_allocation": D("10000"),
        "group_allocation": D("1000"),
        "grouping_key": "user_id",
        "unit_amount": D("0.000000012345678901"),
    }


def _daily_credit_allowance(rng: random.Random) -> Obj:
    return {
        "daily_allowance": D("100"),
        "default_unit_amount": D("0.01"),
        "dimensions": ["model", None],
        "event_day_property": "day",
        "matrix_values": [
            {"dimension_values": ["small", None], "unit_amount": D("0.005")},
            {"dimension_values": ["large", None], "unit_amount": D("0.02")},
        ],
    }


def _metered_allowance(rng: random.Random) -> Obj:
    return {
        "grouping_key": "kind",
        "allowance_grouping_value": "included",
        "consumption_grouping_value": "consumed",
        "allowance_display_name": "Included tokens",
        "consumption_display_name": "Tokens used",
        "unit_amount": PER_TOKEN,
    }


def _minimum_composite(rng: random.Random) -> Obj:
    return {"minimum_amount": D("250.00"), "prorated": True}


def _percent(rng: random.Random) -> Obj:
    return {
        "percent": Number("0.15"),
        "minimum_amount": D("10.00"),
        "maximum_amount": None,
        "prorated": False,
    }


def _event_output(rng: random.Random) -> Obj:
    return {"unit_rating_key": "cost_usd", "default_unit_rate": D("1.00"), "grouping_key": None}


CONFIGS: dict[str, Config] = {
    "unit": _unit,
    "tiered": _tiered,
    "bulk": _bulk,
    "bulk_with_filters": _bulk_with_filters,
    "package": _package,
    "matrix": _matrix,
    "threshold_total_amount": _threshold_total_amount,
    "tiered_package": _tiered_package,
    "tiered_with_minimum": _tiered_with_minimum,
    "grouped_tiered": _grouped_tiered,
    "grouped_tiered_matrix": _grouped_tiered_matrix,
    "tiered_package_with_minimum": _tiered_package_with_minimum,
    "package_with_allocation": _package_with_allocation,
    "unit_with_percent": _unit_with_percent,
    "matrix_with_allocation": _matrix_with_allocation,
    "tiered_matrix_with_allocation": _tiered_matrix_with_allocation,
    "matrix_with_threshold_discounts": _matrix_with_threshold_discounts,
    "tiered_with_proration": _tiered_with_proration,
    "unit_with_proration": _unit_with_proration,
    "grouped_allocation": _grouped_allocation,
    "bulk_with_proration": _bulk_with_proration,
    "grouped_with_prorated_minimum": _grouped_with_prorated_minimum,
    "grouped_with_metered_minimum": _grouped_with_metered_minimum,
    "grouped_with_min_max_thresholds": _grouped_with_min_max_thresholds,
    "matrix_with_display_name": _matrix_with_display_name,
    "grouped_tiered_package": _grouped_tiered_package,
    "max_group_tiered_package": _max_group_tiered_package,
    "scalable_matrix_with_unit_pricing": _scalable_matrix_with_unit_pricing,
    "scalable_matrix_with_tiered_pricing": _scalable_matrix_with_tiered_pricing,
    "cumulative_grouped_bulk": _cumulative_grouped_bulk,
    "cumulative_grouped_allocation": _cumulative_grouped_allocation,
    "daily_credit_allowance": _daily_credit_allowance,
    "metered_allowance": _metered_allowance,
    "minimum_composite": _minimum_composite,
    "percent": _percent,
    "event_output": _event_output,
}
PRICE_MODELS = tuple(CONFIGS)
"""Orb's `model_type` values, in the order of the Price union in Orb's API reference."""
COMPOSITE_MODELS = frozenset({"minimum_composite", "percent"})
"""Prices computed from other prices' amounts: `price_type` `composite_price`, no metric."""
RATE_KEYS = (
    "unit_amount",
    "per_unit",
    "unit_rate",
    "per_unit_rate",
    "overage_unit_rate",
    "unit_price",
    "default_unit_rate",
    "minimum_unit_amount",
    "package_amount",
    "total_amount",
    "minimum_amount",
)


def config(model: str, rng: random.Random, fixed: bool = False) -> Obj:
    """The `<model>_config` block of a new price; a fixed fee's unit rate is a monthly fee."""
    block = CONFIGS[model](rng)
    if model == "unit" and fixed:
        block["unit_amount"] = D(rng.choice(("49.00", "99.00", "499.00")))
    return {f"{model}_config": block}


def nominal_rate(price: Mapping[str, Any]) -> Decimal:
    """The first rate of a price's config: how the sandbox bills models it does not compute
    exactly (every model beyond unit, package, bulk, tiered and matrix)."""
    return _first_rate(price[f"{price['model_type']}_config"]) or Decimal(0)


def _first_rate(value: object) -> Decimal | None:
    if isinstance(value, dict):
        for key in RATE_KEYS:
            if isinstance(value.get(key), Decimal) and not isinstance(value[key], Number):
                return value[key]  # type: ignore[no-any-return]
        for item in value.values():
            found = _first_rate(item)
            if found is not None:
                return found
    elif isinstance(value, list):
        for item in value:
            found = _first_rate(item)
            if found is not None:
                return found
    return None
