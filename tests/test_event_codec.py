"""The compact encoding of a session window's pending events (stream.logic.event_codec)."""
from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.logic import event_codec
from stream.logic.sessions import Event, SessionWindow, pending_in_state

scalars = st.one_of(st.integers(-2**62, 2**62), st.none(), st.booleans(), st.text(max_size=5),
                    st.floats(allow_nan=False, allow_infinity=False))


@st.composite
def windows(draw):
    """Sessions of events that share one shape: orders and payloads of any scalars."""
    order_len, payload_len = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    event = st.builds(lambda ts, order, payload: Event(ts, tuple(order), list(payload)),
                      st.integers(0, 2**60), st.lists(scalars, min_size=order_len, max_size=order_len),
                      st.lists(scalars, min_size=payload_len, max_size=payload_len))
    return draw(st.lists(st.lists(event, min_size=1, max_size=8), max_size=5))


def _round_trip(state: dict) -> dict:
    return orjson.loads(orjson.dumps(state))


@given(windows())
@settings(max_examples=300)
def test_every_window_of_one_shape_comes_back_as_it_was(sessions):
    encoded = event_codec.encode(sessions)
    assert encoded is not None
    decoded = event_codec.decode(_round_trip(encoded), Event)
    assert decoded == sessions
    # the types too: True is not 1, 1.0 is not 1
    assert [[tuple(map(type, (*e.order, *e.payload))) for e in s] for s in decoded] == \
           [[tuple(map(type, (*e.order, *e.payload))) for e in s] for s in sessions]
    assert event_codec.event_count(encoded) == sum(map(len, sessions))


def test_events_of_different_shapes_or_nested_values_are_not_encoded():
    assert event_codec.encode([[Event(1, ("a", 1), [1]), Event(2, ("a", 2), [1, 2])]]) is None
    assert event_codec.encode([[Event(1, ("a", 1), None)]]) is None
    assert event_codec.encode([[Event(1, ("a", 1), [[1, 2]])]]) is None


def test_a_window_of_anything_else_keeps_nested_lists_and_restores():
    window = SessionWindow(600)
    window.add(1, ("dnsreqs", 1), {"device": 7})
    state = _round_trip(window.to_state())
    assert "sessions" in state and pending_in_state(state) == 1
    assert SessionWindow.from_state(state, gap_us=600).to_state() == state


def test_a_ucn_like_window_takes_under_a_third_of_the_bytes_of_nested_lists():
    ts0 = 1_609_459_200_000_000
    sessions = [[Event(ts0 + 1_000_000 * i, ("dnsreqs" if i % 2 else "httpreqs", 3 * i + 1),
                       [7, "example.org"]) for i in range(1_000)]]
    nested = orjson.dumps([[[e.ts_us, list(e.order), e.payload] for e in s] for s in sessions])
    flat = orjson.dumps(event_codec.encode(sessions))
    assert len(flat) * 3 < len(nested), (len(flat), len(nested))
