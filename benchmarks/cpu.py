"""`cpu`: rows per second and peak memory of a large invoice load, Arrow path vs dict path.

Invoices with their line items are the bulk of any Orb account, and at zero latency the load is
bound by the pipeline's own CPU: parsing, shaping, dlt's normalizer, Parquet, DuckDB. The
source's `arrow` option picks between explicit Arrow tables (`arrow=True`) and dlt's dict
normalizer (`arrow=False`); both run in a fresh process each, so `ru_maxrss` is that run's
peak, against a zero-latency sandbox in a process of its own.

If `orb()` has no `arrow` option yet, only the dict path (today's behaviour) is measured and the
report says so.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from .common import (
    ACCOUNT_NOW,
    BenchmarkError,
    SandboxProcess,
    Section,
    Target,
    Workspace,
    require_ok,
    table,
)

RESOURCES = ["invoices", "invoice_line_items"]
LINE_ITEMS_PER_INVOICE = 8
RSS_TARGET_MB = 1536.0
SPEED_TARGET = 3.0


@dataclass
class Load:
    """One measured variant."""

    variant: str
    options: dict[str, Any]
    wall_seconds: float
    cpu_seconds: float
    rows: int
    all_rows: int
    line_items: int
    maxrss_mb: float
    sandbox_cpu: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.wall_seconds

    @property
    def rows_per_cpu_second(self) -> float:
        return self.rows / self.cpu_seconds if self.cpu_seconds else 0.0


def arrow_option() -> tuple[bool, object]:
    """Whether `orb()` takes `arrow`, and its default (declared by the dlt source behind it)."""
    from orb_source.source import orb_tables

    parameter = inspect.signature(orb_tables).parameters.get("arrow")
    if parameter is None:
        return False, None
    return True, parameter.default


def measure(variant: str, customers: int, options: dict[str, Any]) -> Load:
    sandbox = SandboxProcess(customers=customers, line_items=LINE_ITEMS_PER_INVOICE)
    with sandbox, Workspace("cpu") as ws:
        result = ws.run(
            sandbox.base_url, sandbox.api_key, resources=RESOURCES, full_refresh=True, **options
        )
    require_ok(result, f"{variant} load")
    tables = result["tables"]
    all_rows = sum(n for name, n in result["all_row_counts"].items() if not name.startswith("_"))
    return Load(
        variant=variant,
        options=options,
        wall_seconds=result["wall_seconds"],
        cpu_seconds=result["cpu_seconds"],
        rows=sum(tables.get(name, 0) for name in RESOURCES),
        all_rows=all_rows,
        line_items=tables.get("invoice_line_items", 0),
        maxrss_mb=result["maxrss_kb"] / 1024,
        sandbox_cpu=sandbox.stats.get("cpu_seconds", 0.0),
    )


def variants() -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """The variants to measure, dict first, and a sentence on the `arrow` option."""
    accepted, default = arrow_option()
    if not accepted:
        note = "`arrow` option NOT accepted by `orb()` yet: only today's (dict) path was measured."
        return [("dict (no arrow option)", {})], note
    note = f"`arrow` option accepted by `orb()` (default `{default!r}`)."
    return [("dict (arrow=False)", {"arrow": False}), ("arrow (arrow=True)", {"arrow": True})], note


def _first_lines(text: str, count: int = 4) -> str:
    return " ".join(line.strip() for line in text.strip().splitlines()[:count] if line.strip())


def run(quick: bool = False) -> Section:
    """Both variants against the same account, in the same invocation."""
    customers = 300 if quick else 2500
    command = "python -m benchmarks cpu" + (" --quick" if quick else "")
    section = Section("cpu: invoices with line items into DuckDB, Arrow vs dict", command)
    wanted, note = variants()
    runs: dict[str, list[Load]] = {variant: [] for variant, _ in wanted}
    failures: dict[str, str] = {}
    # in the order dict, arrow, arrow, dict: CPU shared with other work weighs on both alike
    for variant, options in [*wanted, *reversed(wanted)]:
        if variant in failures:
            continue
        try:
            runs[variant].append(measure(variant, customers, options))
        except BenchmarkError as exc:
            failures[variant] = _first_lines(str(exc))
    loads = {
        variant: min(measured, key=lambda load: load.wall_seconds)
        for variant, measured in runs.items()
        if measured and variant not in failures
    }
    section.lines += [
        f"Account: `generate_account(customers={customers}, seed=42, now={ACCOUNT_NOW},"
        f" line_items_per_invoice={LINE_ITEMS_PER_INVOICE})`, zero latency, no server rate"
        " limit, served by a fresh sandbox process per variant (no warm caches). Run:"
        f" `run_pipeline(resources={RESOURCES}, full_refresh=True, **variant)`"
        " in a fresh process per variant. rows = invoices + invoice_line_items loaded; all"
        " rows adds dlt's nested child tables (sub line items, tax amounts, ...). Peak RSS ="
        " `ru_maxrss` of the pipeline process. Each variant is run twice, in the order dict,"
        " arrow, arrow, dict, and its fastest run is shown.",
        "",
        *table(
            [
                "variant",
                "rows",
                "line items",
                "all rows",
                "wall s",
                "rows/s",
                "pipeline CPU s",
                "rows/CPU s",
                "peak RSS",
                "sandbox CPU s",
            ],
            [
                [
                    load.variant,
                    f"{load.rows:,}",
                    f"{load.line_items:,}",
                    f"{load.all_rows:,}",
                    f"{load.wall_seconds:.1f}",
                    f"{load.rows_per_second:,.0f}",
                    f"{load.cpu_seconds:.1f}",
                    f"{load.rows_per_cpu_second:,.0f}",
                    f"{load.maxrss_mb:,.0f} MB",
                    f"{load.sandbox_cpu:.1f}",
                ]
                for load in loads.values()
            ]
            + [[variant, "FAILED", "-", "-", "-", "-", "-", "-", "-", "-"] for variant in failures],
        ),
        "",
        note,
    ]
    for variant, message in failures.items():
        section.lines += ["", f"{variant} FAILED: {message}"]
    dict_load = next((load for name, load in loads.items() if name.startswith("dict")), None)
    arrow_load = loads.get("arrow (arrow=True)")
    if dict_load and arrow_load:
        speed = arrow_load.rows_per_second / dict_load.rows_per_second
        section.lines += [
            "",
            f"Arrow / dict: **{speed:.2f}x** rows per second,"
            f" {arrow_load.maxrss_mb / dict_load.maxrss_mb:.2f}x peak RSS,"
            f" {arrow_load.rows_per_cpu_second / dict_load.rows_per_cpu_second:.2f}x rows per"
            " CPU second.",
        ]
        section.targets.append(
            Target(
                "rows/s, arrow / dict",
                f"{speed:.2f}x",
                f">= {SPEED_TARGET:g}x",
                speed >= SPEED_TARGET,
            )
        )
    else:
        section.targets.append(
            Target("rows/s, arrow / dict", "not measured", f">= {SPEED_TARGET:g}x", False)
        )
    chosen = wanted[-1][0]
    chosen_load = loads.get(chosen)
    section.targets.append(
        Target(
            f"peak RSS, {chosen}",
            f"{chosen_load.maxrss_mb:,.0f} MB" if chosen_load else "run failed",
            f"< {RSS_TARGET_MB / 1024:.1f} GB",
            chosen_load.maxrss_mb < RSS_TARGET_MB if chosen_load else False,
        )
    )
    if dict_load and not chosen_load and chosen != dict_load.variant:
        section.targets.append(
            Target(
                f"peak RSS, {dict_load.variant}",
                f"{dict_load.maxrss_mb:,.0f} MB",
                f"< {RSS_TARGET_MB / 1024:.1f} GB",
                dict_load.maxrss_mb < RSS_TARGET_MB,
            )
        )
    measured = next(iter(loads.values()), None)
    if measured and measured.line_items < 200_000 and not quick:
        section.lines.append(
            f"Note: only {measured.line_items:,} line items, below the 200,000 this benchmark"
            " wants."
        )
    return section
