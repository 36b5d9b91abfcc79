"""`python -m benchmarks [incremental|fanout|cpu|postgres|runs ...] [--quick] [--results FILE]`.

`make bench` runs them all.

Prints each benchmark's figures as markdown; `--results` also writes them, with the machine
and date, to a file such as benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from . import cpu, fanout, incremental, postgres, runs
from .common import BenchmarkError, Section, machine

BENCHMARKS: dict[str, Callable[[bool], Section]] = {
    "incremental": incremental.run,
    "fanout": fanout.run,
    "cpu": cpu.run,
    "postgres": postgres.run,
    "runs": runs.run,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        metavar="benchmark",
        help=f"any of {', '.join(BENCHMARKS)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="small accounts: a smoke test")
    parser.add_argument("--results", type=Path, default=None, help="write the report here too")
    return parser


def header(names: Sequence[str], quick: bool) -> str:
    info = machine()
    command = " ".join(["python -m benchmarks", *names] + (["--quick"] if quick else []))
    return "\n".join(
        [
            "# Benchmark results",
            "",
            f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"- command: `{command}`",
            f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} memory,"
            f" {info['os']}",
            f"- python {info['python']}; {info['versions']}",
            f"- code: {info['revision']}",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(
            f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    names = list(dict.fromkeys(args.names)) or list(BENCHMARKS)
    parts = [header(args.names, args.quick)]
    print(parts[0], flush=True)
    failed = False
    for name in names:
        print(f"running {name}{' (quick)' if args.quick else ''}...", file=sys.stderr, flush=True)
        started, load_before = time.monotonic(), os.getloadavg()[0]
        try:
            section = BENCHMARKS[name](args.quick)
        except BenchmarkError as exc:
            failed = True
            section = Section(name, f"python -m benchmarks {name}", [f"FAILED: {exc}"])
        section.runtime_seconds = time.monotonic() - started
        section.load_average = (load_before, os.getloadavg()[0])
        parts.append(section.markdown())
        print(parts[-1], flush=True)
    if args.results is not None:
        args.results.write_text("\n".join(parts))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
