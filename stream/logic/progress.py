"""How far a stage may say it has come in one partition of a table (the progress marks it sends on).

A progress mark promises a receiver that every row of that partition up to
event time `t` has been applied *and its records sent before the mark*
(stream.logic.channel_clock). Rows a ucn device holds back break that
promise: a device with no owner yet keeps its contribution until its
`devices` / `user_devices` rows come, and a replay's reference tables,
though published first, may be read after some event rows. So while a
device holds rows, the marks stop just before its oldest held row, for
HELD_GRACE_S seconds of processing time; after that the device is taken for
one that will never be linked (an unknown device) and holds nothing. Held
rows stop the marks of every partition this worker has, not only their own:
the user the device will be linked to may hear of its other devices through
any partition, and its event time must not pass the held rows before the
link (seen under load: 492 events late). A device held on another worker
is not seen here; its rows can be late if the link comes after the user's
other devices moved past them by more than the lateness.

In memory only: after a restart or rebalance (`restart`) the caller tells,
before anything else of a partition, which of its devices hold rows
(`knows` / `holding`), from their state.
"""
from __future__ import annotations

HELD_GRACE_S = 30.0  # as long as a silent channel holds a user (stream.logic.ucn.IDLE_CHANNEL_S)


class PartitionProgress:
    def __init__(self, grace_s: float = HELD_GRACE_S):
        self.grace_s = grace_s
        self._known: set[int] = set()  # partitions whose holding devices have been told since the restart
        self._held: dict[int, dict[str, tuple[int, float]]] = {}  # partition -> device -> (oldest ts, since)
        self._unknown: dict[int, set[str]] = {}  # partition -> devices that held past the grace
        self._told: dict[tuple[str, int], int] = {}  # (table, partition) -> event time last told
        self._reached: dict[tuple[str, int], int] = {}  # (table, partition) -> applied up to (floor aside)

    def restart(self) -> None:
        """A rebalance: what was known of every partition may be stale."""
        self._known.clear()
        self._held.clear()
        self._unknown.clear()
        self._told.clear()
        self._reached.clear()

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

    def to_tell(self, table: str, partition: int, newest: int, now_s: float) -> int | None:
        """The event time to put in a progress mark once the partition's rows up to `newest` are applied,
        or None when there is nothing new to say."""
        key = (table, partition)
        self._reached[key] = max(newest, self._reached.get(key, newest))
        return self._say(key, self._floor(now_s))

    def retell(self, now_s: float) -> list[tuple[str, int, int]]:
        """(table, partition, event time) for the tables that can say more now that held rows went out
        (a device was linked): a user that got them can move on at once."""
        floor = self._floor(now_s)
        told = []
        for key in list(self._reached):
            ts = self._say(key, floor)
            if ts is not None:
                told.append((*key, ts))
        return told

    def _floor(self, now_s: float) -> int | None:
        """The oldest row held within the grace, in any partition (a held device may link to any user)."""
        floor = None
        for partition, held in self._held.items():
            for device in [d for d, (_, held_since) in held.items() if now_s - held_since >= self.grace_s]:
                del held[device]  # held for longer than the grace: an unknown device, it holds nothing
                self._unknown.setdefault(partition, set()).add(device)
            oldest = min((ts for ts, _ in held.values()), default=None)
            if oldest is not None and (floor is None or oldest < floor):
                floor = oldest
        return floor

    def _say(self, key: tuple[str, int], floor: int | None) -> int | None:
        newest = self._reached[key]
        ts = newest if floor is None else min(newest, floor - 1)
        if ts <= self._told.get(key, ts - 1):
            return None
        self._told[key] = ts
        return ts
