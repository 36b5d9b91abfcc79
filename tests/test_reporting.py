"""The reporting views and notebooks, checked against the sandbox account itself.

One account is loaded once into DuckDB and once into PostgreSQL (by `run_pipeline`, which
creates the views); every expected number below is computed in Python from the account's
objects, not through our SQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import dlt
import nbformat
import pytest
from nbclient import NotebookClient

from orb_source.reporting import ReportingError, create_views, view_names
from orb_source.runner import make_pipeline, run_pipeline
from orb_source.sandbox import Account, SandboxServer, generate_account
from tests.cli import run_cli
from tests.conftest import SANDBOX_NOW
from tests.postgres import PostgresServer

# The module's tests share a loaded fixture, built once on each worker that runs one of them
# (xdist's `worksteal` keeps a module's tests together). It is session-scoped: a module-scoped
# one is built again whenever another module's test runs between two of them on that worker.

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
SCHEMA = "orb_reporting"
FINAL = {"issued", "paid", "synced"}
CENT = Decimal("0.01")
CADENCE_MONTHS = {"monthly": 1, "quarterly": 3, "semi_annual": 6, "annual": 12}
Key = tuple[Any, ...]


@pytest.fixture(scope="session")
def account() -> Account:
    return generate_account(customers=25, seed=2, now=SANDBOX_NOW)


@pytest.fixture(scope="session")
def targets(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Where each warehouse is, as `ORB_REPORT_DATABASE` names it."""
    folder = tmp_path_factory.mktemp("reporting")
    return {"duckdb": str(folder / "orb_billing.duckdb"), "postgres": postgres.create_database()}


@pytest.fixture(scope="session")
def loaded(account: Account, targets: dict[str, str]) -> dict[str, dlt.Pipeline]:
    """The account synced into DuckDB and into PostgreSQL, views created by the run."""
    destinations = {
        "duckdb": dlt.destinations.duckdb(targets["duckdb"]),
        "postgres": dlt.destinations.postgres(targets["postgres"]),
    }
    pipelines = {}
    folder = Path(targets["duckdb"]).parent
    with pytest.MonkeyPatch.context() as patch, SandboxServer(account) as server:
        patch.setenv("ORB_API_KEY", server.api_key)
        patch.setenv("ORB_BASE_URL", server.base_url)
        for name, destination in destinations.items():
            pipelines[name] = dlt.pipeline(
                "orb_billing",
                pipelines_dir=str(folder / name),
                destination=destination,
                dataset_name="orb",
            )
            run_pipeline(pipeline=pipelines[name])
    return pipelines


def view_rows(pipeline: dlt.Pipeline, view: str, schema: str = SCHEMA) -> list[dict[str, Any]]:
    with (
        pipeline.sql_client() as sql,
        sql.execute_query(f"SELECT * FROM {schema}.{view}") as cursor,
    ):
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def keyed(rows: list[dict[str, Any]], *key: str) -> dict[Key, dict[str, Any]]:
    by_key = {
        tuple(row[k] for k in key): {c: v for c, v in row.items() if c not in key} for row in rows
    }
    assert len(by_key) == len(rows), f"duplicate {key}"
    return by_key


def ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


def month_of(moment: datetime) -> date:
    return date(moment.year, moment.month, 1)


def next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def previous_month(day: date) -> date:
    return date(day.year - (day.month == 1), (day.month - 2) % 12 + 1, 1)


