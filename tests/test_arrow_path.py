"""The Arrow path loads exactly what dlt's dict normalizer loads: tables, columns, types, rows."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import dlt
import pytest

from orb_source.runner import make_pipeline, run_pipeline
from orb_source.sandbox import Account, SandboxServer, simulate_day
from orb_source.source import ARROW_TABLES
from tests.warehouse import assert_mirror, query


def column_types(pipeline: dlt.Pipeline) -> dict[tuple[str, str], str]:
    rows = query(
        pipeline,
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        f" WHERE table_schema = '{pipeline.dataset_name}' AND column_name NOT LIKE '_dlt%'",
    )
    return {(table, column): data_type for table, column, data_type in rows}


def arrow_family(pipeline: dlt.Pipeline) -> list[str]:
    return sorted(
        {table for table, _ in column_types(pipeline) if table.split("__")[0] in ARROW_TABLES}
    )


def contents(pipeline: dlt.Pipeline, table: str) -> Counter[tuple[Any, ...]]:
    """Rows without dlt's bookkeeping; child rows keyed by their root object's Orb id.

    `synced_at` and the time in `deleted_at` are each pipeline's own run times."""
    root = table.split("__")[0]
    columns = sorted(c for t, c in column_types(pipeline) if t == table and c != "synced_at")
    select = ", ".join("c.deleted_at IS NULL" if c == "deleted_at" else f"c.{c}" for c in columns)
    if root == table:
        sql = f"SELECT {select} FROM {{{table}}} c"
    else:
        sql = (
            f"SELECT r.id, c._dlt_list_idx, {select} FROM {{{table}}} c"
            f" JOIN {{{root}}} r ON c._dlt_root_id = r._dlt_id"
        )
    return Counter(tuple(map(str, row)) for row in query(pipeline, sql))


@pytest.fixture
def both_paths(
    sandbox: SandboxServer, account: Account, tmp_path: Path
) -> tuple[dlt.Pipeline, dlt.Pipeline]:
    arrow = make_pipeline(dataset_name="orb_arrow", pipelines_dir=str(tmp_path / "arrow"))
    dicts = make_pipeline(dataset_name="orb_dicts", pipelines_dir=str(tmp_path / "dicts"))
    rng = random.Random(3)
    for day in range(2):
        if day:
            with account.lock:
                simulate_day(account, rng)
        run_pipeline(pipeline=arrow, arrow=True)
        run_pipeline(pipeline=dicts, arrow=False)
    return arrow, dicts


def test_same_tables_columns_and_types(both_paths: tuple[dlt.Pipeline, dlt.Pipeline]) -> None:
    arrow, dicts = both_paths
    assert arrow_family(arrow) == arrow_family(dicts)
    assert len(arrow_family(arrow)) >= 7
    assert column_types(arrow) == column_types(dicts)


def test_same_rows_after_a_day_of_changes(
    both_paths: tuple[dlt.Pipeline, dlt.Pipeline], account: Account
) -> None:
    arrow, dicts = both_paths
    for table in arrow_family(arrow):
        assert contents(arrow, table) == contents(dicts, table), table
    assert_mirror(arrow, account)
