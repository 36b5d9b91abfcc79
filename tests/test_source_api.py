"""`orb()` as a plain dlt source: it changes no process-wide setting, explicit credentials win
over the environment, and whatever it opens is closed when its resources end."""

from __future__ import annotations

import gc
import importlib.util
import logging
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import httpx
import pyarrow as pa
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from orb_source import orb
from orb_source.catalog import ARROW_TABLES
from orb_source.client import OrbClient
from orb_source.sandbox import Account, Fault, SandboxServer
from orb_source.strategies import SyncContext
from tests.warehouse import query

ROOT = Path(__file__).resolve().parent.parent
LOAD_ID_SETTING = "normalize.parquet_normalizer.add_dlt_load_id"
ORB_THREADS = ("orb-prefetch", "orb-read", "orb-credit_balance")
"""The threads the source starts: the client's prefetch and one pool per Orb rate class."""


def orb_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(ORB_THREADS)}


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Pool threads end shortly after their pool is shut down, not at once."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def clients_of(server: SandboxServer) -> list[OrbClient]:
    """Every client in the process that talks to this sandbox."""
    url = server.base_url.rstrip("/")
    return [o for o in gc.get_objects() if isinstance(o, OrbClient) and o.base_url == url]


@pytest.fixture
def threads_seen(sandbox: SandboxServer) -> Iterator[set[str]]:
    """Names of the source's threads alive while the sandbox answered, started by this test."""
    before = orb_threads()
    seen: set[str] = set()
    sandbox.before_request.append(lambda path, query: seen.update(t.name for t in orb_threads()))
    yield seen
    assert wait_for(lambda: not orb_threads() - before), [t.name for t in orb_threads() - before]


def statuses(server: SandboxServer, path: str) -> list[int]:
    return [status for _, served, status in server.stats.log if served == path]


def dlt_settings() -> tuple[str, str, list[Any]]:
    """What dlt holds process-wide: the config and secrets written in code, the log filters."""
    return (
        dlt.config.writable_provider.to_toml(),  # type: ignore[attr-defined]
        dlt.secrets.writable_provider.to_toml(),  # type: ignore[attr-defined]
        list(logging.getLogger("dlt").filters),
    )


# Process-wide settings ----------


def test_building_the_source_changes_no_dlt_setting_or_log_filter(sandbox: SandboxServer) -> None:
    before = dlt_settings()

    source = orb(start_date="2026-01-01", table_format="delta")

    assert len(source.resources) > len(ARROW_TABLES)
    assert dlt_settings() == before
    assert dlt.config.get(LOAD_ID_SETTING) is None


