"""PostgreSQL, really started: the same exact mirror as DuckDB, with its own types."""

from __future__ import annotations

from pathlib import Path

import pytest

from orb_source.runner import make_pipeline, run_pipeline
from orb_source.sandbox import Account, SandboxServer
from tests.warehouse import assert_mirror, query


def test_a_full_load_into_postgres_mirrors_every_table(
    sandbox: SandboxServer, account: Account, postgres_url: str, tmp_path: Path
) -> None:
    pipeline = make_pipeline("postgres", pipelines_dir=str(tmp_path / "pipelines"))
    run_pipeline(pipeline=pipeline)

    assert_mirror(pipeline, account)
    types = dict(
        query(
            pipeline,
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'orb' AND table_name = 'invoices'",
        )
    )
    assert types["total"] == "numeric"
    assert types["invoice_date"] == "timestamp with time zone"
    assert types["metadata"] == "jsonb"


@pytest.mark.parametrize("table", ["customers", "invoices"])
def test_each_test_gets_an_empty_database(postgres_url: str, table: str) -> None:
    import psycopg2

    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'orb'")
        assert cursor.fetchone() == (0,)
        cursor.execute("CREATE SCHEMA orb")
        cursor.execute(f"CREATE TABLE orb.{table} (id text)")
