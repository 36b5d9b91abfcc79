"""Deterministic generation of a realistic Orb account with a year of billing history."""

from __future__ import annotations

import copy
import random
import string
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from orb_source.sandbox import billing
from orb_source.sandbox.account import Account, Number, Obj, double
from orb_source.sandbox.billing import ADJUSTMENT_TYPES, ZERO, money
from orb_source.sandbox.prices import COMPOSITE_MODELS, PER_TOKEN, PRICE_MODELS
from orb_source.sandbox.prices import config as price_config

ALPHABET = string.digits + string.ascii_letters
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

FIXED_ITEMS = ("Platform fee", "Premium support", "SSO add-on", "Onboarding")
USAGE_ITEMS = (
    "API calls",
    "Compute hours",
    "Storage GB-month",
    "Data transfer GB",
    "Events ingested",
    "Build minutes",
    "Tokens processed",
    "Active users",
    "Webhook deliveries",
)
# (name, status, currency, number of prices)
PLAN_SPECS = (
    ("Legacy Basic", "archived", "USD", 2),
    ("Legacy Pro", "archived", "USD", 6),
    ("Starter", "active", "USD", 1),
    ("Growth", "active", "USD", 3),
    ("Scale", "active", "USD", 5),
    ("Enterprise", "active", "USD", 8),
    ("Growth EU", "active", "EUR", 4),
    ("Usage Beta", "draft", "USD", 3),
)
USAGE_MODELS = ("unit", "tiered", "package")
SHOWCASE_PLAN = "everything"
"""external_plan_id of the plan with one price of every model Orb offers, its phases and
adjustments; the account's first customer subscribes to it."""
PER_UNIT_RATES = {"Tokens processed": PER_TOKEN, "Storage GB-month": Decimal("0.023")}
"""Add-on unit prices per token and per GB-month, besides one add-on price of every model."""
GB_READINGS = (120.5, 98.27, 103.33, 110.01, 110.5)
"""Daily storage readings whose sum as doubles is 542.6099999999999 GB, as Orb reports it."""
COUPONS = (
    ("WELCOME10", "percentage", "10", False),
    ("SPRING25", "percentage", "25", False),
    ("PARTNER50", "amount", "50.00", False),
    ("STARTUP", "percentage", "20", False),
    ("LAUNCH100", "amount", "100.00", False),
    ("ANNUAL15", "percentage", "15", False),
    ("OLDDEAL", "percentage", "30", True),
    ("FLASH2024", "amount", "25.00", True),
)
ADJECTIVES = (
    "Blue",
    "Quantum",
    "Silver",
    "Rapid",
    "Bright",
    "North",
    "Clever",
    "Solid",
    "Lunar",
    "Prime",
)
NOUNS = (
    "Harbor",
    "Labs",
    "Forge",
    "Pixel",
    "Orbit",
    "Cloud",
    "Metrics",
    "Works",
    "Signal",
    "Canvas",
)
SUFFIXES = ("Inc", "LLC", "GmbH", "Ltd", "Co", "Group")
# Names and notes as customers type them: accents, quotes, emoji, other scripts.
UNUSUAL_NAMES = (
    "Café Zürich GmbH",
    "O'Brien & Søn ApS",
    'The "Quoted" Company',
    "Ünïcødé Labs 🚀",
    "株式会社サンプル",
    "Crème Brûlée Co",
    "Łódź Software Sp. z o.o.",
    "Zoë's Bäckerei",
)
SHOWCASE_NAME = 'Zoë "Ziggy" O\'Neil — Café ☕ 🚀'
NOTES = (
    'Prefers "net 45" — don\'t call before 9am ☕',
    "Renewal owner: Zoë Ødegård",
    "VIP 🌟 (handle with care)",
    "Invoices to the Zürich office, c/o 'Finance'",
)
US_CITIES = (
    ("San Francisco", "CA", "94107"),
    ("New York", "NY", "10001"),
    ("Seattle", "WA", "98101"),
    ("Austin", "TX", "78701"),
    ("Denver", "CO", "80202"),
    ("Portland", "OR", "97201"),
)
EU_CITIES = (("Berlin", "BE", "10115"), ("Munich", "BY", "80331"), ("Hamburg", "HH", "20095"))
US_TAX = {
    "CA": Decimal("7.25"),
    "NY": Decimal("8.875"),
    "WA": Decimal("6.5"),
    "TX": Decimal("6.25"),
}
EU_TAX = Decimal("19")


OTHER_ACTIONS = (
    "prorated_refund",
    "revert_prorated_refund",
    "return_from_voiding",
    "overpayment_refund",
    "external_payment",
    "small_invoice_carryover",
    "prepaid_commit_cancel",
)
"""Balance transaction actions besides manual adjustments, invoice and credit note ones."""
INCREMENTS = frozenset(
    {"prorated_refund", "return_from_voiding", "external_payment", "small_invoice_carryover"}
)
"""Actions that add to the customer's balance; the others draw it down."""


DESCRIPTIONS = {
    "amendment": 'Correction: "usage" double-counted — réglé',
    "void_initiated": "Void of a third of the block, awaiting refund ⏳",
}
"""Ledger descriptions as operators type them, for the entry kinds they write by hand."""


def month_start(moment: datetime) -> datetime:
    """First instant of the moment's month."""
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def fixed_quantity(sub: Obj, price: Obj, start: datetime) -> billing.Quantity | None:
    """The fixed-fee quantity the subscription's schedule sets for the period starting then."""
    return next(
        (
            entry["quantity"]
            for entry in sub["fixed_fee_quantity_schedule"]
            if entry["price_id"] == price["id"]
            and entry["start_date"] <= start
            and (entry["end_date"] is None or start < entry["end_date"])
        ),
        None,
    )


def add_months(moment: datetime, months: int) -> datetime:
    """Shift by whole months, clamping the day so month ends never overflow."""
    years, month = divmod(moment.month - 1 + months, 12)
    return moment.replace(year=moment.year + years, month=month + 1, day=min(moment.day, 28))


def tax_rate(customer: Obj) -> Decimal:
    """The customer's sales tax rate in percent, from its billing address."""
    if customer["exempt_from_automated_tax"]:
        return ZERO
    address = customer["billing_address"]
    if address["country"] == "DE":
        return EU_TAX
    return US_TAX.get(address["state"], ZERO)


def percentage_discount(fraction: Number, price_ids: list[str]) -> Obj:
    """Orb's percentage `Discount` object (plans, plan phases, prices, invoices)."""
    return {
        "discount_type": "percentage",
        "percentage_discount": fraction,
        "applies_to_price_ids": price_ids,
        "filters": [],
        "reason": None,
    }


def enrich(price: Obj, index: int, group_id: str) -> Obj:
    """Fill one of the optional parts of a price, so every part appears across a plan."""
    ids = [price["id"]]
    part = index % 6
    if part == 0:
        price["discount"] = percentage_discount(Number("0.05"), ids)
    elif part == 1:
        price["minimum"] = {
            "applies_to_price_ids": ids,
            "filters": [],
            "minimum_amount": Decimal("10.00"),
        }
        price["minimum_amount"] = Decimal("10.00")
    elif part == 2:
        price["maximum"] = {
            "applies_to_price_ids": ids,
            "filters": [],
            "maximum_amount": Decimal("2500.00"),
        }
        price["maximum_amount"] = Decimal("2500.00")
    elif part == 3:
        price["credit_allocation"] = {
            "allows_rollover": True,
            "currency": "credits",
            "custom_expiration": {"duration": 90, "duration_unit": "day"},
            "filters": [
                {"field": "item_id", "operator": "includes", "values": [price["item"]["id"]]}
            ],
            "license_type_id": None,
        }
        price["conversion_rate"] = Number("1.25")
        price["conversion_rate_config"] = {
            "conversion_rate_type": "unit",
            "unit_config": {"unit_amount": Decimal("1.25")},
        }
    elif part == 4:
        price["dimensional_price_configuration"] = {
            "dimension_values": ["us-east-1", "gpu"],
            "dimensional_price_group_id": group_id,
        }
        price["invoice_grouping_key"] = "region"
    else:
        price["license_type"] = {"id": group_id, "grouping_key": "user_id", "name": "Seat “pro”"}
        price["metadata"] = {"display": "Précis ✓", "quote": 'say "hi"'}
    return price


