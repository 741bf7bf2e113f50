"""Batch reference computation of the ``ucn`` features.

``verify`` compares what the stream wrote to Redis with the output of this
module.  It is the reference the stream is tested against, so it is written
independently of ``stream/``, ``contract/`` and ``replay/``: it reads the
source itself and applies SPEC.md (sections 1, 4 and 5) and docs/readings.md
with pandas.

    compute_ucn(source) -> {"user": {user_id: {field: value}},
                            "sessions": {user_id: [session, …]},   # newest first, ≤ 100
                            "stats": {"rows": …, "bad": …, "bad_reasons": …,
                                      "duplicates": …, "events": …, "sessions": …}}

``source`` is a folder with one ``{table}.csv`` per table or a database URL
(``postgresql://…``, ``sqlite:///…``).  ``httpreqs`` and ``httpreqs2`` are one
table ``httpreqs``; a missing table is empty.

Values are JSON-compatible: ints for bytes and counts, floats for seconds,
lists of ints for the histograms, maps with sorted keys, ISO timestamps of
naive UTC (``datetime.isoformat()``), ``None``.

The pipeline: read every table (bad rows out, typed columns parsed, duplicate
ids out), resolve which devices are personal to which users, then aggregate
the order-free features with grouped sums, and build the activity sessions
from the events ordered by (user, ts, table, id).  Time is integer
microseconds since the epoch (UTC) throughout; local hours come from
``tz_convert`` to Europe/Paris (``fr``) or Europe/London (anything else).
"""
from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from verify.csv_cells import read_csv_cells

US_PER_SECOND = 1_000_000
SESSION_GAP_US = 600 * US_PER_SECOND
MIN_SESSION_US = 1 * US_PER_SECOND
MIN_SESSION_EVENTS = 3
SESSIONS_KEPT = 100
TOP_DOMAINS = 10
# Bin edges of inter_event_hist and session_duration_hist: 0, 1 ms, 10 ms, 100 ms,
# 1 s, 10 s, 1 min, 10 min, 1 h, 1 day, 1 week; bin i is edge[i] <= x < edge[i+1].
HIST_EDGES_US = np.array([0, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 60_000_000,
                          600_000_000, 3_600_000_000, 86_400_000_000, 604_800_000_000],
                         dtype=np.int64)
HOURS, WEEK_SLOTS, BINS = 24, 84, len(HIST_EDGES_US)
PARIS, LONDON = "Europe/Paris", "Europe/London"
DNS, HTTP = 0, 1  # table rank in the event order: "dnsreqs" < "httpreqs"
EPOCH = datetime(1970, 1, 1)
# Event times outside [0001-01-02, 9999-12-31) UTC are bad rows (readings: a day off either end of the
# calendar, so that every local time is a date).
ACCEPTED_FROM_US = (datetime(1, 1, 2) - EPOCH) // timedelta(microseconds=1)
ACCEPTED_UNTIL_US = (datetime(9999, 12, 31) - EPOCH) // timedelta(microseconds=1)
_MIN_MICROS = (datetime.min - EPOCH) // timedelta(microseconds=1)
_MAX_MICROS = (datetime.max - EPOCH) // timedelta(microseconds=1)
TRUE_WORDS = frozenset({"true", "t", "1", "yes"})
FALSE_WORDS = frozenset({"false", "f", "0", "no"})

csv.field_size_limit(1 << 24)


@dataclass(frozen=True)
class Table:
    """A ucn source table: routing key, eid column, event time, typed columns."""

    name: str
    key: str
    ident: str  # the eid's column besides the table name (user_id for user_devices)
    time: str | None = None
    integers: tuple[str, ...] = ()
    booleans: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()
    other_times: tuple[str, ...] = ()  # parsed leniently: unparsable is null
    sources: tuple[str, ...] = ()  # names in the source; default: the name

    @property
    def source_names(self) -> tuple[str, ...]:
        return self.sources or (self.name,)

    @property
    def unique(self) -> list[str]:
        """The columns that make the eid: a second row with the same values is a duplicate."""
        return [self.ident, self.key] if self.name == "user_devices" else [self.ident]


