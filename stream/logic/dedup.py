"""Which rows of a key are new: the ids a key has applied, kept outside its state.

Why: SPEC §5 makes a redelivered batch, a rerun replay and a live duplicate
change nothing, so every key remembers the ids it applied. Kept inside the
key's state, those ids made the state, and so every changelog record and
every update of the key, grow with its whole history, until a record passed
the broker's limit. Here they live in a store of their own, in small
buckets, and a batch reads and writes only the buckets its rows fall in:

* storj ids (content hashes) by the row's event-time day: a live round
  touches its last few days; a replay touches the day it is in.
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

from typing import Iterable

from contract.timeutil import US_PER_S

from .idset import IdRanges
from .keyvalue import KeyValue

DAY_US = 86_400 * US_PER_S
MAX_BUCKET_IDS = 2_000  # storj: 2,000 ids of 16 hex digits are ~38 KB of JSON
ID_BLOCK = 1_024  # ucn: ids per bucket; at worst 512 ranges, ~10 KB of JSON
NO_TIME = "none"  # the bucket of rows without an event time


class _DayBucket:
    """The ids of one key's rows of one event-time day: parts of at most MAX_BUCKET_IDS."""

    def __init__(self, store: KeyValue, name: str):
        self.store, self.name = store, name
        first = store.get(name)
        self.parts: list[list[str]] = [list(first["ids"])] if first else [[]]
        for number in range(1, first.get("parts", 1) if first else 1):
            self.parts.append(list(store.get(f"{name}.{number}")["ids"]))
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


class DayBucketedIds:
    """The storj de-duplicator of one key: `first_seen(state, rows)` keeps each id's first row.

    The ids of the key's newest day stay in its state (`state["dn"]`: [day,
    ids]) while they are fewer than MAX_BUCKET_IDS: rows come mostly in time
    order, so a batch then costs no write besides the state's own, and a day
    moves beside the state once (when a newer day comes, or it fills up).
    Buckets are named `d{day}|{entity}`: the entity comes last so that no
    entity text can make two names equal. With a horizon, the key's state
    keeps the days it has buckets for (`state["dd"]`, at most horizon / 1 day
    of them) so that it can forget them.
    """

    def __init__(self, store: KeyValue, entity: str, horizon_us: int | None = None):
        self.store, self.entity, self.horizon_us = store, entity, horizon_us

    def _name(self, day) -> str:
        return f"d{day}|{self.entity}"

    def first_seen(self, state: dict, rows: Iterable) -> list:
        rows = list(rows)
        buckets: dict = {}
        new = []
        days = state.get("dd") if self.horizon_us is not None else None
        newest_day, newest_ids = state.get("dn") or (None, None)
        oldest = self._oldest_kept_day([*(days or ()), *([newest_day] if newest_day is not None else [])], rows)
        if newest_day is not None and oldest is not None and newest_day < oldest:
            newest_day, newest_ids = None, None  # past the horizon: forgotten
        inline = set(newest_ids or ())
        for row in rows:
            day = NO_TIME if row.ts is None else row.ts // DAY_US
            if oldest is not None and day != NO_TIME and day < oldest:
                state["expired"] = state.get("expired", 0) + 1
                continue
            if day != NO_TIME and (newest_day is None or day > newest_day):
                self._move_aside(buckets, newest_day, newest_ids)  # a newer day: the newest one moves aside
                newest_day, newest_ids, inline = day, [], set()
            if day == newest_day and newest_ids is not None:
                first = row.eid not in inline
                if first:
                    inline.add(row.eid)
                    newest_ids.append(row.eid)
                    if len(newest_ids) > MAX_BUCKET_IDS:  # a full day lives beside the state from now on
                        self._move_aside(buckets, newest_day, newest_ids)
                        newest_ids = None
            else:
                bucket = buckets.get(day)
                if bucket is None:
                    bucket = buckets[day] = _DayBucket(self.store, self._name(day))
                first = bucket.add(row.eid)
            if first:
                new.append(row)
            else:
                state["dups"] = state.get("dups", 0) + 1
        for bucket in buckets.values():
            bucket.write()
        if newest_day is None:
            state.pop("dn", None)
        else:
            state["dn"] = [newest_day, newest_ids]
        if self.horizon_us is not None:
            self._keep_days(state, [d for d in buckets if d != NO_TIME], oldest)
        return new

    def _move_aside(self, buckets: dict, day, ids) -> None:
        """The ids of a day kept in the state go to the day's bucket beside it."""
        if day is None or not ids:
            return
        bucket = buckets.get(day)
        if bucket is None:
            bucket = buckets[day] = _DayBucket(self.store, self._name(day))
        for eid in ids:
            bucket.add(eid)

    def _oldest_kept_day(self, days, rows) -> int | None:
        """The first day still remembered once these rows are in (None: every day is)."""
        if self.horizon_us is None:
            return None
        newest = max([*(days or ()), *(r.ts // DAY_US for r in rows if r.ts is not None)], default=None)
        return None if newest is None else newest - self.horizon_us // DAY_US

    def _keep_days(self, state: dict, touched: list, oldest: int | None) -> None:
        days = sorted(set(state.get("dd", [])) | set(touched))
        for day in days:
            if oldest is not None and day < oldest:
                _DayBucket(self.store, self._name(day)).forget()
        state["dd"] = [day for day in days if oldest is None or day >= oldest]


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
