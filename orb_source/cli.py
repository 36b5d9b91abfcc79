"""`orb-pipeline`: a thin command line over `orb_source.runner`.

Exit codes: 0 success; 1 the run failed; 2 configuration or authentication error. Failures
print one or two plain lines (`failures.py`), never the key; `ORB_LOG_LEVEL=DEBUG` adds the
traceback. The project's own warnings (schema changes, vanished customers) print at WARNING
(`ORB_LOG_LEVEL`); dlt's internal ones only at `ORB_LOG_LEVEL=DEBUG` (its errors) unless
`RUNTIME__LOG_LEVEL` says otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from collections.abc import Sequence

from .catalog import TABLES
from .failures import EXIT_FAILED, EXIT_OK, describe
from .runner import RunReport, run_pipeline


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = os.environ.get("ORB_LOG_LEVEL", "WARNING")
    # dlt's own error lines repeat the failure this CLI reports; they show at DEBUG.
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR" if level == "DEBUG" else "CRITICAL")
    logging.basicConfig(level=level, format="%(levelname)s %(message)s")
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
    commands = parser.add_subparsers(required=True, metavar="{run,demo,sandbox}")

    run = commands.add_parser("run", help="extract from Orb and load into the destination")
    _add_run_options(run)
    run.set_defaults(command=_run)

    demo = commands.add_parser("demo", help="run against the bundled sandbox and print the summary")
    demo.add_argument("--customers", type=int, default=100)
    demo.add_argument("--seed", type=int, default=42)
    demo.set_defaults(command=_demo)

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
    parser.add_argument(
        "--resources",
        type=_table_list,
        default=None,
        help=f"comma-separated tables: {', '.join(TABLES)} "
        "(invoices and invoice_line_items come from one listing: either selects both)",
    )
    parser.add_argument(
        "--destination", default="duckdb", help="any dlt destination (default: duckdb)"
    )
    parser.add_argument("--dataset-name", default="orb")
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


def _table_list(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def _run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    report = run_pipeline(
        resources=args.resources,
        destination=args.destination,
        dataset_name=args.dataset_name,
        full_refresh=args.full_refresh,
        start_date=args.start_date,
        views=args.views,
        reporting_schema=args.reporting_schema,
    )
    _print_report(report, time.monotonic() - started)
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from .demo import next_steps, run_demo

    started = time.monotonic()
    report = run_demo(customers=args.customers, seed=args.seed)
    _print_report(report, time.monotonic() - started)
    print(next_steps())
    return EXIT_OK


def _sandbox(args: argparse.Namespace) -> int:
    from .client import RateLimits
    from .sandbox import serve

    limits = RateLimits()
    serve(
        port=args.port,
        customers=args.customers,
        seed=args.seed,
        latency=args.latency,
        rate_limits={"read": limits.read, "credit_balance": limits.credit_balance}
        if args.rate_limit
        else None,
    )
    return EXIT_OK


def _print_report(report: RunReport, seconds: float) -> None:
    print(report.format())
    print(f"Finished in {seconds:.1f} s.")


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
