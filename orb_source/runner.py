"""The Python API behind `orb-pipeline run`: one call that syncs Orb into a destination.

Schedulers, notebooks and the CLI all go through `run_pipeline`, so a run always does the
same things in the same order: check the options, the destination and the key, refuse a
concurrent run, take the state from the destination when the working folder is new, refuse
another Orb account than the dataset holds (`account.py`), finish what a crashed run left,
extract, normalize, load, then sweep deletions.
"""

from __future__ import annotations

import gc
import logging
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Unpack

import dlt
from dlt.common.destination import Destination
from dlt.common.pipeline import LoadInfo, get_dlt_pipelines_dir
from dlt.common.runtime.collector import NULL_COLLECTOR
from dlt.pipeline.progress import TCollectorArg
from filelock import FileLock, Timeout

from .account import check_account
from .arrow import quiet_declared_hints
from .catalog import EMITTED_ONCE, TABLES, read_together
from .client import (
    MAX_ATTEMPTS,
    REQUEST_TIMEOUT,
    OrbClient,
    OrbNotFound,
    OrbResponseError,
    OrbUnreachable,
    RequestStats,
)
from .destinations import opened, resolve_destination
from .drift import loaded_columns, schema_changes
from .failures import ConfigurationError, DeletionsNotMarked, PipelineBusy
from .lakehouse import (
    TABLE_FORMATS,
    announce,
    evolve_iceberg_tables,
    missing_library,
    with_default_bucket,
)
from .packages import discarded_when_unloadable
from .reporting import create_views
from .source import SourceOptions, orb, orb_credentials
from .summary import captured_warnings, location, render, to_json
from .sweep import remove_replayed_rows, remove_unrecorded_rows, sweep_deletions

logger = logging.getLogger(__name__)

PIPELINE_NAME = "orb_billing"
DEFAULT_DATASET = "orb"


@dataclass(frozen=True)
class TableSummary:
    table: str
    rows: int
    """Rows loaded: rows of this run's load packages that reached the destination."""
    seconds: float
    read: int = 0
    """Rows read from Orb and extracted."""
    deleted: int = 0
    """Rows the deletion sweep marked deleted in this run."""
    requests: int = 0


@dataclass
class RunReport:
    load_info: LoadInfo | None
    tables: list[TableSummary] = field(default_factory=list)
    schema_changes: list[str] = field(default_factory=list)
    requests: RequestStats = field(default_factory=RequestStats)
    destination: str = ""
    dataset: str = ""
    location: str | None = None
    warnings: list[str] = field(default_factory=list)
    """Every warning the run logged (schema changes, vanished customers, recoveries)."""
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def format(self) -> str:
        return render(self)

    def to_json(self) -> dict[str, Any]:
        """The `--summary-json` document (README, "Monitoring")."""
        return to_json(self)


def make_pipeline(
    destination: str | Destination = "duckdb",
    dataset_name: str = DEFAULT_DATASET,
    pipelines_dir: str | None = None,
    pipeline_name: str = PIPELINE_NAME,
    progress: TCollectorArg = NULL_COLLECTOR,
) -> dlt.Pipeline:
    """The `orb_billing` pipeline; DuckDB writes `orb_billing.duckdb` in the working directory,
    the filesystem destination `orb_billing_lake/` unless its `bucket_url` is set.
    `progress` is one of dlt's progress collectors (`"tqdm"`, `"log"`, ...).

    dlt puts a DuckDB file given by a relative path (or none) in the folder where the pipeline
    first ran; the pipeline is told the current one instead, so the run and dlt's own commands
    (`dlt pipeline orb_billing ...`) open the file the README promises.
    """
    pipelines_dir = pipelines_dir or get_dlt_pipelines_dir()
    name = destination if isinstance(destination, str) else destination.destination_name
    if name == "duckdb":
        located = dlt.pipeline(pipeline_name=pipeline_name, pipelines_dir=pipelines_dir)
        located.set_local_state_val("initial_cwd", os.path.abspath(os.getcwd()))
    return dlt.pipeline(
        pipeline_name=pipeline_name,
        pipelines_dir=pipelines_dir,
        destination=with_default_bucket(destination),
        dataset_name=dataset_name,
        progress=progress,
    )


