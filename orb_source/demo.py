"""`orb-pipeline demo`: the whole pipeline against a generated account, kept apart from real data.

The demo has a DuckDB file, pipeline name and state of its own, whatever the environment says
about destinations, so it never touches the data or the cursors of `orb-pipeline run`. Each
demo serves a newly generated account, so each starts from an empty file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dlt

from .runner import DEFAULT_DATASET, RunReport, make_pipeline, run_pipeline

DEMO_PIPELINE = "orb_demo"
DEMO_FILE = "orb_demo.duckdb"


def demo_pipeline(pipelines_dir: str | None = None) -> dlt.Pipeline:
    """The demo's pipeline: `orb_demo`, writing `./orb_demo.duckdb` (never `DESTINATION__*`)."""
    destination = dlt.destinations.duckdb(credentials=str(Path(DEMO_FILE).absolute()))
    return make_pipeline(destination, DEFAULT_DATASET, pipelines_dir, DEMO_PIPELINE)


def run_demo(customers: int = 100, seed: int = 42, pipelines_dir: str | None = None) -> RunReport:
    """Generate an account, serve it on loopback and sync it into a fresh demo file."""
    from .sandbox import SandboxServer, generate_account

    print(f"Generating a sandbox account with {customers} customers...", flush=True)
    account = generate_account(customers=customers, seed=seed)
    pipeline = demo_pipeline(pipelines_dir).drop()
    for leftover in (Path(DEMO_FILE), Path(f"{DEMO_FILE}.wal")):
        leftover.unlink(missing_ok=True)
    with (
        SandboxServer(account) as server,
        _environment(ORB_API_KEY=server.api_key, ORB_BASE_URL=server.base_url),
    ):
        print(f"Sandbox serving the Orb API at {server.base_url}", flush=True)
        return run_pipeline(pipeline=pipeline)


def next_steps() -> str:
    """What to do after the demo: look at its data, then sync a real account."""
    path = Path(DEMO_FILE).absolute()
    return "\n".join(
        [
            f"Loaded into {path}, dataset `{DEFAULT_DATASET}` (pipeline {DEMO_PIPELINE}; each demo"
            " replaces it). Your own data and state are untouched.",
            "",
            "Next steps:",
            "  Query it:",
            f"    .venv/bin/python -c \"import duckdb; print(duckdb.connect('{DEMO_FILE}').sql("
            f"'select currency, status, count(*), sum(total) from {DEFAULT_DATASET}.invoices"
            " where deleted_at is null group by 1, 2 order by 1, 2'))\"",
            "  Reports: `make report` writes reports/revenue.html and reports/credits.html;",
            "    or open notebooks/revenue.ipynb and notebooks/credits.ipynb in Jupyter.",
            "  Sync your Orb account into ./orb_billing.duckdb:",
            "    export ORB_API_KEY=...   # Orb: Settings > API keys",
            "    make run                 # = .venv/bin/orb-pipeline run",
        ]
    )


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
