"""Concurrent runs: a second `orb-pipeline run` on the same pipeline while one is running is
refused with a clear message (exit 1), and the first run still ends with an exact mirror."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orb_source.runner import PIPELINE_NAME, make_pipeline
from orb_source.sandbox import Account, Fault, SandboxServer, generate_account
from tests.conftest import SANDBOX_NOW, serving
from tests.warehouse import assert_mirror

FAST_ENV = {
    "SOURCES__ORB__REQUEST_TIMEOUT": "10",
    "SOURCES__ORB__READ_RATE_LIMIT": "1000",
    "SOURCES__ORB__CREDIT_BALANCE_RATE_LIMIT": "400",
}
LOAD_ID = re.compile(r"\d+\.\d+")
BUSY = "orb-pipeline: Another run of pipeline orb_billing is in progress; not starting."

WAIT_THEN_RUN = """
import pathlib, sys, time
from orb_source.cli import main
trigger = pathlib.Path(sys.argv[1])
while not trigger.exists():
    time.sleep(0.002)
sys.exit(main(["run"]))
"""
"""`orb-pipeline run`, already imported and waiting for a file to appear, so that it starts
within milliseconds of the moment the test picks."""


def start(tmp_path: Path, *args: str, name: str) -> subprocess.Popen[str]:
    with (tmp_path / f"{name}.out").open("w") as out, (tmp_path / f"{name}.err").open("w") as err:
        return subprocess.Popen(
            [sys.executable, *args],
            env={**os.environ, **FAST_ENV},
            cwd=tmp_path,
            stdout=out,
            stderr=err,
            text=True,
        )


def output(tmp_path: Path, name: str) -> tuple[str, str]:
    return (tmp_path / f"{name}.out").read_text(), (tmp_path / f"{name}.err").read_text()


def wait_until(condition: Callable[[], bool], first: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        if first.poll() is not None:
            pytest.fail(f"the first run ended (exit {first.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.003)


def pipeline_dir() -> Path:
    return Path(os.environ["DLT_DATA_DIR"]) / "pipelines" / PIPELINE_NAME


def test_second_run_during_extract_is_refused(
    sandbox: SandboxServer, account: Account, tmp_path: Path
) -> None:
    """The first run is held in extract: every ledger request takes 2 s to answer."""
    sandbox.inject(Fault("slow", path=r"/credits/ledger$", delay=2.0))
    trigger = tmp_path / "go"
    second = start(tmp_path, "-c", WAIT_THEN_RUN, str(trigger), name="second")
    first = start(tmp_path, "-m", "orb_source.cli", "run", name="first")
    wait_until(
        lambda: (
            (pipeline_dir().parent / f"{PIPELINE_NAME}.lock").exists()
            and sandbox.stats.requests >= 3
        ),
        first,
        "the first run to start extracting",
    )
    trigger.touch()

    assert second.wait(timeout=60) == 1, output(tmp_path, "second")
    assert first.poll() is None, "the first run must still be running"
    out, err = output(tmp_path, "second")
    assert (err.strip().splitlines(), out) == ([BUSY], "")
    assert first.wait(timeout=120) == 0, output(tmp_path, "first")[1][-3000:]
    assert sandbox.stats.faults_served["slow"] == len(account.customers)
    assert_mirror(make_pipeline(), account)


def test_second_run_during_load_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The second run starts while the first holds the DuckDB file to load its package."""
    account = generate_account(customers=30, seed=17, now=SANDBOX_NOW)
    with serving(account, monkeypatch):
        trigger = tmp_path / "go"
        second = start(tmp_path, "-c", WAIT_THEN_RUN, str(trigger), name="second")
        first = start(tmp_path, "-m", "orb_source.cli", "run", name="first")
        wait_until(lambda: bool(packages_being_loaded()), first, "the first run to load")
        trigger.touch()

        assert second.wait(timeout=60) is not None
        still_loading = first.poll() is None and bool(packages_being_loaded())

        assert first.wait(timeout=120) == 0, output(tmp_path, "first")[1][-3000:]
        assert still_loading, "the first run finished loading before the second one checked"
        out, err = output(tmp_path, "second")
        assert second.returncode == 1, err
        assert (err.strip().splitlines(), out) == ([BUSY], "")
        assert_mirror(make_pipeline(), account)


def packages_being_loaded() -> list[str]:
    """Load ids in `load/normalized/`: normalized and not yet completely loaded."""
    folder = pipeline_dir() / "load" / "normalized"
    if not folder.is_dir():
        return []
    return [package.name for package in folder.iterdir() if LOAD_ID.fullmatch(package.name)]