def validate_options(resources: Sequence[str] | None, start_date: str | None) -> None:
    unknown = sorted(set(resources or ()) - set(TABLES))
    if unknown:
        raise ConfigurationError(
            f"Unknown resource(s): {', '.join(unknown)}. Known: {', '.join(TABLES)}."
        )
    if start_date is not None:
        try:
            date.fromisoformat(start_date)
        except ValueError:
            raise ConfigurationError(
                f"--start-date must be YYYY-MM-DD, got {start_date!r}."
            ) from None


def preflight_client(api_key: str, base_url: str, max_attempts: int, timeout: float) -> OrbClient:
    """A client for the checks before a run: transient answers are retried as in the run,
    with short pauses so a wrong URL fails fast."""
    return OrbClient(
        api_key,
        base_url,
        max_attempts=max_attempts,
        timeout=timeout,
        backoff_max=1.0,
        retry_log_level=logging.DEBUG,
    )


def resolve_table_format(pipeline: dlt.Pipeline, table_format: str | None) -> str | None:
    """The filesystem destination's table format, `delta` unless told otherwise."""
    destination = pipeline.destination.destination_name if pipeline.destination else None
    if destination != "filesystem":
        if table_format is not None:
            raise ConfigurationError(
                f"--table-format applies to the filesystem destination, not {destination}."
            )
        return None
    table_format = table_format or TABLE_FORMATS[0]
    if table_format not in TABLE_FORMATS:
        raise ConfigurationError(
            f"--table-format must be one of {', '.join(TABLE_FORMATS)}, got {table_format!r}."
        )
    missing = missing_library(table_format)
    if missing:
        raise ConfigurationError(missing)
    return table_format


def check_connection(
    api_key: str,
    base_url: str,
    max_attempts: int = MAX_ATTEMPTS,
    timeout: float = REQUEST_TIMEOUT,
) -> None:
    """Fail in one line, before any work, on a missing or rejected key, an unreachable API, or
    a base URL that does not answer like Orb (a 404 on the customer listing, a body that is not
    Orb's JSON page)."""
    with preflight_client(api_key, base_url, max_attempts, timeout) as client:
        try:
            page = client.get("/customers", {"limit": 1})
            if not isinstance(page, dict) or not isinstance(page.get("data"), list):
                raise OrbResponseError("a body without Orb's `data` list")
        except OrbUnreachable as exc:
            raise ConfigurationError(
                f"{exc}. Check ORB_BASE_URL or sources.orb.base_url."
            ) from None
        except (OrbNotFound, OrbResponseError) as exc:
            raise ConfigurationError(
                f"{client.base_url} does not answer like Orb's API: {exc}."
                " Check ORB_BASE_URL (Orb's is https://api.withorb.com/v1)."
            ) from None


