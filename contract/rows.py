"""Row normalisation and event ids (SPEC §1, docs/readings.md).

The replay tool and the stream both call `normalise`, so a row from a CSV
file, a database or a live producer reaches the features in one shape. A row
that cannot be normalised raises `BadRow` with a reason: it becomes a dead
letter, never a feature.
"""
from __future__ import annotations

import hashlib
import math
import re
from typing import NamedTuple

import orjson

import datasets

from .tables import TableSpec
from .timeutil import BadTime, parse_ts_canonical

# Longest text value a row may carry, in characters (integer and boolean cells
# are measured without surrounding blanks). A longer cell is a broken file or
# feed (a stray quote that swallowed lines, binary junk), not data: it becomes
# a bad row, not a message that bloats state or exceeds a size limit.
MAX_VALUE_CHARS = 64 * 1024

_INT = re.compile(r"^[+-]?\d+$")
_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}


class BadRow(ValueError):
    """A row that cannot reach the features; the message is the reason."""


class Row(NamedTuple):
    key: str  # Kafka message key (routing key as text)
    ts: int | None  # event time in microseconds, None for reference tables
    eid: str  # de-duplication id
    values: dict  # normalised column values


def _oversized(column: str, text: str) -> BadRow:
    return BadRow(f"oversized value in column {column} ({len(text)} chars)")


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def to_int(value, column: str):
    """Integer cell within 64 bits: None stays None; '12', '12.0', '1e3' and 12.0 are 12."""
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise BadRow(f"wrong type in {column}: {_shown(value)}")
    if isinstance(value, int):
        return _int64(value, column)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return _int64(int(value), column)
        raise BadRow(f"wrong type in {column}: {_shown(value)}")
    if not isinstance(value, str):
        raise BadRow(f"wrong type in {column}: {type(value).__name__} where an integer is expected")
    text = value.strip()
    if _INT.match(text):
        try:
            return _int64(int(text), column)
        except ValueError:  # more digits than int() converts
            raise _not_an_integer(column, value, text) from None
    try:
        number = float(text)
    except ValueError:
        raise _not_an_integer(column, value, text) from None
    if math.isfinite(number) and number.is_integer():
        return _int64(int(number), column)
    raise _not_an_integer(column, value, text)


def _int64(number: int, column: str) -> int:
    if INT64_MIN <= number <= INT64_MAX:
        return number
    raise BadRow(f"integer beyond 64 bits in {column}")


