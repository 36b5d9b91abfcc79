"""A dataset holds one Orb account: another account behind the same state or dataset is refused
before anything is written, a rotated key of the same account runs as usual."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import dlt
import pytest

from orb_source.account import ANCHORS, oldest
from orb_source.runner import make_pipeline, run_pipeline
from orb_source.sandbox import Account, SandboxServer, generate_account, simulate_day
from tests.cli import run_cli
from tests.conftest import SANDBOX_NOW, restore_first_load, serving
from tests.warehouse import (
    LISTED_TABLES,
    assert_mirror,
    assert_series_mirror,
    fetch_table,
    query,
    reading,
    volume_start,
)


@pytest.fixture
def other_account() -> Account:
    return generate_account(customers=12, seed=8, now=SANDBOX_NOW)


def dataset_snapshot(pipeline: dlt.Pipeline, dataset: str = "orb") -> dict[str, list[str]]:
    """Every table of the dataset, dlt's own included, as sorted rows."""
    with reading(pipeline):
        tables = [
            name
            for (name,) in query(
                pipeline,
                "SELECT table_name FROM information_schema.tables"
                f" WHERE table_schema = '{dataset}'",
            )
        ]
        assert "customers" in tables and "_dlt_pipeline_state" in tables
        return {
            table: sorted(repr(row) for row in query(pipeline, f"SELECT * FROM {{{table}}}"))
            for table in tables
        }


def saved_state(pipeline_name: str = "orb_billing") -> dict[str, Any]:
    """The state as the pipeline folder holds it on disk."""
    state: dict[str, Any] = dict(make_pipeline(pipeline_name=pipeline_name).state)
    return state


def only_live_rows(pipeline: dlt.Pipeline, account: Account) -> None:
    """Exactly the account's objects, no rows of any other account, not even deleted ones."""
    with reading(pipeline):
        assert_mirror(pipeline, account)
        for table in LISTED_TABLES:
            assert set(fetch_table(pipeline, table)) == set(account.objects(table)), table
    assert_series_mirror(pipeline, account, volume_start(account))


def test_another_account_is_refused_before_anything_is_written(
    sandbox: SandboxServer,
    account: Account,
    other_account: Account,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    first_load: Path,
) -> None:
    restore_first_load(first_load, account, tmp_path / "dlt" / "pipelines")
    pipeline = make_pipeline()
    before, state_before = dataset_snapshot(pipeline), saved_state()
    file_before = (tmp_path / "orb_billing.duckdb").read_bytes()

    with serving(other_account, monkeypatch) as other:
        result = run_cli("run")
        requests = dict(other.stats.by_route)

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "another Orb account" in lines[0]
    assert "--dataset-name" in lines[0] and "--full-refresh" in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert set(requests) == {"/customers", "/customers/{id}"}, "only the key and account checks"
    assert requests["/customers"] == 1
    assert (tmp_path / "orb_billing.duckdb").read_bytes() == file_before
    assert dataset_snapshot(pipeline) == before
    assert saved_state() == state_before
    assert_mirror(pipeline, account)


def test_full_refresh_replaces_the_dataset_with_the_new_account(
    sandbox: SandboxServer,
    account: Account,
    other_account: Account,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    first_load: Path,
) -> None:
    restore_first_load(first_load, account, tmp_path / "dlt" / "pipelines")

    with serving(other_account, monkeypatch):
        result = run_cli("run", "--full-refresh")
        assert result.returncode == 0, result.stderr
        again = run_cli("run")
        assert again.returncode == 0, "the replaced dataset is bound to the new account"

    only_live_rows(make_pipeline(), other_account)


def test_a_second_account_loads_apart_with_its_own_dataset_name(
    sandbox: SandboxServer,
    account: Account,
    other_account: Account,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    first_load: Path,
) -> None:
    restore_first_load(first_load, account, tmp_path / "dlt" / "pipelines")
    before = dataset_snapshot(make_pipeline())

    with serving(other_account, monkeypatch):
        result = run_cli("run", "--dataset-name", "orb_second")
    assert result.returncode == 0, result.stderr

    only_live_rows(make_pipeline(dataset_name="orb_second"), other_account)
    assert dataset_snapshot(make_pipeline()) == before