def invoice_terms(invoice: Obj, sub: Obj, first: bool) -> None:
    """An invoice's `discounts`, `minimum` and `maximum`, from its subscription's intervals;
    a trial discount on the first invoice of a plan with a trial."""
    by_interval = {i["id"]: i["price"]["id"] for i in sub["price_intervals"]}
    discounts = []
    for interval in sub["discount_intervals"]:
        if interval["discount_type"] == "usage":
            continue
        discount = {
            key: value
            for key, value in interval.items()
            if key not in ("applies_to_price_interval_ids", "start_date", "end_date")
        }
        discount["applies_to_price_ids"] = [
            by_interval[i] for i in interval["applies_to_price_interval_ids"]
        ]
        discount["reason"] = None
        discounts.append(discount)
    trial = sub["plan"]["trial_config"]["trial_period"]
    if first and trial:
        discounts.append(
            {
                "discount_type": "trial",
                "trial_amount_discount": None,
                "trial_percentage_discount": Number(1),
                "applies_to_price_ids": [sub["price_intervals"][0]["price"]["id"]],
                "filters": [],
                "reason": f"{trial}-day trial",
            }
        )
    invoice["discounts"] = discounts
    for key in ("minimum", "maximum"):
        for interval in sub[f"{key}_intervals"][:1]:
            amount = interval[f"{key}_amount"]
            invoice[key] = {
                "applies_to_price_ids": [
                    by_interval[i] for i in interval["applies_to_price_interval_ids"]
                ],
                "filters": [],
                f"{key}_amount": amount,
            }
            invoice[f"{key}_amount"] = amount


def customer_ref(customer: Obj) -> Obj:
    """The {id, external_customer_id} reference Orb embeds in invoices, ledgers and alerts."""
    return {"id": customer["id"], "external_customer_id": customer["external_customer_id"]}


