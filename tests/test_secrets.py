"""Secret hygiene: a distinctive API key never shows up in logs at any level, in exception
messages, in dlt's trace, or in any file the pipeline writes (state, schemas, load packages,
trace.pickle, the DuckDB file)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest

from orb_source.runner import PIPELINE_NAME, run_pipeline
from orb_source.sandbox import Account, Fault, SandboxServer, generate_account
from tests.conftest import SANDBOX_NOW

KEY = "orb-key-Zr8Qw3Vt6Yp1Xk4Nm7Hs2Jd5"
WRONG_KEY = "orb-key-Lq2Ws9Ec4Rv7Tb1Yn6Um3Ik8"
FAST: dict[str, Any] = {
    "request_timeout": 1.0,
    "max_attempts": 2,
    "read_rate_limit": 1000.0,
    "credit_balance_rate_limit": 200.0,
}


def leaks(text: str | bytes) -> list[str]:
    """Which secrets (or their distinctive halves) occur in the text."""
    raw = text.encode() if isinstance(text, str) else text
    return [
        secret
        for key in (KEY, WRONG_KEY)
        for secret in (key, key[8:20], key[-12:])
        if secret.encode() in raw
    ]


def files_with_secrets(root: Path) -> dict[str, list[str]]:
    """Every file under root whose raw bytes contain a secret."""
    found: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file() and (hits := leaks(path.read_bytes())):
            found[str(path.relative_to(root))] = hits
    return found


def exception_texts(exc: BaseException) -> str:
    """Messages, reprs and formatted tracebacks of an exception and everything it wraps."""
    parts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


@pytest.fixture
def keyed_account() -> Account:
    return generate_account(customers=10, seed=3, now=SANDBOX_NOW)


@pytest.fixture
def keyed_sandbox(keyed_account: Account) -> Iterator[SandboxServer]:
    with SandboxServer(keyed_account, api_key=KEY) as server:
        yield server


@pytest.mark.parametrize("key_variable", ["ORB_API_KEY", "SOURCES__ORB__API_KEY"])
def test_cli_at_debug_level_never_prints_the_key(
    keyed_sandbox: SandboxServer, tmp_path: Path, key_variable: str
) -> None:
    env = {
        **os.environ,
        key_variable: KEY,
        "ORB_BASE_URL": keyed_sandbox.base_url,
        "ORB_LOG_LEVEL": "DEBUG",
        "RUNTIME__LOG_LEVEL": "DEBUG",
        "SOURCES__ORB__READ_RATE_LIMIT": "1000",
        "SOURCES__ORB__CREDIT_BALANCE_RATE_LIMIT": "200",
    }

    result = subprocess.run(
        [sys.executable, "-m", "orb_source.cli", "run"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=180,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert keyed_sandbox.stats.status_counts.get(200, 0) > 50, "the key was used and accepted"
    assert "DEBUG" in result.stderr, "debug logging was not on"
    assert "HTTP Request: GET" in result.stderr, "request-level debug lines were not logged"
    assert leaks(result.stdout + result.stderr) == []
    pipeline_dir = tmp_path / "dlt" / "pipelines" / PIPELINE_NAME
    assert (pipeline_dir / "trace.pickle").is_file()
    assert (tmp_path / "orb_billing.duckdb").is_file()
    assert files_with_secrets(tmp_path) == {}


def test_python_api_logs_and_errors_never_contain_the_key(
    keyed_sandbox: SandboxServer,
    pipeline: dlt.Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("ORB_BASE_URL", keyed_sandbox.base_url)
    monkeypatch.setenv("ORB_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)

    run_pipeline(pipeline=pipeline, **FAST)
    assert any(record.levelno == logging.DEBUG for record in caplog.records)
    assert leaks(caplog.text) == []
    assert leaks(str(pipeline.last_trace)) == []

    monkeypatch.setenv("ORB_API_KEY", WRONG_KEY)
    with pytest.raises(Exception, match="rejected") as rejected:
        run_pipeline(pipeline=pipeline, **FAST)
    assert leaks(exception_texts(rejected.value)) == []
    assert keyed_sandbox.stats.status_counts[401] == 1

    monkeypatch.setenv("ORB_API_KEY", KEY)
    keyed_sandbox.inject(Fault("status", path=r"/credits/ledger$", status=503))
    with pytest.raises(Exception) as server_error:
        run_pipeline(pipeline=pipeline, **FAST)
    assert "503" in exception_texts(server_error.value)
    assert leaks(exception_texts(server_error.value)) == []
    assert keyed_sandbox.stats.status_counts[503] >= 2
    assert leaks(str(pipeline.last_trace)) == []

    messages = [record.getMessage() for record in caplog.records]
    assert leaks("\n".join(messages)) == []
    assert leaks(caplog.text) == []
    assert files_with_secrets(tmp_path) == {}
