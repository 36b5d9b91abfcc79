"""One simulated day of account activity, so incremental syncs have real changes to catch."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from orb_source.sandbox import billing
from orb_source.sandbox.account import Account, Obj
from orb_source.sandbox.billing import money
from orb_source.sandbox.generator import (
    ADJECTIVES,
    DAY,
    NOUNS,
    OTHER_ACTIONS,
    USAGE_ITEMS,
    Builder,
    Ledger,
    add_months,
    current_period,
    enrich,
    extras_rng,
    migration,
    month_start,
    open_subscriptions,
    purchase_of,
    rng_id,
    schedule_plan_change,
    set_period,
    subscription_change,
    void_credit_note,
)
from orb_source.sandbox.prices import PRICE_MODELS

FINAL_STATUSES = frozenset({"issued", "paid", "synced", "void"})


def add_customer(account: Account, rng: random.Random) -> Obj:
    """Create a customer now, with an upcoming subscription, credits, top-ups and alerts."""
    with account.lock:
        builder = Builder(account, rng)
        midnight = account.now.replace(hour=0, minute=0, second=0)
        return builder.customer_bundle(account.now, starts=midnight + rng.randint(1, 10) * DAY)


def _delete_customer(b: Builder) -> list[str]:
    """Delete one customer that was never invoiced (drafts go with it)."""
    invoiced = {
        inv["customer"]["id"]
        for inv in b.account.invoices.values()
        if inv["status"] in FINAL_STATUSES
    }
    candidates = [c for c in b.account.customers.values() if c["id"] not in invoiced]
    if not candidates:
        return []
    customer = b.rng.choice(candidates)
    b.account.delete_customer(customer["id"])
    return [f"customer {customer['id']} deleted"]


def _new_customers(b: Builder) -> list[str]:
    return [
        f"customer {add_customer(b.account, b.rng)['id']} created"
        for _ in range(b.rng.randint(1, 3))
    ]


def _drafts(b: Builder) -> list[Obj]:
    return [inv for inv in b.account.invoices.values() if inv["status"] == "draft"]


def _recompute_drafts(b: Builder) -> list[str]:
    """Usage arrives on drafts; one draft loses a line item and another gains one.

    The usage log records each arrival: its events land on the customer's last four days,
    late-arriving ones restating days already served (see `usage`)."""
    drafts = _drafts(b)
    if not drafts:
        return []
    changes = []
    for invoice in [d for d in drafts if b.rng.random() < 0.5] or drafts[:1]:
        for line in invoice["line_items"]:
            if line["price"]["price_type"] == "usage_price":
                added = b.usage(line["price"], 0.05)
                billing.reprice(line, line["quantity"] + added)
                if added:
                    b.account.usage_log.add(line["id"], b.now, added)
        billing.settle(invoice)
        changes.append(f"draft {invoice['id']} recomputed")
    shrinking = [d for d in drafts if len(d["line_items"]) > 1]
    if shrinking:
        invoice = b.rng.choice(shrinking)
        line_id = invoice["line_items"][-1]["id"]
        b.account.remove_line(invoice, line_id)
        billing.settle(invoice)
        changes.append(f"draft {invoice['id']} lost line item {line_id}")
    invoice = b.rng.choice(drafts)
    customer = b.account.customers[invoice["customer"]["id"]]
    price = b.rng.choice(list(b.account.prices.values()))
    period = (invoice["line_items"][0]["start_date"], invoice["line_items"][0]["end_date"])
    line = b.line(customer, price, b.usage(price, 0.2), period) if invoice["line_items"] else None
    if line is not None:
        invoice["line_items"].append(line)
        billing.settle(invoice)
        changes.append(f"draft {invoice['id']} gained line item {line['id']}")
    return changes


def _issue(b: Builder) -> list[str]:
    """Issue drafts whose date has come, and at least two more issued manually ahead of time."""
    drafts = sorted(_drafts(b), key=lambda inv: (inv["invoice_date"], inv["id"]))
    due = [inv for inv in drafts if inv["invoice_date"] <= b.now]
    chosen = due if len(due) >= 2 else drafts[:2]
    for invoice in chosen:
        billing.issue(invoice, b.now)
    return [f"invoice {inv['id']} issued" for inv in chosen]


def _new_periods(b: Builder) -> list[str]:
    """Open the next period's draft for every active subscription that has none."""
    drafted = {inv["subscription"]["id"] for inv in _drafts(b) if inv["subscription"] is not None}
    changes = []
    for sub in b.account.subscriptions.values():
        if sub["status"] != "active" or sub["id"] in drafted:
            continue
        start = (
            sub["current_billing_period_end_date"] or current_period(sub["start_date"], b.now)[0]
        )
        end = add_months(start, 1)
        set_period(sub, (start, end))
        invoice = b.period_invoice(sub, start, end)
        changes.append(f"draft {invoice['id']} opened for subscription {sub['id']}")
    return changes