class Builder:
    """Creates Orb-shaped objects in an account, drawing every choice from one rng."""

    def __init__(
        self, account: Account, rng: random.Random, line_items_per_invoice: int | None = None
    ) -> None:
        self.account = account
        self.rng = rng
        self.line_items_per_invoice = line_items_per_invoice
        self.made: list[Obj] = []

    @property
    def now(self) -> datetime:
        return self.account.now

    def new_id(self) -> str:
        """A prefix-free 22-character base-62 id like Orb's."""
        return "".join(self.rng.choices(ALPHABET, k=22))

    def between(self, start: datetime, end: datetime) -> datetime:
        """A whole-second moment in [start, end)."""
        seconds = int((end - start).total_seconds())
        return start + timedelta(seconds=self.rng.randrange(max(seconds, 1)))

    # Catalog -------------------------------------------------------------------------------------

    def catalog(self, origin: datetime) -> None:
        """Items, metrics, plans, add-on prices and coupons, created before the history starts."""
        items = [
            self.item(name, origin + index * HOUR)
            for index, name in enumerate(FIXED_ITEMS + USAGE_ITEMS)
        ]
        usage_items = items[len(FIXED_ITEMS) :]
        metrics = [self.metric(item, "active") for item in usage_items]
        legacy = self.item("Legacy widget", origin, archived=origin + 30 * DAY)
        self.metric(legacy, "archived")
        self.metric(usage_items[0], "archived")
        self.metric(usage_items[1], "draft")
        for index, (name, status, currency, size) in enumerate(PLAN_SPECS):
            created = origin + (index + 2) * 5 * DAY
            self.plan(
                name,
                status,
                currency,
                size,
                created,
                items[0],
                list(zip(usage_items, metrics, strict=True)),
            )
        usage = list(zip(usage_items, metrics, strict=True))
        self.showcase_plan(origin + 50 * DAY, items[0], usage)
        for index, model in enumerate(PRICE_MODELS):
            item, metric = usage[index % len(usage)]
            created = self.between(origin, self.now - 10 * DAY)
            price = self.price(f"{item['name']} add-on", model, "USD", created, item, metric)
            self.account.add("prices", enrich(price, index, self.new_id()))
        for item, metric in usage:
            if item["name"] in PER_UNIT_RATES:
                created = self.between(origin, self.now - 10 * DAY)
                price = self.price(
                    f"{item['name']} (metered)", "unit", "USD", created, item, metric
                )
                price["unit_config"]["unit_amount"] = PER_UNIT_RATES[item["name"]]
                self.account.add("prices", price)
        for code, kind, value, archived in COUPONS:
            self.coupon(
                code, kind, Decimal(value), self.between(origin, self.now - 30 * DAY), archived
            )

    def features(self, origin: datetime) -> None:
        """Dimensional price groups, license types, webhook endpoints and event backfills:
        made last, so the rest of the account is the same as without them."""
        metrics = [m for m in self.account.billable_metrics.values() if m["status"] == "active"]
        for index, dimensions in enumerate((["region"], ["region", "tier"])):
            group: Obj = {
                "id": self.new_id(),
                "billable_metric_id": metrics[index % len(metrics)]["id"],
                "dimensions": dimensions,
                "external_dimensional_price_group_id": f"dpg-{index + 1}" if index else None,
                "metadata": {"owner": "pricing"} if index else {},
                "name": " by ".join(dimensions).title(),
                "price_count": 0,
            }
            self.account.born[group["id"]] = origin + (40 + index) * DAY
            self.account.add("dimensional_price_groups", group)
        license_type: Obj = {"id": self.new_id(), "grouping_key": "user_id", "name": "Seat"}
        self.account.born[license_type["id"]] = origin + 45 * DAY
        self.account.add("license_types", license_type)
        self.account.add(
            "webhook_endpoints",
            {
                "id": self.new_id(),
                "created_at": origin + 5 * DAY,
                "enabled": True,
                "enabled_event_types": ["invoice.issued", "invoice.payment_succeeded"],
                "payload_style": "standard",
                "url": "https://hooks.example.com/orb",
            },
        )
        customers = sorted(self.account.customers.values(), key=lambda c: c["created_at"])
        for index, status in enumerate(("reflected", "pending")):
            start = month_start(self.now) - (index + 1) * DAY
            created = self.now - (2 - index) * DAY
            self.account.add(
                "event_backfills",
                {
                    "id": self.new_id(),
                    "close_time": None if status == "pending" else created + HOUR,
                    "created_at": created,
                    "customer_id": customers[0]["id"] if index and customers else None,
                    "events_ingested": 120 * (index + 1),
                    "replace_existing_events": index == 0,
                    "reverted_at": None,
                    "status": status,
                    "timeframe_end": start + DAY,
                    "timeframe_start": start,
                    "deprecation_filter": None,
                },
            )

    def item(self, name: str, created: datetime, archived: datetime | None = None) -> Obj:
        connections = [
            {
                "external_connection_name": "stripe",
                "external_entity_id": f"prod_{self.new_id()[:14]}",
            }
        ]
        item: Obj = {
            "id": self.new_id(),
            "name": name,
            "created_at": created,
            "archived_at": archived,
            "metadata": {},
            "external_connections": connections if self.rng.random() < 0.5 else [],
        }
        return self.account.add("items", item)

    def metric(self, item: Obj, status: str) -> Obj:
        slug = item["name"].lower().replace(" ", "_").replace("-", "_")
        metric: Obj = {
            "id": self.new_id(),
            "name": f"{item['name']} ({status})" if status != "active" else item["name"],
            "description": f"Counts {item['name'].lower()} reported by the product",
            "sql": f"SELECT count(*) FROM events WHERE event_name = '{slug}'",
            "status": status,
            "item": item,
            "metadata": {"unit": slug},
            "parameter_definitions": [],
        }
        self.account.born[metric["id"]] = item["created_at"] + HOUR
        return self.account.add("billable_metrics", metric)

    def plan(
        self,
        name: str,
        status: str,
        currency: str,
        size: int,
        created: datetime,
        fee: Obj,
        usage: list[tuple[Obj, Obj]],
    ) -> Obj:
        prices = [self.price(f"{name} platform fee", "unit", currency, created, fee, None)]
        for index, (item, metric) in enumerate(usage[: size - 1]):
            prices.append(
                self.price(item["name"], USAGE_MODELS[index % 3], currency, created, item, metric)
            )
        plan = self.new_plan(name, status, currency, created, prices)
        return self.account.add("plans", plan)

    def showcase_plan(self, created: datetime, fee: Obj, usage: list[tuple[Obj, Obj]]) -> Obj:
        """A plan with a price of every model, two phases, adjustments, a minimum and maximum."""
        prices = [self.price("Everything platform fee", "unit", "USD", created, fee, None)]
        for index, model in enumerate(PRICE_MODELS):
            item, metric = usage[index % len(usage)]
            price = self.price(f"{item['name']} ({model})", model, "USD", created, item, metric)
            prices.append(enrich(price, index, self.new_id()))
        prices[-1]["plan_phase_order"] = 2
        plan = self.new_plan("Everything “all-in” ✨", "active", "USD", created, prices)
        fee_ids = [prices[0]["id"]]
        plan.update(
            external_plan_id=SHOWCASE_PLAN,
            description='Every price model Orb offers, with a "pilot" phase — don\'t sell as-is',
            adjustments=[
                {
                    **self.plan_adjustment(kind, [p["id"] for p in prices], prices[0]),
                    "plan_phase_order": 2,
                }
                for kind in ADJUSTMENT_TYPES
            ],
            plan_phases=[
                {
                    "id": self.new_id(),
                    "name": "Pilot",
                    "description": "First month at 20% off",
                    "order": 1,
                    "duration": 1,
                    "duration_unit": "monthly",
                    "discount": percentage_discount(Number("0.2"), fee_ids),
                    "minimum": None,
                    "maximum": None,
                    "minimum_amount": None,
                    "maximum_amount": None,
                },
                {
                    "id": self.new_id(),
                    "name": "Général",
                    "description": None,
                    "order": 2,
                    "duration": None,
                    "duration_unit": None,
                    "discount": None,
                    "minimum": {
                        "applies_to_price_ids": fee_ids,
                        "filters": [],
                        "minimum_amount": Decimal("100.00"),
                    },
                    "maximum": {
                        "applies_to_price_ids": fee_ids,
                        "filters": [],
                        "maximum_amount": Decimal("100000.00"),
                    },
                    "minimum_amount": Decimal("100.00"),
                    "maximum_amount": Decimal("100000.00"),
                },
            ],
            trial_config={"trial_period": 14, "trial_period_unit": "days"},
            minimum={
                "applies_to_price_ids": fee_ids,
                "filters": [],
                "minimum_amount": Decimal("100.00"),
            },
            minimum_amount=Decimal("100.00"),
            maximum={
                "applies_to_price_ids": fee_ids,
                "filters": [],
                "maximum_amount": Decimal("100000.00"),
            },
            maximum_amount=Decimal("100000.00"),
            discount=percentage_discount(Number("0.2"), fee_ids),
            metadata={"tier": SHOWCASE_PLAN, "owner": "Zoë “Z” O'Neil"},
        )
        return self.account.add("plans", plan)

    def plan_adjustment(self, kind: str, price_ids: list[str], price: Obj) -> Obj:
        """An adjustment as plans and subscription intervals carry it (no amount yet)."""
        value = {
            "usage_discount": Number(100),
            "amount_discount": Decimal("5.00"),
            "percentage_discount": double(0.1 + 0.2),
            "tiered_percentage_discount": Number("0.1"),
            "minimum": Decimal("1.00"),
            "maximum": Decimal("50000.00"),
        }[kind]
        adjustment = billing.adjustment(kind, self.new_id(), price, value)
        adjustment.pop("amount")
        adjustment["applies_to_price_ids"] = price_ids
        return adjustment

    def new_plan(
        self, name: str, status: str, currency: str, created: datetime, prices: list[Obj]
    ) -> Obj:
        slug = name.lower().replace(" ", "-")
        return {
            "id": self.new_id(),
            "external_plan_id": slug,
            "name": name,
            "description": f"The {name} plan",
            "created_at": created,
            "status": status,
            "version": 1,
            "currency": currency,
            "invoicing_currency": currency,
            "net_terms": 30,
            "default_invoice_memo": None,
            "prices": prices,
            "adjustments": [],
            "plan_phases": None,
            "product": {"id": self.new_id(), "created_at": created, "name": name},
            "trial_config": {"trial_period": None, "trial_period_unit": "days"},
            "base_plan": None,
            "base_plan_id": None,
            "minimum": None,
            "maximum": None,
            "discount": None,
            "minimum_amount": None,
            "maximum_amount": None,
            "metadata": {"tier": slug},
        }

    def price(
        self, name: str, model: str, currency: str, created: datetime, item: Obj, metric: Obj | None
    ) -> Obj:
        """A price in Orb's shape; a price without a metric is a monthly fixed fee, or a
        composite price computed from other prices."""
        composite = model in COMPOSITE_MODELS
        fixed = metric is None and not composite
        price: Obj = {
            "id": self.new_id(),
            "created_at": created,
            "name": name,
            "external_price_id": None,
            "currency": currency,
            "cadence": "monthly",
            "price_type": "composite_price"
            if composite
            else "fixed_price"
            if fixed
            else "usage_price",
            "billing_mode": "in_advance" if fixed else "in_arrear",
            "model_type": model,
            "billable_metric": None if metric is None or composite else {"id": metric["id"]},
            "item": {"id": item["id"], "name": item["name"]},
            "billing_cycle_configuration": {"duration": 1, "duration_unit": "month"},
            "invoicing_cycle_configuration": None,
            "fixed_price_quantity": Number(1) if fixed else None,
            "conversion_rate": None,
            "conversion_rate_config": None,
            "credit_allocation": None,
            "discount": None,
            "minimum": None,
            "maximum": None,
            "minimum_amount": None,
            "maximum_amount": None,
            "plan_phase_order": None,
            "replaces_price_id": None,
            "dimensional_price_configuration": None,
            "composite_price_filters": [
                {"field": "price_type", "operator": "includes", "values": ["usage_price"]}
            ]
            if composite
            else None,
            "license_type": None,
            "invoice_grouping_key": None,
            "metadata": {},
        }
        price.update(price_config(model, self.rng, fixed))
        return price

    def coupon(
        self, code: str, kind: str, value: Decimal, created: datetime, archived: bool
    ) -> Obj:
        discount: Obj = {
            "discount_type": kind,
            "applies_to_price_ids": [],
            "filters": [],
            "reason": None,
        }
        if kind == "percentage":
            discount["percentage_discount"] = Number(value / 100)
        else:
            discount["amount_discount"] = value
        maximum = self.rng.choice((None, 100, 500))
        coupon: Obj = {
            "id": self.new_id(),
            "redemption_code": code,
            "discount": discount,
            "duration_in_months": self.rng.choice((None, 3, 12)),
            "max_redemptions": maximum,
            "times_redeemed": self.rng.randint(0, 40),
            "archived_at": self.between(created, self.now - DAY) if archived else None,
        }
        self.account.born[coupon["id"]] = created
        return self.account.add("coupons", coupon)

    # Customers -----------------------------------------------------------------------------------

    def customer(self, created: datetime, showcase: bool = False) -> Obj:
        """A customer with addresses, tax id and string metadata."""
        rng = self.rng
        number = self.account.next_number("customer")
        europe = rng.random() < 0.08 and not showcase
        name = (
            SHOWCASE_NAME
            if showcase
            else rng.choice(UNUSUAL_NAMES)
            if rng.random() < 0.1
            else f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(SUFFIXES)}"
        )
        slug = "".join(c for c in name.lower() if c in string.ascii_lowercase)[:16] or "customer"
        domain = f"{slug}{number}.example.com"
        address = self.address(europe)
        stripe = rng.random() < 0.7
        metadata = {
            "segment": rng.choice(("smb", "mid-market", "enterprise")),
            "crm_id": f"crm-{number}",
        }
        if rng.random() < 0.15 or showcase:
            metadata["note"] = rng.choice(NOTES[:1] if showcase else NOTES)
        customer_id = self.new_id()
        customer: Obj = {
            "id": customer_id,
            "external_customer_id": f"acct_{number:05d}" if rng.random() < 0.6 else None,
            "name": name,
            "email": f"billing@{domain}",
            "additional_emails": [f"finance@{domain}"] if rng.random() < 0.3 else [],
            "currency": "EUR" if europe else "USD",
            "timezone": "Europe/Berlin" if europe else rng.choice(("Etc/UTC", "America/New_York")),
            "created_at": created,
            "balance": ZERO,
            "billing_address": address,
            "shipping_address": dict(address) if rng.random() < 0.7 else None,
            "tax_id": self.tax_id(europe) if rng.random() < 0.6 else None,
            "metadata": metadata,
            "hierarchy": {"children": [], "parent": None},
            "payment_provider": "stripe_charge" if stripe else None,
            "payment_provider_id": f"cus_{self.new_id()[:14]}" if stripe else None,
            "auto_collection": stripe,
            "auto_issuance": None,
            "email_delivery": rng.random() < 0.9,
            "exempt_from_automated_tax": rng.random() < 0.1,
            "portal_url": None,
            "accounting_sync_configuration": None,
            "reporting_configuration": None,
            "automatic_tax_enabled": rng.random() < 0.3,
            "default_payment_method": None
            if not stripe
            else {
                "id": self.new_id(),
                "created_at": created,
                "customer_id": customer_id,
                "default": True,
                "external_payment_method_id": f"pm_{self.new_id()[:14]}",
                "payment_method_type": rng.choice(("card", "card", "us_bank_account", "link")),
                "provider_type": "stripe",
            },
            "payment_configuration": None
            if not stripe
            else {
                "payment_providers": [
                    {
                        "provider_type": "stripe",
                        "default_shared_payment_token": None,
                        "excluded_payment_method_types": [],
                    }
                ]
            },
        }
        return self.account.add("customers", customer)

    def address(self, europe: bool) -> Obj:
        city, state, postal = self.rng.choice(EU_CITIES if europe else US_CITIES)
        return {
            "city": city,
            "country": "DE" if europe else "US",
            "line1": f"{self.rng.randint(1, 999)} Market Street",
            "line2": self.rng.choice((None, "Suite 200", "Floor 3")),
            "postal_code": postal,
            "state": state,
        }

    def tax_id(self, europe: bool) -> Obj:
        digits = "".join(self.rng.choices(string.digits, k=9))
        if europe:
            return {"country": "DE", "type": "eu_vat", "value": f"DE{digits}"}
        return {"country": "US", "type": "us_ein", "value": f"{digits[:2]}-{digits[2:]}"}

    # Subscriptions and invoices ------------------------------------------------------------------

    def subscription(
        self,
        customer: Obj,
        plan: Obj,
        start: datetime,
        created: datetime,
        end: datetime | None,
        showcase: bool = False,
    ) -> Obj:
        """A subscription embedding the live customer and plan, one price interval per price;
        `showcase` gives it every kind of adjustment, discount, minimum and maximum interval."""
        status = (
            "upcoming"
            if start > self.now
            else "ended"
            if end is not None and end <= self.now
            else "active"
        )
        coupon = self.redeemable_coupon() if self.rng.random() < 0.1 or showcase else None
        sub: Obj = {
            "id": self.new_id(),
            "name": plan["name"],
            "created_at": created,
            "start_date": start,
            "end_date": end,
            "status": status,
            "customer": customer,
            "plan": self.account.shared(plan),
            "price_intervals": [self.price_interval(price, start, end) for price in plan["prices"]],
            "adjustment_intervals": [],
            "discount_intervals": [],
            "minimum_intervals": [],
            "maximum_intervals": [],
            "fixed_fee_quantity_schedule": [
                {
                    "price_id": plan["prices"][0]["id"],
                    "quantity": Number(1),
                    "start_date": start,
                    "end_date": end,
                }
            ],
            "redeemed_coupon": None
            if coupon is None
            else {"coupon_id": coupon["id"], "start_date": start, "end_date": None},
            "trial_info": {"end_date": None},
            "pending_subscription_change": None,
            "billing_cycle_anchor_configuration": {"day": 1, "month": None, "year": None},
            "billing_cycle_day": 1,
            "net_terms": plan["net_terms"],
            "active_plan_phase_order": None,
            "invoicing_threshold": None,
            "auto_collection": customer["auto_collection"],
            "auto_issuance": customer["auto_collection"],
            "default_invoice_memo": None,
            "metadata": {"source": self.rng.choice(("sales", "self-serve"))},
        }
        if coupon is not None:
            self.coupon_interval(sub, coupon["discount"])
        if showcase:
            self.showcase_intervals(sub)
        else:
            self.seat_changes(sub)
            if self.rng.random() < 0.08:
                kind = self.rng.choice(ADJUSTMENT_TYPES)
                self.adjustment_interval(sub, kind, [i["id"] for i in sub["price_intervals"]])
        set_period(sub, current_period(start, self.now) if status == "active" else None)
        return self.account.add("subscriptions", sub)

    def seat_changes(self, sub: Obj) -> None:
        """About one subscription in four that has run three months changes its fixed-fee
        quantity (seats) at a period start, half of those later cut it back by one.

        Drawn from a generator seeded by the subscription's id, so the account's other objects
        are the same with or without it."""
        seats = random.Random(sub["id"])
        until = min(sub["end_date"] or self.now, self.now)
        months = (until.year - sub["start_date"].year) * 12 + until.month - sub["start_date"].month
        if months < 3 or seats.random() >= 0.25:
            return
        up = seats.randint(1, months - 2)
        changes = [(add_months(sub["start_date"], up), seats.choice((2, 3, 5)))]
        if seats.random() < 0.5:
            down = seats.randint(up + 1, months - 1)
            changes.append((add_months(sub["start_date"], down), changes[0][1] - 1))
        fee = sub["price_intervals"][0]
        schedule = sub["fixed_fee_quantity_schedule"]
        fee["fixed_fee_quantity_transitions"] = [
            {"effective_date": sub["start_date"], "price_id": fee["price"]["id"], "quantity": 1}
        ]
        for effective, quantity in changes:
            schedule[-1]["end_date"] = effective
            schedule.append(
                {
                    "price_id": fee["price"]["id"],
                    "quantity": Number(quantity),
                    "start_date": effective,
                    "end_date": sub["end_date"],
                }
            )
            fee["fixed_fee_quantity_transitions"].append(
                {"effective_date": effective, "price_id": fee["price"]["id"], "quantity": quantity}
            )

    def adjustment_interval(self, sub: Obj, kind: str, interval_ids: list[str]) -> Obj:
        """An adjustment of the subscription's prices; its line items carry it from then on."""
        prices = [i["price"] for i in sub["price_intervals"] if i["id"] in interval_ids]
        adjustment = self.plan_adjustment(kind, [p["id"] for p in prices], prices[0])
        interval: Obj = {
            "id": self.new_id(),
            "adjustment": {**adjustment, "plan_phase_order": None},
            "applies_to_price_interval_ids": interval_ids,
            "start_date": sub["start_date"],
            "end_date": sub["end_date"],
        }
        sub["adjustment_intervals"].append(interval)
        return interval

    def coupon_interval(self, sub: Obj, discount: Obj) -> None:
        """A redeemed coupon discounts the fixed fee: a discount interval and its adjustment."""
        fee = sub["price_intervals"][:1]
        kind = discount["discount_type"]
        value = discount["percentage_discount" if kind == "percentage" else "amount_discount"]
        sub["discount_intervals"].append(
            self.discount_interval(sub, kind, value, [i["id"] for i in fee])
        )
        interval = self.adjustment_interval(sub, f"{kind}_discount", [i["id"] for i in fee])
        interval["adjustment"][f"{kind}_discount"] = value
        interval["adjustment"]["reason"] = "Coupon"

    def discount_interval(self, sub: Obj, kind: str, value: object, interval_ids: list[str]) -> Obj:
        interval: Obj = {
            "discount_type": kind,
            "applies_to_price_interval_ids": interval_ids,
            "filters": [],
            "start_date": sub["start_date"],
            "end_date": sub["end_date"],
        }
        if kind == "tiered_percentage":
            interval["tiers"] = value
        else:
            interval[f"{kind}_discount"] = value
        return interval

    def showcase_intervals(self, sub: Obj) -> None:
        """Every kind of interval Orb keeps on a subscription, each applying to some prices."""
        intervals = sub["price_intervals"]
        ids = [i["id"] for i in intervals]
        for number, kind in enumerate(ADJUSTMENT_TYPES):
            self.adjustment_interval(sub, kind, ids[number :: len(ADJUSTMENT_TYPES)])
        tiers = [
            {"lower_bound": Number(0), "upper_bound": Number(500), "percentage": Number("0.05")},
            {"lower_bound": Number(500), "upper_bound": None, "percentage": double(1 / 3)},
        ]
        for kind, value in (
            ("amount", Decimal("2.50")),
            ("usage", Number(250)),
            ("tiered_percentage", tiers),
        ):
            sub["discount_intervals"].append(self.discount_interval(sub, kind, value, ids[1:4]))
        for key, amount in (("minimum", "100.00"), ("maximum", "100000.00")):
            sub[f"{key}_intervals"].append(
                {
                    f"{key}_amount": Decimal(amount),
                    "applies_to_price_interval_ids": ids[:1],
                    "filters": [],
                    "start_date": sub["start_date"],
                    "end_date": sub["end_date"],
                }
            )
        for interval in intervals[1:]:
            interval["filter"] = "region IN ('us', 'eu') AND tier != 'free'"
        fee = intervals[0]
        fee["fixed_fee_quantity_transitions"] = [
            {"effective_date": sub["start_date"], "price_id": fee["price"]["id"], "quantity": 1},
            {
                "effective_date": add_months(sub["start_date"], 1),
                "price_id": fee["price"]["id"],
                "quantity": Number("2.5"),
            },
        ]
        sub["fixed_fee_quantity_schedule"].append(
            {
                "price_id": fee["price"]["id"],
                "quantity": Number("2.5"),
                "start_date": add_months(sub["start_date"], 1),
                "end_date": None,
            }
        )
        sub["fixed_fee_quantity_schedule"][0]["end_date"] = add_months(sub["start_date"], 1)
        sub["active_plan_phase_order"] = 2
        sub["trial_info"] = {"end_date": sub["start_date"] + 14 * DAY}
        sub["metadata"]["note"] = "Pilot “phase 1” — signed by Zoë"

    def price_interval(self, price: Obj, start: datetime, end: datetime | None) -> Obj:
        return {
            "id": self.new_id(),
            "billing_cycle_day": 1,
            "can_defer_billing": False,
            "current_billing_period_start_date": None,
            "current_billing_period_end_date": None,
            "start_date": start,
            "end_date": end,
            "filter": None,
            "fixed_fee_quantity_transitions": [],
            "metric_parameter_overrides": None,
            "price": self.account.shared(price),
            "usage_customer_ids": None,
        }

    def redeemable_coupon(self) -> Obj | None:
        active = [c for c in self.account.coupons.values() if c["archived_at"] is None]
        return self.rng.choice(active) if active else None

    def usage(self, price: Obj, fraction: float = 1.0) -> int:
        """Usage for one period; drafts see only the part of the period that has elapsed."""
        if price["price_type"] != "usage_price":
            return 1
        return int(self.rng.lognormvariate(8.0, 1.2) * fraction)

    def invoice(
        self,
        customer: Obj,
        lines: list[Obj],
        *,
        created: datetime,
        invoice_date: datetime,
        subscription: Obj | None,
    ) -> Obj:
        """A draft invoice whose totals agree with its line items."""
        invoice: Obj = {
            "id": self.new_id(),
            "invoice_number": f"INV-{self.account.next_number('invoice'):06d}",
            "created_at": created,
            "invoice_date": invoice_date,
            "due_date": None,
            "status": "draft",
            "issued_at": None,
            "paid_at": None,
            "voided_at": None,
            "payment_received_at": None,
            "payment_started_at": None,
            "payment_failed_at": None,
            "issue_failed_at": None,
            "sync_failed_at": None,
            "eligible_to_issue_at": invoice_date + 12 * HOUR,
            "scheduled_issue_at": invoice_date + 12 * HOUR if customer["auto_collection"] else None,
            "amount_due": ZERO,
            "subtotal": ZERO,
            "total": ZERO,
            "minimum_amount": None,
            "maximum_amount": None,
            "currency": customer["currency"],
            "customer": customer_ref(customer),
            "subscription": None if subscription is None else {"id": subscription["id"]},
            "invoice_source": "one_off" if subscription is None else "subscription",
            "line_items": lines,
            "customer_balance_transactions": [],
            "credit_notes": [],
            "payment_attempts": [],
            "auto_collection": {
                "enabled": customer["auto_collection"],
                "next_attempt_at": None,
                "num_attempts": 0,
                "previously_attempted_at": None,
            },
            "discounts": [],
            "discount": None,
            "minimum": None,
            "maximum": None,
            "billing_address": customer["billing_address"],
            "shipping_address": customer["shipping_address"],
            "customer_tax_id": customer["tax_id"],
            "metadata": {},
            "memo": None,
            "invoice_pdf": None,
            "hosted_invoice_url": None,
            "will_auto_issue": customer["auto_collection"],
            "hidden_line_item_count": 0,
        }
        billing.settle(invoice)
        self.made.append(invoice)
        return self.account.add("invoices", invoice)

    def line(
        self,
        customer: Obj,
        price: Obj,
        quantity: billing.Quantity,
        period: tuple[datetime, datetime],
        adjustments: list[Obj] | None = None,
    ) -> Obj:
        """A line item; without a subscription's adjustments, one in ten gets a partner discount
        (some stacked 10% + 20%: 0.30000000000000004 as a double). A line made before its
        period ends holds the usage so far: the usage log records when it was made."""
        if adjustments is None and self.rng.random() < 0.1:
            fraction = double(0.1 + 0.2) if self.rng.random() < 0.2 else Number("0.1")
            adjustments = [
                billing.adjustment("percentage_discount", self.new_id(), price, fraction)
            ]
        line = billing.new_line(
            self.new_id(),
            self.account.shared(price),
            quantity,
            period,
            tax_rate=tax_rate(customer),
            adjustments=adjustments,
        )
        if period[1] > self.now:
            self.account.usage_log.open(line["id"], self.now)
        return line

    def period_invoice(self, sub: Obj, start: datetime, end: datetime) -> Obj:
        """The draft of one billing period; usage so far if the period is still running.

        Each line carries the subscription's adjustments of its price interval; the invoice
        lists the subscription's discounts, minimum and maximum."""
        customer, intervals = sub["customer"], sub["price_intervals"]
        count = self.line_items_per_invoice or len(intervals)
        elapsed = (self.now - start) / (end - start)
        fraction = min(1.0, max(0.05, elapsed))
        lines = []
        for interval in (intervals[index % len(intervals)] for index in range(count)):
            price = interval["price"]
            adjustments = [
                billing.on_line(a["adjustment"], price)
                for a in sub["adjustment_intervals"]
                if interval["id"] in a["applies_to_price_interval_ids"]
            ]
            quantity = fixed_quantity(sub, price, start) or self.usage(price, fraction)
            line = self.line(customer, price, quantity, (start, end), adjustments)
            line["filter"] = interval["filter"]
            lines.append(line)
        created = min(start, self.now)
        invoice = self.invoice(customer, lines, created=created, invoice_date=end, subscription=sub)
        invoice_terms(invoice, sub, first=start == sub["start_date"])
        return invoice

    def history(self, sub: Obj) -> None:
        """Monthly invoices from the subscription's start to now, aged into realistic statuses."""
        start = sub["start_date"]
        stop = sub["end_date"] or add_months(month_start(self.now), 1)
        while start < stop and start <= self.now:
            end = add_months(start, 1)
            invoice = self.period_invoice(sub, start, end)
            if end <= self.now:
                self.age(invoice, sub["net_terms"])
            start = end

    def age(self, invoice: Obj, net_terms: int) -> None:
        """Move a past period's draft through issue, payment, sync or void according to its age."""
        age = self.now - invoice["invoice_date"]
        if age < DAY:
            return
        issued = self.between(invoice["invoice_date"] + HOUR, invoice["invoice_date"] + 14 * HOUR)
        billing.issue(invoice, issued, net_terms)
        roll = self.rng.random()
        if roll < 0.03:
            billing.void(invoice, self.between(issued, min(issued + 10 * DAY, self.now)))
        elif roll < (0.6 if age.days <= net_terms else 0.06):
            return
        elif roll < 0.3 and age.days > net_terms:
            billing.sync(invoice)
        else:
            billing.pay(
                invoice,
                self.between(issued, min(issued + net_terms * DAY, self.now)),
                self.new_id(),
            )

    def one_off(self, customer: Obj, invoice_date: datetime, created: datetime) -> Obj:
        """A non-subscription invoice for add-on prices in the customer's currency."""
        prices = [p for p in self.account.prices.values() if p["currency"] == customer["currency"]]
        prices = prices or list(self.account.prices.values())
        chosen = self.rng.sample(prices, k=min(len(prices), self.rng.randint(1, 3)))
        period = (invoice_date - 30 * DAY, invoice_date)
        lines = [self.line(customer, price, self.usage(price), period) for price in chosen]
        return self.invoice(
            customer, lines, created=created, invoice_date=invoice_date, subscription=None
        )

    def settled_one_off(self, customer: Obj, invoice_date: datetime, created: datetime) -> Obj:
        """A one-off invoice issued on its date and usually paid since."""
        invoice = self.one_off(customer, invoice_date, created)
        issued = max(invoice_date, created)
        billing.issue(invoice, issued, 15)
        if self.rng.random() < 0.7:
            billing.pay(
                invoice, self.between(issued, min(issued + 15 * DAY, self.now)), self.new_id()
            )
        return invoice

    def credit_note(self, invoice: Obj, created: datetime, rich: bool = False) -> Obj | None:
        """A credit note against the invoice's largest line, also listed on the invoice; a
        `rich` note carries its discounts, taxes and a maximum adjustment as Orb itemises them."""
        line = max(invoice["line_items"], key=lambda li: li["amount"])
        total = money(line["amount"] * Decimal(self.rng.choice(("0.1", "0.25", "0.5", "1"))))
        if total <= 0:
            return None
        price = {"id": line["price"]["id"], "name": line["price"]["name"]}
        discount = money(total / 9) if rich else ZERO
        by_amount = self.rng.random() < 0.5
        note: Obj = {
            "id": self.new_id(),
            "credit_note_number": f"CN-{self.account.next_number('credit_note'):06d}",
            "invoice_id": invoice["id"],
            "memo": self.rng.choice(("Service credit", "Billing correction", "Goodwill credit")),
            "created_at": created,
            "voided_at": None,
            "type": self.rng.choice(("refund", "adjustment")),
            "reason": self.rng.choice(("Duplicate", "Order change", "Product unsatisfactory")),
            "subtotal": total + discount,
            "total": total,
            "minimum_amount_refunded": None,
            "customer": dict(invoice["customer"]),
            "line_items": [
                {
                    "id": self.new_id(),
                    "item_id": line["price"]["item"]["id"],
                    "name": line["name"],
                    "amount": total,
                    "subtotal": total + discount,
                    "quantity": Number(1),
                    "tax_amounts": [
                        {**tax, "amount": money(total * tax["tax_rate_percentage"] / 100)}
                        for tax in line["tax_amounts"]
                    ],
                    "discounts": [
                        {
                            "id": self.new_id(),
                            "amount_applied": discount,
                            "applies_to_price_ids": [price["id"]],
                            "discount_type": "amount" if by_amount else "percentage",
                            "percentage_discount": Number(0) if by_amount else double(1 / 9),
                            "amount_discount": discount if by_amount else None,
                            "reason": "Goodwill “credit”",
                        }
                    ]
                    if rich
                    else [],
                    "start_time_inclusive": line["start_date"],
                    "end_time_exclusive": line["end_date"],
                }
            ],
            "discounts": [
                {
                    "amount_applied": discount,
                    "discount_type": "percentage",
                    "percentage_discount": double(1 / 9),
                    "applies_to_prices": [price],
                    "reason": "Partner discount",
                }
            ]
            if rich
            else [],
            "maximum_amount_adjustment": None
            if not rich
            else {
                "amount_applied": ZERO,
                "discount_type": "percentage",
                "percentage_discount": Number(0),
                "applies_to_prices": [price],
                "reason": None,
            },
            "credit_note_pdf": None,
        }
        note["credit_note_pdf"] = f"https://assets.withorb.com/credit_note/{note['id']}.pdf"
        invoice["credit_notes"].append(
            {
                key: note[key]
                for key in (
                    "id",
                    "credit_note_number",
                    "memo",
                    "reason",
                    "total",
                    "type",
                    "voided_at",
                )
            }
        )
        return self.account.add("credit_notes", note)

    # Credits, top-ups, balance, alerts -----------------------------------------------------------

    def credits(self, customer: Obj, complete: bool = False) -> None:
        """Credit blocks and the ledger explaining their balances; `complete` forces all kinds."""
        plans = [
            self.block_plan(customer, index, complete)
            for index in range(self.rng.randint(1, 3) + complete)
        ]
        events = sorted((event for plan in plans for event in plan), key=lambda e: (e[0], e[1]))
        ledger = Ledger(self, customer)
        recent = self.now - 5 * DAY
        for moment, _, kind, block in events:
            pending = kind == "decrement" and moment > recent and self.rng.random() < 0.5
            ledger.record(kind, block, moment, pending)
        if complete:
            ledger.record(
                "decrement", plans[0][0][3], self.now - timedelta(minutes=1), pending=True
            )

    def block_plan(
        self, customer: Obj, index: int, complete: bool
    ) -> list[tuple[datetime, int, str, Obj]]:
        """One block plus its ledger events (time, order, kind, block) up to now."""
        rng = self.rng
        effective = self.between(customer["created_at"], self.now - DAY)
        expiry: datetime | None = (
            effective + rng.choice((60, 365, 365)) * DAY if rng.random() < 0.8 else None
        )
        if complete:
            effective = min(effective, self.now - (120 - index * 40) * DAY)
            expiry = effective + 60 * DAY if index == 1 else effective + 400 * DAY
        block = self.block(
            effective, expiry, pending_payment=not complete and rng.random() < 0.1, rich=complete
        )
        self.account.add("credit_blocks", block, customer["id"])
        events = [(effective, 0, "increment", block)]
        if complete and index == 0:
            block["maximum_initial_balance"] = Number(100)
            events.append((effective + HOUR, 0, "void_initiated", block))
        changed = expiry is not None and (rng.random() < 0.2 or (complete and index == 0))
        if changed and expiry is not None:
            moment = self.between(effective, min(expiry, self.now))
            events.append((moment, 1, "expiration_change", block))
            expiry += 30 * DAY
        window_end = min(expiry or self.now, self.now)
        if block["status"] == "active":
            for _ in range(rng.randint(1, 5)):
                events.append(
                    (
                        self.between(min(effective + HOUR, window_end), window_end),
                        2,
                        "decrement",
                        block,
                    )
                )
            for kind, chance in (("void", 0.1), ("void_initiated", 0.05), ("amendment", 0.15)):
                if rng.random() < chance or (complete and index == 0):
                    events.append(
                        (
                            self.between(min(effective + HOUR, window_end), window_end),
                            3,
                            kind,
                            block,
                        )
                    )
        if expiry is not None and expiry <= self.now:
            events.append((expiry, 4, "credit_block_expiry", block))
        return events

    def block(
        self, effective: datetime, expiry: datetime | None, pending_payment: bool, rich: bool
    ) -> Obj:
        """A credit block; some spend only on one item (`filters`), allocations and commitments
        name where they came from."""
        rng = self.rng
        source = rng.choice(("allocation", "top_up", "commitment", "manual"))
        usage_items = [i for i in self.account.items.values() if i["name"] in USAGE_ITEMS]
        item = rng.choice(usage_items)
        filters = (
            [{"field": "item_id", "operator": "includes", "values": [item["id"]]}]
            if rich or rng.random() < 0.3
            else []
        )
        return {
            "id": self.new_id(),
            "balance": Number(0),
            "maximum_initial_balance": Number(money(rng.choice((100, 250, 500, 1000, 5000)))),
            "per_unit_cost_basis": rng.choice((Decimal("1.00"), Decimal("0.90"), None)),
            "effective_date": effective,
            "expiry_date": expiry,
            "status": "pending_payment" if pending_payment else "active",
            "credit_block_source": source,
            "filters": filters,
            "credit_allocation": None
            if source != "allocation"
            else {
                "allows_rollover": rng.random() < 0.5,
                "currency": "credits",
                "custom_expiration": None,
                "item_id": item["id"],
                "filters": [],
                "license_type_id": None,
            },
            "credit_commitment": None
            if source != "commitment"
            else {"id": self.new_id(), "subscription_id": None},
            "metadata": {"po": 'PO "42-B"', "note": "Crédit offert 🎁"}
            if rich or rng.random() < 0.1
            else {},
        }

    def top_up(self, customer: Obj, created: datetime) -> Obj:
        top_up: Obj = {
            "id": self.new_id(),
            "amount": money(self.rng.choice((100, 250, 500))),
            "threshold": money(self.rng.choice((10, 25, 50))),
            "per_unit_cost_basis": Decimal("1.00"),
            "currency": customer["currency"],
            "expires_after": self.rng.choice((None, 12)),
            "expires_after_unit": "month",
            "invoice_settings": {
                "auto_collection": True,
                "net_terms": 0,
                "memo": None,
                "require_successful_payment": False,
            },
        }
        self.account.born[top_up["id"]] = created
        return self.account.add("top_ups", top_up, customer["id"])

    def balance_transaction(
        self,
        customer: Obj,
        action: str,
        amount: Decimal,
        created: datetime,
        refs: tuple[str | None, str | None],
    ) -> Obj:
        """An immutable balance change; the customer's balance follows it."""
        start = customer["balance"]
        customer["balance"] = start + amount
        txn: Obj = {
            "id": self.new_id(),
            "created_at": created,
            "type": "increment" if amount >= 0 else "decrement",
            "action": action,
            "amount": amount,
            "starting_balance": start,
            "ending_balance": customer["balance"],
            "description": action.replace("_", " ").capitalize(),
            "invoice": None if refs[0] is None else {"id": refs[0]},
            "credit_note": None if refs[1] is None else {"id": refs[1]},
        }
        return self.account.add("customer_balance_transactions", txn, customer["id"])

    def balance_history(
        self, customer: Obj, invoices: list[Obj], notes: list[Obj], complete: bool = False
    ) -> None:
        """A few chronological balance transactions referencing invoices and credit notes;
        `complete` adds one of every action Orb records."""
        plan: list[tuple[datetime, str, Obj | None]] = []
        for _ in range(self.rng.randint(0, 3)):
            plan.append((self.between(customer["created_at"], self.now), "manual_adjustment", None))
        issued = [i for i in invoices if i["issued_at"] is not None]
        if issued and self.rng.random() < 0.5:
            invoice = self.rng.choice(issued)
            plan.append((invoice["issued_at"] + HOUR, "applied_to_invoice", invoice))
        for note in notes:
            plan.append((note["created_at"] + HOUR, "credit_note_applied", note))
            if note["voided_at"] is not None:
                plan.append((note["voided_at"], "credit_note_voided", note))
        actions = ["applied_to_invoice", *OTHER_ACTIONS] if complete else []
        if not complete and self.rng.random() < 0.1:
            actions.append(self.rng.choice(OTHER_ACTIONS))
        if complete:
            opening = money(500)
            self.balance_transaction(
                customer, "manual_adjustment", opening, customer["created_at"], (None, None)
            )
        for number, action in enumerate(actions if issued else []):
            invoice = self.rng.choice(issued)
            plan.append((invoice["issued_at"] + (2 + number) * HOUR, action, invoice))
        for moment, action, ref in sorted(plan, key=lambda p: p[0]):
            self.planned_transaction(customer, action, ref, min(moment, self.now))

    def planned_transaction(
        self, customer: Obj, action: str, ref: Obj | None, moment: datetime
    ) -> None:
        if action == "manual_adjustment":
            amount = money(self.rng.choice((25, 50, 100, -10)))
            self.balance_transaction(customer, action, amount, moment, (None, None))
        elif action in ("credit_note_applied", "credit_note_voided") and ref is not None:
            amount = ref["total"] if action == "credit_note_applied" else -ref["total"]
            self.balance_transaction(
                customer, action, amount, moment, (ref["invoice_id"], ref["id"])
            )
        elif action in INCREMENTS and ref is not None:
            amount = money(min(ref["total"], Decimal(self.rng.choice((5, 20, 45)))) or 1)
            self.balance_transaction(customer, action, amount, moment, (ref["id"], None))
        elif action != "applied_to_invoice" and ref is not None:
            amount = -money(min(ref["total"], Decimal(self.rng.choice((5, 20, 45)))) or 1)
            self.balance_transaction(customer, action, amount, moment, (ref["id"], None))
        elif ref is not None and customer["balance"] > 0:
            amount = -min(customer["balance"], ref["total"])
            self.balance_transaction(customer, action, amount, moment, (ref["id"], None))

    def alert(self, customer: Obj, subscription: Obj | None, created: datetime) -> Obj:
        kinds = ["credit_balance_depleted", "credit_balance_dropped"]
        if subscription is not None:
            kinds += ["usage_exceeded", "cost_exceeded"]
        kind = self.rng.choice(kinds)
        value = Number(self.rng.choice((10, 100, 1000)))
        credit = kind.startswith("credit")
        alert: Obj = {
            "id": self.new_id(),
            "created_at": created,
            "type": kind,
            "enabled": self.rng.random() < 0.8,
            "currency": customer["currency"],
            "customer": customer_ref(customer),
            "subscription": None if credit or subscription is None else {"id": subscription["id"]},
            "plan": None,
            "metric": None,
            "thresholds": None if kind == "credit_balance_depleted" else [{"value": value}],
            "balance_alert_status": [{"in_alert": False, "threshold_value": value}]
            if credit
            else None,
            "grouping_keys": None,
            "price_filters": None,
            "threshold_overrides": None,
            "license_type": None,
        }
        return self.account.add("alerts", alert, customer["id"])

    # Whole customers -----------------------------------------------------------------------------

    def active_plans(self, currency: str) -> list[Obj]:
        plans = [
            p
            for p in self.account.plans.values()
            if p["status"] == "active"
            and p["currency"] == currency
            and p["external_plan_id"] != SHOWCASE_PLAN
        ]
        return plans or [p for p in self.account.plans.values() if p["status"] == "active"]

    def customer_bundle(
        self, created: datetime, starts: datetime | None = None, complete: bool = False
    ) -> Obj:
        """A customer with subscriptions, invoices, credits, top-ups, balance history and alerts."""
        self.made = []
        customer = self.customer(created, showcase=complete)
        subs = self.subscriptions(customer, starts)
        if complete:
            subs.append(self.showcase_subscription(customer))
            self.storage_true_up(customer)
        if self.rng.random() < 0.1 and starts is None:
            self.settled_one_off(customer, self.between(created, self.now - DAY), created)
        invoices = self.made
        notes = self.credit_notes(invoices, complete)
        self.credits(customer, complete)
        for _ in range(self.rng.randint(0 if starts is None else 1, 2)):
            self.top_up(customer, self.between(created, self.now))
        self.balance_history(customer, invoices, notes, complete)
        for _ in range(self.rng.randint(1, 3)):
            self.alert(
                customer, self.rng.choice(subs) if subs else None, self.between(created, self.now)
            )
        return customer

    def showcase_subscription(self, customer: Obj) -> Obj:
        """The customer's subscription to the plan with every price model, with its history."""
        plan = next(
            p for p in self.account.plans.values() if p["external_plan_id"] == SHOWCASE_PLAN
        )
        start = add_months(month_start(customer["created_at"]), 1)
        sub = self.subscription(customer, plan, start, customer["created_at"], None, True)
        self.history(sub)
        return sub

    def storage_true_up(self, customer: Obj) -> Obj:
        """A paid one-off invoice for metered storage: 542.6099999999999 GB-months, the sum of
        daily readings as doubles, billed per GB-month."""
        price = next(
            p for p in self.account.prices.values() if p["name"] == "Storage GB-month (metered)"
        )
        day = month_start(self.now) - 20 * DAY
        quantity = double(sum(GB_READINGS))
        line = self.line(customer, price, quantity, (day - len(GB_READINGS) * DAY, day), [])
        invoice = self.invoice(customer, [line], created=day, invoice_date=day, subscription=None)
        billing.issue(invoice, day, 15)
        billing.pay(invoice, day + DAY, self.new_id())
        invoice["memo"] = 'Storage true-up for "archive" bucket — café backups ☕'
        return invoice

    def subscriptions(self, customer: Obj, starts: datetime | None) -> list[Obj]:
        """Zero to two subscriptions; `starts` forces one upcoming subscription starting then."""
        plans = self.active_plans(customer["currency"])
        if starts is not None:
            return [
                self.subscription(
                    customer, self.rng.choice(plans), starts, customer["created_at"], None
                )
            ]
        first = add_months(month_start(customer["created_at"]), 1)
        count = self.rng.choices((0, 1, 2), weights=(4, 86, 10))[0]
        subs = []
        for index in range(count):
            start = add_months(first, index * self.rng.randint(1, 4))
            sub = self.subscription(
                customer, self.rng.choice(plans), start, customer["created_at"], self.end(start)
            )
            self.history(sub)
            subs.append(sub)
        return subs

    def end(self, start: datetime) -> datetime | None:
        """An end date for about one subscription in ten that has run at least two months."""
        latest = month_start(self.now)
        if add_months(start, 2) > latest or self.rng.random() >= 0.1:
            return None
        months = (latest.year - start.year) * 12 + latest.month - start.month
        return add_months(start, self.rng.randint(2, months))

    def credit_notes(self, invoices: list[Obj], complete: bool = False) -> list[Obj]:
        """Credit notes on some paid invoices, a fifth of them voided later; `complete` credits
        the first paid invoice with an itemised note."""
        notes = []
        first = next((i for i in invoices if i["status"] == "paid" and i["total"] > 0), None)
        for invoice in invoices:
            forced = complete and invoice is first
            if not forced and (
                invoice["status"] != "paid" or invoice["total"] <= 0 or self.rng.random() >= 0.06
            ):
                continue
            created = self.between(invoice["paid_at"], min(invoice["paid_at"] + 20 * DAY, self.now))
            note = self.credit_note(invoice, created, forced or self.rng.random() < 0.25)
            if note is not None:
                notes.append(note)
                if forced or self.rng.random() < 0.2:
                    void_credit_note(self.account, note, self.between(created, self.now))
        return notes


