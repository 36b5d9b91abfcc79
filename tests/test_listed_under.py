"""The tables Orb lists per status or per parent object, read in process (`FakeOrb`):
subscription changes once per status, a plan's migrations, a coupon's subscriptions and a
price group's prices per parent every run, and the schedules and licenses of the
subscriptions that can still change them. Requests, rows, state and recorded listings."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest

from orb_source.catalog import ENDPOINTS
from orb_source.sandbox import generate_account
from orb_source.strategies import SyncContext
from orb_source.transform import to_rows
from tests.test_strategies import FIRST, NEXT, NOW, FakeOrb, State, iso, run, run_together

HOUR = timedelta(hours=1)


@pytest.fixture
def orb() -> FakeOrb:
    """Four customers, five subscriptions (four active, one upcoming), nine plans, eight
    coupons (two archived), two price groups, one license type."""
    return FakeOrb(generate_account(customers=4, seed=7, months=3, now=NOW))


def test_subscription_changes_are_listed_once_per_status(orb: FakeOrb) -> None:
    """Orb's `status` filter takes one value: one listing per status, together complete."""
    changes = orb.account.subscription_changes
    assert {c["status"] for c in changes.values()} == {"pending", "applied", "cancelled"}

    first = run(orb, "subscription_changes", {}, FIRST)

    assert first.params("/subscription_changes") == [
        {"limit": "100", "status": status} for status in ("pending", "applied", "cancelled")
    ]
    assert len(first.requests) == 3
    assert sorted(first.ids) == sorted(changes)
    assert first.listings == {"subscription_changes": {"complete": {"at": iso(FIRST)}}}


def test_plan_migrations_per_plan_share_the_plan_listing(orb: FakeOrb) -> None:
    """One request per plan; the plans are listed once for the plans table and the
    migrations; each migration names its plan."""
    plans, migrations = orb.account.plans, orb.account.objects("plan_migrations")
    states: dict[str, State] = {"plans": {}, "plan_migrations": {}}

    runs = run_together(orb, states, FIRST, ["plans", "plan_migrations"])

    assert [r.path for r in runs["plans"].requests] == ["/plans"]
    assert sorted(r.path for r in runs["plan_migrations"].requests) == sorted(
        f"/plans/{plan_id}/migrations" for plan_id in plans
    )
    assert sorted(runs["plan_migrations"].ids) == sorted(migrations)
    for _, row in runs["plan_migrations"].rows:
        assert row["plan_id"] == migrations[row["id"]]["plan_id"]
    assert {row["effective_time"] for _, row in runs["plan_migrations"].rows} >= {
        "end_of_term",
        "end_of_invoice",
    }
    alone = run(orb, "plan_migrations", {}, FIRST)
    assert alone.params("/plans") == [{"limit": "100"}]
    assert alone.listings == {"plan_migrations": {"complete": {"at": iso(FIRST)}}}


def test_a_plan_deleted_during_the_run_leaves_a_complete_listing(
    orb: FakeOrb, caplog: pytest.LogCaptureFixture
) -> None:
    """A parent gone between its listing and its list (404): a warning, no rows, and the
    listing is still complete, so the sweep marks its migrations deleted."""
    migrations = orb.account.objects("plan_migrations")
    plan_id = next(iter(orb.account.under["plan_migrations"]))

    def list_then_delete(ctx: SyncContext) -> None:
        ctx.shared_listing("/plans", {})
        orb.account.remove("plans", plan_id)

    with caplog.at_level(logging.WARNING, logger="orb_source.strategies"):
        result = run(orb, "plan_migrations", {}, FIRST, before=list_then_delete)

    kept = {i for i, m in migrations.items() if m["plan_id"] != plan_id}
    assert set(result.ids) == kept and len(kept) < len(migrations)
    assert result.listings == {"plan_migrations": {"complete": {"at": iso(FIRST)}}}
    assert [r.getMessage() for r in caplog.records] == [
        f"plan {plan_id} disappeared during the run; its plan_migrations are marked deleted"
    ]


