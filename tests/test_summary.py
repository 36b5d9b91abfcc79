"""What a run tells whoever watches it: a timestamped log line per table, progress bars on a
terminal, the summary (read, loaded, deleted, requests per table; destination, dataset,
warnings), `--summary-json`, `--quiet`, `--version`, and httpx's request lines only at DEBUG."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from fcntl import ioctl
from importlib.metadata import version
from pathlib import Path

import dlt

from orb_source.catalog import TABLES
from orb_source.runner import run_pipeline
from orb_source.sandbox import Account, Fault, SandboxServer
from tests.cli import run_cli
from tests.warehouse import (
    LISTED_TABLES,
    assert_mirror,
    assert_series_mirror,
    expected_series,
    volume_start,
)

TABLE_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO (\w+): ([\d,]+) rows read"
    r"(?: \(and ([\d,]+) (\w+)\))?, ([\d,]+) requests, [\d.]+ s$"
)
PER_CUSTOMER = ("alerts", "credit_ledger_entries", "credit_blocks", "top_ups")


def number(text: str) -> int:
    return int(text.replace(",", ""))


def expected_rows(account: Account) -> dict[str, int]:
    """Rows per table of a first run of the test account."""
    series = expected_series(account, volume_start(account))
    return {
        table: len(series[table]) if table in series else len(account.objects(table))
        for table in TABLES
    }


SHARED_LISTINGS = (
    ("credit_notes", "invoices"),
    ("plans", "plan_migrations"),
    ("coupons", "coupon_subscriptions"),
    ("dimensional_price_groups", "dimensional_price_group_prices"),
    (
        "subscriptions",
        "subscription_usage",
        "subscription_costs",
        "subscription_schedules",
        "licenses",
    ),
)
"""Tables that share one listing in a run (the credit notes, listed for their own table and
for the invoices' refetch; the parents they fan out over; the subscriptions, listed for their
own table and for their usage, costs, schedule and licenses): its requests count for the
table that asked first, the group's first in `expected_requests`."""


