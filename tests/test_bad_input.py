"""Bad input through the CLI: exit 2, one or two plain lines on stderr, no traceback, and the
API key never printed. Nothing is extracted and no destination is written."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest

from orb_source.sandbox import Fault, SandboxServer
from tests.cli import run_cli

LOGGED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ [A-Z]+ ")

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


def test_base_url_that_does_not_answer_like_orb(
    keyed_sandbox: SandboxServer, tmp_path: Path
) -> None:
    without_version = keyed_sandbox.base_url.removesuffix("/v1")

    result = run_cli("run", env={"ORB_BASE_URL": without_version})

    assert_config_error(result, "does not answer like Orb's API", "404", "ORB_BASE_URL")
    assert "next run" not in result.stderr
    assert keyed_sandbox.stats.requests == 1, "a 404 is not retried"
    assert not (tmp_path / "orb_billing.duckdb").exists()


class _WebPage(BaseHTTPRequestHandler):
    """A web server that is not an API: every path answers 200 with HTML."""

    def do_GET(self) -> None:
        body = b"<html><body>Welcome</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def test_base_url_answering_a_web_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WebPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        result = run_cli("run", env={"ORB_API_KEY": KEY, "ORB_BASE_URL": url})
    finally:
        server.shutdown()
        server.server_close()

    assert_config_error(result, "does not answer like Orb's API", "malformed JSON", "ORB_BASE_URL")
    assert not (tmp_path / "orb_billing.duckdb").exists()


def test_unknown_destination_lists_the_available_ones(keyed_sandbox: SandboxServer) -> None:
    result = run_cli("run", "--destination", "nosuchdest")

    stderr = assert_config_error(result, "Unknown destination 'nosuchdest'", "duckdb, ")
    assert "postgres" in stderr and "filesystem" in stderr
    assert keyed_sandbox.stats.requests == 0


def test_destination_without_its_extra_names_the_install_command(
    keyed_sandbox: SandboxServer, tmp_path: Path
) -> None:
    """psycopg2 is made unimportable, as on an install without the postgres extra."""
    shadow = tmp_path / "shadow" / "psycopg2"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg2'\", name='psycopg2')\n"
    )
    env = {
        "PYTHONPATH": str(shadow.parent),
        "DESTINATION__POSTGRES__CREDENTIALS": "postgresql://loader:secret@127.0.0.1:9/orb",
    }

    result = run_cli("run", "--destination", "postgres", env=env)

    stderr = assert_config_error(result, "postgres")
    assert stderr.strip().endswith('pip install "orb-source[postgres]"'), stderr
    assert keyed_sandbox.stats.requests == 0


@pytest.mark.parametrize(
    ("destination", "variable"),
    # the filesystem destination needs no setting: it defaults to ./orb_billing_lake
    [("motherduck", "DESTINATION__MOTHERDUCK__CREDENTIALS")],
)
def test_destination_without_credentials_names_the_variable(
    keyed_sandbox: SandboxServer, destination: str, variable: str
) -> None:
    result = run_cli("run", "--destination", destination)

    assert_config_error(result, f"Destination {destination} is not configured", variable)
    assert keyed_sandbox.stats.requests <= 1, "at most the key check"


def test_a_duckdb_file_held_by_another_process(
    keyed_sandbox: SandboxServer, tmp_path: Path
) -> None:
    path = tmp_path / "orb_billing.duckdb"
    duckdb.connect(str(path)).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; db = duckdb.connect(sys.argv[1], read_only=True);"
            " print('open', flush=True); time.sleep(120)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        result = run_cli("run")
    finally:
        holder.kill()
        holder.wait()

    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert str(path) in lines[0] and f"PID {holder.pid}" in lines[0], lines[0]
    assert len(lines[0]) <= len(str(path)) + 100, lines[0]
    assert "next run" not in lines[0] and "Traceback" not in result.stderr


def test_debug_level_shows_the_traceback(keyed_sandbox: SandboxServer) -> None:
    result = run_cli("run", "--destination", "nosuchdest", env={"ORB_LOG_LEVEL": "DEBUG"})

    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("orb-pipeline: Unknown destination 'nosuchdest'"), last


@pytest.mark.parametrize(
    ("fault", "cause", "repairs"),
    [
        (Fault("status", path=r"^/plans$", status=503), "Orb API 503 on /plans", True),
        (Fault("status", path=r"^/plans$", status=400), "Orb API 400 on /plans", False),
    ],
    ids=["orb-unavailable", "request-refused"],
)
def test_the_next_run_repairs_it_only_where_true(
    keyed_sandbox: SandboxServer, fault: Fault, cause: str, repairs: bool
) -> None:
    keyed_sandbox.inject(fault)

    result = run_cli("run", env={"SOURCES__ORB__MAX_ATTEMPTS": "2"})

    assert result.returncode == 1, result.stderr
    # What the run logged while it worked (timestamped) comes first; the failure is two lines.
    lines = [line for line in result.stderr.strip().splitlines() if not LOGGED.match(line)]
    assert len(lines) == 2, lines
    assert cause in lines[0], lines
    assert ("the next run repairs it" in lines[1]) is repairs, lines
    assert ("ORB_LOG_LEVEL=DEBUG" in lines[1]) is not repairs, lines