class Ledger:
    """Appends to one customer's credit ledger, keeping running and block balances consistent.

    Credit amounts and balances are doubles in Orb, and add up as doubles: a running balance
    is the float sum of the amounts before it (so 100 - 100/3 is 66.66666666666666, and a
    third of 100 credits is 33.333333333333336).
    """

    def __init__(self, builder: Builder, customer: Obj) -> None:
        self.builder = builder
        self.customer = customer
        self.entries = builder.account.of_customer("credit_ledger_entries", customer["id"])
        last = max(self.entries.values(), key=lambda e: e["ledger_sequence_number"], default=None)
        self.sequence = 0 if last is None else last["ledger_sequence_number"]
        self.balance = 0.0 if last is None else float(last["ending_balance"])

    def amount(self, kind: str, block: Obj) -> float:
        """How much an entry of this kind moves the block, given its current balance."""
        balance = float(block["balance"])
        rng = self.builder.rng
        if kind == "increment":
            return float(block["maximum_initial_balance"])
        if kind == "decrement":
            return -min(balance, max(round(balance * rng.uniform(0.05, 0.35), 2), 0.01))
        if kind == "void":
            return -round(balance / 2, 2)
        if kind == "void_initiated":
            return -(balance / 3)
        if kind == "amendment":
            return float(rng.choice((5, 10, 25))) if rng.random() < 0.5 or balance < 25 else -10.0
        if kind == "credit_block_expiry":
            return -balance
        return 0.0

    def record(self, kind: str, block: Obj, moment: datetime, pending: bool = False) -> Obj | None:
        """Append one entry unless it would move nothing (a zero decrement, void or expiry)."""
        amount = self.amount(kind, block)
        if amount == 0 and kind != "expiration_change":
            return None
        if kind == "expiration_change" and block["expiry_date"] is not None:
            block["expiry_date"] += 30 * DAY
        self.sequence += 1
        start, self.balance = self.balance, self.balance + amount
        block["balance"] = double(float(block["balance"]) + amount)
        entry = self.entry(kind, block, moment, amount, start, pending)
        return self.builder.account.add("credit_ledger_entries", entry, self.customer["id"])

    def entry(
        self,
        kind: str,
        block: Obj,
        moment: datetime,
        amount: float,
        start: float,
        pending: bool,
    ) -> Obj:
        entry: Obj = {
            "id": self.builder.new_id(),
            "created_at": moment,
            "entry_type": kind,
            "entry_status": "pending" if pending else "committed",
            "ledger_sequence_number": self.sequence,
            "amount": double(amount),
            "starting_balance": double(start),
            "ending_balance": double(self.balance),
            "currency": self.customer["currency"],
            "customer": customer_ref(self.customer),
            "credit_block": {
                "id": block["id"],
                "expiry_date": block["expiry_date"],
                "filters": block["filters"],
                "per_unit_cost_basis": block["per_unit_cost_basis"],
            },
            "description": DESCRIPTIONS.get(kind, kind.replace("_", " ").capitalize()),
            "metadata": {},
        }
        entry.update(self.extra(kind, block, amount))
        return entry

    def extra(self, kind: str, block: Obj, amount: float) -> Obj:
        """The fields only one entry type carries."""
        if kind == "increment":
            return {"created_invoices": []}
        if kind == "decrement":
            return {"invoice_id": None, "price_id": None, "event_id": None}
        if kind == "expiration_change":
            return {"new_block_expiry_date": block["expiry_date"]}
        if kind == "void":
            return {"void_amount": double(-amount), "void_reason": "refund"}
        if kind == "void_initiated":
            return {
                "new_block_expiry_date": block["expiry_date"] or self.builder.now,
                "void_amount": double(-amount),
                "void_reason": "Customer\u2019s “refund” request",
            }
        return {}


