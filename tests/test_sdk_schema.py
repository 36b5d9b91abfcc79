"""The declared schema against Orb's official models (orb-billing, pinned in the test extras).

Every field path of every model either lands in the dataset (a column, a child table, inside a
declared JSON column, or as the id of an embedded copy) or is named in `EXCLUDED`; every money
field lands in a DECIMAL column; every declared column has the type the SDK gives its field.
A new SDK version then names each field that changed. The second half loads an account with
every shape the sandbox serves and checks each field path present in the served objects against
the tables DuckDB holds."""

from __future__ import annotations

import typing
from collections.abc import Iterator, Mapping
from typing import Any

import dlt
import pytest
from orb.types.shared.price import Price

from orb_source.sandbox import Account
from orb_source.schema import PRICE_MODEL_TYPES
from tests.sdk_models import MODELS, Landing, Path, field_paths, is_money, landing, members
from tests.warehouse import query

EXCLUDED: Mapping[tuple[str, Path], str] = {
    ("credit_ledger_entries", ("created_invoices",)): (
        "full Invoice objects an increment created; each is also listed by GET /invoices and"
        " loaded, money as DECIMAL, in `invoices` and `invoice_line_items`. The copy stays JSON."
    ),
    ("invoices", ("line_items",)): "loaded as the table `invoice_line_items`, checked there",
}
"""Field paths (and everything under them) that do not land as their own columns, and why."""

SDK_TYPES = {
    "decimal": {"float", "str", "int"},
    "timestamp": {"datetime"},
    "text": {"str"},
    "bigint": {"int"},
    "bool": {"bool"},
}


def excluded(table: str, path: Path) -> bool:
    return any((table, path[: len(prefix)]) == (t, prefix) for t, prefix in EXCLUDED)


def landings(table: str) -> Iterator[tuple[Path, set[str], Landing]]:
    for path, kinds in sorted(field_paths(MODELS[table]).items()):
        if not excluded(table, path):
            yield path, kinds, landing(table, path)


@pytest.mark.parametrize("table", sorted(MODELS))
def test_every_money_field_lands_as_decimal(table: str) -> None:
    wrong = [
        f"{'.'.join(path)} -> {where.table}.{where.column} ({where.declared})"
        for path, kinds, where in landings(table)
        if is_money(path, kinds) and not where.link and where.declared != "decimal"
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("table", sorted(MODELS))
def test_declared_types_match_the_sdk(table: str) -> None:
    wrong = []
    for path, kinds, where in landings(table):
        if where.link or where.declared is None or kinds == {"object"}:
            continue
        if where.whole and path[-1] != "[]" and kinds - {"object"}:
            wrong.append(f"{'.'.join(path)}: SDK {sorted(kinds)}, declared JSON")
        elif where.declared in SDK_TYPES and not kinds & SDK_TYPES[where.declared]:
            wrong.append(f"{'.'.join(path)}: SDK {sorted(kinds)}, declared {where.declared}")
    assert not wrong, "\n".join(wrong)


def test_the_price_kinds_are_orbs() -> None:
    literals = {
        kind
        for model in members(Price)
        for kind in typing.get_args(model.model_fields["price_model_type"].annotation)
    }
    assert len(literals) == 36
    assert literals == PRICE_MODEL_TYPES


def served_paths(value: Any, prefix: Path = ()) -> Iterator[Path]:
    """The leaf paths of a served object that carry a value, in the SDK's path notation."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from served_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for item in value:
            yield from served_paths(item, (*prefix, "[]"))
    elif value is not None:
        yield prefix


def dataset_columns(pipeline: dlt.Pipeline) -> dict[tuple[str, str], str]:
    rows = query(
        pipeline,
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        f" WHERE table_schema = '{pipeline.dataset_name}'",
    )
    return {(table, column): data_type for table, column, data_type in rows}


@pytest.mark.usefixtures("sandbox")
def test_every_served_field_lands_where_the_schema_says(
    account: Account, loaded: dlt.Pipeline
) -> None:
    columns = dataset_columns(loaded)
    missing, not_decimal, checked = [], [], 0
    for table, model in MODELS.items():
        known = field_paths(model)
        paths = {p for obj in account.objects(table).values() for p in served_paths(obj)}
        for path in sorted(paths):
            if excluded(table, path) or path not in known:
                continue
            where = landing(table, path)
            if where.link:
                continue
            checked += 1
            data_type = columns.get((where.table, where.column))
            if data_type is None:
                missing.append(f"{table}: {'.'.join(path)} -> {where.table}.{where.column}")
            elif is_money(path, known[path]) and not data_type.startswith("DECIMAL(38,18)"):
                not_decimal.append(f"{where.table}.{where.column}: {data_type}")
    assert not missing, "\n".join(missing)
    assert not not_decimal, "\n".join(not_decimal)
    assert checked > 500