_TRAFFIC = ("id", "devid", "packets_in", "bytes_in", "packets_out", "bytes_out")
TABLES = {
    table.name: table
    for table in (
        Table("users", "id", "id", integers=("id",), texts=("username", "country")),
        Table("devices", "id", "id", integers=("id",), booleans=("shared",), texts=("platform",)),
        Table("user_devices", "device_id", "user_id", integers=("user_id", "device_id")),
        Table("devicetraffic", "devid", "id", "ts", _TRAFFIC),
        Table("deviceapptraffic", "devid", "id", "ts", _TRAFFIC + ("dstport",), texts=("service",)),
        Table("httpreqs", "devid", "id", "ts", ("id", "devid"), ("user_url",), ("req_url_host",),
              sources=("httpreqs", "httpreqs2")),
        Table("dnsreqs", "devid", "id", "ts", ("id", "devid"), ("user_req",), ("query",)),
        Table("locations", "devid", "id", "entertime", ("id", "devid"), texts=("name",),
              other_times=("exittime",)),
    )
}
EVENT_TABLES = ("devicetraffic", "deviceapptraffic", "httpreqs", "dnsreqs", "locations")

_TIMESTAMP = (
    r"(?a)\A(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"(?:[T ](?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,6}))?)?"
    r"(?P<zone>Z|(?P<sign>[+-])(?P<zone_hour>\d{2})(?::?(?P<zone_minute>\d{2}))?)?)?\Z"
)
_PLAIN_TIMESTAMP = r"(?a)\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?"
_SHORT_INTEGER = r"(?a)[+-]?\d{1,18}"  # always fits in int64
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


# --------------------------------------------------------------------------
# Entry point


def compute_ucn(source) -> dict:
    """Compute every ucn user feature and session list over a CSV folder or database."""
    tables, stats = read_tables(source)
    users = tables["users"]
    index = pd.Index(users["id"].to_numpy(np.int64))
    paris = users["country"].to_numpy(object) == "fr"
    personal, shared = _links(tables["devices"], tables["user_devices"])
    stats["events"] = _event_stats(tables, personal, shared)

    features = [_empty_user(name, country) for name, country in
                zip(users["username"].tolist(), users["country"].tolist())]
    owned = {name: _owned(tables[name], personal, index)
             for name in ("devicetraffic", "deviceapptraffic", "httpreqs", "dnsreqs", "locations")}
    for fields_by_user in (
        _device_counts(personal, shared, index),
        _traffic_fields(owned["devicetraffic"], paris),
        _service_fields(owned["deviceapptraffic"]),
        _request_counts(owned["dnsreqs"], owned["httpreqs"]),
    ):
        for position, fields in fields_by_user.items():
            features[position].update(fields)

    events = _activity_events(owned["dnsreqs"], owned["httpreqs"])
    platforms = _platforms(tables["devices"])
    locations = _user_locations(owned["locations"])
    sessions_by_user = _activity_fields(events, paris, index.tolist(), features, platforms, locations)

    keys = [str(user_id) for user_id in index.tolist()]
    stats["sessions"] = sum(fields["sessions_count"] for fields in features)
    return {
        "user": dict(zip(keys, features)),
        "sessions": {key: sessions_by_user.get(position, []) for position, key in enumerate(keys)},
        "stats": stats,
    }


def _empty_user(username, country) -> dict:
    return {
        "username": username, "country": country,
        "devices_personal": 0, "devices_shared": 0,
        "traffic_seconds": 0, "first_traffic_at": None, "last_traffic_at": None,
        "bytes_in": 0, "bytes_out": 0, "packets_in": 0, "packets_out": 0,
        "dns_requests": 0, "http_requests": 0,
        "bytes_by_hour_weekday": [0] * HOURS, "bytes_by_hour_weekend": [0] * HOURS,
        "bytes_by_week_slot": [0] * WEEK_SLOTS,
        "user_events_by_hour_weekday": [0] * HOURS, "user_events_by_hour_weekend": [0] * HOURS,
        "bytes_by_service": {},
        "inter_event_hist": [0] * BINS,
        "sessions_count": 0, "sessions_seconds": 0.0,
        "session_duration_hist": [0] * BINS,
        "last_session": None, "open_session": None,
    }


# --------------------------------------------------------------------------
# Reading: sources, bad rows, typed columns, duplicates


