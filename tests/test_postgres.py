"""PostgreSQL, really started: the same exact mirror as DuckDB, with its own types and indexes."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import dlt
import pytest

from orb_source.catalog import ARROW_TABLES
from orb_source.runner import make_pipeline, run_pipeline
from orb_source.sandbox import Account, SandboxServer, simulate_day
from orb_source.schema import MONEY
from orb_source.sweep import apply_rules
from tests.warehouse import assert_mirror, fetch_table, query


def test_a_full_load_into_postgres_mirrors_every_table(
    sandbox: SandboxServer, account: Account, postgres_url: str, tmp_path: Path
) -> None:
    pipeline = make_pipeline("postgres", pipelines_dir=str(tmp_path / "pipelines"))
    run_pipeline(pipeline=pipeline)

    assert_mirror(pipeline, account)
    columns = {
        name: (kind, scale)
        for name, kind, scale in query(
            pipeline,
            "SELECT column_name, data_type, numeric_scale FROM information_schema.columns"
            " WHERE table_schema = 'orb' AND table_name = 'invoices'",
        )
    }
    assert columns["total"] == ("numeric", MONEY["scale"])
    assert columns["invoice_date"][0] == "timestamp with time zone"
    assert columns["metadata"][0] == "jsonb"


def unique_indexes(pipeline: dlt.Pipeline) -> dict[str, set[str]]:
    """Columns with a unique index of their own, by table."""
    found: dict[str, set[str]] = {}
    for table, definition in query(
        pipeline, "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'orb'"
    ):
        if definition.startswith("CREATE UNIQUE INDEX"):
            column = definition.rsplit("(", 1)[1].rstrip(")")
            found.setdefault(table, set()).add(column)
    return found


class Explaining:
    """An SQL client that plans each statement (EXPLAIN) instead of running it."""

    def __init__(self, sql: Any) -> None:
        self.sql = sql
        self.plans: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sql, name)

    def execute_sql(self, statement: str, *args: Any) -> None:
        rows = self.sql.execute_sql(f"EXPLAIN {statement}", *args)
        self.plans[statement] = "\n".join(row[0] for row in rows)


@pytest.mark.slow
def test_incremental_rounds_into_postgres_mirror_updates_and_deletions(
    sandbox: SandboxServer, account: Account, postgres_url: str, tmp_path: Path
) -> None:
    """Full load, then days of changes with deletions; the sweep's statements are planned as
    joins on indexed keys, never as a subquery per row."""
    pipeline = make_pipeline("postgres", pipelines_dir=str(tmp_path / "pipelines"))
    run_pipeline(pipeline=pipeline)
    rng = random.Random(2026)
    for _ in range(3):
        with account.lock:
            changes = simulate_day(account, rng)
        assert len(changes) >= 15
        run_pipeline(pipeline=pipeline)
        assert_mirror(pipeline, account)

    for table in ("customers", "invoices", "invoice_line_items", "top_ups", "alerts"):
        rows = fetch_table(pipeline, table)
        deleted = {row_id for row_id, row in rows.items() if row["deleted_at"]}
        assert deleted and deleted == account.gone(table) & set(rows), table

    indexed = unique_indexes(pipeline)
    arrow_tables = [
        t for t in pipeline.default_schema.data_table_names() if t.split("__")[0] in ARROW_TABLES
    ]
    assert len(arrow_tables) >= 6
    for table in arrow_tables:
        assert "_dlt_id" in indexed.get(table, set()), table

    explaining = Explaining(None)
    listings = pipeline.state["sources"]["orb"]["listings"]
    with pipeline.sql_client() as sql:
        explaining.sql = sql
        apply_rules(explaining, listings, pipeline.default_schema)  # type: ignore[arg-type]
    plans = explaining.plans
    assert len(plans) >= 20
    for statement, plan in plans.items():
        assert "SubPlan" not in plan, f"{statement}\n{plan}"
    joined = [plan for sql, plan in plans.items() if " AS p " in sql or " AS r " in sql]
    assert len(joined) >= 10
    for plan in joined:
        assert "Join" in plan or "Index" in plan, plan


@pytest.mark.parametrize("table", ["customers", "invoices"])
def test_each_test_gets_an_empty_database(postgres_url: str, table: str) -> None:
    import psycopg2

    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'orb'")
        assert cursor.fetchone() == (0,)
        cursor.execute("CREATE SCHEMA orb")
        cursor.execute(f"CREATE TABLE orb.{table} (id text)")
