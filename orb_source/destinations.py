"""Destination preflight: a destination that cannot work is named in one or two lines, before
any request to Orb's data and before anything is written.

The checks follow the order dlt would fail in, each with the fix rather than dlt's full text:
an unknown name (with the names dlt knows), a missing extra (the exact `pip install`),
missing credentials (the variable to set), then opening the destination itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from typing import Any

import dlt
import dlt.destinations
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.destination import Destination
from dlt.common.destination.exceptions import UnknownDestinationModule
from dlt.common.exceptions import MissingDependencyException
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

from .failures import ConfigurationError, locked_file

PACKAGE = "orb-source"


def resolve_destination(destination: str | Destination[Any, Any]) -> Destination[Any, Any]:
    """The destination factory for a name, with its Python dependencies importable."""
    if not isinstance(destination, str):
        return destination
    try:
        factory = Destination.from_reference(destination)
    except UnknownDestinationModule:
        factory = None
    if factory is None:
        raise ConfigurationError(
            f"Unknown destination {destination!r}. Available: {', '.join(known_destinations())}."
        )
    try:
        factory.client_class  # noqa: B018 (imports the destination's driver)
    except MissingDependencyException as exc:
        missing: Sequence[str] = exc.dependencies
    except ModuleNotFoundError:
        # dlt's own wording when it meets this later: the destination's extra of dlt
        missing = [f"dlt[{factory.spec().destination_type}]"]
    else:
        return factory
    raise ConfigurationError(not_installed(destination, missing))


def not_installed(destination: str, dependencies: Sequence[str]) -> str:
    command = install_command(dependencies)
    return f"Destination {destination} needs packages that are not installed: {command}"


def known_destinations() -> list[str]:
    """dlt's built-in destinations (`destination` is its decorator for custom ones)."""
    return sorted(name for name in dlt.destinations.__all__ if name != "destination")


def install_command(dependencies: Sequence[str]) -> str:
    """`pip install "orb-source[x]"` where the package has that extra, else dlt's own extra."""
    extras = set(metadata.metadata(PACKAGE).get_all("Provides-Extra") or ())
    wanted = []
    for dependency in dependencies:
        name, _, extra = dependency.partition("[")
        extra = extra.rstrip("]")
        wanted.append(f"{PACKAGE}[{extra}]" if name == "dlt" and extra in extras else dependency)
    return " ".join(f'pip install "{package}"' for package in wanted)


def check_destination(pipeline: dlt.Pipeline) -> None:
    """Resolve the credentials and open the destination once.

    Missing credentials name the variable to set; a DuckDB file another process holds
    raises `DestinationLocked` (a run failure, exit 1: nothing to configure); any other
    failure to open (an unwritable path, wrong warehouse credentials) is a configuration
    error.
    """
    try:
        with pipeline.sql_client():
            pass
    except ConfigFieldMissingException as exc:
        raise ConfigurationError(missing_settings(pipeline, exc)) from None
    except MissingDependencyException as exc:
        name = pipeline.destination.destination_name if pipeline.destination else "destination"
        raise ConfigurationError(not_installed(name, exc.dependencies)) from None
    except Exception as exc:
        locked = locked_file(exc)
        if locked is not None:
            raise locked from None
        text = str(exc).strip()
        first_line = text.splitlines()[0] if text else type(exc).__name__
        raise ConfigurationError(f"Cannot open the destination: {first_line}") from None


def missing_settings(pipeline: dlt.Pipeline, exc: ConfigFieldMissingException) -> str:
    """One line naming the environment variables dlt reads for the missing settings."""
    name = pipeline.destination.destination_name if pipeline.destination else "destination"
    section = f"DESTINATION__{name.upper()}"
    variables = " and ".join(f"{section}__{field.upper()}" for field in exc.fields)
    toml = f"[destination.{name}] in .dlt/secrets.toml"
    return f"Destination {name} is not configured: set {variables} (or {toml})."


@contextmanager
def opened(pipeline: dlt.Pipeline) -> Iterator[None]:
    """Check the destination (`check_destination`), then hold a DuckDB file open until the
    run ends.

    dlt opens the file for each load job and each check, and closes it when the last
    connection ends; every close checkpoints the database and every open reads it again (3 s
    of a 12 s run on the test account). While one connection is open, DuckDB keeps the
    database in this process, and dlt's connections attach to it.
    """
    check_destination(pipeline)
    database = duckdb_file(pipeline)
    if database is None:
        yield
        return
    import duckdb

    connection = duckdb.connect(database)
    try:
        yield
    finally:
        connection.close()


def duckdb_file(pipeline: dlt.Pipeline) -> str | None:
    """The DuckDB file the pipeline loads, or None for other destinations and connections
    passed in (whose owner keeps them open)."""
    if pipeline.destination is None or pipeline.destination.destination_name != "duckdb":
        return None
    credentials = pipeline.destination_client().config.credentials
    if not isinstance(credentials, DuckDbCredentials) or credentials.read_only:
        return None
    if credentials.external_conn() is not None or credentials.database == ":memory:":
        return None
    return str(credentials.database)
