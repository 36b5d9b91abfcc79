"""What a run tells the people and schedulers watching it: log lines, progress, the summary.

- Log lines go to stderr, each stamped with UTC time; `ORB_LOG_LEVEL` sets the level (default
  INFO: one line per table as its listing finishes; `--quiet`: warnings and errors only).
  httpx's line per request shows only at DEBUG.
- On a terminal, dlt's own progress collector (tqdm) draws a bar per table while it reads.
- The summary names the destination and dataset, and for every table of the run the rows
  read, loaded and marked deleted, requests and seconds; then the request counts and every
  warning the run logged. `to_json` is the same as a document (`--summary-json`; schema in
  the README, "Monitoring").
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import dlt
from dlt.common.runtime.collector import Collector, TqdmCollector

if TYPE_CHECKING:
    from .runner import RunReport

SUMMARY_FORMAT = 1
"""Version of the JSON summary's layout; raised only when a field changes meaning or goes."""

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
QUIET_LOGGERS = ("httpx", "httpcore")
"""Libraries that log a line per request at INFO: shown only at DEBUG."""


def package_version() -> str:
    return version("orb-source")


def configure_logging(quiet: bool = False) -> None:
    """Timestamped lines on stderr; the level from `ORB_LOG_LEVEL`, WARNING when quiet."""
    level = "WARNING" if quiet else os.environ.get("ORB_LOG_LEVEL", "INFO").upper()
    formatter = logging.Formatter(LOG_FORMAT, "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler])
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def terminal_progress() -> Iterator[Collector]:
    """A tqdm bar per table (dlt's `TqdmCollector`), with log lines printed above the bars."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm([logging.getLogger()]):
        yield TqdmCollector()


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.messages:
            self.messages.append(message)


@contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """Every warning the package logs meanwhile, once each, in order, for the summary."""
    handler = _Warnings()
    package = logging.getLogger(__package__)
    package.addHandler(handler)
    try:
        yield handler.messages
    finally:
        package.removeHandler(handler)


def location(pipeline: dlt.Pipeline) -> str | None:
    """Where the data went, never with credentials: a DuckDB file, or host and database."""
    credentials = getattr(pipeline.destination_client().config, "credentials", None)
    database = getattr(credentials, "database", None)
    if not database:
        return None
    host = getattr(credentials, "host", None)
    if not host:
        return str(database)
    port = getattr(credentials, "port", None)
    return f"{host}:{port}/{database}" if port else f"{host}/{database}"


def render(report: RunReport) -> str:
    """The summary as text: a header, a line per table, totals, requests, warnings."""
    width = max([len(t.table) for t in report.tables] + [5])
    columns = ("read", "loaded", "deleted", "requests", "seconds")
    lines = [_header(report)]
    lines.append(f"{'table':<{width}}" + "".join(f"  {c:>9}" for c in columns))
    for t in report.tables:
        counts = (t.read, t.rows, t.deleted, t.requests)
        lines.append(
            f"{t.table:<{width}}" + "".join(f"  {n:>9,}" for n in counts) + f"  {t.seconds:>9.1f}"
        )
    totals = _totals(report)
    lines.append(
        f"{'total':<{width}}"
        + "".join(f"  {totals[k]:>9,}" for k in ("rows_read", "rows_loaded", "rows_deleted"))
    )
    lines.append(report.requests.format())
    lines += [f"warning: {message}" for message in report.warnings]
    return "\n".join(lines)


def one_line(report: RunReport) -> str:
    """The result of a `--quiet` run: enough for a cron mail or a log grep."""
    totals = _totals(report)
    return (
        f"orb-pipeline: ok: {totals['rows_read']:,} rows read, {totals['rows_loaded']:,}"
        f" loaded, {totals['rows_deleted']:,} marked deleted; {report.requests.requests:,}"
        f" requests ({report.requests.throttled:,} answered 429); {len(report.warnings)}"
        f" warnings; {_where(report)} in {_seconds(report):.1f} s"
    )


def to_json(report: RunReport) -> dict[str, Any]:
    """The summary as a JSON document (README, "Monitoring")."""
    return {
        "format": SUMMARY_FORMAT,
        "version": package_version(),
        "status": "ok",
        "error": None,
        "started_at": _iso(report.started_at),
        "finished_at": _iso(report.finished_at),
        "seconds": round(_seconds(report), 3),
        "destination": report.destination,
        "dataset": report.dataset,
        "location": report.location,
        "tables": [
            {
                "table": t.table,
                "rows_read": t.read,
                "rows_loaded": t.rows,
                "rows_deleted": t.deleted,
                "requests": t.requests,
                "seconds": round(t.seconds, 3),
            }
            for t in report.tables
        ],
        "totals": _totals(report),
        "requests": {
            "total": report.requests.requests,
            "retried": report.requests.retries,
            "throttled": report.requests.throttled,
            "by_rate_class": dict(sorted(report.requests.by_class.items())),
        },
        "warnings": list(report.warnings),
    }


def failure_json(error: str, started_at: datetime, finished_at: datetime) -> dict[str, Any]:
    """The document a failed run leaves, so a monitor reading it never sees a stale success."""
    return {
        "format": SUMMARY_FORMAT,
        "version": package_version(),
        "status": "failed",
        "error": error,
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
        "seconds": round((finished_at - started_at).total_seconds(), 3),
    }


def _totals(report: RunReport) -> dict[str, int]:
    return {
        "rows_read": sum(t.read for t in report.tables),
        "rows_loaded": sum(t.rows for t in report.tables),
        "rows_deleted": sum(t.deleted for t in report.tables),
    }


def _header(report: RunReport) -> str:
    finished = f"{report.finished_at:%Y-%m-%d %H:%M:%S} UTC, " if report.finished_at else ""
    return f"Synced Orb into {_where(report)} ({finished}{_seconds(report):.1f} s)"


def _where(report: RunReport) -> str:
    place = f" at {report.location}" if report.location else ""
    return f"{report.destination}{place}, dataset {report.dataset}"


def _seconds(report: RunReport) -> float:
    if report.started_at is None or report.finished_at is None:
        return 0.0
    return (report.finished_at - report.started_at).total_seconds()


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
