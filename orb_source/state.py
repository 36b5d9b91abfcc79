"""The state the source keeps between runs, typed: each key is named once, here.

dlt commits this state with the data of a successful extract and restores it from the
destination (`dlt pipeline ... sync`). A renamed key would read as missing: cursors would start
over and deletion detection would stop, silently. So every key is declared below, and a test
loads state in the format written by earlier releases.

- `ListingState`: one listing's state, held by its table's dlt resource state, so that
  `dlt pipeline ... drop <table>` resets it.
- `Listings`: what each listing read completely this run (`record_listing`), in the source
  state, read by the deletion sweep after the load (`pipeline_listings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypedDict, cast

SOURCE = "orb"
"""The source's name, under which dlt keeps its state."""


class ListingState(TypedDict, total=False):
    """One listing's resource state. Times are ISO 8601 strings, on Orb's clock where known."""

    cursor: str | None
    """Where the next watermark listing starts (minus the cursor's overlap)."""
    last_full_sync: str
    """When the listing was last read whole: the periodic full refresh counts from it."""
    open_ids: list[str]
    """Lifecycle: objects still open after the run, fetched by id once they leave the open set.
    Open parents: the parents (subscriptions) open after the run, likewise."""
    refetch_cursor: str | None
    """Lifecycle: where the listing of newer objects pointing at older ones resumes."""
    cursors: dict[str, str]
    """Per-customer watermark: each customer's cursor."""
    open_rows: dict[str, dict[str, str]]
    """Per-customer watermark: each customer's rows still open (id -> cursor value)."""
    activity_since: str
    """On activity: when the customers' activity feeds were last checked."""
    open_objects: dict[str, list[str]]
    """On activity: each customer's objects that change without an activity entry."""
    awaiting: dict[str, list[str]]
    """On activity: each open object's awaited objects (`Activity.awaits`) that its customer
    had open when it was first seen open, by id."""
    feed_listed: dict[str, str]
    """On activity: customers whose feed was last read in a listing shared with the feed's
    table, and when that listing began; the others' feeds were checked at `activity_since`."""
    open_customers: list[str]
    """Written by earlier releases instead of `open_objects`; removed when read."""
    listing_state_of: str
    """On a child table's resource: the table whose resource holds the shared listing state."""
    read_to: str
    """Restated series of the account: where the last read ended."""
    subscriptions: dict[str, SeriesRead]
    """Restated series per subscription: the subscriptions still followed, by id."""
    backfills_checked: str
    """Restated series: when event backfills were last looked at; the timeframes of those
    reflected or reverted since are read again."""


class SeriesRead(TypedDict, total=False):
    """One subscription's series, as followed between runs (`series.py`)."""

    customer_id: str
    timezone: str
    """The customer's: Orb cuts daily windows at its local midnight."""
    start_date: str
    end_date: str | None
    read_to: str
    """Where the last read ended; the next starts a restatement window before it."""


class Listing(TypedDict, total=False):
    """A listing read completely at `at`; with `column`, only rows whose `column` is one of
    `values` would have been read."""

    at: str
    column: str
    values: list[Any]


class ListingRecord(TypedDict, total=False):
    complete: Listing
    partial: Listing


Listings = dict[str, ListingRecord]
"""Table -> what its listing read completely this run."""


def listings_of(source_state: dict[str, Any]) -> Listings:
    """The run's listings in the source state, created when missing."""
    return cast(Listings, source_state.setdefault("listings", {}))


def record_listing(
    listings: Listings, table: str, at: datetime, where: Mapping[str, Any] | None = None
) -> None:
    """Note that `table` was listed completely (or completely within `where`) at `at`."""
    entry = listings.setdefault(table, {})
    listing = cast(Listing, {"at": at.isoformat(), **(where or {})})
    if where is None:
        entry["complete"] = listing
    else:
        entry["partial"] = listing


def pipeline_listings(pipeline_state: Mapping[str, Any]) -> Listings:
    """The listings of the last extract in a pipeline's state (`dlt.Pipeline.state`)."""
    return cast(Listings, pipeline_state.get("sources", {}).get(SOURCE, {}).get("listings", {}))