def _issued(b: Builder) -> list[Obj]:
    """Issued invoices, but those of a credit purchase: only `_activate_block` pays them."""
    purchases = {
        invoice["id"]
        for entries in b.account.owned["credit_ledger_entries"].values()
        for entry in entries.values()
        for invoice in entry.get("created_invoices") or ()
    }
    return sorted(
        (
            inv
            for inv in b.account.invoices.values()
            if inv["status"] == "issued" and inv["id"] not in purchases
        ),
        key=lambda inv: (inv["invoice_date"], inv["id"]),
    )


def _void_and_pay(b: Builder) -> list[str]:
    issued = _issued(b)
    if not issued:
        return []
    victim = issued.pop(b.rng.randrange(len(issued)))
    billing.void(victim, b.now)
    changes = [f"invoice {victim['id']} voided"]
    for invoice in issued[: b.rng.randint(1, 3)]:
        billing.pay(invoice, b.now, b.new_id())
        changes.append(f"invoice {invoice['id']} paid")
    return changes


def _credit_note(b: Builder) -> list[str]:
    """Credit an old paid invoice and edit that invoice's metadata."""
    old = [
        inv
        for inv in b.account.invoices.values()
        if inv["status"] == "paid" and inv["total"] > 0 and inv["invoice_date"] < b.now - 30 * DAY
    ]
    if not old:
        return []
    invoice = b.rng.choice(old)
    note = b.credit_note(invoice, b.now)
    if note is None:
        return []
    invoice["metadata"]["last_credit_note"] = note["id"]
    return [
        f"credit note {note['id']} issued on invoice {invoice['id']}",
        f"invoice {invoice['id']} metadata edited",
    ]


def _void_credit_note(b: Builder) -> list[str]:
    notes = [n for n in b.account.credit_notes.values() if n["voided_at"] is None]
    if not notes:
        return []
    notes.sort(key=lambda n: (n["created_at"] < b.now, n["created_at"], n["id"]), reverse=True)
    note = notes[0]
    void_credit_note(b.account, note, b.now)
    return [f"credit note {note['id']} voided"]


def _one_off(b: Builder) -> list[str]:
    """A one-off invoice dated days ago but created now, already paid."""
    customer = b.rng.choice(list(b.account.customers.values()))
    invoice = b.one_off(customer, b.now - b.rng.randint(3, 20) * DAY, b.now)
    billing.issue(invoice, b.now, 15)
    billing.pay(invoice, b.now, b.new_id())
    return [f"one-off invoice {invoice['id']} created for {invoice['invoice_date'].date()}"]


def _backdated_subscription(b: Builder) -> list[str]:
    """A subscription created now that started two months ago: the invoices of its past
    periods appear at once, already paid, dated before the last sync. Its past events came
    in through a backfill of its customer's events, reflected now (Orb takes events older
    than its grace period only that way)."""
    customer = b.rng.choice(list(b.account.customers.values()))
    plan = b.rng.choice(b.active_plans(customer["currency"]))
    start = add_months(month_start(b.now), -2)
    sub = b.subscription(customer, plan, start, b.now, None)
    changes = [f"subscription {sub['id']} created, started {start.date()}"]
    period = start
    while period <= b.now:
        end = add_months(period, 1)
        invoice = b.period_invoice(sub, period, end)
        if end <= b.now:
            billing.issue(invoice, b.now, sub["net_terms"])
            billing.pay(invoice, b.now, b.new_id())
            changes.append(f"invoice {invoice['id']} created paid, dated {end.date()}")
        period = end
    backfill = b.account.add(
        "event_backfills",
        {
            "id": f"{sub['id']}_backfill",
            "close_time": b.now,
            "created_at": b.now,
            "customer_id": customer["id"],
            "events_ingested": sum(
                int(line["quantity"])
                for invoice in b.account.invoices.values()
                if invoice["subscription"] == {"id": sub["id"]}
                for line in invoice["line_items"]
                if line["price"]["price_type"] == "usage_price"
            ),
            "replace_existing_events": False,
            "reverted_at": None,
            "status": "reflected",
            "timeframe_end": b.now,
            "timeframe_start": start,
            "deprecation_filter": None,
        },
    )
    changes.append(f"backfill {backfill['id']} reflected for customer {customer['id']}")
    return changes


