"""A user's event time: how far every input channel that can still send it something has come.

A ucn user hears from its devices through channels, one per (device, source
table), each in order in its own partition but consumed at its own pace. The
user's event time is the minimum over the channels of the newest event time
each has delivered, so that a channel running ahead cannot close a session
whose events another channel has yet to deliver (an idle-aware per-source
watermark, as in Flink).

Which channels hold it back, and why:

* a channel silent for `idle_s` seconds of processing time stops holding
  (counted from `active_since_s`, when this worker began consuming, so time
  a worker spent dead or recovering is no silence) and is forgotten;
* a channel that has not started (nothing delivered yet) holds the event
  time until it starts or goes idle: its first rows may be behind every
  other channel (a replay's messages carry days of one table's rows, and
  topics are consumed at their own pace), and letting the others run ahead
  made those rows late (tried: 33 wrong features at ucn scale 1);
* channels are made only for personal devices' event tables: shared devices
  and reference tables deliver no activity events (see stream.logic.ucn).

`channels` maps "device:table" to [newest event time or None, processing time
last heard], the JSON-able form kept in the user's state.
"""
from __future__ import annotations


def forget_idle(channels: dict, now_s: float, active_since_s: float, idle_s: float) -> None:
    idle = [c for c, (_, heard) in channels.items() if now_s - max(heard, active_since_s) > idle_s]
    for channel in idle:
        del channels[channel]


def event_time(channels: dict, now_s: float, active_since_s: float, idle_s: float) -> int | None:
    """The user's event time, or None while a channel that has not started holds it (or nothing is known)."""
    forget_idle(channels, now_s, active_since_s, idle_s)
    newest_times = [newest for newest, _ in channels.values()]
    if any(newest is None for newest in newest_times):
        return None
    return min(newest_times, default=None)
