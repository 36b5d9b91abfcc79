"""`orb-pipeline`: a thin command line over `orb_source.runner`.

Exit codes: 0 success; 1 the run failed; 2 configuration or authentication error. Failures
print one or two plain lines (`failures.py`), never the key; `ORB_LOG_LEVEL=DEBUG` adds the
traceback. Log lines go to stderr with UTC timestamps, at INFO unless `ORB_LOG_LEVEL` or
`--quiet` say otherwise (`summary.py`); dlt's internal ones only at `ORB_LOG_LEVEL=DEBUG` (its
errors) unless `RUNTIME__LOG_LEVEL` says otherwise. The summary goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dlt.common.runtime.collector import NULL_COLLECTOR

from .catalog import TABLES
from .client import OrbAuthError
from .failures import EXIT_FAILED, EXIT_OK, ConfigurationError, cause_of, describe, first_line
from .lakehouse import TABLE_FORMATS
from .reconcile import reconcile
from .runner import run_pipeline
from .summary import (
    configure_logging,
    failure_json,
    one_line,
    package_version,
    terminal_progress,
)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    debug = os.environ.get("ORB_LOG_LEVEL", "").upper() == "DEBUG"
    # dlt's own error lines repeat the failure this CLI reports; they show at DEBUG.
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR" if debug else "CRITICAL")
    configure_logging(quiet=getattr(args, "quiet", False))
    try:
        return int(args.command(args))
    except KeyboardInterrupt:
        _fail("Interrupted; the next run picks up where this one stopped.")
        return EXIT_FAILED
    except Exception as exc:
        return _report_failure(exc)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orb-pipeline", description="Sync Orb billing data into a warehouse."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(required=True, metavar="{run,reconcile,demo,sandbox}")

    run = commands.add_parser("run", help="extract from Orb and load into the destination")
    _add_run_options(run)
    run.set_defaults(command=_run)

    demo = commands.add_parser("demo", help="run against the bundled sandbox and print the summary")
    demo.add_argument("--customers", type=int, default=100)
    demo.add_argument("--seed", type=int, default=42)
    demo.set_defaults(command=_demo)

    reconcile = commands.add_parser(
        "reconcile",
        help="compare the destination with the live API; exit 0 equal, 1 drift",
        description="Compare each table's live rows, and money totals per currency, with a"
        " fresh listing of the Orb API. Exit codes: 0 equal, 1 drift (or the check failed),"
        " 2 configuration error.",
    )
    _add_destination_options(reconcile)
    reconcile.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="write the report as JSON to PATH, or to stdout (instead of the table) without one",
    )
    reconcile.set_defaults(command=_reconcile)

    sandbox = commands.add_parser("sandbox", help="serve the fake Orb API on loopback")
    sandbox.add_argument("--port", type=int, default=8484)
    sandbox.add_argument("--customers", type=int, default=100)
    sandbox.add_argument("--seed", type=int, default=42)
    sandbox.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to every request"
    )
    sandbox.add_argument(
        "--rate-limit", action="store_true", help="enforce Orb's live rate limits with 429s"
    )
    sandbox.set_defaults(command=_sandbox)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    _add_destination_options(
        parser, " (invoices and invoice_line_items come from one listing: either selects both)"
    )
    parser.add_argument(
        "--summary-json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the run summary as JSON to PATH (a failed run writes its error)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="for schedulers: log only warnings and errors, print a one-line result",
    )
    parser.add_argument(
        "--full-refresh", action="store_true", help="re-read everything from the API"
    )
    parser.add_argument(
        "--start-date",
        default=None,
        help="YYYY-MM-DD; closed history dated before it is skipped, open objects always loaded",
    )
    parser.add_argument(
        "--no-views", dest="views", action="store_false", help="skip the reporting views"
    )
    parser.add_argument(
        "--reporting-schema", default=None, help="schema of the views (default <dataset>_reporting)"
    )
    parser.add_argument(
        "--table-format",
        default=None,
        help=f"filesystem destination: {', '.join(TABLE_FORMATS)} (default {TABLE_FORMATS[0]});"
        " delta and iceberg tables merge, parquet is append-only",
    )


def _add_destination_options(parser: argparse.ArgumentParser, resources_note: str = "") -> None:
    parser.add_argument(
        "--resources",
        type=_table_list,
        default=None,
        help=f"comma-separated tables: {', '.join(TABLES)}{resources_note}",
    )
    parser.add_argument(
        "--destination", default="duckdb", help="any dlt destination (default: duckdb)"
    )
    parser.add_argument("--dataset-name", default="orb")


def _table_list(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def _run(args: argparse.Namespace) -> int:
    started = datetime.now(UTC)
    bars = sys.stderr.isatty() and not args.quiet
    try:
        with terminal_progress() if bars else nullcontext(NULL_COLLECTOR) as progress:
            report = run_pipeline(
                resources=args.resources,
                destination=args.destination,
                dataset_name=args.dataset_name,
                full_refresh=args.full_refresh,
                start_date=args.start_date,
                table_format=args.table_format,
                views=args.views,
                reporting_schema=args.reporting_schema,
                progress=progress,
            )
    except Exception as exc:
        if args.summary_json:
            failed = failure_json(first_line(cause_of(exc)), started, datetime.now(UTC))
            _write_json(args.summary_json, failed)
        raise
    if args.summary_json:
        _write_json(args.summary_json, report.to_json())
    print(one_line(report) if args.quiet else report.format())
    return EXIT_OK


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def _demo(args: argparse.Namespace) -> int:
    from .demo import next_steps, run_demo

    report = run_demo(customers=args.customers, seed=args.seed)
    print(report.format())
    print(next_steps())
    return EXIT_OK


def _reconcile(args: argparse.Namespace) -> int:
    try:
        report = reconcile(
            resources=args.resources, destination=args.destination, dataset_name=args.dataset_name
        )
    except (ConfigurationError, OrbAuthError):
        raise
    except Exception as exc:
        _fail(f"Reconcile failed: {first_line(cause_of(exc))}")
        return EXIT_FAILED
    if args.json == "-":
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.format())
        if args.json:
            _write_json(Path(args.json), report.to_json())
    return EXIT_FAILED if report.drifted else EXIT_OK


def _sandbox(args: argparse.Namespace) -> int:
    from .client import RateLimits
    from .sandbox import serve

    limits = RateLimits()
    serve(
        port=args.port,
        customers=args.customers,
        seed=args.seed,
        latency=args.latency,
        rate_limits=limits.by_class() if args.rate_limit else None,
    )
    return EXIT_OK


def _report_failure(exc: BaseException) -> int:
    """One or two lines naming the cause; at DEBUG the traceback first."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        traceback.print_exception(exc, file=sys.stderr)
    code, message = describe(exc)
    _fail(message)
    return code


def _fail(message: str) -> None:
    print(f"orb-pipeline: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
