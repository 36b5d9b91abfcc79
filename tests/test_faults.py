"""Server faults: every run either ends with an exact mirror or fails clearly, and then the
next run ends with an exact mirror. Sandbox stats prove each fault was actually served."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any

import dlt
import pytest

from orb_source.runner import make_pipeline, run_pipeline
from orb_source.sandbox import Account, Fault, SandboxServer, generate_account
from tests.cli import run_cli
from tests.conftest import SANDBOX_NOW, serving
from tests.warehouse import assert_mirror, fetch_table, reading

FAST: dict[str, Any] = {
    "request_timeout": 1.0,
    "max_attempts": 4,
    "read_rate_limit": 1000.0,
    "credit_balance_rate_limit": 200.0,
}
"""Source options that keep runs quick: 1 s timeouts, backoff from 0.5 s, 4 tries, and a
client-side rate budget that never waits on an account this small."""

ALL_BUT_PREFLIGHT = r"^/(?!customers$)"
"""Every path but `/customers`, which the pre-flight key check reads first."""

INVOICES = ("invoices", "invoice_line_items")
CUSTOMER_SIDE = (
    "customers",
    "subscriptions",
    *INVOICES,
    "alerts",
    "credit_ledger_entries",
    "credit_blocks",
    "top_ups",
    "customer_balance_transactions",
)
"""Every table that holds a customer's own rows (the catalog tables are left out for speed)."""


def error_chain(exc: BaseException) -> str:
    """Every message in an exception's cause/context chain (dlt wraps resource errors)."""
    messages: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        messages.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return "\n".join(messages)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Slow faults are logged when their late answer goes out, after the client gave up."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def requests_to(server: SandboxServer, pattern: str) -> list[tuple[float, str, int]]:
    """(arrival, path, status) of the requests whose path matches, in answer order."""
    compiled = re.compile(pattern)
    return [entry for entry in server.stats.log if compiled.search(entry[1])]


@pytest.fixture
def small_account() -> Account:
    """12 customers and 114 invoices: the invoice listing has two pages."""
    return generate_account(customers=12, seed=21, now=SANDBOX_NOW)


@pytest.fixture
def small_sandbox(
    small_account: Account, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SandboxServer]:
    with serving(small_account, monkeypatch) as server:
        yield server


# Throttling ----------


@pytest.mark.parametrize("retry_after", [0.2, None], ids=["retry-after", "no-retry-after"])
def test_429_storm(
    small_sandbox: SandboxServer,
    small_account: Account,
    pipeline: dlt.Pipeline,
    retry_after: float | None,
) -> None:
    """A quarter of all data requests answer 429 for the whole run."""
    small_sandbox.inject(
        Fault(
            "status",
            path=ALL_BUT_PREFLIGHT,
            status=429,
            probability=0.25,
            retry_after=retry_after,
        )
    )

    run_pipeline(pipeline=pipeline, resources=CUSTOMER_SIDE, **{**FAST, "max_attempts": 8})

    stats = small_sandbox.stats
    assert stats.rejected_429 == stats.status_counts[429] == stats.faults_served["status"]
    assert stats.rejected_429 >= 8, stats.status_counts
    assert set(stats.status_counts) == {200, 429}
    throttled = {path for _, path, status in stats.log if status == 429}
    answered = {path for _, path, status in stats.log if status == 200}
    assert throttled <= answered, "every throttled request was retried until it succeeded"
    assert_mirror(pipeline, small_account, CUSTOMER_SIDE)


@pytest.mark.parametrize(
    ("retry_after", "gaps"),
    [
        (1.0, [(0.95, 1.6), (0.95, 1.6)]),
        (None, [(0.22, 0.8), (0.47, 1.3)]),
    ],
    ids=["retry-after", "exponential-backoff"],
)
def test_throttled_request_waits_as_told(
    small_sandbox: SandboxServer,
    small_account: Account,
    pipeline: dlt.Pipeline,
    retry_after: float | None,
    gaps: list[tuple[float, float]],
) -> None:
    """Retry-After is honoured; without it the client waits 0.25-0.5 s, then 0.5-1 s."""
    throttle = Fault("status", path=r"^/invoices$", status=429, times=2, retry_after=retry_after)
    small_sandbox.inject(throttle)

    run_pipeline(pipeline=pipeline, resources=INVOICES, **FAST)

    first_page = requests_to(small_sandbox, r"^/invoices$")[:3]
    assert [status for _, _, status in first_page] == [429, 429, 200]
    waited = [later[0] - earlier[0] for earlier, later in pairwise(first_page)]
    for seconds, (low, high) in zip(waited, gaps, strict=True):
        assert low <= seconds <= high, waited
    assert small_sandbox.stats.rejected_429 == 2
    assert_mirror(pipeline, small_account, INVOICES)