def current_period(start: datetime, now: datetime) -> tuple[datetime, datetime]:
    """The monthly billing period, counted from the subscription start, that contains now."""
    period_start = add_months(start, max((now.year - start.year) * 12 + now.month - start.month, 0))
    if period_start > now:
        period_start = add_months(period_start, -1)
    return period_start, add_months(period_start, 1)


def set_period(sub: Obj, period: tuple[datetime, datetime] | None) -> None:
    """Point the subscription and its price intervals at a billing period (None if not active)."""
    start, end = period if period is not None else (None, None)
    sub["current_billing_period_start_date"] = start
    sub["current_billing_period_end_date"] = end
    for interval in sub["price_intervals"]:
        interval["current_billing_period_start_date"] = start
        interval["current_billing_period_end_date"] = end


def void_credit_note(account: Account, note: Obj, at: datetime) -> None:
    """Void a credit note and its summary on the invoice."""
    note["voided_at"] = at
    invoice = account.invoices.get(note["invoice_id"])
    for summary in [] if invoice is None else invoice["credit_notes"]:
        if summary["id"] == note["id"]:
            summary["voided_at"] = at


def generate_account(
    *,
    customers: int = 100,
    seed: int = 42,
    months: int = 13,
    now: datetime | None = None,
    line_items_per_invoice: int | None = None,
) -> Account:
    """A deterministic account with `months` of history ending at `now` (default: now, UTC)."""
    clock = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    account = Account(now=clock)
    builder = Builder(account, random.Random(seed), line_items_per_invoice)
    origin = add_months(month_start(clock), -(months - 1)) - 90 * DAY
    builder.catalog(origin)
    first, history = origin + 60 * DAY, origin + 90 * DAY
    for index in range(customers):
        if index == customers - 1 and customers > 1:
            created = builder.between(clock - 10 * DAY, clock - DAY)
            builder.customer_bundle(created, starts=month_start(clock + 32 * DAY))
        elif index == 0:
            builder.customer_bundle(builder.between(first, first + 30 * DAY), complete=True)
        else:
            early = builder.rng.random() < 0.7
            builder.customer_bundle(
                builder.between(first, history)
                if early
                else builder.between(history, clock - 2 * DAY)
            )
    builder.features(origin)
    listed_under(account)
    purchase_invoices(account)
    return account


