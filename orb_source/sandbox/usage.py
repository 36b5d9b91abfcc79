"""Usage, costs and event volume behind the invoices: the events that add up to each line.

The sandbox stores no events; it derives them, deterministically, from the invoice lines and
the account's usage log, so the analytics endpoints always agree with the invoices.

- Events. A usage line's quantity counts its events, one per unit. The quantity a line had
  when it was made (its opening usage) is spread over the days of its billing period up to
  that moment (the whole period for a line made after the period ended). Each later increment
  (late-arriving events, `UsageLog.late`) is spread over the customer's local day of its
  arrival and the three days before (weights 4:3:2:1), so days already served grow. Events
  fall only in whole hours within the period, the subscription's life and before their
  arrival. An arrival with no such hour goes to the period's first day when the period had
  not started yet (a draft opened ahead of its period), else to the last day with hours; a
  period wholly outside the subscription's life has no events.
- Days are the customer's local days (its `timezone`), cut at billing period boundaries and
  the subscription's start and end: "slots". A slot's events fall on its whole UTC hours by a
  daily profile (busier in working hours), each event stamped on its hour.
- Metric usage. A subscription's usage of a billable metric in a billing period is the events
  of the first usage line on that period's invoices that bills the metric (failing that, of
  the first such line deleted from a draft: deleting a line loses no usage), for each metric
  of the subscription's usage prices. Where a subscription has two usage prices on one metric
  (the plan with every price model) or an invoice repeats a price, the other lines keep their
  own events and quantities: they count in costs, not in usage or event volume.
- Groups. Every metric's events carry a `region` property from a small fixed set per metric;
  each slot's events go to the regions in turn, in time order.
- Fractional quantities (readings such as GB-months) are one event per reading: a fractional
  arrival is one reading per day, doubles adding up exactly to the quantity. Every
  subscription line the generator makes has a whole quantity.
- Costs. A line's cost so far at a moment is its price and adjustments applied to its events
  before then (`billing.priced`), zero until its period begins; a line that is not usage
  (fixed fees, composite prices) costs its whole amount from its period's first day.
"""

from __future__ import annotations

import itertools
import math
import operator
import random
import weakref
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from orb_source.sandbox.account import Account, Obj, double
from orb_source.sandbox.billing import ZERO, Quantity, priced
from orb_source.sandbox.generator import current_period

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
HOUR_US = 3_600_000_000
GROUP_KEY = "region"
"""The event property every metric's events carry."""
REGIONS = ("us", "eu", "apac")
PROFILE = (2, 1, 1, 1, 1, 2, 4, 6, 9, 11, 12, 12, 11, 12, 12, 11, 10, 9, 7, 6, 5, 4, 3, 2)
"""Relative number of events in each local hour of the day."""
CUMULATIVE = tuple(itertools.accumulate(PROFILE * 3, initial=0))
LATE_DAYS = (4, 3, 2, 1)
"""Weights of a late arrival's events by local day: its own day, then 1, 2 and 3 days back."""
NO_MORE = {"has_more": False, "next_cursor": None}


# Time: UTC hours since the epoch, and the customer's local days ---------------------------------


