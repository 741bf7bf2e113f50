"""Inactivity-gap session windows ("activities") over out-of-order events.

Why this module exists
----------------------
Sessions depend on the order of events: a session starts at an event whose
gap to the previous event is greater than ``gap_us``. Events reach the stream
out of order (several partitions, several devices, live feeds), yet the
contract (SPEC.md, "Sessions") wants exactly the sessions of a batch
computation that sorts all events by (time, order) and splits at those gaps.

So an event is not put into a session for good when it arrives. The window
keeps the user's *pending* sessions, each a sorted list of events, where a
late event can still extend a session or bridge two sessions into one. A
session becomes final once the watermark (the greatest event time seen, or
one set by ``advance_to``) has passed its end by more than
``gap_us + lateness_us``: from then on no event within the allowed lateness
can touch it (see ``SessionWindow.add``). Final sessions are handed over by
``close_due`` (once per batch) or ``close_all`` (end of a replay) and are not
kept, so the state written to the changelog after every batch stays small.

Two kinds of pending session, one set of rules: a window built with
``keep_events=False`` keeps each pending session as its bounds ``[start,
end]`` only (an aggregate-only window: storj usage sessions, where only the
number and durations of sessions count), so its state stays two integers per
session however long a busy session lasts. Whether events form one session
depends only on the sessions' end points, so both kinds close the same
sessions at the same time.

Times are integer microseconds throughout, never float seconds, so that a gap
of exactly ``gap_us`` stays inside its session.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Callable, NamedTuple

from . import event_codec

DEFAULT_LATENESS_US = 3_600_000_000
DEFAULT_MIN_DURATION_US = 1_000_000


class Event(NamedTuple):
    """One event. ``order`` breaks ties between equal times, e.g. ("dnsreqs", 17)."""

    ts_us: int
    order: tuple
    payload: Any


@dataclass(frozen=True, slots=True)
class ClosedSession:
    """A final session. Sessions that are not ``kept`` are handed over too:
    their events still count in features over the whole history."""

    start_us: int
    end_us: int
    events: list[Event]  # sorted by (ts_us, order); empty in an aggregate-only window
    kept: bool

    @property
    def duration_us(self) -> int:
        return self.end_us - self.start_us


def _sort_key(event: Event) -> tuple:
    return (event.ts_us, event.order)


def _start(session: list[Event]) -> int:
    return session[0].ts_us


def _end(session: list[Event]) -> int:
    return session[-1].ts_us


_bound_start, _bound_end = itemgetter(0), itemgetter(1)  # a pending session of an aggregate-only window


def place_in(sessions: list, ts: int, gap_us: int, start, end) -> tuple[int, bool, bool]:
    """Where an event at `ts` goes among sorted, disjoint pending sessions (`start(s)`, `end(s)` their
    bounds): (how many start at or before it, whether it joins the one before, whether it joins the one
    after). Joining both bridges them."""
    i = bisect_right(sessions, ts, key=start)
    joins_previous = i > 0 and ts - end(sessions[i - 1]) <= gap_us
    joins_next = i < len(sessions) and start(sessions[i]) - ts <= gap_us
    return i, joins_previous, joins_next


def count_due(sessions: list, watermark: int | None, gap_us: int, lateness_us: int, end) -> int:
    """How many pending sessions (always a prefix) are final: the watermark passed their end by more than
    gap + lateness (final <=> watermark > end + gap + lateness <=> end < watermark - gap - lateness)."""
    if watermark is None:
        return 0
    return bisect_left(sessions, watermark - gap_us - lateness_us, key=end)


def _require_int(name: str, value: Any, minimum: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int (microseconds or a count), got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


class SessionWindow:
    """The pending sessions of one key (one user, one project).

    Invariants: pending sessions are sorted, disjoint and separated by gaps
    greater than ``gap_us``; every pending event lies more than ``gap_us``
    after the latest final event.

    With ``keep_events=False`` a pending session is its bounds ``[start, end]``
    (see the module doc): ``add`` takes the time alone and closed sessions
    come without their events.
    """

    def __init__(
        self,
        gap_us: int,
        *,
        lateness_us: int = DEFAULT_LATENESS_US,
        min_duration_us: int = DEFAULT_MIN_DURATION_US,
        min_events: int = 1,
        auto_watermark: bool = True,
        keep_events: bool = True,
    ) -> None:
        """`auto_watermark=False`: `add` does not move the watermark; the caller
        moves it with `advance_to` (e.g. to the minimum over its input sources,
        when events of one key come through several partitions)."""
        _require_int("gap_us", gap_us, minimum=0)
        _require_int("lateness_us", lateness_us, minimum=0)
        _require_int("min_duration_us", min_duration_us, minimum=0)
        _require_int("min_events", min_events, minimum=1)
        if not keep_events and min_events != 1:
            raise ValueError("an aggregate-only window (keep_events=False) does not count events: min_events is 1")
        self.gap_us = gap_us
        self.lateness_us = lateness_us
        self.min_duration_us = min_duration_us
        self.min_events = min_events
        self.auto_watermark = auto_watermark
        self.keep_events = keep_events
        self.watermark: int | None = None
        self.late_events = 0
        self._last_final_ts: int | None = None
        self._sessions: list = []  # list[list[Event]], or [start, end] pairs without keep_events
        self._start: Callable[[list], int] = _start if keep_events else _bound_start
        self._end: Callable[[list], int] = _end if keep_events else _bound_end

    # ----------------------------------------------------------------- input

    def add(self, ts_us: int, order: tuple = (), payload: Any = None) -> bool:
        """Place an event in its session. Returns False for a late event.

        An event is late when it would touch a final session: ts_us minus the
        time of the latest final event is <= gap_us. A late event changes no
        session; it is only counted in ``late_events``.

        An event within the lateness (ts_us >= watermark - lateness_us) is
        never late: a session is final only once watermark > its end +
        gap_us + lateness_us, so such an event lies more than gap_us after it.
        """
        if type(ts_us) is not int:
            _require_int("ts_us", ts_us)
        latest_final = self._latest_final_ts()
        if latest_final is not None and ts_us - latest_final <= self.gap_us:
            self.late_events += 1
            return False
        if self.keep_events:
            self._place(Event(ts_us, tuple(order), payload))
        else:
            self._place_bound(ts_us)
        if self.auto_watermark:
            self.advance_to(ts_us)
        return True

    def advance_to(self, ts_us: int) -> None:
        """Move the watermark forward to ts_us (never backwards)."""
        if type(ts_us) is not int:
            _require_int("ts_us", ts_us)
        if self.watermark is None or ts_us > self.watermark:
            self.watermark = ts_us

    def _place(self, event: Event) -> None:
        sessions = self._sessions
        i, touches_previous, touches_next = place_in(sessions, event.ts_us, self.gap_us, _start, _end)
        if touches_previous:
            insort(sessions[i - 1], event, key=_sort_key)
            if touches_next:  # the event bridges the gap between two sessions
                sessions[i - 1].extend(sessions.pop(i))
        elif touches_next:
            insort(sessions[i], event, key=_sort_key)
        else:
            sessions.insert(i, [event])

    def _place_bound(self, ts: int) -> None:
        sessions = self._sessions
        i, touches_previous, touches_next = place_in(sessions, ts, self.gap_us, _bound_start, _bound_end)
        if touches_previous:
            previous = sessions[i - 1]
            if touches_next:  # the event bridges the gap between two sessions
                previous[1] = sessions.pop(i)[1]
            elif ts > previous[1]:
                previous[1] = ts
        elif touches_next:
            sessions[i][0] = ts
        else:
            sessions.insert(i, [ts, ts])

    # ---------------------------------------------------------------- output

    def close_due(self) -> list[ClosedSession]:
        """Hand over, in time order, the sessions the watermark has passed by
        more than gap_us + lateness_us.

        Such a session is final as soon as the watermark passes it (``add``
        rejects events that would touch it), whenever this is called; calling
        it once per batch keeps the state small.
        """
        return self._hand_over(self._count_due())

    def close_all(self) -> list[ClosedSession]:
        """Hand over every pending session, in time order (end of a replay)."""
        return self._hand_over(len(self._sessions))

    def open_session(self) -> dict | None:
        """``{"start", "last_event_at", "events"}`` of the newest session that
        is not final yet, or None."""
        if self._count_due() == len(self._sessions):
            return None
        newest = self._sessions[-1]
        if not self.keep_events:
            return {"start": newest[0], "last_event_at": newest[1]}
        return {"start": _start(newest), "last_event_at": _end(newest), "events": len(newest)}

    @property
    def pending_events(self) -> int:
        if not self.keep_events:
            raise TypeError("an aggregate-only window does not keep its events")
        return sum(len(session) for session in self._sessions)

    def pending_kept(self) -> tuple[int, int]:
        """(count, total duration) of the pending sessions that would be kept if they closed now (an
        aggregate-only window: features that count open sessions already)."""
        start, end = self._start, self._end
        kept = [end(s) - start(s) for s in self._sessions if self._keeps(s, end(s) - start(s))]
        return len(kept), sum(kept)

    def _count_due(self) -> int:
        """How many pending sessions (always a prefix) are final."""
        return count_due(self._sessions, self.watermark, self.gap_us, self.lateness_us, self._end)

    def _latest_final_ts(self) -> int | None:
        sessions, watermark = self._sessions, self.watermark
        if not sessions or watermark is None or self._end(sessions[0]) >= watermark - self.gap_us - self.lateness_us:
            return self._last_final_ts  # none due (the common case, without a search)
        due = self._count_due()
        return self._end(self._sessions[due - 1]) if due else self._last_final_ts

    def _hand_over(self, count: int) -> list[ClosedSession]:
        finals = self._sessions[:count]
        del self._sessions[:count]
        if finals:
            self._last_final_ts = self._end(finals[-1])
        return [self._closed(session) for session in finals]

    def _keeps(self, session: list, duration_us: int) -> bool:
        return duration_us >= self.min_duration_us and (not self.keep_events or len(session) >= self.min_events)

    def _closed(self, session: list) -> ClosedSession:
        start, end = self._start(session), self._end(session)
        if not self.keep_events:
            return ClosedSession(start, end, [], self._keeps(session, end - start))
        return ClosedSession(start, end, session, self._keeps(session, end - start))

    # ----------------------------------------------------------------- state

    def to_state(self) -> dict:
        """JSON-able state: the pending events (or bounds) and three numbers. The events are flat integer lists
        (stream.logic.event_codec) when they all share one shape of scalar fields, else nested lists
        (orders become lists; payloads are stored as given)."""
        if not self.keep_events:  # short keys: a storj project writes this at every batch
            return {"p": self._sessions, "w": self.watermark, "f": self._last_final_ts, "l": self.late_events}
        state: dict[str, Any] = {"watermark": self.watermark, "last_final_ts": self._last_final_ts,
                 "late_events": self.late_events}
        flat = event_codec.encode(self._sessions)
        if flat is not None:
            state.update(flat)
        else:
            state["sessions"] = [[[event.ts_us, list(event.order), event.payload] for event in session]
                                 for session in self._sessions]
        return state

    @classmethod
    def from_state(cls, state: dict, **params: Any) -> SessionWindow:
        """Restore a window from ``to_state()`` (or its JSON round trip).
        ``params`` are the constructor's and must be those the state was
        built with."""
        window = cls(**params)
        if not window.keep_events:
            window._sessions = state.get("p", [])
            window.watermark, window._last_final_ts = state.get("w"), state.get("f")
            window.late_events = state.get("l", 0)
            return window
        window.watermark = state["watermark"]
        window._last_final_ts = state["last_final_ts"]
        window.late_events = state["late_events"]
        if "flat" in state:
            window._sessions = event_codec.decode(state, Event)
        else:
            window._sessions = [
                [Event(ts_us, tuple(order), payload) for ts_us, order, payload in session]
                for session in state["sessions"]
            ]
        return window


def pending_in_state(state: dict) -> int:
    """Pending events of a window state, without restoring the window."""
    return event_codec.event_count(state)
