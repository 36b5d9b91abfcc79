"""Fixtures: a sandbox Orb API on 127.0.0.1 and a pipeline loading into a DuckDB file of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import pytest

from orb_source.runner import make_pipeline
from orb_source.sandbox import Account, SandboxServer, generate_account

SANDBOX_NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

pytest_plugins = ["tests.postgres"]


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Orb or dlt settings leak in from the developer's machine; files land in tmp_path."""
    for name in list(os.environ):
        if name.startswith(("ORB_", "SOURCES__", "DESTINATION__")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def account() -> Account:
    return generate_account(customers=25, seed=7, now=SANDBOX_NOW)


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
