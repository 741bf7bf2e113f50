"""Aggregate-only session windows (bounds kept, no events) against event-keeping ones and brute force."""
from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.logic.sessions import SessionWindow

GAP, LATENESS = 600, 3_000


def _brute_force(times):
    sessions, current = [], None
    for ts in sorted(times):
        if current is None or ts - current[1] > GAP:
            current = [ts, ts]
            sessions.append(current)
        else:
            current[1] = ts
    return [(a, b, b - a >= 1) for a, b in sessions]


def _bounds_only(state: dict | None = None) -> SessionWindow:
    params = {"gap_us": GAP, "lateness_us": LATENESS, "min_duration_us": 1, "keep_events": False}
    return SessionWindow(**params) if state is None else SessionWindow.from_state(state, **params)


def _bounds(closed) -> list[tuple[int, int, bool]]:
    return [(s.start_us, s.end_us, s.kept) for s in closed]


def test_edges():
    window = _bounds_only()
    for ts in (0, 600, 1_201, 1_201):  # 600 exactly stays; 601 splits; one instant twice is one point
        assert window.add(ts)
    assert _bounds(window.close_all()) == [(0, 600, True), (1_201, 1_201, False)]
    assert not window.add(1_500)  # touches a closed session: late
    assert window.late_events == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=20_000), max_size=40), st.randoms())
def test_same_sessions_as_the_event_window_whatever_the_order_within_lateness(times, rnd):
    arrival = sorted(times)
    for i in range(len(arrival) - 1):  # swap neighbours that are within the lateness of each other
        if rnd.random() < 0.5 and arrival[i + 1] - arrival[i] <= LATENESS:
            arrival[i], arrival[i + 1] = arrival[i + 1], arrival[i]
    intervals = _bounds_only()
    window = SessionWindow(GAP, lateness_us=LATENESS, min_duration_us=1)
    closed_i, closed_w = [], []
    for n, ts in enumerate(arrival):
        assert intervals.add(ts) == window.add(ts, (n,))
        if rnd.random() < 0.3:
            intervals = _bounds_only(orjson.loads(orjson.dumps(intervals.to_state())))  # round trip
            closed_i += _bounds(intervals.close_due())
            closed_w += window.close_due()
    closed_i += _bounds(intervals.close_all())
    closed_w += window.close_all()
    assert closed_i == [(s.start_us, s.end_us, s.kept) for s in closed_w]
    assert intervals.late_events == window.late_events
    if window.late_events == 0:
        assert closed_i == _brute_force(times)


@settings(max_examples=300, deadline=None)
@given(st.randoms())
def test_what_is_late_does_not_depend_on_when_sessions_are_handed_over(rnd):
    """Any arrival order, lateness passed or not: both kinds of window take the same events as late, and
    the aggregate-only one closes the same sessions whether it hands them over after every event or once."""
    intervals, window = _bounds_only(), SessionWindow(GAP, lateness_us=LATENESS, min_duration_us=1)
    arrival = [rnd.randrange(30_000) for _ in range(rnd.randrange(60))]
    closed_i = []
    for ts in arrival:
        assert intervals.add(ts) == window.add(ts, (ts,))
        if rnd.random() < 0.5:
            closed_i += _bounds(intervals.close_due())
    closed_i += _bounds(intervals.close_all())
    assert closed_i == _bounds(window.close_all())
    assert intervals.late_events == window.late_events


def test_pending_kept_counts_the_open_sessions_that_would_be_kept():
    window = _bounds_only()
    for ts in (0, 500, 2_000, 10_000, 10_300):
        window.add(ts)
    assert window.pending_kept() == (2, 500 + 300)  # (2,000, 2,000) lasts 0 us: not kept