def intervals(sub: Obj) -> list[Obj]:
    """Every interval of a subscription that spans its whole life: prices, adjustments,
    discounts, minimums and maximums."""
    return [
        interval
        for key in (
            "price_intervals",
            "adjustment_intervals",
            "discount_intervals",
            "minimum_intervals",
            "maximum_intervals",
        )
        for interval in sub[key]
    ]


def _start_subscription(b: Builder) -> list[str]:
    """Start due upcoming subscriptions; if none is due, start the next one early."""
    upcoming = sorted(
        (s for s in b.account.subscriptions.values() if s["status"] == "upcoming"),
        key=lambda s: (s["start_date"], s["id"]),
    )
    due = [s for s in upcoming if s["start_date"] <= b.now] or upcoming[:1]
    for sub in due:
        start = min(sub["start_date"], b.now.replace(hour=0, minute=0, second=0))
        sub.update(status="active", start_date=start)
        for interval in intervals(sub):
            interval["start_date"] = start
        set_period(sub, current_period(start, b.now))
    return [f"subscription {s['id']} started" for s in due]


def _end_subscription(b: Builder) -> list[str]:
    active = [
        s
        for s in b.account.subscriptions.values()
        if s["status"] == "active" and s["start_date"] < b.now
    ]
    if not active:
        return []
    sub = b.rng.choice(active)
    sub.update(status="ended", end_date=b.now)
    for interval in intervals(sub):
        interval["end_date"] = b.now
    set_period(sub, None)
    return [f"subscription {sub['id']} ended"]


def _customers(b: Builder) -> list[str]:
    """Rename one customer and move another's balance with a new balance transaction."""
    customers = list(b.account.customers.values())
    renamed, adjusted = b.rng.choice(customers), b.rng.choice(customers)
    renamed["name"] = (
        f"{b.rng.choice(ADJECTIVES)} {b.rng.choice(NOUNS)} {renamed['name'].split()[-1]}"
    )
    amount = money(b.rng.choice((15, 40, 75, -20)))
    txn = b.balance_transaction(adjusted, "manual_adjustment", amount, b.now, (None, None))
    changes = [
        f"customer {renamed['id']} renamed",
        f"customer {adjusted['id']} balance changed by {amount} ({txn['id']})",
    ]
    issued = [i for i in b.account.invoices.values() if i["issued_at"] is not None]
    if issued:
        invoice = b.rng.choice(issued)
        customer = b.account.customers[invoice["customer"]["id"]]
        action = b.rng.choice(OTHER_ACTIONS)
        b.planned_transaction(customer, action, invoice, b.now)
        changes.append(f"customer {customer['id']} balance transaction {action}")
    return changes


def _ledger(b: Builder) -> list[str]:
    """Commit the oldest pending entry, then post a committed and a pending decrement."""
    changes = []
    pending = sorted(
        (
            entry
            for entries in b.account.owned["credit_ledger_entries"].values()
            for entry in entries.values()
            if entry["entry_status"] == "pending"
        ),
        key=lambda e: (e["created_at"], e["id"]),
    )
    if pending:
        pending[0]["entry_status"] = "committed"
        changes.append(f"ledger entry {pending[0]['id']} committed")
    for kind, is_pending in (("decrement", False), ("decrement", True), ("void_initiated", False)):
        spendable = _spendable_blocks(b)
        if not spendable:
            break
        customer_id, block = b.rng.choice(spendable)
        entry = Ledger(b, b.account.customers[customer_id]).record(kind, block, b.now, is_pending)
        if entry is not None:
            changes.append(
                f"ledger {kind} {entry['id']} ({entry['entry_status']}) for {customer_id}"
            )
    return changes