def test_coupon_subscriptions_are_link_rows_of_every_coupon(orb: FakeOrb) -> None:
    """Archived coupons too; each row is the two ids, nothing else of the subscription."""
    coupons = orb.account.coupons
    assert any(c["archived_at"] for c in coupons.values())

    result = run(orb, "coupon_subscriptions", {}, FIRST)

    assert result.params("/coupons") == [{"limit": "100", "show_archived": "true"}]
    assert result.paths("/coupons/") == sorted(f"/coupons/{c}/subscriptions" for c in coupons)
    expected = orb.account.objects("coupon_subscriptions")
    assert len(expected) == 2
    assert sorted(result.ids) == sorted(expected)
    for _, row in result.rows:
        coupon_id, subscription_id = row["id"].split("/")
        assert row == {"id": row["id"], "coupon_id": coupon_id, "subscription_id": subscription_id}
        redeemed = orb.account.subscriptions[subscription_id]["redeemed_coupon"]
        assert redeemed["coupon_id"] == coupon_id
    assert result.listings == {"coupon_subscriptions": {"complete": {"at": iso(FIRST)}}}


def test_price_group_prices_every_status_per_group(orb: FakeOrb) -> None:
    groups = orb.account.dimensional_price_groups
    result = run(orb, "dimensional_price_group_prices", {}, FIRST)

    assert result.requests[0].path == "/dimensional_price_groups"
    for group_id in groups:
        path = f"/dimensional_price_groups/{group_id}/prices"
        assert result.params(path) == [{"limit": "100", "status": "all"}]
    expected = orb.account.objects("dimensional_price_group_prices")
    assert sorted(result.ids) == sorted(expected) and len(expected) == 4
    for _, row in result.rows:
        assert (
            row["dimensional_price_group_id"] == expected[row["id"]]["dimensional_price_group_id"]
        )
        configured = row["dimensional_price_configuration"]["dimensional_price_group_id"]
        assert configured == row["dimensional_price_group_id"]


