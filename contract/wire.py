"""Event wire format (SPEC §2): JSON row objects, arrays of rows of one key, and marks.

A mark is a JSON object with a `__mark__` field. The replay tool sends an
`end` mark to every partition of every source topic once a run is published;
stream stages pass it on so that every window closes and the run is reported
done. `progress` marks say how far in event time a partition has come: the
replay sends them into every partition as it goes, and a stage sends its own
on to the next. Live producers never need marks.
"""
from __future__ import annotations

import msgspec
import orjson

MARK_FIELD = "__mark__"
# The largest message value the stream writes: under the broker's limit on a request (1 MiB in Apache
# Kafka's and aiokafka's defaults), key and headers included.
MAX_VALUE_BYTES = 1_000_000


# A message header the replay adds: the event time (us, decimal) its rows are up to, so that a worker can
# read the partitions of one event-time clock at the same pace (stream.runtime.alignment). Optional: a
# message without it is never held back.
EVENT_TIME_HEADER = "et"


def event_time_header(ts_us: int) -> list[tuple[str, bytes]]:
    return [(EVENT_TIME_HEADER, str(ts_us).encode())]


def header_int(headers, wanted: str) -> int | None:
    """The whole number a message's header `wanted` holds, or None (no such header, or not a number)."""
    for name, value in headers or ():
        if name == wanted:
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
    return None


def header_event_time(headers) -> int | None:
    """The event time a message's headers give (EVENT_TIME_HEADER), or None."""
    return header_int(headers, EVENT_TIME_HEADER)


class BadMessage(ValueError):
    """A message value that is not JSON, or not a row or an array of rows."""


_STRUCTS = msgspec.json.Encoder()


def struct_json(value) -> orjson.Fragment:
    """orjson's `default` for typed records: a msgspec Struct as msgspec writes it (TypeError otherwise)."""
    if isinstance(value, msgspec.Struct):
        return orjson.Fragment(_STRUCTS.encode(value))
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def encode_rows(rows: list) -> bytes:
    """Rows or records (dicts, or typed records: msgspec Structs, which msgspec writes faster than orjson
    can call back for them) as one message value."""
    value = rows if len(rows) != 1 else rows[0]
    if rows and isinstance(rows[0], msgspec.Struct):
        return _STRUCTS.encode(value)
    return orjson.dumps(value, default=struct_json)


def encode_rows_within(rows: list, limit: int | None = None) -> list[bytes]:
    """The rows as one message value, or as several in order when one would pass `limit` (a key that
    gets many records in one batch). A single row is never split."""
    limit = MAX_VALUE_BYTES if limit is None else limit
    value = encode_rows(rows)
    if len(value) <= limit or len(rows) == 1:
        return [value]
    half = len(rows) // 2
    return encode_rows_within(rows[:half], limit) + encode_rows_within(rows[half:], limit)


def encode_mark(run: str, origin: str, **extra) -> bytes:
    return orjson.dumps({MARK_FIELD: "end", "run": run, "origin": origin, **extra})


PROGRESS = "progress"


def encode_progress(table: str, partition: int, ts_us: int | None, run: str | None = None) -> bytes:
    """A word that every row of `table`'s partition up to event time `ts_us` is ahead of this mark.

    From the replay (`run` set) into every partition of every source topic: every row of the run up to
    `ts_us` was published before it. From a stage to the next: every such row has been applied and what
    the stage sent downstream for it is ahead of the mark (stream.logic.source_clock); `run` says the
    rows came from a replay still running, None from a live feed."""
    mark = {MARK_FIELD: PROGRESS, "table": table, "partition": partition, "ts": ts_us}
    if run is not None:
        mark["run"] = run
    return orjson.dumps(mark)


def decode(value: bytes):
    """Return ("rows", [row, ...]) or ("mark", mark_dict); raise BadMessage otherwise."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadMessage(f"not JSON: {exc}") from None
    if isinstance(obj, dict):
        if MARK_FIELD in obj:
            return "mark", obj
        return "rows", [obj]
    if isinstance(obj, list):
        return "rows", obj
    raise BadMessage(f"not a row or an array of rows: {type(obj).__name__}")
