"""One pipeline run in a fresh process: `python -m benchmarks.worker SPEC.json RESULT.json`.

A fresh process per run makes peak RSS (`ru_maxrss`) belong to that run alone and keeps dlt's
run context, configuration and imports from leaking between runs. The parent sets the
environment (ORB_API_KEY, ORB_BASE_URL, DLT_DATA_DIR, the DuckDB file) and the working
directory; the spec holds the `run_pipeline` keywords.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _request_stats(report: Any) -> dict[str, Any] | None:
    """Client-side counts, when the runner reports them (`RunReport.requests`)."""
    stats = getattr(report, "requests", None)
    if stats is None:
        return None
    return {
        "requests": stats.requests,
        "retries": stats.retries,
        "throttled": stats.throttled,
        "by_class": dict(stats.by_class),
    }


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the pipeline as the spec says and measure it."""
    from orb_source import runner

    sweeps = _time_sweeps(runner)
    if spec.get("duckdb_per_job"):
        _duckdb_per_job(runner)
    pipeline = runner.make_pipeline(
        spec.get("destination", "duckdb"), pipelines_dir=spec["pipelines_dir"]
    )
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    report = runner.run_pipeline(pipeline=pipeline, **spec["kwargs"])
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    trace = pipeline.last_trace
    normalize = trace.last_normalize_info if trace else None
    return {
        "ok": True,
        "wall_seconds": wall,
        "cpu_seconds": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "tables": {t.table: t.rows for t in report.tables},
        "table_seconds": {t.table: t.seconds for t in report.tables},
        "all_row_counts": dict(normalize.row_counts) if normalize else {},
        "requests": _request_stats(report),
        "steps": _step_seconds(trace),
        "sweep_seconds": sum(sweeps),
    }


def _duckdb_per_job(runner: Any) -> None:
    """The destination checked as before, but the DuckDB file not held open for the run:
    dlt opens and closes it around each load job and check."""
    from orb_source.destinations import check_destination

    @contextmanager
    def checked(pipeline: Any) -> Iterator[None]:
        check_destination(pipeline)
        yield

    runner.opened = checked


def _time_sweeps(runner: Any) -> list[float]:
    """Seconds of each deletion sweep the run makes: it runs after dlt's load step, outside
    dlt's trace."""
    seconds: list[float] = []
    sweep = runner.sweep_deletions

    def timed(pipeline: Any) -> None:
        started = time.perf_counter()
        sweep(pipeline)
        seconds.append(time.perf_counter() - started)

    runner.sweep_deletions = timed
    return seconds


def _step_seconds(trace: Any) -> dict[str, float]:
    """Seconds per dlt step (extract, normalize, load) of the run, as dlt's trace has them."""
    steps: dict[str, float] = {}
    for step in getattr(trace, "steps", None) or []:
        if step.started_at and step.finished_at:
            seconds = (step.finished_at - step.started_at).total_seconds()
            steps[step.step] = steps.get(step.step, 0.0) + seconds
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    spec_path, result_path = (argv if argv is not None else sys.argv[1:])[:2]
    spec = json.loads(Path(spec_path).read_text())
    try:
        result = run(spec)
    except Exception as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["maxrss_kb"] = usage.ru_maxrss
    result["children_maxrss_kb"] = children.ru_maxrss
    Path(result_path).write_text(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