def test_the_plain_dlt_script_stamps_every_arrow_row_with_its_load_id(
    sandbox: SandboxServer, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pipelines/orb_pipeline.py`, run as it is, with dlt's own `add_dlt_load_id` unset: every
    row of every Arrow table (and of their child tables) carries the load's id, which the sweep
    prunes replaced child rows by."""
    monkeypatch.delenv("NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID", raising=False)
    assert dlt.config.get(LOAD_ID_SETTING) is None
    filters = list(logging.getLogger("dlt").filters)

    load_orb = _script_function("load_orb")
    load_orb()
    load_orb()

    pipeline = dlt.pipeline(pipeline_name="orb_billing", destination="duckdb", dataset_name="orb")
    loads = sorted(load_id for (load_id,) in query(pipeline, "SELECT load_id FROM {_dlt_loads}"))
    assert len(loads) == 2
    schema = pipeline.default_schema
    arrow_tables = sorted(
        name
        for name in schema.data_table_names()
        if name in ARROW_TABLES or name.split("__")[0] in ARROW_TABLES
    )
    assert {"invoices", "invoice_line_items", "invoice_line_items__tax_amounts"} <= set(
        arrow_tables
    )
    for table in arrow_tables:
        assert "_dlt_load_id" in schema.get_table_columns(table), table
        assert schema.get_table_columns(table)["_dlt_load_id"]["nullable"] is False, table
        by_load = dict(
            query(pipeline, f"SELECT _dlt_load_id, count(*) FROM {{{table}}} GROUP BY 1")
        )
        assert None not in by_load, table
        assert by_load and set(by_load) <= set(loads), (table, by_load)
    # the second run re-read the open invoices: their rows carry the second load's id
    [(second,)] = query(
        pipeline, f"SELECT count(*) FROM {{invoices}} WHERE _dlt_load_id = '{loads[1]}'"
    )
    open_invoices = [i for i in account.objects("invoices").values() if i["status"] == "draft"]
    assert second >= len(open_invoices) > 0
    assert dlt.config.get(LOAD_ID_SETTING) is None
    assert list(logging.getLogger("dlt").filters) == filters


def test_the_source_iterated_without_a_pipeline_yields_every_row(
    sandbox: SandboxServer, account: Account
) -> None:
    """`list(source)`, as dlt allows, with no pipeline and so no load package: the Arrow
    tables come without `_dlt_load_id`, and every invoice, line item and ledger entry is
    there."""
    items = list(orb().with_resources("invoices", "invoice_line_items", "credit_ledger_entries"))

    assert items and all(isinstance(item, pa.Table) for item in items)
    assert not any("_dlt_load_id" in item.column_names for item in items)
    roots = [item for item in items if "_dlt_parent_id" not in item.column_names]

    def ids(marker: str) -> set[str]:
        """Ids of the root rows of the table that has the column `marker`."""
        return {
            row_id
            for root in roots
            if marker in root.column_names
            for row_id in root["id"].to_pylist()
        }

    assert ids("invoice_number") == set(account.objects("invoices"))
    assert ids("adjusted_subtotal") == set(account.objects("invoice_line_items"))
    assert ids("entry_type") == set(account.objects("credit_ledger_entries"))


def _script_function(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(
        "orb_pipeline", ROOT / "pipelines/orb_pipeline.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


# Credentials ----------

WRONG_URL = "http://127.0.0.1:9/v1"
"""Nothing listens there: a request fails at once."""


def read_items(pipeline: dlt.Pipeline, sandbox: SandboxServer, **credentials: str) -> None:
    """Extract the `items` table; fails unless the sandbox took the key at its own URL."""
    sandbox.reset_stats()
    pipeline.extract(orb(**credentials, max_attempts=1).with_resources("items"))  # type: ignore[arg-type]
    assert statuses(sandbox, "/items") == [200]


@pytest.mark.parametrize(
    ("explicit", "orb_env", "dlt_config", "works"),
    [
        ("right", "wrong", "wrong", True),
        ("wrong", "right", "right", False),
        (None, "right", "wrong", True),
        (None, "wrong", "right", False),
        (None, None, "right", True),
    ],
)
def test_an_explicit_api_key_wins_then_orb_api_key_then_dlt_config(
    sandbox: SandboxServer,
    pipeline: dlt.Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    explicit: str | None,
    orb_env: str | None,
    dlt_config: str,
    works: bool,
) -> None:
    keys = {"right": sandbox.api_key, "wrong": "not-the-key"}
    monkeypatch.delenv("ORB_API_KEY")
    if orb_env:
        monkeypatch.setenv("ORB_API_KEY", keys[orb_env])
    monkeypatch.setenv("SOURCES__ORB__API_KEY", keys[dlt_config])
    credentials = {"api_key": keys[explicit]} if explicit else {}

    if works:
        read_items(pipeline, sandbox, **credentials)
    else:
        with pytest.raises(PipelineStepFailed, match="Orb API key rejected"):
            read_items(pipeline, sandbox, **credentials)
        assert statuses(sandbox, "/items") == [401]


@pytest.mark.parametrize(
    ("explicit", "orb_env", "dlt_config", "works"),
    [
        ("right", "wrong", "wrong", True),
        (None, "right", "wrong", True),
        (None, "wrong", "right", False),
        (None, None, "right", True),
    ],
)
def test_an_explicit_base_url_wins_then_orb_base_url_then_dlt_config(
    sandbox: SandboxServer,
    pipeline: dlt.Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    explicit: str | None,
    orb_env: str | None,
    dlt_config: str,
    works: bool,
) -> None:
    urls = {"right": sandbox.base_url, "wrong": WRONG_URL}
    monkeypatch.delenv("ORB_BASE_URL")
    if orb_env:
        monkeypatch.setenv("ORB_BASE_URL", urls[orb_env])
    monkeypatch.setenv("SOURCES__ORB__BASE_URL", urls[dlt_config])
    credentials = {"base_url": urls[explicit]} if explicit else {}

    if works:
        read_items(pipeline, sandbox, **credentials)
    else:
        with pytest.raises(PipelineStepFailed, match=re.escape(f"Cannot reach Orb at {WRONG_URL}")):
            read_items(pipeline, sandbox, **credentials)
        assert statuses(sandbox, "/items") == []


def test_other_settings_still_come_from_dlt_config(
    sandbox: SandboxServer, pipeline: dlt.Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the credentials given, `SOURCES__ORB__MAX_ATTEMPTS` still sets the tries."""
    monkeypatch.setenv("SOURCES__ORB__MAX_ATTEMPTS", "2")
    sandbox.inject(Fault("status", path=r"^/items$", status=500))
    source = orb(api_key=sandbox.api_key, base_url=sandbox.base_url).with_resources("items")

    with pytest.raises(PipelineStepFailed, match="Orb API 500 on /items"):
        pipeline.extract(source)

    assert statuses(sandbox, "/items") == [500, 500]


# Closing what the source opens ----------


def test_an_extract_closes_the_client_and_its_threads(
    sandbox: SandboxServer, pipeline: dlt.Pipeline, threads_seen: set[str]
) -> None:
    source = orb()

    pipeline.extract(source)

    assert {name.rsplit("_", 1)[0] for name in threads_seen} >= {"orb-read", "orb-credit_balance"}
    clients = clients_of(sandbox)
    assert clients, "the source's client"
    assert all(client.is_closed for client in clients)


def test_a_failed_extract_closes_the_client_and_its_threads(
    sandbox: SandboxServer, pipeline: dlt.Pipeline, threads_seen: set[str]
) -> None:
    """One customer's ledger answers 400 (no retry): the run fails while the other listings
    are under way, and everything they opened is closed all the same. (Only one listing fans
    out over customers here: with several, dlt may give up closing a reader still waiting on
    its customers after two seconds, and then reports `generator already executing`.)"""
    sandbox.inject(Fault("status", path=r"/credits/ledger$", status=400, times=1))
    tables = ("customers", "invoices", "invoice_line_items", "plans", "credit_ledger_entries")
    source = orb(max_attempts=1).with_resources(*tables)

    with pytest.raises(PipelineStepFailed, match="Orb API 400"):
        pipeline.extract(source)

    assert sandbox.stats.faults_served == {"status": 1}
    assert threads_seen
    clients = clients_of(sandbox)
    assert clients
    assert wait_for(lambda: all(client.is_closed for client in clients))


def test_consecutive_runs_in_one_process(
    sandbox: SandboxServer, pipeline: dlt.Pipeline, threads_seen: set[str]
) -> None:
    """Each run's source opens and closes its own; the second, incremental, loads as well."""
    for run in range(2):
        sandbox.reset_stats()
        info = pipeline.run(orb(), loader_file_format="parquet")
        assert not info.has_failed_jobs
        assert statuses(sandbox, "/customers"), run
        assert wait_for(lambda: all(client.is_closed for client in clients_of(sandbox)))
    loads = query(pipeline, "SELECT load_id FROM {_dlt_loads} WHERE status = 0")
    assert len(loads) == 2


# Leases, in process ----------


def page_server() -> httpx.MockTransport:
    """Every request answered with a one-object page."""

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"id": "x"}], "pagination_metadata": {}})

    return httpx.MockTransport(handle)


@pytest.fixture
def ctx() -> SyncContext:
    client = OrbClient("key", "https://orb.test/v1", max_attempts=1, transport=page_server())
    return SyncContext(client=client, started_at=datetime.now(UTC), state={})


def test_the_last_lease_closes_and_the_next_reopens(ctx: SyncContext) -> None:
    with ctx.lease():
        pool = ctx.pool("read")
        with ctx.lease():
            assert list(ctx.client.paginate("/items")) == [[{"id": "x"}]]
        assert not ctx.client.is_closed, "another lease is held"
        assert pool.submit(lambda: 1).result() == 1
    assert ctx.client.is_closed
    with pytest.raises(RuntimeError):
        pool.submit(lambda: 1)

    with ctx.lease():
        assert ctx.client.get("/items")["data"] == [{"id": "x"}]
        assert ctx.pool("read") is not pool
        assert ctx.pool("read").submit(lambda: 2).result() == 2
    assert ctx.client.is_closed


def test_a_lease_ends_when_its_generator_fails_or_is_closed(ctx: SyncContext) -> None:
    def reading(fail: bool) -> Generator[int]:
        with ctx.lease():
            yield 1
            if fail:
                raise ValueError("a page that cannot be read")
            yield 2

    failing, abandoned = reading(fail=True), reading(fail=False)
    assert next(failing) == next(abandoned) == 1
    with pytest.raises(ValueError):
        next(failing)
    assert not ctx.client.is_closed, "the abandoned reader still holds its lease"
    abandoned.close()
    assert ctx.client.is_closed


def test_leases_from_many_threads(ctx: SyncContext) -> None:
    barrier = threading.Barrier(8)

    def read() -> None:
        barrier.wait()
        for _ in range(20):
            with ctx.lease():
                ctx.client.get("/items")

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ctx.client.is_closed
