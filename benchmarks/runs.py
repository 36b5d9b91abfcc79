"""`runs`: whole runs of the default account into DuckDB, the file held open for each run
against the same runs with the file left to dlt.

dlt opens the DuckDB file for each load job and check and closes it when the last connection
ends; each close checkpoints the database. The runner holds one connection for the whole run
(`destinations.opened`). This measures a first load and a second run of the sandbox's default
account both ways, each variant in a workspace and pipeline process of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .common import ACCOUNT_NOW, SandboxProcess, Section, Target, Workspace, require_ok, table

VARIANTS = {"held open (default)": False, "opened per job (before)": True}


@dataclass
class Runs:
    """A variant's first load and second run: wall and load-step seconds."""

    variant: str
    first: dict[str, Any]
    second: dict[str, Any]

    @property
    def wall_seconds(self) -> float:
        return float(self.first["wall_seconds"] + self.second["wall_seconds"])


def measure(variant: str, customers: int, per_job: bool) -> Runs:
    with SandboxProcess(customers=customers) as sandbox, Workspace("runs") as ws:
        first = ws.run(sandbox.base_url, sandbox.api_key, duckdb_per_job=per_job)
        require_ok(first, f"{variant}: first load")
        second = ws.run(sandbox.base_url, sandbox.api_key, duckdb_per_job=per_job)
        require_ok(second, f"{variant}: second run")
    return Runs(variant, first, second)


def run(quick: bool = False) -> Section:
    """Both variants twice, interleaved (held, per job, per job, held); the faster of each."""
    customers = 25 if quick else 100
    command = "python -m benchmarks runs" + (" --quick" if quick else "")
    section = Section("runs: whole runs into DuckDB, the file held open vs opened per job", command)
    measured: dict[str, list[Runs]] = {variant: [] for variant in VARIANTS}
    for variant in [*VARIANTS, *reversed(VARIANTS)]:
        measured[variant].append(measure(variant, customers, VARIANTS[variant]))
    best = {variant: min(runs, key=lambda r: r.wall_seconds) for variant, runs in measured.items()}

    def seconds(result: dict[str, Any], step: str | None = None) -> str:
        value = result["wall_seconds"] if step is None else result["steps"].get(step, 0.0)
        return f"{value:.1f}"

    section.lines += [
        f"Account: `generate_account(customers={customers}, seed=42, now={ACCOUNT_NOW})`, the"
        " sandbox in a process of its own, zero latency. Run: `run_pipeline()` into a new"
        " DuckDB file, then `run_pipeline()` again (incremental, nothing changed), each in a"
        " fresh process. Each variant is measured twice, in the order held, per job, per job,"
        " held, and its faster pair of runs is shown.",
        "",
        *table(
            ["variant", "first load s", "its load step s", "second run s", "its load step s"],
            [
                [
                    variant,
                    seconds(runs.first),
                    seconds(runs.first, "load"),
                    seconds(runs.second),
                    seconds(runs.second, "load"),
                ]
                for variant, runs in best.items()
            ],
        ),
    ]
    held, per_job = (best[variant] for variant in VARIANTS)
    section.targets.append(
        Target(
            "both runs' wall time, opened per job / held open",
            f"{per_job.wall_seconds / held.wall_seconds:.2f}x",
            "-",
            None,
        )
    )
    return section
