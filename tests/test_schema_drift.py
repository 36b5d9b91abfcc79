"""Schema drift between runs: new fields, fields that change type, new kinds of ledger entries
and prices. The run succeeds, the new data is kept, money stays DECIMAL(38,18) without variant
columns, and a warning names what changed."""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys
from decimal import Decimal
from typing import Any

import dlt
import pytest

from orb_source.runner import make_pipeline, run_pipeline
from orb_source.sandbox import Account, SandboxServer
from orb_source.sandbox.account import Number
from tests.conftest import SANDBOX_NOW
from tests.warehouse import assert_mirror, fetch_table, query

FAST: dict[str, Any] = {
    "request_timeout": 1.0,
    "max_attempts": 4,
    "read_rate_limit": 1000.0,
    "credit_balance_rate_limit": 200.0,
}
INVOICES = ("invoices", "invoice_line_items")


def column_types(pipeline: dlt.Pipeline) -> dict[tuple[str, str], str]:
    return {
        (table, column): data_type
        for table, column, data_type in query(
            pipeline,
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            f" WHERE table_schema = '{pipeline.dataset_name}'",
        )
    }


def assert_money_has_no_variants(pipeline: dlt.Pipeline) -> None:
    """No DECIMAL column of the dataset has grown a `__v_` variant next to it."""
    types = column_types(pipeline)
    money = {key for key, data_type in types.items() if data_type == "DECIMAL(38,18)"}
    variants = {(table, column.split("__v_")[0]) for table, column in types if "__v_" in column}
    assert not variants & money, sorted(variants & money)


def warnings_from(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == logger and record.levelno == logging.WARNING
    ]


def test_new_fields_are_loaded_and_reported_by_the_cli(
    sandbox: SandboxServer, account: Account
) -> None:
    """A top-level and a nested field appear on every customer between two CLI runs."""
    cli = [sys.executable, "-m", "orb_source.cli", "run", "--resources", "customers"]
    first = subprocess.run(cli, capture_output=True, text=True, env=os.environ, timeout=120)
    assert first.returncode == 0, first.stderr
    with account.lock:
        for number, customer in enumerate(account.customers.values()):
            customer["loyalty_tier"] = f"tier-{number % 3}"
            customer["billing_address"] = {**(customer["billing_address"] or {}), "region": "EU"}

    second = subprocess.run(cli, capture_output=True, text=True, env=os.environ, timeout=120)

    assert second.returncode == 0, second.stderr
    for field in ("customers.loyalty_tier (text)", "customers.billing_address__region (text)"):
        assert f"WARNING schema new field: {field}" in second.stderr, second.stderr[-3000:]
        assert f"warning: schema new field: {field}" in second.stdout
    assert "schema new field" not in first.stderr, "the first load is not drift"
    pipeline = make_pipeline()
    loaded = fetch_table(pipeline, "customers")
    for customer_id, customer in account.objects("customers").items():
        assert loaded[customer_id]["loyalty_tier"] == customer["loyalty_tier"]
        assert loaded[customer_id]["billing_address__region"] == "EU"
    assert_mirror(pipeline, account, ("customers",))


def test_money_sent_as_json_numbers_stays_decimal(
    sandbox: SandboxServer, account: Account, pipeline: dlt.Pipeline
) -> None:
    """Open invoices start sending `total` and `amount_due` as JSON numbers, not strings."""
    run_pipeline(pipeline=pipeline, resources=INVOICES, **FAST)
    with account.lock:
        opened = [i for i in account.invoices.values() if i["status"] in ("draft", "issued")]
        for invoice in opened:
            invoice["total"] = Number(invoice["total"])
            invoice["amount_due"] = Number(invoice["amount_due"])
    assert opened

    report = run_pipeline(pipeline=pipeline, resources=INVOICES, **FAST)

    assert report.schema_changes == []
    invoices = fetch_table(pipeline, "invoices")
    for invoice in opened:
        row = invoices[invoice["id"]]
        assert row["total"] == Decimal(str(invoice["total"]))
        assert isinstance(row["total"], Decimal)
    types = column_types(pipeline)
    assert types[("invoices", "total")] == types[("invoices", "amount_due")] == "DECIMAL(38,18)"
    assert_money_has_no_variants(pipeline)
    assert_mirror(pipeline, account, INVOICES)


