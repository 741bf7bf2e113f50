"""Which rows of a database table follow mode has published: one cursor per table.

A table is polled for the rows past its cursor; the rows a read returns go
through `Scan.keep` (new or not, and what the cursor learns), and once they
are published and flushed, `after(scan, now)` is the cursor to save. Pure:
no SQL runs here, only the condition a poll adds to its query.

Three kinds, chosen once per table from its columns:

* `IdCursor` -- an integer `id` column (every ucn table but user_devices):
  the greatest id published. An id is given when a row is inserted, so a row
  written late with an old event time is still found (a cursor on event time
  would step over it; the stream places it within the allowed lateness). Ids
  are handed out when a row is inserted but seen when its transaction
  commits, so a transaction that commits after a later one leaves a gap for
  a while: gaps below the greatest id are remembered as holes, read again at
  every poll for `HOLE_GRACE_S` seconds, and then given up (a rolled-back
  insert or a deleted row leaves one for good). Ids below the smallest one
  the history read are not looked for.
* `TimeCursor` -- no integer id but an event-time column (every storj
  table): the newest event time published and the event ids published at
  it, so rows of that instant committed later are still found, once. A row
  inserted with an event time older than that is not found: such a table
  must receive its rows in event-time order (storj's rollups are written as
  their intervals end).
* `SeenCursor` -- neither (ucn user_devices, a small link table): every
  event id published; the table is read whole at every poll.

Rows whose cursor column is NULL are bad rows (no id or no event time): they
are counted, and those past the count already published go to the dead
letters, so none is lost silently. An UPDATE of a row already published
publishes nothing: an event's id is `table:id` (ucn) or a hash of the row
(storj), so an update would be the same event (ucn: ignored by the stream) or
a second one (storj: counted twice). Entities change by new rows (storj: the
row with the later event time wins).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from stream.logic.idset import IdRanges

HOLE_GRACE_S = 60.0  # how long a gap below the greatest id is read again (an open transaction's ids)
MAX_HOLES = 200  # gaps kept at most (the newest); a table with more loses the oldest at once


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


class _NullCount:
    """Rows whose cursor column is NULL cannot be told apart: the first `published` of them were."""

    def __init__(self, published: int):
        self.published = published
        self.seen = 0

    def keep(self) -> bool:
        self.seen += 1
        return self.seen > self.published


@dataclass(frozen=True)
class IdCursor:
    column: str = "id"
    upto: int | None = None  # the greatest id published
    holes: tuple = ()  # ((lo, hi, since_s), ...): ids below `upto` not seen yet, and since when
    nulls: int = 0  # rows with a NULL id published (as bad rows)
    kind = "id"

    def where(self) -> tuple[str, dict]:
        """The SQL condition of a poll (empty: every row) and its parameters."""
        if self.upto is None:
            return "", {}
        column = _quoted(self.column)
        parts, params = [f"{column} > :upto"], {"upto": self.upto}
        for i, (lo, hi, _) in enumerate(self.holes):
            parts.append(f"{column} BETWEEN :lo{i} AND :hi{i}")
            params[f"lo{i}"], params[f"hi{i}"] = lo, hi
        parts.append(f"{column} IS NULL")
        return " OR ".join(parts), params

    def scan(self) -> IdScan:
        return IdScan(self)

    def in_hole(self, value: int) -> bool:
        return any(lo <= value <= hi for lo, hi, _ in self.holes)

    def after(self, scan: IdScan, now_s: float, grace_s: float = HOLE_GRACE_S) -> IdCursor:
        seen = scan.ids.to_state()
        holes = [(lo, hi, since) for old in self.holes for lo, hi, since in _minus(old, seen)]
        floor = self.upto
        for lo, hi in seen:
            if floor is not None and hi <= floor:
                continue
            lo = lo if floor is None else max(lo, floor + 1)
            if floor is not None and lo > floor + 1:
                holes.append((floor + 1, lo - 1, now_s))
            floor = hi
        holes = [hole for hole in holes if now_s - hole[2] < grace_s][-MAX_HOLES:]
        return IdCursor(self.column, floor, tuple(holes), scan.nulls.seen if scan.complete else self.nulls)

    def to_state(self) -> dict:
        return {"kind": self.kind, "column": self.column, "upto": self.upto, "holes": [list(h) for h in self.holes],
                "nulls": self.nulls}


def _minus(hole: tuple, seen: list) -> list:
    """The parts of `hole` (lo, hi, since) that no range of `seen` ([[lo, hi], ...], sorted) covers."""
    lo, hi, since = hole
    parts = []
    for a, b in seen:
        if b < lo or a > hi:
            continue
        if a > lo:
            parts.append((lo, a - 1, since))
        lo = b + 1
        if lo > hi:
            return parts
    parts.append((lo, hi, since))
    return parts


class IdScan:
    def __init__(self, cursor: IdCursor):
        self.cursor = cursor
        self.ids = IdRanges()
        self.nulls = _NullCount(cursor.nulls)
        self.complete = False  # set once the read went through every row it returned

    def keep(self, value, identity: str) -> bool:
        """Is this row (its id, its event id) new? A row with an id already published is not."""
        if value is None:
            return self.nulls.keep()
        cursor = self.cursor
        if cursor.upto is not None and value <= cursor.upto and not cursor.in_hole(value):
            return False
        self.ids.add(value)  # the same id twice: both go (the stream counts the first, SPEC §5)
        return True


@dataclass(frozen=True)
class TimeCursor:
    column: str
    since: object = None  # the newest event time published, as the database gives it (None: nothing yet)
    at_since: frozenset = field(default_factory=frozenset)  # event ids of the rows published at `since`
    nulls: int = 0
    kind = "time"

    def where(self) -> tuple[str, dict]:
        if self.since is None:
            return "", {}
        column = _quoted(self.column)
        return f"{column} >= :since OR {column} IS NULL", {"since": self.since}

    def scan(self) -> TimeScan:
        return TimeScan(self)

    def after(self, scan: TimeScan, now_s: float) -> TimeCursor:
        nulls = scan.nulls.seen if scan.complete else self.nulls
        if scan.newest is None:
            return TimeCursor(self.column, self.since, self.at_since, nulls)
        if self.since is not None and scan.newest == self.since:
            return TimeCursor(self.column, self.since, self.at_since | scan.at_newest, nulls)
        return TimeCursor(self.column, scan.newest, frozenset(scan.at_newest), nulls)

    def to_state(self) -> dict:
        return {"kind": self.kind, "column": self.column, "since": _time_state(self.since),
                "at_since": sorted(self.at_since), "nulls": self.nulls}


class TimeScan:
    def __init__(self, cursor: TimeCursor):
        self.cursor = cursor
        self.newest = None
        self.at_newest: set = set()
        self.nulls = _NullCount(cursor.nulls)
        self.complete = False

    def keep(self, value, identity: str) -> bool:
        if value is None:
            return self.nulls.keep()
        if identity in self.cursor.at_since:
            return False
        if self.newest is None or value > self.newest:
            self.newest, self.at_newest = value, {identity}
        elif value == self.newest:
            self.at_newest.add(identity)
        return True


@dataclass(frozen=True)
class SeenCursor:
    seen: frozenset = field(default_factory=frozenset)  # event ids published
    kind = "seen"

    def where(self) -> tuple[str, dict]:
        return "", {}

    def scan(self) -> SeenScan:
        return SeenScan(self)

    def after(self, scan: SeenScan, now_s: float) -> SeenCursor:
        return SeenCursor(self.seen | scan.new)

    def to_state(self) -> dict:
        return {"kind": self.kind, "seen": sorted(self.seen)}


class SeenScan:
    def __init__(self, cursor: SeenCursor):
        self.cursor = cursor
        self.new: set = set()
        self.complete = False

    def keep(self, value, identity: str) -> bool:
        if identity in self.cursor.seen:
            return False
        self.new.add(identity)  # a row twice in one read goes twice: the replay counts it a duplicate
        return True


def choose(id_is_integer: bool, time_column: str | None):
    """The cursor of a table never followed before (see the module doc)."""
    if id_is_integer:
        return IdCursor()
    if time_column is not None:
        return TimeCursor(time_column)
    return SeenCursor()


def _time_state(value):
    """An event time as the database gave it, in JSON (a datetime is tagged, to be read back as one)."""
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    return value


def _time_from_state(value):
    if isinstance(value, dict):
        if "datetime" in value:
            return dt.datetime.fromisoformat(value["datetime"])
        if "date" in value:
            return dt.date.fromisoformat(value["date"])
    return value


def from_state(state: dict):
    kind = state["kind"]
    if kind == "id":
        return IdCursor(state["column"], state["upto"], tuple(tuple(h) for h in state["holes"]), state["nulls"])
    if kind == "time":
        return TimeCursor(state["column"], _time_from_state(state["since"]), frozenset(state["at_since"]),
                          state["nulls"])
    if kind == "seen":
        return SeenCursor(frozenset(state["seen"]))
    raise ValueError(f"unknown cursor kind {kind!r}")
