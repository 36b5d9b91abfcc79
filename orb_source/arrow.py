"""The Arrow path: rows flattened here into Arrow tables, so dlt's JSON normalizer is skipped.

For the high-volume tables (invoices, their line items, ledger entries, usage, costs, event
volume) dlt's per-row normalizer was the bottleneck (benchmarks/RESULTS.md). This module does
the same relational
flattening: nested objects become `a__b` columns, arrays become child tables
(`invoice_line_items__tax_amounts`) linked by `_dlt_parent_id`/`_dlt_root_id`/`_dlt_list_idx`,
objects and arrays nested deeper than the table's `max_table_nesting` (`Shape.nesting`) become
JSON, as dlt counts them, and column types come from the declared schema (`schema.py`) or,
for fields Orb adds later, from the values, the way dlt would infer them.

Two ways build the same tables. `_Columnar` hands a whole batch to Arrow as one struct array
and flattens it with Arrow's own kernels: no Python loop per value. `_Flattener` walks the
rows in Python and inspects values one by one; a batch goes that way only when the columnar
path cannot reproduce dlt exactly, such as when a value does not fit its column's type and
must go to a variant column. Declared JSON columns are encoded before either path runs.

dlt registers child tables of Arrow data as tables of their own rather than nested tables,
so each is merged on `_dlt_root_id` alone (a merge on row key *or* root key is a slow OR join):
a re-read parent replaces all its children. A root's row key is its Orb id, unique in its
table and stable across runs; a child's is its parent's key plus its array and position.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from functools import cache
from itertools import chain, groupby
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.schema.typing import TTableSchemaColumns
from dlt.extract.items import DataItemWithMeta

from .catalog import SHAPES
from .hints import arrow_columns, arrow_hints, max_table_nesting, nested_shape
from .lakehouse import LOAD_ID
from .precision import PRECISION, SCALE, objects_at

# pyarrow imports pandas, when it is installed, the first time it converts Python objects. Done
# in an extract thread, that import races dlt's checks for DataFrames in the other threads,
# which see a half-imported module and fail the run; one conversion here imports it up front.
pa.array([])

DECIMAL = pa.decimal128(PRECISION, SCALE)
INFERRED_DECIMAL = pa.decimal128(38, 9)
"""A number in a field the schema does not declare: the type dlt's normalizer gives it."""
TIMESTAMP = pa.timestamp("us", tz="UTC")
ARROW_TYPES: Mapping[str, pa.DataType] = {
    "decimal": DECIMAL,
    "timestamp": TIMESTAMP,
    "json": pa.string(),
    "text": pa.string(),
    "bigint": pa.int64(),
    "bool": pa.bool_(),
}
Row = dict[str, Any]


class DeclaredHintsKept(logging.Filter):
    """Drops dlt's notice that an Arrow table's column types differ from its declared hints
    and that the hints were kept. Ours differ on purpose, since JSON columns travel as text and
    are declared `json`, so dlt would repeat the notice for every batch of every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "when merging arrow schema" not in record.getMessage()


@contextmanager
def quiet_declared_hints() -> Iterator[None]:
    """`DeclaredHintsKept` on dlt's logger while the block runs (`run_pipeline`'s extract)."""
    dlt_logger = logging.getLogger("dlt")
    quiet = DeclaredHintsKept()
    dlt_logger.addFilter(quiet)
    try:
        yield
    finally:
        dlt_logger.removeFilter(quiet)


def arrow_items(
    table: str,
    rows: list[Row],
    first_load: bool = False,
    table_format: str | None = None,
    load_id: str | None = None,
) -> list[DataItemWithMeta]:
    """One Arrow table per output table, each marked with that table's hints; on `table`'s
    first load (see `write_disposition`) its child tables are appended too.

    `load_id`, the load package's, goes into every row as `_dlt_load_id`, as dlt's normalizer
    gives it to the dict path's rows: the sweep removes replaced child rows by it. Set here
    rather than by dlt's `add_dlt_load_id` setting, which is process-wide."""
    _encode_json(table, rows)
    try:
        tables = _Columnar(table).tables(rows)
    except _Misfit:
        tables = {
            name: _to_arrow(flat, arrow_columns(table, name))
            for name, flat in _Flattener(table).flatten(rows).items()
            if flat
        }
    return [
        dlt.mark.with_hints(
            _with_load_id(arrow_table, load_id),
            arrow_hints(table, name, first_load, table_format),
            True,
        )
        for name, arrow_table in tables.items()
    ]


