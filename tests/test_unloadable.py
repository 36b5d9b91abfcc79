"""A package that can never be loaded does not wedge the pipeline, and loses nothing.

The poisoned package is made the way an older version of the source could have made one:
extracted without the precision policy, with a balance no DECIMAL(38,18) column holds, after a
day of changes in Orb, so the package's state has moved the cursors past those changes."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import dlt
import pytest

from orb_source.cli import main
from orb_source.failures import UnloadablePackage
from orb_source.precision import Fitting, fit_rows
from orb_source.runner import make_pipeline, run_pipeline
from orb_source.sandbox import Account, SandboxServer, simulate_day
from orb_source.source import orb
from tests.warehouse import assert_mirror


def without_policy_for_customers(table: str, rows: list[dict[str, Any]], fitting: Fitting) -> None:
    if table != "customers":
        fit_rows(table, rows, fitting)


def poison(pipeline: dlt.Pipeline, account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    """A day of changes, then an extracted package whose normalize step fails."""
    with account.lock:
        simulate_day(account, random.Random(11))
        customer = next(iter(account.customers.values()))
        balance = customer["balance"]
        customer["balance"] = Decimal("1e30")
        account.touch()
    with monkeypatch.context() as patched:
        patched.setattr("orb_source.source.fit_rows", without_policy_for_customers)
        pipeline.extract(orb(), loader_file_format="parquet")
    with pytest.raises(Exception, match="step=normalize"):
        pipeline.normalize()
    assert pipeline.has_pending_data
    with account.lock:
        customer["balance"] = balance
        account.touch()


@pytest.mark.usefixtures("sandbox")
def test_an_unloadable_package_is_discarded_and_the_next_run_loads_every_row(
    account: Account, loaded: dlt.Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison(loaded, account, monkeypatch)
    with pytest.raises(UnloadablePackage) as failure:
        run_pipeline(pipeline=loaded)
    message = str(failure.value)
    assert message.startswith(
        "the package could not be normalized: customers.balance holds a number too large for"
        " its DECIMAL column: ArrowInvalid: Decimal "
    ), message
    assert "next run reads those rows from Orb again" in message
    assert not loaded.has_pending_data
    run_pipeline(pipeline=loaded)
    assert_mirror(loaded, account)


def test_the_command_line_says_what_failed_and_what_the_next_run_does(
    account: Account,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run"]) == 0
    pipeline = make_pipeline()
    poison(pipeline, account, monkeypatch)
    capsys.readouterr()
    assert main(["run"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(
        "orb-pipeline: Run failed: the package could not be normalized: customers.balance"
    ), error
    assert "half-committed" not in error
    assert main(["run"]) == 0
    assert_mirror(make_pipeline(), account)