def purchase_invoices(account: Account) -> None:
    """The invoice of each block awaiting payment: one-off, issued when the block was created
    and unpaid since, listed in the block's increment entry (`created_invoices`, as it was
    then). Orb makes the block active once it is paid (orb-api.md §3.5). Made last, from an
    rng of their own, so the rest of the account is the same as without them."""
    builder = Builder(account, extras_rng(account, "purchases"))
    for customer_id, blocks in sorted(account.owned["credit_blocks"].items()):
        customer = account.customers.get(customer_id)
        awaiting = [b for b in blocks.values() if b["status"] == "pending_payment"]
        for block in sorted(awaiting, key=lambda b: (b["effective_date"], b["id"])):
            if customer is None:
                continue
            moment = block["effective_date"]
            invoice = builder.one_off(customer, moment, moment)
            billing.issue(invoice, moment, 15)
            increment = purchase_of(account, customer_id, block["id"])
            increment["created_invoices"] = [copy.deepcopy(invoice)]


def purchase_of(account: Account, customer_id: str, block_id: str) -> Obj:
    """The increment entry that created a block."""
    return next(
        entry
        for entry in account.owned["credit_ledger_entries"].get(customer_id, {}).values()
        if entry["entry_type"] == "increment" and entry["credit_block"]["id"] == block_id
    )


