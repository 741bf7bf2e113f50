"""Tests of stream.logic.sessions against hand-computed cases and a brute
force (sort every event, split at gaps > gap) written here on its own."""

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.logic.sessions import SessionWindow, pending_in_state

S = 1_000_000  # one second in microseconds
GAP = 600 * S
LATENESS = 3_600 * S


# --------------------------------------------------------------- brute force


def brute_force_sessions(events, gap_us, min_duration_us, min_events):
    """(start, end, events, kept) of the sessions of all events at once."""
    ordered = sorted(events, key=lambda event: (event[0], event[1]))
    groups = []
    for event in ordered:
        if groups and event[0] - groups[-1][-1][0] <= gap_us:
            groups[-1].append(event)
        else:
            groups.append([event])
    return [
        (
            group[0][0],
            group[-1][0],
            [tuple(event) for event in group],
            group[-1][0] - group[0][0] >= min_duration_us and len(group) >= min_events,
        )
        for group in groups
    ]


def as_tuples(closed_sessions):
    return [
        (session.start_us, session.end_us, [tuple(event) for event in session.events], session.kept)
        for session in closed_sessions
    ]


def json_round_trip(window, params):
    return SessionWindow.from_state(orjson.loads(orjson.dumps(window.to_state())), **params)


def feed(window, timestamps, first_id=0):
    """Add events ("dnsreqs", id) at the given times; return the add results."""
    return [window.add(ts, ("dnsreqs", i), {"i": i}) for i, ts in enumerate(timestamps, start=first_id)]


def session_bounds(closed_sessions):
    return [(session.start_us, session.end_us, len(session.events)) for session in closed_sessions]


# ------------------------------------------------------------ hand-computed


def test_gap_of_exactly_gap_us_stays_in_the_session():
    window = SessionWindow(GAP)
    feed(window, [0, 600 * S])
    assert session_bounds(window.close_all()) == [(0, 600 * S, 2)]


def test_gap_one_microsecond_over_gap_us_starts_a_new_session():
    window = SessionWindow(GAP)
    feed(window, [0, 600_000_001])
    assert session_bounds(window.close_all()) == [(0, 0, 1), (600_000_001, 600_000_001, 1)]


def test_min_duration_edge():
    window = SessionWindow(GAP)
    feed(window, [0, 1 * S, 700 * S, 700 * S + 999_999])
    first, second = window.close_all()
    assert (first.duration_us, first.kept) == (1 * S, True)
    assert (second.duration_us, second.kept) == (999_999, False)


def test_min_events():
    window = SessionWindow(GAP, min_events=3)
    feed(window, [0, 10 * S, 1_000 * S, 1_005 * S, 1_010 * S])
    two_events, three_events = window.close_all()
    assert (len(two_events.events), two_events.kept) == (2, False)
    assert (len(three_events.events), three_events.kept) == (3, True)


def test_unkept_sessions_are_handed_over_with_their_events():
    window = SessionWindow(GAP)
    window.add(5 * S, ("dnsreqs", 1), {"query": "a.example"})
    (session,) = window.close_all()
    assert not session.kept
    assert [event.payload for event in session.events] == [{"query": "a.example"}]


def test_equal_timestamps_are_one_instant_ordered_by_order():
    window = SessionWindow(GAP)
    window.add(7 * S, ("httpreqs", 2), "h2")
    window.add(7 * S, ("dnsreqs", 9), "d9")
    window.add(7 * S, ("httpreqs", 1), "h1")
    (session,) = window.close_all()
    assert [event.payload for event in session.events] == ["d9", "h1", "h2"]
    assert (session.duration_us, session.kept) == (0, False)


def test_late_event_within_lateness_bridges_two_sessions():
    window = SessionWindow(GAP)
    feed(window, [0, 1_000 * S])
    assert window.open_session() == {"start": 1_000 * S, "last_event_at": 1_000 * S, "events": 1}
    assert window.add(500 * S, ("dnsreqs", 99), None)
    assert window.open_session() == {"start": 0, "last_event_at": 1_000 * S, "events": 3}
    assert session_bounds(window.close_all()) == [(0, 1_000 * S, 3)]


def test_late_event_within_lateness_extends_a_session_backwards():
    window = SessionWindow(GAP)
    feed(window, [1_000 * S, 1_100 * S])
    assert window.add(500 * S, ("dnsreqs", 99), None)
    assert session_bounds(window.close_all()) == [(500 * S, 1_100 * S, 3)]


