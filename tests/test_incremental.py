"""Exact mirror: incremental runs catch updates and deletions, round after round."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import dlt

from orb_source.catalog import TABLES
from orb_source.runner import run_pipeline
from orb_source.sandbox import Account, SandboxServer, simulate_day
from tests.warehouse import assert_mirror, fetch_table

VOLATILE = {"synced_at", "_dlt_load_id", "_dlt_id"}


def table_contents(pipeline: dlt.Pipeline) -> dict[str, dict[str, dict[str, Any]]]:
    return {
        table: {
            row_id: {k: v for k, v in row.items() if k not in VOLATILE}
            for row_id, row in fetch_table(pipeline, table).items()
        }
        for table in TABLES
    }


def test_three_days_of_changes_then_a_quiet_run(
    sandbox: SandboxServer, account: Account, pipeline: dlt.Pipeline
) -> None:
    run_pipeline(pipeline=pipeline)
    assert_mirror(pipeline, account)
    rng = random.Random(2026)

    for _ in range(3):
        with account.lock:
            changes = simulate_day(account, rng)
        assert len(changes) >= 15
        run_pipeline(pipeline=pipeline)
        assert_mirror(pipeline, account)

    for table in ("customers", "invoices", "invoice_line_items", "top_ups", "alerts"):
        deleted = {i for i, row in fetch_table(pipeline, table).items() if row["deleted_at"]}
        assert deleted and deleted == account.gone(table) & set(fetch_table(pipeline, table)), table

    before = table_contents(pipeline)
    run_pipeline(pipeline=pipeline)
    assert table_contents(pipeline) == before


def test_a_new_destination_file_gets_a_full_sync_not_an_incremental_one(
    sandbox: SandboxServer, account: Account, pipeline: dlt.Pipeline, tmp_path: Path
) -> None:
    run_pipeline(pipeline=pipeline)
    (tmp_path / "orb_billing.duckdb").unlink()
    with account.lock:
        simulate_day(account, random.Random(7))

    report = run_pipeline(pipeline=pipeline)

    assert_mirror(pipeline, account)
    loaded = {summary.table: summary.rows for summary in report.tables}
    assert loaded["invoices"] == len(account.objects("invoices"))
    assert "syncing from scratch" not in " ".join(report.schema_changes)
