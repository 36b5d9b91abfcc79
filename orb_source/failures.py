"""What a failed run tells its operator: an exit code and one or two plain lines.

Exit 2 is a configuration the operator must fix; exit 1 a run that failed. "The next run
repairs it" is said only of causes that pass on their own (Orb or the network having a bad
moment), never of a bug or a cause that will fail the next run the same way.
"""

from __future__ import annotations

import re

from dlt.common.exceptions import TransientException
from dlt.pipeline.exceptions import PipelineStepFailed

from .client import (
    RETRYABLE_STATUSES,
    OrbAPIError,
    OrbAuthError,
    OrbError,
    OrbResponseError,
    OrbTimeout,
    OrbUnreachable,
)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

DEBUG_HINT = "ORB_LOG_LEVEL=DEBUG shows the traceback"


class ConfigurationError(Exception):
    """Bad options or settings: the CLI exits 2."""


class PipelineBusy(Exception):
    """Another run of the same pipeline holds the lock."""


class DeletionsNotMarked(Exception):
    """The load committed its rows and cursors, then the deletion sweep failed."""


class UnloadablePackage(Exception):
    """A package failed to normalize or load for good; it was discarded (`packages.py`)."""


class DestinationLocked(Exception):
    """Another process holds the DuckDB file (a notebook, a second pipeline): exit 1."""


_DUCKDB_LOCK = re.compile(
    r'Could not set lock on file "(?P<file>[^"]+)": Conflicting lock is held in'
    r" (?P<program>\S+)(?: \(PID (?P<pid>\d+)\))?"
)


def locked_file(error: BaseException) -> DestinationLocked | None:
    """DuckDB's lock conflict, anywhere in the chain of causes, as one short line."""
    for cause in causes(error):
        match = _DUCKDB_LOCK.search(str(cause))
        if match:
            program = match["program"].rsplit("/", 1)[-1]
            holder = f"PID {match['pid']}, {program}" if match["pid"] else program
            return DestinationLocked(
                f"{match['file']} is locked by another process ({holder}); close it and run again."
            )
    return None


def causes(error: BaseException) -> list[BaseException]:
    """The error and what it was raised from, outermost first (dlt wraps step errors); dlt's
    load job errors add the destination client's own exception."""
    chain: list[BaseException] = [error]
    while (inner := chain[-1].__cause__ or chain[-1].__context__) is not None:
        if inner in chain:
            break
        chain.append(inner)
    clients = [getattr(e, "client_exception", None) for e in chain]
    return chain + [client for client in clients if isinstance(client, BaseException)]


def cause_of(error: BaseException) -> BaseException:
    """The error that says what happened: ours where there is one, else the innermost."""
    chain = causes(error)
    ours = (
        OrbError,
        ConfigurationError,
        PipelineBusy,
        DestinationLocked,
        DeletionsNotMarked,
        UnloadablePackage,
    )
    return next((c for c in chain if isinstance(c, ours)), chain[-1])


def first_line(error: BaseException) -> str:
    """The cause in one line, never blank."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def describe(error: BaseException) -> tuple[int, str]:
    """The exit code and message for a failure."""
    cause = cause_of(error)
    if isinstance(cause, ConfigurationError | OrbAuthError):
        return EXIT_CONFIG, str(cause)
    locked = cause if isinstance(cause, DestinationLocked) else locked_file(error)
    if locked is not None:
        return EXIT_FAILED, str(locked)
    if isinstance(cause, PipelineBusy):
        return EXIT_FAILED, str(cause)
    if isinstance(cause, UnloadablePackage):
        return EXIT_FAILED, f"Run failed: {cause}"
    chain = causes(error)
    text = first_line(cause)
    passes = passes_on_its_own(cause) or any(isinstance(c, TransientException) for c in chain)
    if isinstance(cause, DeletionsNotMarked):
        outlook = "the next run sweeps again" if passes else DEBUG_HINT
        return EXIT_FAILED, f"Run failed: {text}\nThe data and cursors are committed; {outlook}."
    if any(isinstance(c, PipelineStepFailed) and c.step == "load" for c in chain):
        # a load writes table by table and keeps its package for the next run to finish
        outlook = "the next run finishes it first" if passes else DEBUG_HINT
        return EXIT_FAILED, (
            f"Run failed while loading: {text}\nPart of the load may be written; {outlook}."
        )
    outlook = "the next run repairs it" if passes else DEBUG_HINT
    return EXIT_FAILED, f"Run failed: {text}\nNothing was half-committed; {outlook}."


def passes_on_its_own(cause: BaseException) -> bool:
    """Orb busy or down, the network dropping, a truncated body or a cursor loop: retried and
    still failing, but nothing in this pipeline or its settings that a later run meets again.
    A request Orb refuses (400) or a bug fails every run the same way."""
    if isinstance(cause, OrbAPIError):
        return cause.status in RETRYABLE_STATUSES
    return isinstance(cause, OrbUnreachable | OrbTimeout | OrbResponseError)
