"""A user's event time: how far every input channel that can still send it something has come.

A ucn user hears from its devices through channels, one per (device, source
table), each in order in its own partition but consumed at its own pace. The
user's event time is the minimum over the channels of how far each has come,
so that a channel running ahead cannot close a session whose events another
channel has yet to deliver (per-source watermarks, as in Flink).

How far a channel of a device that has delivered something is the greater of

* the newest event time it delivered itself, and
* its partition's progress: the device stage says, after the records of
  each batch, that it has applied that table's partition up to some event
  time (a progress mark, sent to every user partition behind those
  records). A device's channel cannot deliver anything older than its
  partition has passed, so a device that is quiet on a table (no
  locations, sparse http) holds nobody back while its partition moves.

A device that has delivered nothing yet (just linked, maybe with rows it held)
does not follow its partitions' progress: the user may have other devices
still to be linked whose held rows are older than that progress (seen under
load: 492 events late). A channel that has come nowhere yet holds the event
time: its first rows may be behind every other channel (a replay's message carries days of one table's rows, and
topics are consumed at their own pace; letting the others run ahead made
those rows late: 33 wrong features at ucn scale 1). A channel silent for
`idle_s` seconds of processing time stops holding and is forgotten (counted
from `active_since_s`, when this worker began consuming, so time a worker
spent dead or recovering is no silence). Channels are made only for personal
devices' event tables: shared devices and reference tables deliver no
activity events (see stream.logic.ucn).

`channels` maps "device:table" to [newest event time or None, processing
time last heard, partition or None], the JSON-able form kept in the user's
state; `progress` maps (table, partition) to event time.

Known limit: a partition of a table that has no rows at all (a feed without
locations) sends no progress, so its not-started channels hold until they go
idle: 30 s of processing time, nothing in a live feed, much of a fast replay.
"""
from __future__ import annotations


def forget_idle(channels: dict, now_s: float, active_since_s: float, idle_s: float) -> None:
    idle = [c for c, entry in channels.items() if now_s - max(entry[1], active_since_s) > idle_s]
    for channel in idle:
        del channels[channel]


ALIASES = {"httpreqs": "httpreqs2", "httpreqs2": "httpreqs"}  # one table under two names (SPEC §3)


def come_to(channel: str, entry: list, progress: dict | None) -> int | None:
    """How far one channel has come: its own newest event time or its partition's progress.

    A table known under two names is published under one of them: a channel made for one name follows
    the other's progress while its own name has none in that partition."""
    newest = entry[0]
    if progress and len(entry) > 2 and entry[2] is not None:
        table, partition = channel.rsplit(":", 1)[1], entry[2]
        passed = progress.get((table, partition))
        if passed is None and table in ALIASES:
            passed = progress.get((ALIASES[table], partition))
        if passed is not None and (newest is None or passed > newest):
            return passed
    return newest


def _device(channel: str) -> str:
    return channel.rsplit(":", 1)[0]


def event_time(channels: dict, now_s: float, active_since_s: float, idle_s: float,
               progress: dict | None = None) -> int | None:
    """The user's event time, or None while a channel that has come nowhere holds it (or none is known)."""
    forget_idle(channels, now_s, active_since_s, idle_s)
    started = {_device(channel) for channel, entry in channels.items() if entry[0] is not None}
    times = [come_to(channel, entry, progress if _device(channel) in started else None)
             for channel, entry in channels.items()]
    if any(t is None for t in times):
        return None
    return min(times, default=None)