def _with_load_id(arrow_table: pa.Table, load_id: str | None) -> pa.Table:
    """The table with `_dlt_load_id` last, where dlt's own setting would put it."""
    if load_id is None:
        return arrow_table
    column = pa.repeat(load_id, arrow_table.num_rows)
    return arrow_table.append_column(pa.field(LOAD_ID, pa.string(), nullable=False), column)


HELD_ROWS = 50_000
"""Rows of one table held before they go to dlt as one item (see `Held`)."""


class Held:
    """A resource's Arrow tables, held per table and handed to dlt concatenated.

    dlt pays a fixed cost for every item it extracts (the item's hints merged into the
    schema, a writer found): about 1.7 ms. A batch of invoices yields a table for each of some
    50 child tables, most of them a few rows (one price model's tiers): the benchmark's run
    made 768 items. Held until a table has `HELD_ROWS` rows, or the resource ends, they make
    65. Tables whose columns do not concatenate (a field Orb changed type between
    batches) go as they came. Items that are not Arrow tables pass through at once.
    """

    def __init__(self, rows: int = HELD_ROWS) -> None:
        self.rows = rows
        self.held: dict[str, list[DataItemWithMeta]] = defaultdict(list)

    def add(self, items: Iterable[Any]) -> Iterator[Any]:
        """The items, with each table's Arrow tables held until they have `rows` rows."""
        for item in items:
            if not (isinstance(item, DataItemWithMeta) and isinstance(item.data, pa.Table)):
                yield item
                continue
            table = item.meta.hints["table_name"]
            self.held[table].append(item)
            if sum(len(part.data) for part in self.held[table]) >= self.rows:
                yield from _concatenated(self.held.pop(table))

    def flush(self) -> Iterator[DataItemWithMeta]:
        """Every table still held: the resource has no more rows."""
        while self.held:
            yield from _concatenated(self.held.pop(next(iter(self.held))))


