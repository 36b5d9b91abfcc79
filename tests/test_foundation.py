"""The foundation: every endpoint into DuckDB, exactly, over HTTP against the sandbox."""

from __future__ import annotations

import gc
import json
import random
import tracemalloc
from decimal import Decimal
from pathlib import Path

import dlt
import duckdb
import pytest

from orb_source.catalog import ALL_INVOICE_STATUSES, TABLES
from orb_source.client import OrbClient
from orb_source.runner import run_pipeline
from orb_source.sandbox import Account, SandboxServer, generate_account
from orb_source.sandbox.mutations import add_customer
from tests.cli import run_cli
from tests.conftest import SANDBOX_NOW, restore_first_load, serving
from tests.warehouse import (
    assert_mirror,
    assert_series_mirror,
    expected_series,
    fetch_table,
    query,
    volume_start,
)


def test_full_load_mirrors_every_table(
    sandbox: SandboxServer, account: Account, pipeline: dlt.Pipeline
) -> None:
    report = run_pipeline(pipeline=pipeline)

    assert_mirror(pipeline, account)
    assert_series_mirror(pipeline, account, volume_start(account))
    loaded = {summary.table: summary.rows for summary in report.tables}
    series = expected_series(account, volume_start(account))
    assert loaded == {
        table: len(series[table]) if table in series else len(account.objects(table))
        for table in TABLES
    }


def test_invoices_of_every_status_and_totals_to_the_cent(
    sandbox: SandboxServer, account: Account, loaded: dlt.Pipeline
) -> None:
    statuses = dict(query(loaded, "SELECT status, count(*) FROM {invoices} GROUP BY 1"))
    expected = {}
    for invoice in account.objects("invoices").values():
        expected[invoice["status"]] = expected.get(invoice["status"], 0) + 1
    assert set(statuses) == {"draft", "issued", "paid", "synced", "void"}
    assert statuses == expected
    [(total,)] = query(loaded, "SELECT sum(total) FROM {invoices}")
    assert isinstance(total, Decimal)
    assert total == sum(Decimal(i["total"]) for i in account.objects("invoices").values())
    [(ledger,)] = query(loaded, "SELECT sum(amount) FROM {credit_ledger_entries}")
    entries = account.objects("credit_ledger_entries").values()
    assert ledger == sum(Decimal(str(e["amount"])) for e in entries)


def test_declared_types(sandbox: SandboxServer, loaded: dlt.Pipeline) -> None:
    types = {
        (table, column): data_type
        for table, column, data_type in query(
            loaded,
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            f" WHERE table_schema = '{loaded.dataset_name}'",
        )
    }

    for money in [
        ("invoices", "total"),
        ("invoices", "amount_due"),
        ("invoice_line_items", "amount"),
        ("invoice_line_items", "quantity"),
        ("invoice_line_items__tax_amounts", "amount"),
        ("invoice_line_items__sub_line_items", "amount"),
        ("customers", "balance"),
        ("credit_ledger_entries", "amount"),
        ("credit_ledger_entries", "ending_balance"),
        ("credit_blocks", "balance"),
        ("top_ups", "amount"),
        ("customer_balance_transactions", "amount"),
        ("credit_notes", "total"),
    ]:
        assert types[money] == "DECIMAL(38,18)", money
    for stamp in [
        ("invoices", "invoice_date"),
        ("invoices", "payment_failed_at"),
        ("customers", "created_at"),
    ]:
        assert types[stamp] == "TIMESTAMP WITH TIME ZONE", stamp
    assert types[("customers", "metadata")] == "JSON"
    for table in TABLES:
        assert types[(table, "deleted_at")] == "TIMESTAMP WITH TIME ZONE"
        assert types[(table, "id")] == "VARCHAR"
    [(never_set,)] = query(loaded, "SELECT count(payment_failed_at) FROM {invoices}")
    assert never_set == 0, "the column exists although every value is NULL"


def test_links_replace_embedded_copies(
    sandbox: SandboxServer, account: Account, loaded: dlt.Pipeline
) -> None:
    subscriptions = fetch_table(loaded, "subscriptions")
    columns = set(next(iter(subscriptions.values())))

    assert {"customer_id", "plan_id"} <= columns
    assert not any(column.startswith(("customer__", "plan__")) for column in columns)
    for sub_id, sub in account.objects("subscriptions").items():
        assert subscriptions[sub_id]["customer_id"] == sub["customer"]["id"]
    line_items = fetch_table(loaded, "invoice_line_items")
    for line_id, line in account.objects("invoice_line_items").items():
        assert line_items[line_id]["invoice_id"] == line["invoice_id"]


def test_pagination_with_objects_created_mid_pagination(
    monkeypatch: pytest.MonkeyPatch, pipeline: dlt.Pipeline
) -> None:
    account = generate_account(customers=260, seed=11, now=SANDBOX_NOW)
    original = set(account.objects("customers"))
    created: list[str] = []
    rng = random.Random(5)

    def create_customer_on_later_pages(path: str, params: dict[str, list[str]]) -> None:
        if path == "/customers" and "cursor" in params and len(created) < 6:
            created.append(add_customer(account, rng)["id"])

    with serving(account, monkeypatch) as server:
        server.before_request.append(create_customer_on_later_pages)
        run_pipeline(pipeline=pipeline, resources=["customers"])
        assert server.stats.by_route["/customers"] >= 3 + 1
        first = set(fetch_table(pipeline, "customers"))
        assert original <= first, "a customer was skipped while others were being created"
        assert created, "the hook never ran: the listing did not reach a second page"

        server.before_request.clear()
        run_pipeline(pipeline=pipeline, resources=["customers"])
    assert set(fetch_table(pipeline, "customers")) == original | set(created)