def extras_rng(account: Account, salt: str) -> random.Random:
    """An rng of its own for the objects made after the rest of the account (and for the day's
    changes to them), seeded from stable ids: drawing from the builder's would change
    everything generated after."""
    return random.Random(f"{salt}:{':'.join(sorted(account.plans))}")


def rng_id(rng: random.Random) -> str:
    return "".join(rng.choices(ALPHABET, k=22))


def open_subscriptions(account: Account) -> list[Obj]:
    """Active subscriptions, in a stable order."""
    return sorted(
        (s for s in account.subscriptions.values() if s["status"] == "active"),
        key=lambda s: s["id"],
    )


def subscription_change(rng: random.Random, account: Account, sub: Obj, status: str) -> Obj:
    """A subscription change in `status`, made a day or two before now."""
    made = account.now - timedelta(days=1 + len(account.subscription_changes) % 5)
    change: Obj = {
        "id": rng_id(rng),
        "expiration_time": made + 2 * DAY,
        "status": status,
        "subscription_id": sub["id"],
        "applied_at": made + HOUR if status == "applied" else None,
        "cancelled_at": made + HOUR if status == "cancelled" else None,
    }
    account.born[change["id"]] = made
    return account.add("subscription_changes", change)


def migration(
    rng: random.Random, account: Account, plan: Obj, status: str, effective: object
) -> Obj:
    """A migration of a plan's subscriptions to its new version."""
    obj: Obj = {
        "id": rng_id(rng),
        "effective_time": effective,
        "plan_id": plan["id"],
        "status": status,
    }
    account.born[obj["id"]] = account.now - timedelta(days=len(account.under["plan_migrations"]))
    account.of_parent("plan_migrations", plan["id"])[obj["id"]] = obj
    return obj


