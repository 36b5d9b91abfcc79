"""The filesystem destination: Delta or Iceberg tables that merge, or plain Parquet files.

Delta and Iceberg tables are merged by upsert, the strategy both formats offer: each table on
its own key, `id` for a root table and `_dlt_id` for a child table, which is stable across
runs. An upsert leaves behind the children a re-read object no longer has (a shorter array),
so every child row carries the `_dlt_load_id` of the load that wrote it, and the sweep removes
the children older than their root, as dlt's merge replaces nested rows on SQL destinations.

The sweep applies the rules of `sweep.py`, in the same order and with the same results, through
the formats' own libraries (`deltalake`, `pyiceberg`), which need nothing downloaded at run
time: SQL over these tables would need a DuckDB extension fetched from the network. Each rule
reads the few columns it compares as Arrow tables, finds the rows to change with Arrow joins,
and writes only those rows back, by their `_dlt_id`. Plain Parquet files cannot be updated in
place: they are appended to, and no deletion is marked.
"""

from __future__ import annotations

import importlib.util
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import dlt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dlt.common.destination import Destination
from dlt.common.destination.exceptions import DestinationUndefinedEntity
from dlt.common.normalizers.json.relational import DataItemNormalizer
from dlt.common.schema import Schema
from dlt.common.schema.typing import TColumnName, TTableFormat
from dlt.common.schema.utils import get_inherited_table_hint

from .state import Listing

logger = logging.getLogger(__name__)

TABLE_FORMATS = ("delta", "iceberg", "parquet")
"""`--table-format` on the filesystem destination; the first is the default."""

MERGING_FORMATS = frozenset({"delta", "iceberg"})
"""Formats whose tables can be updated in place: merged on load, swept after it."""

DEFAULT_BUCKET = "orb_billing_lake"
"""The folder in the working directory that holds the tables when dlt's
`destination.filesystem.bucket_url` is not set."""

LOAD_ID = TColumnName("_dlt_load_id")
"""Which load wrote a row: dlt sets it on root rows, `propagate_load_id` on child rows."""

KEY = "_dlt_id"
"""The column the sweep writes rows back by: unique in every table, root or child."""


def open_table_format(table_format: str | None) -> TTableFormat | None:
    """dlt's `table_format` hint: Delta or Iceberg; plain Parquet files have none."""
    return cast(TTableFormat, table_format) if table_format in MERGING_FORMATS else None


LIBRARIES = {"delta": ("deltalake",), "iceberg": ("pyiceberg", "sqlalchemy")}
"""What each format needs: its library (dlt's Iceberg catalog also needs SQLAlchemy)."""


def missing_library(table_format: str) -> str | None:
    """What a table format needs and the environment lacks: checked before any work, as dlt
    would only find out when it loads what the run extracted."""
    missing = [lib for lib in LIBRARIES.get(table_format, ()) if not importlib.util.find_spec(lib)]
    if not missing:
        return None
    return (
        f"The {table_format} table format needs {' and '.join(missing)}:"
        " pip install 'orb-source[lakehouse]'."
    )


def with_default_bucket(destination: str | Destination[Any, Any]) -> str | Destination[Any, Any]:
    """dlt's filesystem destination writes to `./orb_billing_lake` unless dlt's own
    `bucket_url` setting names another place (a folder, `s3://`, `gs://`, `az://`, ...)."""
    if destination != "filesystem" or dlt.config.get("destination.filesystem.bucket_url"):
        return destination
    return dlt.destinations.filesystem(bucket_url=str(Path.cwd() / DEFAULT_BUCKET))


def announce(table_format: str) -> None:
    """Plain Parquet is not a mirror; say so once, at the start of the run."""
    if table_format == "parquet":
        logger.warning(
            "table format parquet is append-only: each re-read object adds a row and deletions"
            " are not marked; use delta or iceberg for tables that merge"
        )


def propagate_load_id(schema: Schema) -> None:
    """Give every nested row the `_dlt_load_id` of its root row, which dlt's normalizer gives
    only to root rows, so the sweep can tell which children the last load wrote."""
    DataItemNormalizer.update_normalizer_config(
        schema, {"propagation": {"root": {LOAD_ID: LOAD_ID}}}
    )


def is_filesystem(pipeline: dlt.Pipeline) -> bool:
    destination = pipeline.destination
    return destination is not None and destination.destination_name == "filesystem"