def test_requests_use_orb_conventions(sandbox: SandboxServer, pipeline: dlt.Pipeline) -> None:
    seen: list[tuple[str, dict[str, list[str]]]] = []
    sandbox.before_request.append(lambda path, params: seen.append((path, params)))
    run_pipeline(pipeline=pipeline, resources=["invoices", "coupons", "credit_blocks"])

    invoices = [params for path, params in seen if path == "/invoices"]
    assert invoices and all(p["limit"] == ["100"] for p in invoices)
    assert sorted(invoices[0]["status[]"]) == ["draft", "issued", "paid", "synced", "void"]
    assert [p["show_archived"] for path, p in seen if path == "/coupons"] == [["true"]]
    blocks = [p for path, p in seen if path.endswith("/credits")]
    assert blocks and all(p["include_all_blocks"] == ["true"] for p in blocks)


def test_cli_run_prints_summary_and_exits_0(sandbox: SandboxServer, tmp_path: Path) -> None:
    result = run_cli("run")

    assert result.returncode == 0, result.stderr
    lines = {
        line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.strip()
    }
    assert set(TABLES) <= set(lines)
    assert lines["customers"][0] == "25"
    tables = duckdb.connect(str(tmp_path / "orb_billing.duckdb")).sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'orb'"
    )
    assert set(TABLES) <= {name for (name,) in tables.fetchall()}


def test_features_the_account_lacks_are_skipped_in_one_line_each(
    sandbox: SandboxServer, account: Account, tmp_path: Path, first_load: Path
) -> None:
    """An account without licenses (Orb answers 404) and without webhooks (403): the run
    exits 0 and says so in one info line each. The rows an earlier run loaded stay as they
    were: a skipped listing proves no deletion. The other new tables load as usual."""
    restore_first_load(first_load, account, tmp_path / "dlt" / "pipelines")
    account.unavailable.update({"/license_types": 404, "/webhook_endpoints": 403})

    result = run_cli("run")

    assert result.returncode == 0, result.stderr
    skipped = [line for line in result.stderr.splitlines() if " skipped: " in line]
    assert len(skipped) == 2, result.stderr
    licenses, webhooks = sorted(skipped, key=lambda line: "webhook" in line)
    assert " INFO " in licenses and "license_types skipped: no licenses on this account" in licenses
    assert "404" in licenses
    assert " INFO " in webhooks and "webhook_endpoints skipped: no webhooks" in webhooks
    assert "403" in webhooks
    database = duckdb.connect(str(tmp_path / "orb_billing.duckdb"))
    for table in ("license_types", "webhook_endpoints"):
        rows = database.sql(f"SELECT id, deleted_at FROM orb.{table}").fetchall()
        assert sorted(rows) == sorted((i, None) for i in account.objects(table)), table
    for table in ("dimensional_price_groups", "event_backfills"):
        ids = database.sql(f"SELECT id FROM orb.{table} WHERE deleted_at IS NULL").fetchall()
        assert sorted(i for (i,) in ids) == sorted(account.objects(table)), table


@pytest.mark.parametrize(
    ("key", "message"),
    [("", "No Orb API key"), ("wrong-key-1234567", "rejected")],
    ids=["missing", "rejected"],
)
def test_bad_key_exits_2_in_one_line(sandbox: SandboxServer, key: str, message: str) -> None:
    result = run_cli("run", env={"ORB_API_KEY": key})

    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) <= 2
    assert not key or key not in result.stderr + result.stdout


def test_dlt_config_is_honoured_when_orb_variables_are_unset(
    account: Account, monkeypatch: pytest.MonkeyPatch, pipeline: dlt.Pipeline
) -> None:
    with SandboxServer(account, api_key="dlt-configured-key") as server:
        monkeypatch.setenv("SOURCES__ORB__API_KEY", "dlt-configured-key")
        monkeypatch.setenv("SOURCES__ORB__BASE_URL", server.base_url)
        run_pipeline(pipeline=pipeline, resources=["plans"])

        monkeypatch.setenv("ORB_API_KEY", "orb-variable-wins")
        with pytest.raises(Exception, match="rejected"):
            run_pipeline(pipeline=pipeline, resources=["plans"])
        assert server.stats.status_counts.get(401) == 1
    assert set(fetch_table(pipeline, "plans")) == set(account.objects("plans"))


def test_a_listing_does_not_keep_the_bytes_of_its_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx's responses are freed by the cyclic collector only (a response and its stream
    refer to each other), so a client that left each body on its response would hold every
    page read since the collector last ran: memory growing with the account."""
    account = generate_account(customers=80, seed=5, now=SANDBOX_NOW)
    sizes = []
    with (
        serving(account, monkeypatch) as server,
        OrbClient(server.api_key, server.base_url) as client,
    ):
        # The sandbox runs in this process: a first listing builds its caches (each embedded
        # price's JSON, the sorted invoice order), so only what the client keeps is measured.
        for _ in client.paginate("/invoices", {"status[]": ALL_INVOICE_STATUSES}):
            pass
        gc.collect()
        gc.disable()
        tracemalloc.start()
        try:
            for page in client.paginate("/invoices", {"status[]": ALL_INVOICE_STATUSES}):
                sizes.append(len(json.dumps(page, default=str)))
                del page
            held, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            gc.enable()
    assert len(sizes) >= 8
    assert held < max(sizes)
