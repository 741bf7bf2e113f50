"""Which rows of a key are new: the ids a key has applied, kept outside its state.

Why: SPEC §5 makes a redelivered batch, a rerun replay and a live duplicate
change nothing, so every key remembers the ids it applied. Kept inside the
key's state, those ids made the state, and so every changelog record and
every update of the key, grow with its whole history, until a record passed
the broker's limit. Here they live in a store of their own, in small
buckets, and a batch reads and writes only the buckets its rows fall in:

* storj ids (content hashes): the newest INLINE_IDS in the key's state,
  older ones by the row's event-time day, each day moved out once, whole.
  A bucket keeps at most MAX_BUCKET_IDS ids and goes on in numbered parts,
  so no record passes ~40 KB, however many rows one key has in one day.
* ucn ids (integers per table) by block of ID_BLOCK ids, as ranges
  (`idset.IdRanges`): consecutive ids are one pair, and even ids that
  interleave with other devices' ids are at most ID_BLOCK / 2 pairs.

Optional retention (`horizon_us`): a key forgets the days older than its
newest day minus the horizon, and a row older than that is *expired*: it can
no longer be told from a duplicate, so it is not applied, and it is counted.
Without a horizon the ids are kept for good (disk grows with history, the
cost of an update does not).

A bucket is one value of a `KeyValue` store (the runtime's changelog-backed
table, or a dict in tests). Nothing here knows Kafka.
"""
from __future__ import annotations

import bisect
from operator import itemgetter
from typing import Any, Iterable

from msgspec import UNSET, Struct, UnsetType, field

from contract.timeutil import US_PER_S

from .idset import IdRanges
from .keyvalue import KeyValue

DAY_US = 86_400 * US_PER_S
MAX_BUCKET_IDS = 2_000  # storj: 2,000 ids of 16 hex digits are ~38 KB of JSON
# storj: ids kept in the key's state, ~19 bytes each. At storj scale 1, 4,890 of 5,020 projects and every
# node have fewer rows than that, so their ids never leave the state.
INLINE_IDS = 256
ID_BLOCK = 1_024  # ucn: ids per bucket; at worst 512 ranges, ~10 KB of JSON
NO_TIME = "none"  # the bucket of rows without an event time


class _DayBucket:
    """The ids of one key's rows of one event-time day: parts of at most MAX_BUCKET_IDS."""

    def __init__(self, store: KeyValue, name: str, new: bool = False):
        """`new`: the bucket is known not to exist yet (no read)."""
        self.store, self.name = store, name
        first = None if new else store.get(name)
        self.parts: list[list[str]] = [list(first["ids"])] if first else [[]]
        for number in range(1, first.get("parts", 1) if first else 1):
            part = store.get(f"{name}.{number}")
            self.parts.append(list(part["ids"]) if part else [])
        self.ids = {eid for part in self.parts for eid in part}
        self.dirty: set[int] = set()

    def add(self, eid: str) -> bool:
        if eid in self.ids:
            return False
        if len(self.parts[-1]) >= MAX_BUCKET_IDS:
            self.parts.append([])
            self.dirty.add(0)  # the first part holds the number of parts
        self.ids.add(eid)
        self.parts[-1].append(eid)
        self.dirty.add(len(self.parts) - 1)
        return True

    def write(self) -> None:
        for number in sorted(self.dirty):
            if number == 0:
                self.store.put(self.name, {"ids": self.parts[0], "parts": len(self.parts)})
            else:
                self.store.put(f"{self.name}.{number}", {"ids": self.parts[number]})
        self.dirty.clear()

    def forget(self) -> None:
        for number in range(1, len(self.parts)):
            self.store.delete(f"{self.name}.{number}")
        self.store.delete(self.name)


class DedupState(Struct):
    """What `DayBucketedIds` keeps in a storj key's state (the storj states extend it); the JSON keys in
    quotes are those of the changelog record.

    `inline_ids` ("di"): the ids of the key's newest days, [[day, ids], ...]; `ids_aside_up_to` ("da"):
    the newest day whose ids live beside the state (None: no day's do); `days_aside` ("dd"): with a
    horizon, the days that have a bucket beside the state; `inline_count` ("dc"): how many ids
    `inline_ids` holds, so that a batch need not count them (None in records written before it was
    kept). `legacy_newest_day` ("dn") is the earlier layout's (the newest day's ids, or None when they
    were beside), read once and dropped."""

    inline_ids: list[tuple[int, list[str]]] = field(name="di", default_factory=list)
    ids_aside_up_to: int | None = field(name="da", default=None)
    days_aside: list[int] = field(name="dd", default_factory=list)
    expired_rows: int = field(name="expired", default=0)  # rows older than the horizon, not applied
    duplicate_rows: int = field(name="dups", default=0)
    legacy_newest_day: tuple[int, list[str] | None] | None | UnsetType = field(name="dn", default=UNSET)
    inline_count: int | None = field(name="dc", default=None)  # ids in `inline_ids` (None: count them)