def read_open_table(pipeline: dlt.Pipeline, table: str, columns: list[str]) -> pa.Table | None:
    """Columns of a Delta or Iceberg table, read with its own library: SQL over it would need
    a DuckDB extension downloaded at run time. None for any other table or destination."""
    if not is_filesystem(pipeline) or not pipeline.default_schema_name:
        return None
    with pipeline.destination_client() as client:
        return _OpenTables(client, pipeline.default_schema).read(table, columns)


@contextmanager
def open_tables(pipeline: dlt.Pipeline) -> Iterator[_OpenTables]:
    """The pipeline's Delta and Iceberg tables, with the deletion rules (`sweep.Rules`) for
    them: the same rules as on a SQL destination, computed with Arrow. Plain Parquet tables are
    not swept."""
    with pipeline.destination_client() as client:
        yield _OpenTables(client, pipeline.default_schema)


def evolve_iceberg_tables(pipeline: dlt.Pipeline) -> None:
    """Before a load, add to each Iceberg table the columns its normalized files bring, and
    commit an empty snapshot written with the new schema.

    pyiceberg's upsert reads the rows it matches with the schema of the branch's last
    snapshot, not the table's current one (apache/iceberg-python#2467), so the first upsert
    after a new column appears (an end date set on an interval, a field Orb adds) fails
    however many times it is retried. The table's own schema update, which dlt repeats at
    load, then changes nothing."""
    if not is_filesystem(pipeline) or not pipeline.default_schema_name:
        return
    from dlt.common.libs.pyiceberg import ensure_iceberg_compatible_arrow_schema

    arriving: dict[str, list[pa.Schema]] = {}
    for load_id in pipeline.list_normalized_load_packages():
        for job in pipeline.get_load_package_info(load_id).jobs["new_jobs"]:
            if job.job_file_info.file_format == "parquet":
                schema = pq.read_schema(job.file_path)
                arriving.setdefault(job.job_file_info.table_name, []).append(schema)
    with pipeline.destination_client() as client:
        tables = _OpenTables(client, pipeline.default_schema)
        for table, schemas in arriving.items():
            handle = tables._handle(table) if tables.formats.get(table) == "iceberg" else None
            if handle is None:
                continue
            with handle.update_schema() as update:
                for schema in schemas:
                    update.union_by_name(ensure_iceberg_compatible_arrow_schema(schema))
            snapshot = handle.current_snapshot()
            if snapshot is not None and snapshot.schema_id != handle.metadata.current_schema_id:
                handle.append(handle.schema().as_arrow().empty_table())