def run_pipeline(
    *,
    resources: Sequence[str] | None = None,
    destination: str = "duckdb",
    dataset_name: str = DEFAULT_DATASET,
    full_refresh: bool = False,
    start_date: str | None = None,
    pipeline: dlt.Pipeline | None = None,
    views: bool = True,
    reporting_schema: str | None = None,
    progress: TCollectorArg = NULL_COLLECTOR,
    table_format: str | None = None,
    **source_options: Unpack[SourceOptions],
) -> RunReport:
    """Sync Orb into the destination; incremental unless `full_refresh`. After the load the
    reporting views are created or replaced in `reporting_schema` unless `views` is False.
    `table_format`: `delta` (default), `iceberg` or `parquet` on the filesystem destination
    (`lakehouse.py`)."""
    started_at = datetime.now(UTC)
    validate_options(resources, start_date)
    if pipeline is None:
        factory = resolve_destination(with_default_bucket(destination))
        pipeline = make_pipeline(factory, dataset_name, progress=progress)
    table_format = resolve_table_format(pipeline, table_format)
    if table_format:
        announce(table_format)
    attempts = source_options.get("max_attempts", MAX_ATTEMPTS)
    timeout = source_options.get("request_timeout", REQUEST_TIMEOUT)
    api_key, base_url = orb_credentials()
    check_connection(api_key, base_url, max_attempts=attempts, timeout=timeout)
    with run_lock(pipeline), opened(pipeline), fewer_gc_pauses(), captured_warnings() as warnings:
        restore_state(pipeline)
        pipeline = forget_state_without_data(pipeline)
        with preflight_client(api_key, base_url, attempts, timeout) as client:
            replace = check_account(pipeline, client, full_refresh)
        recovered = finish_pending(pipeline)
        stats, drift = RequestStats(), set[str]()
        source = orb(
            api_key,
            base_url,
            full_refresh=full_refresh,
            start_date=start_date,
            stats=stats,
            schema_changes=drift,
            first_load_tables=() if table_format else tables_to_create(pipeline),
            table_format=table_format,
            **source_options,
        )
        if resources:
            source = source.with_resources(*read_together(resources))
        before: dict[str, set[str]] = (
            loaded_columns(pipeline.default_schema) if pipeline.default_schema_name else {}
        )
        with quiet_declared_hints():
            extract_info = pipeline.extract(
                source,
                workers=len(source.resources) + 2,
                loader_file_format=_file_format(pipeline),
                refresh="drop_sources" if replace else None,
            )
        with discarded_when_unloadable(pipeline):
            normalize_info = pipeline.normalize()
            evolve_iceberg_tables(pipeline)
            changes = schema_changes(before, pipeline.default_schema)
            for change in changes:
                logger.warning("schema %s", change)
            load_info = pipeline.load()
        deleted = Counter(sweep_after_load(pipeline)) + recovered.deleted
        loaded = Counter(normalize_info.row_counts) + recovered.loaded
        if views:
            create_views(pipeline, reporting_schema)
    tables = read_together(resources) if resources else TABLES
    return RunReport(
        load_info,
        _table_summaries(extract_info, loaded, deleted, stats.by_table, tables),
        sorted(drift) + changes,
        stats,
        destination=pipeline.destination.destination_name if pipeline.destination else "",
        dataset=pipeline.dataset_name,
        location=location(pipeline),
        warnings=warnings,
        started_at=started_at,
        finished_at=datetime.now(UTC),
    )


def restore_state(pipeline: dlt.Pipeline) -> None:
    """A scheduler may start every run in a new working folder (a GitHub Actions runner, a
    fresh Airflow worker). Each load also stores the state and schema at the destination, so
    a run with no local state takes them from there and stays incremental. A folder with state
    or with a crashed run's package is left as it is: it is as new as the destination or newer."""
    if pipeline.has_pending_data or pipeline.state.get("sources"):
        return
    pipeline.sync_destination()


def forget_state_without_data(pipeline: dlt.Pipeline) -> dlt.Pipeline:
    """Cursors describe data already loaded; with no dataset at the destination (a new DuckDB
    file, a dropped schema) they describe nothing, and an incremental run would load only what
    changed. Start over from a full load instead. A package a crashed first run left behind
    is loaded as usual: it creates the dataset its state describes."""
    if pipeline.has_pending_data or not pipeline.state.get("sources"):
        return pipeline
    with pipeline.sql_client() as sql:
        if sql.has_dataset():
            return pipeline
    logger.warning("the destination has no %s dataset: syncing from scratch", pipeline.dataset_name)
    return pipeline.drop()


@dataclass(frozen=True)
class Recovered:
    """Rows a crashed run's package brought in, and those its sweep marked deleted."""

    loaded: Counter[str] = field(default_factory=Counter)
    deleted: Counter[str] = field(default_factory=Counter)