class DayBucketedIds:
    """The storj de-duplicator of one key: `first_seen(state, rows)` keeps each id's first row.

    The ids of the key's newest days stay in its state (`state.inline_ids`)
    while they are at most INLINE_IDS together: most keys never have more,
    and for them a batch costs no write besides the state's own. Past that,
    the oldest inline day moves beside the state, once and whole (rows come
    mostly in time order), into a bucket named `d{day}|{entity}` (the entity
    last, so that no entity text can make two names equal), and
    `state.ids_aside_up_to` says up to which day ids live beside: a row of a
    later day is looked up in the state, one of that day or before in its
    day's bucket. With a horizon, the state keeps the days it has buckets for
    (`state.days_aside`, at most horizon / 1 day of them) so that it can
    forget them.
    """

    def __init__(self, store: KeyValue, entity: str, horizon_us: int | None = None):
        self.store, self.entity, self.horizon_us = store, entity, horizon_us

    def _name(self, day) -> str:
        return f"d{day}|{self.entity}"

    def first_seen(self, state: DedupState, rows: Iterable) -> list:
        """The rows whose id the key has not applied yet, in order (the first row of each id).

        The cost is that of the rows and of the days they fall on, not of how many days the state
        keeps: the state's list of days is changed in place (a row's day is looked for from the newest),
        and the number of ids in it is kept beside it (`inline_count`)."""
        rows = rows if isinstance(rows, list) else list(rows)
        if state.legacy_newest_day is not UNSET:
            _upgrade_legacy(state)
        if self.horizon_us is None:
            new = _first_seen_in_newest_day(state, rows)
            if new is not None:
                return new
        inline = state.inline_ids  # [(day, ids)], oldest day first
        aside = state.ids_aside_up_to
        oldest = self._oldest_kept_day(state, rows)
        total = state.inline_count
        if oldest is not None and inline and inline[0][0] < oldest:
            inline[:] = [pair for pair in inline if pair[0] >= oldest]
            total = None
        if total is None:  # a record written before the count was kept
            total = sum(len(ids) for _, ids in inline)
        buckets: dict = {}
        new = []
        # An id is one row's content, time included: the same id never lies on two days, so a row is
        # looked up among its own day's ids only (a set of them built when the batch first needs it).
        known_on: dict = {}  # day -> (its ids in the state or None, a set of them)
        for row in rows:
            ts = row.ts
            if ts is None:
                day: Any = NO_TIME
            else:
                day = ts // DAY_US
                if oldest is not None and day < oldest:
                    state.expired_rows += 1
                    continue
            if day is not NO_TIME and (aside is None or day > aside):
                slot = known_on.get(day)
                if slot is None:
                    slot = known_on[day] = _inline_day(inline, day)
                ids, known = slot
                first = row.eid not in known
                if first:
                    known.add(row.eid)
                    if ids is None:
                        ids = _new_inline_day(inline, day)
                        known_on[day] = (ids, known)
                    ids.append(row.eid)
                    total += 1
                    while total > INLINE_IDS:  # the oldest inline day moves beside the state, whole
                        moved, moved_ids = inline.pop(0)
                        moved_to = buckets[moved] = _DayBucket(self.store, self._name(moved), new=True)
                        for eid in moved_ids:
                            moved_to.add(eid)
                        total = total - len(moved_ids) if inline else 0  # (a count a record got wrong heals)
                        known_on.pop(moved, None)
                        aside = moved
            else:
                bucket = buckets.get(day)
                if bucket is None:
                    bucket = buckets[day] = _DayBucket(self.store, self._name(day))
                first = bucket.add(row.eid)
            if first:
                new.append(row)
            else:
                state.duplicate_rows += 1
        for bucket in buckets.values():
            bucket.write()
        state.inline_count = total
        if aside is not None:
            state.ids_aside_up_to = aside
        if self.horizon_us is not None:
            self._keep_days(state, [d for d in buckets if d != NO_TIME], oldest)
        return new

    def _oldest_kept_day(self, state: DedupState, rows: list) -> int | None:
        """The first day still remembered once these rows are in (None: every day is)."""
        if self.horizon_us is None:
            return None
        days = [*state.days_aside, *(day for day, _ in state.inline_ids)]
        newest = max([*days, *(r.ts // DAY_US for r in rows if r.ts is not None)], default=None)
        return None if newest is None else newest - self.horizon_us // DAY_US

    def _keep_days(self, state: DedupState, touched: list, oldest: int | None) -> None:
        days = sorted(set(state.days_aside) | set(touched))
        for day in days:
            if oldest is not None and day < oldest:
                _DayBucket(self.store, self._name(day)).forget()
        state.days_aside = [day for day in days if oldest is None or day >= oldest]


def _first_seen_in_newest_day(state: DedupState, rows: list) -> list | None:
    """`first_seen` for the commonest batch, or None when it is not one: every row on one day that is the
    key's newest or a new one after it, no horizon, and room for its ids in the state. A live feed's
    and a replay's batches of a key mostly are: looking through one day's list costs less than the
    general path's sets and lookups of days."""
    total = state.inline_count
    if not rows or total is None or total + len(rows) > INLINE_IDS:  # (a full state moves days aside)
        return None
    ts = rows[0].ts
    if ts is None:
        return None
    day = ts // DAY_US
    aside = state.ids_aside_up_to
    if aside is not None and day <= aside:
        return None
    start, end = day * DAY_US, (day + 1) * DAY_US
    for row in rows:
        if row.ts is None or not start <= row.ts < end:
            return None
    inline = state.inline_ids
    if inline and inline[-1][0] == day:
        ids = inline[-1][1]
    elif not inline or inline[-1][0] < day:
        ids = []
    else:
        return None  # an older day's rows: the general path finds its place
    new = []
    for row in rows:
        eid = row.eid
        if eid in ids:
            state.duplicate_rows += 1
        else:
            ids.append(eid)
            new.append(row)
    if new:
        if not inline or inline[-1][1] is not ids:
            inline.append((day, ids))
        state.inline_count = total + len(new)
    return new


def _upgrade_legacy(state: DedupState) -> None:
    """A state of the earlier layout (`dn`: the newest day's ids, older days beside; None: that day's ids
    are beside too) in today's."""
    legacy = state.legacy_newest_day
    state.legacy_newest_day = UNSET
    if legacy is not None and not isinstance(legacy, UnsetType):
        day, ids = legacy
        state.inline_ids = [] if ids is None else [(day, list(ids))]
        state.ids_aside_up_to = day if ids is None else day - 1
        state.inline_count = None


def _inline_day(inline: list, day: int) -> tuple[list | None, set]:
    """(the ids of `day` in the state's list or None, a set of them), looked for from the newest day."""
    for position in range(len(inline) - 1, -1, -1):
        kept, ids = inline[position]
        if kept == day:
            return ids, set(ids)
        if kept < day:
            break
    return None, set()


def _new_inline_day(inline: list, day: int) -> list:
    """A new day in the state's list, in its place (mostly the newest: appended)."""
    ids: list[str] = []
    if not inline or inline[-1][0] < day:
        inline.append((day, ids))
    else:
        inline.insert(bisect.bisect_left(inline, day, key=itemgetter(0)), (day, ids))
    return ids


class BlockedIntIds:
    """The ucn de-duplicator of one key: per table, integer ids in blocks of ID_BLOCK, as ranges."""

    def __init__(self, store: KeyValue, entity: str):
        self.store, self.entity = store, entity

    def _name(self, table: str, block: int) -> str:
        return f"i{table}.{block}|{self.entity}"

    def first_seen(self, table: str, ids: Iterable[int]) -> list[bool]:
        """For each id in order: True when it is the first of its value in the table."""
        blocks: dict[int, IdRanges] = {}
        changed: set[int] = set()
        new = []
        for value in ids:
            block = value // ID_BLOCK
            ranges = blocks.get(block)
            if ranges is None:
                stored = self.store.get(self._name(table, block))
                ranges = blocks[block] = IdRanges.from_state(stored["r"] if stored else None)
            first = ranges.add(value)
            if first:
                changed.add(block)
            new.append(first)
        for block in sorted(changed):
            self.store.put(self._name(table, block), {"r": blocks[block].to_state()})
        return new
