"""The sandbox as a separate process that can also write its request counts when stopped.

`orb-pipeline sandbox` can neither set `line_items_per_invoice` nor report what it served, and
the benchmarks need both: a large invoice account for `cpu`, and exact per-route request and
429 counts for `fanout`. This serves the same `SandboxServer` with the same live rate limits,
and on SIGTERM writes the server's stats, its own CPU time and peak RSS as JSON.

    python -m benchmarks.sandbox_process --port 8484 --customers 2500 --line-items 8 \\
        --now 2026-11-01T12:00:00+00:00
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from orb_source.client import RateLimits
from orb_source.sandbox import SandboxServer, generate_account
from orb_source.sandbox.api import resolve
from orb_source.sandbox.server import rate_class


def snapshot(server: SandboxServer) -> dict[str, Any]:
    """The server's stats in JSON-friendly form, plus this process's CPU time and peak RSS.

    `route_status` (replies per route and status) is derived from the server's request log
    when it keeps one; without it, it is left out and readers fall back to `by_route`.
    """
    stats = server.stats
    usage = resource.getrusage(resource.RUSAGE_SELF)
    snap: dict[str, Any] = {
        "requests": stats.requests,
        "by_route": dict(stats.by_route),
        "rows_by_route": dict(stats.rows_by_route),
        "status_counts": {str(k): v for k, v in stats.status_counts.items()},
        "rejected_429": stats.rejected_429,
        "max_in_flight": server.max_in_flight,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "maxrss_kb": usage.ru_maxrss,
    }
    log = getattr(stats, "log", None)
    if log is not None:
        entries = [(arrived, resolve(path)[0], status) for arrived, path, status in list(log)]
        counts = Counter((route, status) for _, route, status in entries)
        snap["route_status"] = [[route, status, n] for (route, status), n in counts.items()]
        snap["class_windows"] = _class_windows(entries)
    return snap


def _class_windows(entries: list[tuple[float, str, int]]) -> dict[str, list[float]]:
    """Per rate class: first and last arrival (seconds after the first request) and count.

    Shows whether the slow credit-balance class started early and ran at its limit throughout.
    """
    if not entries:
        return {}
    origin = min(arrived for arrived, _, _ in entries)
    windows: dict[str, list[float]] = {}
    for arrived, route, _ in entries:
        klass = rate_class(route)
        at = arrived - origin
        window = windows.setdefault(klass, [at, at, 0.0])
        window[0], window[1], window[2] = min(window[0], at), max(window[1], at), window[2] + 1
    return windows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sandbox_process")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--line-items", type=int, default=None, help="line items per invoice")
    parser.add_argument(
        "--now", type=datetime.fromisoformat, default=None, help="account clock (ISO); default now"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--rate-limit", action="store_true", help="Orb's live limits, with 429s")
    parser.add_argument("--stats-file", type=Path, default=None, help="JSON written on exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    account = generate_account(
        customers=args.customers,
        seed=args.seed,
        now=args.now,
        line_items_per_invoice=args.line_items,
    )
    limits = RateLimits()
    rate_limits = limits.by_class() if args.rate_limit else None
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    server = SandboxServer(
        account, port=args.port, latency=args.latency, rate_limits=rate_limits, retry_after=True
    )
    with server:
        print(f"ready {server.base_url} {server.api_key}", flush=True)
        while not stopped.wait(0.2):
            pass
    if args.stats_file is not None:
        args.stats_file.write_text(json.dumps(snapshot(server)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