# Server errors ----------


def test_random_500s_over_a_whole_run(
    small_account: Account, monkeypatch: pytest.MonkeyPatch, pipeline: dlt.Pipeline
) -> None:
    """5% of all requests answer 500 (Transient-Error: true); the run still mirrors exactly.
    Fault seed 10 draws 5 hits in the ~75 requests of this account."""
    with SandboxServer(small_account, fault_seed=10) as sandbox:
        monkeypatch.setenv("ORB_API_KEY", sandbox.api_key)
        monkeypatch.setenv("ORB_BASE_URL", sandbox.base_url)
        sandbox.inject(Fault("status", path=ALL_BUT_PREFLIGHT, status=500, probability=0.05))

        run_pipeline(pipeline=pipeline, **{**FAST, "max_attempts": 6})

        stats = sandbox.stats
    served_500 = stats.status_counts.get(500, 0)
    assert served_500 >= 3, stats.status_counts
    assert stats.faults_served["status"] == served_500
    assert set(stats.status_counts) == {200, 500}
    assert served_500 / stats.requests <= 0.15
    failed = {path for _, path, status in stats.log if status == 500}
    assert failed <= {path for _, path, status in stats.log if status == 200}
    assert_mirror(pipeline, small_account)


def test_gateway_errors_502_503_504(
    small_sandbox: SandboxServer, small_account: Account, pipeline: dlt.Pipeline
) -> None:
    """Each gateway error hits a different kind of endpoint, several times in a row."""
    small_sandbox.inject(Fault("status", path=r"^/subscriptions$", status=502, times=2))
    small_sandbox.inject(Fault("status", path=r"/credits/ledger$", status=503, times=3))
    small_sandbox.inject(Fault("status", path=r"^/invoices$", status=504, times=2))

    run_pipeline(pipeline=pipeline, resources=CUSTOMER_SIDE, **FAST)

    counts = small_sandbox.stats.status_counts
    assert (counts[502], counts[503], counts[504]) == (2, 3, 2)
    failed = {(path, status) for _, path, status in small_sandbox.stats.log if status >= 500}
    assert {status for _, status in failed} == {502, 503, 504}
    assert all(path.endswith("/credits/ledger") for path, status in failed if status == 503)
    assert_mirror(pipeline, small_account, CUSTOMER_SIDE)


def test_transient_errors_on_the_first_request_are_retried(
    small_sandbox: SandboxServer, small_account: Account, pipeline: dlt.Pipeline
) -> None:
    """The very first request (the key check) meets two 503s; max_attempts=4 allows for them."""
    small_sandbox.inject(Fault("status", path=r"^/customers$", status=503, times=2))

    run_pipeline(pipeline=pipeline, resources=["customers"], **FAST)

    first = small_sandbox.stats.log[:3]
    assert [(path, status) for _, path, status in first] == [
        ("/customers", 503),
        ("/customers", 503),
        ("/customers", 200),
    ]
    assert_mirror(pipeline, small_account, ("customers",))


# Transport faults ----------


def test_slow_responses_beyond_the_timeout_are_retried(
    small_sandbox: SandboxServer, small_account: Account, pipeline: dlt.Pipeline
) -> None:
    """Two answers take 1.6 s against a 1 s timeout: both requests are abandoned and retried."""
    small_sandbox.inject(Fault("slow", path=r"/balance_transactions$", delay=1.6, times=2))
    tables = ("customers", "customer_balance_transactions")

    run_pipeline(pipeline=pipeline, resources=tables, **FAST)

    customers = len(small_account.customers)
    wait_for(lambda: len(requests_to(small_sandbox, r"/balance_transactions$")) >= customers + 2)
    assert small_sandbox.stats.faults_served["slow"] == 2
    paths = [path for _, path, _ in requests_to(small_sandbox, r"/balance_transactions$")]
    assert len(paths) == customers + 2, "each slow answer should cost exactly one retry"
    assert len(set(paths)) == customers
    assert_mirror(pipeline, small_account, tables)