def _concatenated(items: list[DataItemWithMeta]) -> Iterator[DataItemWithMeta]:
    """One item for tables of the same name and hints, or the items themselves when their
    columns' types differ."""
    if len(items) == 1:
        yield items[0]
        return
    try:
        data = pa.concat_tables([item.data for item in items], promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        yield from items
        return
    yield dlt.mark.with_hints(data, items[0].meta.hints, True)


class _Misfit(Exception):
    """A batch whose shape or types the columnar path does not handle exactly like dlt."""


class _Columnar:
    """The relational flattening done by Arrow in C++: the rows become one struct array,
    nested objects become `a__b` columns and arrays child tables, without a Python loop per
    value. Anything it cannot reproduce exactly, such as a value that does not fit its column,
    raises `_Misfit` and the batch goes through `_Flattener`, which handles every case."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.tables_by_name: dict[str, pa.Table] = {}

    def tables(self, rows: list[Row]) -> dict[str, pa.Table]:
        array = _struct_array(rows)
        keys = _cast(array.field("id"), pa.string())
        self._table(self.root, array, {"_dlt_id": keys}, 0, keys)
        return self.tables_by_name

    def _table(
        self,
        table: str,
        array: pa.StructArray,
        links: dict[str, pa.Array],
        depth: int,
        root: pa.Array,
    ) -> None:
        columns = dict(links)
        self._into(columns, array, "", table, depth, links["_dlt_id"], root)
        self.tables_by_name[table] = _typed(columns, arrow_columns(self.root, table))

    def _into(
        self,
        columns: dict[str, pa.Array],
        array: pa.StructArray,
        prefix: str,
        table: str,
        depth: int,
        key: pa.Array,
        root: pa.Array,
    ) -> None:
        json_columns = _json_columns(self.root, table)
        nested = depth < _nesting(self.root)
        for field, values in zip(array.type, array.flatten(), strict=True):
            name = prefix + field.name
            unfolded = nested and name not in json_columns
            if pa.types.is_struct(field.type) and unfolded:
                self._into(columns, values, name + "__", table, depth + 1, key, root)
            elif pa.types.is_list(field.type) and unfolded:
                self._children(f"{table}__{name}", values, depth + 1, key, root)
            elif pa.types.is_nested(field.type):
                raise _Misfit
            else:
                columns[name] = values

    def _children(
        self, table: str, lists: pa.ListArray, depth: int, parent: pa.Array, root: pa.Array
    ) -> None:
        items = lists.flatten()
        if not len(items):
            return
        owners = pc.list_parent_indices(lists)
        starts = lists.offsets.cast(pa.int64()).take(owners)
        first = lists.offsets[0].as_py()
        index = pc.subtract(pa.array(range(first, first + len(items)), pa.int64()), starts)
        parents = parent.take(owners)
        roots = root.take(owners)
        suffix = "." + table.rsplit("__", 1)[-1]
        links = {
            "_dlt_parent_id": parents,
            "_dlt_root_id": roots,
            "_dlt_list_idx": index,
            "_dlt_id": pc.binary_join_element_wise(parents, suffix, index.cast(pa.string()), ""),
        }
        if pa.types.is_struct(items.type) and items.null_count == 0:
            self._table(table, items, links, depth, roots)
        elif pa.types.is_nested(items.type):
            raise _Misfit
        else:
            self.tables_by_name[table] = _typed(
                {**links, "value": items}, arrow_columns(self.root, table)
            )


def _struct_array(rows: list[Row]) -> pa.StructArray:
    """The rows as one struct array, field types inferred by Arrow over every value.

    A field whose objects the rows share (a line item's price: one object per distinct price
    of a page, `wire.py`) is converted once per object and taken for each row; Arrow infers
    the same type from the distinct objects as from every row's."""
    try:
        shared = {name: _distinct(rows, name) for name in _shared_fields(rows)}
        if not shared:
            return pa.array(rows)
        blanks = dict.fromkeys(shared)
        rest = pa.array([{**row, **blanks} if row.keys() >= blanks.keys() else row for row in rows])
        built = {
            name: pa.array(objects).take(pa.array(positions, pa.int32()))
            for name, (objects, positions) in shared.items()
        }
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        raise _Misfit from None
    fields = list(rest.type)
    return pa.StructArray.from_arrays(
        [built.get(field.name, rest.field(i)) for i, field in enumerate(fields)],
        names=[field.name for field in fields],
    )


def _shared_fields(rows: list[Row]) -> list[str]:
    """Top-level fields whose objects repeat: at most half as many objects as rows."""
    if not rows:
        return []
    return [
        name
        for name, value in rows[0].items()
        if type(value) is dict
        and len({id(row.get(name)) for row in rows}) * 2 <= len(rows)
        and all(type(row.get(name)) in (dict, type(None)) for row in rows)
    ]


def _distinct(rows: list[Row], name: str) -> tuple[list[Row], list[int | None]]:
    """The field's distinct objects in order of first appearance, and each row's position
    among them (None where the row has none)."""
    positions: dict[int, int] = {}
    objects: list[Row] = []
    taken: list[int | None] = []
    for row in rows:
        value = row.get(name)
        if value is None:
            taken.append(None)
            continue
        position = positions.get(id(value))
        if position is None:
            position = positions[id(value)] = len(objects)
            objects.append(value)
        taken.append(position)
    return objects, taken


def _typed(columns: Mapping[str, pa.Array], declared: TTableSchemaColumns) -> pa.Table:
    """Columns cast to their declared types, or typed the way `_build` types them."""
    fields, arrays = [], []
    for name, values in columns.items():
        hint = declared.get(name)
        if hint is None and values.null_count == len(values):
            continue
        target = ARROW_TYPES[str(hint.get("data_type"))] if hint else _inferred(values)
        fields.append(pa.field(name, target))
        arrays.append(_cast(values, target))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _inferred(values: pa.Array) -> pa.DataType:
    kind = values.type
    if pa.types.is_decimal(kind):
        return INFERRED_DECIMAL
    if kind in (pa.bool_(), pa.int64()):
        return kind
    if kind == pa.string():
        return TIMESTAMP if _is_timestamp(values.drop_null()[0].as_py()) else kind
    raise _Misfit


CASTS = {
    DECIMAL: (pa.types.is_string, pa.types.is_integer, pa.types.is_decimal),
    INFERRED_DECIMAL: (pa.types.is_string, pa.types.is_integer, pa.types.is_decimal),
    TIMESTAMP: (pa.types.is_string, pa.types.is_timestamp),
}
"""The conversions `_build` also makes; any other mismatch is a change of type."""


def _cast(values: pa.Array, target: pa.DataType) -> pa.Array:
    kind = values.type
    if kind == target:
        return values
    if kind != pa.null() and not any(check(kind) for check in CASTS.get(target, ())):
        raise _Misfit
    try:
        return values.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise _Misfit from None


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
        nested = depth < _nesting(self.root)
        for field, value in obj.items():
            name = prefix + field if prefix else field
            kind = type(value)
            if kind is dict and nested and name not in json_columns:
                self._into(flat, value, name + "__", table, depth + 1, key, root)
            elif kind is list and nested and name not in json_columns:
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


def _to_arrow(rows: list[Row], declared: TTableSchemaColumns) -> pa.Table:
    """Rows to an Arrow table in C++; a batch whose values defy the sampled types (Orb changed
    a field's type) is converted again with every value inspected."""
    try:
        return _build(rows, declared, careful=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        return _build(rows, declared, careful=True)


def _build(rows: list[Row], declared: TTableSchemaColumns, careful: bool) -> pa.Table:
    """Fast: types from the schema or the first value, strings cast by Arrow. Careful: every
    value converted here, and one that does not fit its column goes to a `__v_text` variant
    column next to it, as dlt's normalizer does."""
    staged, casts, variants = [], {}, []
    for name in _names(rows):
        hint = declared.get(name)
        sample = _first_value(rows, name)
        if hint is None and sample is None:
            continue
        values = [row.get(name) for row in rows] if careful else [sample]
        target = ARROW_TYPES[str(hint.get("data_type"))] if hint else _infer(values)
        if target == pa.string() and careful:
            _stringify(rows, name)
        elif careful and _coerce(rows, name, target):
            variants.append(pa.field(f"{name}__v_text", pa.string()))
        elif not careful and isinstance(sample, str) and target in CASTS:
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
    if pa.types.is_decimal(target) and isinstance(value, str | int | Decimal):
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
        return INFERRED_DECIMAL
    if all(isinstance(v, str) and _is_timestamp(v) for v in present):
        return TIMESTAMP
    return pa.string()


def _stringify(rows: list[Row], name: str) -> None:
    """Values of other types in a text column become strings, in place."""
    for row in rows:
        value = row.get(name)
        if value is not None and not isinstance(value, str):
            row[name] = _text(value, as_json=False)


def _encode_json(root: str, rows: list[Row]) -> None:
    """Every declared JSON column, at any depth, becomes its JSON text in place, before either
    flattening path sees the rows. Nested objects are changed in the parsed page itself: only
    values no sync strategy reads (metadata, prices, filters) change, and an existing key's
    value is replaced, never a key added.

    Line items of a page share one object per distinct price (`wire.py`), so an object reached
    twice is encoded once.
    """
    done: set[tuple[int, str]] = set()
    for hops, groups in _json_fields(root):
        objects = objects_at(rows, hops)
        for parents, leaves in groups:
            owners = _owners(objects, parents)
            for leaf in leaves:
                for owner in owners:
                    value = owner.get(leaf)
                    if value is not None and (id(owner), leaf) not in done:
                        owner[leaf] = _text(value, as_json=True)
                        done.add((id(owner), leaf))


def _owners(objects: list[Row], parents: tuple[str, ...]) -> list[Row]:
    """The distinct objects at `parents` inside `objects`, in order of first appearance (the
    objects themselves without `parents`: an object listed twice is encoded once anyway)."""
    if not parents:
        return objects
    found: dict[int, Row] = {}
    for obj in objects:
        owner: Any = obj
        for part in parents:
            owner = owner.get(part)
            if type(owner) is not dict:
                break
        else:
            found.setdefault(id(owner), owner)
    return list(found.values())


JsonFields = tuple[tuple[str, ...], tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]]


@cache
def _json_fields(root: str) -> tuple[JsonFields, ...]:
    """Per table (the array hops that reach its objects), its declared JSON columns as paths
    inside those objects, consecutive paths through the same objects grouped (a price's
    `metadata`, `credit_allocation`, ...: the price is found once for all of them)."""
    shape = SHAPES[root]
    tables = [((), shape), *shape.nested.items()]
    return tuple(
        (hops, _grouped(tuple(name.split("__")) for name in table.json))
        for hops, table in tables
        if table.json
    )


def _grouped(
    paths: Iterable[tuple[str, ...]],
) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    """Consecutive paths with the same parents as (parents, leaves)."""
    return tuple(
        (parents, tuple(path[-1] for path in group))
        for parents, group in groupby(paths, key=lambda path: path[:-1])
    )


def _text(value: Any, as_json: bool) -> str:
    if as_json or isinstance(value, dict | list):
        return json.dumps(value, default=str, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _is_timestamp(value: str) -> bool:
    if len(value) < 19 or value[10] not in "T ":
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


@cache
def _nesting(root: str) -> int:
    return max_table_nesting(root)


@cache
def _json_columns(root: str, table: str) -> frozenset[str]:
    shape = nested_shape(root, table)
    return frozenset(shape.json) if shape else frozenset()
