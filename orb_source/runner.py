"""The Python API behind `orb-pipeline run`: one call that syncs Orb into a destination.

Schedulers, notebooks and the CLI all go through `run_pipeline`, so a run always does the
same things in the same order: refuse a concurrent run, take the state from the destination
when the working folder is new, finish what a crashed run left, check the key, extract,
normalize, load, then sweep deletions.
"""

from __future__ import annotations

import fcntl
import gc
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import dlt
from dlt.common.pipeline import LoadInfo, get_dlt_pipelines_dir

from .catalog import EMITTED_ONCE, TABLES, read_together
from .client import DEFAULT_BASE_URL, OrbClient, OrbUnreachable, RequestStats
from .packages import discarded_when_unloadable
from .schema import loaded_columns, schema_changes
from .source import orb
from .sweep import remove_replayed_rows, sweep_deletions

logger = logging.getLogger(__name__)

PIPELINE_NAME = "orb_billing"
DEFAULT_DATASET = "orb"


class ConfigurationError(Exception):
    """Bad options or settings: the CLI exits 2."""


class PipelineBusy(Exception):
    """Another run of the same pipeline holds the lock."""


@dataclass(frozen=True)
class TableSummary:
    table: str
    rows: int
    seconds: float


@dataclass
class RunReport:
    load_info: LoadInfo | None
    tables: list[TableSummary] = field(default_factory=list)
    schema_changes: list[str] = field(default_factory=list)
    requests: RequestStats = field(default_factory=RequestStats)

    def format(self) -> str:
        width = max([len(t.table) for t in self.tables] + [5])
        lines = [f"{'table':<{width}}  {'rows':>9}  {'seconds':>7}"]
        lines += [f"{t.table:<{width}}  {t.rows:>9,}  {t.seconds:>7.1f}" for t in self.tables]
        total = sum(t.rows for t in self.tables)
        lines.append(f"{'total':<{width}}  {total:>9,}")
        lines.append(self.requests.format())
        lines += [f"warning: schema {change}" for change in self.schema_changes]
        return "\n".join(lines)


def orb_credentials() -> tuple[str, str]:
    """The API key and base URL as the contract resolves them: Orb's env vars, then dlt's."""
    api_key = os.environ.get("ORB_API_KEY") or dlt.secrets.get("sources.orb.api_key") or ""
    base_url = (
        os.environ.get("ORB_BASE_URL") or dlt.config.get("sources.orb.base_url") or DEFAULT_BASE_URL
    )
    return str(api_key), str(base_url)


def make_pipeline(
    destination: str = "duckdb",
    dataset_name: str = DEFAULT_DATASET,
    pipelines_dir: str | None = None,
) -> dlt.Pipeline:
    """The `orb_billing` pipeline; DuckDB writes `orb_billing.duckdb` in the working directory."""
    return dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        pipelines_dir=pipelines_dir or get_dlt_pipelines_dir(),
        destination=destination,
        dataset_name=dataset_name,
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


def check_connection(
    api_key: str, base_url: str, max_attempts: int = 8, timeout: float = 30.0
) -> None:
    """Fail in one line, before any work, on a missing or rejected key or an unreachable API.

    Transient answers are retried as in the run, with short pauses so a wrong URL fails fast.
    """
    client = OrbClient(
        api_key, base_url, max_attempts=max_attempts, timeout=timeout, backoff_max=1.0
    )
    with client:
        try:
            client.get("/customers", {"limit": 1})
        except OrbUnreachable as exc:
            raise ConfigurationError(
                f"{exc}. Check ORB_BASE_URL or sources.orb.base_url."
            ) from None


def run_pipeline(
    *,
    resources: Sequence[str] | None = None,
    destination: str = "duckdb",
    dataset_name: str = DEFAULT_DATASET,
    full_refresh: bool = False,
    start_date: str | None = None,
    pipeline: dlt.Pipeline | None = None,
    **source_options: Any,
) -> RunReport:
    """Sync Orb into the destination; incremental unless `full_refresh`."""
    validate_options(resources, start_date)
    check_connection(
        *orb_credentials(),
        max_attempts=source_options.get("max_attempts", 8),
        timeout=source_options.get("request_timeout", 30.0),
    )
    pipeline = pipeline or make_pipeline(destination, dataset_name)
    with run_lock(pipeline), fewer_gc_pauses():
        check_destination(pipeline)
        restore_state(pipeline)
        pipeline = forget_state_without_data(pipeline)
        finish_pending(pipeline)
        stats, drift = RequestStats(), set[str]()
        source = orb(
            full_refresh=full_refresh,
            start_date=start_date,
            stats=stats,
            schema_changes=drift,
            first_load_tables=tables_to_create(pipeline),
            **source_options,
        )
        if resources:
            source = source.with_resources(*read_together(resources))
        before: dict[str, set[str]] = (
            loaded_columns(pipeline.default_schema) if pipeline.default_schema_name else {}
        )
        extract_info = pipeline.extract(
            source, workers=len(source.resources) + 2, loader_file_format=_file_format(pipeline)
        )
        with discarded_when_unloadable(pipeline):
            normalize_info = pipeline.normalize()
            changes = schema_changes(before, pipeline.default_schema)
            for change in changes:
                logger.warning("schema %s", change)
            load_info = pipeline.load()
        sweep_deletions(pipeline)
    summaries = _table_summaries(extract_info, normalize_info.row_counts)
    return RunReport(load_info, summaries, sorted(drift) + changes, stats)


def check_destination(pipeline: dlt.Pipeline) -> None:
    """An unwritable DuckDB path or wrong warehouse credentials is a configuration error."""
    try:
        with pipeline.sql_client():
            pass
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigurationError(f"Cannot open the destination: {first_line}") from None


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


def finish_pending(pipeline: dlt.Pipeline) -> None:
    """Load what a crashed run extracted, so its state and data land together."""
    if pipeline.has_pending_data:
        with discarded_when_unloadable(pipeline):
            pipeline.normalize()
            pipeline.load()
        remove_replayed_rows(pipeline)
        sweep_deletions(pipeline)


def tables_to_create(pipeline: dlt.Pipeline) -> frozenset[str]:
    """The tables that may be appended on a first load (`schema.write_disposition`) which the
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
    """One run per pipeline at a time; the OS frees the lock if the process dies. The lock
    file sits beside the pipeline's folder, which a reset may delete."""
    path = Path(pipeline.pipelines_dir) / f"{pipeline.pipeline_name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PipelineBusy(
                f"Another run of pipeline {pipeline.pipeline_name} is in progress; not starting."
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _file_format(pipeline: dlt.Pipeline) -> Any:
    """Parquet for DuckDB: dlt's default insert path is 50-90x slower there."""
    name = pipeline.destination.destination_name if pipeline.destination else ""
    return "parquet" if name in ("duckdb", "motherduck") else None


def _table_summaries(extract_info: Any, row_counts: dict[str, int]) -> list[TableSummary]:
    metrics = [m for load_id in extract_info.loads_ids for m in extract_info.metrics[load_id]]
    seconds: dict[str, float] = {}
    for step in metrics:
        for name, resource in step["resource_metrics"].items():
            seconds[name] = max(
                seconds.get(name, 0.0), resource.last_modified - step["started_at"].timestamp()
            )
    return [
        TableSummary(table, row_counts.get(table, 0), seconds.get(table, 0.0))
        for table in TABLES
        if table in row_counts or table in seconds
    ]
