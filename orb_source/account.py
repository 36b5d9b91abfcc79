"""Which Orb account a pipeline's state and dataset hold, so another account is never merged in.

Orb's API has no endpoint that names the account behind a key, so the account is known by
its customers: the fingerprint is the ids of its oldest live customers (`ANCHORS` of them),
recorded with the base URL in source state each time the customers are listed. Customer ids
never change, belong to one account, and an old customer is the one least likely to be deleted
(Orb refuses to delete a customer with issued invoices); several are kept, and refreshed
every run, so one deletion never breaks the binding. The key is not part of it: a rotated key
of the same account reads the same customers.

Before anything is written, each recorded claim is checked with one `GET /customers/{id}`:
the state's fingerprint (which travels to the destination with each load and comes back
through `sync_destination`), and the oldest live customers in the destination's own
`customers` table, which also covers data loaded by an older version or another pipeline
folder. A claim none of whose customers the API knows is another account: the run is refused,
or with `--full-refresh` the dataset is replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import datetime
from typing import Any

import dlt
from dlt.common.destination.exceptions import DestinationUndefinedEntity
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from .client import OrbClient, OrbNotFound
from .failures import ConfigurationError
from .lakehouse import read_open_table

logger = logging.getLogger(__name__)

ANCHORS = 3
"""Customers kept as the account's fingerprint."""

STATE_KEY = "account"


class AnotherAccount(ConfigurationError):
    """The API key reads another account than the one the dataset or its state holds."""


def record_account(
    state: MutableMapping[str, Any], base_url: str, customers: Iterable[Mapping[str, Any]]
) -> None:
    """Note in source state which account a complete customer listing came from."""
    anchors = oldest(customers)
    if anchors:
        state[STATE_KEY] = {"base_url": base_url, "customers": anchors}


def oldest(customers: Iterable[Mapping[str, Any]]) -> list[str]:
    """The ids of the customers created first (ties broken by id)."""
    ordered = sorted(
        (datetime.fromisoformat(str(c["created_at"]).replace("Z", "+00:00")), str(c["id"]))
        for c in customers
    )
    return [customer_id for _, customer_id in ordered[:ANCHORS]]


def recorded_claims(pipeline: dlt.Pipeline) -> list[tuple[str, list[str]]]:
    """(where, customer ids) of each record of the account the pipeline holds."""
    claims = []
    recorded = pipeline.state.get("sources", {}).get("orb", {}).get(STATE_KEY)
    if recorded and recorded.get("customers"):
        claims.append((f"recorded from {recorded['base_url']}", list(recorded["customers"])))
    held = customers_held(pipeline)
    if held:
        claims.append(("in its customers table", held))
    return claims


def customers_held(pipeline: dlt.Pipeline) -> list[str]:
    """The oldest live customers the destination holds; none if it holds no customers table."""
    lake = read_open_table(pipeline, "customers", ["id", "created_at", "deleted_at"])
    if lake is not None:
        return oldest(row for row in lake.to_pylist() if row["deleted_at"] is None)
    with pipeline.sql_client() as sql:
        if not sql.has_dataset():
            return []
        table = sql.make_qualified_table_name("customers")
        try:
            rows = sql.execute_sql(
                f"SELECT id FROM {table} WHERE deleted_at IS NULL"
                f" ORDER BY created_at, id LIMIT {ANCHORS}"
            )
        except (DatabaseUndefinedRelation, DestinationUndefinedEntity):
            return []
    return [str(row[0]) for row in rows or []]


def check_account(pipeline: dlt.Pipeline, client: OrbClient, full_refresh: bool) -> bool:
    """True if the dataset holds another account and `full_refresh` asks to replace it.

    Raises `AnotherAccount` when it holds another account and `full_refresh` is off. A state
    and dataset with no record (a first run, an older version's state) are adopted.
    """
    known: dict[str, bool] = {}

    def exists(customer_id: str) -> bool:
        if customer_id not in known:
            try:
                client.get(f"/customers/{customer_id}")
                known[customer_id] = True
            except OrbNotFound:
                known[customer_id] = False
        return known[customer_id]

    for where, customers in recorded_claims(pipeline):
        if any(exists(customer_id) for customer_id in customers):
            continue
        if full_refresh:
            logger.warning("replacing %s: it held another Orb account", pipeline.dataset_name)
            return True
        raise AnotherAccount(
            f"Dataset {pipeline.dataset_name} holds another Orb account (customers {where}"
            " not found with this key). Use --dataset-name to load this account apart,"
            " or --full-refresh to replace it."
        )
    return False