class _OpenTables:
    """Reads columns of Delta and Iceberg tables as Arrow and writes rows back by `_dlt_id`.
    A table never loaded, or not in an open format (plain Parquet), reads as None."""

    def __init__(self, client: Any, schema: Schema) -> None:
        self.client = client
        formats = {
            name: get_inherited_table_hint(schema.tables, name, "table_format", allow_none=True)
            for name in schema.data_table_names()
        }
        self.formats = {name: f for name, f in formats.items() if f in MERGING_FORMATS}
        self.handles: dict[str, Any] = {}
        self.marked: Counter[str] = Counter()
        """Rows marked deleted, per table: each rule only marks rows not marked yet."""
        self.parents: dict[tuple[str, tuple[str, ...]], pa.Table | None] = {}
        """Parent and root tables as read, until written: each is read for many children
        (`subscriptions` for each of its nested tables)."""

    def read(self, table: str, columns: list[str]) -> pa.Table | None:
        handle = self._handle(table)
        if handle is None:
            return None
        if self.formats[table] == "delta":
            return handle.to_pyarrow_table(columns=columns)
        # pyiceberg returns the columns in the table's order
        return handle.scan(selected_fields=tuple(columns)).to_arrow().select(columns)

    def read_parent(self, table: str, columns: list[str]) -> pa.Table | None:
        """`read`, once for all the children of a parent until a rule writes to it."""
        key = (table, tuple(columns))
        if key not in self.parents:
            self.parents[key] = self.read(table, columns)
        return self.parents[key]

    def _written(self, table: str) -> None:
        self.parents = {key: rows for key, rows in self.parents.items() if key[0] != table}

    def set_deleted_at(self, table: str, changes: pa.Table) -> None:
        """Set `deleted_at` to the value given with each `_dlt_id` in `changes`."""
        if not changes.num_rows:
            return
        self.marked[table] += changes.num_rows
        self._written(table)
        handle = self._handle(table)
        if self.formats[table] == "delta":
            merge = handle.merge(
                changes,
                predicate=f"target.{KEY} = source.{KEY}",
                source_alias="source",
                target_alias="target",
            )
            merge.when_matched_update({"deleted_at": "source.deleted_at"}).execute()
            return
        keys = _iceberg_keys(changes[KEY])
        rows = handle.scan(row_filter=keys).to_arrow()
        updated = rows.drop_columns(["deleted_at"]).join(changes, KEY, join_type="inner")
        handle.overwrite(updated.select(rows.schema.names).cast(rows.schema), overwrite_filter=keys)

    def delete(self, table: str, keys: pa.Array) -> None:
        if not len(keys):
            return
        self._written(table)
        handle = self._handle(table)
        if self.formats[table] == "delta":
            merge = handle.merge(
                pa.table({KEY: keys}),
                predicate=f"target.{KEY} = source.{KEY}",
                source_alias="source",
                target_alias="target",
            )
            merge.when_matched_delete().execute()
            return
        handle.delete(delete_filter=_iceberg_keys(keys))

    def mark_unlisted(self, table: str, listing: Listing) -> None:
        """Rows not read by a listing that would have read them."""
        at = datetime.fromisoformat(listing["at"])
        column = listing.get("column")
        if column is not None and not listing["values"]:
            return
        rows = self.read(table, [KEY, "deleted_at", "synced_at", *([column] if column else [])])
        if rows is None:
            return
        synced_at = rows["synced_at"]
        unlisted = pc.and_(
            pc.is_null(rows["deleted_at"]), pc.less(synced_at, pa.scalar(at, synced_at.type))
        )
        if column is not None:
            unlisted = pc.and_(unlisted, pc.is_in(rows[column], pa.array(listing["values"])))
        gone = rows.filter(unlisted).select([KEY])
        deleted_at = pa.array([at] * gone.num_rows, rows.schema.field("deleted_at").type)
        self.set_deleted_at(table, gone.append_column("deleted_at", deleted_at))

    def mark_dropped_children(self, child: str, parent: str, link: str) -> None:
        """Line items missing from the latest read of their invoice (a recomputed draft)."""
        children = _live(self.read(child, [KEY, link, "synced_at", "deleted_at"]))
        parents = self.read_parent(parent, ["id", "synced_at"])
        if children is None or parents is None:
            return
        joined = children.join(
            parents.rename_columns(["id", "parent_synced_at"]), link, "id", join_type="inner"
        )
        dropped = joined.filter(pc.greater(joined["parent_synced_at"], joined["synced_at"]))
        self.set_deleted_at(child, _changes(dropped, "parent_synced_at"))

    def follow_parent(self, child: str, parent: str, link: str) -> None:
        """Children of a deleted parent are deleted with it."""
        children = _live(self.read(child, [KEY, link, "deleted_at"]))
        parents = self.read_parent(parent, ["id", "deleted_at"])
        if children is None or parents is None:
            return
        deleted = parents.filter(pc.is_valid(parents["deleted_at"]))
        joined = children.join(
            deleted.rename_columns(["id", "parent_deleted_at"]), link, "id", join_type="inner"
        )
        self.set_deleted_at(child, _changes(joined, "parent_deleted_at"))

    def drop_replaced_children(self, table: str, root: str) -> None:
        """Array elements a re-read parent no longer has: written by an older load than the root."""
        roots = self.read_parent(root, [KEY, "_dlt_load_id"])
        if roots is None:
            return
        children = self.read(table, [KEY, "_dlt_root_id", "_dlt_load_id"])
        if children is None:
            return
        joined = children.join(
            roots.rename_columns(["_dlt_root_id", "root_load_id"]),
            "_dlt_root_id",
            join_type="inner",
        )
        older = joined.filter(pc.less(joined["_dlt_load_id"], joined["root_load_id"]))
        self.delete(table, older[KEY])

    def _handle(self, table: str) -> Any:
        if table not in self.formats:
            return None
        if table not in self.handles:
            try:
                self.handles[table] = self.client.load_open_table(self.formats[table], table)
            except DestinationUndefinedEntity:
                return None
        return self.handles[table]


def _iceberg_keys(keys: pa.Array | pa.ChunkedArray) -> Any:
    """A pyiceberg filter selecting the rows with these `_dlt_id`s."""
    from pyiceberg.expressions import In

    # pyiceberg's expressions are pydantic models, whose generated signature mypy reads
    return In(KEY, keys.to_pylist())  # type: ignore[call-arg, arg-type]


def _live(rows: pa.Table | None) -> pa.Table | None:
    return None if rows is None else rows.filter(pc.is_null(rows["deleted_at"]))


def _changes(rows: pa.Table, value: str) -> pa.Table:
    return pa.table({KEY: rows[KEY], "deleted_at": rows[value]})
