"""The revenue notebook's queries run on a loaded dataset and reconcile with the account."""

from __future__ import annotations

import importlib.util
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import dlt

from orb_source.runner import run_pipeline
from orb_source.sandbox import Account, SandboxServer

FINAL = {"issued", "paid", "synced"}


def load_notebook() -> ModuleType:
    path = Path(__file__).parent.parent / "notebooks" / "revenue.py"
    spec = importlib.util.spec_from_file_location("revenue", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_revenue_reports_reconcile_to_the_cent(
    sandbox: SandboxServer, account: Account, pipeline: dlt.Pipeline, tmp_path: Path
) -> None:
    run_pipeline(pipeline=pipeline)
    notebook = load_notebook()
    con = notebook.connect(str(tmp_path / "orb_billing.duckdb"))

    invoices = [i for i in account.objects("invoices").values() if i["status"] in FINAL]
    by_month = notebook.invoiced_by_month(con).fetchall()
    assert sum(row[3] for row in by_month) == sum(Decimal(i["total"]) for i in invoices)
    assert sum(row[2] for row in by_month) == len(invoices)

    final_ids = {i["id"] for i in invoices}
    credited = sum(
        Decimal(n["total"])
        for n in account.objects("credit_notes").values()
        if n["voided_at"] is None
        and n["invoice_id"] in final_ids | set(account.objects("invoices"))
    )
    net = notebook.net_revenue(con).fetchall()
    assert sum(row[2] for row in net) == credited
    assert sum(row[3] for row in net) == sum(row[1] for row in net) - credited

    items = notebook.revenue_by_item(con).fetchall()
    lines = [
        line
        for line in account.objects("invoice_line_items").values()
        if line["invoice_id"] in final_ids
    ]
    assert sum(row[2] for row in items) == sum(Decimal(line["amount"]) for line in lines)

    receivables = notebook.open_receivables(con).fetchall()
    issued = [i for i in invoices if i["status"] == "issued"]
    assert sum(row[3] for row in receivables) == sum(Decimal(i["amount_due"]) for i in issued)
    assert notebook.credit_balances(con).fetchall()
