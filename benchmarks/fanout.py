"""`fanout`: how close a full load gets to Orb's rate limits when every request takes 100 ms.

Orb's per-customer endpoints turn N customers into ~5N requests, so a large account's full load
is bound by the rate limits, not by our code, as long as enough requests are in flight. This
measures the share of that ceiling a full load reaches, the 429s it provokes, and its throughput
against the same pipeline at concurrency 1.

The concurrency-1 baseline at 100 ms per request would take ~10 minutes on the 1,000-customer
account, so it runs on a 100-customer account with the same latency and limits, and the two are
compared by throughput (requests per second), not by wall time.

Request counts come from the sandbox process itself (`benchmarks.sandbox_process` writes its
per-route, per-status reply counts when it stops); the credit-balance class is exactly the
route `GET /customers/{id}/credits`, everything else is the read class. The runner's own
client-side counts, when it reports them, are shown alongside as a cross-check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orb_source.client import RateLimits

from .common import (
    ACCOUNT_NOW,
    SandboxProcess,
    Section,
    Target,
    Workspace,
    pct,
    require_ok,
    route_status,
    table,
)

LATENCY = 0.1
CREDIT_BALANCE_ROUTE = "/customers/{id}/credits"
LIMITS = RateLimits()
CEILING_TARGET = 0.85
THROTTLED_TARGET = 0.01
SPEEDUP_TARGET = 8.0


@dataclass
class Throughput:
    """One full load against a rate-limited, 100 ms sandbox, as the sandbox counted it."""

    label: str
    customers: int
    concurrency: int
    wall_seconds: float
    extract_seconds: float
    sent: int
    rejected: int
    served: int
    served_credit_balance: int
    max_in_flight: int
    sandbox_cpu: float
    pipeline_cpu: float
    client: dict[str, Any] | None
    steps: dict[str, float]
    windows: dict[str, list[float]]

    @property
    def ceiling_seconds(self) -> float:
        """The fastest any client could be: each class at exactly its documented rate."""
        return max(self.served / LIMITS.read, self.served_credit_balance / LIMITS.credit_balance)

    @property
    def ceiling_share(self) -> float:
        return self.ceiling_seconds / self.wall_seconds

    @property
    def per_second(self) -> float:
        return self.served / self.wall_seconds

    @property
    def ceiling_per_second(self) -> float:
        """Requests per second at the ceiling, for this request mix."""
        return self.served / self.ceiling_seconds


def measure(label: str, customers: int, concurrency: int | None) -> Throughput:
    """A full load in its own process, against a sandbox process of its own."""
    options = {} if concurrency is None else {"max_concurrency": concurrency}
    sandbox = SandboxProcess(customers=customers, latency=LATENCY, rate_limit=True)
    with sandbox, Workspace("fanout") as ws:
        result = ws.run(sandbox.base_url, sandbox.api_key, full_refresh=True, **options)
    require_ok(result, f"{label} full load")
    stats = sandbox.stats
    replies = route_status(stats)
    served = sum(n for (_, status), n in replies.items() if status != 429)
    served_cb = sum(
        n
        for (route, status), n in replies.items()
        if route == CREDIT_BALANCE_ROUTE and status != 429
    )
    return Throughput(
        label=label,
        customers=customers,
        concurrency=concurrency or 32,
        wall_seconds=result["wall_seconds"],
        extract_seconds=result["steps"].get("extract")
        or max(result["table_seconds"].values(), default=0.0),
        sent=stats["requests"],
        rejected=stats["rejected_429"],
        served=served,
        served_credit_balance=served_cb,
        max_in_flight=stats["max_in_flight"],
        sandbox_cpu=stats["cpu_seconds"],
        pipeline_cpu=result["cpu_seconds"],
        client=result.get("requests"),
        steps=result["steps"],
        windows=stats.get("class_windows", {}),
    )


def breakdown(r: Throughput) -> str:
    """Where one run's wall time went, and when each rate class was busy."""
    normalize, load = r.steps.get("normalize", 0.0), r.steps.get("load", 0.0)
    other = r.wall_seconds - r.extract_seconds - normalize - load
    text = (
        f"{r.label}: extract {r.extract_seconds:.1f} s"
        f" ({r.ceiling_seconds / r.extract_seconds:.1%} of the ceiling), normalize"
        f" {normalize:.1f} s, load {load:.1f} s, other {other:.1f} s (key check, lock, sweep)"
    )
    for klass, (first, last, count) in sorted(r.windows.items()):
        rate = (count - 1) / (last - first) if last > first else 0.0
        text += (
            f"; {klass} requests from {first:.1f} s to {last:.1f} s after the first request"
            f" ({rate:.1f}/s)"
        )
    return text + "."


