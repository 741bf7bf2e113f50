"""Lists of events as flat integer lists: about a third of the bytes of nested lists.

A ucn user's session window is written to its changelog after every batch,
and a device's contribution to its users is a record too: the bytes per
event decide how many events fit in one record. Nested lists spell every
event out (`[1609459200000000, ["dnsreqs", 300001], [7, "example.org"]]`,
54 bytes). Here rows of scalars of one width become one flat list of
integers, field by field:

* an integer (a time, an id, a device) as twice its difference to the same
  field of the row before it (the first row's to 0): times and ids that come
  in order cost a few digits;
* any other value (a table name, a domain, None, an integer too far from the
  one before) as twice its index in one list of distinct values, plus one.

So `2000000,1,6,0,3` instead of the 54 bytes above. Rows must all have the
same width and scalar fields; the encoders return None otherwise and the
caller keeps nested lists.
"""
from __future__ import annotations

SCALARS = (str, float, bool, type(None))
FITS = 2**61  # twice a difference stays a 64-bit integer (JSON as orjson writes it); beyond, the value is listed


class _Values:
    """The distinct non-integer values of one encoding, each listed once."""

    def __init__(self) -> None:
        self.listed: list = []
        self._index: dict = {}

    def code(self, value) -> int | None:
        if not isinstance(value, SCALARS) and type(value) is not int:
            return None
        key = (type(value), value)  # True is not 1, 1.0 is not 1
        at = self._index.get(key)
        if at is None:
            at = self._index[key] = len(self.listed)
            self.listed.append(value)
        return 2 * at + 1


def _flat(rows, width: int, values: _Values) -> list[int] | None:
    flat: list[int] = []
    previous = [0] * width
    for row in rows:
        if len(row) != width:
            return None
        for i, value in enumerate(row):
            if type(value) is int and -FITS < value - previous[i] < FITS:
                flat.append(2 * (value - previous[i]))
                previous[i] = value
            else:
                code = values.code(value)
                if code is None:
                    return None
                flat.append(code)
    return flat


def _rows(flat: list[int], width: int, values: list) -> list[list]:
    rows = []
    previous = [0] * width
    for start in range(0, len(flat), width):
        row = []
        for i, code in enumerate(flat[start:start + width]):
            if code & 1:
                row.append(values[code >> 1])
            else:
                previous[i] += code >> 1
                row.append(previous[i])
        rows.append(row)
    return rows


def encode_rows(rows: list[list]) -> dict | None:
    """{"w", "v", "f"} for rows of scalars of one width, or None."""
    width = len(rows[0]) if rows else 0
    values = _Values()
    flat = _flat(rows, width, values)
    return None if flat is None else {"w": width, "v": values.listed, "f": flat}


def decode_rows(encoded: dict) -> list[list]:
    return _rows(encoded["f"], encoded["w"], encoded["v"]) if encoded["w"] else []


def encode(sessions: list[list]) -> dict | None:
    """{"shape", "values", "flat"} for `sessions` (lists of events with ts_us, order and a list or tuple
    payload, one flat list per session), or None when the events do not all share one shape."""
    if not sessions:
        return {"shape": [0, 0], "values": [], "flat": []}
    first = sessions[0][0]
    if not isinstance(first.payload, (list, tuple)):
        return None
    order_len, payload_len = len(first.order), len(first.payload)
    width = 1 + order_len + payload_len
    values = _Values()
    flat_sessions = []
    for session in sessions:
        if any(not isinstance(e.payload, (list, tuple)) or len(e.order) != order_len for e in session):
            return None
        flat = _flat([(e.ts_us, *e.order, *e.payload) for e in session], width, values)
        if flat is None:
            return None
        flat_sessions.append(flat)
    return {"shape": [order_len, payload_len], "values": values.listed, "flat": flat_sessions}


def decode(state: dict, make_event) -> list[list]:
    """The sessions `encode` wrote, each event built by make_event(ts_us, order tuple, payload list)."""
    order_len, payload_len = state["shape"]
    width = 1 + order_len + payload_len
    return [[make_event(row[0], tuple(row[1:1 + order_len]), row[1 + order_len:])
             for row in _rows(flat, width, state["values"])] for flat in state["flat"]]


def event_count(state: dict) -> int:
    """Pending events in an encoded (or nested) window state, without decoding it."""
    if "flat" in state:
        width = sum(state["shape"]) + 1
        return sum(len(flat) // width for flat in state["flat"])
    return sum(len(session) for session in state["sessions"])
