"""`incremental`: what a day's incremental run costs against a full refresh of the same account.

An exact mirror is only worth having if keeping it exact is cheap. This loads the sandbox's
default account in full, applies one simulated day of changes, runs incrementally, and compares
the API requests and rows each run read, per endpoint route and in total.

The sandbox runs in this process because the figures are counts, not times (its per-route
stats and `simulate_day` need the account object); each pipeline run still gets its own
process and workspace.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from orb_source.sandbox import SandboxServer, generate_account, simulate_day

from .common import ACCOUNT_NOW, Section, Target, Workspace, pct, require_ok, route_status, table
from .sandbox_process import snapshot

ROWS_TARGET = 0.30
REQUESTS_PER_CUSTOMER_TARGET = 4.4
LEDGER = "/customers/{id}/credits/ledger"
SERIES_ROUTES = frozenset(
    {"/subscriptions/{id}/usage", "/subscriptions/{id}/costs", "/events/volume"}
)
"""Usage, costs and event volume: read by timeframe, not by listing, so their figures are
reported apart; in the targets they would only dilute (rows) or inflate (requests) the rest."""
SEED = 42
MONTH_OFFSETS_DAYS = (7, 14, 21)
FIRST_FIFTEEN = (
    "customers",
    "subscriptions",
    "invoices",
    "invoice_line_items",
    "credit_notes",
    "plans",
    "prices",
    "items",
    "coupons",
    "billable_metrics",
    "alerts",
    "credit_ledger_entries",
    "credit_blocks",
    "top_ups",
    "customer_balance_transactions",
)
"""The tables of the fifteen list endpoints read before usage, costs and the rest of the
catalog: what the 4.4 requests per customer was set for. The rest add their own reads per
subscription, plan and coupon, reported beside it."""


def route_figures(server: SandboxServer) -> dict[str, tuple[int, int]]:
    """Requests and rows read per route; a retrieve-by-id that answered 200 is one row.

    Without the server's per-request log, every retrieve counts as a row (an upper bound).
    """
    stats = snapshot(server)
    replies = route_status(stats)
    figures: dict[str, tuple[int, int]] = {}
    for route, requests in stats["by_route"].items():
        rows = stats["rows_by_route"].get(route, 0)
        if route.endswith("/{id}"):
            rows = replies.get((route, 200), 0) if "route_status" in stats else requests
        figures[route] = (requests, rows)
    return figures


def ratio_cell(part: int, whole: int) -> str:
    if not whole:
        return "new" if part else "-"
    return pct(part, whole)


def measure(
    customers: int, now: datetime, resources: tuple[str, ...] | None = None
) -> tuple[
    dict[str, Any], dict[str, Any], dict[str, tuple[int, int]], dict[str, tuple[int, int]], int
]:
    """Full load, one simulated day, incremental load (of `resources` only, if given); what
    each run read, per route."""
    account = generate_account(customers=customers, seed=SEED, now=now)
    selected = {"resources": list(resources)} if resources else {}
    with Workspace("incremental") as ws, SandboxServer(account) as server:
        full = ws.run(server.base_url, server.api_key, full_refresh=True, **selected)
        require_ok(full, "full refresh")
        full_routes = route_figures(server)
        server.reset_stats()
        with account.lock:
            changes = simulate_day(account, random.Random(SEED))
        incremental = ws.run(server.base_url, server.api_key, **selected)
        require_ok(incremental, "incremental run")
        incremental_routes = route_figures(server)
    return full, incremental, full_routes, incremental_routes, len(changes)


def rows_read(routes: dict[str, tuple[int, int]]) -> int:
    """Rows of the listings, usage, costs and event volume left out (`SERIES_ROUTES`)."""
    return sum(rows for route, (_, rows) in routes.items() if route not in SERIES_ROUTES)


def requests_sent(routes: dict[str, tuple[int, int]], series: bool = False) -> int:
    return sum(req for route, (req, _) in routes.items() if (route in SERIES_ROUTES) == series)


def run(quick: bool = False) -> Section:
    """The day after `ACCOUNT_NOW` in detail, and days across the billing month in summary."""
    customers = 25 if quick else 100
    command = "python -m benchmarks incremental" + (" --quick" if quick else "")
    section = Section("incremental: one day of changes vs a full refresh", command)
    start = datetime.fromisoformat(ACCOUNT_NOW)
    full, incremental, full_routes, incremental_routes, changes = measure(customers, start)
    month = [(start, rows_read(incremental_routes), rows_read(full_routes))]
    for offset in () if quick else MONTH_OFFSETS_DAYS:
        _, _, other_full, other_incremental, _ = measure(customers, start + timedelta(days=offset))
        month.append(
            (start + timedelta(days=offset), rows_read(other_incremental), rows_read(other_full))
        )

    routes = sorted(set(full_routes) | set(incremental_routes))
    rows: list[list[Any]] = []
    totals = [0, 0, 0, 0]
    for route in routes:
        full_req, full_rows = full_routes.get(route, (0, 0))
        inc_req, inc_rows = incremental_routes.get(route, (0, 0))
        for i, value in enumerate((full_req, inc_req, full_rows, inc_rows)):
            totals[i] += value
        rows.append(
            [
                route,
                f"{full_req:,}",
                f"{inc_req:,}",
                ratio_cell(inc_req, full_req),
                f"{full_rows:,}",
                f"{inc_rows:,}",
                ratio_cell(inc_rows, full_rows),
            ]
        )
    full_req, inc_req, full_rows, inc_rows = totals
    rows.append(
        [
            "**total**",
            f"{full_req:,}",
            f"{inc_req:,}",
            pct(inc_req, full_req),
            f"{full_rows:,}",
            f"{inc_rows:,}",
            pct(inc_rows, full_rows),
        ]
    )
    section.lines += [
        f"Account: `generate_account(customers={customers}, seed={SEED}, now={ACCOUNT_NOW})`"
        f" (13 months of history); one `simulate_day(account, random.Random({SEED}))` between"
        f" the runs ({changes} changes). Rows read = objects in list pages served, plus one per"
        " retrieve-by-id answered 200. Counted by the sandbox, per route. The rows-read target"
        " and requests per customer leave out usage, costs and event volume (read by"
        " timeframe: a full read of their history would flatter the ratio), which are"
        " counted apart.",
        "",
        *table(
            [
                "route",
                "full: requests",
                "incr: requests",
                "incr/full",
                "full: rows read",
                "incr: rows read",
                "incr/full",
            ],
            rows,
        ),
        "",
        "Rows loaded per table (`RunReport.tables`):",
        "",
    ]
    tables = list(dict.fromkeys([*full["tables"], *incremental["tables"]]))
    section.lines += table(
        ["table", "full refresh", "incremental", "incr/full"],
        [
            [
                name,
                f"{full['tables'].get(name, 0):,}",
                f"{incremental['tables'].get(name, 0):,}",
                ratio_cell(incremental["tables"].get(name, 0), full["tables"].get(name, 0)),
            ]
            for name in tables
        ]
        + [
            [
                "**total**",
                f"{sum(full['tables'].values()):,}",
                f"{sum(incremental['tables'].values()):,}",
                pct(sum(incremental["tables"].values()), sum(full["tables"].values())),
            ]
        ],
    )
    section.lines += [
        "",
        f"Wall time (informational, in-process sandbox, no latency): full"
        f" {full['wall_seconds']:.1f} s, incremental {incremental['wall_seconds']:.1f} s.",
    ]
    section.lines += [
        "",
        "The same measurement with the account's clock at other days of the billing month"
        " (invoices are issued on the 1st, so the open set and the recent closed invoices vary):",
        "",
        *table(
            ["account clock", "full: rows read", "incr: rows read", "incr/full"],
            [
                [when.isoformat(), f"{whole:,}", f"{part:,}", pct(part, whole)]
                for when, part, whole in month
            ],
        ),
    ]
    worst = max(month, key=lambda point: point[1] / point[2])
    section.targets.append(
        Target(
            "rows read by the incremental run / full refresh (worst day of the month)",
            pct(worst[1], worst[2]),
            f"<= {ROWS_TARGET:.0%}",
            worst[1] / worst[2] <= ROWS_TARGET,
        )
    )
    section.targets.append(
        Target("requests by the incremental run / full refresh", pct(inc_req, full_req), "-", None)
    )
    _, _, _, first_fifteen, _ = measure(customers, start, FIRST_FIFTEEN)
    per_customer = sum(req for req, _ in first_fifteen.values()) / customers
    section.lines += [
        "",
        "The same day with only the tables of the fifteen list endpoints read before usage,"
        " costs and the rest of the catalog (`resources=`: "
        + ", ".join(FIRST_FIFTEEN)
        + "), every request the incremental run sent, the run's own checks included:",
        "",
        *table(
            ["route", "incr: requests", "incr: rows read"],
            [
                [route, f"{req:,}", f"{rows:,}"]
                for route, (req, rows) in sorted(first_fifteen.items())
            ],
        ),
    ]
    section.targets.append(
        Target(
            "requests per customer, incremental run after a day of changes, the fifteen"
            " tables read before usage, costs and the rest of the catalog",
            f"{per_customer:.2f}",
            f"<= {REQUESTS_PER_CUSTOMER_TARGET}",
            per_customer <= REQUESTS_PER_CUSTOMER_TARGET,
        )
    )
    section.targets.append(
        Target(
            "requests per customer, incremental run after a day of changes, every table"
            " (usage, costs and event volume apart)",
            f"{requests_sent(incremental_routes) / customers:.2f}",
            "-",
            None,
        )
    )
    section.targets.append(
        Target(
            "usage, costs and event volume requests per customer, incremental run",
            f"{requests_sent(incremental_routes, series=True) / customers:.2f}",
            "-",
            None,
        )
    )
    ledger_reads = incremental_routes.get(LEDGER, (0, 0))[0] / customers
    section.targets.append(
        Target("ledger requests per customer, incremental run", f"{ledger_reads:.2f}", "-", None)
    )
    return section
