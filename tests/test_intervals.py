"""GapIntervals (bare-interval sessions) against SessionWindow (event-keeping sessions) and brute force."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.logic.intervals import GapIntervals
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


def test_edges():
    window = GapIntervals(GAP, LATENESS, min_duration_us=1)
    for ts in (0, 600, 1_201, 1_201):  # 600 exactly stays; 601 splits; one instant twice is one point
        assert window.add(ts)
    assert window.close_all() == [(0, 600, True), (1_201, 1_201, False)]
    assert not window.add(1_500)  # touches a closed session: late
    assert window.late_events == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=20_000), max_size=40), st.randoms())
def test_same_sessions_as_the_event_window_whatever_the_order_within_lateness(times, rnd):
    arrival = sorted(times)
    for i in range(len(arrival) - 1):  # swap neighbours that are within the lateness of each other
        if rnd.random() < 0.5 and arrival[i + 1] - arrival[i] <= LATENESS:
            arrival[i], arrival[i + 1] = arrival[i + 1], arrival[i]
    intervals = GapIntervals(GAP, LATENESS, min_duration_us=1)
    window = SessionWindow(GAP, lateness_us=LATENESS, min_duration_us=1)
    closed_i, closed_w = [], []
    for n, ts in enumerate(arrival):
        assert intervals.add(ts) == window.add(ts, (n,))
        if rnd.random() < 0.3:
            intervals = GapIntervals(GAP, LATENESS, min_duration_us=1, state=intervals.to_state())  # round trip
            closed_i += intervals.close_due()
            closed_w += window.close_due()
    closed_i += intervals.close_all()
    closed_w += window.close_all()
    assert closed_i == [(s.start_us, s.end_us, s.kept) for s in closed_w]
    assert intervals.late_events == window.late_events
    if window.late_events == 0:
        assert closed_i == _brute_force(times)
