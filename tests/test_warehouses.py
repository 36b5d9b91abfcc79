"""Cloud warehouses checked offline: each destination's dlt client, built with dummy credentials
and never connected, renders the DDL and merge SQL it would run for the schema a real load
produced. Money keeps the declared precision and scale, timestamps keep their zone, JSON stays
JSON where the warehouse has a type for it, and merges key on Orb's id or the root row."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dlt
import pytest
from dlt.common.destination import Destination
from dlt.common.schema import Schema
from dlt.destinations.impl.bigquery.bigquery import BigQueryMergeJob
from dlt.destinations.impl.databricks.databricks import DatabricksMergeJob
from dlt.destinations.impl.redshift.redshift import RedshiftMergeJob
from dlt.destinations.impl.snowflake.snowflake import SnowflakeMergeJob
from dlt.destinations.sql_jobs import SqlMergeFollowupJob

from orb_source.catalog import SHAPES
from orb_source.runner import make_pipeline, run_pipeline
from orb_source.sandbox import SandboxServer, generate_account
from orb_source.schema import MONEY

# The module's tests share a loaded fixture, built once on each worker that runs one of them
# (xdist's `worksteal` keeps a module's tests together). It is session-scoped: a module-scoped
# one is built again whenever another module's test runs between two of them on that worker.

PRECISION, SCALE = MONEY["precision"], MONEY["scale"]


def bigquery_money() -> str:
    """BigQuery's NUMERIC holds at most 9 places and 29 integer digits; BIGNUMERIC the rest."""
    fits = SCALE <= 9 and PRECISION - SCALE <= 29
    return f"{'numeric' if fits else 'bignumeric'}({PRECISION},{SCALE})"


@dataclass(frozen=True)
class Warehouse:
    destination: Callable[[], Destination[Any, Any]]
    merge_job: type[SqlMergeFollowupJob]
    money: str
    timestamp: str
    json: str


WAREHOUSES = {
    "motherduck": Warehouse(
        lambda: dlt.destinations.motherduck(credentials="md:orb?motherduck_token=dummy"),
        SqlMergeFollowupJob,
        f"decimal({PRECISION},{SCALE})",
        "timestamp with time zone",
        "json",
    ),
    "snowflake": Warehouse(
        lambda: dlt.destinations.snowflake(
            credentials="snowflake://loader:dummy@account/orb_db?warehouse=wh&role=loader"
        ),
        SnowflakeMergeJob,
        f"number({PRECISION},{SCALE})",
        "timestamp_ltz",
        "variant",
    ),
    "bigquery": Warehouse(
        lambda: dlt.destinations.bigquery(
            credentials={
                "project_id": "orb-project",
                "client_email": "loader@orb-project.iam.gserviceaccount.com",
                "private_key": "dummy",
            }
        ),
        BigQueryMergeJob,
        bigquery_money(),
        "timestamp",
        "json",
    ),
    "databricks": Warehouse(
        lambda: dlt.destinations.databricks(
            credentials={
                "server_hostname": "adb-1.azuredatabricks.net",
                "http_path": "/sql/1.0/warehouses/1",
                "access_token": "dummy",
                "catalog": "main",
            }
        ),
        DatabricksMergeJob,
        f"decimal({PRECISION},{SCALE})",
        "timestamp",
        "string",
    ),
    "redshift": Warehouse(
        lambda: dlt.destinations.redshift(
            credentials="redshift://loader:dummy@cluster.example.com:5439/orb_db"
        ),
        RedshiftMergeJob,
        f"numeric({PRECISION},{SCALE})",
        "timestamp with time zone",
        "super",
    ),
}


@pytest.fixture(scope="session")
def loaded_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Schema]:
    """The schema after a first load and a merging second one, as a warehouse would get it."""
    folder = tmp_path_factory.mktemp("schema")
    account = generate_account(customers=3, seed=7, now=datetime(2026, 11, 1, 12, tzinfo=UTC))
    with pytest.MonkeyPatch.context() as patch, SandboxServer(account) as server:
        patch.chdir(folder)
        patch.setenv("DLT_DATA_DIR", str(folder / "dlt"))
        patch.setenv("ORB_API_KEY", server.api_key)
        patch.setenv("ORB_BASE_URL", server.base_url)
        pipeline = make_pipeline(pipelines_dir=str(folder / "pipelines"))
        run_pipeline(pipeline=pipeline)
        run_pipeline(pipeline=pipeline)
        yield pipeline.default_schema.clone()


def job_client(name: str, schema: Schema) -> Any:
    destination = WAREHOUSES[name].destination()
    config = destination.spec()._bind_dataset_name(dataset_name="orb")
    return destination.client(schema.clone(), config)


def column_types(client: Any, table: str) -> dict[str, str]:
    """Column name -> type, as written in the CREATE TABLE dlt would run."""
    columns = list(client.schema.get_table_columns(table).values())
    [create] = client._get_table_update_sql(table, columns, False)
    types = {}
    for line in create.splitlines()[1:]:
        found = re.match(r'\s*[`"]([^`"]+)[`"]\s+(.*?)\s*(NOT NULL)?\s*[,)]*$', line)
        if found:
            types[found[1].lower()] = found[2].lower()
    return types


@pytest.mark.parametrize("name", sorted(WAREHOUSES))
def test_ddl_keeps_money_timestamps_and_json(name: str, loaded_schema: Schema) -> None:
    client = job_client(name, loaded_schema)
    expected = WAREHOUSES[name]
    for table in ("invoices", "invoice_line_items", "credit_ledger_entries", "customers"):
        types = column_types(client, table)
        shape = SHAPES[table]
        assert types["id"] == types["_dlt_id"] != expected.money, table
        assert {types[c] for c in shape.decimal} == {expected.money}, table
        assert {types[c] for c in shape.timestamp} == {expected.timestamp}, table
        assert {types[c] for c in shape.json} == {expected.json}, table
    tax_amounts = column_types(client, "invoice_line_items__tax_amounts")
    assert tax_amounts["amount"] == tax_amounts["tax_rate_percentage"] == expected.money


@pytest.mark.parametrize("name", sorted(WAREHOUSES))
def test_merges_key_on_orb_ids_and_root_rows(name: str, loaded_schema: Schema) -> None:
    client = job_client(name, loaded_schema)
    job = WAREHOUSES[name].merge_job
    escape = client.sql_client.escape_column_name

    def merge_sql(*chain: str) -> str:
        tables = [client.prepare_load_table(table) for table in chain]
        return "\n".join(job.generate_sql(tables, client.sql_client))

    invoices = client.prepare_load_table("invoices")
    assert invoices["write_disposition"] == "merge"
    assert [c for c, s in invoices["columns"].items() if s.get("primary_key")] == ["id"]
    key = re.escape(escape("id"))
    assert re.search(rf"DELETE FROM .*{key} = .*{key}", merge_sql("invoices"))

    arrow_child = client.prepare_load_table("invoice_line_items__tax_amounts")
    root_id = escape("_dlt_root_id")
    assert [c for c, s in arrow_child["columns"].items() if s.get("merge_key")] == ["_dlt_root_id"]
    assert f"{root_id} = " in merge_sql("invoice_line_items__tax_amounts")

    nested = merge_sql("subscriptions", "subscriptions__price_intervals")
    assert root_id in nested and escape("id") in nested
