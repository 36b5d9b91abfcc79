"""Compare what a pipeline loaded with the sandbox account's current state, field by field."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

import dlt
from dlt.common.normalizers.naming.snake_case import NamingConvention
from dlt.destinations.sql_client import SqlClientBase

from orb_source.catalog import ENDPOINTS, SERIES_TABLES, SHAPES, TABLES
from orb_source.precision import to_scale
from orb_source.sandbox import Account
from orb_source.sandbox.account import wire
from orb_source.sandbox.usage import event_volume, subscription_costs, subscription_usage
from orb_source.series import window_start
from orb_source.transform import cost_rows, usage_rows, volume_rows

SPLIT_ARRAYS = {"line_items"}
"""Arrays the pipeline loads as a table of their own (`invoice_line_items`)."""


_reading: dict[int, SqlClientBase[Any]] = {}
"""Connections held open by `reading`, by pipeline."""


@contextmanager
def reading(pipeline: dlt.Pipeline) -> Iterator[None]:
    """Every read of `pipeline` inside shares one connection. Opening one costs about 0.1 s on
    a dataset of 230 tables (DuckDB loads its catalog, dlt its schema); a check that reads
    every table would spend most of its time there. Not held across runs: a DuckDB file open
    here would lock out a run in another process."""
    if id(pipeline) in _reading:
        yield
        return
    with pipeline.sql_client() as client:
        _reading[id(pipeline)] = client
        try:
            yield
        finally:
            del _reading[id(pipeline)]


@contextmanager
def _client(pipeline: dlt.Pipeline) -> Iterator[SqlClientBase[Any]]:
    with reading(pipeline):
        yield _reading[id(pipeline)]


def query(pipeline: dlt.Pipeline, sql: str) -> list[tuple[Any, ...]]:
    """Run SQL on the pipeline's dataset; `{invoices}`-style placeholders name its tables."""
    with _client(pipeline) as client:
        qualified = re.sub(r"\{(\w+)\}", lambda m: client.make_qualified_table_name(m[1]), sql)
        return list(client.execute_sql(qualified) or [])


def fetch_table(pipeline: dlt.Pipeline, table: str) -> dict[str, dict[str, Any]]:
    """Rows by id; fails if an id appears twice."""
    return by_id(table, fetch_rows(pipeline, table))


def fetch_rows(pipeline: dlt.Pipeline, table: str) -> list[dict[str, Any]]:
    with _client(pipeline) as sql:
        name = sql.make_qualified_table_name(table)
        with sql.execute_query(f"SELECT * FROM {name}") as cursor:
            columns = [d[0] for d in cursor.description]
            return [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]