def test_event_later_than_the_lateness_is_late_and_changes_nothing():
    window = SessionWindow(GAP)
    feed(window, [0, 100 * S, 5_000 * S])  # watermark 5,000 s > 100 s + 600 s + 3,600 s
    assert window.add(650 * S, ("dnsreqs", 50), None) is False
    assert window.late_events == 1
    assert session_bounds(window.close_all()) == [(0, 100 * S, 2), (5_000 * S, 5_000 * S, 1)]


def test_lateness_edge_exactly():
    end = 100 * S
    window = SessionWindow(GAP)
    feed(window, [0, end])
    window.advance_to(end + GAP + LATENESS + 1)  # the first session just became final
    # watermark - lateness = end + gap + 1: the oldest time still within the lateness
    assert window.add(end + GAP, ("dnsreqs", 10), None) is False
    assert window.add(end + GAP + 1, ("dnsreqs", 11), None) is True
    assert window.late_events == 1
    assert session_bounds(window.close_all()) == [(0, end, 2), (end + GAP + 1, end + GAP + 1, 1)]


def test_event_beyond_lateness_that_touches_no_final_session_is_placed():
    window = SessionWindow(GAP)
    feed(window, [0, 5_000 * S])
    # 1,000 s is older than watermark - lateness (1,400 s) but 1,000 s from the final event at 0
    assert window.add(1_000 * S, ("dnsreqs", 7), None) is True
    assert session_bounds(window.close_all()) == [(0, 0, 1), (1_000 * S, 1_000 * S, 1), (5_000 * S, 5_000 * S, 1)]


def test_close_on_watermark_needs_strictly_more_than_gap_plus_lateness():
    window = SessionWindow(GAP)
    feed(window, [0, 10 * S])
    window.advance_to(10 * S + GAP + LATENESS)
    assert window.close_due() == []
    assert window.open_session() == {"start": 0, "last_event_at": 10 * S, "events": 2}
    window.advance_to(10 * S + GAP + LATENESS + 1)
    assert window.open_session() is None
    assert session_bounds(window.close_due()) == [(0, 10 * S, 2)]
    assert window.close_due() == []
    assert window.pending_events == 0


def test_close_due_hands_over_only_passed_sessions_close_all_the_rest():
    window = SessionWindow(GAP)
    feed(window, [0, 1 * S, 2_000 * S, 2_001 * S, 4_500 * S])
    # watermark 4,500 s: only the session ending at 1 s is passed by gap + lateness (4,201 s)
    assert session_bounds(window.close_due()) == [(0, 1 * S, 2)]
    assert window.open_session() == {"start": 4_500 * S, "last_event_at": 4_500 * S, "events": 1}
    assert session_bounds(window.close_all()) == [(2_000 * S, 2_001 * S, 2), (4_500 * S, 4_500 * S, 1)]
    assert window.open_session() is None


def test_watermark_never_moves_backwards():
    window = SessionWindow(GAP)
    assert window.watermark is None
    feed(window, [50 * S, 10 * S])
    window.advance_to(20 * S)
    assert window.watermark == 50 * S


def test_open_session_is_none_when_empty():
    assert SessionWindow(GAP).open_session() is None


def test_float_times_are_refused():
    window = SessionWindow(GAP)
    with pytest.raises(TypeError):
        window.add(1.5, ("dnsreqs", 1), None)
    with pytest.raises(TypeError):
        SessionWindow(600.0)


def test_state_round_trip_mid_stream_gives_the_same_sessions():
    params = {"gap_us": GAP, "min_events": 3}
    first_half = [0, 10 * S, 20 * S, 5_000 * S, 5_001 * S]
    second_half = [4_800 * S, 100 * S, 9_000 * S, 5_002 * S]  # one extends a session, one is late

    uninterrupted = SessionWindow(**params)
    feed(uninterrupted, first_half + second_half)
    expected = uninterrupted.close_all()

    window = SessionWindow(**params)
    feed(window, first_half)
    closed = window.close_due()
    state = window.to_state()
    assert pending_in_state(state) == window.pending_events == 2
    assert SessionWindow.from_state(json.loads(json.dumps(state)), **params).to_state() == state
    restored = json_round_trip(window, params)
    assert restored.to_state() == state
    assert feed(restored, second_half, first_id=len(first_half)) == [True, False, True, True]
    closed += restored.close_all()

    assert as_tuples(closed) == as_tuples(expected)
    assert session_bounds(closed) == [(0, 20 * S, 3), (4_800 * S, 5_002 * S, 4), (9_000 * S, 9_000 * S, 1)]
    assert [session.kept for session in closed] == [True, True, False]
    assert restored.late_events == uninterrupted.late_events == 1


