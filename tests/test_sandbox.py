"""The fake Orb API: generated data, HTTP behaviour, faults and daily mutations, over real HTTP."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from orb_source.sandbox import Account, Fault, SandboxServer, generate_account, simulate_day
from orb_source.sandbox.account import Number, double, dumps
from orb_source.sandbox.api import Api
from orb_source.sandbox.mutations import add_customer
from orb_source.sandbox.server import rate_class
from orb_source.sandbox.usage import LineKey, hour_ceil, hour_floor, readings, series
from tests.conftest import default_account

NOW = datetime(2026, 3, 15, 12, 0, 0, tzinfo=UTC)
KEY = "sandbox-key"
ALL_STATUSES = ["draft", "issued", "paid", "synced", "void"]
ERROR_TYPE = "https://docs.withorb.com/reference/error-responses#"


def client_for(server: SandboxServer, key: str = KEY) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key}"})


def walk(client: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a list endpoint, following next_cursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json(parse_float=Decimal)
        items += body["data"]
        meta = body["pagination_metadata"]
        assert (meta["next_cursor"] is not None) == meta["has_more"]
        if not meta["has_more"]:
            return items
        cursor = meta["next_cursor"]


def iso(moment: datetime) -> str:
    return moment.isoformat()


@pytest.fixture(scope="module")
def account() -> Account:
    return generate_account(customers=30, seed=7, now=NOW)


@pytest.fixture(scope="module")
def server(account: Account) -> Iterator[SandboxServer]:
    with SandboxServer(account) as running:
        yield running


@pytest.fixture()
def client(server: SandboxServer) -> Iterator[httpx.Client]:
    server.clear_faults()
    with client_for(server) as http:
        yield http
    server.clear_faults()


@pytest.fixture()
def fresh() -> Iterator[SandboxServer]:
    """A private server over a private account, for tests that change state or limits."""
    with SandboxServer(generate_account(customers=12, seed=3, now=NOW)) as running:
        yield running


# Generated data ----------


def test_generation_is_deterministic() -> None:
    first = generate_account(customers=8, seed=11, now=NOW)
    again = generate_account(customers=8, seed=11, now=NOW)
    other = generate_account(customers=8, seed=12, now=NOW)
    assert first.objects("invoices") == again.objects("invoices")
    assert first.objects("credit_ledger_entries") == again.objects("credit_ledger_entries")
    assert set(first.objects("customers")) != set(other.objects("customers"))


def test_generated_account_covers_every_state(account: Account) -> None:
    invoices = account.objects("invoices")
    assert set(Counter(i["status"] for i in invoices.values())) == set(ALL_STATUSES)
    assert {i["invoice_source"] for i in invoices.values()} == {"subscription", "one_off"}
    subs = account.objects("subscriptions")
    assert {s["status"] for s in subs.values()} == {"active", "ended", "upcoming"}
    kinds = {e["entry_type"] for e in account.objects("credit_ledger_entries").values()}
    assert {
        "increment",
        "decrement",
        "expiration_change",
        "credit_block_expiry",
        "void",
        "amendment",
    } <= kinds
    statuses = {e["entry_status"] for e in account.objects("credit_ledger_entries").values()}
    assert statuses == {"committed", "pending"}
    coupons = account.objects("coupons").values()
    assert {c["archived_at"] is None for c in coupons} == {True, False}
    assert {m["status"] for m in account.objects("billable_metrics").values()} >= {
        "active",
        "archived",
    }
    assert {p["status"] for p in account.objects("plans").values()} == {
        "active",
        "archived",
        "draft",
    }
    assert {p["model_type"] for p in account.objects("prices").values()} >= {
        "unit",
        "tiered",
        "package",
    }
    assert any(n["voided_at"] is not None for n in account.objects("credit_notes").values())
    assert all(i["due_date"] is None for i in invoices.values() if i["status"] == "draft")
    assert all(i["due_date"] is not None for i in invoices.values() if i["status"] != "draft")
    assert {c["currency"] for c in account.objects("customers").values()} <= {"USD", "EUR"}
    assert all(len(i) == 22 and i.isalnum() for i in account.objects("customers"))


def test_invoice_money_adds_up(account: Account) -> None:
    for invoice in account.objects("invoices").values():
        lines = invoice["line_items"]
        assert lines, invoice["id"]
        assert sum(Decimal(line["amount"]) for line in lines) == Decimal(invoice["subtotal"])
        tax = sum(Decimal(t["amount"]) for line in lines for t in line["tax_amounts"])
        assert Decimal(invoice["total"]) == Decimal(invoice["subtotal"]) + tax
        for line in lines:
            subs = sum(Decimal(s["amount"]) for s in line["sub_line_items"])
            assert subs == Decimal(line["subtotal"])
            assert line["price"]["id"]


def test_credit_notes_are_listed_on_their_invoices(account: Account) -> None:
    invoices = account.objects("invoices")
    for note in account.objects("credit_notes").values():
        summary = [c for c in invoices[note["invoice_id"]]["credit_notes"] if c["id"] == note["id"]]
        assert summary == [
            {k: note[k] for k in ("id", "credit_note_number", "memo", "reason", "total", "type")}
            | {"voided_at": note["voided_at"]}
        ]


def test_ledger_running_balances_and_block_balances(account: Account) -> None:
    entries = account.objects("credit_ledger_entries").values()
    blocks = account.objects("credit_blocks")
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_customer.setdefault(entry["customer"]["id"], []).append(entry)
    # Credit amounts and balances are doubles in Orb and chain in double arithmetic, exactly:
    # 100 - 33.333333333333336 is 66.66666666666666.
    block_sums: defaultdict[str, float] = defaultdict(float)
    for chain in by_customer.values():
        chain.sort(key=lambda e: e["ledger_sequence_number"])
        assert [e["ledger_sequence_number"] for e in chain] == list(range(1, len(chain) + 1))
        previous = 0.0
        for entry in chain:
            assert float(entry["starting_balance"]) == previous
            assert float(entry["ending_balance"]) == previous + float(entry["amount"])
            previous = float(entry["ending_balance"])
            block_sums[entry["credit_block"]["id"]] += float(entry["amount"])
    for block_id, block in blocks.items():
        assert float(block["balance"]) == block_sums[block_id]
        assert float(block["balance"]) >= 0


# Envelope and pagination ----------


def test_walk_customers_in_pages_of_seven(client: httpx.Client, account: Account) -> None:
    first = client.get("/customers", params={"limit": 7}).json()
    assert set(first) == {"data", "pagination_metadata"}
    assert len(first["data"]) == 7
    assert first["pagination_metadata"]["has_more"] is True
    items = walk(client, "/customers", limit=7)
    ids = [c["id"] for c in items]
    assert len(ids) == len(set(ids)) == 30
    assert set(ids) == set(account.objects("customers"))
    created = [c["created_at"] for c in items]
    assert created == sorted(created, reverse=True)


def test_same_cursor_gives_same_page(client: httpx.Client) -> None:
    cursor = client.get("/invoices", params={"limit": 5}).json()["pagination_metadata"][
        "next_cursor"
    ]
    once = client.get("/invoices", params={"limit": 5, "cursor": cursor}).json()
    twice = client.get("/invoices", params={"limit": 5, "cursor": cursor}).json()
    assert once == twice
    assert len(once["data"]) == 5


def test_customers_created_mid_pagination_cause_no_duplicates_or_skips(
    fresh: SandboxServer,
) -> None:
    account = fresh.account
    before = set(account.objects("customers"))
    rng = random.Random(5)
    created: list[str] = []

    def create_customer(path: str, query: dict[str, list[str]]) -> None:
        if path == "/customers" and "cursor" in query:
            account.now += timedelta(minutes=1)
            created.append(add_customer(account, rng)["id"])

    fresh.before_request.append(create_customer)
    with client_for(fresh) as http:
        ids = [c["id"] for c in walk(http, "/customers", limit=3)]
    assert len(ids) == len(set(ids))
    assert set(ids) == before
    assert len(created) == 3
    assert set(account.objects("customers")) == before | set(created)


def test_hooks_see_path_and_query(fresh: SandboxServer) -> None:
    seen: list[tuple[str, dict[str, list[str]]]] = []
    fresh.before_request.append(lambda path, query: seen.append((path, query)))
    with client_for(fresh) as http:
        http.get("/invoices", params={"status[]": ["draft", "void"], "limit": 2})
    assert seen == [("/invoices", {"status[]": ["draft", "void"], "limit": ["2"]})]


# Filters ----------


def test_invoices_default_to_issued_paid_synced(client: httpx.Client, account: Account) -> None:
    invoices = account.objects("invoices")
    default = walk(client, "/invoices", limit=100)
    expected = {k for k, v in invoices.items() if v["status"] in ("issued", "paid", "synced")}
    assert {i["id"] for i in default} == expected
    dates = [(i["invoice_date"], i["id"]) for i in default]
    assert dates == sorted(dates, reverse=True)
    explicit = walk(client, "/invoices", limit=100, **{"status[]": ["draft", "void"]})
    assert {i["id"] for i in explicit} == {
        k for k, v in invoices.items() if v["status"] in ("draft", "void")
    }
    everything = walk(client, "/invoices", limit=100, **{"status[]": ALL_STATUSES})
    assert {i["id"] for i in everything} == set(invoices)


def test_invoice_filters(client: httpx.Client, account: Account) -> None:
    invoices = account.objects("invoices").values()
    low, high = NOW - timedelta(days=120), NOW - timedelta(days=30)
    params = {
        "invoice_date[gte]": iso(low),
        "invoice_date[lt]": iso(high),
        "status[]": ALL_STATUSES,
    }
    got = {i["id"] for i in walk(client, "/invoices", limit=50, **params)}
    expected = {
        i["id"] for i in invoices if low <= datetime.fromisoformat(i["invoice_date"]) < high
    }
    assert got == expected and got
    customer = next(iter(invoices))["customer"]["id"]
    mine = walk(client, "/invoices", customer_id=customer, **{"status[]": ALL_STATUSES})
    assert {i["id"] for i in mine} == {i["id"] for i in invoices if i["customer"]["id"] == customer}
    sub = next(i for i in invoices if i["subscription"])["subscription"]["id"]
    of_sub = walk(client, "/invoices", subscription_id=sub, **{"status[]": ALL_STATUSES})
    assert {i["subscription"]["id"] for i in of_sub} == {sub}


def test_created_at_filters_accept_z_offsets_and_dates(
    client: httpx.Client, account: Account
) -> None:
    customers = account.objects("customers").values()
    cut = NOW - timedelta(days=200)
    expected = {c["id"] for c in customers if datetime.fromisoformat(c["created_at"]) > cut}
    for value in (iso(cut), cut.strftime("%Y-%m-%dT%H:%M:%SZ")):
        got = walk(client, "/customers", **{"created_at[gt]": value})
        assert {c["id"] for c in got} == expected
    day = cut.date().isoformat()
    midnight = datetime.fromisoformat(day).replace(tzinfo=UTC)
    got = walk(client, "/customers", **{"created_at[lte]": day})
    assert {c["id"] for c in got} == {
        c["id"] for c in customers if datetime.fromisoformat(c["created_at"]) <= midnight
    }
    bad = client.get("/customers", params={"created_at[gte]": "yesterday"})
    assert bad.status_code == 400
    assert bad.json()["type"] == ERROR_TYPE + "400-request-validation-errors"


def test_subscription_filters(client: httpx.Client, account: Account) -> None:
    subs = account.objects("subscriptions").values()
    for status in ("active", "ended", "upcoming"):
        got = walk(client, "/subscriptions", status=status)
        assert {s["id"] for s in got} == {s["id"] for s in subs if s["status"] == status}
    both = walk(client, "/subscriptions", **{"status[]": ["ended", "upcoming"]})
    assert {s["status"] for s in both} == {"ended", "upcoming"}
    plan = next(iter(subs))["plan"]["id"]
    got = walk(client, "/subscriptions", plan_id=plan)
    assert {s["id"] for s in got} == {s["id"] for s in subs if s["plan"]["id"] == plan}
    first = got[0]
    assert first["customer"] == account.objects("customers")[first["customer"]["id"]]
    assert first["plan"]["prices"] and first["price_intervals"][0]["price"]["id"]


def test_show_archived_coupons(client: httpx.Client, account: Account) -> None:
    coupons = account.objects("coupons")
    default = walk(client, "/coupons")
    assert {c["id"] for c in default} == {k for k, v in coupons.items() if v["archived_at"] is None}
    archived = walk(client, "/coupons", show_archived="true")
    assert {c["id"] for c in archived} == set(coupons)
    assert client.get("/coupons", params={"show_archived": "maybe"}).status_code == 400


def test_include_all_blocks(client: httpx.Client, account: Account) -> None:
    blocks = account.objects("credit_blocks").values()
    hidden = [
        b
        for b in blocks
        if Decimal(b["balance"]) == 0
        or (b["expiry_date"] and datetime.fromisoformat(b["expiry_date"]) <= NOW)
    ]
    assert hidden
    customer = hidden[0]["customer_id"]
    mine = {b["id"] for b in blocks if b["customer_id"] == customer}
    default = walk(client, f"/customers/{customer}/credits")
    assert {b["id"] for b in default} == mine - {b["id"] for b in hidden}
    every = walk(client, f"/customers/{customer}/credits", include_all_blocks="true")
    assert {b["id"] for b in every} == mine
    assert "customer_id" not in every[0]


def test_ledger_filters(client: httpx.Client, account: Account) -> None:
    entries = account.objects("credit_ledger_entries").values()
    customer = next(e for e in entries if e["entry_status"] == "pending")["customer"]["id"]
    mine = [e for e in entries if e["customer"]["id"] == customer]
    listed = walk(client, f"/customers/{customer}/credits/ledger", limit=3)
    assert [e["id"] for e in listed] == [
        e["id"] for e in sorted(mine, key=lambda e: (e["created_at"], e["id"]), reverse=True)
    ]
    pending = walk(client, f"/customers/{customer}/credits/ledger", entry_status="pending")
    assert {e["id"] for e in pending} == {e["id"] for e in mine if e["entry_status"] == "pending"}
    kind = walk(client, f"/customers/{customer}/credits/ledger", entry_type="increment")
    assert {e["entry_type"] for e in kind} == {"increment"}
    bad = client.get(f"/customers/{customer}/credits/ledger", params={"entry_type": "nope"})
    assert bad.status_code == 400


def test_balance_transactions_and_top_ups(client: httpx.Client, account: Account) -> None:
    txns = account.objects("customer_balance_transactions").values()
    customer = Counter(t["customer_id"] for t in txns).most_common(1)[0][0]
    mine = [t for t in txns if t["customer_id"] == customer]
    listed = walk(client, f"/customers/{customer}/balance_transactions")
    assert [t["id"] for t in listed] == [
        t["id"] for t in sorted(mine, key=lambda t: (t["created_at"], t["id"]), reverse=True)
    ]
    latest = listed[0]["created_at"]
    since = walk(
        client, f"/customers/{customer}/balance_transactions", **{"operation_time[gte]": latest}
    )
    assert [t["id"] for t in since] == [listed[0]["id"]]
    balance = account.objects("customers")[customer]["balance"]
    assert listed[0]["ending_balance"] == balance
    top_ups = account.objects("top_ups").values()
    owner = next(iter(top_ups))["customer_id"]
    got = walk(client, f"/customers/{owner}/credits/top_ups")
    assert {t["id"] for t in got} == {t["id"] for t in top_ups if t["customer_id"] == owner}


def test_alerts_need_a_customer_or_subscription(client: httpx.Client, account: Account) -> None:
    response = client.get("/alerts")
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == ERROR_TYPE + "400-request-validation-errors"
    assert body["status"] == 400 and body["validation_errors"]
    alerts = account.objects("alerts").values()
    customer = next(iter(alerts))["customer"]["id"]
    got = walk(client, "/alerts", customer_id=customer)
    assert {a["id"] for a in got} == {a["id"] for a in alerts if a["customer"]["id"] == customer}
    with_sub = next((a for a in alerts if a["subscription"]), None)
    if with_sub is not None:
        sub_id = with_sub["subscription"]["id"]
        got = walk(client, "/alerts", subscription_id=sub_id)
        assert {a["subscription"]["id"] for a in got} == {sub_id}


def test_catalog_endpoints(client: httpx.Client, account: Account) -> None:
    for path, table in (
        ("/plans", "plans"),
        ("/prices", "prices"),
        ("/items", "items"),
        ("/metrics", "billable_metrics"),
        ("/credit_notes", "credit_notes"),
        ("/dimensional_price_groups", "dimensional_price_groups"),
        ("/license_types", "license_types"),
        ("/webhook_endpoints", "webhook_endpoints"),
        ("/events/backfills", "event_backfills"),
    ):
        assert {o["id"] for o in walk(client, path, limit=5)} == set(account.objects(table))
    active = walk(client, "/plans", status="active")
    assert {p["status"] for p in active} == {"active"}
    price = next(iter(account.objects("plans").values()))["prices"][0]
    assert client.get(f"/prices/{price['id']}").json()["id"] == price["id"]
    metric_id = next(iter(account.objects("billable_metrics")))
    assert client.get(f"/metrics/{metric_id}").json()["id"] == metric_id


# Errors ----------


@pytest.mark.parametrize("limit", ["101", "0", "ten"])
def test_limit_out_of_range(client: httpx.Client, limit: str) -> None:
    response = client.get("/customers", params={"limit": limit})
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == ERROR_TYPE + "400-request-validation-errors"
    assert body["status"] == 400
    assert body["validation_errors"] == ["limit: must be an integer between 1 and 100"]


def test_invalid_cursor(client: httpx.Client) -> None:
    response = client.get("/customers", params={"cursor": "not-a-cursor"})
    assert response.status_code == 400
    assert response.json()["type"] == ERROR_TYPE + "400-request-validation-errors"


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer wrong"}, {}])
def test_wrong_key_is_401(server: SandboxServer, headers: dict[str, str]) -> None:
    response = httpx.get(f"{server.base_url}/customers", headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"type", "status", "title", "detail"}
    assert body["type"] == ERROR_TYPE + "401-authentication-error"
    assert body["status"] == 401


def test_not_found_shapes(client: httpx.Client) -> None:
    for path in ("/customers/nope", "/invoices/nope", "/customers/nope/credits/ledger"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json()["type"] == ERROR_TYPE + "404-resource-not-found"
    for path in ("/nope", "/customers/a/b/c"):
        response = client.get(path)
        assert response.status_code == 404
        body = response.json()
        assert body["type"] == ERROR_TYPE + "404-url-not-found" and body["status"] == 404


def test_single_objects_match_account(client: httpx.Client, account: Account) -> None:
    invoice = next(i for i in account.objects("invoices").values() if i["status"] == "draft")
    served = client.get(f"/invoices/{invoice['id']}")
    assert json.loads(served.text, parse_float=Decimal) == invoice


# Wire format ----------


def test_money_wire_format(client: httpx.Client, account: Account) -> None:
    invoice = client.get("/invoices", params={"limit": 1}).json()["data"][0]
    assert isinstance(invoice["total"], str) and Decimal(invoice["total"]) >= 0
    assert invoice["total"] == f"{Decimal(invoice['total']):.2f}"
    line = invoice["line_items"][0]
    assert isinstance(line["amount"], str) and isinstance(line["quantity"], int | float)
    assert invoice["invoice_date"].endswith("+00:00")
    datetime.fromisoformat(invoice["created_at"])
    customer = invoice["customer"]["id"]
    entry = client.get(f"/customers/{customer}/credits/ledger").json()["data"][0]
    for key in ("amount", "starting_balance", "ending_balance"):
        assert isinstance(entry[key], int | float) and not isinstance(entry[key], bool)
    blocks = client.get(f"/customers/{customer}/credits", params={"include_all_blocks": "true"})
    block = blocks.json()["data"][0]
    assert isinstance(block["balance"], float)
    assert isinstance(block["maximum_initial_balance"], float)
    assert block["per_unit_cost_basis"] is None or isinstance(block["per_unit_cost_basis"], str)
    stored = account.objects("credit_blocks")[block["id"]]
    assert Decimal(str(block["balance"])) == stored["balance"]
    customer_body = client.get(f"/customers/{customer}").json()
    assert isinstance(customer_body["balance"], str)
    assert all(isinstance(v, str) for v in customer_body["metadata"].values())


def test_numbers_keep_every_digit_on_the_wire() -> None:
    """Decimal strings keep every place (no exponent), doubles go out as their shortest text,
    and a value that is not exactly a double cannot become one silently."""
    assert dumps([Decimal("0.0000000375"), Decimal("1.50"), Decimal("1E+3")]) == (
        b'["0.0000000375","1.50","1000"]'
    )
    assert dumps([double(0.1 + 0.2), Number("542.6099999999999"), double(100 / 3)]) == (
        b"[0.30000000000000004,542.6099999999999,33.333333333333336]"
    )
    with pytest.raises(ValueError, match="not a double"):
        Number("0.12345678901234567890")


# Rate limits ----------


def test_rate_limit_with_retry_after() -> None:
    account = generate_account(customers=3, seed=1, now=NOW)
    with (
        SandboxServer(account, rate_limits={"read": 3, "credit_balance": 2}) as server,
        client_for(server) as http,
    ):
        codes = [http.get("/items").status_code for _ in range(6)]
        assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
        rejected = http.get("/items")
        assert rejected.status_code == 429
        assert rejected.headers["Retry-After"] == "1"
        assert rejected.json()["type"] == ERROR_TYPE + "429-too-many-requests"
        customer = next(iter(account.customers))
        credits = [http.get(f"/customers/{customer}/credits").status_code for _ in range(3)]
        assert credits == [200, 200, 429]
        time.sleep(1.05)
        assert http.get("/items").status_code == 200
        assert server.stats.rejected_429 == server.stats.status_counts[429] == codes.count(429) + 2


def test_rate_limit_without_retry_after() -> None:
    account = generate_account(customers=2, seed=1, now=NOW)
    with (
        SandboxServer(account, rate_limits={"read": 1}, retry_after=False) as server,
        client_for(server) as http,
    ):
        assert http.get("/items").status_code == 200
        rejected = http.get("/items")
        assert rejected.status_code == 429
        assert "Retry-After" not in rejected.headers


# Faults ----------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_status_faults(client: httpx.Client, server: SandboxServer, status: int) -> None:
    server.inject(Fault("status", path="^/items$", status=status, times=1))
    first = client.get("/items")
    assert first.status_code == status
    assert first.json()["status"] == status and first.json()["type"].startswith(ERROR_TYPE)
    assert first.headers.get("Transient-Error") == ("true" if status == 500 else None)
    assert client.get("/items").status_code == 200
    assert client.get("/plans").status_code == 200


def test_429_fault_with_and_without_retry_after(
    client: httpx.Client, server: SandboxServer
) -> None:
    server.inject(Fault("status", path="/coupons", status=429, retry_after=2, times=1))
    server.inject(Fault("status", path="/coupons", status=429, times=1))
    with_header = client.get("/coupons")
    assert with_header.status_code == 429 and with_header.headers["Retry-After"] == "2"
    without = client.get("/coupons")
    assert without.status_code == 429 and "Retry-After" not in without.headers
    assert client.get("/coupons").status_code == 200


def test_slow_fault(client: httpx.Client, server: SandboxServer) -> None:
    server.inject(Fault("slow", delay=0.3, times=1))
    started = time.monotonic()
    assert client.get("/items").status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    client.get("/items")
    assert time.monotonic() - started < 0.3


def test_drop_fault(client: httpx.Client, server: SandboxServer) -> None:
    server.inject(Fault("drop", path="^/customers$", times=1))
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/customers")
    assert len(client.get("/customers").json()["data"]) == 20


def test_malformed_fault(client: httpx.Client, server: SandboxServer) -> None:
    server.inject(Fault("malformed", times=1))
    response = client.get("/items")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_repeat_cursor_fault(client: httpx.Client, server: SandboxServer) -> None:
    server.inject(Fault("repeat_cursor", path="^/customers$"))
    first = client.get("/customers", params={"limit": 5}).json()["pagination_metadata"]
    assert first["has_more"] is True
    cursor = first["next_cursor"]
    for _ in range(3):
        meta = client.get("/customers", params={"limit": 5, "cursor": cursor}).json()
        assert meta["pagination_metadata"] == {"has_more": True, "next_cursor": cursor}


def test_fault_probability_and_stats(fresh: SandboxServer) -> None:
    fresh.inject(Fault("status", status=503, probability=0.0))
    with client_for(fresh) as http:
        assert [http.get("/items").status_code for _ in range(5)] == [200] * 5
        fresh.clear_faults()
        fresh.inject(Fault("status", status=503, probability=0.5))
        codes = Counter(http.get("/items").status_code for _ in range(40))
    assert set(codes) == {200, 503} and 5 < codes[503] < 35
    assert fresh.stats.status_counts == {200: 5 + codes[200], 503: codes[503]}
    assert fresh.stats.by_route == {"/items": 45}


# Stats ----------


def test_stats_and_concurrency() -> None:
    account = generate_account(customers=10, seed=2, now=NOW)
    with SandboxServer(account, latency=0.2) as server:
        customer = next(iter(account.customers))

        def fetch() -> None:
            with client_for(server) as http:
                http.get(f"/customers/{customer}/credits/ledger", params={"limit": 2})

        threads = [threading.Thread(target=fetch) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert server.max_in_flight >= 2
        stats = server.stats
        assert stats.requests == 4
        assert stats.by_route == {"/customers/{id}/credits/ledger": 4}
        assert stats.rows_by_route == {"/customers/{id}/credits/ledger": 8}
        assert stats.status_counts == {200: 4}
        server.reset_stats()
        assert server.stats.requests == 0 and server.stats.by_route == {}


# Mutations ----------


def test_simulate_day_is_deterministic() -> None:
    one = generate_account(customers=10, seed=4, now=NOW)
    two = generate_account(customers=10, seed=4, now=NOW)
    assert simulate_day(one, random.Random(9)) == simulate_day(two, random.Random(9))
    assert one.objects("invoices") == two.objects("invoices")


def test_simulate_day_changes(fresh: SandboxServer) -> None:
    account = fresh.account
    before = {table: account.objects(table) for table in ("customers", "invoices", "top_ups")}
    ledger_before = account.objects("credit_ledger_entries")
    notes_before = account.objects("credit_notes")
    changes = simulate_day(account, random.Random(1))
    assert account.now == NOW + timedelta(days=1)
    for word in (
        "deleted",
        "created",
        "recomputed",
        "lost line item",
        "gained line item",
        "issued",
        "paid",
        "voided",
        "metadata edited",
        "one-off invoice",
        "started",
        "ended",
        "renamed",
        "balance changed",
        "committed",
        "deactivated",
        "edited",
        "redeemed",
        "alert",
        "ledger void_initiated",
        "balance transaction",
        "created (",
    ):
        assert any(word in change for change in changes), word
    customers = account.objects("customers")
    deleted = account.gone("customers")
    assert len(deleted) == 1 and not deleted & set(customers)
    assert deleted <= set(before["customers"])
    new = set(customers) - set(before["customers"])
    assert new and all(customers[c]["created_at"] == iso(account.now) for c in new)
    assert account.gone("top_ups") and not account.gone("top_ups") & set(account.objects("top_ups"))
    invoices = account.objects("invoices")
    one_off = [
        i
        for i in invoices.values()
        if i["invoice_source"] == "one_off" and i["created_at"] == iso(account.now)
    ]
    assert len(one_off) == 1 and one_off[0]["status"] == "paid"
    age = account.now - datetime.fromisoformat(one_off[0]["invoice_date"])
    assert timedelta(days=3) <= age <= timedelta(days=20)
    new_notes = set(account.objects("credit_notes")) - set(notes_before)
    for note_id in new_notes:
        invoice = invoices[account.objects("credit_notes")[note_id]["invoice_id"]]
        assert note_id in {c["id"] for c in invoice["credit_notes"]}
        assert invoice["metadata"]["last_credit_note"] == note_id
    committed = [
        e
        for k, e in account.objects("credit_ledger_entries").items()
        if k in ledger_before
        and ledger_before[k]["entry_status"] == "pending"
        and e["entry_status"] == "committed"
    ]
    assert len(committed) == 1
    changed_status = {
        k
        for k, v in invoices.items()
        if k in before["invoices"] and before["invoices"][k]["status"] != v["status"]
    }
    assert {invoices[k]["status"] for k in changed_status} >= {"issued", "paid", "void"}
    for invoice in invoices.values():
        total = sum(Decimal(line["amount"]) for line in invoice["line_items"])
        assert total == Decimal(invoice["subtotal"])


def test_api_matches_objects_and_gone_after_days(fresh: SandboxServer) -> None:
    account = fresh.account
    rng = random.Random(2)
    for _ in range(3):
        simulate_day(account, rng)
    with client_for(fresh) as http:
        customers = walk(http, "/customers", limit=100)
        invoices = walk(http, "/invoices", limit=100, **{"status[]": ALL_STATUSES})
        subscriptions = walk(http, "/subscriptions", limit=100)
        for gone in account.gone("customers"):
            assert http.get(f"/customers/{gone}").status_code == 404
            assert http.get(f"/customers/{gone}/credits/ledger").status_code == 404
        served_lines = {line["id"] for invoice in invoices for line in invoice["line_items"]}
        assert {c["id"]: c for c in customers} == account.objects("customers")
        assert {i["id"] for i in invoices} == set(account.objects("invoices"))
        assert {s["id"] for s in subscriptions} == set(account.objects("subscriptions"))
        assert served_lines == set(account.objects("invoice_line_items"))
        assert account.gone("invoice_line_items")
        assert not account.gone("invoice_line_items") & served_lines
        assert not account.gone("invoices") & {i["id"] for i in invoices}
        assert not account.gone("subscriptions") & {s["id"] for s in subscriptions}
        customer = customers[0]["id"]
        ledger = walk(http, f"/customers/{customer}/credits/ledger", limit=100)
        mine = {
            k: v
            for k, v in account.objects("credit_ledger_entries").items()
            if v["customer"]["id"] == customer
        }
        assert {e["id"]: e for e in ledger} == mine


def test_serve_runs_until_sigterm() -> None:
    code = (
        "from orb_source.sandbox import serve; "
        "serve(port=0, customers=3, api_key='k', rate_limits={'read': 50})"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd="."
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        base_url = next(word for word in line.split() if word.startswith("http://"))
        assert base_url.endswith("/v1") and "(api key: k)" in line
        response = httpx.get(f"{base_url}/customers", headers={"Authorization": "Bearer k"})
        assert len(response.json()["data"]) == 3
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


# Analytics: usage, costs, event volume ----------


@pytest.fixture(scope="module")
def default() -> Account:
    """The suite's default account (25 customers, seed 7), unchanged by these tests."""
    return default_account()