def license_for(rng: random.Random, account: Account, sub: Obj, type_id: str, index: int) -> Obj:
    obj: Obj = {
        "id": rng_id(rng),
        "end_date": None,
        "external_license_id": f"user-{sub['id'][:6]}-{index}",
        "license_type_id": type_id,
        "start_date": max(sub["start_date"], account.now - 20 * DAY + index * HOUR),
        "status": "active",
        "subscription_id": sub["id"],
    }
    account.born[obj["id"]] = obj["start_date"]
    account.of_parent("licenses", sub["id"])[obj["id"]] = obj
    return obj


def schedule_plan_change(account: Account, sub: Obj) -> Obj | None:
    """A plan change scheduled for the start of next month, to another plan of its currency."""
    plans = sorted(
        (
            p
            for p in account.plans.values()
            if p["status"] == "active"
            and p["currency"] == sub["plan"]["currency"]
            and p["id"] != sub["plan"]["id"]
        ),
        key=lambda p: p["id"],
    )
    start = month_start(month_start(account.now) + 32 * DAY)
    if not plans or (sub["end_date"] is not None and sub["end_date"] <= start):
        return None
    plan = plans[len(sub["id"]) % len(plans)]
    change: Obj = {
        "created_at": account.now,
        "start_date": start,
        "plan": {
            "id": plan["id"],
            "external_plan_id": plan["external_plan_id"],
            "name": plan["name"],
        },
    }
    account.of_parent("scheduled_plans", sub["id"])[start.isoformat()] = change
    return change


def listed_under(account: Account) -> None:
    """Subscription changes in every status, plan migrations, licenses, scheduled plan changes
    and the prices of each dimensional price group: made last, from an rng of their own, so
    the rest of the account is the same as without them."""
    rng = extras_rng(account, "listed-under")
    subs = open_subscriptions(account)
    for index, status in enumerate(
        ("pending", "pending", "applied", "applied", "cancelled", "cancelled")
    ):
        if subs:
            subscription_change(rng, account, subs[index % len(subs)], status)
    plans = sorted(
        (p for p in account.plans.values() if p["status"] != "draft"), key=lambda p: p["created_at"]
    )
    efforts: tuple[tuple[str, object], ...] = (
        ("completed", month_start(account.now) - 60 * DAY),
        ("canceled", "end_of_term"),
        ("in_progress", (month_start(account.now) + 32 * DAY).date()),
        ("not_started", "end_of_invoice"),
        ("action_needed", month_start(account.now)),
    )
    for index, (status, effective) in enumerate(efforts):
        if plans:
            migration(rng, account, plans[index % 3 % len(plans)], status, effective)
    type_ids = sorted(account.license_types)
    for index, sub in enumerate(subs[:4] if type_ids else []):
        for seat in range(2):
            license_for(rng, account, sub, type_ids[0], seat)
        if index == 0:
            inactive = license_for(rng, account, sub, type_ids[0], 2)
            inactive.update(status="inactive", end_date=account.now - 2 * DAY)
    for sub in subs[-3:]:
        schedule_plan_change(account, sub)
    unit = sorted(
        (p for p in account.prices.values() if p["model_type"] == "unit"), key=lambda p: p["id"]
    )
    for group in sorted(account.dimensional_price_groups.values(), key=lambda g: g["id"]):
        for index, base in enumerate(unit[:2]):
            price = copy.deepcopy(base)
            price.update(
                id=rng_id(rng),
                name=f"{base['name']} ({group['name']} {index + 1})",
                external_price_id=None,
                dimensional_price_configuration={
                    "dimension_values": [["us-east-1", "eu-west-1"][index], "standard"][
                        : len(group["dimensions"])
                    ],
                    "dimensional_price_group_id": group["id"],
                },
            )
            account.of_parent("dimensional_price_group_prices", group["id"])[price["id"]] = price
        group["price_count"] = len(account.of_parent("dimensional_price_group_prices", group["id"]))
    account.touch()