# --------------------------------------------------------------- properties

PARAMS = st.fixed_dictionaries(
    {
        "gap_us": st.integers(0, 20),
        "lateness_us": st.integers(0, 40),
        "min_duration_us": st.integers(0, 15),
        "min_events": st.integers(1, 4),
    }
)
EVENT_LISTS = st.lists(
    st.tuples(st.integers(0, 200), st.sampled_from(["dnsreqs", "httpreqs"])), max_size=40
).map(lambda drawn: [(ts, (table, i), {"i": i}) for i, (ts, table) in enumerate(drawn)])
STEPS_BETWEEN_ADDS = st.sampled_from(["nothing", "close_due", "persist", "close_due and persist"])


def brute_force(events, params):
    return brute_force_sessions(events, params["gap_us"], params["min_duration_us"], params["min_events"])


def run(events_in_arrival_order, params, steps, advances):
    """Feed events in the given order with the given step after each add
    (and advance_to(t) before it when t is not None); end with close_all.
    Returns (add results, closed sessions, watermark before each add, window)."""
    window = SessionWindow(**params)
    accepted, closed, watermarks = [], [], []
    for event, step, advance in zip(events_in_arrival_order, steps, advances):
        if advance is not None:
            window.advance_to(advance)
        watermarks.append(window.watermark)
        accepted.append(window.add(*event))
        if "close_due" in step:
            closed += window.close_due()
        if "persist" in step:
            window = json_round_trip(window, params)
    closed += window.close_all()
    return accepted, closed, watermarks, window


@settings(deadline=None, max_examples=1000)
@given(params=PARAMS, events=EVENT_LISTS, data=st.data())
def test_any_arrival_within_the_lateness_gives_the_batch_sessions(params, events, data):
    n = len(events)
    delays = data.draw(st.lists(st.integers(0, params["lateness_us"]), min_size=n, max_size=n))
    salts = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    steps = data.draw(st.lists(STEPS_BETWEEN_ADDS, min_size=n, max_size=n))
    arrival = [events[i] for i in sorted(range(n), key=lambda i: (events[i][0] + delays[i], salts[i]))]
    for k, event in enumerate(arrival):  # the generator keeps every event within the lateness
        assert event[0] >= max((e[0] for e in arrival[:k]), default=0) - params["lateness_us"]

    accepted, closed, _, window = run(arrival, params, steps, [None] * n)

    assert all(accepted)
    assert window.late_events == 0
    assert as_tuples(closed) == brute_force(events, params)
    assert window.open_session() is None and window.pending_events == 0


@settings(deadline=None, max_examples=1000)
@given(params=PARAMS, events=EVENT_LISTS, data=st.data())
def test_any_arrival_at_all_places_accepted_events_exactly(params, events, data):
    n = len(events)
    arrival = data.draw(st.permutations(events))
    steps = data.draw(st.lists(STEPS_BETWEEN_ADDS, min_size=n, max_size=n))
    advances = data.draw(st.lists(st.none() | st.integers(0, 260), min_size=n, max_size=n))

    accepted, closed, watermarks, window = run(arrival, params, steps, advances)

    accepted_events = [event for event, ok in zip(arrival, accepted) if ok]
    assert len(accepted_events) + window.late_events == n
    assert as_tuples(closed) == brute_force(accepted_events, params)
    for event, ok, watermark in zip(arrival, accepted, watermarks):
        if watermark is None or event[0] >= watermark - params["lateness_us"]:
            assert ok, "an event within the lateness must never be late"

    # when sessions are handed over and when the state is persisted changes nothing
    plain_accepted, plain_closed, _, plain_window = run(arrival, params, ["nothing"] * n, advances)
    assert plain_accepted == accepted
    assert as_tuples(plain_closed) == as_tuples(closed)
    assert plain_window.late_events == window.late_events