def finish_pending(pipeline: dlt.Pipeline) -> Recovered:
    """Load what a crashed run extracted, so its state and data land together."""
    if not pipeline.has_pending_data:
        return Recovered()
    logger.warning("finishing the load a previous run left unfinished")
    with discarded_when_unloadable(pipeline):
        normalized = pipeline.normalize()
        evolve_iceberg_tables(pipeline)
        remove_unrecorded_rows(pipeline)
        pipeline.load()
    remove_replayed_rows(pipeline)
    return Recovered(Counter(normalized.row_counts), Counter(sweep_after_load(pipeline)))


def sweep_after_load(pipeline: dlt.Pipeline) -> dict[str, int]:
    """Mark deletions; a failure here comes after the data and cursors were committed, which
    the error must say (the sweep reads only the destination, so the next run sweeps again)."""
    try:
        return sweep_deletions(pipeline)
    except Exception as exc:
        raise DeletionsNotMarked(
            f"the data is loaded, but marking deletions failed: {exc}"
        ) from exc


def tables_to_create(pipeline: dlt.Pipeline) -> frozenset[str]:
    """The tables that may be appended on a first load (`hints.write_disposition`) which the
    destination does not hold yet. Asked of the destination itself: a pipeline folder can be
    new while the dataset is not, as with a scheduler that starts each run from scratch."""
    with pipeline.destination_client() as client:
        reflect = getattr(client, "get_storage_tables", None)
        if reflect is None:
            return frozenset()
        return frozenset(table for table, columns in reflect(sorted(EMITTED_ONCE)) if not columns)


@contextmanager
def fewer_gc_pauses() -> Iterator[None]:
    """A sync allocates millions of short-lived dicts; with the default thresholds Python's
    cyclic collector rescans the growing heap so often that it took over half the run
    (benchmarks/RESULTS.md). Objects alive at the start are frozen out of its scans."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(300_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@contextmanager
def run_lock(pipeline: dlt.Pipeline) -> Iterator[None]:
    """One run per pipeline at a time; the OS frees the lock if the process dies (`filelock`:
    `flock` on POSIX, `msvcrt` on Windows). The lock file sits beside the pipeline's folder,
    which a reset may delete."""
    path = Path(pipeline.pipelines_dir) / f"{pipeline.pipeline_name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise PipelineBusy(
            f"Another run of pipeline {pipeline.pipeline_name} is in progress; not starting."
        ) from None
    try:
        yield
    finally:
        lock.release()


FILE_FORMATS = {
    "duckdb": "parquet",
    "motherduck": "parquet",
    "postgres": "csv",
    "filesystem": "parquet",
}
"""dlt's default, SQL INSERT statements, was 50-90x slower on DuckDB than Parquet, and on
PostgreSQL writing them took most of the run: CSV goes through `COPY`, written by Arrow. The
filesystem destination's default, JSON lines, would store money as text."""


def _file_format(pipeline: dlt.Pipeline) -> Any:
    name = pipeline.destination.destination_name if pipeline.destination else ""
    if FILE_FORMATS.get(name) == "csv":
        # gzip took 60% of normalize on the CPU benchmark; PostgreSQL copies from local disk
        dlt.config["normalize.data_writer.disable_compression"] = True
    return FILE_FORMATS.get(name)


def _table_summaries(
    extract_info: Any,
    loaded: Mapping[str, int],
    deleted: Mapping[str, int],
    requests: Mapping[str, int],
    tables: Sequence[str],
) -> list[TableSummary]:
    """Every table of the run, those with no rows included, and any other the sweep marked."""
    metrics = [m for load_id in extract_info.loads_ids for m in extract_info.metrics[load_id]]
    seconds: dict[str, float] = {}
    read: Counter[str] = Counter()
    for step in metrics:
        for name, resource in step["resource_metrics"].items():
            seconds[name] = max(
                seconds.get(name, 0.0), resource.last_modified - step["started_at"].timestamp()
            )
        for name, table in step["table_metrics"].items():
            read[name] += table.items_count
    return [
        TableSummary(
            table,
            loaded.get(table, 0),
            seconds.get(table, 0.0),
            read[table],
            deleted.get(table, 0),
            requests.get(table, 0),
        )
        for table in TABLES
        if table in tables or deleted.get(table)
    ]
