"""Event time as integer microseconds since the epoch (UTC).

Gaps and bins are compared on integers so that an edge of exactly 600 s or
0.001 s falls on the right side. ISO strings exist only at the edges.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1)
ONE_US = timedelta(microseconds=1)
US_PER_S = 1_000_000
# Event times the stream accepts: a day away from both ends of the calendar, so that local time in
# any zone (and a session gap or a week slot beside it) is still a date Python can represent.
MIN_TS_US = (datetime(1, 1, 2) - EPOCH) // ONE_US
MAX_TS_US = (datetime(9999, 12, 31) - EPOCH) // ONE_US

_ISO_SHAPE = re.compile(  # a zone only after a time: "2021-01-01+01:00" is not a time
    r"^\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$"
)


class BadTime(ValueError):
    """A timestamp that is missing or not in an accepted shape."""


def parse_ts(value) -> int:
    """Parse a wire/CSV/DB timestamp into integer microseconds (UTC)."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if not _ISO_SHAPE.match(text):
            raise BadTime(f"unparsable time {value!r}")
        try:
            dt = datetime.fromisoformat(text)
        except ValueError as exc:
            raise BadTime(f"unparsable time {value!r}") from exc
    elif value is None:
        raise BadTime("missing time")
    else:
        raise BadTime(f"unparsable time {value!r}")
    if dt.tzinfo is not None:
        try:
            dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError:  # "0001-01-01T00:00:00+01:00" is before year 1 in UTC
            raise BadTime(f"time out of range {value!r}") from None
    ts = (dt - EPOCH) // ONE_US
    if not MIN_TS_US <= ts < MAX_TS_US:
        raise BadTime(f"time out of range {value!r}")
    return ts


def _is_canonical(text: str, dt: datetime) -> bool:
    """Already as `isoformat()` writes a naive time (the wire format's own spelling)?"""
    n = len(text)
    return dt.tzinfo is None and text[10:11] == "T" and (
        n == 19 and dt.microsecond == 0 or n == 26 and dt.microsecond > 0)


def parse_ts_canonical(value) -> tuple[int, str]:
    """(microseconds, canonical ISO string); the string is reused when already canonical."""
    if type(value) is str and len(value) in (19, 26) and value[10:11] == "T":
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            dt = None
        if dt is not None and _is_canonical(value, dt):
            ts = (dt - EPOCH) // ONE_US
            if MIN_TS_US <= ts < MAX_TS_US:
                return ts, value
    ts = parse_ts(value)
    return ts, to_datetime(ts).isoformat()


def parse_ts_or_none(value) -> int | None:
    """Lenient parse for non-key time columns: None when missing or unparsable."""
    try:
        return parse_ts(value)
    except BadTime:
        return None


def to_datetime(ts_us: int) -> datetime:
    return EPOCH + timedelta(microseconds=ts_us)


def format_ts(ts_us: int | None) -> str | None:
    """Naive-UTC ISO string as `datetime.isoformat()` writes it."""
    return None if ts_us is None else to_datetime(ts_us).isoformat()


def month_of(ts_us: int) -> str:
    return to_datetime(ts_us).strftime("%Y-%m")


def date_of(ts_us: int | None) -> str | None:
    return None if ts_us is None else to_datetime(ts_us).date().isoformat()


def year_of(ts_us: int) -> int:
    return to_datetime(ts_us).year