def read_tables(source) -> tuple[dict[str, pd.DataFrame], dict]:
    """Read, validate and de-duplicate every ucn table of a folder or database."""
    raw = _read_source(source)
    tables = {}
    stats = {"rows": {}, "bad": {}, "bad_reasons": {}, "duplicates": {}}
    for table in TABLES.values():
        parts = [raw[name] for name in table.source_names if name in raw]
        frames = [frame for frame, _, _ in parts]
        rows = sum(count for _, count, _ in parts)
        bad = sum((reasons for _, _, reasons in parts), Counter())
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        frame, reasons = _validate(frame, table, bad)
        duplicated = frame.duplicated(table.unique, keep="first")
        tables[table.name] = frame[~duplicated].reset_index(drop=True)
        stats["rows"][table.name] = rows
        stats["bad"][table.name] = sum(reasons.values())
        stats["bad_reasons"][table.name] = dict(sorted(reasons.items()))
        stats["duplicates"][table.name] = int(duplicated.sum())
    return tables, stats


def _wanted_names() -> list[str]:
    return [name for table in TABLES.values() for name in table.source_names]


def _read_source(source) -> dict[str, tuple[pd.DataFrame, int, Counter]]:
    """Source table name -> (cells, number of rows, unreadable rows by reason)."""
    if isinstance(source, str) and "://" in source:
        return _read_database(source)
    folder = Path(source)
    return {name: read_csv_cells(folder / f"{name}.csv") for name in _wanted_names()
            if (folder / f"{name}.csv").is_file()}


def _read_database(url: str) -> dict[str, tuple[pd.DataFrame, int, Counter]]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(_with_driver(url))
    try:
        with engine.connect() as connection:
            present = set(sqlalchemy.inspect(connection).get_table_names())
            found = {}
            for name in _wanted_names():
                if name in present:
                    query = sqlalchemy.text(f'SELECT * FROM "{name}"')
                    frame = pd.read_sql(query, connection, dtype_backend="numpy_nullable")
                    found[name] = (frame, len(frame), Counter())
            return found
    finally:
        engine.dispose()


def _with_driver(url: str):
    """A bare ``postgresql://`` URL uses psycopg2 when psycopg (3) is not installed."""
    import importlib.util

    import sqlalchemy

    parsed = sqlalchemy.engine.make_url(url)
    if (parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg") is None
            and importlib.util.find_spec("psycopg2") is not None):
        return parsed.set(drivername="postgresql+psycopg2")
    return parsed


def _validate(frame: pd.DataFrame, table: Table, bad: Counter) -> tuple[pd.DataFrame, Counter]:
    """Typed columns of the good rows; bad rows counted by their first reason.

    Reasons, in this order: ``key`` (routing key null or blank), ``id`` (the
    other eid column null), ``time`` (event time null or unparsable),
    ``type`` (an integer column that is not an integer, ids included, or a
    boolean that is not true/false/t/f/1/0/yes/no).
    """
    frame = frame.loc[:, ~frame.columns.duplicated()]
    missing = pd.Series([None] * len(frame), index=frame.index, dtype=object)

    def column(name: str) -> pd.Series:
        return frame[name] if name in frame.columns else missing

    integers = {name: parse_integers(column(name)) for name in table.integers}
    booleans = {name: parse_booleans(column(name)) for name in table.booleans}
    bad_key = integers[table.key][1]
    bad_id = ~bad_key & integers[table.ident][1]
    bad_time = np.zeros(len(frame), dtype=bool)
    if table.time is not None:
        micros, valid = parse_times(column(table.time))
        bad_time = ~bad_key & ~bad_id & ~valid
    wrong = np.zeros(len(frame), dtype=bool)
    for _, _, wrong_cells in (*integers.values(), *booleans.values()):
        wrong |= wrong_cells
    bad_type = ~bad_key & ~bad_id & ~bad_time & wrong
    good = ~(bad_key | bad_id | bad_time | bad_type)
    reasons = bad + Counter(key=int(bad_key.sum()), id=int(bad_id.sum()),
                            time=int(bad_time.sum()), type=int(bad_type.sum()))

    rows = pd.RangeIndex(int(good.sum()))
    clean = {}
    for name, (values, null, _) in integers.items():
        if name in (table.key, table.ident):  # never null in a good row
            clean[name] = pd.Series(values[good], index=rows)
        else:
            clean[name] = pd.Series(pd.arrays.IntegerArray(values[good], null[good]), index=rows)
    for name, (values, null, _) in booleans.items():
        clean[name] = pd.Series(pd.arrays.BooleanArray(values[good], null[good]), index=rows)
    for name in table.texts:
        clean[name] = pd.Series(parse_texts(column(name))[good], index=rows, dtype=object)
    if table.time is not None:
        clean[table.time] = pd.Series(micros[good], index=rows)
    for name in table.other_times:
        other, valid_other = parse_times(column(name))
        clean[name] = pd.Series(pd.arrays.IntegerArray(other[good], ~valid_other[good]), index=rows)
    return pd.DataFrame(clean), +reasons


