"""What the report notebooks share: where the data is, reading a view, showing money.

`ORB_REPORT_DATABASE` points the notebooks at a DuckDB file or a PostgreSQL URL; unset, they
read the DuckDB file `make demo` leaves in the repository root. `ORB_REPORT_SCHEMA` names the
schema of the reporting views when it is not the default.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from pandas.io.formats.style import Styler

DEMO_DATABASE = "orb_demo.duckdb"
"""The file `make demo` writes, in the repository root."""
DEFAULT_SCHEMA = "orb_reporting"
CENT = Decimal("0.01")


@dataclass
class Warehouse:
    """A DB-API connection to the DuckDB file or PostgreSQL database holding the views."""

    connection: Any
    schema: str
    where: str

    def view(self, name: str, order_by: str = "1") -> pd.DataFrame:
        """All rows of a reporting view; money stays Decimal (DuckDB's `.df()` would make
        it float)."""
        return self.query(f"select * from {self.schema}.{name} order by {order_by}")

    def query(self, sql: str) -> pd.DataFrame:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql)
            columns = [column[0] for column in cursor.description]
            return pd.DataFrame(cursor.fetchall(), columns=columns)
        finally:
            cursor.close()


def connect() -> Warehouse:
    """The warehouse `ORB_REPORT_DATABASE` names, else the demo's DuckDB file."""
    target = os.environ.get("ORB_REPORT_DATABASE") or str(
        Path(__file__).resolve().parent.parent / DEMO_DATABASE
    )
    schema = os.environ.get("ORB_REPORT_SCHEMA") or DEFAULT_SCHEMA
    if target.startswith(("postgresql://", "postgres://")):
        import psycopg2

        connection = psycopg2.connect(target)
        connection.autocommit = True
        return Warehouse(connection, schema, "PostgreSQL")
    import duckdb

    if not Path(target).exists():
        raise FileNotFoundError(
            f"{target} does not exist: run `make demo`, or set ORB_REPORT_DATABASE to a DuckDB "
            "file or a postgresql:// URL."
        )
    return Warehouse(duckdb.connect(target, read_only=True), schema, target)


def money(value: Any) -> str:
    """An amount to the cent, half up, with thousands separators; blank when missing."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return f"{Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP):,}"


def money_table(frame: pd.DataFrame, columns: Iterable[str]) -> Styler:
    """The frame as a table with its money columns shown to the cent."""
    return frame.style.format(money, subset=list(columns)).hide(axis="index")


def floats(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Plotting needs floats; the tables keep the exact Decimals."""
    return frame.assign(**{column: frame[column].astype(float) for column in columns})


def ranked_bars(axis: Any, labels: Sequence[str], values: Sequence[float], **style: Any) -> Any:
    """Horizontal bars, first row on top; one bar per row even when two customers share a
    name (a categorical axis would stack them on one line)."""
    positions = range(len(labels) - 1, -1, -1)
    axis.set_yticks(list(positions), list(labels))
    return axis.barh(list(positions), list(values), **style)


def amounts_axis(axis: Any, which: str = "y") -> None:
    """Amount ticks with thousands separators instead of matplotlib's 1e6 offset."""
    from matplotlib.ticker import StrMethodFormatter

    getattr(axis, f"{which}axis").set_major_formatter(StrMethodFormatter("{x:,.0f}"))
