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
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dlt.common import json
from dlt.common.exceptions import TerminalException, TransientException
from dlt.common.json import custom_pua_decode
from dlt.common.schema.typing import TColumnSchema
from dlt.common.storages import FileStorage
from dlt.load.exceptions import LoadClientJobFailed
from dlt.normalize.exceptions import NormalizeJobFailed

from .failures import UnloadablePackage, causes, first_line
from .precision import PRECISION, SCALE

logger = logging.getLogger(__name__)

_JOB_FILE = re.compile(r"^(?P<table>[a-z0-9_]+?)\.[0-9a-zA-Z]+\.")


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same package can succeed: connections and busy destinations."""
    errors = causes(exc)
    if any(isinstance(error, TerminalException) for error in errors):
        return False
    return any(isinstance(e, TransientException | ConnectionError | TimeoutError) for e in errors)


def failed_step(pipeline: dlt.Pipeline, exc: BaseException) -> str:
    """Where the package failed: the table of a load job the destination rejected, or the
    normalize step with the columns that hold a number their DECIMAL cannot (its worker
    reports the first file of its batch, not the one that failed)."""
    errors = causes(exc)
    for error in errors:
        match = _JOB_FILE.match(str(getattr(error, "job_id", "")))
        if isinstance(error, LoadClientJobFailed) and match:
            return f"table {match['table']} could not be loaded"
    if any(getattr(error, "step", None) == "normalize" for error in errors):
        load_ids = {e.load_id for e in errors if isinstance(e, NormalizeJobFailed)}
        try:
            unfit = sorted({column for i in load_ids for column in unfit_decimals(pipeline, i)})
        except Exception:  # a diagnosis must never keep the package from being discarded
            logger.debug("could not read the failed package's files", exc_info=True)
            unfit = []
        if unfit:
            verb = "holds" if len(unfit) == 1 else "hold"
            return (
                f"the package could not be normalized: {', '.join(unfit)} {verb} a number"
                " too large for its DECIMAL column"
            )
        return "the package could not be normalized"
    return "the package could not be loaded"


def unfit_decimals(pipeline: dlt.Pipeline, load_id: str) -> list[str]:
    """`table.column` of the package's files holding a number the schema's DECIMAL column
    cannot hold: what a package extracted without the precision policy fails on. Reads the
    Arrow path's Parquet files and the top-level fields of the dict path's JSONL files."""
    schema = pipeline.default_schema
    unfit: set[str] = set()
    for job in pipeline.get_load_package_info(load_id).jobs["new_jobs"]:
        table = job.job_file_info.table_name
        limits = _integer_limits(schema.tables.get(table, {}).get("columns", {}))
        for column, values in _numbers(job.file_path, job.job_file_info.file_format, limits):
            if any(v is not None and abs(v) >= limits[column] for v in values):
                unfit.add(f"{table}.{column}")
    return sorted(unfit)


def _integer_limits(columns: Mapping[str, TColumnSchema]) -> dict[str, Decimal]:
    """The first number too large for each DECIMAL column: 10 ** its integer digits."""
    limits = {}
    for name, column in columns.items():
        if column.get("data_type") == "decimal":
            precision, scale = column.get("precision"), column.get("scale")
            digits = (PRECISION if precision is None else precision) - (
                SCALE if scale is None else scale
            )
            limits[name] = Decimal(10) ** digits
    return limits


def _numbers(
    path: str, file_format: str, columns: Mapping[str, Decimal]
) -> Iterator[tuple[str, Iterable[Any]]]:
    """The values of the given columns in one extracted file: the smallest and largest of a
    Parquet column, every top-level value of a JSONL file."""
    if file_format == "parquet":
        data = pq.read_table(path)
        for name in set(data.column_names) & set(columns):
            if pa.types.is_decimal(data[name].type):
                yield name, pc.min_max(data[name]).as_py().values()
        return
    with FileStorage.open_zipsafe_ro(path, "rb") as lines:
        for line in lines:
            for row in json.loadb(line):
                for name in set(row) & set(columns):
                    yield name, [_number(custom_pua_decode(row[name]))]


def _number(value: Any) -> Decimal | None:
    """A JSON value as the number a DECIMAL column would get from it; None if it is none."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


@contextmanager
def discarded_when_unloadable(pipeline: dlt.Pipeline) -> Iterator[None]:
    """Run a normalize or load step; on a failure that is not transient, discard the package
    and the local state, and raise `UnloadablePackage` naming the table and the cause."""
    try:
        yield
    except Exception as exc:
        if is_transient(exc):
            raise
        what = failed_step(pipeline, exc)
        innermost = causes(exc)[-1]
        cause = f"{type(innermost).__name__}: {first_line(innermost)}"
        logger.warning("discarding a package: %s: %s", what, cause)
        pipeline.drop()
        raise UnloadablePackage(
            f"{what}: {cause}. The package was discarded and the pipeline"
            " state rewound to the last completed load; the next run reads those rows from Orb"
            " again."
        ) from exc