def test_connections_dropped_mid_body_are_retried(
    small_sandbox: SandboxServer, small_account: Account, pipeline: dlt.Pipeline
) -> None:
    """Half a body, then the connection closes: on a listing, a fan-out and a catalog page."""
    small_sandbox.inject(Fault("drop", path=r"^/invoices$", times=2))
    small_sandbox.inject(Fault("drop", path=r"/credits$", times=2))
    small_sandbox.inject(Fault("drop", path=r"^/plans$", times=1))
    tables = ("customers", *INVOICES, "credit_blocks", "plans")

    run_pipeline(pipeline=pipeline, resources=tables, **FAST)

    assert small_sandbox.stats.faults_served["drop"] == 5
    plans = requests_to(small_sandbox, r"^/plans$")
    assert len(plans) == 2, "the dropped catalog page was read again, once"
    assert_mirror(pipeline, small_account, tables)


def test_a_malformed_json_page_is_read_again(
    small_sandbox: SandboxServer, small_account: Account, pipeline: dlt.Pipeline
) -> None:
    small_sandbox.inject(Fault("malformed", path=r"^/invoices$", times=1))
    small_sandbox.inject(Fault("malformed", path=r"/credits/top_ups$", times=1))
    tables = ("customers", *INVOICES, "top_ups")

    run_pipeline(pipeline=pipeline, resources=tables, **FAST)

    assert small_sandbox.stats.faults_served["malformed"] == 2
    invoice_pages = requests_to(small_sandbox, r"^/invoices$")
    assert len(invoice_pages) == 3, "two pages, the first one read twice"
    assert_mirror(pipeline, small_account, tables)


# Faults that outlast the retries ----------


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault("malformed", path=r"^/invoices$"), "malformed JSON on /invoices"),
        (Fault("status", path=r"^/invoices$", status=503), "503 on /invoices"),
        (Fault("slow", path=r"^/invoices$", delay=1.5), "Timed out on /invoices after 2 attempts"),
    ],
    ids=["malformed", "503", "timeout"],
)
def test_persistent_fault_fails_clearly_and_the_next_run_repairs(
    small_sandbox: SandboxServer,
    small_account: Account,
    pipeline: dlt.Pipeline,
    fault: Fault,
    message: str,
) -> None:
    small_sandbox.inject(fault)
    tables = ("customers", *INVOICES)

    with pytest.raises(Exception) as failure:
        run_pipeline(pipeline=pipeline, resources=tables, **{**FAST, "max_attempts": 2})

    assert message in error_chain(failure.value)
    wait_for(lambda: len(requests_to(small_sandbox, r"^/invoices$")) >= 2)
    assert len(requests_to(small_sandbox, r"^/invoices$")) == 2, "exactly max_attempts tries"
    assert small_sandbox.stats.faults_served[fault.kind] == 2
    assert not pipeline.has_pending_data, "a failed extract must not leave a package to load"
    small_sandbox.clear_faults()

    run_pipeline(pipeline=pipeline, resources=tables, **FAST)
    assert_mirror(pipeline, small_account, tables)


def test_repeated_cursor_fails_with_exit_1_and_the_next_run_mirrors(
    small_sandbox: SandboxServer, small_account: Account
) -> None:
    """The API hands back the cursor it was given: the loop guard stops the run clearly."""
    small_sandbox.inject(Fault("repeat_cursor", path=r"^/invoices$"))
    args = ("run", "--resources", ",".join(INVOICES))
    env = {"SOURCES__ORB__REQUEST_TIMEOUT": "1", "SOURCES__ORB__MAX_ATTEMPTS": "4"}

    failed = run_cli(*args, env=env)

    assert failed.returncode == 1, failed.stderr
    assert failed.stderr.splitlines() == [
        "orb-pipeline: Run failed: Orb repeated a pagination cursor on /invoices; stopping",
        "Nothing was half-committed; the next run repairs it.",
    ]
    assert failed.stdout == ""
    assert small_sandbox.stats.faults_served["repeat_cursor"] == 2
    assert len(requests_to(small_sandbox, r"^/invoices$")) == 2, "stopped at the first repeat"

    small_sandbox.clear_faults()
    repaired = run_cli(*args, env=env)

    assert repaired.returncode == 0, repaired.stderr
    assert_mirror(make_pipeline(), small_account, INVOICES)


