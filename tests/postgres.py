"""A throwaway PostgreSQL server for the tests: started in a temporary directory on a loopback
port, one database per test, stopped when the session ends.

`make test` installs PostgreSQL from Debian's packages when it is missing. PostgreSQL refuses
to run as root, so under root the server runs as the `postgres` system user (or `nobody`).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "orb"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    _names: Iterator[int]

    def url(self, database: str) -> str:
        return f"postgresql://{USER}:{USER}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its connection URL."""
        import psycopg2

        name = f"test_{next(self._names)}"
        connection = psycopg2.connect(self.url("postgres"))
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {name}")
        finally:
            connection.close()
        return self.url(name)


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError(
        "PostgreSQL is not installed: `make test` installs it (apt-get install postgresql)."
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> str | None:
    """The user the server runs as: PostgreSQL refuses root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root with neither a `postgres` nor a `nobody` user")


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    bindir = _binaries()
    user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="orb-pg-"))
    data = root / "data"
    if user:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    port = _free_port()

    def call(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, user=user, cwd=root)

    call(str(bindir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    call(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(root / "log"),
        "-w",
        "start",
    )
    try:
        yield PostgresServer("127.0.0.1", port, itertools.count())
    finally:
        call(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new database for this test, set as dlt's postgres credentials."""
    url = postgres.create_database()
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", url)
    return url