# --------------------------------------------------------------------------
# Cell parsing.  Cells are text (CSV, or text columns of a database) or typed
# database values; every parser accepts both.


def _text_cells(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Factorised cells as stripped text: (codes, distinct texts); null and blank cells -> -1."""
    cells = values.to_numpy() if values.dtype == object else values.to_numpy(object, na_value=None)
    codes, uniques = pd.factorize(cells)  # None, NaN and NA are missing: code -1
    texts = [str(item).strip() for item in uniques]
    blank = np.array([text == "" for text in texts] + [True], dtype=bool)
    codes = np.where(blank[codes], -1, codes)  # code -1 picks the extra last slot
    return codes, texts


def _take(per_text: np.ndarray, codes: np.ndarray, missing) -> np.ndarray:
    """Values of the distinct texts spread back to the cells; null cells get missing."""
    return np.append(per_text, np.array([missing], dtype=per_text.dtype))[codes]


def parse_texts(values: pd.Series) -> np.ndarray:
    """Text cells as Python strings (object array); null and blank cells are None."""
    texts = [None if item is None else item if isinstance(item, str) else str(item)
             for item in values.to_numpy(dtype=object, na_value=None)]
    return np.array([text if text is not None and text.strip() else None for text in texts],
                    dtype=object)


def parse_integers(values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer cells -> (int64 values, null mask, wrong-type mask).

    Accepted: an optional sign and digits, or a float spelling of an integer
    (``12.0``, ``1e3``), with surrounding blanks; within int64.
    """
    dtype = values.dtype
    if not pd.api.types.is_numeric_dtype(dtype):  # text or Python objects
        codes, texts = _text_cells(values)
        numbers, ok = _parse_integer_texts(texts)
        null = codes < 0
        return _take(numbers, codes, 0), null, ~null & ~_take(ok, codes, True)
    null = values.isna().to_numpy(bool)
    if pd.api.types.is_bool_dtype(dtype):
        return np.zeros(len(values), np.int64), null, ~null
    if pd.api.types.is_integer_dtype(dtype):
        return values.to_numpy(np.int64, na_value=0), null, np.zeros(len(values), bool)
    if pd.api.types.is_float_dtype(dtype):
        numbers = values.to_numpy(np.float64, na_value=np.nan)
        ok = _integral_floats(numbers)
        return np.where(ok, numbers, 0).astype(np.int64), null, ~null & ~ok
    return np.zeros(len(values), np.int64), null, ~null  # complex numbers and the like


def _integral_floats(numbers: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (np.isfinite(numbers) & (np.floor(numbers) == numbers)
                & (numbers >= -(2.0**63)) & (numbers < 2.0**63))


def _parse_integer_texts(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct non-blank texts -> (int64 values, mask of the integers)."""
    series = pd.Series(texts, dtype=object)
    short = series.str.fullmatch(_SHORT_INTEGER).fillna(False).to_numpy(bool)
    numbers = np.zeros(len(texts), dtype=np.int64)
    ok = short.copy()
    if short.any():
        numbers[short] = pd.to_numeric(series[short]).to_numpy(np.int64)
    for position in np.flatnonzero(~short):
        number = _integer(texts[position])
        if number is not None:
            numbers[position], ok[position] = number, True
    return numbers, ok


def _integer(text: str) -> int | None:
    """A long integer or a float spelling of an integer, within int64; else None."""
    if len(text) > 4_000:  # far beyond int64, and int() refuses over 4,300 digits
        return None
    if _INTEGER.fullmatch(text):
        number = int(text)
    elif _FLOAT.fullmatch(text) and float(text).is_integer():
        number = int(float(text))
    else:
        return None
    return number if _INT64_MIN <= number <= _INT64_MAX else None


def parse_booleans(values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean cells -> (bool values, null mask, wrong-type mask).

    Accepted: true/false/t/f/1/0/yes/no in any case, database booleans, and
    the numbers 0 and 1.
    """
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        null = values.isna().to_numpy(bool)
        return values.to_numpy(bool, na_value=False), null, np.zeros(len(values), bool)
    if pd.api.types.is_numeric_dtype(dtype):
        null = values.isna().to_numpy(bool)
        numbers = values.to_numpy(np.float64, na_value=np.nan)
        ok = (numbers == 0) | (numbers == 1)
        return numbers == 1, null, ~null & ~ok
    codes, texts = _text_cells(values)
    words = [text.lower() for text in texts]
    truth = np.array([word in TRUE_WORDS for word in words], dtype=bool)
    ok = np.array([word in TRUE_WORDS or word in FALSE_WORDS for word in words], dtype=bool)
    null = codes < 0
    return _take(truth, codes, False), null, ~null & ~_take(ok, codes, True)


def parse_times(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Timestamp cells -> (int64 microseconds since the epoch, UTC; valid mask).

    Database timestamps are taken as they are (naive = UTC, aware converted
    to UTC).  Text follows readings.md: ``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM``,
    ``YYYY-MM-DD HH:MM:SS[.ffffff]``, ``T`` or a space, an optional ``Z`` or
    ``±HH[[:]MM]`` offset after a time.  Null, blank and anything else: invalid.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(values.dtype):
        valid = values.notna().to_numpy(bool)
        micros = values.to_numpy("datetime64[us]").astype(np.int64)
    else:
        codes, texts = _text_cells(values)
        micros, valid = _parse_time_texts(texts)
        micros, valid = _take(micros, codes, 0), _take(valid, codes, False)
    valid = valid & (micros >= ACCEPTED_FROM_US) & (micros < ACCEPTED_UNTIL_US)
    return np.where(valid, micros, 0), valid


def _parse_time_texts(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct non-blank texts -> (int64 microseconds, mask of the valid ones).

    The common zone-less full forms go through pandas' ISO parser; the rest
    (and anything it refuses) through the field-by-field parser below.
    """
    series = pd.Series(texts, dtype=object)
    micros = np.zeros(len(texts), dtype=np.int64)
    valid = np.zeros(len(texts), dtype=bool)
    plain = series.str.fullmatch(_PLAIN_TIMESTAMP).fillna(False).to_numpy(bool)
    if plain.any():
        parsed = pd.to_datetime(series[plain], format="ISO8601", errors="coerce")
        ok = parsed.notna().to_numpy(bool)
        rows = np.flatnonzero(plain)[ok]
        micros[rows] = parsed[ok].to_numpy("datetime64[us]").astype(np.int64)
        valid[rows] = True
    rest = np.flatnonzero(~valid)
    if len(rest):
        micros[rest], valid[rest] = _parse_time_fields(series.iloc[rest])
    return micros, valid


def _parse_time_fields(texts: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> (int64 microseconds, valid mask), one regex field at a time."""
    parts = texts.str.extract(_TIMESTAMP)
    number = {name: pd.to_numeric(parts[name], errors="coerce").fillna(0).to_numpy(np.int64)
              for name in ("year", "month", "day", "hour", "minute", "second",
                           "zone_hour", "zone_minute")}
    fraction = pd.to_numeric(parts["fraction"].str.ljust(6, "0"), errors="coerce")
    fraction = fraction.fillna(0).to_numpy(np.int64)
    matched = parts["year"].notna().to_numpy(bool)
    year, month, day = number["year"], number["month"], number["day"]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
    last_day = month_days[np.clip(month, 0, 12)] + (leap & (month == 2))
    valid = (matched & (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= last_day)
             & (number["hour"] < 24) & (number["minute"] < 60) & (number["second"] < 60)
             & (number["zone_hour"] < 24) & (number["zone_minute"] < 60))
    sign = np.where(parts["sign"].to_numpy(object) == "-", -1, 1)
    offset_s = (number["zone_hour"] * 3_600 + number["zone_minute"] * 60) * sign
    seconds = (_days_from_civil(year, month, day) * 86_400 + number["hour"] * 3_600
               + number["minute"] * 60 + number["second"] - offset_s)
    micros = seconds * US_PER_SECOND + fraction
    valid &= (micros >= _MIN_MICROS) & (micros <= _MAX_MICROS)  # datetime's range
    return np.where(valid, micros, 0), valid


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    year = year - (month <= 2)
    era = np.floor_divide(year, 400)
    year_of_era = year - era * 400
    day_of_year = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


# --------------------------------------------------------------------------
# Devices and ownership


def _links(devices: pd.DataFrame, user_devices: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(personal, shared) links user_id -> devid of the devices present in ``devices``."""
    shared_flag = pd.Series(devices["shared"].fillna(False).to_numpy(bool),
                            index=devices["id"].to_numpy(np.int64))
    links = user_devices[["user_id", "device_id"]].rename(columns={"device_id": "devid"})
    links = links[links["devid"].isin(shared_flag.index)]
    is_shared = links["devid"].map(shared_flag).to_numpy(bool)
    return links[~is_shared].reset_index(drop=True), links[is_shared].reset_index(drop=True)


def _event_stats(tables: dict, personal: pd.DataFrame, shared: pd.DataFrame) -> dict:
    """Per event table: rows of personal, shared and unknown devices (each row once)."""
    stats = {}
    for name in EVENT_TABLES:
        devids = tables[name]["devid"]
        is_personal = devids.isin(personal["devid"])
        is_shared = devids.isin(shared["devid"])
        stats[name] = {"personal": int(is_personal.sum()), "shared": int(is_shared.sum()),
                       "unknown": int((~is_personal & ~is_shared).sum())}
    return stats


def _owned(frame: pd.DataFrame, personal: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """The rows of personal devices, once per owning user with a users row (column _user)."""
    merged = frame.merge(personal, on="devid", how="inner")
    positions = index.get_indexer(merged["user_id"])
    merged = merged[positions >= 0].copy()
    merged["_user"] = positions[positions >= 0]
    return merged.reset_index(drop=True)


def _device_counts(personal: pd.DataFrame, shared: pd.DataFrame, index: pd.Index) -> dict:
    fields: dict[int, dict] = {}
    for field, links in (("devices_personal", personal), ("devices_shared", shared)):
        counts = links.groupby("user_id")["devid"].nunique()
        for user_id, count in zip(counts.index.tolist(), counts.tolist()):
            position = index.get_indexer([user_id])[0]
            if position >= 0:
                fields.setdefault(position, {})[field] = int(count)
    return fields


def _platforms(devices: pd.DataFrame) -> dict[int, str]:
    return {device: platform for device, platform in
            zip(devices["id"].tolist(), devices["platform"].tolist()) if platform is not None}


# --------------------------------------------------------------------------
# Order-free features: traffic, services, request counts


def _local_time(micros: np.ndarray, paris_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(local hour, local weekday Monday=0) of UTC instants, Paris or London per row."""
    hour = np.zeros(len(micros), dtype=np.int64)
    weekday = np.zeros(len(micros), dtype=np.int64)
    for zone, rows in ((PARIS, paris_rows), (LONDON, ~paris_rows)):
        if rows.any():
            local = pd.to_datetime(micros[rows], unit="us", utc=True).tz_convert(zone)
            hour[rows] = local.hour
            weekday[rows] = local.day_of_week
    return hour, weekday


def _traffic_fields(traffic: pd.DataFrame, paris: np.ndarray) -> dict[int, dict]:
    """Counts, span, sums and local-time byte profiles of each user's devicetraffic."""
    if traffic.empty:
        return {}
    sums = traffic.groupby("_user").agg(
        traffic_seconds=("ts", "size"), first=("ts", "min"), last=("ts", "max"),
        bytes_in=("bytes_in", "sum"), bytes_out=("bytes_out", "sum"),
        packets_in=("packets_in", "sum"), packets_out=("packets_out", "sum"),
    )
    users = traffic["_user"].to_numpy(np.int64)
    volume = (traffic["bytes_in"].fillna(0) + traffic["bytes_out"].fillna(0)).to_numpy(np.int64)
    hour, weekday = _local_time(traffic["ts"].to_numpy(np.int64), paris[users])
    size = len(paris)
    weekdays = _sum_at((size, HOURS), (users, hour), volume, weekday < 5)
    weekends = _sum_at((size, HOURS), (users, hour), volume, weekday >= 5)
    slots = _sum_at((size, WEEK_SLOTS), (users, weekday * 12 + hour // 2), volume)
    fields = {}
    for position, row in zip(sums.index.tolist(), sums.itertuples(index=False)):
        fields[position] = {
            "traffic_seconds": int(row.traffic_seconds),
            "first_traffic_at": _iso(row.first), "last_traffic_at": _iso(row.last),
            "bytes_in": int(row.bytes_in), "bytes_out": int(row.bytes_out),
            "packets_in": int(row.packets_in), "packets_out": int(row.packets_out),
            "bytes_by_hour_weekday": weekdays[position].tolist(),
            "bytes_by_hour_weekend": weekends[position].tolist(),
            "bytes_by_week_slot": slots[position].tolist(),
        }
    return fields


def _sum_at(shape, where: tuple, values: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Exact int64 sums of values into a zero array at the given (row, column) cells."""
    total = np.zeros(shape, dtype=np.int64)
    if rows is None:
        rows = np.ones(len(values), dtype=bool)
    np.add.at(total, tuple(axis[rows] for axis in where), values[rows])
    return total


def _service_fields(app_traffic: pd.DataFrame) -> dict[int, dict]:
    """service -> bytes_in + bytes_out of each user's deviceapptraffic; null service 'unknown'."""
    if app_traffic.empty:
        return {}
    volume = app_traffic["bytes_in"].fillna(0) + app_traffic["bytes_out"].fillna(0)
    frame = pd.DataFrame({
        "_user": app_traffic["_user"].to_numpy(np.int64),
        "service": [service if service is not None else "unknown"
                    for service in app_traffic["service"].tolist()],
        "bytes": volume.to_numpy(np.int64),
    })
    sums = frame.groupby(["_user", "service"], sort=False)["bytes"].sum()
    maps: dict[int, dict] = {}
    for (position, service), total in zip(sums.index.tolist(), sums.tolist()):
        maps.setdefault(position, {})[service] = int(total)
    return {position: {"bytes_by_service": dict(sorted(services.items()))}
            for position, services in maps.items()}


def _request_counts(dns: pd.DataFrame, http: pd.DataFrame) -> dict[int, dict]:
    fields: dict[int, dict] = {}
    for field, frame in (("dns_requests", dns), ("http_requests", http)):
        counts = frame.groupby("_user").size()
        for position, count in zip(counts.index.tolist(), counts.tolist()):
            fields.setdefault(position, {})[field] = int(count)
    return fields


# --------------------------------------------------------------------------
# Activity events and sessions


@dataclass
class Events:
    """One row per activity event, ordered by (user, ts, table, id)."""

    user: np.ndarray
    ts: np.ndarray
    table: np.ndarray
    devid: np.ndarray
    domain: np.ndarray  # object: query (dns) or req_url_host (http), None when null


def _activity_events(dns: pd.DataFrame, http: pd.DataFrame) -> Events:
    """All dnsreqs and the httpreqs with user_url true of each user's personal devices."""
    http = http[http["user_url"].fillna(False).to_numpy(bool)]
    user = np.concatenate([dns["_user"].to_numpy(np.int64), http["_user"].to_numpy(np.int64)])
    ts = np.concatenate([dns["ts"].to_numpy(np.int64), http["ts"].to_numpy(np.int64)])
    table = np.concatenate([np.full(len(dns), DNS, np.int64), np.full(len(http), HTTP, np.int64)])
    ident = np.concatenate([dns["id"].to_numpy(np.int64), http["id"].to_numpy(np.int64)])
    devid = np.concatenate([dns["devid"].to_numpy(np.int64), http["devid"].to_numpy(np.int64)])
    domain = np.concatenate([dns["query"].to_numpy(object), http["req_url_host"].to_numpy(object)])
    order = np.lexsort((ident, table, ts, user))
    return Events(user[order], ts[order], table[order], devid[order], domain[order])


def _bins(micros: np.ndarray) -> np.ndarray:
    """Histogram bin of each gap or duration: edge[i] <= value < edge[i+1], last bin open."""
    return np.searchsorted(HIST_EDGES_US, micros, side="right") - 1


def _activity_fields(events: Events, paris: np.ndarray, user_ids: list[int], features: list[dict],
                     platforms: dict, locations: dict) -> dict[int, list]:
    """Fill the event-hour profiles, gap and session features; return the session lists."""
    user, ts, size = events.user, events.ts, len(user_ids)
    hour, weekday = _local_time(ts, paris[user])
    ones = np.ones(len(ts), dtype=np.int64)
    weekdays = _sum_at((size, HOURS), (user, hour), ones, weekday < 5)
    weekends = _sum_at((size, HOURS), (user, hour), ones, weekday >= 5)

    same_user = user[1:] == user[:-1]
    gaps = ts[1:] - ts[:-1]
    gap_hist = _sum_at((size, BINS), (user[1:], _bins(gaps)), ones[1:], same_user)

    new = np.ones(len(ts), dtype=bool)
    new[1:] = ~same_user | (gaps > SESSION_GAP_US)
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(ts))[:len(first)] - 1
    owner = user[first]
    duration = ts[last] - ts[first]
    count = last - first + 1
    dns_before = np.concatenate([[0], np.cumsum(events.table == DNS)])
    dns_count = dns_before[last + 1] - dns_before[first]
    kept = (duration >= MIN_SESSION_US) & (count >= MIN_SESSION_EVENTS)
    session_count = np.bincount(owner[kept], minlength=size)
    session_us = _sum_at((size,), (owner,), duration, kept)
    duration_hist = _sum_at((size, BINS), (owner, _bins(duration)), np.ones(len(first), np.int64),
                            kept)

    for position in np.unique(user).tolist():
        features[position].update({
            "user_events_by_hour_weekday": weekdays[position].tolist(),
            "user_events_by_hour_weekend": weekends[position].tolist(),
            "inter_event_hist": gap_hist[position].tolist(),
            "sessions_count": int(session_count[position]),
            "sessions_seconds": int(session_us[position]) / US_PER_SECOND,
            "session_duration_hist": duration_hist[position].tolist(),
        })

    sessions: dict[int, list] = {}
    kept_sessions = np.flatnonzero(kept)  # by (user, start) ascending
    for position in np.unique(owner[kept_sessions]).tolist():
        mine = kept_sessions[owner[kept_sessions] == position]
        newest = mine[::-1][:SESSIONS_KEPT]
        records = [
            _session_record(user_ids[position], events, int(first[s]), int(last[s]), int(dns_count[s]),
                            platforms, locations.get(position))
            for s in newest.tolist()
        ]
        sessions[position] = records
        features[position]["last_session"] = dict(records[0])
    return sessions


def _session_record(user_id: int, events: Events, first: int, last: int, dns_events: int,
                    platforms: dict, locations) -> dict:
    part = slice(first, last + 1)
    start, end = int(events.ts[first]), int(events.ts[last])
    devices = np.unique(events.devid[part]).tolist()
    domains = Counter(domain for domain in events.domain[part].tolist() if domain is not None)
    top = sorted(domains.items(), key=lambda item: (-item[1], item[0]))[:TOP_DOMAINS]
    places = []
    if locations is not None:
        enter, exit_, names = locations
        overlapping = (enter <= end) & (exit_ >= start)
        places = sorted(set(names[overlapping].tolist()))
    events_count = last - first + 1
    return {
        "user": user_id,
        "start": _iso(start), "end": _iso(end),
        "duration_s": (end - start) / US_PER_SECOND,
        "events": events_count, "dns_events": dns_events, "http_events": events_count - dns_events,
        "devices": devices,
        "platforms": sorted({platforms[device] for device in devices if device in platforms}),
        "top_domains": [[domain, int(hits)] for domain, hits in top],
        "locations": places,
    }


def _user_locations(locations: pd.DataFrame) -> dict[int, tuple]:
    """user position -> (entertime, exittime, name) arrays of the rows that can match."""
    usable = locations[locations["exittime"].notna().to_numpy(bool)
                       & locations["name"].notna().to_numpy(bool)]
    found = {}
    for position, rows in usable.groupby("_user"):
        found[int(position)] = (rows["entertime"].to_numpy(np.int64),
                                rows["exittime"].to_numpy(np.int64),
                                rows["name"].to_numpy(object))
    return found


# --------------------------------------------------------------------------
# Shared helpers


def _iso(micros) -> str:
    return (EPOCH + timedelta(microseconds=int(micros))).isoformat()
