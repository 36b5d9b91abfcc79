"""The precision policy: how Orb's numbers become DECIMAL values, in one place.

Orb sends money as decimal strings with as many places as a price needs ("0.0000000375") and
quantities, ledger amounts, balances and percentages as JSON doubles with a double's full
precision (542.6099999999999). `wire.py` parses every JSON number straight from its text, so a
double is already the shortest decimal that round-trips it, never its binary expansion, and a
decimal string is kept as Orb wrote it.

Every money column is DECIMAL(38, 18): 18 places hold any decimal string Orb documents and
every double down to 1e-18; 20 integer digits hold any amount. A value that still does not fit
never fails a run. More places are rounded half-even to 18; more integer digits keep the value,
unchanged, as text in a `{column}__v_text` column beside it, the way dlt stores a value of
another type. Either way one warning per run and column names `table.column`, how many values
and the largest difference. A number in a top-level field the schema does not declare yet (a
field Orb adds later) gets the same treatment at the scale dlt infers for it, 9. Rows of the
Arrow path and of dlt's dict path both pass through `fit_rows`, so both load the same values.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from functools import cache
from typing import Any

logger = logging.getLogger(__name__)

PRECISION = 38
SCALE = 18
"""Places after the point; BigQuery's BIGNUMERIC, Snowflake, Redshift and Databricks hold it."""

INFERRED_SCALE = 9
"""The scale dlt gives a number column the schema does not declare (a field Orb adds later)."""
_EXACT = Context(prec=1_000)
"""Wide enough that rounding and differences are exact for any number JSON can carry here."""

SHORT = min(SCALE, PRECISION - SCALE) + 1
"""A decimal string this short, without an exponent, fits DECIMAL(38, 18) whatever it holds:
at most 18 places after a point and 20 digits before it. Most of Orb's amounts are, and so
are most doubles written out in full."""

INTEGER_LIMIT = 10 ** (PRECISION - SCALE)
"""An integer strictly between minus this and this fits DECIMAL(38, 18)."""

TOO_LARGE = "__v_text"
"""Suffix of the text column that keeps a value with more integer digits than the column."""


@dataclass
class Fitted:
    """What the policy changed in one column during a run."""

    scale: int = SCALE
    rounded: int = 0
    largest_difference: Decimal = Decimal(0)
    kept_as_text: int = 0


@dataclass
class Fitting:
    """The changes of one table's rows over a run, reported once when the table is read."""

    columns: dict[str, Fitted] = field(default_factory=lambda: defaultdict(Fitted))

    def report(self) -> None:
        for column, fitted in sorted(self.columns.items()):
            if fitted.rounded:
                logger.warning(
                    "%s: %d value(s) with more than %d decimal places rounded half-even to %d"
                    " places (largest difference %s)",
                    column,
                    fitted.rounded,
                    fitted.scale,
                    fitted.scale,
                    format(fitted.largest_difference, "f"),
                )
            if fitted.kept_as_text:
                logger.warning(
                    "%s: %d value(s) with more than %d integer digits kept as text in %s%s",
                    column,
                    fitted.kept_as_text,
                    PRECISION - fitted.scale,
                    column,
                    TOO_LARGE,
                )


def fit_rows(table: str, rows: list[dict[str, Any]], fitting: Fitting) -> None:
    """Make every declared DECIMAL value of `table`'s rows, at any depth, and every number in a
    top-level field the schema does not declare, fit its column, in place. Values that fit,
    nearly all of them, are only looked at."""
    declared = declared_columns(table)
    tree = decimal_tree(table)
    shared: set[int] = set()
    for row in rows:
        _walk(row, tree, fitting, shared)
        if Decimal not in map(type, row.values()):
            continue
        new = [name for name, value in row.items() if type(value) is Decimal]
        for name in new:
            if name not in declared:
                _fit(row, name, f"{table}.{name}", fitting, INFERRED_SCALE)


