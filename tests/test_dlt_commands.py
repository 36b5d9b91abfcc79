"""dlt's own tools work on the pipeline: `dlt pipeline orb_billing drop/info/trace/sync`, the
`pipeline.dataset()` data access API, and the DuckDB file where the README puts it."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import dlt
import duckdb
import pytest
from dlt.pipeline.helpers import pipeline_drop

from orb_source.destinations import duckdb_file
from orb_source.runner import make_pipeline, run_pipeline
from orb_source.sandbox import Account, SandboxServer, simulate_day
from tests.conftest import restore_first_load
from tests.warehouse import assert_mirror


def dlt_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """dlt's command line, as a user types it, non-interactive and without telemetry."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "dlt"), "--non-interactive", "--yes", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"},
        timeout=300,
    )


def loaded(report: object) -> dict[str, int]:
    return {summary.table: summary.rows for summary in report.tables}  # type: ignore[attr-defined]


def line_items(account: Account) -> int:
    return sum(len(invoice["line_items"]) for invoice in account.objects("invoices").values())


def test_dlt_drop_of_invoices_reloads_them_in_full(
    sandbox: SandboxServer, account: Account, tmp_path: Path, first_load: Path
) -> None:
    """`dlt pipeline orb_billing drop invoices` resets the invoice listing's cursors and open
    set: the next run lists every invoice again instead of only what changed."""
    restore_first_load(first_load, account, tmp_path / "dlt" / "pipelines")
    with account.lock:
        simulate_day(account, random.Random(3))

    dropped = dlt_cli("pipeline", "orb_billing", "drop", "invoices", cwd=tmp_path)
    assert dropped.returncode == 0, dropped.stderr
    assert "invoices" in dropped.stdout

    report = run_pipeline(pipeline=make_pipeline())
    assert loaded(report)["invoices"] == len(account.objects("invoices"))
    assert loaded(report)["invoice_line_items"] == line_items(account)
    assert_mirror(make_pipeline(), account)


def test_dropping_line_items_alone_also_resets_their_shared_cursor(
    sandbox: SandboxServer, account: Account, tmp_path: Path, first_load: Path
) -> None:
    """Invoices and their line items come from one listing; dropping either table resets it."""
    pipeline = restore_first_load(first_load, account, tmp_path / "dlt" / "pipelines")
    with account.lock:
        simulate_day(account, random.Random(4))

    pipeline_drop(pipeline, resources=["invoice_line_items"])()

    report = run_pipeline(pipeline=make_pipeline())
    assert loaded(report)["invoice_line_items"] == line_items(account)
    assert_mirror(make_pipeline(), account)


def test_dlt_info_trace_and_sync_work_on_the_pipeline(
    sandbox: SandboxServer, account: Account, tmp_path: Path, first_load: Path
) -> None:
    restore_first_load(first_load, account, tmp_path / "dlt" / "pipelines")

    info = dlt_cli("pipeline", "orb_billing", "-v", "info", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert "credit_ledger_entries" in info.stdout and "cursors" in info.stdout
    trace = dlt_cli("pipeline", "orb_billing", "trace", cwd=tmp_path)
    assert trace.returncode == 0, trace.stderr
    assert "load" in trace.stdout and "COMPLETED" in trace.stdout.upper()

    synced = dlt_cli("pipeline", "orb_billing", "sync", cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    restored = make_pipeline()
    assert restored.state["sources"]["orb"]["resources"]["invoices"]["cursor"]

    with account.lock:
        simulate_day(account, random.Random(5))
    report = run_pipeline(pipeline=restored)
    assert 0 < loaded(report)["invoices"] < len(account.objects("invoices")) / 2
    assert_mirror(restored, account)


def test_pipeline_dataset_reads_the_tables_as_arrow(
    sandbox: SandboxServer, account: Account, loaded: dlt.Pipeline
) -> None:
    """dlt's data access API, with the DuckDB versions the pins allow."""
    invoices = loaded.dataset().invoices.arrow()

    assert invoices.num_rows == len(account.objects("invoices"))
    assert str(invoices.schema.field("total").type).startswith("decimal128(")


def test_only_a_duckdb_file_of_its_own_is_held_open(tmp_path: Path) -> None:
    """A run keeps the DuckDB file it loads open (`destinations.opened`); a connection passed
    in stays its owner's, and other destinations have no file to hold."""
    pipelines_dir = str(tmp_path / "pipelines")
    own = make_pipeline(
        dlt.destinations.duckdb(str(tmp_path / "own.duckdb")), pipelines_dir=pipelines_dir
    )
    assert duckdb_file(own) == str(tmp_path / "own.duckdb")
    connection = duckdb.connect()
    passed = make_pipeline(
        dlt.destinations.duckdb(connection), pipelines_dir=pipelines_dir, pipeline_name="passed"
    )
    assert duckdb_file(passed) is None
    lake = make_pipeline("filesystem", pipelines_dir=pipelines_dir, pipeline_name="lake")
    assert duckdb_file(lake) is None
    connection.close()


def test_the_duckdb_file_is_in_the_working_directory_of_each_run(
    sandbox: SandboxServer, account: Account, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    run_pipeline(pipeline=make_pipeline())
    first_size = (first / "orb_billing.duckdb").stat().st_size

    monkeypatch.chdir(second)
    pipeline = make_pipeline()
    run_pipeline(pipeline=pipeline)

    assert (second / "orb_billing.duckdb").exists()
    assert (first / "orb_billing.duckdb").stat().st_size == first_size
    assert duckdb_file(pipeline) == str(second / "orb_billing.duckdb")  # the file a run holds
    assert_mirror(pipeline, account)
    attached = dlt.attach("orb_billing")  # as dlt's own commands open it, from any folder
    with attached.destination_client() as client:
        assert client.config.credentials.database == str(second / "orb_billing.duckdb")  # type: ignore[attr-defined]