@pytest.mark.parametrize(
    ("table", "route", "feature"),
    [
        ("dimensional_price_group_prices", "/dimensional_price_groups", "dimensional pricing"),
        ("licenses", "/licenses", "licenses"),
    ],
)
@pytest.mark.parametrize("status", [404, 403])
def test_a_per_parent_table_of_a_feature_the_account_lacks_is_skipped(
    orb: FakeOrb,
    caplog: pytest.LogCaptureFixture,
    table: str,
    route: str,
    feature: str,
    status: int,
) -> None:
    """The parents' listing (price groups) or each parent's list (licenses) answers 404 or
    403: no rows, one info line, no listing recorded and no state saved."""
    orb.account.unavailable[route] = status
    state: State = {}
    with caplog.at_level(logging.INFO, logger="orb_source.strategies"):
        result = run(orb, table, state, FIRST)
    assert result.rows == [] and result.listings == {} and state == {}
    lines = [r for r in caplog.records if table in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert lines[0].getMessage().startswith(f"{table} skipped: no {feature} on this account")
    assert str(status) in lines[0].getMessage()


def test_licenses_need_a_subscription(orb: FakeOrb) -> None:
    reply = orb.api.handle("/licenses", {})
    assert reply.status == 400 and b"subscription_id" in reply.body


def test_schedules_of_the_subscriptions_that_can_change(orb: FakeOrb) -> None:
    """A first run reads every subscription's schedule; the next ones the open
    subscriptions, those created since and, fetched by id, those that left the open set.
    A subscription gone from Orb is listed as read, so the sweep marks its entries deleted."""
    subs = orb.account.subscriptions
    state: State = {}
    first = run(orb, "subscription_schedules", state, FIRST)

    assert first.params("/subscriptions") == [{"limit": "100"}]
    assert first.paths("/subscriptions/") == sorted(f"/subscriptions/{s}/schedule" for s in subs)
    expected = orb.account.objects("subscription_schedules")
    assert sorted(first.ids) == sorted(expected)
    for _, row in first.rows:
        sid = row["subscription_id"]
        assert row["id"] == f"{sid}/{row['start_date']}" and row["id"] in expected
        [shaped] = to_rows([row], ENDPOINTS["subscription_schedules"].links, FIRST)
        assert shaped["plan_id"] == expected[row["id"]]["plan"]["id"] and "plan" not in shaped
    assert first.listings == {"subscription_schedules": {"complete": {"at": iso(FIRST)}}}
    assert state["open_ids"] == sorted(subs) and state["last_full_sync"] == iso(FIRST)
    newest = max(s["created_at"] for s in subs.values())
    assert state["cursor"] == iso(newest)

    ended, deleted, *still_open = sorted(subs)
    subs[ended].update(status="ended", end_date=NEXT - HOUR)
    orb.account.remove("subscriptions", deleted)
    second = run(orb, "subscription_schedules", state, NEXT)

    assert second.params("/subscriptions") == [
        {"limit": "100", "status[]": ["active", "upcoming"]},
        {"limit": "100", "created_at[gte]": iso(newest - HOUR)},
    ]
    fetched = sorted(f"/subscriptions/{s}" for s in (ended, deleted))
    read = sorted(f"/subscriptions/{s}/schedule" for s in (ended, *still_open))
    assert second.paths("/subscriptions/") == sorted(fetched + read)
    assert {row["subscription_id"] for _, row in second.rows} == {ended, *still_open}
    entry = next(row for _, row in second.rows if row["subscription_id"] == ended)
    assert entry["end_date"] == iso(NEXT - HOUR)
    assert second.listings == {
        "subscription_schedules": {
            "partial": {
                "at": iso(NEXT),
                "column": "subscription_id",
                "values": sorted([ended, deleted, *still_open]),
            }
        }
    }
    assert state["open_ids"] == sorted(still_open)

    third = run(orb, "subscription_schedules", state, NEXT + HOUR)
    assert third.paths("/subscriptions/") == sorted(
        f"/subscriptions/{s}/schedule" for s in still_open
    )


def test_licenses_follow_the_schedules_selection(orb: FakeOrb) -> None:
    """One `GET /licenses?subscription_id=` per subscription read; a license deactivated on
    an open subscription is read again the next run."""
    subs = orb.account.subscriptions
    state: State = {}
    first = run(orb, "licenses", state, FIRST)

    assert sorted(p["subscription_id"] for p in first.params("/licenses")) == sorted(subs)
    licenses = orb.account.objects("licenses")
    assert sorted(first.ids) == sorted(licenses) and len(licenses) == 9
    assert first.listings == {"licenses": {"complete": {"at": iso(FIRST)}}}

    active = sorted(i for i, lic in licenses.items() if lic["status"] == "active")[0]
    owner = licenses[active]["subscription_id"]
    orb.account.under["licenses"][owner][active].update(status="inactive", end_date=NEXT - HOUR)
    second = run(orb, "licenses", state, NEXT)

    assert sorted(p["subscription_id"] for p in second.params("/licenses")) == sorted(subs)
    assert second.row(active)["status"] == "inactive"
    assert second.listings["licenses"]["partial"]["values"] == sorted(subs)


def test_the_tables_reading_subscriptions_share_each_listing_and_fetch(orb: FakeOrb) -> None:
    """The subscriptions table, schedules, licenses, usage and costs read the same
    subscriptions: each listing is requested once a run, and a subscription that left the
    open set is fetched once. The four that select subscriptions by their creation keep
    their cursor where the shared listing began, so the next run shares it again."""
    selecting = ["subscription_schedules", "licenses", "subscription_usage", "subscription_costs"]
    tables = ["subscriptions", *selecting]
    states: dict[str, State] = {table: {} for table in tables}
    orb.send_date = True
    orb.account.now = FIRST
    first = run_together(orb, states, FIRST, tables)
    requests = [r for table in tables for r in first[table].requests]
    assert [r.params for r in requests if r.path == "/subscriptions"] == [{"limit": "100"}]

    subs = orb.account.subscriptions
    ended = sorted(sid for sid, sub in subs.items() if sub["status"] == "active")[0]
    subs[ended].update(status="ended", end_date=NEXT - HOUR)
    orb.account.now = NEXT
    second = run_together(orb, states, NEXT, tables)

    requests = [r for table in tables for r in second[table].requests]
    listings = [r.params for r in requests if r.path == "/subscriptions"]
    [closed, created] = [params for params in listings if "created_at[gte]" in params]
    assert listings == [closed, {"limit": "100", "status[]": ["upcoming", "active"]}, created]
    assert closed["status[]"] == ["ended"]
    assert near(datetime.fromisoformat(str(created["created_at[gte]"])), FIRST - HOUR)
    assert [r.path for r in requests if r.path == f"/subscriptions/{ended}"] == [
        f"/subscriptions/{ended}"
    ]
    assert second["subscriptions"].row(ended)["status"] == "ended"
    for table in selecting:
        assert ended in {row.get("subscription_id") for _, row in second[table].rows}, table
    [cursor] = {states[table]["cursor"] for table in selecting}
    assert near(datetime.fromisoformat(cursor), NEXT)


def near(moment: datetime, expected: datetime) -> bool:
    """On Orb's clock, which the client reads to the second from the `Date` header."""
    return abs(moment - expected) < timedelta(seconds=1)
