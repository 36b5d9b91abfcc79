"""Airflow DAG: one task per hour calling the same Python API as the CLI.

State lives in the destination as well as the pipeline folder, so a fresh worker restores it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.decorators import dag, task


@dag(schedule=timedelta(hours=1), start_date=datetime(2026, 1, 1), catchup=False, max_active_runs=1)
def orb_billing() -> None:
    @task(retries=2, retry_delay=timedelta(minutes=5))
    def sync() -> str:
        from orb_source import run_pipeline

        return run_pipeline(destination="postgres").format()

    sync()


orb_billing()