def test_fields_that_change_type_are_kept_and_named(
    sandbox: SandboxServer,
    account: Account,
    pipeline: dlt.Pipeline,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A number field starts arriving as text, and a text field as a number."""
    tables = ("customers", "credit_ledger_entries", *INVOICES)
    run_pipeline(pipeline=pipeline, resources=tables, **FAST)
    with account.lock:
        customer_id, entries = next(iter(account.owned["credit_ledger_entries"].items()))
        entry = copy.deepcopy(next(iter(entries.values())))
        entry.update(id="drift-ledger-entry", created_at=SANDBOX_NOW, ledger_sequence_number="A-7")
        account.add("credit_ledger_entries", entry, customer_id)
        opened = [i for i in account.invoices.values() if i["status"] in ("draft", "issued")]
        for number, invoice in enumerate(opened):
            invoice["memo"] = 9000 + number

    with caplog.at_level(logging.WARNING, logger="orb_source"):
        report = run_pipeline(pipeline=pipeline, resources=tables, **FAST)

    ledger = fetch_table(pipeline, "credit_ledger_entries")
    assert ledger["drift-ledger-entry"]["ledger_sequence_number__v_text"] == "A-7"
    number_to_text = "changed type: credit_ledger_entries.ledger_sequence_number__v_text (text)"
    assert number_to_text in report.schema_changes
    assert f"schema {number_to_text}" in warnings_from(caplog, "orb_source.runner")
    invoices = fetch_table(pipeline, "invoices")
    assert {invoices[i["id"]]["memo"] for i in opened} == {str(i["memo"]) for i in opened}
    assert_money_has_no_variants(pipeline)
    assert_mirror(pipeline, account, ("customers", "invoice_line_items"))
    named = [change for change in report.schema_changes if "invoices.memo" in change]
    assert named, f"invoices.memo turned into a number without a warning: {report.schema_changes}"
    assert any("invoices.memo" in message for message in caplog.messages)


def test_new_ledger_entry_type_and_price_model_type(
    sandbox: SandboxServer,
    account: Account,
    pipeline: dlt.Pipeline,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tables = ("customers", "prices", "credit_ledger_entries")
    run_pipeline(pipeline=pipeline, resources=tables, **FAST)
    with account.lock:
        customer_id, entries = next(iter(account.owned["credit_ledger_entries"].items()))
        entry = copy.deepcopy(next(iter(entries.values())))
        entry.update(id="transfer-entry", entry_type="credit_transfer", created_at=SANDBOX_NOW)
        entry["amount"] = Number("-12.5")
        account.add("credit_ledger_entries", entry, customer_id)
        price = copy.deepcopy(next(iter(account.prices.values())))
        price.update(id="bundle-price", model_type="bundle_tiered", created_at=SANDBOX_NOW)
        price["bundle_tiered_config"] = {"bundle_size": 10, "bundle_amount": "4.50"}
        account.add("prices", price)

    with caplog.at_level(logging.WARNING, logger="orb_source"):
        report = run_pipeline(pipeline=pipeline, resources=tables, **FAST)

    source_warnings = warnings_from(caplog, "orb_source.source")
    assert any("'credit_transfer'" in m and "credit_ledger_entries" in m for m in source_warnings)
    assert any("'bundle_tiered'" in m and "prices" in m for m in source_warnings)
    [(entry_type, amount)] = query(
        pipeline,
        "SELECT entry_type, amount FROM {credit_ledger_entries} WHERE id = 'transfer-entry'",
    )
    assert (entry_type, amount) == ("credit_transfer", Decimal("-12.5"))
    [(model_type,)] = query(pipeline, "SELECT model_type FROM {prices} WHERE id = 'bundle-price'")
    assert model_type == "bundle_tiered"
    assert {
        "new field: prices.bundle_tiered_config__bundle_size (bigint)",
        "new field: prices.bundle_tiered_config__bundle_amount (text)",
    } <= set(report.schema_changes)
    assert_money_has_no_variants(pipeline)
    assert_mirror(pipeline, account, tables)
