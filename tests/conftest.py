"""Fixtures: a sandbox Orb API on 127.0.0.1 and a pipeline loading into a DuckDB file of its own."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import pytest

from orb_source.runner import make_pipeline, run_pipeline
from orb_source.sandbox import Account, SandboxServer, generate_account
from tests.warehouse import LISTED_TABLES

SANDBOX_NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

pytest_plugins = ["tests.postgres"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The `slow` tests first, the rest in file order: xdist's `worksteal` gives each worker a
    contiguous share and lets an idle one take what another has not started, so a long test
    must not be the last one a worker starts."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def isolate(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Orb or dlt settings leak in from the developer's machine; files land in `folder`."""
    for name in list(os.environ):
        if name.startswith(("ORB_", "SOURCES__", "DESTINATION__")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DLT_DATA_DIR", str(folder / "dlt"))
    # the sandbox sets no rate limit unless a test asks for one: the client's budget for Orb's
    # (100, 10 and 10 requests/s) would only keep the suite waiting
    for rate_class in ("READ", "CREDIT_BALANCE", "ANALYTICS"):
        monkeypatch.setenv(f"SOURCES__ORB__{rate_class}_RATE_LIMIT", "1000")
    monkeypatch.chdir(folder)


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)


def default_account() -> Account:
    return generate_account(customers=25, seed=7, now=SANDBOX_NOW)


@pytest.fixture
def account() -> Account:
    return default_account()


@contextmanager
def serving(
    account: Account, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> Iterator[SandboxServer]:
    """A sandbox server for `account`, with ORB_API_KEY and ORB_BASE_URL pointing at it."""
    with SandboxServer(account, **options) as server:
        monkeypatch.setenv("ORB_API_KEY", server.api_key)
        monkeypatch.setenv("ORB_BASE_URL", server.base_url)
        yield server


@pytest.fixture
def sandbox(account: Account, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxServer]:
    with serving(account, monkeypatch) as server:
        yield server


@pytest.fixture
def pipeline(tmp_path: Path) -> dlt.Pipeline:
    return make_pipeline(pipelines_dir=str(tmp_path / "pipelines"))


def contents(account: Account) -> str:
    return json.dumps({table: account.objects(table) for table in LISTED_TABLES}, default=str)


@pytest.fixture(scope="session")
def first_load(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a first load of the default account: its DuckDB file and its pipeline
    folder (`pipelines/`). A load costs 10-15 s and many tests start from one; each test
    process makes it once and `loaded` copies it."""
    folder = tmp_path_factory.mktemp("first_load")
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate(folder, monkeypatch)
        account = default_account()
        with serving(account, monkeypatch):
            run_pipeline(pipeline=make_pipeline(pipelines_dir=str(folder / "pipelines")))
    (folder / "account.json").write_text(contents(account))
    return folder


def restore_first_load(first_load: Path, account: Account, pipelines_dir: Path) -> dlt.Pipeline:
    """The first load's DuckDB file in the working directory, its pipeline in `pipelines_dir`
    (the CLI's is `$DLT_DATA_DIR/pipelines`). `account` must be the account it loaded.
    `make_pipeline` points the copy at this working directory's DuckDB file."""
    assert contents(account) == (first_load / "account.json").read_text(), "not the account loaded"
    shutil.copytree(first_load / "pipelines", pipelines_dir)
    shutil.copy2(first_load / "orb_billing.duckdb", Path.cwd() / "orb_billing.duckdb")
    return make_pipeline(pipelines_dir=str(pipelines_dir))


@pytest.fixture
def loaded(
    first_load: Path, account: Account, sandbox: SandboxServer, tmp_path: Path
) -> dlt.Pipeline:
    """`pipeline` after a first load of `account`, served by `sandbox`."""
    return restore_first_load(first_load, account, tmp_path / "pipelines")
