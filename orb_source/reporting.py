"""Reporting views: revenue, MRR, receivables and credits, in a schema of their own.

The views are created or replaced after every successful load, so they follow new columns
and tables as dlt adds them. Their SQL lives in `views/*.sql`, one file per view, written once
for DuckDB and PostgreSQL alike; `{dataset}` stands for the loaded dataset's schema. A view
whose tables the destination does not hold (a run with `--resources`) is skipped and named in
a warning; the others are created.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import dlt
from dlt.destinations.exceptions import DatabaseException
from dlt.destinations.sql_client import SqlClientBase

logger = logging.getLogger(__name__)

VIEWS_DIR = Path(__file__).with_name("views")
DESTINATIONS = frozenset({"duckdb", "postgres"})
"""Destinations whose SQL the views are written and tested for."""
CURRENT_TABLES = ("customers", "invoices", "subscriptions")
"""Tables mirrored as `<table>_current`: live rows without the dlt bookkeeping columns."""
_TABLE_REFERENCE = re.compile(r"\{dataset\}\.(\w+)")


class ReportingError(Exception):
    """A view could not be created; the data itself is loaded."""


@dataclass(frozen=True)
class View:
    name: str
    sql: str = ""
    """The SELECT, with `{dataset}` for the loaded dataset's schema."""
    current_of: str | None = None
    """For a `<table>_current` view, its table: the column list is read when it is created."""

    @property
    def tables(self) -> frozenset[str]:
        """The dataset tables the view reads."""
        if self.current_of is not None:
            return frozenset({self.current_of})
        return frozenset(_TABLE_REFERENCE.findall(self.sql))


@dataclass
class ViewsReport:
    schema: str
    created: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    """View name -> the tables it needs that the destination does not hold."""


@cache
def defined_views() -> tuple[View, ...]:
    """The analytic views, from `views/*.sql`, and the `<table>_current` views."""
    written = tuple(View(path.stem, path.read_text()) for path in sorted(VIEWS_DIR.glob("*.sql")))
    return written + tuple(View(f"{table}_current", current_of=table) for table in CURRENT_TABLES)


def view_names() -> tuple[str, ...]:
    return tuple(view.name for view in defined_views())


def reporting_schema(dataset_name: str, configured: str | None = None) -> str:
    """The option, else `sources.orb.reporting_schema`, else `<dataset>_reporting`."""
    name = configured or dlt.config.get("sources.orb.reporting_schema")
    return str(name) if name else f"{dataset_name}_reporting"


def create_views(pipeline: dlt.Pipeline, schema: str | None = None) -> ViewsReport:
    """Create or replace every view whose tables the destination holds; skip and name the rest."""
    report = ViewsReport(reporting_schema(pipeline.dataset_name, schema))
    destination = pipeline.destination.destination_name if pipeline.destination else ""
    if destination not in DESTINATIONS:
        logger.warning(
            "reporting views are made for DuckDB and PostgreSQL; none created on %s", destination
        )
        return report
    with pipeline.sql_client() as sql:
        quote = sql.capabilities.escape_identifier
        present = _dataset_tables(sql, pipeline.dataset_name)
        target = quote(report.schema)
        sql.execute_sql(f"CREATE SCHEMA IF NOT EXISTS {target}")
        for view in defined_views():
            name = f"{target}.{quote(view.name)}"
            missing = sorted(view.tables - present)
            try:
                if missing:
                    sql.execute_sql(f"DROP VIEW IF EXISTS {name}")
                else:
                    _replace_view(sql, name, _select(sql, view, pipeline.dataset_name))
            except DatabaseException as exc:
                raise ReportingError(
                    f"The data is loaded, but reporting view {view.name} could not be created:"
                    f" {_first_line(exc)} (--no-views skips the views)"
                ) from exc
            if missing:
                report.skipped[view.name] = missing
            else:
                report.created.append(view.name)
    if report.skipped:
        logger.warning(
            "reporting views skipped, their tables are not loaded: %s",
            "; ".join(f"{v} (needs {', '.join(t)})" for v, t in report.skipped.items()),
        )
    logger.info("reporting views in %s: %s", report.schema, ", ".join(report.created))
    return report


def _select(sql: SqlClientBase[Any], view: View, dataset_name: str) -> str:
    """The view's SELECT for this dataset; a `_current` view lists the table's columns as
    they are now, less dlt's bookkeeping and `deleted_at`, and keeps live rows only."""
    quote = sql.capabilities.escape_identifier
    dataset = quote(dataset_name)
    if view.current_of is None:
        return view.sql.replace("{dataset}", dataset)
    columns = ", ".join(
        quote(column)
        for column in _columns(sql, dataset_name, view.current_of)
        if not column.startswith("_dlt_") and column != "deleted_at"
    )
    return f"select {columns} from {dataset}.{quote(view.current_of)} where deleted_at is null"


def _replace_view(sql: SqlClientBase[Any], name: str, body: str) -> None:
    """CREATE OR REPLACE keeps grants and dependent views; PostgreSQL refuses it when a new
    definition drops or retypes a column, and then the view is dropped and made anew."""
    try:
        sql.execute_sql(f"CREATE OR REPLACE VIEW {name} AS\n{body}")
    except DatabaseException:
        with sql.begin_transaction():
            sql.execute_sql(f"DROP VIEW IF EXISTS {name}")
            sql.execute_sql(f"CREATE VIEW {name} AS\n{body}")


def _dataset_tables(sql: SqlClientBase[Any], dataset_name: str) -> frozenset[str]:
    rows = sql.execute_sql(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_catalog = current_database() AND table_schema = %s",
        dataset_name,
    )
    return frozenset(str(row[0]) for row in rows or ())


def _columns(sql: SqlClientBase[Any], dataset_name: str, table: str) -> Iterator[str]:
    rows = sql.execute_sql(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_catalog = current_database() AND table_schema = %s AND table_name = %s"
        " ORDER BY ordinal_position",
        dataset_name,
        table,
    )
    return (str(row[0]) for row in rows or ())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
