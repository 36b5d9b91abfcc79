"""The hints dlt gets for every table, built in one place from the catalog's shapes: the
resources' hints on the dict path and the hints each Arrow table carries on the Arrow path."""

from __future__ import annotations

from typing import Any

import dlt
from dlt.common.schema.typing import TColumnSchema, TTableSchemaColumns, TWriteDispositionConfig
from dlt.common.schema.utils import dlt_load_id_column
from dlt.extract.hints import TResourceNestedHints

from .catalog import EMITTED_ONCE, SHAPES
from .lakehouse import LOAD_ID, MERGING_FORMATS, open_table_format
from .schema import ROOT, Shape


def table_columns(table: str) -> TTableSchemaColumns:
    """The declared columns of a contract table: the common ones, then the table's own."""
    columns = ROOT.columns() | SHAPES[table].columns()
    columns["id"] = {**columns["id"], "nullable": False}
    return columns


def write_disposition(
    table: str, first_load: bool = False, table_format: str | None = None
) -> TWriteDispositionConfig:
    """Merge on `id`; without dlt's deduplication when the source already emits each object once
    (on a large first load that window over the staged rows was most of the load step).

    Such a table's first load, into a table the destination does not hold yet, is an append:
    a merge into an empty table would only copy every row through the staging dataset.

    Delta and Iceberg tables merge by upsert, the one strategy both formats offer (the source
    emits each object once per run for them, see `source.Output`); plain Parquet files cannot
    be merged and are appended."""
    if table_format == "parquet":
        return "append"
    if table_format in MERGING_FORMATS:
        return {"disposition": "merge", "strategy": "upsert"}
    if table not in EMITTED_ONCE:
        return "merge"
    if first_load:
        return "append"
    return {"disposition": "merge", "strategy": "delete-insert", "deduplicated": True}


def max_table_nesting(table: str) -> int:
    """dlt's nesting level for the table, deep enough for every declared column."""
    return SHAPES[table].nesting()


def nested_hints(table: str) -> dict[str | tuple[str, ...], TResourceNestedHints]:
    """DECIMAL and timestamp hints for dlt's child tables (`invoice_line_items__tax_amounts`).

    dlt names a nested table by the path of fields that reach it, and normalizes each path
    element as one identifier (`tiered_config__tiers` would become `tiered_config_tiers`),
    so the path is given field by field, and the parent table named (the objects on the way,
    `price__tiered_config`, are columns, not tables)."""
    return {
        tuple(part for hop in hops for part in hop.split("__")): dlt.mark.make_nested_hints(
            columns=shape.columns(), parent_table_name="__".join((table, *hops[:-1]))
        )
        for hops, shape in SHAPES[table].nested.items()
    }


def resource_hints(
    table: str, first_load: bool, table_format: str | None, arrow: bool
) -> dict[str, Any]:
    """A table's resource hints. On the Arrow path each Arrow table carries its own
    (`arrow_hints`): resource-wide columns would leak into its child tables."""
    disposition = write_disposition(table, first_load, table_format)
    open_format = open_table_format(table_format)
    if arrow:
        return {"write_disposition": disposition, "table_format": open_format}
    return {
        "primary_key": "id",
        "write_disposition": disposition,
        "columns": table_columns(table),
        "nested_hints": nested_hints(table),
        "table_format": open_format,
        "max_table_nesting": max_table_nesting(table),
    }


# The Arrow path (`arrow.py`): each Arrow table carries its own hints.

ROW_KEY: TColumnSchema = {
    "name": "_dlt_id",
    "data_type": "text",
    "nullable": False,
    "unique": True,
    "row_key": True,
}
"""Declared as dlt declares it on the tables it normalizes: warehouses that index unique
columns (PostgreSQL) then index it, which the sweep's and dlt's merge joins need."""
LINK_COLUMNS: TTableSchemaColumns = {
    "_dlt_parent_id": {"name": "_dlt_parent_id", "data_type": "text", "nullable": False},
    "_dlt_root_id": {"name": "_dlt_root_id", "data_type": "text", "nullable": False},
    "_dlt_list_idx": {"name": "_dlt_list_idx", "data_type": "bigint", "nullable": False},
    "_dlt_id": ROW_KEY,
}


def nested_shape(root: str, table: str) -> Shape | None:
    if table == root:
        return SHAPES[root]
    path = tuple(table.removeprefix(f"{root}__").split("__"))
    for nested_path, shape in SHAPES[root].nested.items():
        if "__".join(nested_path) == "__".join(path):
            return shape
    return None


def arrow_columns(root: str, table: str) -> TTableSchemaColumns:
    if table == root:
        return {**table_columns(root), "_dlt_id": ROW_KEY}
    shape = nested_shape(root, table)
    return {**(shape.columns() if shape else {}), **LINK_COLUMNS}


def arrow_hints(root: str, table: str, first_load: bool, table_format: str | None) -> Any:
    """Root tables merge on Orb's id; child tables replace all children of a re-read root.

    Delta and Iceberg upsert each table on its own key (a child's `_dlt_id`, stable across
    runs); children a re-read root no longer has are removed by the sweep, as for dlt's nested
    tables there (`lakehouse.py`)."""
    disposition = write_disposition(root, first_load, table_format)
    open_format = open_table_format(table_format)
    # `_dlt_load_id` (`arrow.arrow_items`) declared as dlt declares the one it adds itself
    columns = {**arrow_columns(root, table), LOAD_ID: dlt_load_id_column()}
    if table == root or open_format:
        return dlt.mark.make_hints(
            table_name=table,
            primary_key="id" if table == root else "_dlt_id",
            write_disposition=disposition,
            columns=columns,
            table_format=open_format,
        )
    return dlt.mark.make_hints(
        table_name=table,
        merge_key="_dlt_root_id",
        write_disposition="append" if disposition == "append" else "merge",
        columns=columns,
    )