def hour_floor(moment: datetime) -> int:
    """The UTC hour (since the epoch) that contains `moment`."""
    return ((moment - EPOCH) // MICROSECOND) // HOUR_US


def hour_ceil(moment: datetime) -> int:
    """The first UTC hour starting at or after `moment`: events before `moment` are stamped on
    the hours before it."""
    return -(-((moment - EPOCH) // MICROSECOND) // HOUR_US)


def at_hour(hour: int) -> datetime:
    return EPOCH + timedelta(hours=hour)


@cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=1 << 16)
def midnight(name: str, day: int) -> int:
    """The UTC hour of local midnight starting `day` (a date ordinal) in time zone `name`.

    The sandbox's time zones are whole hours off UTC, so local midnights fall on UTC hours."""
    local = date.fromordinal(day)
    return hour_floor(datetime(local.year, local.month, local.day, tzinfo=zone(name)))


def local_day(name: str, hour: int) -> int:
    """The ordinal of the local date that UTC hour `hour` falls on."""
    return at_hour(hour).astimezone(zone(name)).date().toordinal()


def day_windows(
    name: str, start: datetime, end: datetime, cuts: Sequence[datetime] = ()
) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at the local midnights of time zone `name`, and at `cuts`."""
    points = {start, end, *(c for c in cuts if start < c < end)}
    day = local_day(name, hour_floor(start))
    while (cut := at_hour(midnight(name, day + 1))) < end:
        if cut > start:
            points.add(cut)
        day += 1
    ordered = sorted(points)
    return list(itertools.pairwise(ordered))


class Slot(NamedTuple):
    """Part of one local day within a span: UTC hours [start, end)."""

    start: int
    end: int
    day: int
    """Ordinal of the local date."""
    offset: int
    """Hours from the local midnight to `start`."""


@lru_cache(maxsize=1 << 14)
def slots(name: str, start: int, end: int) -> tuple[Slot, ...]:
    """UTC hours [start, end) cut at the local midnights of time zone `name`."""
    cut: list[Slot] = []
    day, hour = local_day(name, start), start
    while hour < end:
        following = min(midnight(name, day + 1), end)
        cut.append(Slot(hour, following, day, hour - midnight(name, day)))
        hour, day = following, day + 1
    return tuple(cut)


# Splitting quantities ----------------------------------------------------------------------------


def is_whole(quantity: Quantity | float) -> bool:
    return isinstance(quantity, int) or quantity == int(quantity)


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split in proportion to `weights`, in whole units adding up to it exactly: each
    share is the rounded-down cumulative proportion at its end minus that at its start."""
    whole = sum(weights)
    marks = [total * w // whole for w in itertools.accumulate(weights, initial=0)]
    return [b - a for a, b in itertools.pairwise(marks)]


def readings(total: float, weights: Sequence[int]) -> list[float]:
    """`total` as one reading per weight, in proportion to the weights: each reading in
    hundredths but the last, which makes their running sum as doubles exactly `total`."""
    whole = sum(weights)
    values = [math.floor(total * w / whole * 100) / 100 for w in weights[:-1]]
    running = 0.0
    for value in values:
        running += value
    last = total - running
    for _ in range(64):
        error = running + last - total
        if error == 0:
            break
        last = math.nextafter(last, -math.inf if error > 0 else math.inf)
    return [*values, last]


def events_in(share: int, offset: int, hours: int, upto: int) -> int:
    """How many of `share` events spread over `hours` hours (from local hour `offset`) fall
    in the first `upto` of them: the daily profile's cumulative share, rounded down."""
    if upto <= 0:
        return 0
    if upto >= hours:
        return share
    base = CUMULATIVE[offset]
    return share * (CUMULATIVE[offset + upto] - base) // (CUMULATIVE[offset + hours] - base)


@lru_cache(maxsize=1 << 16)
def hourly(share: int, offset: int, hours: int) -> tuple[int, ...]:
    """Events of each of the `hours` hours that `share` events spread over."""
    base, span = CUMULATIVE[offset], CUMULATIVE[offset + hours] - CUMULATIVE[offset]
    marks = [share * (CUMULATIVE[offset + j] - base) // span for j in range(hours + 1)]
    return tuple(b - a for a, b in itertools.pairwise(marks))


@lru_cache(maxsize=4096)
def peak(offset: int, hours: int) -> int:
    """The busiest of `hours` hours from local hour `offset`: where a day's reading falls."""
    return max(range(hours), key=lambda j: (PROFILE[(offset + j) % 24], -j))


@lru_cache(maxsize=4096)
def regions(metric_id: str) -> tuple[tuple[str, int], ...]:
    """The `region` values a metric's events carry, with their relative weights."""
    rng = random.Random(f"regions/{metric_id}")
    chosen = sorted(rng.sample(REGIONS, rng.choice((2, 3))))
    return tuple((value, rng.randint(1, 6)) for value in chosen)


# One line's events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineKey:
    """Everything the events of one usage line depend on."""

    line_id: str
    quantity: Quantity
    span: tuple[int, int]
    """UTC hours of its billing period within the subscription's life."""
    zone: str
    opened: int | None
    """The hour its opening usage reached (exclusive): when the line was made, None if after
    its period."""
    late: tuple[tuple[int, Quantity], ...]
    """(hour reached, exclusive; quantity) of each increment since."""


@dataclass(frozen=True)
class Series:
    """A line's events, slot by slot: each slot's parts are (events or reading, hours from the
    slot start they spread over), one per arrival that reached the slot."""

    slots: tuple[Slot, ...]
    ends: tuple[int, ...]
    parts: tuple[tuple[tuple[Any, int], ...], ...]
    totals: tuple[Any, ...]
    before: tuple[Any, ...]
    """Quantity of the slots before each slot (one more entry: the whole line)."""
    fractional: bool

    def within(self, index: int, low: int, high: int) -> Any:
        """Quantity of slot `index`'s events stamped in UTC hours [low, high)."""
        slot = self.slots[index]
        first, last = low - slot.start, high - slot.start
        if self.fractional:
            return sum(
                share
                for share, hours in self.parts[index]
                if first <= peak(slot.offset, hours) < last
            )
        return sum(
            events_in(share, slot.offset, hours, last) - events_in(share, slot.offset, hours, first)
            for share, hours in self.parts[index]
        )

    def tally(self, edges: Sequence[int], into: list[Any]) -> None:
        """Add the quantity in each window of hours [edges[w], edges[w + 1]) to into[w]."""
        for index, slot in enumerate(self.slots):
            if slot.end <= edges[0] or slot.start >= edges[-1]:
                continue
            window = max(bisect_right(edges, slot.start) - 1, 0)
            while window < len(edges) - 1 and edges[window] < slot.end:
                low, high = edges[window], edges[window + 1]
                if low <= slot.start and slot.end <= high:
                    into[window] += self.totals[index]
                else:
                    into[window] += self.within(index, low, high)
                window += 1

    def tally_groups(
        self, edges: Sequence[int], weights: Sequence[int], into: list[list[Any]]
    ) -> None:
        """Like `tally`, per group: into[g][w]. A slot's events go to the groups in turn, in
        time order (whole blocks by weight); a reading goes to one group, turning by day."""
        for index, slot in enumerate(self.slots):
            if slot.end <= edges[0] or slot.start >= edges[-1]:
                continue
            window = max(bisect_right(edges, slot.start) - 1, 0)
            while window < len(edges) - 1 and edges[window] < slot.end:
                first, last = edges[window] - slot.start, edges[window + 1] - slot.start
                for share, hours in self.parts[index]:
                    if self.fractional:
                        if first <= peak(slot.offset, hours) < last:
                            into[slot.day % len(weights)][window] += share
                        continue
                    low = events_in(share, slot.offset, hours, first)
                    high = events_in(share, slot.offset, hours, last)
                    if low == high:
                        continue
                    bound = 0
                    for group, size in enumerate(apportion(share, weights)):
                        overlap = min(high, bound + size) - max(low, bound)
                        if overlap > 0:
                            into[group][window] += overlap
                        bound += size
                window += 1

    def until(self, hour: int) -> Any:
        """Quantity of the events stamped before UTC hour `hour`."""
        index = bisect_right(self.ends, hour)
        total = self.before[index]
        if index < len(self.slots) and self.slots[index].start < hour:
            total += self.within(index, self.slots[index].start, hour)
        return total

    def hourly_events(self) -> tuple[int, list[int]]:
        """The first UTC hour of the line's span and its number of events in each hour on."""
        if not self.slots:
            return 0, []
        first = self.slots[0].start
        counts = [0] * (self.slots[-1].end - first)
        for slot, parts in zip(self.slots, self.parts, strict=True):
            at = slot.start - first
            for share, hours in parts:
                if self.fractional:
                    counts[at + peak(slot.offset, hours)] += 1
                else:
                    counts[at : at + hours] = map(
                        operator.add, counts[at : at + hours], hourly(share, slot.offset, hours)
                    )
        return first, counts


@lru_cache(maxsize=1 << 15)
def series(key: LineKey) -> Series:
    """The events of a usage line, spread as the module docstring says (pure, cached)."""
    start, end = key.span
    cut = slots(key.zone, start, end) if start < end else []
    parts: list[list[tuple[Any, int]]] = [[] for _ in cut]
    late_total = sum((quantity for _, quantity in key.late), 0)
    arrivals: list[tuple[int | None, Any, int | None]] = [
        (key.opened, key.quantity - late_total, None)
    ]
    arrivals += [(hour, quantity, local_day(key.zone, hour)) for hour, quantity in key.late]
    fractional = not all(is_whole(quantity) for _, quantity, _ in arrivals)
    for number, (reached, amount, today) in enumerate(arrivals):
        if not amount or not cut:
            continue
        rng = random.Random(f"{key.line_id}/{number}/{reached}")
        chosen: list[tuple[int, int]] = []
        weights: list[int] = []
        for index, slot in enumerate(cut):
            top = slot.end if reached is None else min(slot.end, reached)
            if top <= slot.start:
                break
            if today is not None and not 0 <= today - slot.day < len(LATE_DAYS):
                continue
            weekend = (slot.day - 1) % 7 > 4  # ordinal 1 is a Monday
            factor = (0.6 + 0.8 * rng.random()) * (0.7 if weekend else 1)
            if today is not None:
                factor *= LATE_DAYS[today - slot.day]
            chosen.append((index, top - slot.start))
            weights.append(max(1, round(factor * (top - slot.start) * 1000)))
        if not chosen:
            if reached is not None and reached <= start:
                chosen = [(0, cut[0].end - cut[0].start)]
            else:
                limit = end if reached is None else min(end, reached)
                index = max(i for i, slot in enumerate(cut) if slot.start < limit)
                chosen = [(index, min(cut[index].end, limit) - cut[index].start)]
            weights = [1]
        shares: Sequence[Any] = (
            readings(float(amount), weights) if fractional else apportion(int(amount), weights)
        )
        for (index, hours), share in zip(chosen, shares, strict=True):
            if share:
                parts[index].append((share, hours))
    zero: Any = 0.0 if fractional else 0
    totals = tuple(
        slot_parts[0][0] if len(slot_parts) == 1 else sum((s for s, _ in slot_parts), zero)
        for slot_parts in parts
    )
    before = tuple(itertools.accumulate(totals, initial=zero))
    return Series(
        tuple(cut),
        tuple(slot.end for slot in cut),
        tuple(tuple(p) for p in parts),
        totals,
        before,
        fractional,
    )


# The account's usage ----------------------------------------------------------------------------


def usage_metrics(sub: Obj) -> list[str]:
    """Ids of the billable metrics of the subscription's usage prices, sorted."""
    return sorted(
        {
            interval["price"]["billable_metric"]["id"]
            for interval in sub["price_intervals"]
            if is_usage(interval["price"])
        }
    )


def is_usage(price: Any) -> bool:
    return price["price_type"] == "usage_price" and price["billable_metric"] is not None


def billing_period(sub: Obj) -> tuple[datetime, datetime]:
    """The subscription's current billing period; for an ended one its last, for an upcoming
    one its first."""
    start, end = sub["current_billing_period_start_date"], sub["current_billing_period_end_date"]
    if start is not None and end is not None:
        return start, end
    if sub["end_date"] is not None and sub["end_date"] > sub["start_date"]:
        return current_period(sub["start_date"], sub["end_date"] - MICROSECOND)
    return current_period(sub["start_date"], sub["start_date"])


@dataclass(eq=False)
class UsageBook:
    """Derived usage of one account, with caches that refresh when the account changes."""

    account: Account
    _revision: int = -1
    _invoices: dict[str, list[Obj]] = field(default_factory=dict)
    _volume_stamp: tuple[Any, ...] = ()
    _current: set[LineKey] = field(default_factory=set)
    _counted: set[LineKey] = field(default_factory=set)
    _owners: dict[LineKey, str] = field(default_factory=dict)
    _volume: list[int] = field(default_factory=list)
    _base: int = 0

    def invoices(self, subscription_id: str) -> list[Obj]:
        """The subscription's invoices, by billing period, then as created."""
        if self._revision != self.account.revision:
            index: dict[str, list[Obj]] = {}
            for invoice in self.account.invoices.values():
                if invoice["subscription"] is not None and invoice["line_items"]:
                    index.setdefault(invoice["subscription"]["id"], []).append(invoice)
            for invoices in index.values():
                invoices.sort(
                    key=lambda i: (i["line_items"][0]["start_date"], i["created_at"], i["id"])
                )
            self._invoices, self._revision = index, self.account.revision
        return self._invoices.get(subscription_id, [])

    def lines(self, sub: Obj) -> Iterator[Obj]:
        for invoice in self.invoices(sub["id"]):
            yield from invoice["line_items"]

    def key(self, sub: Obj, line: Obj) -> LineKey:
        log = self.account.usage_log
        start = max(line["start_date"], sub["start_date"])
        end = (
            line["end_date"] if sub["end_date"] is None else min(line["end_date"], sub["end_date"])
        )
        opened = log.opened.get(line["id"])
        return LineKey(
            line["id"],
            line["quantity"],
            (hour_ceil(start), hour_floor(end)),
            sub["customer"]["timezone"],
            None if opened is None else hour_floor(opened),
            tuple((hour_floor(at), quantity) for at, quantity in log.late.get(line["id"], ())),
        )

    def metric_lines(self, sub: Obj) -> dict[str, list[Obj]]:
        """Per billable metric of the subscription, the line whose events are its usage in each
        billing period: the first usage line billing the metric on that period's invoices, or
        failing that the first such line deleted from them."""
        found: dict[str, list[Obj]] = {metric: [] for metric in usage_metrics(sub)}
        seen: set[tuple[str, datetime]] = set()
        dropped = self.account.usage_log.dropped.get(sub["id"], [])
        for line in itertools.chain(self.lines(sub), dropped):
            if not is_usage(line["price"]):
                continue
            metric = line["price"]["billable_metric"]["id"]
            if metric in found and (metric, line["start_date"]) not in seen:
                seen.add((metric, line["start_date"]))
                found[metric].append(line)
        return found

    def windows(
        self,
        sub: Obj,
        start: datetime,
        end: datetime,
        daily: bool,
        cuts: Sequence[datetime] = (),
    ) -> list[tuple[datetime, datetime]]:
        """The timeframe within the subscription's life and before now, in local days."""
        low = max(start, sub["start_date"])
        high = min(end, self.account.now)
        if sub["end_date"] is not None:
            high = min(high, sub["end_date"])
        if low >= high:
            return []
        if not daily:
            return [(low, high)]
        return day_windows(sub["customer"]["timezone"], low, high, cuts)

    # Usage

    def usage(
        self,
        sub: Obj,
        start: datetime,
        end: datetime,
        *,
        daily: bool,
        cumulative: bool,
        metric_id: str | None = None,
        group_by: str | None = None,
    ) -> Obj:
        """The `GET /subscriptions/{id}/usage` answer (see `subscription_usage`)."""
        view_mode = "cumulative" if cumulative else "periodic"
        windows = self.windows(sub, start, end, daily)
        edges = [hour_ceil(a) for a, _ in windows] + [hour_ceil(b) for _, b in windows[-1:]]
        lines = self.metric_lines(sub)
        names = self.account.billable_metrics
        if group_by is not None:
            if metric_id not in lines or group_by != GROUP_KEY:
                return {"data": [], "pagination_metadata": dict(NO_MORE)}
            values = regions(metric_id)
            grouped: list[list[Any]] = [[0] * len(windows) for _ in values]
            if windows:
                for line in lines[metric_id]:
                    key = self.key(sub, line)
                    series(key).tally_groups(edges, [w for _, w in values], grouped)
            data = [
                {
                    "billable_metric": self.metric_ref(metric_id, names),
                    "metric_group": {"property_key": GROUP_KEY, "property_value": value},
                    "usage": usage_points(windows, quantities, cumulative),
                    "view_mode": view_mode,
                }
                for (value, _), quantities in zip(values, grouped, strict=True)
                if any(quantities)
            ]
            return {"data": data, "pagination_metadata": dict(NO_MORE)}
        data = []
        for metric, metric_lines in lines.items():
            quantities: list[Any] = [0] * len(windows)
            if windows:
                for line in metric_lines:
                    series(self.key(sub, line)).tally(edges, quantities)
            data.append(
                {
                    "billable_metric": self.metric_ref(metric, names),
                    "usage": usage_points(windows, quantities, cumulative),
                    "view_mode": view_mode,
                }
            )
        return {"data": data}

    @staticmethod
    def metric_ref(metric_id: str, metrics: dict[str, Obj]) -> Obj:
        metric = metrics.get(metric_id)
        return {"id": metric_id, "name": metric["name"] if metric else metric_id}

    # Costs

    def costs(self, sub: Obj, start: datetime, end: datetime, *, cumulative: bool) -> Obj:
        """The `GET /subscriptions/{id}/costs` answer (see `subscription_costs`)."""
        by_period: dict[tuple[datetime, datetime], list[Obj]] = {}
        for line in self.lines(sub):
            by_period.setdefault((line["start_date"], line["end_date"]), []).append(line)
        periods = sorted(by_period)
        cuts = [moment for period in periods for moment in period]
        windows = self.windows(sub, start, end, True, cuts)
        spent: dict[tuple[str, datetime], tuple[Any, Decimal, Decimal]] = {}

        def so_far(line: Obj, moment: datetime) -> tuple[Any, Decimal, Decimal]:
            cached = spent.get((line["id"], moment))
            if cached is None:
                cached = spent[(line["id"], moment)] = self.spent(sub, line, moment)
            return cached

        data = []
        for low, high in windows:
            index = bisect_right(periods, (low, datetime.max.replace(tzinfo=UTC))) - 1
            period = periods[index] if index >= 0 and low < periods[index][1] else None
            per_price: dict[str, list[Any]] = {}
            for line in by_period.get(period, []) if period else []:
                quantity, subtotal, total = so_far(line, high)
                if not cumulative:
                    was = so_far(line, low)
                    quantity, subtotal, total = (
                        quantity - was[0],
                        subtotal - was[1],
                        total - was[2],
                    )
                entry = per_price.setdefault(line["price"]["id"], [line["price"], 0, ZERO, ZERO])
                entry[1] += quantity
                entry[2] += subtotal
                entry[3] += total
            costs = [
                {
                    "price": price,
                    "price_id": price_id,
                    "subtotal": subtotal,
                    "total": total,
                    "quantity": double(float(quantity)),
                }
                for price_id, (price, quantity, subtotal, total) in per_price.items()
            ]
            data.append(
                {
                    "per_price_costs": costs,
                    "subtotal": sum((c["subtotal"] for c in costs), ZERO),
                    "total": sum((c["total"] for c in costs), ZERO),
                    "timeframe_start": low,
                    "timeframe_end": high,
                }
            )
        return {"data": data}

    def spent(self, sub: Obj, line: Obj, moment: datetime) -> tuple[Any, Decimal, Decimal]:
        """A line's quantity, subtotal and adjusted amount accrued before `moment`."""
        if moment <= max(line["start_date"], sub["start_date"]):
            return 0, ZERO, ZERO
        if not is_usage(line["price"]):
            return line["quantity"], line["subtotal"], line["amount"]
        quantity = series(self.key(sub, line)).until(hour_ceil(moment))
        return (quantity, *priced(line, quantity))

    # Event volume

    def volume(self, start: int, end: int) -> list[int]:
        """Events stamped in each UTC hour [start, end) over every subscription: the events of
        each metric's usage, counted by their timestamp, only those before now."""
        self.refresh_volume(start, end)
        now, base, counts = hour_ceil(self.account.now), self._base, self._volume
        return [
            counts[hour - base] if hour < now and 0 <= hour - base < len(counts) else 0
            for hour in range(start, end)
        ]

    def refresh_volume(self, start: int, end: int) -> None:
        """Bring the hourly counts of UTC hours [start, end) up to date: drop the events of
        lines changed or gone since, add those of the lines reaching these hours not counted
        yet (so a recent timeframe derives only the lines of recent periods). Events once
        ingested stay counted when their customer is deleted, with its subscriptions."""
        log = self.account.usage_log
        stamp = (self.account.revision, self.account.now, log.version)
        if stamp != self._volume_stamp:
            owners = {
                self.key(sub, line): sub["id"]
                for sub in self.account.subscriptions.values()
                for lines in self.metric_lines(sub).values()
                for line in lines
            }
            self._owners.update(owners)
            deleted = self.account.gone("subscriptions")
            self._current = set(owners) | {
                key for key in self._counted if self._owners.get(key) in deleted
            }
            self._volume_stamp = stamp
            for key in self._counted - self._current:
                self.count(*series(key).hourly_events(), -1)
            self._counted &= self._current
        for key in self._current - self._counted:
            if key.span[0] < end and start < key.span[1]:
                self.count(*series(key).hourly_events(), 1)
                self._counted.add(key)

    def count(self, first: int, counts: list[int], sign: int) -> None:
        """Add (sign 1) or take away (-1) events per hour from UTC hour `first` on."""
        if not counts:
            return
        if not self._volume:
            self._base = first
        if first < self._base:
            self._volume[:0] = [0] * (self._base - first)
            self._base = first
        offset = first - self._base
        if offset + len(counts) > len(self._volume):
            self._volume.extend([0] * (offset + len(counts) - len(self._volume)))
        stop = offset + len(counts)
        if sign > 0:
            self._volume[offset:stop] = map(operator.add, self._volume[offset:stop], counts)
        else:
            self._volume[offset:stop] = map(operator.sub, self._volume[offset:stop], counts)


def usage_points(
    windows: list[tuple[datetime, datetime]], quantities: list[Any], cumulative: bool
) -> list[Obj]:
    if cumulative:
        quantities = list(itertools.accumulate(quantities))
    return [
        {"quantity": double(float(quantity)), "timeframe_start": low, "timeframe_end": high}
        for (low, high), quantity in zip(windows, quantities, strict=True)
    ]


_BOOKS: weakref.WeakKeyDictionary[Account, UsageBook] = weakref.WeakKeyDictionary()


def book(account: Account) -> UsageBook:
    """The account's usage book (one per account, caches included)."""
    found = _BOOKS.get(account)
    if found is None:
        found = _BOOKS[account] = UsageBook(account)
    return found


# What the endpoints answer, for callers computing expected values --------------------------------


def subscription_usage(
    account: Account,
    subscription_id: str,
    timeframe_start: datetime | None = None,
    timeframe_end: datetime | None = None,
    *,
    granularity: str | None = "day",
    view_mode: str = "periodic",
    billable_metric_id: str | None = None,
    group_by: str | None = None,
) -> Obj:
    """What `GET /subscriptions/{id}/usage` answers (before JSON encoding), parameters checked
    by the API: the subscription's current billing period without a timeframe; windows of
    the customer's local days (`granularity="day"`; not cut where a billing period starts) or
    one window, within the subscription's life and before now; one entry per billable metric
    of its usage prices, by metric id; grouped by `region`, one entry per region with usage in
    the timeframe, and none for any other key."""
    sub = account.subscriptions[subscription_id]
    start, end = (
        billing_period(sub)
        if timeframe_start is None or timeframe_end is None
        else (timeframe_start, timeframe_end)
    )
    return book(account).usage(
        sub,
        start,
        end,
        daily=granularity == "day",
        cumulative=view_mode == "cumulative",
        metric_id=billable_metric_id,
        group_by=group_by,
    )


def subscription_costs(
    account: Account,
    subscription_id: str,
    timeframe_start: datetime | None = None,
    timeframe_end: datetime | None = None,
    *,
    view_mode: str = "cumulative",
) -> Obj:
    """What `GET /subscriptions/{id}/costs` answers (before JSON encoding).

    Windows are the customer's local days within the timeframe (default: the current billing
    period), the subscription's life and before now, also cut where a billing period starts:
    a local day that spans two billing periods (a customer west or east of UTC, whose periods
    start at midnight UTC) is two windows, so each window belongs to one period. Cumulative
    costs run from the start of the window's billing period; periodic costs are their
    day-to-day differences, which over a billing period add up to its invoice lines."""
    sub = account.subscriptions[subscription_id]
    start, end = (
        billing_period(sub)
        if timeframe_start is None or timeframe_end is None
        else (timeframe_start, timeframe_end)
    )
    return book(account).costs(sub, start, end, cumulative=view_mode == "cumulative")


def event_volume(account: Account, timeframe_start: datetime, timeframe_end: datetime) -> list[Obj]:
    """Every hour of `GET /events/volume` from the hour `timeframe_start` falls in to the one
    `timeframe_end` falls in (exclusive when on the hour), zero counts included."""
    first, last = hour_floor(timeframe_start), hour_ceil(timeframe_end)
    counts = book(account).volume(first, last) if first < last else []
    return [
        {"count": count, "timeframe_start": at_hour(hour), "timeframe_end": at_hour(hour + 1)}
        for hour, count in zip(range(first, last), counts, strict=True)
    ]


def daily_usage(
    account: Account, subscription_id: str, metric_id: str, start: datetime, end: datetime
) -> list[tuple[datetime, datetime, Any]]:
    """(window start, window end, quantity) of a subscription's usage of one metric per local
    day of its customer, within [start, end), its life and before now."""
    answer = subscription_usage(account, subscription_id, start, end, granularity="day")
    entry = next((e for e in answer["data"] if e["billable_metric"]["id"] == metric_id), None)
    if entry is None:
        return []
    return [(u["timeframe_start"], u["timeframe_end"], u["quantity"]) for u in entry["usage"]]
