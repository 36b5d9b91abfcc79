"""`orb-pipeline reconcile`: compare what the destination holds with what Orb lists now.

Per table it compares the destination's live rows (`deleted_at IS NULL`) with a fresh, complete
listing of the API, read by the source's own strategies and per-customer fan-out (every table
in full, as on a `--full-refresh` run), and reports:

- missing: ids Orb lists that the destination has no live row for;
- extra: live rows whose ids Orb no longer lists;
- stale: ids on both sides whose compared fields (the table's amount, currency and the fields
  in `CHECKS`: status, amounts due, void and archive dates) differ;
- amounts: per currency, the money total the destination's SQL sums (`DECIMAL`) against the
  same total of Orb's values summed as `Decimal`; compared exactly, never through a float.

Usage, costs and event volume are not compared: their recent windows move with every event
until they are final, and Orb has no listing of them to compare with but their whole history.

Nothing is written: reconcile only reads, so it can run beside a scheduled sync (whatever
changes in Orb between the two shows as drift until the next run).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import dlt
from dlt.common.destination.exceptions import DestinationUndefinedEntity
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.destinations.sql_client import SqlClientBase

from .catalog import CATALOG, PAGE_DECODERS, SERIES_TABLES, TABLES, Endpoint
from .client import MAX_ATTEMPTS, MAX_CONCURRENCY, REQUEST_TIMEOUT, OrbClient, RateLimits
from .destinations import check_destination
from .hints import table_columns
from .runner import (
    DEFAULT_DATASET,
    check_connection,
    make_pipeline,
    orb_credentials,
    validate_options,
)
from .source import endpoint_pages
from .state import listings_of
from .strategies import SyncContext
from .transform import Row, split_children, to_rows

SHOWN_IDS = 5
"""Ids listed per kind of drift in the text report; the JSON report lists them all."""

LISTINGS_AT_ONCE = 4
"""Endpoints listed at once; each per-customer one fans out further on the client's pools."""


@dataclass(frozen=True)
class Check:
    """What is compared for a table besides its ids."""

    amount: str | None = None
    """The money column totalled per currency, and compared row by row."""

    currency: str | None = None
    """The column the totals are grouped by; None: the rows carry no currency, one total."""

    fields: tuple[str, ...] = ()
    """Further columns compared row by row (status, amounts due, void dates)."""

    def columns(self) -> tuple[str, ...]:
        named = (self.amount, self.currency, *self.fields)
        return tuple(column for column in named if column)


CHECKS: Mapping[str, Check] = {
    "customers": Check("balance", "currency"),
    "subscriptions": Check(fields=("status", "end_date")),
    "invoices": Check("total", "currency", ("status", "amount_due", "paid_at", "voided_at")),
    "invoice_line_items": Check("amount", fields=("quantity",)),
    "credit_notes": Check("total", fields=("voided_at",)),
    "plans": Check(fields=("status",)),
    "prices": Check(fields=("currency",)),
    "items": Check(fields=("archived_at",)),
    "coupons": Check(fields=("archived_at",)),
    "billable_metrics": Check(fields=("status",)),
    "alerts": Check(fields=("enabled",)),
    "credit_ledger_entries": Check("amount", "currency", ("entry_status",)),
    "credit_blocks": Check("balance", fields=("status",)),
    "top_ups": Check("amount", "currency"),
    "customer_balance_transactions": Check("amount"),
    "dimensional_price_groups": Check(fields=("name", "price_count")),
    "license_types": Check(fields=("name",)),
    "webhook_endpoints": Check(fields=("enabled", "url")),
    "event_backfills": Check(fields=("status", "reverted_at")),
    "subscription_changes": Check(fields=("status", "applied_at", "cancelled_at")),
    "plan_migrations": Check(fields=("status", "effective_time")),
    "subscription_schedules": Check(fields=("plan_id", "end_date")),
    "licenses": Check(fields=("status", "end_date")),
    "coupon_subscriptions": Check(fields=("subscription_id",)),
    "dimensional_price_group_prices": Check(fields=("currency",)),
}
"""The money and state columns reconcile compares, per table."""


