"""The filesystem destination on local disk: Delta and Iceberg tables that merge, read back
with `deltalake` and `pyiceberg` themselves, and append-only Parquet that says so."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable, write_deltalake
from dlt.common.schema import Schema
from dlt.common.schema.utils import new_table
from pyiceberg.table import StaticTable

from orb_source import lakehouse, runner
from orb_source.catalog import TABLES
from orb_source.cli import main
from orb_source.lakehouse import KEY
from orb_source.precision import PRECISION, SCALE
from orb_source.runner import make_pipeline, run_pipeline
from orb_source.sandbox import Account, SandboxServer, simulate_day
from tests.cli import run_cli
from tests.warehouse import Reader, assert_mirror, assert_series_mirror, by_id, volume_start

BUCKET = "orb_billing_lake"
"""The default bucket: a folder in the working directory (the test's tmp_path)."""

MONEY = pa.decimal128(PRECISION, SCALE)
UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")


def delta_table(tmp_path: Path, table: str) -> pa.Table | None:
    location = str(tmp_path / BUCKET / "orb" / table)
    return DeltaTable(location).to_pyarrow_table() if DeltaTable.is_deltatable(location) else None


def iceberg_table(tmp_path: Path, table: str) -> pa.Table | None:
    """The table as of its newest metadata file (dlt keeps no catalog of its own on disk)."""
    metadata = sorted((tmp_path / BUCKET / "orb" / table / "metadata").glob("*.metadata.json"))
    return StaticTable.from_metadata(str(metadata[-1])).scan().to_arrow() if metadata else None


READERS = {"delta": delta_table, "iceberg": iceberg_table}


def reader(table_format: str, tmp_path: Path) -> Reader:
    def read(table: str) -> list[dict[str, Any]]:
        arrow_table = READERS[table_format](tmp_path, table)
        return [] if arrow_table is None else arrow_table.to_pylist()

    return read


def assert_lake_mirror(
    pipeline: dlt.Pipeline,
    account: Account,
    table_format: str,
    tmp_path: Path,
    volume_since: datetime,
) -> None:
    """The exact mirror, every child row under a root that exists, no child row twice. Each
    table is read once (a root table is read again for each of its children otherwise)."""
    read = cache(reader(table_format, tmp_path))
    assert_mirror(pipeline, account, read=read)
    assert_series_mirror(pipeline, account, volume_since, read=read)
    roots = cache(lambda table: {row["_dlt_id"] for row in read(table)})
    for table in pipeline.default_schema.data_table_names(seen_data_only=True):
        if "__" not in table:
            continue
        rows = read(table)
        keys = [row["_dlt_id"] for row in rows]
        assert len(set(keys)) == len(keys), f"{table}: duplicate rows"
        orphans = {row["_dlt_root_id"] for row in rows} - roots(table.split("__")[0])
        assert not orphans, f"{table}: children of unknown roots {sorted(orphans)[:3]}"


def shorten_arrays(account: Account) -> None:
    """Upserts keep the children a re-read object no longer has, unless they are removed: drop
    a customer's extra email (a nested table of dlt's) and all but one sub line item of a
    draft's line item (an Arrow child table, or dlt's on the dict path)."""
    customer = next(c for c in account.customers.values() if c["additional_emails"])
    customer["additional_emails"] = []
    line = next(
        line
        for invoice in account.invoices.values()
        if invoice["status"] == "draft"
        for line in invoice["line_items"]
        if len(line["sub_line_items"]) > 1
    )
    line["sub_line_items"] = line["sub_line_items"][:1]


def contents(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows by id without what every read changes."""
    volatile = {"synced_at", "_dlt_load_id", "_dlt_id"}
    return {row["id"]: {k: v for k, v in row.items() if k not in volatile} for row in rows}


# Four runs of about 250 tables each: the Iceberg round took 340-390 s of one worker on one
# 2-core machine and over 600 s on a slower one; the timeout is there for a hang.
@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    ("table_format", "arrow"),
    [("delta", True), ("delta", False), ("iceberg", True)],
    ids=["delta-arrow", "delta-dicts", "iceberg-arrow"],
)
def test_open_tables_mirror_the_account_round_after_round(
    sandbox: SandboxServer, account: Account, tmp_path: Path, table_format: str, arrow: bool
) -> None:
    pipeline = make_pipeline("filesystem", pipelines_dir=str(tmp_path / "pipelines"))
    since = volume_start(account)
    run_pipeline(pipeline=pipeline, table_format=table_format, arrow=arrow)
    assert_lake_mirror(pipeline, account, table_format, tmp_path, since)

    rng = random.Random(2026)
    for day in range(3):
        with account.lock:
            changes = simulate_day(account, rng)
            if day == 0:
                shorten_arrays(account)
        assert any("line item" in change for change in changes)
        run_pipeline(pipeline=pipeline, table_format=table_format, arrow=arrow)
        assert_lake_mirror(pipeline, account, table_format, tmp_path, since)

    read = reader(table_format, tmp_path)
    for table in ("customers", "invoices", "invoice_line_items", "top_ups", "alerts"):
        rows = by_id(table, read(table))
        deleted = {row_id for row_id, row in rows.items() if row["deleted_at"] is not None}
        assert deleted and deleted == account.gone(table) & set(rows), table

    before = {table: contents(read(table)) for table in TABLES}
    run_pipeline(pipeline=pipeline, table_format=table_format, arrow=arrow)
    assert {table: contents(read(table)) for table in TABLES} == before

    invoices = READERS[table_format](tmp_path, "invoices")
    assert invoices is not None
    for column in ("total", "amount_due"):
        assert invoices.schema.field(column).type == MONEY, column
    assert invoices.schema.field("invoice_date").type == UTC_TIMESTAMP
    for table, column in [
        ("invoice_line_items", "amount"),
        ("invoice_line_items__tax_amounts", "amount"),
        ("customers", "balance"),
        ("credit_ledger_entries", "amount"),
        ("credit_blocks", "balance"),
        ("top_ups", "amount"),
    ]:
        loaded = READERS[table_format](tmp_path, table)
        assert loaded is not None and loaded.schema.field(column).type == MONEY, (table, column)
    live = invoices.filter(invoices["deleted_at"].is_null())
    total = sum(live["total"].to_pylist(), Decimal(0))
    assert total == sum(Decimal(i["total"]) for i in account.objects("invoices").values())


def test_parquet_appends_and_says_so_once(sandbox: SandboxServer, account: Account) -> None:
    result = run_cli("run", "--destination", "filesystem", "--table-format", "parquet")

    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert " WARNING table format parquet is append-only: " in lines[0], lines
    assert "deletions are not marked" in lines[0]
    assert sum("append-only" in line for line in lines) == 1, lines
    customers = ds.dataset(Path(BUCKET) / "orb" / "customers", format="parquet").to_table()
    assert sorted(customers["id"].to_pylist()) == sorted(account.objects("customers"))
    assert customers.schema.field("balance").type == MONEY
    line_items = ds.dataset(Path(BUCKET) / "orb" / "invoice_line_items", format="parquet")
    assert line_items.count_rows() == len(account.objects("invoice_line_items"))
    assert line_items.schema.field("amount").type == MONEY


@pytest.mark.parametrize(
    "args",
    [("--table-format", "delta"), ("--destination", "filesystem", "--table-format", "orc")],
    ids=["not-filesystem", "unknown-format"],
)
def test_a_table_format_the_destination_cannot_take_exits_2(
    sandbox: SandboxServer, args: tuple[str, ...]
) -> None:
    result = run_cli("run", *args)

    assert result.returncode == 2
    assert "--table-format" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2
    assert not Path("orb_billing.duckdb").exists()
    assert not Path(BUCKET).exists()


def test_a_missing_format_library_exits_2_before_any_work(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(lakehouse.LIBRARIES, "iceberg", ("pyiceberg", "no_such_catalog_library"))

    assert main(["run", "--destination", "filesystem", "--table-format", "iceberg"]) == 2

    assert capsys.readouterr().err == (
        "orb-pipeline: The iceberg table format needs no_such_catalog_library:"
        " pip install 'orb-source[lakehouse]'.\n"
    )
    assert sandbox.stats.by_route == {}
    assert not Path(BUCKET).exists()


@pytest.mark.slow
def test_a_failed_sweep_says_the_data_was_loaded(
    sandbox: SandboxServer,
    account: Account,
    pipeline: dlt.Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Marking deletions comes after the load committed: the error says so, and the next run,
    whose sweep reads only the destination, marks them."""
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "ERROR")
    run_pipeline(pipeline=pipeline)
    with account.lock:
        simulate_day(account, random.Random(3))

    def full_disk(pipeline: dlt.Pipeline) -> None:
        raise OSError("No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(runner, "sweep_deletions", full_disk)
        assert main(["run"]) == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith(
        "orb-pipeline: Run failed: the data is loaded, but marking deletions failed:"
        " No space left on device\nThe data and cursors are committed; "
    )
    assert "half-committed" not in stderr

    assert main(["run"]) == 0
    assert_mirror(pipeline, account)


@pytest.mark.slow
def test_a_load_that_stops_partway_says_so_and_the_next_run_finishes_it(
    sandbox: SandboxServer, account: Account, tmp_path: Path
) -> None:
    """A load writes table by table: a table it cannot write fails the run after others were
    written, and the message must not claim that nothing was committed."""
    assert run_cli("run", "--destination", "filesystem").returncode == 0
    versions = {table: delta_version(tmp_path, table) for table in TABLES}
    with account.lock:
        simulate_day(account, random.Random(5))
    log = tmp_path / BUCKET / "orb" / "invoices" / "_delta_log"
    broken = log / f"{versions['invoices'] + 1:020}.json"
    broken.write_text("not a delta log entry\n")

    failed = run_cli("run", "--destination", "filesystem")

    assert failed.returncode == 1
    assert "half-committed" not in failed.stderr
    lines = failed.stderr.splitlines()
    [at] = [i for i, line in enumerate(lines) if line.startswith("orb-pipeline: ")]
    reason, outlook = lines[at : at + 2]
    assert reason.startswith("orb-pipeline: Run failed while loading: Kernel error")
    assert outlook.startswith("Part of the load may be written; ")
    others = [table for table in TABLES if table != "invoices"]
    assert any(delta_version(tmp_path, table) > versions[table] for table in others)

    broken.unlink()
    assert run_cli("run", "--destination", "filesystem").returncode == 0
    pipeline = make_pipeline("filesystem", pipelines_dir=str(tmp_path / "dlt" / "pipelines"))
    assert_mirror(pipeline, account, read=reader("delta", tmp_path))


def delta_version(tmp_path: Path, table: str) -> int:
    return int(DeltaTable(str(tmp_path / BUCKET / "orb" / table)).version())


class DeltaFolder:
    """The one method of dlt's filesystem client the lake rules call, over Delta tables
    written here."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def load_open_table(self, table_format: str, table: str) -> DeltaTable:
        return DeltaTable(str(self.root / table))


def test_a_parent_is_read_once_for_its_children_and_again_after_a_rule_marks_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deleted customer's subscription is marked, and then that subscription's schedule:
    the second rule must see the first one's write, though `subscriptions` was read before
    it for another child."""
    at = datetime(2026, 3, 1, 6, tzinfo=UTC)
    tables = {
        "customers": {"id": ["c1", "c2"], "deleted_at": [at, None]},
        "subscriptions": {
            "id": ["s1", "s2"],
            "customer_id": ["c1", "c2"],
            "deleted_at": [None] * 2,
        },
        "subscription_schedules": {"subscription_id": ["s1", "s2"], "deleted_at": [None] * 2},
        "licenses": {"subscription_id": ["s1", "s2"], "deleted_at": [None] * 2},
        "alerts": {"customer_id": ["c1", "c2"], "deleted_at": [None] * 2},
    }
    schema = Schema("orb")
    for table, columns in tables.items():
        rows = {KEY: [f"{table}-{i}" for i in range(2)], **columns}
        arrow = pa.table(rows).cast(
            pa.schema(
                pa.field(name, UTC_TIMESTAMP if name == "deleted_at" else pa.string())
                for name in rows
            )
        )
        write_deltalake(str(tmp_path / table), arrow)
        columns = [{"name": name, "data_type": "text"} for name in rows]
        schema.update_table(new_table(table, columns=columns, table_format="delta"))
    rules = lakehouse._OpenTables(DeltaFolder(tmp_path), schema)
    reads: Counter[str] = Counter()
    read = rules.read

    def counted(table: str, columns: list[str]) -> pa.Table | None:
        reads[table] += 1
        return read(table, columns)

    monkeypatch.setattr(rules, "read", counted)

    rules.follow_parent("licenses", "subscriptions", "subscription_id")
    rules.follow_parent("subscriptions", "customers", "customer_id")
    rules.follow_parent("alerts", "customers", "customer_id")
    rules.follow_parent("subscription_schedules", "subscriptions", "subscription_id")

    assert reads["customers"] == 1
    # the licenses' parent, a child of customers, and the schedules' parent once marked
    assert reads["subscriptions"] == 3
    deleted = {
        table: {
            row[next(iter(columns))]: row["deleted_at"]
            for row in DeltaTable(str(tmp_path / table)).to_pyarrow_table().to_pylist()
        }
        for table, columns in tables.items()
        if table != "customers"
    }
    assert deleted == {
        "subscriptions": {"s1": at, "s2": None},
        "subscription_schedules": {"s1": at, "s2": None},
        "licenses": {"s1": None, "s2": None},
        "alerts": {"c1": at, "c2": None},
    }
    assert rules.marked == {"subscriptions": 1, "subscription_schedules": 1, "alerts": 1}
