"""A user partition's event time: how far every source partition that can still send it an event has come.

A ucn user hears of its activity through the device stage, which reads each
source table (dnsreqs, httpreqs, locations ...) partition by partition, each
at its own pace. Any device may turn out to be a user's (a link can come
later than the device's rows), so no session of any user of a partition may
close before *every* source partition has passed it: the event time is the
minimum over all (table, partition) sources of what their progress marks
said (per-source watermarks, as in Flink, taken over the whole input).

A source that has said nothing holds the event time back. In a replay that
is always right: the replay's own progress marks reach every partition of
every topic, empty ones included, so every source speaks. A live feed has
no such marks, and a partition without rows (no locations at all, a table
published under its other name) would hold every window open for ever; so a
source that is silent for `idle_s` seconds of processing time stops holding
(Flink's idleness), counted from when this worker began consuming, and only
while no replay is running through the partition.

Pure and in memory: a restarted worker starts again from "nothing heard",
which holds windows open until the marks come again (never too early).
"""
from __future__ import annotations

IDLE_S = 30.0


class SourceClock:
    """The sources of one user partition: (table, partition) -> [event time, heard at (s), replay run]."""

    def __init__(self, sources, idle_s: float = IDLE_S):
        self.sources = list(sources)
        self.idle_s = idle_s
        self.heard: dict[tuple[str, int], list] = {}

    def hear(self, table: str, partition: int, ts_us: int, now_s: float, run: str | None = None) -> None:
        """A progress mark: the source's rows up to `ts_us` are applied and sent ahead of it. `run`: the
        replay it came from, or None once the source is a live feed."""
        key = (table, partition)
        entry = self.heard.get(key)
        if entry is None:
            self.heard[key] = [ts_us, now_s, run]
        else:
            entry[0], entry[1], entry[2] = max(entry[0], ts_us), now_s, run

    def run_ended(self) -> None:
        """The replay's end mark came through every source: they are a live feed from now on."""
        for entry in self.heard.values():
            entry[2] = None

    def replaying(self) -> bool:
        return any(entry[2] is not None for entry in self.heard.values())

    def event_time(self, now_s: float, consuming_since_s: float) -> int | None:
        """The event time every source has passed, or None while a source that must be waited for said
        nothing yet."""
        waits = self.replaying()
        times = []
        for source in self.sources:
            entry = self.heard.get(source)
            if entry is None:
                if waits or now_s - consuming_since_s <= self.idle_s:
                    return None
            elif entry[2] is not None or now_s - max(entry[1], consuming_since_s) <= self.idle_s:
                times.append(entry[0])
        return min(times, default=None)
