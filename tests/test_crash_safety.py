"""Crash safety: `orb-pipeline run` killed with SIGKILL during extract, normalize and load,
then run again, ends with an exact mirror: no duplicate ids, no lost rows, and no state that
got ahead of the data it describes.

The phase is read from outside the process: extract while the sandbox is serving requests
and no package exists yet, normalize while the package sits in `load/new/`, load once it sits
in `load/normalized/` and some of its jobs have completed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from orb_source.runner import PIPELINE_NAME, make_pipeline, run_pipeline
from orb_source.sandbox import Account, SandboxServer, generate_account
from orb_source.sweep import row_keys
from tests.conftest import SANDBOX_NOW, serving
from tests.warehouse import assert_mirror, query

FAST_ENV = {
    "SOURCES__ORB__REQUEST_TIMEOUT": "2",
    "SOURCES__ORB__MAX_ATTEMPTS": "4",
    "SOURCES__ORB__READ_RATE_LIMIT": "1000",
    "SOURCES__ORB__CREDIT_BALANCE_RATE_LIMIT": "400",
}
LOAD_ID = re.compile(r"\d+\.\d+")


@pytest.fixture
def crash_account() -> Account:
    """About 150 requests and 50 load jobs per run: each phase lasts long enough to hit."""
    return generate_account(customers=30, seed=13, now=SANDBOX_NOW)


@pytest.fixture
def crash_sandbox(
    crash_account: Account, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SandboxServer]:
    with serving(crash_account, monkeypatch) as server:
        yield server


def start_run(tmp_path: Path) -> subprocess.Popen[bytes]:
    """`orb-pipeline run` in tmp_path (the DuckDB file lands there), output to a log file."""
    with (tmp_path / "run.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "orb_source.cli", "run"],
            env={**os.environ, **FAST_ENV},
            cwd=tmp_path,
            stdout=log,
            stderr=log,
        )


def pipeline_dir() -> Path:
    return Path(os.environ["DLT_DATA_DIR"]) / "pipelines" / PIPELINE_NAME


def packages(folder: str) -> list[Path]:
    """Load packages (named by load id) in a folder of the pipeline's working dir."""
    path = pipeline_dir() / folder
    if not path.is_dir():
        return []
    return sorted(package for package in path.iterdir() if LOAD_ID.fullmatch(package.name))


def extract_in_progress() -> list[Path]:
    """dlt extracts into `normalize/<id>/<load_id>` before committing to `normalize/extracted`."""
    normalize = pipeline_dir() / "normalize"
    if not normalize.is_dir():
        return []
    return [
        package
        for folder in normalize.iterdir()
        if folder.is_dir() and folder.name != "extracted"
        for package in folder.iterdir()
    ]


def completed_jobs(package: Path) -> int:
    jobs = package / "completed_jobs"
    return len(list(jobs.iterdir())) if jobs.is_dir() else 0


