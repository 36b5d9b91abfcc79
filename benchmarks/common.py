"""Shared plumbing: temp workspaces, the sandbox subprocess, pipeline workers, report tables."""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_START_TIMEOUT = 600.0
RUN_TIMEOUT = 3600.0
ACCOUNT_NOW = "2026-11-01T12:00:00+00:00"
"""Clock of the timed benchmarks' accounts: the same data in every run and every variant."""
LEAKY_PREFIXES = ("ORB_", "SOURCES__", "DESTINATION__", "RUNTIME__", "NORMALIZE__", "LOAD__")


class BenchmarkError(Exception):
    """A run or the sandbox failed; the message says where its log is."""


@dataclass
class Target:
    """One acceptance target: what was measured against what was asked."""

    name: str
    measured: str
    wanted: str
    met: bool | None

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "n/a"}[self.met]


@dataclass
class Section:
    """One benchmark's report: the command that produced it, tables and notes, targets."""

    name: str
    command: str
    lines: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    runtime_seconds: float | None = None
    load_average: tuple[float, float] | None = None

    def markdown(self) -> str:
        out = [f"## {self.name}", "", f"Command: `{self.command}`", "", *self.lines]
        if self.targets:
            out += ["", "Targets:", ""]
            out += table(
                ["target", "measured", "wanted", "verdict"],
                [[t.name, t.measured, t.wanted, t.verdict] for t in self.targets],
            )
        if self.runtime_seconds is not None:
            out += ["", f"Benchmark runtime: {self.runtime_seconds:.0f} s."]
        if self.load_average is not None:
            before, after = self.load_average
            out[-1] += (
                f" Load average (1 min) before/after: {before:.2f}/{after:.2f};"
                " the benchmark itself accounts for 1-2, more means other work shared the CPUs."
            )
        return "\n".join(out) + "\n"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A markdown table; numbers right-aligned so it also reads well in a terminal."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [
        bool(cells) and all(_looks_numeric(r[i]) for r in cells) for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        padded = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = [
        "-" * (w + 1) + ":" if num else "-" * (w + 2)
        for w, num in zip(widths, numeric, strict=True)
    ]
    return [line(list(headers)), "|" + "|".join(rule) + "|"] + [line(r) for r in cells]


def _looks_numeric(text: str) -> bool:
    return text in ("-", "new", "n/a") or text[:1].isdigit()


def pct(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def machine() -> dict[str, str]:
    """What the figures were measured on: they are only comparable on similar machines."""
    memory = "?"
    try:
        for entry in Path("/proc/meminfo").read_text().splitlines():
            if entry.startswith("MemTotal:"):
                memory = f"{int(entry.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    model = platform.processor() or "?"
    try:
        for entry in Path("/proc/cpuinfo").read_text().splitlines():
            if entry.startswith("model name"):
                model = entry.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "nproc": str(nproc),
        "memory": memory,
        "cpu": model,
        "python": platform.python_version(),
        "os": platform.platform(),
        "versions": _versions(),
        "revision": _revision(),
    }


def _revision() -> str:
    """The commit measured, flagged when the working tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "orb_source"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "?"
    return f"{head or '?'}{' + uncommitted changes in orb_source/' if dirty else ''}"


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("dlt", "duckdb", "pyarrow", "httpx"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return ", ".join(found)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    """The parent's environment minus settings that would change a run, plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(LEAKY_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env.update(extra)
    return env