def as_datetime(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def customer_names(account: Account) -> dict[str, str]:
    return {c["id"]: c["name"] for c in account.objects("customers").values()}


# Expected values, from the account ----------------------------------------------------------


def expected_revenue(account: Account) -> dict[Key, dict[str, Any]]:
    zero = {
        "invoiced": Decimal(0),
        "paid": Decimal(0),
        "voided": Decimal(0),
        "credited": Decimal(0),
        "invoices_issued": 0,
        "invoices_paid": 0,
        "invoices_voided": 0,
        "credit_notes": 0,
    }
    months: dict[Key, dict[str, Any]] = defaultdict(lambda: dict(zero))

    def add(moment: str, currency: str, measure: str, amount: str, count: str) -> None:
        row = months[(month_of(ts(moment) or SANDBOX_NOW), currency)]
        row[measure] += Decimal(amount)
        row[count] += 1

    invoices = account.objects("invoices")
    for invoice in invoices.values():
        currency = invoice["currency"]
        if invoice["status"] in FINAL:
            add(invoice["invoice_date"], currency, "invoiced", invoice["total"], "invoices_issued")
        if invoice["status"] == "paid":
            add(invoice["paid_at"], currency, "paid", invoice["amount_due"], "invoices_paid")
        if invoice["status"] == "void":
            add(invoice["voided_at"], currency, "voided", invoice["total"], "invoices_voided")
    for note in account.objects("credit_notes").values():
        if note["voided_at"] is None:
            currency = invoices[note["invoice_id"]]["currency"]
            add(note["created_at"], currency, "credited", note["total"], "credit_notes")
    for row in months.values():
        row["net_invoiced"] = row["invoiced"] - row["credited"]
    return dict(months)


def subscription_mrr(account: Account) -> dict[Key, Decimal]:
    """MRR by (month, subscription, plan, currency): recurring fixed fees of subscription
    invoices that are not void, in each month whose end their service period spans."""
    invoices = account.objects("invoices")
    subscriptions = account.objects("subscriptions")
    plans_of_price: dict[str, str] = {}
    for plan in sorted(account.objects("plans").values(), key=lambda p: p["id"], reverse=True):
        plans_of_price.update({price["id"]: plan["id"] for price in plan["prices"]})
    mrr: dict[Key, Decimal] = defaultdict(Decimal)
    for line in account.objects("invoice_line_items").values():
        invoice, price = invoices[line["invoice_id"]], line["price"]
        months = CADENCE_MONTHS.get(price["cadence"])
        if (
            invoice["invoice_source"] != "subscription"
            or invoice["status"] == "void"
            or price["price_type"] != "fixed_price"
            or months is None
        ):
            continue
        amount = Decimal(line["amount"])
        monthly = amount if months == 1 else (amount / months).quantize(CENT, ROUND_HALF_UP)
        sub_id = invoice["subscription"]["id"]
        plan = plans_of_price.get(price["id"]) or subscriptions[sub_id]["plan"]["id"]
        start, end = ts(line["start_date"]), ts(line["end_date"])
        assert start and end
        boundary = next_month(month_of(start))
        while as_datetime(boundary) <= end:
            mrr[(previous_month(boundary), sub_id, plan, invoice["currency"])] += monthly
            boundary = next_month(boundary)
    return {key: value for key, value in mrr.items() if value > 0}


def expected_mrr(account: Account) -> dict[Key, dict[str, Any]]:
    by_sub = subscription_mrr(account)
    last = max(month for month, *_ in by_sub)
    names = {p["id"]: p["name"] for p in account.objects("plans").values()}
    rows: dict[Key, dict[str, Any]] = {}
    cells = {(m, s, p, c) for (m, s, p, c) in by_sub} | {
        (next_month(m), s, p, c) for (m, s, p, c) in by_sub if next_month(m) <= last
    }
    for month, sub, plan, currency in cells:
        now = by_sub.get((month, sub, plan, currency))
        before = by_sub.get((previous_month(month), sub, plan, currency))
        row = rows.setdefault(
            (month, currency, plan),
            {
                "plan_name": names[plan],
                "mrr": Decimal(0),
                "subscriptions": 0,
                "new_mrr": Decimal(0),
                "expansion_mrr": Decimal(0),
                "contraction_mrr": Decimal(0),
                "churned_mrr": Decimal(0),
            },
        )
        if now is not None:
            row["mrr"] += now
            row["subscriptions"] += 1
        if before is None and now is not None:
            row["new_mrr"] += now
        elif now is None and before is not None:
            row["churned_mrr"] += before
        elif now is not None and before is not None:
            row["expansion_mrr"] += max(now - before, Decimal(0))
            row["contraction_mrr"] += max(before - now, Decimal(0))
    return rows


# The views on DuckDB, against the account ----------------------------------------------------


def test_every_view_is_created_in_the_reporting_schema(loaded: dict[str, dlt.Pipeline]) -> None:
    for pipeline in loaded.values():
        with pipeline.sql_client() as sql:
            found = sql.execute_sql(
                "SELECT table_name FROM information_schema.views WHERE table_schema = %s", SCHEMA
            )
        assert sorted(row[0] for row in found or ()) == sorted(view_names())
        assert len(view_names()) == 9


def test_revenue_by_month_equals_the_accounts_invoices_and_credit_notes(
    loaded: dict[str, dlt.Pipeline], account: Account
) -> None:
    rows = keyed(view_rows(loaded["duckdb"], "revenue_by_month"), "month", "currency")
    expected = expected_revenue(account)
    assert rows == expected
    assert {currency for _, currency in rows} == {"USD", "EUR"}
    assert sum(r["credit_notes"] for r in rows.values()) > 0
    assert sum(r["invoices_voided"] for r in rows.values()) > 0


def test_mrr_and_its_movements_equal_the_accounts_recurring_fees(
    loaded: dict[str, dlt.Pipeline], account: Account
) -> None:
    rows = keyed(view_rows(loaded["duckdb"], "mrr"), "month", "currency", "plan_id")
    assert rows == expected_mrr(account)
    movements = ("new_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr")
    assert all(sum(r[m] for r in rows.values()) > 0 for m in movements)


def test_mrr_movements_add_up_month_to_month(loaded: dict[str, dlt.Pipeline]) -> None:
    rows = keyed(view_rows(loaded["duckdb"], "mrr"), "month", "currency", "plan_id")
    for (month, currency, plan), row in rows.items():
        earlier = [m for m, c, p in rows if (c, p) == (currency, plan) and m < month]
        before = rows[(max(earlier), currency, plan)]["mrr"] if earlier else Decimal(0)
        if earlier and next_month(max(earlier)) != month:
            before = Decimal(0)
        change = row["new_mrr"] + row["expansion_mrr"] - row["contraction_mrr"] - row["churned_mrr"]
        assert change == row["mrr"] - before, (month, currency, plan)


def test_ar_aging_buckets_the_open_invoices_by_days_past_due(
    loaded: dict[str, dlt.Pipeline], account: Account
) -> None:
    rows = keyed(view_rows(loaded["duckdb"], "ar_aging"), "customer_id", "currency")
    as_of = {row["as_of_date"] for row in rows.values()}
    assert len(as_of) == 1
    (today,) = as_of
    assert abs((datetime.now(UTC).date() - today).days) <= 1
    buckets = ("not_yet_due", "days_1_30", "days_31_60", "days_61_90", "days_over_90")
    names = customer_names(account)
    expected: dict[Key, dict[str, Any]] = {}
    for invoice in account.objects("invoices").values():
        if invoice["status"] != "issued":
            continue
        due = ts(invoice["due_date"])
        days = (today - due.date()).days if due else 0
        bucket = buckets[
            0 if days <= 0 else 1 if days <= 30 else 2 if days <= 60 else 3 if days <= 90 else 4
        ]
        row = expected.setdefault(
            (invoice["customer"]["id"], invoice["currency"]),
            {
                "customer_name": names[invoice["customer"]["id"]],
                "open_invoices": 0,
                "amount_due": Decimal(0),
                "oldest_due_date": None,
                "as_of_date": today,
            }
            | {b: Decimal(0) for b in buckets},
        )
        amount = Decimal(invoice["amount_due"])
        row["open_invoices"] += 1
        row["amount_due"] += amount
        row[bucket] += amount
        if due and (row["oldest_due_date"] is None or due.date() < row["oldest_due_date"]):
            row["oldest_due_date"] = due.date()
    assert rows == expected
    for row in rows.values():
        assert sum(row[b] for b in buckets) == row["amount_due"]
    assert sum(r["days_over_90"] for r in rows.values()) > 0


def expected_balances(account: Account, as_of: datetime) -> dict[Key, dict[str, Any]]:
    """Per customer and currency (in the sandbox, a customer's credits are in its currency)."""
    customers = account.objects("customers")
    expected: dict[Key, dict[str, Any]] = {}
    for block in account.objects("credit_blocks").values():
        customer = customers[block["customer_id"]]
        effective, expiry = ts(block["effective_date"]), ts(block["expiry_date"])
        usable = (
            block["status"] == "active"
            and (effective is None or effective <= as_of)
            and (expiry is None or expiry > as_of)
        )
        balance = Decimal(block["balance"])
        row = expected.setdefault(
            (customer["id"], customer["currency"]),
            {
                "customer_name": customer["name"],
                "balance": Decimal(0),
                "expiring_within_30_days": Decimal(0),
                "next_expiry_date": None,
                "active_blocks": 0,
                "pending_payment_balance": Decimal(0),
            },
        )
        if usable:
            row["balance"] += balance
            if expiry is not None and expiry <= as_of + timedelta(days=30):
                row["expiring_within_30_days"] += balance
            if balance > 0:
                row["active_blocks"] += 1
                if expiry is not None:
                    row["next_expiry_date"] = min(expiry, row["next_expiry_date"] or expiry)
        if block["status"] == "pending_payment":
            row["pending_payment_balance"] += balance
    return expected


def test_credit_balances_equal_the_live_blocks(
    loaded: dict[str, dlt.Pipeline], account: Account
) -> None:
    rows = keyed(view_rows(loaded["duckdb"], "customer_credit_balances"), "customer_id", "currency")
    (as_of,) = {row.pop("as_of") for row in rows.values()}
    assert abs(datetime.now(UTC) - as_of) < timedelta(minutes=5)
    assert rows == expected_balances(account, as_of)
    assert sum(r["expiring_within_30_days"] for r in rows.values()) > 0
    assert sum(r["pending_payment_balance"] for r in rows.values()) > 0


def test_credit_burn_is_the_daily_sum_of_ledger_decrements(
    loaded: dict[str, dlt.Pipeline], account: Account
) -> None:
    rows = keyed(view_rows(loaded["duckdb"], "credit_burn"), "day", "customer_id", "currency")
    names = customer_names(account)
    expected: dict[Key, dict[str, Any]] = {}
    for entry in account.objects("credit_ledger_entries").values():
        if entry["entry_type"] != "decrement":
            continue
        customer = entry["customer"]["id"]
        row = expected.setdefault(
            (ts(entry["created_at"]).date(), customer, entry["currency"]),  # type: ignore[union-attr]
            {
                "customer_name": names[customer],
                "credits_consumed": Decimal(0),
                "pending_consumed": Decimal(0),
                "decrements": 0,
            },
        )
        row["credits_consumed"] -= Decimal(entry["amount"])
        row["decrements"] += 1
        if entry["entry_status"] == "pending":
            row["pending_consumed"] -= Decimal(entry["amount"])
    assert rows == expected
    assert sum(r["pending_consumed"] for r in rows.values()) > 0


def test_top_up_activity_lists_active_top_ups_with_their_increments(
    loaded: dict[str, dlt.Pipeline], account: Account
) -> None:
    rows = keyed(view_rows(loaded["duckdb"], "top_up_activity"), "top_up_id")
    top_up_blocks = {
        b["id"]
        for b in account.objects("credit_blocks").values()
        if b["credit_block_source"] == "top_up"
    }
    increments: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for entry in account.objects("credit_ledger_entries").values():
        if entry["entry_type"] == "increment" and entry["credit_block"]["id"] in top_up_blocks:
            increments[(entry["customer"]["id"], entry["currency"])].append(entry)
    names = customer_names(account)
    expected = {}
    for top_up in account.objects("top_ups").values():
        added = increments[(top_up["customer_id"], top_up["currency"])]
        expected[(top_up["id"],)] = {
            "customer_id": top_up["customer_id"],
            "customer_name": names[top_up["customer_id"]],
            "currency": top_up["currency"],
            "amount": Decimal(top_up["amount"]),
            "threshold": Decimal(top_up["threshold"]),
            "per_unit_cost_basis": Decimal(top_up["per_unit_cost_basis"]),
            "expires_after": top_up["expires_after"],
            "expires_after_unit": top_up["expires_after_unit"],
            "increments": len(added),
            "credits_added": sum((Decimal(e["amount"]) for e in added), Decimal(0)),
            "last_increment_at": max((ts(e["created_at"]) for e in added), default=None),  # type: ignore[type-var]
        }
    assert rows == expected
    assert any(r["increments"] for r in rows.values())


@pytest.mark.parametrize("table", ["customers", "invoices", "subscriptions"])
def test_current_views_hold_the_live_rows_without_bookkeeping_columns(
    loaded: dict[str, dlt.Pipeline], account: Account, table: str
) -> None:
    rows = view_rows(loaded["duckdb"], f"{table}_current")
    columns = set(rows[0])
    assert not {c for c in columns if c.startswith("_dlt_")}
    assert "deleted_at" not in columns
    assert {"id", "synced_at", "created_at"} <= columns
    expected = account.objects(table)
    assert {row["id"] for row in rows} == set(expected)
    if table == "invoices":
        assert all(Decimal(expected[r["id"]]["total"]) == r["total"] for r in rows)


# DuckDB and PostgreSQL agree -----------------------------------------------------------------


def comparable(pipeline: dlt.Pipeline, view: str) -> list[tuple[Any, ...]]:
    """The view's rows, sorted, without the query-time `as_of` stamp; JSON parsed."""
    rows = []
    for row in view_rows(pipeline, view):
        row.pop("as_of", None)
        rows.append(
            tuple(
                json.loads(v) if isinstance(v, str) and v[:1] in "{[" else v
                for _, v in sorted(row.items())
            )
        )
    return sorted(rows, key=repr)


@pytest.mark.parametrize("view", view_names())
def test_duckdb_and_postgres_give_the_same_rows(loaded: dict[str, dlt.Pipeline], view: str) -> None:
    duckdb_rows = comparable(loaded["duckdb"], view)
    assert duckdb_rows
    if view.endswith("_current"):
        duckdb_ids = {row["id"] for row in view_rows(loaded["duckdb"], view)}
        assert {row["id"] for row in view_rows(loaded["postgres"], view)} == duckdb_ids
        return
    assert comparable(loaded["postgres"], view) == duckdb_rows


def test_postgres_replaces_views_whose_columns_changed(loaded: dict[str, dlt.Pipeline]) -> None:
    """A new column in a table, and a view whose columns changed in a new release, are both
    taken up by the next run's views."""
    pipeline = loaded["postgres"]
    with pipeline.sql_client() as sql:
        sql.execute_sql(f"DROP VIEW {SCHEMA}.ar_aging")
        sql.execute_sql(f"CREATE VIEW {SCHEMA}.ar_aging AS SELECT 1 AS old_column")
        sql.execute_sql("ALTER TABLE orb.customers ADD COLUMN IF NOT EXISTS loyalty_tier text")
    report = create_views(pipeline)
    assert sorted(report.created) == sorted(view_names())
    assert "loyalty_tier" in view_rows(pipeline, "customers_current")[0]
    assert "old_column" not in view_rows(pipeline, "ar_aging")[0]


# MRR's definition on hand-made rows: cadences, prorations, voids, DECIMAL scale --------------

MRR_ROWS = (
    "CREATE SCHEMA orb",
    "CREATE TABLE orb.plans (id text, name text, _dlt_id text)",
    "CREATE TABLE orb.plans__prices (id text, _dlt_parent_id text)",
    "CREATE TABLE orb.subscriptions (id text, plan_id text, deleted_at timestamptz)",
    "CREATE TABLE orb.invoices (id text, subscription_id text, currency text,"
    " invoice_source text, status text, deleted_at timestamptz)",
    "CREATE TABLE orb.invoice_line_items (id text, invoice_id text, price_id text,"
    " price__cadence text, price__price_type text, amount decimal(38, 18),"
    " start_date timestamptz, end_date timestamptz, deleted_at timestamptz)",
    "INSERT INTO orb.plans VALUES ('plan_a', 'Annual', 'pa'), ('plan_m', 'Monthly', 'pm')",
    "INSERT INTO orb.plans__prices VALUES ('annual', 'pa'), ('quarterly', 'pa'), ('monthly', 'pm')",
    "INSERT INTO orb.subscriptions VALUES ('sub_a', 'plan_a', NULL), ('sub_m', 'plan_m', NULL)",
    "INSERT INTO orb.invoices VALUES ('i1', 'sub_a', 'USD', 'subscription', 'paid', NULL),"
    " ('i2', 'sub_a', 'USD', 'subscription', 'issued', NULL),"
    " ('i3', 'sub_m', 'USD', 'subscription', 'paid', NULL),"
    " ('i4', 'sub_m', 'USD', 'subscription', 'draft', NULL),"
    " ('i5', 'sub_m', 'USD', 'subscription', 'void', NULL),"
    " ('i6', 'sub_m', 'USD', 'subscription', 'issued', '2026-03-02 00:00:00+00')",
    "INSERT INTO orb.invoice_line_items VALUES"
    " ('a', 'i1', 'annual', 'annual', 'fixed_price',"
    "  1200.06, '2026-01-01 00:00:00+00', '2027-01-01 00:00:00+00', NULL),"
    " ('q', 'i2', 'quarterly', 'quarterly', 'fixed_price',"
    "  300.000000000000000001, '2026-01-15 00:00:00+00', '2026-04-15 00:00:00+00', NULL),"
    " ('p', 'i3', 'monthly', 'monthly', 'fixed_price',"
    "  27.420000000000000001, '2026-01-15 00:00:00+00', '2026-02-01 00:00:00+00', NULL),"
    " ('m', 'i4', 'monthly', 'monthly', 'fixed_price',"
    "  49, '2026-02-01 00:00:00+00', '2026-03-01 00:00:00+00', NULL),"
    " ('u', 'i4', 'usage', 'monthly', 'usage_price',"
    "  500, '2026-02-01 00:00:00+00', '2026-03-01 00:00:00+00', NULL),"
    " ('v', 'i5', 'monthly', 'monthly', 'fixed_price',"
    "  49, '2026-03-01 00:00:00+00', '2026-04-01 00:00:00+00', NULL),"
    " ('d', 'i6', 'monthly', 'monthly', 'fixed_price',"
    "  49, '2026-03-01 00:00:00+00', '2026-04-01 00:00:00+00', NULL)",
)


def mrr_row(mrr: str, subs: int, *moves: str) -> dict[str, Any]:
    new, expansion, contraction, churned = (Decimal(m) for m in moves)
    return {
        "mrr": Decimal(mrr),
        "subscriptions": subs,
        "new_mrr": new,
        "expansion_mrr": expansion,
        "contraction_mrr": contraction,
        "churned_mrr": churned,
    }


@pytest.mark.parametrize("warehouse", ["duckdb", "postgres"])
def test_mrr_normalises_cadences_and_counts_prorations_voids_and_churn(
    warehouse: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """An annual fee of 1,200.06 is 100.01 a month (half up) for the twelve months it covers;
    a quarterly fee covers three months, then contracts; a prorated first month is new at its
    prorated amount and expands the next month; a voided period churns, a deleted invoice
    counts nowhere. Amounts carry 18 places and monthly ones keep them all."""
    if warehouse == "postgres":
        destination: Any = dlt.destinations.postgres(request.getfixturevalue("postgres_url"))
    else:
        destination = dlt.destinations.duckdb(str(tmp_path / "mrr.duckdb"))
    pipeline = dlt.pipeline(
        "orb_mrr", pipelines_dir=str(tmp_path), destination=destination, dataset_name="orb"
    )
    with pipeline.sql_client() as sql:
        for statement in MRR_ROWS:
            sql.execute_sql(statement.format(json="jsonb" if warehouse == "postgres" else "json"))
    assert "mrr" in create_views(pipeline).created

    rows = keyed(view_rows(pipeline, "mrr"), "month", "plan_id")
    annual, prorated, zero = "100.01", "27.420000000000000001", "0"
    expected = {
        (date(2026, 1, 1), "plan_a"): mrr_row("200.01", 1, "200.01", zero, zero, zero),
        (date(2026, 2, 1), "plan_a"): mrr_row("200.01", 1, zero, zero, zero, zero),
        (date(2026, 3, 1), "plan_a"): mrr_row("200.01", 1, zero, zero, zero, zero),
        (date(2026, 4, 1), "plan_a"): mrr_row(annual, 1, zero, zero, "100.00", zero),
        **{
            (date(2026, month, 1), "plan_a"): mrr_row(annual, 1, zero, zero, zero, zero)
            for month in range(5, 13)
        },
        (date(2026, 1, 1), "plan_m"): mrr_row(prorated, 1, prorated, zero, zero, zero),
        (date(2026, 2, 1), "plan_m"): mrr_row("49", 1, zero, "21.579999999999999999", zero, zero),
        (date(2026, 3, 1), "plan_m"): mrr_row("0", 0, zero, zero, zero, "49"),
    }
    plan_names = {"plan_a": "Annual", "plan_m": "Monthly"}
    for (_, plan), row in expected.items():
        row.update(currency="USD", plan_name=plan_names[plan])
    assert rows == expected


# Runs that load some tables, and runs without views -------------------------------------------


def test_views_whose_tables_are_absent_are_skipped_and_named(
    sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = run_cli("run", "--resources", "customers,invoices", "--no-views")
    assert first.returncode == 0, first.stderr
    pipeline = make_pipeline(pipelines_dir=str(tmp_path / "dlt" / "pipelines"))
    assert "orb" in schemas(pipeline)
    assert "orb_reporting" not in schemas(pipeline)

    second = run_cli("run", "--resources", "customers,invoices", "--reporting-schema", "analytics")
    assert second.returncode == 0, second.stderr
    made = {"ar_aging", "customers_current", "invoices_current"}
    assert views_in(pipeline, "analytics") == made
    warning = next(line for line in second.stderr.splitlines() if "views skipped" in line)
    for view in set(view_names()) - made:
        assert view in warning, warning
    assert "mrr (needs plans, plans__prices, subscriptions)" in warning

    monkeypatch.setenv("SOURCES__ORB__REPORTING_SCHEMA", "from_config")
    with pipeline.sql_client() as sql:
        sql.execute_sql("ALTER TABLE orb.invoices ADD COLUMN dunning_stage text")
    report = create_views(pipeline)
    assert report.schema == "from_config"
    assert views_in(pipeline, "from_config") == made
    assert "dunning_stage" in view_rows(pipeline, "invoices_current", "from_config")[0]

    with pipeline.sql_client() as sql:
        sql.execute_sql("CREATE SCHEMA blocked")
        sql.execute_sql("CREATE TABLE blocked.ar_aging (taken text)")
    with pytest.raises(ReportingError, match="data is loaded, but reporting view ar_aging"):
        create_views(pipeline, "blocked")


def schemas(pipeline: dlt.Pipeline) -> set[str]:
    with pipeline.sql_client() as sql:
        return {
            row[0]
            for row in sql.execute_sql("SELECT schema_name FROM information_schema.schemata") or ()
        }


def views_in(pipeline: dlt.Pipeline, schema: str) -> set[str]:
    with pipeline.sql_client() as sql:
        rows = sql.execute_sql(
            "SELECT table_name FROM information_schema.views WHERE table_schema = %s", schema
        )
    return {row[0] for row in rows or ()}


def test_pandas_is_imported_before_any_extract_thread_starts() -> None:
    """pyarrow imports pandas (installed with the report extra) on its first conversion; from
    an extract thread that import raced dlt's DataFrame checks in the others and failed runs
    with "partially initialized module 'pandas'". Loading the source imports it at once."""
    probe = "import sys, orb_source.cli; print(sys.modules['pandas'].DataFrame.__name__)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "DataFrame", result.stderr


# Notebooks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["revenue", "credits"])
def test_notebooks_are_stored_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)


def execute(name: str) -> Iterator[dict[str, Any]]:
    """Run the notebook headless as `make report` does; any cell error fails the test."""
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=300, resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    for cell in notebook.cells:
        yield from cell.get("outputs", [])


@pytest.mark.parametrize(
    ("name", "warehouse", "charts"),
    [("revenue", "duckdb", 4), ("credits", "duckdb", 3), ("revenue", "postgres", 4)],
)
def test_notebooks_run_top_to_bottom_and_draw_their_charts(
    loaded: dict[str, dlt.Pipeline],
    targets: dict[str, str],
    account: Account,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    warehouse: str,
    charts: int,
) -> None:
    monkeypatch.setenv("ORB_REPORT_DATABASE", targets[warehouse])
    outputs = list(execute(name))

    assert sum("image/png" in output.get("data", {}) for output in outputs) == charts
    where = "PostgreSQL" if warehouse == "postgres" else targets[warehouse]
    assert any(f"Reading {where}," in output.get("text", "") for output in outputs)
    html = "".join(output.get("data", {}).get("text/html", "") for output in outputs)
    if name == "revenue":
        first_month = expected_revenue(account)[min(expected_revenue(account))]
        shown = first_month["invoiced"]
    else:
        shown = max(r["balance"] for r in expected_balances(account, datetime.now(UTC)).values())
    assert f"{shown.quantize(CENT, ROUND_HALF_UP):,}" in html
