"""Event-time alignment: read the partitions that feed one event-time clock at the same pace.

A ucn user's sessions close only behind every source partition that can
still send it an activity event (stream.logic.source_clock), and until then
its window keeps every event ahead of the slowest source. A worker that
catches up on a backlog fetches each partition by bytes, not by event time: a
table with fewer rows per hour races ahead by hundreds of hours, and the
windows of every user hold all of that (measured at ucn scale 1: records of
up to 275 KB).

So the records of the aligned partitions are handed on in event-time order,
as Kafka Streams' partition group does: the partition whose next record is
oldest goes first, with the records that lie within `allowance_us` of every
other partition's next record, or of how far a partition without fetched
records has come. A partition that has nothing left to read (caught up)
holds nobody back; one that has records on the broker but none fetched yet
holds the others until they come, or `max_wait_s` passes.

A record's event time is what the replay says in its header (the newest row
of the replay's chunk it belongs to, or a progress mark's time); records
without one (a live producer's) are never held.

Pure: the consumer offers each fetched batch, asks what to apply now, and
pauses the partitions that have records held here (so that the fetcher does
not pile up more) and resumes them once their records are out.
"""
from __future__ import annotations

from typing import Callable, Hashable

ALLOWANCE_US = 15 * 60 * 1_000_000  # how far a partition may run ahead of the slowest one
MAX_WAIT_S = 2.0  # how long records wait for a partition that has data on the broker but none fetched


class EventTimeAligner:
    def __init__(self, event_time: Callable[[object], int | None], allowance_us: int = ALLOWANCE_US,
                 max_wait_s: float = MAX_WAIT_S):
        self.event_time = event_time  # record -> event time (us) or None
        self.allowance_us = allowance_us
        self.max_wait_s = max_wait_s
        self.held: dict[Hashable, list] = {}  # partition -> records fetched, not handed on yet (in offset order)
        self._times: dict[Hashable, list] = {}  # partition -> the event time of each held record (read once)
        self.reached: dict[Hashable, int] = {}  # partition -> event time of the newest record handed on
        self._last_offered: dict[Hashable, int] = {}
        self._blocked_since: float | None = None
        self._idle: set = set()  # partitions that made records wait max_wait_s, until records of theirs come
        self.waits = 0  # times records were handed on because a partition's data did not come in time

    def offer(self, tp, records: list) -> None:
        """Records fetched for `tp`, in offset order (any already offered are ignored)."""
        last = self._last_offered.get(tp)
        if last is not None:
            records = [r for r in records if r.offset > last]
        if records:
            self._idle.discard(tp)
            self.held.setdefault(tp, []).extend(records)
            self._times.setdefault(tp, []).extend(map(self.event_time, records))
            self._last_offered[tp] = records[-1].offset

    def _head(self, tp) -> int | None:
        """Event time of `tp`'s next held record: the first one that has one (records without come along)."""
        return next((ts for ts in self._times[tp] if ts is not None), None)

    def _take(self, tp, cut: int | None = None) -> list:
        """The first `cut` held records of `tp` (all of them by default), no longer held."""
        records, times = self.held.pop(tp), self._times.pop(tp)
        if cut is not None and cut < len(records):
            self.held[tp], self._times[tp] = records[cut:], times[cut:]
            records, times = records[:cut], times[:cut]
        newest = max((ts for ts in times if ts is not None), default=None)
        if newest is not None and (tp not in self.reached or newest > self.reached[tp]):
            self.reached[tp] = newest
        return records

    def release(self, partitions, caught_up: Callable[[Hashable], bool], now_s: float) -> list[tuple]:
        """[(tp, records)] to apply now, in this order. `partitions`: every aligned partition assigned;
        `caught_up(tp)`: it has no record on the broker that was not fetched."""
        out = []
        while self.held:
            timed = {tp: self._head(tp) for tp in self.held}
            untimed = next((tp for tp, ts in timed.items() if ts is None), None)
            if untimed is not None:  # records without an event time are never held
                out.append((untimed, self._take(untimed)))
                continue
            heads: dict[Hashable, int] = {tp: ts for tp, ts in timed.items() if ts is not None}
            first = min(heads, key=lambda tp: heads[tp])
            frontiers, blockers = [], []  # how far the others are known to have come; who must be waited for
            for tp in partitions:
                if tp == first:
                    continue
                if tp in heads:
                    frontiers.append(heads[tp])
                elif not (tp in self._idle or caught_up(tp)):
                    reached = self.reached.get(tp)
                    if reached is None or reached + self.allowance_us < heads[first]:
                        blockers.append(tp)
                    else:
                        frontiers.append(reached)
            if blockers:
                if self._blocked_since is None:
                    self._blocked_since = now_s
                if now_s - self._blocked_since < self.max_wait_s:
                    break
                self._idle.update(blockers)  # until records of theirs come
                self.waits += 1
                self._blocked_since = None
                continue
            self._blocked_since = None
            cut = None
            if frontiers:  # the head itself is within the limit: every other frontier is past it
                limit = min(frontiers) + self.allowance_us
                cut = next((i for i, ts in enumerate(self._times[first]) if ts is not None and ts > limit), None)
            out.append((first, self._take(first, cut)))
        return out

    def clear(self) -> None:
        """A rebalance: the consumer seeks every partition to its committed offset again."""
        self.held.clear()
        self._times.clear()
        self._last_offered.clear()
        self._blocked_since = None
        self._idle.clear()
