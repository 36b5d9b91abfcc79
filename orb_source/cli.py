"""`orb-pipeline`: a thin command line over `orb_source.runner`.

Exit codes: 0 success; 1 the run failed (the next run repairs it); 2 configuration or
authentication error. Failures print one or two plain lines, never a traceback or the key.
The project's own warnings (schema changes, vanished customers) print at WARNING
(`ORB_LOG_LEVEL`); dlt's internal ones only at ERROR unless `RUNTIME__LOG_LEVEL` says otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .catalog import TABLES
from .client import OrbAuthError, OrbError
from .packages import UnloadablePackage, describe
from .runner import ConfigurationError, PipelineBusy, RunReport, run_pipeline

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")
    logging.basicConfig(
        level=os.environ.get("ORB_LOG_LEVEL", "WARNING"), format="%(levelname)s %(message)s"
    )
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
        "--start-date", default=None, help="YYYY-MM-DD; history before it is skipped on first load"
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
    )
    _print_report(report, time.monotonic() - started)
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from .sandbox import SandboxServer, generate_account

    print(f"Generating a sandbox account with {args.customers} customers...", flush=True)
    account = generate_account(customers=args.customers, seed=args.seed)
    with (
        SandboxServer(account) as server,
        _environment(ORB_API_KEY=server.api_key, ORB_BASE_URL=server.base_url),
    ):
        print(f"Sandbox serving the Orb API at {server.base_url}", flush=True)
        # Every demo serves a newly generated account: nothing earlier runs read applies to it.
        started = time.monotonic()
        report = run_pipeline(full_refresh=True)
    _print_report(report, time.monotonic() - started)
    print("Loaded into ./orb_billing.duckdb, dataset `orb`.")
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


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _report_failure(exc: BaseException) -> int:
    """Map the root cause to an exit code and a one- or two-line message."""
    cause = _root_cause(exc)
    if isinstance(cause, ConfigurationError | OrbAuthError):
        _fail(str(cause))
        return EXIT_CONFIG
    if isinstance(cause, PipelineBusy | UnloadablePackage):
        _fail(f"Run failed: {cause}" if isinstance(cause, UnloadablePackage) else str(cause))
        return EXIT_FAILED
    message = str(cause) if isinstance(cause, OrbError) else describe(cause)
    _fail(f"Run failed: {message}\nNothing was half-committed; the next run repairs it.")
    return EXIT_FAILED


def _root_cause(exc: BaseException) -> BaseException:
    """dlt wraps resource errors in step errors; the innermost error says what happened."""
    seen: list[BaseException] = [exc]
    while True:
        inner = seen[-1].__cause__ or seen[-1].__context__
        if inner is None or inner in seen:
            break
        seen.append(inner)
    for candidate in seen:
        if isinstance(candidate, OrbError | ConfigurationError | PipelineBusy | UnloadablePackage):
            return candidate
    return seen[-1]


def _fail(message: str) -> None:
    print(f"orb-pipeline: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
