"""`orb-pipeline reconcile` against the sandbox, on DuckDB and a real PostgreSQL: exit 0 on a
freshly loaded mirror, and drift injected by editing the warehouse (a deleted row, a changed
amount, a changed status, an extra row) reported exactly, with exit 1."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import dlt
import pytest

from orb_source.reconcile import CHECKS
from orb_source.runner import make_pipeline, run_pipeline
from orb_source.sandbox import Account, Fault, SandboxServer
from tests.cli import run_cli
from tests.warehouse import LISTED_TABLES


@pytest.fixture(params=["duckdb", "postgres"])
def destination(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        request.getfixturevalue("postgres_url")
    return str(request.param)


def totals(objects: dict[str, dict[str, Any]], amount: str, currency: str | None) -> dict[Any, str]:
    sums: dict[Any, Decimal] = {}
    for obj in objects.values():
        key = obj[currency] if currency else None
        sums[key] = sums.get(key, Decimal(0)) + Decimal(str(obj[amount]))
    return {key: str(value) for key, value in sums.items()}


def by_table(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {table["table"]: table for table in report["tables"]}


def differences(table: dict[str, Any]) -> dict[Any, Decimal]:
    return {
        t["currency"]: Decimal(t["difference"])
        for t in table["totals"]
        if Decimal(t["difference"]) != 0
    }


def test_every_table_has_its_checks() -> None:
    assert list(CHECKS) == list(LISTED_TABLES)


def test_a_fresh_mirror_reconciles_with_exit_0(
    sandbox: SandboxServer, account: Account, destination: str, tmp_path: Path
) -> None:
    run_pipeline(destination=destination)
    requests_before = sandbox.stats.requests

    done = run_cli("reconcile", "--destination", destination, "--json", str(tmp_path / "r.json"))

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"no drift: {len(LISTED_TABLES)} tables equal to Orb"
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["destination"], report["dataset"], report["drifted"]) == (
        destination,
        "orb",
        False,
    )
    tables = by_table(report)
    assert list(tables) == list(LISTED_TABLES)
    for name, table in tables.items():
        expected = len(account.objects(name))
        assert (table["api_rows"], table["live_rows"]) == (expected, expected), name
        assert table["missing"] == table["extra"] == table["stale"] == [], name
        assert not differences(table), name
    invoice_totals = {t["currency"]: t["destination"] for t in tables["invoices"]["totals"]}
    assert {k: Decimal(v) for k, v in invoice_totals.items()} == {
        k: Decimal(v) for k, v in totals(account.objects("invoices"), "total", "currency").items()
    }
    ledger = tables["credit_ledger_entries"]["totals"]
    assert {t["currency"]: Decimal(t["api"]) for t in ledger} == {
        k: Decimal(v)
        for k, v in totals(account.objects("credit_ledger_entries"), "amount", "currency").items()
    }
    assert sandbox.stats.requests - requests_before > len(account.customers) * 4


def test_a_feature_the_account_lacks_is_left_out_of_the_check(
    sandbox: SandboxServer, account: Account, tmp_path: Path
) -> None:
    """License types loaded by an earlier run, then the account lost the feature (Orb
    answers 404): reconcile compares the other tables and reports no drift for it."""
    run_pipeline()
    account.unavailable["/license_types"] = 404

    done = run_cli("reconcile", "--json", str(tmp_path / "r.json"))

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"no drift: {len(LISTED_TABLES) - 1} tables equal to Orb"
    tables = by_table(json.loads((tmp_path / "r.json").read_text()))
    assert list(tables) == [table for table in LISTED_TABLES if table != "license_types"]


def test_injected_drift_is_reported_exactly(
    sandbox: SandboxServer, account: Account, destination: str, tmp_path: Path
) -> None:
    pipeline = make_pipeline(destination)
    run_pipeline(pipeline=pipeline)
    invoices = sorted(account.objects("invoices").values(), key=lambda i: i["id"])
    deleted = next(i for i in invoices if Decimal(i["total"]) != 0)
    voided = next(i for i in invoices if i["status"] == "paid" and i is not deleted)
    entry = sorted(account.objects("credit_ledger_entries").values(), key=lambda e: e["id"])[0]
    top_up = sorted(account.objects("top_ups").values(), key=lambda t: t["id"])[0]
    execute(pipeline, "DELETE FROM {invoices} WHERE id = %s", deleted["id"])
    execute(pipeline, "UPDATE {invoices} SET status = 'void' WHERE id = %s", voided["id"])
    execute(
        pipeline,
        "UPDATE {credit_ledger_entries} SET amount = amount + 1.5 WHERE id = %s",
        entry["id"],
    )
    copy_row(pipeline, "top_ups", top_up["id"], "top_up_extra")

    done = run_cli("reconcile", "--destination", destination, "--json", str(tmp_path / "r.json"))

    assert done.returncode == 1, done.stderr
    tables = by_table(json.loads((tmp_path / "r.json").read_text()))
    assert {name for name, t in tables.items() if t["drifted"]} == {
        "invoices",
        "credit_ledger_entries",
        "top_ups",
    }
    invoice = tables["invoices"]
    assert (invoice["missing"], invoice["extra"], invoice["stale"]) == (
        [deleted["id"]],
        [],
        [voided["id"]],
    )
    assert differences(invoice) == {deleted["currency"]: -Decimal(deleted["total"])}
    ledger = tables["credit_ledger_entries"]
    assert (ledger["missing"], ledger["extra"], ledger["stale"]) == ([], [], [entry["id"]])
    assert differences(ledger) == {entry["currency"]: Decimal("1.5")}
    top_ups = tables["top_ups"]
    assert (top_ups["missing"], top_ups["extra"], top_ups["stale"]) == ([], ["top_up_extra"], [])
    assert differences(top_ups) == {top_up["currency"]: Decimal(top_up["amount"])}
    lines = done.stdout.splitlines()
    assert f"invoices: missing {deleted['id']}" in lines
    assert f"invoices: stale {voided['id']}" in lines
    assert f"credit_ledger_entries: stale {entry['id']}" in lines
    assert "top_ups: extra top_up_extra" in lines
    assert lines[-1] == (
        f"drift in 3 of {len(LISTED_TABLES)} tables: invoices, credit_ledger_entries, top_ups"
    )


def test_resources_limit_the_check_and_json_goes_to_stdout(
    sandbox: SandboxServer, account: Account
) -> None:
    run_pipeline(resources=["customers", "top_ups"])
    before = dict(sandbox.stats.by_route)

    done = run_cli("reconcile", "--resources", "top_ups,customers", "--json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [t["table"] for t in report["tables"]] == ["customers", "top_ups"]
    assert report["tables"][1]["api_rows"] == len(account.objects("top_ups"))
    routes = {route for route, n in sandbox.stats.by_route.items() if n != before.get(route)}
    assert all("customers" in route for route in routes), routes
    assert not any("invoices" in route or "ledger" in route for route in routes)


def test_an_unknown_resource_is_a_configuration_error(sandbox: SandboxServer) -> None:
    done = run_cli("reconcile", "--resources", "invoices,payments")

    assert done.returncode == 2
    assert done.stderr.startswith("orb-pipeline: Unknown resource(s): payments.")
    assert done.stdout == ""


def execute(pipeline: dlt.Pipeline, statement: str, *args: Any) -> None:
    with pipeline.sql_client() as sql:
        table = statement.split("{")[1].split("}")[0]
        sql.execute_sql(
            statement.replace(f"{{{table}}}", sql.make_qualified_table_name(table)), *args
        )


def copy_row(pipeline: dlt.Pipeline, table: str, row_id: str, new_id: str) -> None:
    """Insert a copy of one row under a new id: a row Orb never listed."""
    with pipeline.sql_client() as sql:
        name = sql.make_qualified_table_name(table)
        with sql.execute_query(f"SELECT * FROM {name} WHERE 1 = 0") as cursor:
            columns = [d[0] for d in cursor.description]
        replaced = {"id": new_id, "_dlt_id": f"{new_id}_dlt"}
        values = ["%s" if c in replaced else sql.escape_column_name(c) for c in columns]
        sql.execute_sql(
            f"INSERT INTO {name} ({', '.join(sql.escape_column_name(c) for c in columns)})"
            f" SELECT {', '.join(values)} FROM {name} WHERE id = %s",
            *[replaced[c] for c in columns if c in replaced],
            row_id,
        )


def test_a_listing_that_fails_is_exit_1_without_a_table(sandbox: SandboxServer) -> None:
    """Orb failing beyond every retry: the check names the cause and reports no drift table."""
    run_pipeline(resources=["plans"])
    sandbox.inject(Fault("status", path=r"^/plans$", status=503))

    done = run_cli(
        "reconcile",
        "--resources",
        "plans",
        env={"SOURCES__ORB__MAX_ATTEMPTS": "2", "SOURCES__ORB__REQUEST_TIMEOUT": "2"},
    )

    assert done.returncode == 1
    assert done.stdout == ""
    *retries, failure = done.stderr.strip().splitlines()
    assert failure == (
        "orb-pipeline: Reconcile failed: Orb API 503 on /plans: Service unavailable"
        " (Injected 503 response)"
    )
    assert len(retries) == 1 and "INFO retrying after Orb API 503 on /plans" in retries[0]