class Workspace:
    """A temp directory per pipeline: working dir, pipelines_dir, DLT_DATA_DIR, DuckDB file."""

    def __init__(self, name: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"orb-bench-{name}-"))
        self.runs = 0
        self.keep = False
        """Set when a run failed: its log must outlive the workspace's `with` block."""

    @property
    def duckdb_file(self) -> Path:
        return self.path / "bench.duckdb"

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None and not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            print(f"(kept {self.path} for inspection)", file=sys.stderr)

    def run(
        self,
        base_url: str,
        api_key: str,
        destination: str = "duckdb",
        credentials: str | None = None,
        duckdb_per_job: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """`run_pipeline(**kwargs)` in a fresh process against the sandbox at `base_url`, into
        `destination` (DuckDB: the workspace's file; others: `credentials`). With
        `duckdb_per_job`, the run leaves the DuckDB file to dlt, which opens it for each job
        (the `runs` benchmark's baseline)."""
        self.runs += 1
        spec_path = self.path / f"run{self.runs}.spec.json"
        result_path = self.path / f"run{self.runs}.result.json"
        log_path = self.path / f"run{self.runs}.log"
        spec_path.write_text(
            json.dumps(
                {
                    "pipelines_dir": str(self.path / "pipelines"),
                    "destination": destination,
                    "duckdb_per_job": duckdb_per_job,
                    "kwargs": kwargs,
                }
            )
        )
        env = _child_env(
            {
                "ORB_API_KEY": api_key,
                "ORB_BASE_URL": base_url,
                "DLT_DATA_DIR": str(self.path / "dlt"),
                f"DESTINATION__{destination.upper()}__CREDENTIALS": credentials
                or str(self.duckdb_file),
            }
        )
        with log_path.open("w") as log:
            subprocess.run(
                [sys.executable, "-m", "benchmarks.worker", str(spec_path), str(result_path)],
                cwd=self.path,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=RUN_TIMEOUT,
                check=False,
            )
        if not result_path.exists():
            raise BenchmarkError(f"pipeline worker died; see {log_path}:\n{_tail(log_path)}")
        result: dict[str, Any] = json.loads(result_path.read_text())
        result["log"] = str(log_path)
        self.keep = self.keep or not result.get("ok")
        return result


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class SandboxProcess:
    """`python -m benchmarks.sandbox_process` on a free port; stats are read after stop()."""

    def __init__(
        self,
        *,
        customers: int,
        seed: int = 42,
        latency: float = 0.0,
        rate_limit: bool = False,
        line_items: int | None = None,
        now: str | None = ACCOUNT_NOW,
    ) -> None:
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="orb-bench-sandbox-"))
        self.stats_file = self._dir / "stats.json"
        self.log_file = self._dir / "sandbox.log"
        self.args = [
            sys.executable,
            "-m",
            "benchmarks.sandbox_process",
            "--port",
            str(self.port),
            "--customers",
            str(customers),
            "--seed",
            str(seed),
            "--latency",
            str(latency),
            "--stats-file",
            str(self.stats_file),
        ]
        if rate_limit:
            self.args.append("--rate-limit")
        if line_items is not None:
            self.args += ["--line-items", str(line_items)]
        if now is not None:
            self.args += ["--now", now]
        self.api_key = "sandbox-key"
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.stats: dict[str, Any] = {}
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> SandboxProcess:
        with self.log_file.open("w") as log:
            self._process = subprocess.Popen(
                self.args, cwd=self._dir, env=_child_env({}), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + SANDBOX_START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                message = f"sandbox exited early:\n{_tail(self.log_file)}"
                self.stop()
                raise BenchmarkError(message)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise BenchmarkError(f"sandbox did not open port {self.port} in time")

    def stop(self) -> dict[str, Any]:
        """Terminate the sandbox (it writes its stats on SIGTERM) and load those stats."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.stats_file.exists():
            self.stats = json.loads(self.stats_file.read_text())
        shutil.rmtree(self._dir, ignore_errors=True)
        return self.stats

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def route_status(stats: dict[str, Any]) -> dict[tuple[str, int], int]:
    """The sandbox's per-(route, status) reply counts."""
    return {(route, int(status)): n for route, status, n in stats.get("route_status", [])}


def require_ok(result: dict[str, Any], what: str) -> None:
    if not result.get("ok"):
        raise BenchmarkError(f"{what} failed: {result.get('error')} (log: {result.get('log')})")