def _spendable_blocks(b: Builder) -> list[tuple[str, Obj]]:
    return [
        (customer_id, block)
        for customer_id, blocks in b.account.owned["credit_blocks"].items()
        for block in blocks.values()
        if block["status"] == "active"
        and block["balance"] > Decimal("0.05")
        and (block["expiry_date"] is None or block["expiry_date"] > b.now)
    ]


def _top_ups(b: Builder) -> list[str]:
    """Deactivate one top-up and change another's amount and threshold."""
    active = [(cid, t) for cid, tops in b.account.owned["top_ups"].items() for t in tops.values()]
    if not active:
        return []
    customer_id, gone = active.pop(b.rng.randrange(len(active)))
    b.account.remove("top_ups", gone["id"], customer_id)
    changes = [f"top-up {gone['id']} deactivated"]
    if active:
        _, edited = b.rng.choice(active)
        edited["amount"] = edited["amount"] + money(50)
        edited["threshold"] = money(b.rng.choice((5, 20, 40)))
        changes.append(f"top-up {edited['id']} edited")
    return changes


def _price(b: Builder) -> list[str]:
    """A new add-on price, of the next price model in Orb's list each day."""
    model = PRICE_MODELS[b.now.toordinal() % len(PRICE_MODELS)]
    items = [i for i in b.account.items.values() if i["name"] in USAGE_ITEMS]
    item = b.rng.choice(items)
    metric = next(
        m
        for m in b.account.billable_metrics.values()
        if m["item"]["id"] == item["id"] and m["status"] == "active"
    )
    price = b.price(f"{item['name']} ({model}) add-on", model, "USD", b.now, item, metric)
    b.account.add("prices", enrich(price, b.rng.randrange(6), b.new_id()))
    return [f"price {price['id']} created ({model})"]


def _coupon(b: Builder) -> list[str]:
    open_coupons = [
        c
        for c in b.account.coupons.values()
        if c["archived_at"] is None
        and (c["max_redemptions"] is None or c["times_redeemed"] < c["max_redemptions"])
    ]
    if not open_coupons:
        return []
    coupon = b.rng.choice(open_coupons)
    coupon["times_redeemed"] += 1
    return [f"coupon {coupon['redemption_code']} redeemed"]


def _alert(b: Builder) -> list[str]:
    alerts = [a for by_customer in b.account.owned["alerts"].values() for a in by_customer.values()]
    if not alerts:
        return []
    alert = b.rng.choice(alerts)
    alert["enabled"] = not alert["enabled"]
    return [f"alert {alert['id']} {'enabled' if alert['enabled'] else 'disabled'}"]


def _features(b: Builder) -> list[str]:
    """A pending backfill is reflected, and the webhook endpoint is switched off or on."""
    changes = []
    for backfill in b.account.event_backfills.values():
        if backfill["status"] == "pending":
            backfill.update(status="reflected", close_time=b.now)
            changes.append(f"backfill {backfill['id']} reflected")
    for endpoint in b.account.webhook_endpoints.values():
        endpoint["enabled"] = not endpoint["enabled"]
        changes.append(f"webhook endpoint {endpoint['id']} enabled={endpoint['enabled']}")
    return changes


def _activate_block(b: Builder) -> list[str]:
    """The oldest block awaiting payment has its purchase invoice paid and turns active
    (orb-api.md §3.5). No ledger entry is posted for it (no source says Orb posts one), so a
    reader sees the change only by reading the block again. The payment's id comes from an
    rng of its own: the day's other draws stay what they were."""
    awaiting = [
        (block["effective_date"], block["id"], customer_id, block)
        for customer_id, blocks in b.account.owned["credit_blocks"].items()
        for block in blocks.values()
        if block["status"] == "pending_payment"
    ]
    if not awaiting:
        return []
    _, block_id, customer_id, block = min(awaiting, key=lambda a: (a[0], a[1]))
    block["status"] = "active"
    changes = [f"credit block {block_id} active"]
    for purchase in purchase_of(b.account, customer_id, block_id).get("created_invoices", []):
        invoice = b.account.invoices.get(purchase["id"])
        if invoice is not None and invoice["status"] == "issued":
            payment = rng_id(extras_rng(b.account, f"payment:{invoice['id']}"))
            billing.pay(invoice, b.now, payment)
            changes.append(f"invoice {invoice['id']} paid")
    return changes


