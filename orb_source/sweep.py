"""The deletion sweep: after a load, mark rows whose objects are gone from Orb.

Orb has no tombstones: a deleted customer or a deactivated top-up simply stops being listed.
Every row carries `synced_at`, the start of the run that last read it, and source state
records which listings each run completed (`listings`, committed with that run's data).
A row older than a complete listing of its table was not in it, so it is gone.

Every rule is derived from what the destination already holds, so the sweep is idempotent:
a run that dies between load and sweep is swept by the next run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from contextlib import nullcontext
from datetime import datetime
from typing import Any, Protocol, cast

import dlt
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from dlt.common.destination.client import WithStagingDataset
from dlt.common.destination.exceptions import DestinationUndefinedEntity
from dlt.common.schema import Schema
from dlt.common.storages import FileStorage
from dlt.common.storages.load_package import PackageStorage
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.destinations.sql_client import SqlClientBase, WithSqlClient

from .catalog import CATALOG, CHILD_TABLES, TABLES, Scope
from .lakehouse import is_filesystem, open_tables
from .state import Listing, Listings, pipeline_listings

logger = logging.getLogger(__name__)

CUSTOMER_CHILDREN: tuple[str, ...] = tuple(
    endpoint.table
    for endpoint in CATALOG
    if endpoint.scope in (Scope.CUSTOMER, Scope.SUBSCRIPTION)
    or "customer_id" in endpoint.links.values()
)
"""Tables whose rows follow their customer when it is deleted (a subscription's usage and
costs carry its customer's id)."""


PARENT_CHILDREN: tuple[tuple[str, str, str], ...] = tuple(
    (endpoint.table, endpoint.parent.table, endpoint.parent.param)
    for endpoint in CATALOG
    if endpoint.parent
)
"""Tables listed per parent, with the parents' table and link: their rows follow a deleted
parent (the schedule of a subscription deleted with its customer)."""


class Rules(Protocol):
    """One kind of destination's statements for the deletion rules (`apply`)."""

    def mark_unlisted(self, table: str, listing: Listing) -> None:
        """Rows not read by a listing that would have read them."""

    def mark_dropped_children(self, child: str, parent: str, link: str) -> None:
        """Rows split out of an object (line items) missing from its latest read."""

    def follow_parent(self, child: str, parent: str, link: str) -> None:
        """Rows of a deleted parent are deleted with it."""

    def drop_replaced_children(self, table: str, root: str) -> None:
        """Array elements a re-read root no longer has, as dlt's merge drops nested rows."""


def apply(rules: Rules, listings: Listings, pruned: Iterable[tuple[str, str]]) -> None:
    """Every rule, in the order they build on each other: rows gone from their listings first,
    then rows of the parents marked so; `pruned` are the child tables (and their roots) whose
    replaced elements no load removes."""
    for table, entry in with_child_listings(listings).items():
        for listing in entry.values():
            rules.mark_unlisted(table, cast(Listing, listing))
    for child, (parent, link) in CHILD_TABLES.items():
        rules.mark_dropped_children(child, parent, link)
    for table in CUSTOMER_CHILDREN:
        rules.follow_parent(table, "customers", "customer_id")
    for table, parent, link in PARENT_CHILDREN:
        rules.follow_parent(table, parent, link)
    for child, (parent, link) in CHILD_TABLES.items():
        rules.follow_parent(child, parent, link)
    for table, root in pruned:
        rules.drop_replaced_children(table, root)


def sweep_deletions(pipeline: dlt.Pipeline) -> dict[str, int]:
    """Apply every deletion rule to the pipeline's destination; the rows it marked deleted,
    per table (rows marked by an earlier sweep are not counted again)."""
    listings = pipeline_listings(pipeline.state)
    schema = pipeline.default_schema
    if is_filesystem(pipeline):
        # dlt's nested tables of Delta and Iceberg tables are upserted by their own key too
        with open_tables(pipeline) as tables:
            apply(tables, listings, child_tables(schema, nested=True))
            return {table: tables.marked.get(table, 0) for table in TABLES}
    with pipeline.sql_client() as sql:
        before = _deleted_rows(sql)
        apply_rules(sql, listings, schema)
        after = _deleted_rows(sql)
    return {table: after[table] - before[table] for table in TABLES}


def apply_rules(sql: SqlClientBase[Any], listings: Listings, schema: Schema) -> None:
    """The rules on a SQL destination; dlt's merge prunes its nested tables there itself."""
    apply(SqlRules(sql, schema.loads_table_name), listings, child_tables(schema, nested=False))


def child_tables(schema: Schema, nested: bool) -> list[tuple[str, str]]:
    """Child tables whose rows carry their load, with their root table: those loaded from
    Arrow data (`arrow.py`), which dlt registers as tables of their own, and with `nested`
    dlt's nested tables too."""
    return [
        (name, name.split("__")[0])
        for name, table in schema.tables.items()
        if "__" in name
        and (nested or "parent" not in table)
        and {"_dlt_root_id", "_dlt_load_id"} <= set(table.get("columns", {}))
    ]


def with_child_listings(listings: Listings) -> Listings:
    """A complete listing of invoices is also a complete listing of their line items."""
    extended = dict(listings)
    for child, (parent, _) in CHILD_TABLES.items():
        complete = listings.get(parent, {}).get("complete")
        if complete:
            extended[child] = {"complete": complete}
    return extended


def _deleted_rows(sql: SqlClientBase[Any]) -> dict[str, int]:
    """Rows marked deleted, per table; a table not loaded yet has none."""
    counts: dict[str, int] = {}
    for table in TABLES:
        name = sql.make_qualified_table_name(table)
        try:
            rows = sql.execute_sql(f"SELECT count(*) FROM {name} WHERE deleted_at IS NOT NULL")
        except (DatabaseUndefinedRelation, DestinationUndefinedEntity):
            rows = None
        counts[table] = int(rows[0][0]) if rows else 0
    return counts


def remove_unrecorded_rows(pipeline: dlt.Pipeline) -> None:
    """Before a crashed run's package is loaded again, delete by `_dlt_id` the rows its jobs
    not recorded as done may have committed already, so each of those jobs writes its rows once.

    A copy job killed after its rows committed but before dlt recorded it runs again, and on
    PostgreSQL, where `_dlt_id` is unique, the second copy is refused on every later run. The
    keys are read from the job files themselves (Parquet, CSV), and only those rows go, from
    the table each job writes to: the staging table of a merge, else the table itself.
    `remove_replayed_rows` catches what a file in another format brings twice."""
    if is_filesystem(pipeline):
        return
    jobs = [
        job
        for load_id in pipeline.list_normalized_load_packages()
        for state in ("new_jobs", "started_jobs")
        for job in pipeline.get_load_package_info(load_id).jobs[state]
        if job.job_file_info.file_format in ("parquet", "csv") and not _committed(job.file_path)
    ]
    if not jobs:
        return
    with pipeline.destination_client() as client:
        sql = cast(WithSqlClient, client).sql_client
        for job in jobs:
            table = job.job_file_info.table_name
            staged = isinstance(client, WithStagingDataset) and (
                client.should_load_data_to_staging_dataset(table)
            )
            keys = row_keys(job.file_path, job.job_file_info.file_format)
            with sql.with_staging_dataset() if staged else nullcontext():
                removed = _delete_keys(sql, table, keys)
            if removed:
                logger.warning(
                    "removing %d rows a crashed run already wrote to %s before loading them again",
                    removed,
                    table,
                )


def _committed(path: str) -> bool:
    """Whether dlt recorded that the destination committed this started job: it then marks
    the job done on resume without running it again, so its rows must stay."""
    package, name = os.path.dirname(os.path.dirname(path)), os.path.basename(path)
    return os.path.exists(os.path.join(package, PackageStorage.PENDING_TRANSITIONS_FOLDER, name))


def row_keys(path: str, file_format: str) -> list[str]:
    """The `_dlt_id` of every row of a load job's file, Parquet or CSV."""
    with FileStorage.open_zipsafe_ro(path, "rb") as file:
        if file_format == "parquet":
            keys = pq.read_table(file, columns=["_dlt_id"])["_dlt_id"]
        else:
            keys = pa_csv.read_csv(
                file,
                parse_options=pa_csv.ParseOptions(newlines_in_values=True),
                convert_options=pa_csv.ConvertOptions(include_columns=["_dlt_id"]),
            )["_dlt_id"]
    return [str(key) for key in keys.to_pylist()]


def _delete_keys(sql: SqlClientBase[Any], table: str, keys: list[str]) -> int:
    """Delete the rows with these `_dlt_id`s, a thousand at a time; how many there were."""
    name = sql.make_qualified_table_name(table)
    removed = 0
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        where = f"_dlt_id IN ({', '.join(['%s'] * len(chunk))})"
        try:
            rows = sql.execute_sql(f"SELECT count(*) FROM {name} WHERE {where}", *chunk)
        except (DatabaseUndefinedRelation, DestinationUndefinedEntity):
            return 0
        count = rows[0][0] if rows else 0
        if count:
            sql.execute_sql(f"DELETE FROM {name} WHERE {where}", *chunk)
            removed += int(count)
    return removed


def remove_replayed_rows(pipeline: dlt.Pipeline) -> None:
    """Undo the one way resuming a crashed load can duplicate rows.

    A copy job killed after its rows committed but before dlt recorded it runs again on
    resume, so its rows land twice: in staging, where dlt's merge inserts both copies, or
    straight in the table on a first load, which appends. The copies are identical (they share
    a row key), so keeping one of each is exact. On the filesystem destination a replayed job
    rewrites the same file or upserts the same keys: there is nothing to remove.
    """
    if is_filesystem(pipeline):
        return
    with pipeline.sql_client() as sql:
        for table in pipeline.default_schema.data_table_names():
            name = sql.make_qualified_table_name(table)
            try:
                counts = sql.execute_sql(f"SELECT count(*), count(DISTINCT _dlt_id) FROM {name}")
            except (DatabaseUndefinedRelation, DestinationUndefinedEntity):
                continue
            [(rows, keys)] = counts or [(0, 0)]
            if rows != keys:
                logger.warning("removing %d replayed duplicate rows from %s", rows - keys, table)
                _keep_one_of_each(sql, table)


def _keep_one_of_each(sql: SqlClientBase[Any], table: str) -> None:
    name = sql.make_qualified_table_name(table)
    copy = sql.make_qualified_table_name(f"{table}__replayed")
    sql.execute_sql(f"CREATE TABLE {copy} AS SELECT DISTINCT * FROM {name}")
    sql.execute_sql(f"DELETE FROM {name}")
    sql.execute_sql(f"INSERT INTO {name} SELECT * FROM {copy}")
    sql.execute_sql(f"DROP TABLE {copy}")


class SqlRules:
    """The rules as set-based statements (joins, `EXISTS`), never a subquery per row: on
    PostgreSQL a correlated subquery per child row scanned the parent table once per row."""

    def __init__(self, sql: SqlClientBase[Any], loads: str) -> None:
        self.sql = sql
        self.loads = loads

    def mark_unlisted(self, table: str, listing: Listing) -> None:
        """Rows not read by a listing that would have read them."""
        at = datetime.fromisoformat(listing["at"])
        condition, args = "", []
        if "column" in listing:
            if not listing["values"]:
                return
            placeholders = ", ".join(["%s"] * len(listing["values"]))
            condition = f" AND {self.sql.escape_column_name(listing['column'])} IN ({placeholders})"
            args = list(listing["values"])
        _execute(
            self.sql,
            f"UPDATE {self.sql.make_qualified_table_name(table)} SET deleted_at = %s"
            f" WHERE deleted_at IS NULL AND synced_at < %s{condition}",
            at,
            at,
            *args,
        )

    def mark_dropped_children(self, child: str, parent: str, link: str) -> None:
        """Line items missing from the latest read of their invoice (a recomputed draft). Rows as
        new as the newest parent are skipped before the join: after a first load that is all."""
        parents = self.sql.make_qualified_table_name(parent)
        _execute(
            self.sql,
            f"UPDATE {self.sql.make_qualified_table_name(child)} AS c SET deleted_at = p.synced_at"
            f" FROM {parents} AS p"
            f" WHERE p.id = c.{link} AND c.deleted_at IS NULL AND p.synced_at > c.synced_at"
            f" AND c.synced_at < (SELECT max(synced_at) FROM {parents})",
        )

    def follow_parent(self, child: str, parent: str, link: str) -> None:
        """Children of a deleted parent are deleted with it; nothing is joined while no parent
        is."""
        parents = self.sql.make_qualified_table_name(parent)
        _execute(
            self.sql,
            f"UPDATE {self.sql.make_qualified_table_name(child)} AS c SET deleted_at = p.deleted_at"
            f" FROM {parents} AS p"
            f" WHERE p.id = c.{link} AND c.deleted_at IS NULL AND p.deleted_at IS NOT NULL"
            f" AND EXISTS (SELECT 1 FROM {parents} WHERE deleted_at IS NOT NULL)",
        )

    def drop_replaced_children(self, table: str, root: str) -> None:
        """Array elements a re-read parent no longer has, as dlt's merge drops nested rows. Rows of
        the newest load cannot be older than their root, so only older ones are joined."""
        loads = self.sql.make_qualified_table_name(self.loads)
        _execute(
            self.sql,
            f"DELETE FROM {self.sql.make_qualified_table_name(table)} AS c"
            f" WHERE c._dlt_load_id < (SELECT max(load_id) FROM {loads})"
            f" AND EXISTS (SELECT 1 FROM {self.sql.make_qualified_table_name(root)} AS r"
            " WHERE r._dlt_id = c._dlt_root_id AND r._dlt_load_id > c._dlt_load_id)",
        )


def _execute(sql: SqlClientBase[Any], statement: str, *args: Any) -> None:
    """Run one rule; a table that was never loaded has nothing to sweep."""
    try:
        sql.execute_sql(statement, *args)
    except (DatabaseUndefinedRelation, DestinationUndefinedEntity):
        return