def kill_when(
    process: subprocess.Popen[bytes], phase: Callable[[], str | None], timeout: float = 90.0
) -> str:
    """Poll every few ms; SIGKILL the run the moment `phase` reports what it saw."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = phase()
        if seen is not None:
            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=30) == -signal.SIGKILL
            return seen
        if process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) before the phase was seen")
        time.sleep(0.003)
    process.kill()
    pytest.fail("the phase was never seen")


def source_cursors(state: dict[str, Any]) -> dict[str, Any]:
    """Every cursor the local pipeline state holds: what the next run would start from."""
    resources = state.get("sources", {}).get("orb", {}).get("resources", {})
    return {
        name: value
        for name, resource in resources.items()
        for key, value in resource.items()
        if key in ("cursor", "cursors", "refetch_cursor") and value
    }


def loaded_ids(tmp_path: Path) -> set[str]:
    """Load ids the destination recorded as complete (empty if nothing was ever loaded)."""
    database = tmp_path / f"{PIPELINE_NAME}.duckdb"
    if not database.exists():
        return set()
    with duckdb.connect(str(database), read_only=True) as connection:
        tables = {
            name
            for (name,) in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'orb'"
            ).fetchall()
        }
        if "_dlt_loads" not in tables:
            return set()
        rows = connection.execute("SELECT load_id FROM orb._dlt_loads WHERE status = 0")
        return {load_id for (load_id,) in rows.fetchall()}


def rerun_and_check_mirror(tmp_path: Path, account: Account) -> None:
    rerun = subprocess.run(
        [sys.executable, "-m", "orb_source.cli", "run"],
        env={**os.environ, **FAST_ENV},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    pipeline = make_pipeline()
    assert not pipeline.has_pending_data
    assert_mirror(pipeline, account)
    [(duplicates,)] = query(
        pipeline, "SELECT count(*) - count(DISTINCT _dlt_id) FROM {invoice_line_items}"
    )
    assert duplicates == 0


def test_killed_during_extract(
    crash_sandbox: SandboxServer, crash_account: Account, tmp_path: Path
) -> None:
    run = start_run(tmp_path)

    def extracting() -> str | None:
        requests = crash_sandbox.stats.requests
        if requests >= 50 and not packages("normalize/extracted") and not packages("load/new"):
            in_progress = extract_in_progress()
            return f"{in_progress[0].parent.name}/{in_progress[0].name}" if in_progress else None
        return None

    seen = kill_when(run, extracting)

    served = crash_sandbox.stats.requests
    assert seen and served >= 50
    time.sleep(0.3)
    assert crash_sandbox.stats.requests - served <= 32, "requests went on after the kill"
    assert not packages("load/new") and not packages("load/normalized")
    pipeline = make_pipeline()
    assert not pipeline.has_pending_data, "a half-extracted package must not be loaded"
    assert source_cursors(pipeline.state) == {}, "state advanced for data never extracted"
    assert loaded_ids(tmp_path) == set()

    rerun_and_check_mirror(tmp_path, crash_account)


def test_killed_during_normalize(
    crash_sandbox: SandboxServer, crash_account: Account, tmp_path: Path
) -> None:
    run = start_run(tmp_path)

    def normalizing() -> str | None:
        new = packages("load/new")
        return f"load/new/{new[0].name}" if new else None

    seen = kill_when(run, normalizing)

    load_id = seen.rsplit("/", 1)[1]
    assert not packages("load/normalized"), "normalize had already finished"
    pipeline = make_pipeline()
    assert pipeline.has_pending_data, "the extracted package was lost"
    assert source_cursors(pipeline.state), "extract committed its state with the package"
    assert loaded_ids(tmp_path) == set(), "nothing may be loaded before normalize finishes"

    rerun_and_check_mirror(tmp_path, crash_account)
    assert load_id in loaded_ids(tmp_path), "the crashed run's package was loaded, not dropped"


def test_killed_during_load(
    crash_sandbox: SandboxServer, crash_account: Account, tmp_path: Path
) -> None:
    run = start_run(tmp_path)

    def loading() -> str | None:
        for package in packages("load/normalized"):
            if completed_jobs(package) >= 8:
                return f"load/normalized/{package.name} ({completed_jobs(package)} jobs done)"
        return None

    seen = kill_when(run, loading)

    load_id = seen.split("/")[2].split()[0]
    assert [package.name for package in packages("load/normalized")] == [load_id]
    assert not packages("load/loaded"), "the load had already finished"
    pipeline = make_pipeline()
    assert pipeline.has_pending_data, "a half-loaded package must be completed by the next run"
    assert source_cursors(pipeline.state)
    assert load_id not in loaded_ids(tmp_path)

    rerun_and_check_mirror(tmp_path, crash_account)
    assert load_id in loaded_ids(tmp_path), "the crashed run's package was completed"


@pytest.mark.parametrize("destination", ["duckdb", "postgres"])
def test_a_copy_job_run_again_after_its_rows_committed_leaves_no_duplicates(
    destination: str,
    crash_sandbox: SandboxServer,
    crash_account: Account,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run killed after the destination committed a job's rows but before dlt recorded the
    job: the next run loads that job again. On a first load the job appends straight into the
    table, so the run first deletes the rows the job had written, by their `_dlt_id`: they land
    once, and PostgreSQL, where `_dlt_id` is unique, does not refuse the job on every run.

    The kill is reproduced exactly rather than timed: a completed package is put back where
    dlt keeps unfinished ones, with one completed job marked not yet run."""
    if destination == "postgres":
        request.getfixturevalue("postgres_url")
    pipeline = make_pipeline(destination)
    run_pipeline(pipeline=pipeline)
    [package] = packages("load/loaded")
    [job] = (package / "completed_jobs").glob("invoice_line_items.*")
    job.rename(package / "new_jobs" / job.name)
    (package / "package_completed.json").unlink()
    package.rename(pipeline_dir() / "load" / "normalized" / package.name)
    schema = json.loads(
        (pipeline_dir() / "load" / "normalized" / package.name / "schema.json").read_text()
    )
    assert schema["tables"]["invoice_line_items"]["write_disposition"] == "append"
    line_items = len(crash_account.objects("invoice_line_items"))

    with caplog.at_level(logging.WARNING, logger="orb_source.sweep"):
        run_pipeline(pipeline=make_pipeline(destination))

    pipeline = make_pipeline(destination)
    assert not pipeline.has_pending_data
    loaded = query(pipeline, "SELECT load_id FROM {_dlt_loads} WHERE status = 0")
    assert package.name in {load_id for (load_id,) in loaded}
    assert (
        f"removing {line_items} rows a crashed run already wrote to invoice_line_items"
        " before loading them again" in caplog.messages
    )
    [(duplicates,)] = query(
        pipeline, "SELECT count(*) - count(DISTINCT _dlt_id) FROM {invoice_line_items}"
    )
    assert duplicates == 0
    assert_mirror(pipeline, crash_account)


def test_the_keys_of_a_csv_job_are_read_with_line_breaks_inside_values(tmp_path: Path) -> None:
    """PostgreSQL's jobs are CSV, and a memo or a description can span lines: in a file larger
    than the reader's blocks, a block may start inside such a value."""
    rows = [f'"Storage true-up\nfor ""archive"", part {i}",k{i}' for i in range(100_000)]
    job = tmp_path / "invoices.1234.0.csv"
    job.write_text("\n".join(["memo,_dlt_id", *rows]) + "\n")
    assert row_keys(str(job), "csv") == [f"k{i}" for i in range(100_000)]


def test_a_started_job_recorded_as_committed_keeps_its_rows(
    crash_sandbox: SandboxServer, crash_account: Account
) -> None:
    """A run killed after dlt wrote its marker that the destination committed a job, before it
    moved the job to the completed ones: dlt marks the job done on resume without running it
    again, so its rows must not be deleted as those of an unrecorded job are."""
    run_pipeline(pipeline=make_pipeline())
    [package] = packages("load/loaded")
    [job] = (package / "completed_jobs").glob("invoice_line_items.*")
    (package / "started_jobs").mkdir(exist_ok=True)
    job.rename(package / "started_jobs" / job.name)
    markers = package / ".pending_transitions"
    markers.mkdir(exist_ok=True)
    (markers / job.name).write_text(json.dumps({"state": "completed", "failed_message": None}))
    (package / "package_completed.json").unlink()
    package.rename(pipeline_dir() / "load" / "normalized" / package.name)

    run_pipeline(pipeline=make_pipeline())

    pipeline = make_pipeline()
    assert not pipeline.has_pending_data
    assert_mirror(pipeline, crash_account)
