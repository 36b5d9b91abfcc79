"""Drift: what Orb sends that the declared schema does not expect, named in a warning once
per run and loaded as it is (a new price kind, a field that changed type, a new field)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from dlt.common.schema import Schema

from .catalog import ENDPOINTS
from .hints import table_columns


def mismatched_types(table: str, row: Mapping[str, Any]) -> set[str]:
    """Declared columns whose value arrived as another JSON type. dlt stores a number sent
    for a text column as text without a variant column, so only this check names it."""
    columns = _declared_types(table)
    return {
        f"{table}.{name} arrived as {type(value).__name__}, declared {columns[name]}"
        for name, value in row.items()
        if name in columns and value is not None and not _fits(value, columns[name])
    }


@cache
def _declared_types(table: str) -> dict[str, str]:
    return {name: str(column.get("data_type")) for name, column in table_columns(table).items()}


def _fits(value: Any, data_type: str) -> bool:
    if isinstance(value, bool):
        return data_type in ("bool", "json")
    expected: dict[str, tuple[type, ...]] = {
        "text": (str,),
        "decimal": (str, int, Decimal),
        "timestamp": (str, datetime),
        "bigint": (int,),
        "bool": (bool,),
    }
    return data_type not in expected or isinstance(value, expected[data_type])


def unknown_kinds(table: str, rows: list[dict[str, Any]]) -> set[str]:
    """Values of the table's discriminator (`Endpoint.kinds`) the catalog does not know."""
    kinds = ENDPOINTS[table].kinds if table in ENDPOINTS else None
    if kinds is None:
        return set()
    return {str(row[kinds.field]) for row in rows if row.get(kinds.field) not in kinds.known} - {
        "None"
    }


def schema_changes(before: Mapping[str, Iterable[str]], after: Schema) -> list[str]:
    """What a run added to tables that existed before it: new columns, and variant columns
    (`total__v_text`) that appear when a field changes type."""
    changes: list[str] = []
    for table, known in before.items():
        if table not in after.tables:
            continue
        for name, column in after.get_table_columns(table).items():
            if name in known:
                continue
            kind = "changed type" if "__v_" in name else "new field"
            changes.append(f"{kind}: {table}.{name} ({column.get('data_type')})")
    return changes


def loaded_columns(schema: Schema) -> dict[str, set[str]]:
    return {name: set(schema.get_table_columns(name)) for name in schema.data_table_names()}