# The account changes under the run ----------


def test_customer_deleted_during_the_fan_out(
    small_sandbox: SandboxServer,
    small_account: Account,
    pipeline: dlt.Pipeline,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A loaded customer with rows in every table is deleted on the first per-customer request
    for it in the next run: its endpoints answer 404 mid-fan-out, the run ends, and the run
    after marks the customer and all its rows deleted."""
    account = small_account
    run_pipeline(pipeline=pipeline, resources=CUSTOMER_SIDE, **FAST)
    victim = busiest_customer(account)
    before = rows_of(pipeline, victim)
    assert set(before) == set(CUSTOMER_SIDE), before
    deleted: list[str] = []
    owner = re.compile(r"^/customers/([^/]+)/")

    def delete_on_its_first_per_customer_request(path: str, params: dict[str, list[str]]) -> None:
        match = owner.match(path)
        customer_id = match[1] if match else (params.get("customer_id") or [None])[0]
        if customer_id == victim and not deleted:
            with account.lock:
                account.delete_customer(victim)
            deleted.append(path)

    small_sandbox.before_request.append(delete_on_its_first_per_customer_request)
    small_sandbox.reset_stats()
    with caplog.at_level(logging.WARNING, logger="orb_source"):
        run_pipeline(pipeline=pipeline, resources=CUSTOMER_SIDE, **FAST)

    assert deleted, "the fan-out never reached the customer"
    not_found = {path for _, path, status in small_sandbox.stats.log if status == 404}
    assert not_found, "no per-customer endpoint answered 404"
    gone_with_it = {f"/{table}/{i}" for table in CUSTOMER_SIDE for i in account.gone(table)}
    assert not_found - gone_with_it - {"/alerts"} == {
        path for path in not_found if path.startswith(f"/customers/{victim}/")
    }, "only the deleted customer's endpoints and objects may answer 404"
    assert f"customer {victim} disappeared during the run" in caplog.text

    small_sandbox.before_request.clear()
    run_pipeline(pipeline=pipeline, resources=CUSTOMER_SIDE, **FAST)

    assert_mirror(pipeline, account, CUSTOMER_SIDE)
    after = rows_of(pipeline, victim)
    assert {table: len(rows) for table, rows in after.items()} == {
        table: len(rows) for table, rows in before.items()
    }, "no row of the deleted customer may be dropped"
    live = {table: ids for table, rows in after.items() if (ids := [i for i, d in rows if not d])}
    assert live == {}, f"rows of deleted customer {victim} still live"


def busiest_customer(account: Account) -> str:
    """The customer owning rows in the most tables (then the most rows)."""

    def score(customer_id: str) -> tuple[int, int]:
        owned = [
            sum(
                1
                for obj in account.objects(table).values()
                if owner_of(account, obj) == customer_id
            )
            for table in CUSTOMER_SIDE[1:]
        ]
        return sum(1 for n in owned if n), sum(owned)

    return max(sorted(account.customers), key=score)


def owner_of(account: Account, obj: dict[str, Any]) -> str | None:
    if "invoice_id" in obj and "customer_id" not in obj and "customer" not in obj:
        invoice = account.invoices.get(obj["invoice_id"])
        return invoice["customer"]["id"] if invoice else None
    customer = obj.get("customer")
    return customer["id"] if isinstance(customer, dict) else obj.get("customer_id")


def rows_of(pipeline: dlt.Pipeline, customer_id: str) -> dict[str, list[tuple[str, Any]]]:
    """(id, deleted_at) of the customer's rows in every customer-side table, by table."""
    with reading(pipeline):
        tables = {table: fetch_table(pipeline, table) for table in CUSTOMER_SIDE}
    invoices = {i for i, row in tables["invoices"].items() if row["customer_id"] == customer_id}

    def mine(table: str, row_id: str, row: dict[str, Any]) -> bool:
        if table == "customers":
            return row_id == customer_id
        if table == "invoice_line_items":
            return row["invoice_id"] in invoices
        return bool(row["customer_id"] == customer_id)

    found: dict[str, list[tuple[str, Any]]] = {}
    for table, rows in tables.items():
        for row_id, row in rows.items():
            if mine(table, row_id, row):
                found.setdefault(table, []).append((row_id, row["deleted_at"]))
    return found