@dataclass(frozen=True)
class AmountTotal:
    """One currency's total of a table's amount column, on each side."""

    currency: str | None
    api: Decimal
    destination: Decimal

    @property
    def difference(self) -> Decimal:
        """Destination minus API: positive when the destination holds more."""
        return self.destination - self.api

    def to_json(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "api": plain(self.api),
            "destination": plain(self.destination),
            "difference": plain(self.difference),
        }


@dataclass
class TableDrift:
    table: str
    api_rows: int
    live_rows: int
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    amount: str | None = None
    totals: list[AmountTotal] = field(default_factory=list)

    @property
    def amount_differences(self) -> list[AmountTotal]:
        return [total for total in self.totals if total.difference != 0]

    @property
    def drifted(self) -> bool:
        return bool(self.missing or self.extra or self.stale or self.amount_differences)

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "drifted": self.drifted,
            "api_rows": self.api_rows,
            "live_rows": self.live_rows,
            "missing": self.missing,
            "extra": self.extra,
            "stale": self.stale,
            "amount_column": self.amount,
            "totals": [total.to_json() for total in self.totals],
        }


@dataclass
class ReconcileReport:
    destination: str
    dataset: str
    checked_at: datetime
    tables: list[TableDrift]

    @property
    def drifted(self) -> bool:
        return any(table.drifted for table in self.tables)

    def to_json(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "dataset": self.dataset,
            "checked_at": self.checked_at.isoformat(),
            "drifted": self.drifted,
            "tables": [table.to_json() for table in self.tables],
        }

    def format(self) -> str:
        """The drift table, then the ids and totals behind each difference."""
        width = max([len(t.table) for t in self.tables] + [5])
        header = ("api", "live", "missing", "extra", "stale")
        lines = [
            f"Reconciled {self.destination} dataset {self.dataset} with Orb at"
            f" {self.checked_at:%Y-%m-%d %H:%M:%S} UTC",
            f"{'table':<{width}}" + "".join(f"  {h:>7}" for h in header) + "  amounts",
        ]
        for t in self.tables:
            counts = (t.api_rows, t.live_rows, len(t.missing), len(t.extra), len(t.stale))
            lines.append(
                f"{t.table:<{width}}" + "".join(f"  {n:>7,}" for n in counts) + f"  {_amounts(t)}"
            )
        details = [line for t in self.tables for line in _details(t)]
        drifted = [t.table for t in self.tables if t.drifted]
        lines += details
        lines.append(
            f"drift in {len(drifted)} of {len(self.tables)} tables: {', '.join(drifted)}"
            if drifted
            else f"no drift: {len(self.tables)} tables equal to Orb"
        )
        return "\n".join(lines)


def _amounts(table: TableDrift) -> str:
    if table.amount is None:
        return "-"
    differences = table.amount_differences
    if not differences:
        return "equal"
    return ", ".join(
        " ".join(filter(None, (t.currency, plain(t.difference, sign=True)))) for t in differences
    )


def _details(table: TableDrift) -> Iterator[str]:
    for kind, ids in (("missing", table.missing), ("extra", table.extra), ("stale", table.stale)):
        if ids:
            more = f" (+{len(ids) - SHOWN_IDS} more)" if len(ids) > SHOWN_IDS else ""
            yield f"{table.table}: {kind} {', '.join(ids[:SHOWN_IDS])}{more}"
    for total in table.amount_differences:
        currency = f" {total.currency}" if total.currency else ""
        yield (
            f"{table.table}: sum({table.amount}){currency}: Orb {plain(total.api)},"
            f" destination {plain(total.destination)} ({plain(total.difference, sign=True)})"
        )