def test_a_rotated_key_of_the_same_account_runs_normally(
    account: Account, monkeypatch: pytest.MonkeyPatch, pipeline: dlt.Pipeline
) -> None:
    with serving(account, monkeypatch, api_key="first-key"):
        run_pipeline(pipeline=pipeline)
    with account.lock:
        simulate_day(account, random.Random(3))

    with serving(account, monkeypatch, api_key="rotated-key") as server:
        run_pipeline(pipeline=pipeline)
        assert server.stats.by_route["/customers/{id}"] == 1, "one request proves the account"

    assert_mirror(pipeline, account)
    recorded = pipeline.state["sources"]["orb"]["account"]
    assert recorded["customers"] == oldest(account.objects("customers").values())
    assert "rotated-key" not in repr(recorded) and "first-key" not in repr(recorded)


def test_deleting_the_oldest_customers_does_not_break_the_binding(
    sandbox: SandboxServer, account: Account, loaded: dlt.Pipeline
) -> None:
    first = loaded.state["sources"]["orb"]["account"]["customers"]
    assert len(first) == ANCHORS

    with account.lock:
        for customer_id in first[:-1]:
            account.delete_customer(customer_id)
    run_pipeline(pipeline=loaded)
    with account.lock:
        account.delete_customer(first[-1])
    run_pipeline(pipeline=loaded)

    assert_mirror(loaded, account)
    assert loaded.state["sources"]["orb"]["account"]["customers"] == oldest(
        account.objects("customers").values()
    )


def test_generated_accounts_have_different_fingerprints(
    account: Account, other_account: Account
) -> None:
    ours = oldest(account.objects("customers").values())
    theirs = oldest(other_account.objects("customers").values())
    assert len(ours) == len(theirs) == ANCHORS
    assert not set(ours) & set(theirs)
    assert not set(account.objects("customers")) & set(other_account.objects("customers"))


def test_a_state_without_a_fingerprint_is_adopted(
    sandbox: SandboxServer, account: Account, loaded: dlt.Pipeline
) -> None:
    forget_fingerprint(loaded)
    with account.lock:
        simulate_day(account, random.Random(9))

    run_pipeline(pipeline=loaded)

    assert_mirror(loaded, account)
    assert loaded.state["sources"]["orb"]["account"]["customers"]


def test_a_dataset_of_another_account_is_refused_even_without_a_fingerprint(
    sandbox: SandboxServer,
    other_account: Account,
    monkeypatch: pytest.MonkeyPatch,
    loaded: dlt.Pipeline,
) -> None:
    """Data loaded by an older version (the old demo wrote the same file) names its account
    by the customers it holds."""
    forget_fingerprint(loaded)
    before = dataset_snapshot(loaded)

    with serving(other_account, monkeypatch), pytest.raises(Exception, match="another Orb"):
        run_pipeline(pipeline=loaded)

    assert dataset_snapshot(loaded) == before


def test_a_new_pipeline_folder_restores_the_fingerprint_from_the_destination(
    sandbox: SandboxServer,
    account: Account,
    other_account: Account,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    first_load: Path,
) -> None:
    restore_first_load(first_load, account, tmp_path / "first")
    first = make_pipeline(pipelines_dir=str(tmp_path / "first"))
    before = dataset_snapshot(first)

    fresh = make_pipeline(pipelines_dir=str(tmp_path / "fresh"))
    with serving(other_account, monkeypatch), pytest.raises(Exception, match="another Orb"):
        run_pipeline(pipeline=fresh)

    assert fresh.state["sources"]["orb"]["account"] == first.state["sources"]["orb"]["account"]
    assert dataset_snapshot(first) == before


def forget_fingerprint(pipeline: dlt.Pipeline) -> None:
    """Make the state look like one written before fingerprints were recorded."""
    with pipeline.managed_state() as state:
        del state["sources"]["orb"]["account"]
    on_disk = make_pipeline(pipelines_dir=pipeline.pipelines_dir).state
    assert "account" not in on_disk["sources"]["orb"]
