"""Sequence numbers of summaries that never go backwards, even across a crash.

A receiver keeps the newest summary per source by its sequence number. After
a crash, a stage's state comes back from its changelog and may be older than
the last summary it already sent (the summary reached its topic, the state's
changelog record did not). Counting on from the restored number could then
repeat numbers the receiver has seen, and it would drop the newer summary.
Taking the wall clock in microseconds as a floor keeps every new number above
every number sent before the crash.
"""
from __future__ import annotations

import time


def next_seq(previous: int) -> int:
    return max(previous + 1, time.time_ns() // 1000)
