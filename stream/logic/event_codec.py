"""A session window's pending events as flat integer lists: about a third of the bytes of nested lists.

A ucn user's window is written to its changelog after every batch, and what it
holds is every event not yet behind the user's event time: the bytes per
event decide how many events fit in one record. Nested lists spell every
event out (`[1609459200000000, ["dnsreqs", 300001], [7, "example.org"]]`,
54 bytes). Here each session is one flat list of integers, field by field:

* the time as a difference to the event before it (the first to 0);
* an integer field as twice its difference to the same field of the event
  before it (ids that come in order cost a digit or two);
* any other value (a table name, a domain, None, an integer too far from
  the one before) as twice its index in one list of distinct values for the
  whole window, plus one.

So `1000000,0,3,0,0` instead of the 54 bytes above. Every event of a window
must have the same shape (the same number of order and payload fields) and
scalar fields; `encode` returns None otherwise and the caller keeps nested
lists.
"""
from __future__ import annotations

SCALARS = (str, float, bool, type(None))
FITS = 2**61  # twice a difference stays a 64-bit integer (JSON as orjson writes it); beyond, the value is listed


def _shape(event) -> tuple[int, int] | None:
    payload = event.payload
    if not isinstance(payload, (list, tuple)):
        return None
    return len(event.order), len(payload)


def encode(sessions: list[list]) -> dict | None:
    """{"shape", "values", "flat"} for `sessions` (lists of events with ts_us, order and payload), or None
    when the events do not all share one shape of scalar fields."""
    shape = None
    values: list = []
    index: dict = {}
    flat_sessions = []
    for session in sessions:
        flat: list[int] = []
        previous_ts = 0
        previous = [0] * (shape[0] + shape[1]) if shape else []
        for event in session:
            if shape is None:
                shape = _shape(event)
                if shape is None:
                    return None
                previous = [0] * (shape[0] + shape[1])
            elif _shape(event) != shape:
                return None
            flat.append(event.ts_us - previous_ts)
            previous_ts = event.ts_us
            for i, value in enumerate((*event.order, *event.payload)):
                if type(value) is int and -FITS < value - previous[i] < FITS:
                    flat.append(2 * (value - previous[i]))
                    previous[i] = value
                elif isinstance(value, SCALARS) or type(value) is int:
                    key = (type(value), value)
                    at = index.get(key)
                    if at is None:
                        at = index[key] = len(values)
                        values.append(value)
                    flat.append(2 * at + 1)
                else:
                    return None
        flat_sessions.append(flat)
    return {"shape": list(shape or (0, 0)), "values": values, "flat": flat_sessions}


def decode(state: dict, make_event) -> list[list]:
    """The sessions `encode` wrote, each event built by make_event(ts_us, order tuple, payload list)."""
    order_len, payload_len = state["shape"]
    width = order_len + payload_len
    values = state["values"]
    sessions = []
    for flat in state["flat"]:
        events = []
        ts = 0
        previous = [0] * width
        for start in range(0, len(flat), width + 1):
            ts += flat[start]
            fields = []
            for i, code in enumerate(flat[start + 1: start + 1 + width]):
                if code & 1:
                    fields.append(values[code >> 1])
                else:
                    previous[i] += code >> 1
                    fields.append(previous[i])
            events.append(make_event(ts, tuple(fields[:order_len]), fields[order_len:]))
        sessions.append(events)
    return sessions


def event_count(state: dict) -> int:
    """Pending events in an encoded (or nested) window state, without decoding it."""
    if "flat" in state:
        width = sum(state["shape"]) + 1
        return sum(len(flat) // width for flat in state["flat"])
    return sum(len(session) for session in state["sessions"])