def run(quick: bool = False) -> Section:
    """The fan-out full load and its concurrency-1 baseline, in the same invocation."""
    customers, baseline_customers = (150, 15) if quick else (1000, 100)
    command = "python -m benchmarks fanout" + (" --quick" if quick else "")
    section = Section("fanout: full load against 100 ms latency and Orb's live limits", command)
    main = measure("fan-out (default concurrency)", customers, None)
    base = measure("baseline (concurrency 1)", baseline_customers, 1)
    runs = [main, base]
    section.lines += [
        f"Sandbox in its own process: {LATENCY * 1000:.0f} ms added to every request, live"
        f" limits enforced with 429 + Retry-After (read {LIMITS.read:g}/s, credit balance"
        f" {LIMITS.credit_balance:g}/s); accounts from `generate_account(customers=N, seed=42,"
        f" now={ACCOUNT_NOW})`. Each full load (`run_pipeline(full_refresh=True)`) runs"
        f" in a fresh process. The concurrency-1 baseline runs on a {baseline_customers}-customer"
        f" account (a {customers:,}-customer one would take ~10x longer at one request at a"
        " time); the two are compared by **throughput**, successful requests per second.",
        "",
        "Ceiling time = max(successful requests / 100, successful credit-balance requests /"
        " 10) s; ceiling share = ceiling time / wall time. Requests are counted by the sandbox"
        " process (per route and status, written when it stops).",
        "",
        *table(
            [
                "run",
                "customers",
                "concurrency",
                "requests",
                "429s",
                "credit-balance",
                "wall s",
                "extract s",
                "req/s",
                "ceiling s",
                "ceiling share",
                "max in flight",
            ],
            [
                [
                    r.label,
                    f"{r.customers:,}",
                    r.concurrency,
                    f"{r.sent:,}",
                    f"{r.rejected:,}",
                    f"{r.served_credit_balance:,}",
                    f"{r.wall_seconds:.1f}",
                    f"{r.extract_seconds:.1f}",
                    f"{r.per_second:.1f}",
                    f"{r.ceiling_seconds:.1f}",
                    f"{r.ceiling_share:.1%}",
                    r.max_in_flight,
                ]
                for r in runs
            ],
        ),
        "",
    ]
    speedup = main.per_second / base.per_second
    bound = main.ceiling_per_second / base.per_second
    section.lines += [
        f"Throughput ratio fan-out / concurrency 1: **{speedup:.1f}x**"
        f" ({main.per_second:.1f} vs {base.per_second:.1f} req/s). For this request mix the"
        f" rate limits cap any client at {main.ceiling_per_second:.1f} req/s, i.e. at"
        f" {bound:.1f}x this baseline.",
        "",
        "Where the time went (dlt's trace; request times from the sandbox's log):",
        "",
        *[f"- {breakdown(r)}" for r in runs],
        "",
        "CPU seconds (pipeline process / sandbox process): "
        + "; ".join(f"{r.label} {r.pipeline_cpu:.1f} / {r.sandbox_cpu:.1f}" for r in runs)
        + ".",
    ]
    clients = [(r.label, r.client) for r in runs if r.client is not None]
    if clients:
        section.lines += [
            "",
            "Client-side counts (`RunReport.requests`, the source's client only): "
            + "; ".join(
                f"{label}: {client['requests']:,} requests {client['by_class']},"
                f" {client['throttled']} retried after a 429"
                for label, client in clients
            )
            + ".",
        ]
    throttled_share = main.rejected / main.sent if main.sent else 0.0
    section.targets += [
        Target(
            "share of the rate-limit ceiling",
            f"{main.ceiling_share:.1%}",
            f">= {CEILING_TARGET:.0%}",
            main.ceiling_share >= CEILING_TARGET,
        ),
        Target(
            "requests answered 429",
            f"{main.rejected:,} ({pct(main.rejected, main.sent)})",
            f"< {THROTTLED_TARGET:.0%}",
            throttled_share < THROTTLED_TARGET,
        ),
        Target(
            "throughput vs concurrency 1",
            f"{speedup:.1f}x",
            f">= {SPEEDUP_TARGET:g}x",
            speedup >= SPEEDUP_TARGET,
        ),
    ]
    return section
