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
    values: dict  # normalised column values (read back from a replay's sort spill: encoded, see replay.external_sort)


_new_row = tuple.__new__


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
_PLANS_MAX = 10_000
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
    return _cells_function(columns, plan), dataset.event_id


# What each cell's treatment is in Python: `{v}` is the cell's value, `{c}` its column name, `values` the
# normalised row. One function per plan runs these for its columns one after the other (no loop, no
# test of the treatment per cell).
_ID_TEXT = "values[{c}] = {v}.strip().lower() or None"  # ids and hashes: blank after stripping is missing
_SCALAR = "if isinstance({v}, _SCALARS): values[{c}] = _int64({v}, {c}) if type({v}) is int else {v}"
_NOT_TEXT = "raise _wrong_type({c}, {v}, 'text')"
_CELLS = {
    _INT_CELL: ["if type({v}) is int and INT64_MIN <= {v} <= INT64_MAX: values[{c}] = {v}",
                "elif {v} is None: values[{c}] = None",
                "else: values[{c}] = to_int({v}, {c})"],
    _BOOL_CELL: ["if type({v}) is bool: values[{c}] = {v}",
                 "elif {v} is None: values[{c}] = None",
                 "else: values[{c}] = to_bool({v}, {c})"],
    _DROP: ["if {v} is None: values[{c}] = None"],
}
# Text cells: (what a text value becomes, what any other value that is not None does)
_TEXT_CELLS = {
    _ID_CELL: (_ID_TEXT, [_NOT_TEXT]),
    _TEXT_CELL: ("values[{c}] = {v} or None", [_NOT_TEXT]),  # other text: only an empty cell is missing
    _SCALAR_CELL: ("values[{c}] = {v} or None", [_SCALAR, "else: raise _wrong_type({c}, {v}, 'a scalar')"]),
    # an extra column holding an object or an array is not carried along
    _EXTRA_CELL: ("values[{c}] = {v} or None", [_SCALAR]),
    _EXTRA_ID_CELL: (_ID_TEXT, [_SCALAR]),
}


def _cell_lines(action: int) -> list[str]:
    if action in _CELLS:
        return _CELLS[action]
    text, other = _TEXT_CELLS[action]
    return ["if type({v}) is str:",
            "    if len({v}) > MAX_VALUE_CHARS: raise _oversized({c}, {v})",
            "    " + text,
            "elif {v} is None: values[{c}] = None",
            "else:", *("    " + line for line in other)]


def _cells_function(columns: tuple, plan: list):
    """`cells(raw) -> values`: the plan's treatment of each cell of a row with these columns, in order."""
    names = [f"c{n}" for n in range(len(columns))]
    lines = [f"def make({', '.join(names)}):", "  def cells(raw):", "    values = {}"]
    if columns:
        lines.append("    " + "".join(f"v{n}, " for n in range(len(columns))) + "= raw.values()")
    for n, action in enumerate(plan):
        lines += ["    " + line.format(v=f"v{n}", c=f"c{n}") for line in _cell_lines(action)]
    lines += ["    return values", "  return cells"]
    made: dict = {}
    exec("\n".join(lines), globals(), made)  # code made of the fixed lines above: no input in it
    return made["make"](*columns)


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
        if len(_PLANS) >= _PLANS_MAX:  # bounded: a producer may send ever new columns
            _PLANS.clear()
        planned = _PLANS[shape] = _plan(spec, shape[2])
    cells, event_id = planned
    values = cells(raw)
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
    return _new_row(Row, (str(key), ts, event_id(spec, values), values))  # Row(...) without its frame


def content_id(spec: TableSpec, values: dict) -> str:
    """An event id that is the row's content (its table and normalised values): for sources whose rows
    have no id of their own. Two rows alike in every column are one event.

    The hash of `orjson.dumps([table, values], sorted keys)`; the table's part is hashed once per table
    and the hasher copied (a third of the time of hashing the whole every time)."""
    table_part = _ID_HASHERS.get(spec.name)
    if table_part is None:
        table_part = _ID_HASHERS[spec.name] = hashlib.blake2b(b"[" + orjson.dumps(spec.name) + b",", digest_size=8)
    hasher = table_part.copy()
    hasher.update(orjson.dumps(values, option=orjson.OPT_SORT_KEYS, default=str) + b"]")
    return hasher.hexdigest()


_ID_HASHERS: dict[str, hashlib.blake2b] = {}  # table -> a hasher fed with its part of every payload