def plain(value: Decimal, sign: bool = False) -> str:
    """A decimal with every significant digit and no padding zeros or exponent."""
    text = f"{value.normalize():f}"
    return f"+{text}" if sign and value > 0 else text


def reconcile(
    *,
    resources: Sequence[str] | None = None,
    destination: str = "duckdb",
    dataset_name: str = DEFAULT_DATASET,
    pipeline: dlt.Pipeline | None = None,
) -> ReconcileReport:
    """Compare the destination's tables with a fresh listing of Orb; nothing is written.

    The client takes the source's settings (`sources.orb.read_rate_limit`, ...), so it stays
    within the same rate budget as a run.
    """
    validate_options(resources, None)
    api_key, base_url = orb_credentials()
    check_connection(
        api_key,
        base_url,
        _setting("max_attempts", MAX_ATTEMPTS),
        _setting("request_timeout", REQUEST_TIMEOUT),
    )
    pipeline = pipeline or make_pipeline(destination, dataset_name)
    check_destination(pipeline)
    tables = [
        table
        for table in TABLES
        if (not resources or table in resources) and table not in SERIES_TABLES
    ]
    checked_at = datetime.now(UTC)
    listed = _list_api(api_key, base_url, checked_at, tables)
    with pipeline.sql_client() as sql:
        drift = [_compare(sql, table, listed[table]) for table in tables if table in listed]
    name = pipeline.destination.destination_name if pipeline.destination else destination
    return ReconcileReport(name, pipeline.dataset_name, checked_at, drift)


def _setting(name: str, default: Any) -> Any:
    """A source setting as dlt resolves it (`SOURCES__ORB__...`, config.toml), else its default."""
    value = dlt.config.get(f"sources.orb.{name}", type(default))
    return default if value is None else value


def _list_api(
    api_key: str, base_url: str, started_at: datetime, tables: Sequence[str]
) -> dict[str, dict[str, Row]]:
    """Every object of the tables as Orb lists it now, keyed by id."""
    client = OrbClient(
        api_key,
        base_url,
        rate_limits=RateLimits(
            _setting("read_rate_limit", RateLimits.read),
            _setting("credit_balance_rate_limit", RateLimits.credit_balance),
            _setting("analytics_rate_limit", RateLimits.analytics),
        ),
        max_concurrency=_setting("max_concurrency", MAX_CONCURRENCY),
        timeout=_setting("request_timeout", REQUEST_TIMEOUT),
        max_attempts=_setting("max_attempts", MAX_ATTEMPTS),
        decoders=PAGE_DECODERS,
    )
    ctx = SyncContext(
        client=client,
        started_at=started_at,
        full_refresh=True,
        max_concurrency=_setting("max_concurrency", MAX_CONCURRENCY),
        state={},
    )
    endpoints = [e for e in CATALOG if e.table in tables or _child(e) in tables]
    listed: dict[str, dict[str, Row]] = {table: {} for table in tables}
    with client:
        try:
            with ThreadPoolExecutor(LISTINGS_AT_ONCE) as pool:
                for rows in pool.map(lambda endpoint: _read(ctx, endpoint), endpoints):
                    listed.update((t, by_id) for t, by_id in rows.items() if t in listed)
        finally:
            ctx.close()
    # a feature the account lacks is listed by no one: there is nothing to compare with
    complete = listings_of(ctx.source_state())
    skipped = {
        table
        for endpoint in endpoints
        if "complete" not in complete.get(endpoint.table, {})
        for table in endpoint.tables
    }
    return {table: rows for table, rows in listed.items() if table not in skipped}


def _child(endpoint: Endpoint) -> str | None:
    return endpoint.child_table.table if endpoint.child_table else None