def delete_block(account: Account, customer_id: str, block_id: str) -> None:
    """`DELETE /credit_blocks/{id}`: the block is gone, and the invoice of its purchase is
    voided if issued, deleted if a draft (the SDK's `credit_blocks.delete`)."""
    purchase = purchase_of(account, customer_id, block_id)
    account.remove("credit_blocks", block_id, customer_id)
    for made in purchase.get("created_invoices") or ():
        invoice = account.invoices.get(made["id"])
        if invoice is not None and invoice["status"] == "issued":
            billing.void(invoice, account.now)
        elif invoice is not None and invoice["status"] == "draft":
            account.remove("invoices", invoice["id"])


def _listed_under(b: Builder) -> list[str]:
    """A pending subscription change applied, another cancelled and a new one pending; a
    license deactivated; a scheduled plan change cancelled and another scheduled; a plan
    migration moved on a step and a new one started. Ids come from an rng of the day's own:
    the builder's draws stay what they were."""
    account, now = b.account, b.now
    rng = extras_rng(account, f"day:{now.isoformat()}")
    changes = []
    pending = sorted(
        (c for c in account.subscription_changes.values() if c["status"] == "pending"),
        key=lambda c: c["id"],
    )
    for change, status in zip(pending, ("applied", "cancelled"), strict=False):
        change.update(status=status, **{f"{status}_at": now})
        changes.append(f"subscription change {change['id']} {status}")
    subs = [s for s in open_subscriptions(account) if s["id"] in account.subscriptions]
    if subs:
        sub = subs[len(account.subscription_changes) % len(subs)]
        change = subscription_change(rng, account, sub, "pending")
        changes.append(f"subscription change {change['id']} pending")
    licenses = sorted(
        (
            lic
            for sid, objs in account.under["licenses"].items()
            if sid in account.subscriptions
            for lic in objs.values()
            if lic["status"] == "active"
        ),
        key=lambda lic: lic["id"],
    )
    if licenses:
        licenses[0].update(status="inactive", end_date=now)
        changes.append(f"license {licenses[0]['id']} deactivated")
    scheduled = sorted(
        (sid, start)
        for sid, plans in account.under["scheduled_plans"].items()
        if sid in account.subscriptions
        for start in plans
    )
    if scheduled:
        sid, start = scheduled[0]
        del account.of_parent("scheduled_plans", sid)[start]
        changes.append(f"scheduled plan change of {sid} cancelled")
    waiting = [s for s in subs if not account.of_parent("scheduled_plans", s["id"])]
    if waiting and schedule_plan_change(account, waiting[len(scheduled) % len(waiting)]):
        changes.append(f"plan change of {waiting[len(scheduled) % len(waiting)]['id']} scheduled")
    migrations = sorted(
        (m for objs in account.under["plan_migrations"].values() for m in objs.values()),
        key=lambda m: m["id"],
    )
    steps = {"not_started": "in_progress", "in_progress": "completed"}
    moving = next((m for m in migrations if m["status"] in steps), None)
    if moving is not None:
        moving["status"] = steps[moving["status"]]
        changes.append(f"plan migration {moving['id']} {moving['status']}")
    plans = sorted(
        (p for p in account.plans.values() if p["status"] == "active"), key=lambda p: p["id"]
    )
    if plans:
        plan = plans[len(migrations) % len(plans)]
        started = migration(rng, account, plan, "not_started", "end_of_term")
        changes.append(f"plan migration {started['id']} of {plan['id']} not started")
    account.touch()
    return changes


STEPS: tuple[Callable[[Builder], list[str]], ...] = (
    _delete_customer,
    _new_customers,
    _recompute_drafts,
    _issue,
    _start_subscription,
    _end_subscription,
    _new_periods,
    _void_and_pay,
    _credit_note,
    _void_credit_note,
    _one_off,
    _backdated_subscription,
    _customers,
    _ledger,
    _top_ups,
    _price,
    _coupon,
    _alert,
    _features,
    _listed_under,
    _activate_block,
)


def simulate_day(account: Account, rng: random.Random) -> list[str]:
    """Advance the clock one day and apply a day of changes; returns one line per change."""
    with account.lock:
        account.now += timedelta(days=1)
        builder = Builder(account, rng)
        changes = [change for step in STEPS for change in step(builder)]
        account.touch()
    return changes