def answer(api: Api, path: str, **params: Any) -> Any:
    """A 200 answer of the in-process API, numbers parsed exactly."""
    reply = api.handle(path, {k: v if isinstance(v, list) else [str(v)] for k, v in params.items()})
    assert reply.status == 200, reply.body
    return json.loads(reply.body, parse_float=Decimal)


def span(start: datetime, end: datetime) -> dict[str, str]:
    return {"timeframe_start": iso(start), "timeframe_end": iso(end)}


def period_invoices(account: Account) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(subscription, invoice) of every subscription invoice."""
    for invoice in account.invoices.values():
        if invoice["subscription"] is not None:
            yield account.subscriptions[invoice["subscription"]["id"]], invoice


def served_usage(api: Api, sub_id: str, **params: Any) -> dict[str, list[dict[str, Any]]]:
    """Usage windows per billable metric id."""
    body = answer(api, f"/subscriptions/{sub_id}/usage", **params)
    return {entry["billable_metric"]["id"]: entry["usage"] for entry in body["data"]}


def assert_usage_matches_invoices(account: Account) -> Counter[str]:
    """Each metric's daily usage over a billing period adds up to the quantity of the first
    line billing it on that period's invoice (what counts as the metric's usage); a metric
    without a line there has the usage of its line deleted from the draft, else none.
    Returns the lines checked by invoice status."""
    api, checked = Api(account), Counter[str]()
    for sub, invoice in period_invoices(account):
        start, end = invoice["line_items"][0]["start_date"], invoice["line_items"][0]["end_date"]
        served = served_usage(api, sub["id"], granularity="day", **span(start, end))
        if start >= account.now:  # a draft opened ahead of its period: nothing served yet
            assert all(windows == [] for windows in served.values())
            checked["ahead"] += 1
            continue
        firsts: dict[str, dict[str, Any]] = {}
        deleted = account.usage_log.dropped.get(sub["id"], [])
        for line in [*invoice["line_items"], *(d for d in deleted if d["start_date"] == start)]:
            metric = line["price"]["billable_metric"]
            if line["price"]["price_type"] == "usage_price" and metric and metric["id"] in served:
                firsts.setdefault(metric["id"], line)
        for metric, windows in served.items():
            total = sum(Decimal(w["quantity"]) for w in windows)
            assert total == (firsts[metric]["quantity"] if metric in firsts else 0), (
                sub["id"],
                invoice["id"],
                metric,
            )
            checked[invoice["status"]] += metric in firsts
            checked["deleted"] += firsts.get(metric, {}).get("id") in {d["id"] for d in deleted}
    return checked


def test_usage_adds_up_to_the_invoice_lines(default: Account) -> None:
    """Rule (5) on every billing period of every subscription: closed ones (issued, paid,
    synced, void) and the running drafts. Only the plan with every price model has a second
    usage price on one metric; those lines keep quantities of their own."""
    checked = assert_usage_matches_invoices(default)
    assert {"draft", "issued", "paid", "synced", "void"} <= set(checked)
    assert sum(checked.values()) > 800 and checked["draft"] > 50
    seconds = set()
    for sub, invoice in period_invoices(default):
        metrics = [
            line["price"]["billable_metric"]["id"]
            for line in invoice["line_items"]
            if line["price"]["price_type"] == "usage_price"
        ]
        if len(metrics) != len(set(metrics)):
            seconds.add(sub["plan"]["external_plan_id"])
    assert seconds == {"everything"}


def test_costs_add_up_to_the_invoice_lines(default: Account) -> None:
    """Periodic costs over a billing period add up, per price, to its invoice lines' subtotal,
    adjusted amount and quantity; cumulative costs are their running sum from the period's
    start and end at those totals."""
    api, checked = Api(default), 0
    for sub, invoice in period_invoices(default):
        start, end = invoice["line_items"][0]["start_date"], invoice["line_items"][0]["end_date"]
        path = f"/subscriptions/{sub['id']}/costs"
        periodic = answer(api, path, view_mode="periodic", **span(start, end))["data"]
        cumulative = answer(api, path, **span(start, end))["data"]
        if start >= default.now:
            assert periodic == cumulative == []
            continue
        assert [(w["timeframe_start"], w["timeframe_end"]) for w in periodic] == [
            (w["timeframe_start"], w["timeframe_end"]) for w in cumulative
        ]
        expected: defaultdict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 3)
        for line in invoice["line_items"]:
            sums = expected[line["price"]["id"]]
            for index, key in enumerate(("subtotal", "amount", "quantity")):
                sums[index] += Decimal(line[key])
        running: defaultdict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 3)
        for day, day_total in zip(periodic, cumulative, strict=True):
            for cost in day["per_price_costs"]:
                sums = running[cost["price_id"]]
                for index, key in enumerate(("subtotal", "total", "quantity")):
                    sums[index] += Decimal(cost[key])
                assert cost["price"]["id"] == cost["price_id"]
            assert {
                c["price_id"]: [Decimal(c["subtotal"]), Decimal(c["total"]), Decimal(c["quantity"])]
                for c in day_total["per_price_costs"]
            } == running
            assert Decimal(day["total"]) == sum(Decimal(c["total"]) for c in day["per_price_costs"])
        assert running == expected, (sub["id"], invoice["id"])
        checked += 1
    assert checked > 250


def test_event_volume_counts_the_events_of_the_usage(default: Account) -> None:
    """Hourly event volume over a UTC day adds up to that day's usage over every subscription
    (one event per unit), days in the past, the day before now and today so far: no hour
    after the account's clock is served."""
    api = Api(default)
    midnight = default.now.replace(hour=0)
    for day in (midnight - timedelta(days=200), midnight - timedelta(days=3), midnight):
        end = min(day + timedelta(days=1), default.now)
        hours = [
            h
            for page in volume_pages(api, limit="7", **span(day, day + timedelta(days=1)))
            for h in page
        ]
        served = -(-(end - day) // timedelta(hours=1))
        assert [datetime.fromisoformat(h["timeframe_start"]) for h in hours] == [
            day + timedelta(hours=n) for n in range(served)
        ]
        assert all(isinstance(h["count"], int) for h in hours)
        events = sum(
            Decimal(window["quantity"])
            for sub in default.subscriptions
            for windows in served_usage(api, sub, **span(day, end)).values()
            for window in windows
        )
        assert events > 0 and sum(h["count"] for h in hours) == events, day
        if day == midnight:
            assert served == 12, "up to the account's clock, 12:00"


def volume_pages(api: Api, **params: Any) -> Iterator[list[dict[str, Any]]]:
    cursor = None
    while True:
        body = answer(api, "/events/volume", **params, **({"cursor": cursor} if cursor else {}))
        meta = body["pagination_metadata"]
        assert (meta["next_cursor"] is not None) == meta["has_more"]
        yield body["data"]
        if not meta["has_more"]:
            return
        cursor = meta["next_cursor"]


def test_event_volume_pages_and_hours(default: Account) -> None:
    """Every UTC hour of the timeframe ascending, zero counts included; a start or end off the
    hour includes the hour it falls in; the end defaults to now; `limit` pages it."""
    api = Api(default)
    start = default.now - timedelta(days=2, minutes=30)
    pages = list(volume_pages(api, timeframe_start=iso(start), limit="20"))
    assert [len(page) for page in pages] == [20, 20, 9]
    hours = [h for page in pages for h in page]
    assert hours[0]["timeframe_start"] == iso(start.replace(minute=0))
    assert hours[-1]["timeframe_end"] == iso(default.now)
    assert all(a["timeframe_end"] == b["timeframe_start"] for a, b in itertools.pairwise(hours))
    default_page = answer(api, "/events/volume", timeframe_start=iso(start))
    assert default_page["data"] == hours[:20]
    ages_ago = datetime(2020, 1, 1, 7, tzinfo=UTC)
    quiet = answer(api, "/events/volume", **span(ages_ago, ages_ago + timedelta(minutes=90)))
    assert [(h["timeframe_start"], h["count"]) for h in quiet["data"]] == [
        (iso(ages_ago), 0),
        (iso(ages_ago + timedelta(hours=1)), 0),
    ]


def test_grouped_usage_adds_up_to_the_usage(default: Account) -> None:
    """Grouped by `region`: one entry per region present, the same windows, and per window
    the regions add up to the ungrouped quantity, also over a timeframe off local midnight."""
    api, compared = Api(default), 0
    start = default.now - timedelta(days=45, hours=5, minutes=30)
    for sub in default.subscriptions.values():
        plain = served_usage(api, sub["id"], granularity="day", **span(start, default.now))
        for metric, windows in plain.items():
            body = answer(
                api,
                f"/subscriptions/{sub['id']}/usage",
                granularity="day",
                billable_metric_id=metric,
                group_by="region",
                **span(start, default.now),
            )
            assert body["pagination_metadata"] == {"has_more": False, "next_cursor": None}
            groups = body["data"]
            values = [g["metric_group"]["property_value"] for g in groups]
            assert len(values) == len(set(values)) and set(values) <= {"us", "eu", "apac"}
            for group in groups:
                assert group["billable_metric"]["id"] == metric
                assert group["metric_group"]["property_key"] == "region"
                assert [(u["timeframe_start"], u["timeframe_end"]) for u in group["usage"]] == [
                    (w["timeframe_start"], w["timeframe_end"]) for w in windows
                ]
            for index, window in enumerate(windows):
                regions = sum(Decimal(g["usage"][index]["quantity"]) for g in groups)
                assert regions == Decimal(window["quantity"])
            compared += len(windows) if len(groups) > 1 else 0
            other = f"/subscriptions/{sub['id']}/usage"
            assert answer(api, other, billable_metric_id=metric, group_by="cluster")["data"] == []
    assert compared > 1000


def test_usage_windows_are_the_customers_local_days(default: Account) -> None:
    """Days start at the customer's local midnight (New York, across the start of daylight
    saving time on 8 Mar 2026: a 23-hour day), clipped to the timeframe; without a timeframe,
    the current billing period up to now; cumulative usage is the periodic one's running
    total; without granularity, one window."""
    api = Api(default)
    start, end = datetime(2026, 3, 6, 5, 30, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC)
    sub = next(
        s
        for s in default.subscriptions.values()
        if s["customer"]["timezone"] == "America/New_York"
        and s["start_date"] < start
        and (s["end_date"] is None or s["end_date"] > end)
    )
    periodic = served_usage(api, sub["id"], granularity="day", **span(start, end))
    assert periodic and all(windows for windows in periodic.values())
    for windows in periodic.values():
        assert [(w["timeframe_start"], w["timeframe_end"]) for w in windows] == [
            ("2026-03-06T05:30:00+00:00", "2026-03-07T05:00:00+00:00"),
            ("2026-03-07T05:00:00+00:00", "2026-03-08T05:00:00+00:00"),
            ("2026-03-08T05:00:00+00:00", "2026-03-09T04:00:00+00:00"),
            ("2026-03-09T04:00:00+00:00", "2026-03-10T00:00:00+00:00"),
        ]
    cumulative = served_usage(
        api, sub["id"], granularity="day", view_mode="cumulative", **span(start, end)
    )
    whole = served_usage(api, sub["id"], **span(start, end))
    for metric, windows in periodic.items():
        running = list(itertools.accumulate(Decimal(w["quantity"]) for w in windows))
        assert [Decimal(w["quantity"]) for w in cumulative[metric]] == running
        assert [(w["timeframe_start"], w["timeframe_end"]) for w in whole[metric]] == [
            (iso(start), iso(end))
        ]
        assert Decimal(whole[metric][0]["quantity"]) == running[-1]
    assert any(running for running in cumulative.values())
    current = served_usage(api, sub["id"], granularity="day")
    for windows in current.values():
        assert windows[0]["timeframe_start"] == iso(sub["current_billing_period_start_date"])
        assert windows[-1]["timeframe_end"] == iso(default.now)
        local = [datetime.fromisoformat(w["timeframe_start"]) for w in windows[1:]]
        zone = ZoneInfo("America/New_York")
        assert all(moment.astimezone(zone).hour == 0 for moment in local) and local


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("usage", {"timeframe_start": "2026-03-01T00:00:00Z"}),
        ("usage", {"timeframe_end": "2026-03-01T00:00:00Z"}),
        ("usage", {"granularity": "hour"}),
        ("usage", {"view_mode": "daily"}),
        ("usage", {"billable_metric_id": "m"}),
        ("usage", {"group_by": "region"}),
        ("usage", {"timeframe_start": "2026-03-02", "timeframe_end": "2026-03-01"}),
        ("costs", {"timeframe_start": "2026-03-01T00:00:00Z"}),
        ("costs", {"view_mode": "daily"}),
    ],
)
def test_usage_and_costs_reject_bad_parameters(
    client: httpx.Client, account: Account, path: str, params: dict[str, str]
) -> None:
    sub = next(iter(account.subscriptions))
    response = client.get(f"/subscriptions/{sub}/{path}", params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == ERROR_TYPE + "400-request-validation-errors"
    assert body["status"] == 400 and len(body["validation_errors"]) == 1


def test_event_volume_and_unknown_subscription_errors(client: httpx.Client) -> None:
    for params in ({}, {"timeframe_end": iso(NOW)}, {"timeframe_start": iso(NOW), "limit": 101}):
        response = client.get("/events/volume", params=params)
        assert response.status_code == 400, params
        assert response.json()["type"] == ERROR_TYPE + "400-request-validation-errors"
    for path in ("usage", "costs"):
        response = client.get(f"/subscriptions/nope/{path}")
        assert response.status_code == 404
        assert response.json()["type"] == ERROR_TYPE + "404-resource-not-found"
    ok = client.get("/events/volume", params={"timeframe_start": iso(NOW - timedelta(hours=3))})
    assert ok.status_code == 200 and [h["count"] for h in ok.json()["data"]] != [0, 0, 0]


def test_usage_and_costs_are_the_analytics_rate_class(account: Account) -> None:
    assert rate_class("/subscriptions/{id}/usage") == "analytics"
    assert rate_class("/subscriptions/{id}/costs") == "analytics"
    assert rate_class("/events/volume") == "read"
    assert rate_class("/customers/{id}/credits") == "credit_balance"
    sub = next(iter(account.subscriptions))
    with (
        SandboxServer(account, rate_limits={"analytics": 2, "read": 100}) as server,
        client_for(server) as http,
    ):
        codes = [http.get(f"/subscriptions/{sub}/{p}").status_code for p in ("usage", "costs")]
        assert codes == [200, 200]
        assert http.get(f"/subscriptions/{sub}/usage").status_code == 429
        volume = {"timeframe_start": iso(NOW - timedelta(hours=2))}
        assert [http.get("/events/volume", params=volume).status_code for _ in range(3)] == [
            200
        ] * 3
        assert http.get(f"/subscriptions/{sub}").status_code == 200


def test_simulate_day_restates_recent_days() -> None:
    """Late-arriving events grow days already served, up to three days back within the draft's
    period (here the October drafts, not yet issued); the drafts they reach are repriced, so
    usage still adds up to every invoice, and a line deleted from a draft keeps its usage;
    usage reaches the new now; a subscription ended that day has usage up to its end, one
    started has none before its first draft's period."""
    account = default_account()
    api, before_now = Api(account), account.now
    week = span(before_now - timedelta(days=7), before_now + timedelta(days=2))
    before = {s: served_usage(api, s, granularity="day", **week) for s in account.subscriptions}
    changes = simulate_day(account, random.Random(11))
    grown, shrunk, old_days = 0, 0, set()
    for sub_id, metrics in before.items():
        after = served_usage(api, sub_id, granularity="day", **week)
        for metric, windows in metrics.items():
            now_windows = {w["timeframe_start"]: w for w in after[metric]}
            for window in windows:
                if datetime.fromisoformat(window["timeframe_end"]) > before_now:
                    continue
                new = Decimal(now_windows[window["timeframe_start"]]["quantity"])
                grown += new > Decimal(window["quantity"])
                shrunk += new < Decimal(window["quantity"])
                if new != Decimal(window["quantity"]):
                    old_days.add(datetime.fromisoformat(window["timeframe_start"]))
    assert grown > 10 and shrunk == 0
    assert min(old_days) <= before_now - timedelta(days=1), "a whole day before the last now"
    assert min(old_days) >= account.now - timedelta(days=4), "today and three days back only"
    checked = assert_usage_matches_invoices(account)
    assert checked["draft"] > 50 and checked["deleted"] == 1
    assert checked["ahead"] == 1, "the started subscription's first draft, opened ahead"
    for sub in account.subscriptions.values():
        windows = [w for ws in served_usage(api, sub["id"], granularity="day").values() for w in ws]
        if sub["status"] == "active" and windows:
            assert {w["timeframe_end"] for w in windows} >= {iso(account.now)}
        ended = sub["end_date"]
        if ended is not None and f"subscription {sub['id']} ended" in changes:
            assert windows and max(w["timeframe_end"] for w in windows) == iso(ended)


def test_fractional_usage_is_one_event_per_reading() -> None:
    """A fractional quantity (GB-month readings) is one reading per day: doubles adding up
    exactly to the quantity, one event each in the event volume."""
    assert readings(542.6099999999999, [3, 2, 2, 2, 1])[:-1] == [162.78, 108.52, 108.52, 108.52]
    assert sum(readings(542.6099999999999, [3, 2, 2, 2, 1])) == 542.6099999999999
    start = datetime(2026, 3, 1, tzinfo=UTC)
    key = LineKey(
        "gb-line",
        Number("542.6099999999999"),
        (hour_ceil(start), hour_floor(start + timedelta(days=5))),
        "America/New_York",
        None,
        (),
    )
    gb = series(key)
    assert len(gb.slots) == 6  # five UTC days cut at New York's midnights
    events = gb.hourly_events()[1]
    assert sum(events) == sum(1 for parts in gb.parts for _ in parts) == 6
    total = 0.0
    for quantity in gb.totals:
        total += quantity
    assert total == 542.6099999999999 == gb.until(key.span[1])
