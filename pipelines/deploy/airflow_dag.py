"""Airflow DAG: one task per hour calling the same Python API as the CLI.

`run_pipeline` takes the run lock, finishes a crashed run's load, restores state from the
destination on a fresh worker, syncs and sweeps deletions; the task returns the run summary
(the `--summary-json` document) as its XCom. The API key and the destination's credentials
come from the worker's environment or `.dlt/secrets.toml` (`ORB_API_KEY`,
`DESTINATION__POSTGRES__CREDENTIALS`). Written for Airflow 3 (`airflow.sdk`); on Airflow 2 the
same decorators come from `airflow.decorators`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

try:
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2
    from airflow.decorators import dag, task

DESTINATION = "postgres"


@dag(
    schedule=timedelta(hours=1),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["orb"],
)
def orb_billing() -> None:
    @task(retries=2, retry_delay=timedelta(minutes=5))
    def sync() -> dict[str, Any]:
        from orb_source import run_pipeline

        return run_pipeline(destination=DESTINATION).to_json()

    sync()


orb_billing_dag = orb_billing()
