"""Inactivity-gap sessions kept as bare intervals, for features that need no per-event detail.

Whether events form one session depends only on the sessions' end points:
an event joins a session when it lies within `gap_us` of it, and bridges two
when it lies within `gap_us` of both. So when only the number and durations of
sessions count (storj usage sessions), each pending session is a `[start,
end]` pair and the state stays two integers per session, however long a busy
session lasts — unlike `SessionWindow`, which keeps every event for session
records. Same rules as `SessionWindow`, by the same code (`place_in`,
`count_due` in sessions.py): sessions close once the watermark has passed
their end by gap + lateness; an event touching a closed session is late and
changes nothing.
"""
from __future__ import annotations

from operator import itemgetter

from .sessions import DEFAULT_LATENESS_US, DEFAULT_MIN_DURATION_US, count_due, place_in

_start, _end = itemgetter(0), itemgetter(1)  # a pending session is [start, end]


class GapIntervals:
    def __init__(self, gap_us: int, lateness_us: int = DEFAULT_LATENESS_US,
                 min_duration_us: int = DEFAULT_MIN_DURATION_US, state: dict | None = None):
        self.gap_us, self.lateness_us, self.min_duration_us = gap_us, lateness_us, min_duration_us
        state = state or {}
        self.pending: list[list[int]] = state.get("p", [])  # sorted, disjoint [start, end]
        self.watermark: int | None = state.get("w")
        self.last_final: int | None = state.get("f")  # end of the newest closed session
        self.late_events: int = state.get("l", 0)

    def add(self, ts: int) -> bool:
        """Place an event; False (and counted) when it would touch a closed session."""
        if self.last_final is not None and ts - self.last_final <= self.gap_us:
            self.late_events += 1
            return False
        pending = self.pending
        i, joins_previous, joins_next = place_in(pending, ts, self.gap_us, _start, _end)
        if joins_previous and joins_next:
            pending[i - 1][1] = pending.pop(i)[1]
            pending[i - 1][1] = max(pending[i - 1][1], ts)
        elif joins_previous:
            pending[i - 1][1] = max(pending[i - 1][1], ts)
        elif joins_next:
            pending[i][0] = ts
        else:
            pending.insert(i, [ts, ts])
        if self.watermark is None or ts > self.watermark:
            self.watermark = ts
        return True

    def close_due(self) -> list[tuple[int, int, bool]]:
        """(start, end, kept) of the sessions the watermark has passed by gap + lateness, oldest first."""
        return self._hand_over(count_due(self.pending, self.watermark, self.gap_us, self.lateness_us, _end))

    def close_all(self) -> list[tuple[int, int, bool]]:
        return self._hand_over(len(self.pending))

    def _hand_over(self, count: int) -> list[tuple[int, int, bool]]:
        closed, self.pending = self.pending[:count], self.pending[count:]
        if closed:
            self.last_final = closed[-1][1]
        return [(start, end, end - start >= self.min_duration_us) for start, end in closed]

    def pending_kept(self) -> tuple[int, int]:
        """(count, total duration) of the pending sessions that would be kept if they closed now."""
        kept = [end - start for start, end in self.pending if end - start >= self.min_duration_us]
        return len(kept), sum(kept)

    def to_state(self) -> dict:
        return {"p": self.pending, "w": self.watermark, "f": self.last_final, "l": self.late_events}
