"""Load packages that can never be loaded: discarded, so they never wedge the pipeline.

dlt commits the pipeline state (the cursors) to the working folder when a package is extracted,
and keeps a package that failed to normalize to retry it on every later run. A package that
fails for a reason that does not go away (a value the destination rejects, a type the writer
cannot store) would then fail every run, `--full-refresh` included; and one aborted at load
would leave the cursors past rows that never arrived. So such a package is discarded together
with the local state and schema. The next run takes both from the destination, where dlt
stores the state of each completed load only (`runner.restore_state`), and reads again from Orb
everything the discarded package held. Transient failures (a dropped connection, a busy
destination) keep the package, and the next run finishes it as usual.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import dlt
from dlt.common.exceptions import TerminalException, TransientException
from dlt.load.exceptions import LoadClientJobFailed

from .failures import UnloadablePackage, causes, first_line

logger = logging.getLogger(__name__)

_JOB_FILE = re.compile(r"^(?P<table>[a-z0-9_]+?)\.[0-9a-zA-Z]+\.")


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same package can succeed: connections and busy destinations."""
    errors = causes(exc)
    if any(isinstance(error, TerminalException) for error in errors):
        return False
    return any(isinstance(e, TransientException | ConnectionError | TimeoutError) for e in errors)


def failed_step(exc: BaseException) -> str:
    """Where the package failed: the table of a load job the destination rejected, or the
    normalize step (whose worker reports the first file of its batch, not the one that failed,
    so no table is named)."""
    errors = causes(exc)
    for error in errors:
        match = _JOB_FILE.match(str(getattr(error, "job_id", "")))
        if isinstance(error, LoadClientJobFailed) and match:
            return f"table {match['table']} could not be loaded"
    if any(getattr(error, "step", None) == "normalize" for error in errors):
        return "the package could not be normalized"
    return "the package could not be loaded"


@contextmanager
def discarded_when_unloadable(pipeline: dlt.Pipeline) -> Iterator[None]:
    """Run a normalize or load step; on a failure that is not transient, discard the package
    and the local state, and raise `UnloadablePackage` naming the table and the cause."""
    try:
        yield
    except Exception as exc:
        if is_transient(exc):
            raise
        what = failed_step(exc)
        innermost = causes(exc)[-1]
        cause = f"{type(innermost).__name__}: {first_line(innermost)}"
        logger.warning("discarding a package: %s: %s", what, cause)
        pipeline.drop()
        raise UnloadablePackage(
            f"{what}: {cause}. The package was discarded and the pipeline"
            " state rewound to the last completed load; the next run reads those rows from Orb"
            " again."
        ) from exc
