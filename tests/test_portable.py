"""The package imports, and its run lock works, where POSIX-only modules do not exist
(Windows has no `fcntl`): proven by importing it with those modules made unavailable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

WITHOUT_POSIX = """
import sys
for name in ("fcntl", "termios", "pwd", "grp", "resource"):
    sys.modules[name] = None
import orb_source, orb_source.cli, orb_source.reconcile, orb_source.summary, orb_source.sandbox
from orb_source.runner import PipelineBusy, make_pipeline, run_lock

pipeline = make_pipeline(pipelines_dir=sys.argv[1])
with run_lock(pipeline):
    try:
        with run_lock(pipeline):
            raise SystemExit("a second lock was granted while the first was held")
    except PipelineBusy as busy:
        print(busy)
with run_lock(pipeline):
    print("released")
"""


def test_the_package_imports_and_locks_without_fcntl(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_POSIX, str(tmp_path / "pipelines")],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        "Another run of pipeline orb_billing is in progress; not starting.",
        "released",
    ]
