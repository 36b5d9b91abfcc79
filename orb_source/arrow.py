"""The Arrow path: rows flattened here into Arrow tables, so dlt's JSON normalizer is skipped.

For the high-volume tables (invoices, their line items, ledger entries) dlt's per-row
normalizer was the bottleneck (benchmarks/RESULTS.md). This module does the same relational
flattening: nested objects become `a__b` columns, arrays become child tables
(`invoice_line_items__tax_amounts`) linked by `_dlt_parent_id`/`_dlt_root_id`/`_dlt_list_idx`,
deeper arrays become JSON, and column types come from the declared schema (`schema.py`) or,
for fields Orb adds later, from the values, the way dlt would infer them.

dlt registers child tables of Arrow data as tables of their own rather than nested tables,
so each is merged on `_dlt_root_id` alone (a merge on row key *or* root key is a slow OR join):
a re-read parent replaces all its children. A root's row key is its Orb id, unique in its
table and stable across runs; a child's is its parent's key plus its array and position.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from functools import cache
from itertools import chain
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.schema.typing import TTableSchemaColumns
from dlt.extract.items import DataItemWithMeta

from .schema import SHAPES, Shape, merge_disposition, table_columns

MAX_NESTING = 2
"""The source's `max_table_nesting`: arrays deeper than this are JSON."""

DECIMAL = pa.decimal128(38, 9)
TIMESTAMP = pa.timestamp("us", tz="UTC")
ARROW_TYPES: Mapping[str, pa.DataType] = {
    "decimal": DECIMAL,
    "timestamp": TIMESTAMP,
    "json": pa.string(),
    "text": pa.string(),
    "bigint": pa.int64(),
    "bool": pa.bool_(),
}
LINK_COLUMNS: TTableSchemaColumns = {
    "_dlt_parent_id": {"name": "_dlt_parent_id", "data_type": "text", "nullable": False},
    "_dlt_root_id": {"name": "_dlt_root_id", "data_type": "text", "nullable": False},
    "_dlt_list_idx": {"name": "_dlt_list_idx", "data_type": "bigint", "nullable": False},
    "_dlt_id": {"name": "_dlt_id", "data_type": "text", "nullable": False},
}

Row = dict[str, Any]


def arrow_items(table: str, rows: Iterable[Mapping[str, Any]]) -> list[DataItemWithMeta]:
    """One Arrow table per output table, each marked with that table's hints."""
    tables = _Flattener(table).flatten(rows)
    return [
        dlt.mark.with_hints(
            _to_arrow(name, rows, _declared(table, name)), _hints(table, name), True
        )
        for name, rows in tables.items()
        if rows
    ]


