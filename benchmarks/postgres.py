"""`postgres`: the CPU benchmark's account loaded into PostgreSQL and into DuckDB.

Both runs load the same account (the `cpu` benchmark's) in the same invocation, each in a fresh
process against a fresh sandbox process. PostgreSQL is a throwaway server of its own, started
the way the tests start it (`tests/postgres.py`). The deletion sweep is timed apart: it runs
after dlt's load and joins every child table to its parent, which is where a warehouse without
the right plan or index loses its time.
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import BenchmarkError, SandboxProcess, Section, Target, Workspace, require_ok, table
from .cpu import LINE_ITEMS_PER_INVOICE, RESOURCES

RATIO_TARGET = 1.5
ROUNDS = 2
"""Runs per destination; the fastest of each is compared."""
SWEEP_SHARE_TARGET = 0.05


@dataclass
class Load:
    destination: str
    wall_seconds: float
    sweep_seconds: float
    steps: dict[str, float]
    rows: int
    all_rows: int

    @property
    def sweep_share(self) -> float:
        return self.sweep_seconds / self.wall_seconds


def measure(destination: str, customers: int, credentials: str | None = None) -> Load:
    sandbox = SandboxProcess(customers=customers, line_items=LINE_ITEMS_PER_INVOICE)
    with sandbox, Workspace(f"postgres-{destination}") as ws:
        result = ws.run(
            sandbox.base_url,
            sandbox.api_key,
            destination=destination,
            credentials=credentials,
            resources=RESOURCES,
            full_refresh=True,
        )
    require_ok(result, f"{destination} load")
    counts = result["all_row_counts"]
    return Load(
        destination=destination,
        wall_seconds=result["wall_seconds"],
        sweep_seconds=result["sweep_seconds"],
        steps=result["steps"],
        rows=sum(result["tables"].get(name, 0) for name in RESOURCES),
        all_rows=sum(n for name, n in counts.items() if not name.startswith("_")),
    )


def run(quick: bool = False) -> Section:
    """DuckDB, then PostgreSQL, on the same account."""
    from tests.postgres import postgres_server

    customers = 300 if quick else 2500
    command = "python -m benchmarks postgres" + (" --quick" if quick else "")
    section = Section("postgres: the cpu benchmark's account into PostgreSQL vs DuckDB", command)
    runs: dict[str, list[Load]] = {"duckdb": [], "postgres": []}
    try:
        with postgres_server() as server:
            # in the order D P P D, so CPU shared with other work weighs on both alike
            for destination in ("duckdb", "postgres", "postgres", "duckdb")[: 2 * ROUNDS]:
                credentials = server.create_database() if destination == "postgres" else None
                runs[destination].append(measure(destination, customers, credentials))
    except RuntimeError as exc:
        raise BenchmarkError(f"PostgreSQL could not be started: {exc}") from None
    duckdb, postgres = (min(runs[d], key=lambda load: load.wall_seconds) for d in runs)
    loads = [duckdb, postgres]
    section.lines += [
        f"Account: the cpu benchmark's (`customers={customers}`, `line_items_per_invoice="
        f"{LINE_ITEMS_PER_INVOICE}`), zero latency, a fresh sandbox process per run. Run:"
        f" `run_pipeline(destination=..., resources={RESOURCES}, full_refresh=True)` (Arrow"
        " path) in a fresh process per destination. PostgreSQL: a local throwaway server"
        " (`tests/postgres.py`, `fsync=off`), loaded as the runner loads it (CSV through"
        " `COPY`). Each destination is run"
        f" {ROUNDS} times, in the order DuckDB, PostgreSQL, PostgreSQL, DuckDB, and its fastest"
        " run is shown. Sweep = the deletion sweep after the load.",
        "",
        *table(
            [
                *("destination", "rows", "all rows", "wall s", "extract s", "normalize s"),
                *("load s", "sweep s", "sweep share"),
            ],
            [
                [
                    load.destination,
                    f"{load.rows:,}",
                    f"{load.all_rows:,}",
                    f"{load.wall_seconds:.1f}",
                    f"{load.steps.get('extract', 0.0):.1f}",
                    f"{load.steps.get('normalize', 0.0):.1f}",
                    f"{load.steps.get('load', 0.0):.1f}",
                    f"{load.sweep_seconds:.2f}",
                    f"{load.sweep_share:.1%}",
                ]
                for load in loads
            ],
        ),
    ]
    ratio = postgres.wall_seconds / duckdb.wall_seconds
    section.lines += ["", f"PostgreSQL / DuckDB wall time: **{ratio:.2f}x**."]
    section.targets += [
        Target(
            "wall time, PostgreSQL / DuckDB",
            f"{ratio:.2f}x",
            f"<= {RATIO_TARGET:g}x",
            ratio <= RATIO_TARGET,
        ),
        Target(
            "sweep share of the PostgreSQL run",
            f"{postgres.sweep_share:.1%}",
            f"< {SWEEP_SHARE_TARGET:.0%}",
            postgres.sweep_share < SWEEP_SHARE_TARGET,
        ),
    ]
    return section
