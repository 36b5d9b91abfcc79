"""Sync Orb into DuckDB (or any dlt destination) with plain dlt calls.

    ORB_API_KEY=... python pipelines/orb_pipeline.py

`orb_source.run_pipeline()` does the same plus a run lock, recovery of a crashed run's
package, preflight checks of the key and destination, and the refusal of another Orb account
than the dataset holds; this script shows the dlt pieces on their own.
"""

from __future__ import annotations

import dlt

from orb_source import orb, sweep_deletions


def load_orb(destination: str = "duckdb", full_refresh: bool = False) -> None:
    pipeline = dlt.pipeline(
        pipeline_name="orb_billing", destination=destination, dataset_name="orb"
    )
    load_info = pipeline.run(orb(full_refresh=full_refresh), loader_file_format="parquet")
    sweep_deletions(pipeline)
    print(load_info)


if __name__ == "__main__":
    load_orb()