class _Flattener:
    """dlt's relational normalization of one root table and its child tables."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.tables: dict[str, list[Row]] = defaultdict(list)

    def flatten(self, rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Row]]:
        for obj in rows:
            key = str(obj["id"])
            flat: Row = {"_dlt_id": key}
            self._into(flat, obj, "", self.root, 0, key, key)
            self.tables[self.root].append(flat)
        return self.tables

    def _into(
        self,
        flat: Row,
        obj: Mapping[str, Any],
        prefix: str,
        table: str,
        depth: int,
        key: str,
        root: str,
    ) -> None:
        json_columns = _json_columns(self.root, table)
        for field, value in obj.items():
            name = prefix + field if prefix else field
            kind = type(value)
            if kind is dict and name not in json_columns:
                self._into(flat, value, name + "__", table, depth, key, root)
            elif kind is list and depth < MAX_NESTING and name not in json_columns:
                self._children(f"{table}__{name}", value, depth + 1, key, root)
            else:
                flat[name] = value

    def _children(self, table: str, items: list[Any], depth: int, parent: str, root: str) -> None:
        for index, item in enumerate(items):
            key = f"{parent}.{table.rsplit('__', 1)[-1]}{index}"
            row: Row = {"_dlt_parent_id": parent, "_dlt_root_id": root, "_dlt_list_idx": index}
            row["_dlt_id"] = key
            if type(item) is dict:
                self._into(row, item, "", table, depth, key, root)
            else:
                row["value"] = item
            self.tables[table].append(row)


def _to_arrow(table: str, rows: list[Row], declared: TTableSchemaColumns) -> pa.Table:
    """Rows to an Arrow table in C++; a batch whose values defy the sampled types (Orb changed
    a field's type) is converted again with every value inspected."""
    encoded: set[str] = set()
    try:
        return _build(rows, declared, encoded, careful=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        return _build(rows, declared, encoded, careful=True)


def _build(
    rows: list[Row], declared: TTableSchemaColumns, encoded: set[str], careful: bool
) -> pa.Table:
    """Fast: types from the schema or the first value, strings cast by Arrow. Careful: every
    value converted here, and one that does not fit its column goes to a `__v_text` variant
    column next to it, as dlt's normalizer does. JSON columns are encoded in place once
    (`encoded`), so the careful retry does not encode them twice."""
    staged, casts, variants = [], {}, []
    for name in _names(rows):
        hint = declared.get(name)
        sample = _first_value(rows, name)
        if hint is None and sample is None:
            continue
        values = [row.get(name) for row in rows] if careful else [sample]
        target = ARROW_TYPES[str(hint.get("data_type"))] if hint else _infer(values)
        if hint and hint.get("data_type") == "json":
            if name not in encoded:
                _encode_text(rows, name, as_json=True)
                encoded.add(name)
        elif target == pa.string() and careful:
            _encode_text(rows, name, as_json=False)
        elif careful and _coerce(rows, name, target):
            variants.append(pa.field(f"{name}__v_text", pa.string()))
        elif not careful and isinstance(sample, str) and target in (DECIMAL, TIMESTAMP):
            casts[name] = target
            target = pa.string()
        staged.append(pa.field(name, target))
    arrow_table = pa.Table.from_pylist(rows, schema=pa.schema(staged + variants))
    for name, target in casts.items():
        index = arrow_table.schema.get_field_index(name)
        arrow_table = arrow_table.set_column(index, name, pc.cast(arrow_table[name], target))
    return arrow_table


def _coerce(rows: list[Row], name: str, target: pa.DataType) -> bool:
    """Convert a column in place; values that cannot be converted move to `{name}__v_text`."""
    moved = False
    for row in rows:
        value = row.get(name)
        if value is None:
            continue
        try:
            row[name] = _as_type(value, target)
        except (ValueError, TypeError, ArithmeticError):
            row[name] = None
            row[f"{name}__v_text"] = _text(value, as_json=False)
            moved = True
    return moved


def _as_type(value: Any, target: pa.DataType) -> Any:
    if isinstance(value, bool) and target != pa.bool_():
        raise TypeError("a boolean in a non-boolean column")
    if target == DECIMAL and isinstance(value, str | int | Decimal):
        return Decimal(value) if isinstance(value, str) else Decimal(str(value))
    if target == TIMESTAMP and isinstance(value, str | datetime):
        return datetime.fromisoformat(value) if isinstance(value, str) else value
    if target == pa.int64() and isinstance(value, int):
        return value
    if target == pa.bool_() and isinstance(value, bool):
        return value
    raise TypeError(f"{type(value).__name__} does not fit {target}")


def _names(rows: list[Row]) -> list[str]:
    """Every field of the batch, in order of first appearance."""
    return list(dict.fromkeys(chain.from_iterable(rows)))


def _first_value(rows: list[Row], name: str) -> Any:
    return next((row[name] for row in rows if row.get(name) is not None), None)


def _infer(values: list[Any]) -> pa.DataType:
    """dlt's inference for a field the schema does not declare."""
    present = [v for v in values if v is not None]
    if all(isinstance(v, bool) for v in present):
        return pa.bool_()
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.int64()
    if all(isinstance(v, int | Decimal) and not isinstance(v, bool) for v in present):
        return DECIMAL
    if all(isinstance(v, str) and _is_timestamp(v) for v in present):
        return TIMESTAMP
    return pa.string()


def _encode_text(rows: list[Row], name: str, as_json: bool) -> None:
    """JSON columns and values of other types in a text column become strings, in place.

    Line items embed their whole price; a listing repeats a few prices thousands of times,
    so each price is encoded once per batch. A price's only mutable field is its metadata,
    which is part of the key.
    """
    encoded: dict[tuple[str, str], str] = {}
    for row in rows:
        value = row.get(name)
        if value is None or not (as_json or not isinstance(value, str)):
            continue
        if isinstance(value, dict) and "id" in value and "metadata" in value:
            key = (str(value["id"]), repr(value["metadata"]))
            if key not in encoded:
                encoded[key] = _text(value, as_json)
            row[name] = encoded[key]
        else:
            row[name] = _text(value, as_json)


def _text(value: Any, as_json: bool) -> str:
    if as_json or isinstance(value, dict | list):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


def _is_timestamp(value: str) -> bool:
    if len(value) < 19 or value[10] not in "T ":
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _shape(root: str, table: str) -> Shape | None:
    if table == root:
        return SHAPES[root]
    path = tuple(table.removeprefix(f"{root}__").split("__"))
    for nested_path, shape in SHAPES[root].nested.items():
        if "__".join(nested_path) == "__".join(path):
            return shape
    return None


@cache
def _json_columns(root: str, table: str) -> frozenset[str]:
    shape = _shape(root, table)
    return frozenset(shape.json) if shape else frozenset()


def _declared(root: str, table: str) -> TTableSchemaColumns:
    if table == root:
        return table_columns(root)
    shape = _shape(root, table)
    return {**(shape.columns() if shape else {}), **LINK_COLUMNS}


def _hints(root: str, table: str) -> Any:
    """Root tables merge on Orb's id; child tables replace all children of a re-read root."""
    if table == root:
        return dlt.mark.make_hints(
            table_name=table,
            primary_key="id",
            write_disposition=merge_disposition(table),
            columns=table_columns(root),
        )
    return dlt.mark.make_hints(
        table_name=table,
        merge_key="_dlt_root_id",
        write_disposition="merge",
        columns=_declared(root, table),
    )