def by_id(table: str, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {row["id"]: row for row in rows}
    assert len(found) == len(rows), f"{table}: duplicate ids"
    return found


Reader = Callable[[str], list[dict[str, Any]]]
"""A table's rows, read from wherever the pipeline wrote them."""


LISTED_TABLES = tuple(table for table in TABLES if table not in SERIES_TABLES)
"""The tables of objects Orb lists; usage, costs and event volume have `assert_series_mirror`."""


def assert_mirror(
    pipeline: dlt.Pipeline,
    account: Account,
    tables: tuple[str, ...] = LISTED_TABLES,
    read: Reader | None = None,
) -> None:
    """Every table holds exactly the account's live objects, and marks what is gone."""
    if read is None:
        with reading(pipeline):
            assert_mirror(pipeline, account, tables, lambda table: fetch_rows(pipeline, table))
        return
    for table in tables:
        rows = by_id(table, read(table))
        expected = account.objects(table)
        live = {row_id for row_id, row in rows.items() if row["deleted_at"] is None}
        assert live == set(expected), _id_diff(table, live, set(expected))
        gone_loaded = account.gone(table) & set(rows)
        still_live = sorted(row_id for row_id in gone_loaded if rows[row_id]["deleted_at"] is None)
        assert not still_live, (
            f"{table}: gone from the API but not marked deleted: {still_live[:5]}"
        )
        naming = destination_naming(pipeline)
        for row_id, obj in expected.items():
            assert_same_fields(table, obj, rows[row_id], naming)
        assert_child_counts(read, table, rows, expected)


def assert_child_counts(
    read: Reader,
    table: str,
    rows: Mapping[str, Mapping[str, Any]],
    expected: Mapping[str, Mapping[str, Any]],
) -> None:
    """dlt's child tables hold exactly the current array of each live parent."""
    arrays = {key for obj in expected.values() for key, v in obj.items() if isinstance(v, list)}
    for array in sorted(arrays - json_columns(table) - SPLIT_ARRAYS):
        want = {i: len(o.get(array) or []) for i, o in expected.items() if o.get(array)}
        if not want:
            continue
        parents = {row["_dlt_id"]: row_id for row_id, row in rows.items()}
        children = read(f"{table}__{array}")
        owners = Counter(parents.get(child["_dlt_parent_id"]) for child in children)
        got = {i: n for i, n in owners.items() if i in expected}
        diff = {
            i: (got.get(i), want.get(i)) for i in set(got) | set(want) if got.get(i) != want.get(i)
        }
        assert not diff, f"{table}__{array} (loaded, expected) by id: {diff}"


def destination_naming(pipeline: dlt.Pipeline) -> Callable[[str], str]:
    """Column names as dlt's snake_case naming makes them for the pipeline's destination."""
    capabilities = pipeline.destination.capabilities() if pipeline.destination else None
    max_length = capabilities.max_identifier_length if capabilities else None
    return NamingConvention(max_length=max_length).normalize_path


def assert_same_fields(
    table: str,
    obj: Mapping[str, Any],
    row: Mapping[str, Any],
    naming: Callable[[str], str] = str,
) -> None:
    """`naming` is the destination's: PostgreSQL's 63-character identifiers shorten long
    flattened names (`price__tiered_matrix_with_allnqkq3q_config__default_unit_amount`)."""
    links = ENDPOINTS[table].links if table in ENDPOINTS else {}
    for path, value in flatten(obj, links, json_columns(table)).items():
        column = naming(path)
        if column in row:
            assert same_value(value, row[column]), (
                f"{table}.{column} of {obj.get('id')}: API {value!r} != warehouse {row[column]!r}"
            )
        else:
            assert value is None, f"{table}: column {column} missing (API has {value!r})"
    for embedded, column in links.items():
        link = obj.get(embedded)
        expected_id = link.get("id") if isinstance(link, Mapping) else link
        assert row.get(column) == expected_id, f"{table}.{column} of {obj.get('id')}"
    endpoint = ENDPOINTS.get(table)
    if endpoint and endpoint.scope.value == "customer":
        assert row["customer_id"] == obj.get("customer_id", row["customer_id"])


def json_columns(table: str) -> set[str]:
    return set(SHAPES[table].json) if table in SHAPES else set()


def flatten(
    obj: Mapping[str, Any], links: Mapping[str, str], json: set[str], prefix: str = ""
) -> dict[str, Any]:
    """dlt's flattening of nested objects into `a__b` columns; arrays are child tables."""
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        column = f"{prefix}{key}"
        if not prefix and key in links:
            continue
        if column in json:
            flat[column] = value
        elif isinstance(value, list):
            continue
        elif isinstance(value, Mapping):
            flat.update(flatten(value, {}, json, f"{column}__"))
        else:
            flat[column] = value
    return flat


def same_value(api: Any, stored: Any) -> bool:
    if api is None or stored is None:
        return api is None and stored is None
    if isinstance(stored, datetime):
        return isinstance(api, str) and datetime.fromisoformat(api) == stored
    if isinstance(stored, Decimal):
        return to_scale(Decimal(str(api))) == stored
    if isinstance(api, Mapping | list):
        # DuckDB returns JSON columns as text, PostgreSQL's jsonb as parsed objects.
        loaded = json.loads(stored) if isinstance(stored, str) else stored
        return bool(loaded == json.loads(json.dumps(api, default=str)))
    return bool(api == stored)


def _id_diff(table: str, loaded: set[str], expected: set[str]) -> str:
    missing, extra = sorted(expected - loaded), sorted(loaded - expected)
    return f"{table}: {len(missing)} missing {missing[:5]}, {len(extra)} unexpected {extra[:5]}"


def volume_start(account: Account) -> datetime:
    """Where a first load starts the event volume: the hour the first customer was created."""
    first: datetime = min(customer["created_at"] for customer in account.customers.values())
    return first.replace(minute=0, second=0, microsecond=0)


def expected_series(
    account: Account, volume_since: datetime, from_date: datetime | None = None
) -> dict[str, dict[str, Any]]:
    """Usage, costs and event volume as the sandbox answers them now, over each
    subscription's whole life (from the customer's midnight of `from_date`, a start date)
    and, for event volume, from `volume_since`: what a table holds when every window was
    last read after its last change."""
    with account.lock:
        usage: list[dict[str, Any]] = []
        costs: list[dict[str, Any]] = []
        for sub in account.subscriptions.values():
            of = {"subscription_id": sub["id"], "customer_id": sub["customer"]["id"]}
            start = sub["start_date"]
            if from_date is not None:
                midnight = window_start(from_date, "day", sub["customer"]["timezone"])
                start = max(start, midnight)
            if start >= min(account.now, sub["end_date"] or account.now):
                continue
            span = (start, account.now)
            periodic = {"view_mode": "periodic"}
            usage += usage_rows(wire(subscription_usage(account, sub["id"], *span))["data"], of)
            answer = subscription_costs(account, sub["id"], *span, **periodic)
            costs += cost_rows(wire(answer)["data"], of)
        volume = volume_rows(wire(event_volume(account, volume_since, account.now)), {})
    return {
        "subscription_usage": {row["id"]: row for row in usage},
        "subscription_costs": {row["id"]: row for row in costs},
        "event_volume": {row["id"]: row for row in volume},
    }


def assert_series_mirror(
    pipeline: dlt.Pipeline,
    account: Account,
    volume_since: datetime,
    from_date: datetime | None = None,
    read: Reader | None = None,
) -> None:
    """Usage, costs (each price's cost too) and event volume hold exactly the account's
    windows, value for value; rows are marked deleted only with their customer."""
    if read is None:
        with reading(pipeline):
            assert_series_mirror(
                pipeline, account, volume_since, from_date, lambda t: fetch_rows(pipeline, t)
            )
        return
    expected = expected_series(account, volume_since, from_date)
    naming = destination_naming(pipeline)
    gone = account.gone("subscriptions")
    for table, objects in expected.items():
        rows = by_id(table, read(table))
        live = {row_id for row_id, row in rows.items() if row["deleted_at"] is None}
        assert live == set(objects), _id_diff(table, live, set(objects))
        assert {rows[row_id].get("subscription_id") for row_id in set(rows) - live} <= gone
        for row_id, obj in objects.items():
            assert_same_fields(table, obj, rows[row_id], naming)
    costs = by_id("subscription_costs", read("subscription_costs"))
    parents = {row["_dlt_id"]: row_id for row_id, row in costs.items() if row["deleted_at"] is None}
    loaded = sorted(
        (
            parents[child["_dlt_parent_id"]],
            child["price_id"],
            to_scale(Decimal(str(child["subtotal"]))),
            to_scale(Decimal(str(child["total"]))),
            None if child["quantity"] is None else to_scale(Decimal(str(child["quantity"]))),
        )
        for child in read("subscription_costs__per_price_costs")
        if child["_dlt_parent_id"] in parents
    )
    want = sorted(
        (
            row_id,
            cost["price_id"],
            to_scale(Decimal(cost["subtotal"])),
            to_scale(Decimal(cost["total"])),
            None if cost.get("quantity") is None else to_scale(Decimal(str(cost["quantity"]))),
        )
        for row_id, row in expected["subscription_costs"].items()
        for cost in row["per_price_costs"]
    )
    assert loaded == want, "subscription_costs__per_price_costs differ from the API's"
