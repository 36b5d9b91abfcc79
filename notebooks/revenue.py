# %% [markdown]
# # Revenue from Orb, in DuckDB
#
# Run `orb-pipeline run` against your account first; this reads `orb_billing.duckdb`, dataset
# `orb` (pass `orb_demo.duckdb` as the argument to read `make demo`'s). Open it as a notebook
# (Jupytext percent format, VS Code, marimo) or run it as a script. Amounts are DECIMAL: the sums
# reconcile to the cent with Orb.

# %%
from __future__ import annotations

import sys

import duckdb

LIVE = "deleted_at IS NULL"


def connect(path: str = "orb_billing.duckdb") -> duckdb.DuckDBPyConnection:
    return duckdb.connect(path, read_only=True)


# %% [markdown]
# ## Invoiced revenue by month and currency
# Issued, paid and synced invoices count; drafts are not final and voids were cancelled.


# %%
def invoiced_by_month(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
    return con.sql(
        f"""
        SELECT date_trunc('month', invoice_date) AS month, currency,
               count(*) AS invoices, sum(total) AS invoiced, sum(amount_due) AS amount_due
        FROM orb.invoices
        WHERE {LIVE} AND status IN ('issued', 'paid', 'synced')
        GROUP BY ALL ORDER BY month, currency
        """
    )


# %% [markdown]
# ## Net revenue: invoiced minus credit notes that were not voided


# %%
def net_revenue(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
    return con.sql(
        f"""
        WITH invoiced AS (
            SELECT currency, sum(total) AS invoiced FROM orb.invoices
            WHERE {LIVE} AND status IN ('issued', 'paid', 'synced') GROUP BY currency
        ), credited AS (
            SELECT i.currency, sum(n.total) AS credited
            FROM orb.credit_notes n JOIN orb.invoices i ON i.id = n.invoice_id
            WHERE n.{LIVE} AND n.voided_at IS NULL GROUP BY i.currency
        )
        SELECT currency, invoiced, coalesce(credited, 0) AS credited,
               invoiced - coalesce(credited, 0) AS net
        FROM invoiced LEFT JOIN credited USING (currency) ORDER BY currency
        """
    )


# %% [markdown]
# ## Revenue by product item (line items of final invoices)


# %%
def revenue_by_item(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
    return con.sql(
        f"""
        SELECT coalesce(li.price->>'$.item.name', li.name) AS item, i.currency,
               sum(li.amount) AS amount
        FROM orb.invoice_line_items li JOIN orb.invoices i ON i.id = li.invoice_id
        WHERE li.{LIVE} AND i.{LIVE} AND i.status IN ('issued', 'paid', 'synced')
        GROUP BY ALL ORDER BY amount DESC
        """
    )


# %% [markdown]
# ## Receivables: issued invoices not paid yet, by customer


# %%
def open_receivables(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
    return con.sql(
        f"""
        SELECT c.name AS customer, i.currency, count(*) AS invoices,
               sum(i.amount_due) AS outstanding, min(i.due_date) AS oldest_due
        FROM orb.invoices i JOIN orb.customers c ON c.id = i.customer_id
        WHERE i.{LIVE} AND i.status = 'issued'
        GROUP BY ALL ORDER BY outstanding DESC
        """
    )


# %% [markdown]
# ## Prepaid credits: remaining balance per customer (committed ledger)


# %%
def credit_balances(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
    return con.sql(
        f"""
        SELECT c.name AS customer, sum(b.balance) AS remaining_credits
        FROM orb.credit_blocks b JOIN orb.customers c ON c.id = b.customer_id
        WHERE b.{LIVE} AND c.{LIVE}
        GROUP BY ALL HAVING sum(b.balance) > 0 ORDER BY remaining_credits DESC
        """
    )


# %%
if __name__ == "__main__":
    connection = connect(sys.argv[1] if len(sys.argv) > 1 else "orb_billing.duckdb")
    for report in (invoiced_by_month, net_revenue, revenue_by_item, open_receivables):
        print(f"\n== {report.__name__}")
        report(connection).show(max_rows=12)