def expected_requests(account: Account) -> dict[str, int]:
    """Requests per table of a first run of the test account: one page per listing."""
    requests = {table: 1 for table in TABLES}
    requests["invoice_line_items"] = 0
    # three pages of invoices; the credit-note listing that moves their refetch cursor is
    # the credit notes table's
    requests["invoices"] = -(-len(account.objects("invoices")) // 100)
    for table in (*PER_CUSTOMER, "customer_balance_transactions"):
        requests[table] = len(account.customers)
    # and the listing of the one-off invoices still open, which blocks awaiting payment await
    requests["credit_blocks"] += 1
    # one per subscription begun; the one listing of subscriptions is the subscriptions table's
    begun = sum(sub["start_date"] < account.now for sub in account.subscriptions.values())
    requests["subscription_usage"], requests["subscription_costs"] = begun, begun
    requests["event_volume"] = -(-expected_rows(account)["event_volume"] // 100)
    # one per status; one per parent, whose listing its own table makes
    requests["subscription_changes"] = 3
    requests["plan_migrations"] = len(account.plans)
    requests["coupon_subscriptions"] = len(account.coupons)
    requests["dimensional_price_group_prices"] = len(account.dimensional_price_groups)
    requests["subscription_schedules"] = len(account.subscriptions)
    requests["licenses"] = len(account.subscriptions)
    return requests


def shared_counted_first(counted: dict[str, int], expected: dict[str, int]) -> dict[str, int]:
    """Each shared listing counted for its group's first table, as `expected_requests` does,
    when exactly one table of the group counted it."""
    moved = dict(counted)
    for group in SHARED_LISTINGS:
        base = {t: expected[t] - (1 if t == group[0] else 0) for t in group}
        extra = {t: counted.get(t, 0) - base[t] for t in group}
        if sorted(extra.values()) == [0] * (len(group) - 1) + [1]:
            moved.update((t, expected[t]) for t in group)
    return moved


def test_a_run_logs_each_table_and_writes_its_summary_as_json(
    sandbox: SandboxServer, account: Account, tmp_path: Path
) -> None:
    summary = tmp_path / "reports" / "summary.json"

    done = run_cli("run", "--summary-json", str(summary), "--no-views")

    assert done.returncode == 0, done.stderr
    logged = {}
    for line in done.stderr.splitlines():
        match = TABLE_LINE.match(line)
        assert match, f"not a timestamped table line: {line!r}"
        table, rows, children, child, requests = match.groups()
        logged[table] = (number(rows), number(requests))
        if child:
            logged[child] = (number(children), 0)
    requests, rows = expected_requests(account), expected_rows(account)
    counted = shared_counted_first({t: n for t, (_, n) in logged.items()}, requests)
    assert logged == {t: (rows[t], logged[t][1]) for t in TABLES}
    assert counted == requests
    assert "HTTP Request" not in done.stderr

    document = json.loads(summary.read_text())
    assert document["format"] == 1
    assert document["version"] == version("orb-source")
    assert (document["status"], document["error"]) == ("ok", None)
    assert (document["destination"], document["dataset"]) == ("duckdb", "orb")
    assert document["location"] == str(tmp_path / "orb_billing.duckdb")
    assert [t["table"] for t in document["tables"]] == list(TABLES)
    for entry in document["tables"]:
        n = rows[entry["table"]]
        assert (entry["rows_read"], entry["rows_loaded"], entry["rows_deleted"]) == (n, n, 0)
    counted = shared_counted_first(
        {t["table"]: t["requests"] for t in document["tables"]}, requests
    )
    assert counted == requests
    total = sum(rows.values())
    assert document["totals"] == {"rows_read": total, "rows_loaded": total, "rows_deleted": 0}
    assert document["requests"]["total"] == sum(requests.values())
    assert sandbox.stats.requests == sum(requests.values()) + 1, "plus the key check"
    assert document["requests"]["throttled"] == 0
    assert document["warnings"] == []

    lines = done.stdout.splitlines()
    assert lines[0].startswith(
        f"Synced Orb into duckdb at {tmp_path / 'orb_billing.duckdb'}, dataset orb ("
    )
    by_table = {line.split()[0]: line.split()[1:] for line in lines[2:-1]}
    assert list(by_table) == [*TABLES, "total"]
    customers = len(account.customers)
    assert by_table["customers"][:4] == [str(customers), str(customers), "0", "1"]
    assert by_table["total"] == [f"{total:,}", f"{total:,}", "0"]


def test_rows_marked_deleted_are_counted_per_table(
    sandbox: SandboxServer, account: Account, loaded: dlt.Pipeline
) -> None:
    since = volume_start(account)
    series = expected_series(account, since)
    with account.lock:
        before = {table: set(account.objects(table)) for table in LISTED_TABLES}
        used = {row["customer_id"] for row in series["subscription_usage"].values()}
        customer = next(
            c
            for c in sorted(account.customers)
            if all(account.of_customer(t, c) for t in PER_CUSTOMER) and c in used
        )
        account.delete_customer(customer)
    gone = {table: len(before[table] - set(account.objects(table))) for table in LISTED_TABLES}
    for table, rows in series.items():
        gone[table] = sum(row.get("customer_id") == customer for row in rows.values())

    report = run_pipeline(pipeline=loaded)

    assert_mirror(loaded, account)
    assert_series_mirror(loaded, account, since)
    deleted = {t.table: t.deleted for t in report.tables}
    assert deleted == gone
    assert gone["customers"] == 1
    assert all(gone[table] > 0 for table in (*PER_CUSTOMER, "subscription_usage"))


def test_quiet_prints_one_line_and_logs_nothing_on_success(
    sandbox: SandboxServer, account: Account
) -> None:
    done = run_cli("run", "--quiet")

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    total = sum(expected_rows(account).values())
    requests = sum(expected_requests(account).values())
    [line] = done.stdout.splitlines()
    assert line.startswith(
        f"orb-pipeline: ok: {total:,} rows read, {total:,} loaded, 0 marked deleted;"
        f" {requests} requests (0 answered 429); 0 warnings; duckdb at "
    ), line


def test_version() -> None:
    done = run_cli("--version")

    assert (done.returncode, done.stdout) == (0, f"orb-pipeline {version('orb-source')}\n")


def test_a_failed_run_leaves_a_failed_summary(sandbox: SandboxServer, tmp_path: Path) -> None:
    sandbox.inject(Fault("repeat_cursor", path=r"^/invoices$"))
    summary = tmp_path / "summary.json"

    done = run_cli("run", "--resources", "invoices", "--summary-json", str(summary))

    assert done.returncode == 1
    document = json.loads(summary.read_text())
    assert (document["status"], document["version"]) == ("failed", version("orb-source"))
    assert document["error"] == "Orb repeated a pagination cursor on /invoices; stopping"
    assert f"Run failed: {document['error']}" in done.stderr


def test_httpx_request_lines_show_at_debug_only(sandbox: SandboxServer) -> None:
    quiet = run_cli("run", "--resources", "items", env={"ORB_LOG_LEVEL": "INFO"})
    debug = run_cli("run", "--resources", "items", env={"ORB_LOG_LEVEL": "DEBUG"})

    assert (quiet.returncode, debug.returncode) == (0, 0), debug.stderr[-2000:]
    assert "HTTP Request: GET" not in quiet.stderr
    assert re.search(r"Z INFO HTTP Request: GET http://127\.0\.0\.1:\d+/v1/items", debug.stderr)


def test_a_terminal_gets_progress_bars_per_table(sandbox: SandboxServer, tmp_path: Path) -> None:
    """stderr on a pseudo-terminal of 120 columns: dlt's tqdm collector draws the bars."""
    primary, secondary = pty.openpty()
    ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "orb_source.cli", "run", "--resources", "customers,alerts"],
        stdout=subprocess.PIPE,
        stderr=secondary,
        env=os.environ,
    )
    os.close(secondary)
    screen = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    assert process.wait(timeout=120) == 0
    os.close(primary)
    text = screen.decode(errors="replace")
    assert "Extract orb: Resources" in text
    assert re.search(r"alerts: \d+it \[", text), text[-2000:]
    assert re.search(r"Z INFO alerts: [\d,]+ rows read", text)
