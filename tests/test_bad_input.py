"""Bad input through the CLI: exit 2, one or two plain lines on stderr, no traceback, and the
API key never printed. Nothing is extracted and no destination is written."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from orb_source.sandbox import SandboxServer
from tests.cli import run_cli

KEY = "orb-live-Kx7Qm2Zp9Wv4Tn8Rb3Ys6Ld1"
"""A distinctive key that must never be echoed back."""


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def assert_config_error(
    result: subprocess.CompletedProcess[str], *fragments: str, key: str = KEY
) -> str:
    """Exit 2 with one or two `orb-pipeline:` lines naming the problem, and nothing else."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, lines
    assert lines[0].startswith("orb-pipeline: "), lines
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    assert not key or key not in output
    return result.stderr


@pytest.fixture
def keyed_sandbox(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> SandboxServer:
    """The sandbox, answering only to the distinctive key."""
    sandbox.api_key = KEY
    monkeypatch.setenv("ORB_API_KEY", KEY)
    return sandbox


def test_missing_key(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORB_API_KEY")

    assert_config_error(run_cli("run"), "No Orb API key", "ORB_API_KEY", key="")
    assert sandbox.stats.requests == 0


def test_rejected_key(keyed_sandbox: SandboxServer, tmp_path: Path) -> None:
    wrong = "orb-live-Wr0ngWr0ngWr0ng77"

    stderr = assert_config_error(run_cli("run", env={"ORB_API_KEY": wrong}), "rejected", "401")

    assert wrong not in stderr
    assert keyed_sandbox.stats.status_counts == {401: 1}, "one request, not retried"
    assert not (tmp_path / "orb_billing.duckdb").exists()


@pytest.mark.parametrize(
    ("base_url", "names"),
    [
        (f"http://127.0.0.1:{unused_port()}/v1", "127.0.0.1"),
        ("http://orb.invalid/v1", "orb.invalid"),
    ],
    ids=["connection-refused", "unresolvable-host"],
)
def test_wrong_base_url(
    keyed_sandbox: SandboxServer, tmp_path: Path, base_url: str, names: str
) -> None:
    result = run_cli("run", env={"ORB_BASE_URL": base_url})

    assert_config_error(result, "Cannot reach Orb", names, "ORB_BASE_URL")
    assert keyed_sandbox.stats.requests == 0
    assert not (tmp_path / "orb_billing.duckdb").exists()


def test_unknown_resource(keyed_sandbox: SandboxServer) -> None:
    result = run_cli("run", "--resources", "customers,invoicez")

    assert_config_error(result, "Unknown resource(s): invoicez", "customers")
    assert keyed_sandbox.stats.requests == 0


@pytest.mark.parametrize("value", ["2026-13-01", "yesterday", "01/02/2026"])
def test_malformed_start_date(keyed_sandbox: SandboxServer, value: str) -> None:
    result = run_cli("run", "--start-date", value)

    assert_config_error(result, "--start-date must be YYYY-MM-DD", repr(value))
    assert keyed_sandbox.stats.requests == 0


@pytest.mark.parametrize(
    "location",
    ["/proc/nonexistent/x.duckdb", "{tmp}/a-file/x.duckdb"],
    ids=["under-proc", "under-a-file"],
)
def test_unwritable_destination(
    keyed_sandbox: SandboxServer, tmp_path: Path, location: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    path = location.format(tmp=tmp_path)

    result = run_cli("run", env={"DESTINATION__DUCKDB__CREDENTIALS": path})

    assert_config_error(result, "Cannot open the destination")
    assert not Path(path).exists()
    assert keyed_sandbox.stats.requests <= 1, "at most the key check before the destination"
