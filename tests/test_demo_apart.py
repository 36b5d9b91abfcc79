"""`orb-pipeline demo` keeps to its own file, pipeline and state: a real account's tables stay
exactly equal to its API whichever order demo and run come in."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest

from orb_source.demo import DEMO_FILE, DEMO_PIPELINE, demo_pipeline
from orb_source.runner import make_pipeline
from orb_source.sandbox import Account, SandboxServer, simulate_day
from tests.cli import run_cli
from tests.conftest import restore_first_load
from tests.warehouse import (
    LISTED_TABLES,
    assert_mirror,
    assert_series_mirror,
    fetch_table,
    reading,
    volume_start,
)

DEMO_CUSTOMERS = "6"


def demo(*args: str, env: dict[str, str] | None = None) -> str:
    result = run_cli("demo", "--customers", DEMO_CUSTOMERS, *args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def run() -> None:
    result = run_cli("run")
    assert result.returncode == 0, result.stderr


def exact_mirror(pipeline: dlt.Pipeline, account: Account, volume_since: datetime) -> None:
    """The account's objects and the ones it deleted, nothing of the demo's account."""
    with reading(pipeline):
        assert_mirror(pipeline, account)
        for table in LISTED_TABLES:
            loaded = set(fetch_table(pipeline, table))
            assert loaded <= set(account.objects(table)) | account.gone(table), table
    assert_series_mirror(pipeline, account, volume_since)


def saved_state(pipeline_name: str) -> dict[str, Any]:
    state: dict[str, Any] = dict(make_pipeline(pipeline_name=pipeline_name).state)
    return state


def test_demo_then_run_in_one_folder(
    sandbox: SandboxServer, account: Account, tmp_path: Path
) -> None:
    output = demo()

    assert not (tmp_path / "orb_billing.duckdb").exists()
    assert str(tmp_path / DEMO_FILE) in output
    assert "Next steps" in output and "ORB_API_KEY" in output
    run()

    pipeline = make_pipeline()
    exact_mirror(pipeline, account, volume_start(account))
    with reading(pipeline):
        loaded = {table: len(fetch_table(pipeline, table)) for table in LISTED_TABLES}
    assert loaded == {table: len(account.objects(table)) for table in LISTED_TABLES}, (
        "a full first load"
    )
    assert (
        saved_state("orb_billing")["sources"]["orb"]["account"]
        != saved_state(DEMO_PIPELINE)["sources"]["orb"]["account"]
    )


def test_run_then_demo_then_run_in_one_folder(
    sandbox: SandboxServer, account: Account, tmp_path: Path, first_load: Path
) -> None:
    restore_first_load(first_load, account, tmp_path / "dlt" / "pipelines")
    since = volume_start(account)
    state = saved_state("orb_billing")
    real_file = (tmp_path / "orb_billing.duckdb").read_bytes()

    demo()

    assert saved_state("orb_billing") == state, "the demo left the real state alone"
    assert (tmp_path / "orb_billing.duckdb").read_bytes() == real_file
    with account.lock:
        simulate_day(account, random.Random(11))
    run()

    exact_mirror(make_pipeline(), account, since)
    orb = saved_state("orb_billing")["sources"]["orb"]
    assert (
        orb["resources"]["invoices"]["last_full_sync"]
        == (state["sources"]["orb"]["resources"]["invoices"]["last_full_sync"])
    ), "the second run stayed incremental: the demo did not reset the full-sweep timer"


def test_demo_ignores_the_destination_settings_and_starts_fresh_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "configured.duckdb"
    env = {"DESTINATION__DUCKDB__CREDENTIALS": str(elsewhere), "DESTINATION__DESTINATION_TYPE": "x"}
    demo(env=env)
    first = customers_in_demo(tmp_path)
    demo("--seed", "5", env=env)

    assert not elsewhere.exists()
    second = customers_in_demo(tmp_path)
    assert len(first) == len(second) == int(DEMO_CUSTOMERS)
    assert not first & second, "a new account replaced the last one, no rows left over"
    pipeline = demo_pipeline()
    assert set(fetch_table(pipeline, "customers")) == second
    assert not (tmp_path / "orb_billing.duckdb").exists()


def customers_in_demo(folder: Path) -> set[str]:
    with duckdb.connect(str(folder / DEMO_FILE), read_only=True) as db:
        return {row[0] for row in db.sql("SELECT id FROM orb.customers").fetchall()}