def _read(ctx: SyncContext, endpoint: Endpoint) -> dict[str, dict[str, Row]]:
    """One endpoint's complete listing, shaped into rows as the source loads them (only the
    compared columns kept), and its child table's rows when it has one."""
    rows: dict[str, dict[str, Row]] = {endpoint.table: {}}
    child = endpoint.child_table
    if child:
        rows[child.table] = {}
    for customer_id, page in endpoint_pages(ctx, endpoint, {}):
        shaped = to_rows(page, endpoint.links, ctx.started_at, customer_id)
        rows[endpoint.table].update(_compared(endpoint.table, shaped))
        if child:
            children = split_children(shaped, child.field, child.link, ctx.started_at)
            rows[child.table].update(_compared(child.table, children))
    return rows


def _compared(table: str, rows: list[Row]) -> Iterator[tuple[str, Row]]:
    columns = CHECKS[table].columns()
    for row in rows:
        yield row["id"], {column: row.get(column) for column in columns}


def _compare(sql: SqlClientBase[Any], table: str, api: Mapping[str, Row]) -> TableDrift:
    """Ids and compared fields from one query of the live rows; totals from one `GROUP BY`."""
    check = CHECKS[table]
    columns = check.columns()
    types = {name: str(column.get("data_type")) for name, column in table_columns(table).items()}
    name = sql.make_qualified_table_name(table)
    selected = ", ".join(sql.escape_column_name(c) for c in ("id", *columns))
    live = {
        row[0]: dict(zip(columns, row[1:], strict=True))
        for row in _query(sql, f"SELECT {selected} FROM {name} WHERE deleted_at IS NULL")
    }
    stale = sorted(
        row_id
        for row_id in api.keys() & live.keys()
        if any(
            _value(api[row_id][c], types.get(c)) != _value(live[row_id][c], types.get(c))
            for c in columns
        )
    )
    return TableDrift(
        table=table,
        api_rows=len(api),
        live_rows=len(live),
        missing=sorted(api.keys() - live.keys()),
        extra=sorted(live.keys() - api.keys()),
        stale=stale,
        amount=check.amount,
        totals=_totals(sql, name, check, api) if check.amount else [],
    )


def _totals(
    sql: SqlClientBase[Any], name: str, check: Check, api: Mapping[str, Row]
) -> list[AmountTotal]:
    """Per currency: the destination's `sum()` over live rows and the same sum of Orb's values."""
    amount = f"sum({sql.escape_column_name(str(check.amount))})"
    live = f"FROM {name} WHERE deleted_at IS NULL"
    if check.currency:
        currency = sql.escape_column_name(check.currency)
        statement = f"SELECT {currency}, {amount} {live} GROUP BY {currency}"
    else:
        statement = f"SELECT NULL, {amount} {live}"
    stored: dict[str | None, Decimal] = {
        key: Decimal(total or 0) for key, total in _query(sql, statement)
    }
    listed: dict[str | None, Decimal] = {}
    for row in api.values():
        key = row.get(check.currency) if check.currency else None
        value = row.get(str(check.amount))
        if value is not None:
            listed[key] = listed.get(key, Decimal(0)) + Decimal(str(value))
        else:
            listed.setdefault(key, Decimal(0))
    return [
        AmountTotal(key, listed.get(key, Decimal(0)), stored.get(key, Decimal(0)))
        for key in sorted(listed.keys() | stored.keys(), key=lambda k: (k is None, k or ""))
    ]


def _query(sql: SqlClientBase[Any], statement: str) -> list[tuple[Any, ...]]:
    """Rows of a query; a table the destination does not hold yet has none."""
    try:
        return [tuple(row) for row in sql.execute_sql(statement) or ()]
    except (DatabaseUndefinedRelation, DestinationUndefinedEntity):
        return []


def _value(value: Any, data_type: str | None) -> Any:
    """A value as both sides can be compared: exact decimals, aware timestamps."""
    if value is None:
        return None
    if data_type == "decimal":
        return Decimal(str(value))
    if data_type == "timestamp" and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value