def _shown(value) -> str:
    """A value as a reason shows it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _not_an_integer(column: str, value, text: str) -> BadRow:
    """Why a cell is no integer; its size is looked at only once it failed, to keep valid cells fast."""
    if len(text) > MAX_VALUE_CHARS:
        return _oversized(column, text)
    return BadRow(f"wrong type in {column}: {_shown(value)}")


def to_bool(value, column: str):
    if _blank(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if not isinstance(value, str):
        raise BadRow(f"wrong type in {column}: {type(value).__name__} where a boolean is expected")
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if len(text) > MAX_VALUE_CHARS:
        raise _oversized(column, text)
    raise BadRow(f"wrong type in {column}: {_shown(value)}")


# What normalise does to each column, decided once per (table, column names in order): the rows of
# one table nearly always come with the same columns, and deciding per cell cost a third of the time.
# Declared columns (contract.tables) must have their type; other columns are carried along only when
# they are JSON scalars (an object or array there is dropped: nothing reads it). Text columns the
# dataset says hold ids (Dataset.is_id_column) are lower-cased. The plan comes with the dataset's
# event-id rule (Dataset.event_id).
_DROP, _INT_CELL, _BOOL_CELL, _ID_CELL, _TEXT_CELL, _SCALAR_CELL, _EXTRA_CELL, _EXTRA_ID_CELL = range(8)
_PLANS: dict = {}
_SCALARS = (str, int, float, bool)

# Parsed event times by their text: rows share timestamps (hourly usage intervals, bursts of events).
_TIMES: dict = {}
_TIMES_MAX = 100_000


def _plan(spec: TableSpec, columns: tuple) -> tuple:
    dataset = datasets.get(spec.dataset)
    lowered = frozenset(column for column in columns if dataset.is_id_column(column))
    plan = []
    for column in columns:
        if not isinstance(column, str) or not column or column.startswith("Unnamed"):
            plan.append(_DROP)
        elif column in spec.int_cols:
            plan.append(_INT_CELL)
        elif column in spec.bool_cols:
            plan.append(_BOOL_CELL)
        elif column in spec.text_cols or column == spec.key or column == spec.time:
            plan.append(_ID_CELL if column in lowered else _TEXT_CELL)
        elif column in spec.scalar_cols:
            plan.append(_SCALAR_CELL)
        else:
            plan.append(_EXTRA_ID_CELL if column in lowered else _EXTRA_CELL)
    return tuple(plan), dataset.event_id


def _wrong_type(column: str, value, expected: str) -> BadRow:
    return BadRow(f"wrong type in {column}: {type(value).__name__} where {expected} is expected")


def _event_time(value) -> tuple[int, str]:
    if type(value) is not str:
        return parse_ts_canonical(value)
    parsed = _TIMES.get(value)
    if parsed is None:
        parsed = parse_ts_canonical(value)
        if len(_TIMES) >= _TIMES_MAX:
            _TIMES.clear()
        _TIMES[value] = parsed
    return parsed


def normalise(spec: TableSpec, raw: dict) -> Row:
    """Validate and normalise one source row of `spec`'s table (hot path: keep it lean)."""
    if not isinstance(raw, dict):
        raise BadRow(f"row is not an object: {type(raw).__name__}")
    shape = (spec.name, spec.dataset, tuple(raw))
    planned = _PLANS.get(shape)
    if planned is None:
        planned = _PLANS[shape] = _plan(spec, shape[2])
    plan, event_id = planned
    values: dict = {}
    for (column, value), action in zip(raw.items(), plan):
        if value is None:
            values[column] = None
        elif type(value) is str:
            if action == _INT_CELL:
                values[column] = to_int(value, column)
            elif action == _BOOL_CELL:
                values[column] = to_bool(value, column)
            elif action == _DROP:
                continue
            elif len(value) > MAX_VALUE_CHARS:
                raise _oversized(column, value)
            elif action == _ID_CELL or action == _EXTRA_ID_CELL:  # ids and hashes: blank after stripping is missing
                values[column] = value.strip().lower() or None
            else:  # other text: only an empty cell is missing (" " is text)
                values[column] = value or None
        elif action == _INT_CELL:
            values[column] = value if type(value) is int and INT64_MIN <= value <= INT64_MAX else to_int(value, column)
        elif action == _BOOL_CELL:
            values[column] = value if type(value) is bool else to_bool(value, column)
        elif action == _TEXT_CELL or action == _ID_CELL:
            raise _wrong_type(column, value, "text")
        elif action == _DROP:
            continue
        elif isinstance(value, _SCALARS):
            values[column] = _int64(value, column) if type(value) is int else value
        elif action == _SCALAR_CELL:
            raise _wrong_type(column, value, "a scalar")
        # else: an extra column holding an object or an array is not carried along
    key = values.get(spec.key)
    if key is None or (type(key) is str and not key):
        raise BadRow(f"missing key {spec.key}")
    ts = None
    if spec.time is not None:
        try:
            ts, canonical = _event_time(values.get(spec.time))
        except BadTime as exc:
            raise BadRow(f"{exc} in {spec.time}") from None
        values[spec.time] = canonical
    return Row(str(key), ts, event_id(spec, values), values)


def content_id(spec: TableSpec, values: dict) -> str:
    """An event id that is the row's content (its table and normalised values): for sources whose rows
    have no id of their own. Two rows alike in every column are one event."""
    payload = orjson.dumps([spec.name, values], option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.blake2b(payload, digest_size=8).hexdigest()
