"""How far a stage may say it has come in one partition of a table (the progress marks it sends on).

A progress mark promises a receiver that every row of that partition up to
event time `t` has been applied *and its records sent before the mark*
(stream.logic.source_clock). A stage learns how far it has come from its
rows (a partition's messages come in event-time order) and, in a replay,
from the replay's own progress marks, which reach every partition of every
topic, empty ones included.

Rows a ucn device holds back break the promise: a device with no owner yet
keeps its contribution until its `devices` / `user_devices` rows come. So
while a device holds rows, the marks of its partition stop just before its
oldest held row. That lasts

* in a replay, until the replay's marks have passed both reference tables
  of that partition: a replay publishes every reference row before its
  events, so a device still unlinked then will not be linked by this run
  (an unknown device) and holds nothing;
* in a live feed (no replay marks), for HELD_GRACE_S seconds of processing
  time.

Nothing here depends on processing time while a replay is running.

In memory only: after a restart or rebalance (`restart`) the caller tells,
before anything else of a partition, which of its devices hold rows
(`knows` / `holding`), from their state.
"""
from __future__ import annotations

HELD_GRACE_S = 30.0  # a live feed's held device stops holding marks after this (stream.logic.source_clock.IDLE_S)
REFERENCE_TABLES = ("devices", "user_devices")


class PartitionProgress:
    def __init__(self, grace_s: float = HELD_GRACE_S, reference_tables=REFERENCE_TABLES):
        self.grace_s = grace_s
        self.reference_tables = tuple(reference_tables)
        self._known: set[int] = set()  # partitions whose holding devices have been told since the restart
        self._held: dict[int, dict[str, tuple[int, float]]] = {}  # partition -> device -> (oldest ts, since)
        self._unknown: dict[int, set[str]] = {}  # partition -> devices that will not be linked
        self._told: dict[tuple[str, int], int] = {}  # (table, partition) -> event time last told
        self._reached: dict[tuple[str, int], int] = {}  # (table, partition) -> applied up to (floor aside)
        self._runs: dict[tuple[str, int], str] = {}  # (table, partition) -> replay run its marks come from

    def restart(self) -> None:
        """A rebalance: what was known of every partition may be stale."""
        for held in (self._known, self._held, self._unknown, self._told, self._reached, self._runs):
            held.clear()

    def knows(self, partition: int) -> bool:
        return partition in self._known

    def known(self, partition: int) -> None:
        self._known.add(partition)

    def holding(self, partition: int, device: str, oldest_held_ts: int | None, now_s: float) -> None:
        """After a device's batch: the event time of its oldest row held back, or None when it holds none."""
        held = self._held.setdefault(partition, {})
        if oldest_held_ts is None:
            held.pop(device, None)
            self._unknown.get(partition, set()).discard(device)
        elif device in self._unknown.get(partition, ()):
            return
        elif device not in held:
            held[device] = (oldest_held_ts, now_s)
        elif oldest_held_ts < held[device][0]:
            held[device] = (oldest_held_ts, held[device][1])

    # ------------------------------------------------------------------ replay marks

    def replayed(self, table: str, partition: int, ts_us: int | None, run: str) -> None:
        """A replay's progress mark: every row of the run in this table's partition up to `ts_us` is
        applied (the caller calls this after applying the rows before the mark)."""
        self._runs[(table, partition)] = run
        if ts_us is not None and table not in self.reference_tables:
            key = (table, partition)
            self._reached[key] = max(ts_us, self._reached.get(key, ts_us))

    def run_ended(self, partition: int) -> None:
        """The run's end mark came through every topic of the partition: what follows is a live feed."""
        for key in [key for key in self._runs if key[1] == partition]:
            del self._runs[key]

    def replaying(self, partition: int) -> str | None:
        """The replay run this partition's marks come from, or None (a live feed)."""
        runs = [run for (table, p), run in self._runs.items() if p == partition and table not in self.reference_tables]
        return max(runs) if runs else None

    def _references_done(self, partition: int, run: str | None) -> bool:
        return run is not None and all(self._runs.get((table, partition)) == run for table in self.reference_tables)

    # ------------------------------------------------------------------ what to say

    def to_tell(self, table: str, partition: int, newest: int, now_s: float) -> int | None:
        """The event time to put in a progress mark once the partition's rows up to `newest` are applied,
        or None when there is nothing new to say."""
        key = (table, partition)
        self._reached[key] = max(newest, self._reached.get(key, newest))
        return self._say(key, self._floor(partition, now_s))

    def retell(self, now_s: float) -> list[tuple[str, int, int]]:
        """(table, partition, event time) for every table that can say more than it did (held rows went
        out, or turned out to belong to no one, or a replay mark moved it)."""
        told = []
        for key in list(self._reached):
            ts = self._say(key, self._floor(key[1], now_s))
            if ts is not None:
                told.append((*key, ts))
        return told

    def _floor(self, partition: int, now_s: float) -> int | None:
        """The oldest row held in the partition by a device that may still be linked."""
        held = self._held.get(partition)
        if not held:
            return None
        run = self.replaying(partition)
        if self._references_done(partition, run):
            gone = list(held)  # this run's links are all applied: whoever holds now is unknown
        elif run is None:
            gone = [device for device, (_, since) in held.items() if now_s - since >= self.grace_s]
        else:
            gone = []
        for device in gone:
            del held[device]
            self._unknown.setdefault(partition, set()).add(device)
        return min((ts for ts, _ in held.values()), default=None)

    def _say(self, key: tuple[str, int], floor: int | None) -> int | None:
        newest = self._reached[key]
        ts = newest if floor is None else min(newest, floor - 1)
        if ts <= self._told.get(key, ts - 1):
            return None
        self._told[key] = ts
        return ts