def _walk(obj: dict[str, Any], tree: Tree, fitting: Fitting, shared: set[int]) -> None:
    """Fit the declared columns under `obj`. An embedded object with an id (a line item's
    price, shared by every line item of the page that carries it) is fitted once.

    A JSON number in a declared column becomes its exact decimal text, as Orb's money strings
    are: both paths cast text to the column's DECIMAL, and Arrow infers one type for a batch of
    texts where it rejects decimals of mixed precision."""
    for key, below in tree.items():
        value = obj.get(key)
        if value is None:
            continue
        if type(below) is str:
            kind = type(value)
            if kind is str and len(value) <= SHORT and "e" not in value and "E" not in value:
                continue
            if kind is int and -INTEGER_LIMIT < value < INTEGER_LIMIT:
                obj[key] = str(value)
                continue
            if kind is Decimal and len(text := format(value, "f")) <= SHORT:
                obj[key] = text
                continue
            _fit(obj, key, below, fitting, SCALE)
            if type(obj[key]) in (Decimal, int):
                obj[key] = format(obj[key], "f") if type(obj[key]) is Decimal else str(obj[key])
        elif type(value) is dict:
            if "id" in value:
                if id(value) in shared:
                    continue
                shared.add(id(value))
            _walk(value, below, fitting, shared)
        elif type(value) is list:
            for item in value:
                if type(item) is dict:
                    _walk(item, below, fitting, shared)


def _fit(owner: dict[str, Any], leaf: str, column: str, fitting: Fitting, scale: int) -> None:
    value = owner.get(leaf)
    if value is None or isinstance(value, bool) or _fits(value, scale):
        return
    number = _number(value)
    if number is None:
        return
    fitted = fitting.columns[column]
    fitted.scale = scale
    if number.adjusted() >= PRECISION - scale:
        owner[leaf] = None
        owner[leaf + TOO_LARGE] = value if isinstance(value, str) else format(number, "f")
        fitted.kept_as_text += 1
        return
    rounded = to_scale(number, scale)
    owner[leaf] = format(rounded, "f") if isinstance(value, str) else rounded
    if rounded == number:
        return
    fitted.rounded += 1
    fitted.largest_difference = max(
        fitted.largest_difference, abs(_EXACT.subtract(number, rounded))
    )


def to_scale(number: Decimal, scale: int = SCALE) -> Decimal:
    """The number rounded half-even to `scale` places (exact when it has fewer places)."""
    return number.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_EVEN, context=_EXACT)


def _fits(value: Any, scale: int) -> bool:
    """True for a plain decimal string or number that fits DECIMAL(38, scale) as it is."""
    integer_digits = PRECISION - scale
    if isinstance(value, str):
        if "e" in value or "E" in value:
            return False
        point = value.find(".")
        places = len(value) - point - 1 if point >= 0 else 0
        digits = (point if point >= 0 else len(value)) - (value[:1] in ("-", "+"))
        return places <= scale and digits <= integer_digits
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        return (
            isinstance(exponent, int) and exponent >= -scale and value.adjusted() < integer_digits
        )
    if isinstance(value, int):
        return abs(value) < 10**integer_digits
    return True


def _number(value: Any) -> Decimal | None:
    """The exact decimal of a value, or None for what is not a finite number (left for the
    loader to store as the mismatched type it is)."""
    if isinstance(value, float):
        value = repr(value)
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return None
    return number if number.is_finite() else None


def objects_at(rows: list[dict[str, Any]], hops: tuple[str, ...]) -> list[dict[str, Any]]:
    """The objects of a nested table: the rows' arrays along `hops`, each a flattened name."""
    objects = rows
    for hop in hops:
        objects = [
            item
            for obj in objects
            for item in _array_at(obj, hop.split("__"))
            if type(item) is dict
        ]
    return objects


def _array_at(obj: Mapping[str, Any], path: list[str]) -> Iterator[Any]:
    value: Any = obj
    for part in path:
        if type(value) is not dict:
            return iter(())
        value = value.get(part)
    return iter(value) if type(value) is list else iter(())


@cache
def declared_columns(table: str) -> frozenset[str]:
    from .hints import table_columns

    return frozenset(table_columns(table))


Tree = dict[str, Any]
"""Orb's field names down to each declared DECIMAL column, whose `table.column` is the leaf;
arrays are walked through, so a child table's fields sit under its array's field."""


@cache
def decimal_tree(table: str) -> Tree:
    from .catalog import SHAPES

    shape = SHAPES[table]
    tree: Tree = {}
    for hops, nested in [((), shape), *shape.nested.items()]:
        to_table = [key for hop in hops for key in hop.split("__")]
        for name in nested.decimal:
            *parents, leaf = name.split("__")
            node = tree
            for key in (*to_table, *parents):
                node = node.setdefault(key, {})
            node[leaf] = f"{'__'.join((table, *hops))}.{name}"
    return tree
