"""Hand-computed checks of the batch ucn reference (datasets/ucn/batch.py).

One small study (``STUDY``) holds a case per user, each worked out by hand
from SPEC.md (sections 1, 4 "ucn / user", "Sessions", 5) and docs/readings.md:

- anna (fr): the activity sessions: a gap of exactly 600 s stays in the
  session, 600.000001 s starts a new one; a session of exactly 1 s and 3
  events is kept, 0.999999 s or 2 events is not; equal timestamps (gap 0,
  first bin); every histogram edge; httpreqs2 and user_url false/null;
  top_domains ties and cut at 10; location overlap edges; shared and unknown
  devices; a duplicate id; bad rows.
- ben (uk) and eve (fr) share the personal device 20 (a device linked to two
  users): the same traffic rows give the same sums and different local
  profiles (DST, weekday vs weekend across midnight, week slots).
- carl (null country, so London), dora (no data at all).

The same rows are read from CSV, from SQLite (text columns) and from
PostgreSQL (typed columns, one timestamptz, a session time zone of Tokyo).
"""
from __future__ import annotations

import bisect
import csv
import json
import os
import sqlite3
import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets.ucn.batch import compute_ucn, parse_booleans, parse_integers, parse_times
from tests.expected import typed

POSTGRES_URL = os.environ.get("UCN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


class Bad(tuple):
    """A row that is a dead letter (left out of the typed PostgreSQL copy)."""


COLUMNS = {
    "users": ["id", "username", "country"],
    "devices": ["id", "platform", "shared"],
    "user_devices": ["user_id", "device_id"],
    "devicetraffic": ["id", "devid", "ts", "packets_in", "bytes_in", "packets_out", "bytes_out"],
    "deviceapptraffic": ["id", "devid", "ts", "dstport", "service", "packets_in", "bytes_in",
                         "packets_out", "bytes_out"],
    "httpreqs": ["id", "devid", "ts", "req_url_host", "user_url"],
    "httpreqs2": ["id", "devid", "ts", "req_url_host", "user_url"],
    "dnsreqs": ["id", "devid", "ts", "query", "user_req"],
    "locations": ["id", "devid", "entertime", "exittime", "name"],
}
KINDS = {"id": "int", "user_id": "int", "device_id": "int", "devid": "int", "packets_in": "int",
         "bytes_in": "int", "packets_out": "int", "bytes_out": "int", "dstport": "int",
         "shared": "bool", "user_url": "bool", "user_req": "bool",
         "ts": "ts", "entertime": "ts", "exittime": "ts"}
WITH_INDEX = {"users", "dnsreqs"}  # written with a leading unnamed pandas index column

# Session 6 of anna (Saturday 2021-01-16, UTC): t0 = 09:00:00, then
# t1 = 09:00:00.010 and one event a second up to t17 = 09:00:16.010.
S6 = [datetime(2021, 1, 16, 9)] + [
    datetime(2021, 1, 16, 9, 0, 0, 10_000) + timedelta(seconds=k) for k in range(17)]
S6_DNS = [1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17]  # the others are http
S6_DNS_DOMAINS = ["z.com"] * 3 + [f"d{k:02d}.com" for k in range(12)]


def stamp(instant: datetime) -> str:
    return instant.isoformat(sep=" ")


STUDY = {
    "users": [
        ("1", "anna", "fr"),
        ("2", "ben", "uk"),
        ("3", "carl", ""),              # null country: London
        ("4", "dora", "uk"),
        ("5", "eve", "fr"),
        Bad(("", "ghost", "uk")),       # key
        Bad(("u9", "ivan", "uk")),      # type
        ("2", "benjamin", "fr"),        # duplicate id: ben stays uk
    ],
    "devices": [
        ("10", "android", "f"),
        ("11", "ios", ""),              # null shared: personal
        ("12", "tv", "t"),              # shared
        Bad(("13", "console", "maybe")),  # type: device 13 is unknown
        ("14", "", "no"),               # null platform
        ("20", "linux", "No"),
        ("21", "mac", "0"),
        ("22", "tv", "TRUE"),           # shared
        ("23", "android", "f"),         # linked to nobody: unknown
    ],
    "user_devices": [
        ("1", "10"), ("1", "11"), ("1", "12"), ("1", "14"),
        ("1", "98"),                    # not in devices: unknown
        ("2", "20"), ("2", "22"), ("2", "99"), ("2", "13"),
        ("2", "20"),                    # duplicate pair
        ("5", "20"),                    # device 20 belongs to ben and eve
        ("3", "21"),
        ("7", "21"),                    # user 7 has no users row: no snapshot
        Bad(("", "10")),                # id (user_id)
        Bad(("4", "")),                 # key (device_id)
    ],
    "devicetraffic": [
        ("1", "20", "2021-07-05 00:30:00.000001", "1", "100", "1", "1"),  # Mon, summer
        ("2", "20", "2021-01-04 00:30:00", "2", "200", "1", "2"),         # Mon, winter
        ("3", "20", "2021-07-04 23:30:00", "", "400", "4", ""),           # Sun UTC, Mon local
        ("4", "20", "2021-07-02T22:30:00Z", "8", "800", "1", "8"),        # Fri UTC, Sat in Paris
        ("5", "20", "2021-03-28 01:00:00", "16", "1600", "1", "16"),      # the DST switch
        ("6", "20", "2021-01-10 23:00:00", "32", "", "1", "32.0"),        # Sun UTC, Mon in Paris
        ("2", "20", "2021-01-05 00:00:00", "1", "99999", "1", "1"),       # duplicate id
        ("7", "21", "2021-07-05 00:30:00", "1", "5", "1", "5"),           # carl
        ("8", "22", "2021-07-05 00:30:00", "1", "1000", "1", "1000"),     # shared
        ("9", "99", "2021-07-05 00:30:00", "1", "1000", "1", "1000"),     # unknown (no device)
        ("10", "23", "2021-07-05 00:30:00", "1", "1000", "1", "1000"),    # unknown (no link)
        ("11", "13", "2021-07-05 00:30:00", "1", "1000", "1", "1000"),    # unknown (bad device)
        Bad(("12", "20", "2021-07-05 01:00:00", "1", "1.5", "1", "1")),   # type
        Bad(("13", "20", "not a time", "1", "1", "1", "1")),              # time
        Bad(("14", "20", "", "1", "1", "1", "1")),                        # time
        Bad(("15", "", "2021-07-05 01:00:00", "1", "1", "1", "1")),       # key
        Bad(("", "20", "2021-07-05 01:00:00", "1", "1", "1", "1")),       # id
        Bad(("16", "20", "2021-07-05 01:00:00", "abc", "1", "1", "1")),   # type
    ],
    "deviceapptraffic": [
        ("1", "20", "2021-07-05 00:30:00", "443", "https", "1", "10", "1", "5"),
        ("2", "20", "2021-07-05 00:30:01", "443", "https", "1", "1", "1", ""),
        ("3", "20", "2021-07-05 00:30:02", "53", "", "1", "7", "1", "0"),   # null service
        ("4", "20", "2021-07-05 00:30:03", "53", "dns", "1", "", "1", ""),  # counts with 0
        ("5", "22", "2021-07-05 00:30:00", "443", "https", "1", "1000", "1", "0"),  # shared
        ("6", "99", "2021-07-05 00:30:00", "21", "ftp", "1", "1000", "1", "0"),     # unknown
        Bad(("7", "20", "2021-07-05 00:30:04", "x", "https", "1", "1000", "1", "0")),  # type
        ("8", "21", "2021-07-05 00:30:00", "443", "HTTPS", "1", "3", "1", "4"),
    ],
    "httpreqs": [
        ("60", "11", stamp(S6[0]), "y.com", "t"),
        ("61", "11", stamp(S6[5]), "y.com", "1"),
        ("62", "11", stamp(S6[10]), "y.com", "TRUE"),
        ("70", "20", "2021-07-04 12:00:00", "news.com", "f"),
        ("71", "12", "2021-01-11 10:15:00", "shared.com", "t"),  # shared
    ],
    "httpreqs2": [
        ("1", "11", "2021-01-11 10:00:00", "a.com", "t"),
        ("2", "10", "2021-01-11 10:10:00.001", "a.com", "yes"),
        ("3", "10", "2021-01-11 10:15:00", "h3.com", "f"),  # would bridge S1 and S2
        ("4", "10", "2021-01-11 10:12:00", "h4.com", ""),   # null user_url: false
        ("5", "10", "2021-01-11 12:01:00", "f.com", "t"),
        ("60", "11", stamp(S6[0]), "y.com", "t"),           # duplicate of httpreqs 60
        Bad(("6", "10", "2021-01-11 10:05:00", "bad.com", "2")),  # type
    ],
    "dnsreqs": [
        ("1", "10", "2021-01-11 10:00:00", "b.com", "t"),              # S1
        ("2", "10", "2021-01-11 10:10:00", "B.com", "f"),              # S1, gap 600 s
        ("3", "10", "2021-01-11 10:10:00.001", "", "t"),               # S1, null domain
        ("4", "11", "2021-01-11 10:20:00.001001", "c.com", "t"),       # S2, gap 600.000001 s
        ("5", "11", "2021-01-11 10:20:00.501001", "c.com", ""),        # S2
        ("6", "14", "2021-01-11 10:20:01.001001", "c.com", "t"),       # S2: exactly 1 s
        ("7", "10", "2021-01-11 11:00:00", "e.com", "t"),              # S3: 0.999999 s
        ("8", "10", "2021-01-11 11:00:00.5", "e.com", "t"),
        ("9", "10", "2021-01-11 11:00:00.999999", "e.com", "t"),
        ("10", "10", "2021-01-11 12:00:00", "f.com", "t"),             # S4: 2 events
        ("11", "10", "2021-01-11 13:01:00", "g.com", "t"),             # S5: 1 event
        *[(str(20 + n), "11", stamp(S6[k]), domain, "t")
          for n, (k, domain) in enumerate(zip(S6_DNS, S6_DNS_DOMAINS))],  # S6
        ("40", "11", "2021-01-23 09:00:16.010", "h.com", "t"),         # S7: 1 event
        ("1", "10", "2021-01-11 10:05:00", "dup.com", "t"),            # duplicate id
        ("41", "12", "2021-01-11 10:15:00", "shared.com", "t"),        # shared
        ("42", "98", "2021-01-11 10:15:00", "unknown.com", "t"),       # unknown
        ("43", "98", "2021-01-16 09:00:05", "x.com", "t"),             # unknown
        Bad(("", "10", "2021-01-11 10:05:00", "bad.com", "t")),        # id
        Bad(("44", "", "2021-01-11 10:05:00", "bad.com", "t")),        # key
        Bad(("45", "10", "2021-01-11 25:00", "bad.com", "t")),         # time
        Bad(("1.5", "10", "2021-01-11 10:05:00", "bad.com", "t")),     # type
        Bad(("46", "ten", "2021-01-11 10:05:00", "bad.com", "t")),     # type
        Bad(("47", "10", "2021-01-11 10:05:00", "bad.com", "maybe")),  # type
        ("50", "20", "2021-07-03 22:30:00", "news.com", "f"),          # Sat UTC
        ("51.0", "20", "2021-07-04 22:30:00", "news.com", "t"),        # Sun UTC
    ],
    "locations": [
        ("1", "10", "2021-01-11 09:00:00", "2021-01-11 10:00:00", "home"),      # exit = S1 start
        ("2", "11", "2021-01-11 10:10:00.001", "2021-01-11 11:00:00", "work"),  # enter = S1 end
        ("3", "10", "2021-01-11 10:10:00.001001", "2021-01-11 10:15:00", "cafe"),  # 1 µs late
        ("4", "10", "2021-01-11 08:00:00", "2021-01-11 09:59:59.999999", "gym"),   # 1 µs early
        ("5", "10", "2021-01-11 09:00:00", "2021-01-11 12:00:00", ""),          # null name
        ("6", "10", "2021-01-11 09:00:00", "", "park"),                         # null exit
        ("7", "14", "2021-01-11 10:05:00", "2021-01-11 10:06:00", "home"),
        ("8", "12", "2021-01-11 09:00:00", "2021-01-11 12:00:00", "shop"),      # shared
        ("9", "10", "2021-01-11 09:00:00", "later", "bar"),                     # bad exit
        Bad(("10", "10", "soon", "2021-01-11 12:00:00", "zoo")),                # time
        ("11", "11", "2021-01-16 09:00:16.010001", "2021-01-16 10:00:00", "mall"),
        ("12", "98", "2021-01-11 09:00:00", "2021-01-11 12:00:00", "lab"),      # unknown
    ],
}


# --------------------------------------------------------------------------
# Writing sources


def write_csv(folder: Path, name: str, columns, rows, index: bool = False) -> Path:
    """A ``{name}.csv``; with index, a leading unnamed pandas index column."""
    path = folder / f"{name}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([""] * index + list(columns))
        for number, row in enumerate(rows):
            writer.writerow([number] * index + list(row))
    return path


def write_study(folder: Path, tables: dict = STUDY) -> Path:
    for name, rows in tables.items():
        write_csv(folder, name, COLUMNS[name], rows, index=name in WITH_INDEX)
    return folder


def write_sqlite(path: Path, tables: dict = STUDY) -> str:
    """Every column TEXT, empty cells as NULL."""
    with sqlite3.connect(path) as connection:
        for name, rows in tables.items():
            columns = COLUMNS[name]
            connection.execute(f'CREATE TABLE "{name}" ({", ".join(c + " TEXT" for c in columns)})')
            connection.executemany(
                f'INSERT INTO "{name}" VALUES ({", ".join("?" * len(columns))})',
                [[cell if cell != "" else None for cell in row] for row in rows])
    return f"sqlite:///{path}"


def typed_cell(column: str, text: str):
    """A CSV cell as the typed database value (None when empty or, for times, unparsable)."""
    kind = KINDS.get(column, "text")
    if text == "":
        return None
    if kind == "int":
        return int(float(text))
    if kind == "bool":
        return text.lower() in ("t", "true", "1", "yes")
    if kind == "ts":
        try:
            return datetime.fromisoformat(text).replace(tzinfo=None)
        except ValueError:
            return None
    return text


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return compute_ucn(write_study(tmp_path_factory.mktemp("study")))


# --------------------------------------------------------------------------
# Expected values


def hours(**cells) -> list[int]:
    """24 ints, e.g. hours(h0=1, h23=2)."""
    values = [0] * 24
    for name, value in cells.items():
        values[int(name[1:])] = value
    return values


def slots(**cells) -> list[int]:
    values = [0] * 84
    for name, value in cells.items():
        values[int(name[1:])] = value
    return values


def bins(*values) -> list[int]:
    assert len(values) == 11
    return list(values)


def empty_user(username, country, **fields) -> dict:
    user = {
        "username": username, "country": country,
        "devices_personal": 0, "devices_shared": 0,
        "traffic_seconds": 0, "first_traffic_at": None, "last_traffic_at": None,
        "bytes_in": 0, "bytes_out": 0, "packets_in": 0, "packets_out": 0,
        "dns_requests": 0, "http_requests": 0,
        "bytes_by_hour_weekday": [0] * 24, "bytes_by_hour_weekend": [0] * 24,
        "bytes_by_week_slot": [0] * 84,
        "user_events_by_hour_weekday": [0] * 24, "user_events_by_hour_weekend": [0] * 24,
        "bytes_by_service": {}, "inter_event_hist": [0] * 11,
        "sessions_count": 0, "sessions_seconds": 0.0, "session_duration_hist": [0] * 11,
        "last_session": None, "open_session": None,
    }
    user.update(fields)
    return user


S1 = {
    "user": 1, "start": "2021-01-11T10:00:00", "end": "2021-01-11T10:10:00.001000",
    "duration_s": 600.001, "events": 5, "dns_events": 3, "http_events": 2,
    "devices": [10, 11], "platforms": ["android", "ios"],
    "top_domains": [["a.com", 2], ["B.com", 1], ["b.com", 1]],
    "locations": ["home", "work"],
}
S2 = {
    "user": 1, "start": "2021-01-11T10:20:00.001001", "end": "2021-01-11T10:20:01.001001",
    "duration_s": 1.0, "events": 3, "dns_events": 3, "http_events": 0,
    "devices": [11, 14], "platforms": ["ios"],
    "top_domains": [["c.com", 3]], "locations": ["work"],
}
S6_RECORD = {
    "user": 1, "start": "2021-01-16T09:00:00", "end": "2021-01-16T09:00:16.010000",
    "duration_s": 16.01, "events": 18, "dns_events": 15, "http_events": 3,
    "devices": [11], "platforms": ["ios"],
    "top_domains": [["y.com", 3], ["z.com", 3]] + [[f"d{k:02d}.com", 1] for k in range(8)],
    "locations": [],
}
ANNA = empty_user(
    "anna", "fr", devices_personal=3, devices_shared=1, dns_requests=27, http_requests=8,
    # Paris in January is UTC+1; Monday 11th, Saturdays 16th and 23rd.
    user_events_by_hour_weekday=hours(h11=8, h12=3, h13=2, h14=1),
    user_events_by_hour_weekend=hours(h10=19),
    # gaps: 0 0 | 0.001 | 0.01 | 0.5 x4 | 1 s x16 | 60 | 600, 600.000001,
    # 2398.998999, 3599.000001 | 3600 | 4 days 19:59 | exactly 7 days
    inter_event_hist=bins(2, 1, 1, 4, 16, 0, 1, 4, 1, 1, 1),
    sessions_count=3, sessions_seconds=617.011,
    session_duration_hist=bins(0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0),
    last_session=S6_RECORD,
)
TRAFFIC = {
    "traffic_seconds": 6, "first_traffic_at": "2021-01-04T00:30:00",
    "last_traffic_at": "2021-07-05T00:30:00.000001",
    "bytes_in": 3100, "bytes_out": 59, "packets_in": 59, "packets_out": 9,
    "dns_requests": 2, "http_requests": 1,
    "bytes_by_service": {"dns": 0, "https": 16, "unknown": 7},
    "inter_event_hist": bins(0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0),  # exactly one day
}
BEN = empty_user(
    "ben", "uk", devices_personal=1, devices_shared=1, **TRAFFIC,
    # London: BST (UTC+1) in July and from 2021-03-28 01:00 UTC, GMT in January.
    bytes_by_hour_weekday=hours(h0=202 + 400, h1=101, h23=808),
    bytes_by_hour_weekend=hours(h2=1616, h23=32),
    bytes_by_week_slot=slots(s0=101 + 202 + 400, s59=808, s73=1616, s83=32),
    user_events_by_hour_weekend=hours(h23=2),
)
EVE = empty_user(
    "eve", "fr", devices_personal=1, **TRAFFIC,
    # Paris: CEST (UTC+2) in July and from 2021-03-28 01:00 UTC, CET in January.
    bytes_by_hour_weekday=hours(h0=32, h1=202 + 400, h2=101),
    bytes_by_hour_weekend=hours(h0=808, h3=1616),
    bytes_by_week_slot=slots(s0=202 + 400 + 32, s1=101, s60=808, s73=1616),
    user_events_by_hour_weekday=hours(h0=1),
    user_events_by_hour_weekend=hours(h0=1),
)
CARL = empty_user(
    "carl", None, devices_personal=1, traffic_seconds=1,
    first_traffic_at="2021-07-05T00:30:00", last_traffic_at="2021-07-05T00:30:00",
    bytes_in=5, bytes_out=5, packets_in=1, packets_out=1,
    bytes_by_hour_weekday=hours(h1=10), bytes_by_week_slot=slots(s0=10),
    bytes_by_service={"HTTPS": 7},
)
DORA = empty_user("dora", "uk")
STATS = {
    "rows": {"users": 8, "devices": 9, "user_devices": 15, "devicetraffic": 18,
             "deviceapptraffic": 8, "httpreqs": 12, "dnsreqs": 39, "locations": 12},
    "bad": {"users": 2, "devices": 1, "user_devices": 2, "devicetraffic": 6,
            "deviceapptraffic": 1, "httpreqs": 1, "dnsreqs": 6, "locations": 1},
    "bad_reasons": {
        "users": {"key": 1, "type": 1}, "devices": {"type": 1},
        "user_devices": {"id": 1, "key": 1},
        "devicetraffic": {"id": 1, "key": 1, "time": 2, "type": 2},
        "deviceapptraffic": {"type": 1}, "httpreqs": {"type": 1},
        "dnsreqs": {"id": 1, "key": 1, "time": 1, "type": 3}, "locations": {"time": 1},
    },
    "duplicates": {"users": 1, "devices": 0, "user_devices": 1, "devicetraffic": 1,
                   "deviceapptraffic": 0, "httpreqs": 1, "dnsreqs": 1, "locations": 0},
    "events": {
        "devicetraffic": {"personal": 7, "shared": 1, "unknown": 3},
        "deviceapptraffic": {"personal": 5, "shared": 1, "unknown": 1},
        "httpreqs": {"personal": 9, "shared": 1, "unknown": 0},
        "dnsreqs": {"personal": 29, "shared": 1, "unknown": 2},
        "locations": {"personal": 9, "shared": 1, "unknown": 1},
    },
    "sessions": 3,
}


def assert_same(actual, expected):
    assert typed(actual) == typed(expected)


# --------------------------------------------------------------------------
# The study, field by field


def test_every_users_row_gets_a_snapshot_and_only_those(study):
    assert sorted(study["user"]) == ["1", "2", "3", "4", "5"]  # not 7 (link only), not u9
    assert sorted(study["sessions"]) == ["1", "2", "3", "4", "5"]


def test_sessions_gap_edges_min_duration_min_events(study):
    # S1 (600 s gap inside), S2 (exactly 1 s, 3 events) kept; S3 (0.999999 s),
    # S4 (2 events), S5, S7 (1 event) not kept; newest first.
    assert_same(study["sessions"]["1"], [S6_RECORD, S2, S1])


def test_anna_whole_snapshot(study):
    assert_same(study["user"]["1"], ANNA)


def test_device_of_two_users_and_local_time_per_country(study):
    assert_same(study["user"]["2"], BEN)
    assert_same(study["user"]["5"], EVE)


def test_null_country_is_london_and_user_without_data(study):
    assert_same(study["user"]["3"], CARL)
    assert_same(study["user"]["4"], DORA)
    assert study["sessions"]["2"] == study["sessions"]["3"] == study["sessions"]["4"] == []


def test_stats_count_rows_bad_rows_duplicates_and_unowned_events(study):
    assert_same(study["stats"], STATS)


def test_bytes_by_service_keys_sorted(study):
    assert list(study["user"]["2"]["bytes_by_service"]) == ["dns", "https", "unknown"]


def test_result_is_json_ready(study):
    assert json.loads(json.dumps(study)) == study


def test_sqlite_text_source_gives_the_same_result(study, tmp_path):
    assert_same(compute_ucn(write_sqlite(tmp_path / "study.db")), study)


@pytest.fixture
def pg_schema():
    """A schema of its own on the local PostgreSQL, dropped afterwards."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        engine.connect().close()
    except sqlalchemy.exc.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}: {exc}")
    name = f"test_batch_ucn_{uuid.uuid4().hex[:12]}"
    with engine.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    yield engine, name
    with engine.begin() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    engine.dispose()


def test_postgresql_typed_source_gives_the_same_features(study, pg_schema):
    import sqlalchemy as sa

    engine, schema = pg_schema
    types = {"int": sa.BigInteger, "bool": sa.Boolean, "ts": sa.DateTime, "text": sa.Text}
    metadata = sa.MetaData(schema=schema)
    with engine.begin() as connection:
        for name, rows in STUDY.items():
            aware = name == "dnsreqs"  # a timestamptz column, read in a Tokyo session
            table = sa.Table(name, metadata, *[
                sa.Column(column, sa.DateTime(timezone=True) if aware and column == "ts"
                          else types[KINDS.get(column, "text")])
                for column in COLUMNS[name]])
            table.create(connection)
            values = [{column: typed_cell(column, cell) for column, cell in zip(COLUMNS[name], row)}
                      for row in rows if not isinstance(row, Bad)]
            if aware:
                for value in values:
                    value["ts"] = value["ts"].replace(tzinfo=timezone.utc)
            connection.execute(table.insert(), values)
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}%20-ctimezone%3DAsia/Tokyo"
    result = compute_ucn(url)
    assert_same(result["user"], study["user"])
    assert_same(result["sessions"], study["sessions"])
    assert result["stats"]["duplicates"] == STATS["duplicates"]
    assert result["stats"]["events"] == STATS["events"]
    assert set(result["stats"]["bad"].values()) == {0}


# --------------------------------------------------------------------------
# Reading


def test_csv_lines_with_wrong_cell_count_or_bytes_are_bad(tmp_path):
    write_csv(tmp_path, "users", COLUMNS["users"], [("1", "anna", "fr")], index=True)
    path = write_csv(tmp_path, "dnsreqs", COLUMNS["dnsreqs"], [
        ("1", "10", "2021-01-11 10:00:00", "a.com", "t"),
        ("2", "10", "2021-01-11 10:00:01", "a.com", "t", "extra"),   # columns
        ("3", "10", "2021-01-11 10:00:02", "a.com"),                 # columns
        ("4", "10", "2021-01-11 10:00:03", "a.com", "t"),
    ], index=True)
    with path.open("ab") as handle:
        handle.write(b"\r\n9,5,10,2021-01-11 10:00:04,\xff.com,t\r\n")  # blank line, encoding
    write_csv(tmp_path, "devices", COLUMNS["devices"], [("10", "android", "f")])
    write_csv(tmp_path, "user_devices", COLUMNS["user_devices"], [("1", "10")])
    result = compute_ucn(tmp_path)
    assert result["stats"]["rows"]["dnsreqs"] == 5
    assert result["stats"]["bad_reasons"]["dnsreqs"] == {"columns": 2, "encoding": 1}
    assert result["user"]["1"]["dns_requests"] == 2
    assert result["user"]["1"]["inter_event_hist"] == bins(0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0)
    assert result["user"]["1"]["user_events_by_hour_weekday"] == hours(h11=2)


def test_named_first_column_is_kept(tmp_path):
    # No empty header: "id" is a real column, nothing is dropped.
    write_csv(tmp_path, "users", COLUMNS["users"], [("1", "anna", "fr")])
    assert compute_ucn(tmp_path)["user"]["1"]["username"] == "anna"


def test_missing_tables_are_empty(tmp_path):
    write_csv(tmp_path, "users", COLUMNS["users"], [("1", "anna", "")])
    result = compute_ucn(tmp_path)
    assert_same(result["user"], {"1": empty_user("anna", None)})
    assert result["sessions"] == {"1": []}
    assert set(result["stats"]["rows"].values()) == {0, 1}
    empty = compute_ucn(tmp_path / "nothing-here")
    assert empty["user"] == {} and empty["sessions"] == {}


@pytest.mark.parametrize("text, expected", [
    ("2021-04-20", "2021-04-20T00:00:00"),
    ("2021-04-20 17:05", "2021-04-20T17:05:00"),
    ("2021-04-20T17:05:09", "2021-04-20T17:05:09"),
    ("2015-11-10 10:12:38.772903", "2015-11-10T10:12:38.772903"),
    ("2021-04-20T17:00:00.5Z", "2021-04-20T17:00:00.500000"),
    ("2021-04-20 17:00:00+00", "2021-04-20T17:00:00"),
    ("2021-04-20 17:00:00+0000", "2021-04-20T17:00:00"),
    ("2021-04-20T01:00:00+02:00", "2021-04-19T23:00:00"),
    ("2021-04-20T23:30:00-0130", "2021-04-21T01:00:00"),
    (" 2021-04-20 17:00 ", "2021-04-20T17:00:00"),
    ("2020-02-29 23:59:59.999999", "2020-02-29T23:59:59.999999"),
    ("1969-12-31 23:59:59.5", "1969-12-31T23:59:59.500000"),
    ("2021-02-29", None), ("2021-02-29 10:00:00", None), ("2021-04-31 10:00:00", None),
    ("2021-04-20 24:00", None), ("2021-04-20 17:60", None), ("2021-04-20 17:00:60", None),
    ("2021-04-20 17:00:00.1234567", None), ("2021-04-20T17", None), ("20210420", None),
    ("2021-4-20 10:00:00", None), ("2021-04-20 17:00:00 UTC", None), ("yesterday", None),
    ("0000-01-01", None), ("9999-12-31 23:00-05:00", None), ("", None), (None, None),
])
def test_timestamp_forms(text, expected):
    micros, valid = parse_times(pd.Series([text], dtype=object))
    instant = datetime(1970, 1, 1) + timedelta(microseconds=int(micros[0])) if valid[0] else None
    assert (instant and instant.isoformat()) == expected


def test_database_timestamps_naive_and_aware():
    naive = pd.Series(pd.to_datetime(["2021-01-11 10:00:00.000001", None]))
    micros, valid = parse_times(naive)
    assert valid.tolist() == [True, False]
    assert micros[0] == 1_610_359_200_000_001
    aware = pd.Series(pd.to_datetime(["2021-01-11 19:00:00.000001"]).tz_localize("Asia/Tokyo"))
    assert parse_times(aware)[0][0] == 1_610_359_200_000_001


@pytest.mark.parametrize("text, expected, wrong", [
    ("12", 12, False), ("-4", -4, False), ("+3", 3, False), (" 7 ", 7, False),
    ("12.0", 12, False), ("1e3", 1000, False), ("", None, False), ("  ", None, False),
    (None, None, False), ("9223372036854775807", 2**63 - 1, False),
    ("abc", None, True), ("1.5", None, True), ("inf", None, True), ("nan", None, True),
    ("1_000", None, True), ("9223372036854775808", None, True), ("0x10", None, True),
])
def test_integer_forms(text, expected, wrong):
    values, null, wrong_mask = parse_integers(pd.Series([text], dtype=object))
    assert (None if null[0] or wrong_mask[0] else int(values[0]), bool(wrong_mask[0])) == \
        (expected, wrong)


@pytest.mark.parametrize("text, expected, wrong", [
    ("true", True, False), ("T", True, False), ("1", True, False), ("Yes", True, False),
    ("false", False, False), ("f", False, False), ("0", False, False), ("NO", False, False),
    ("", None, False), (None, None, False),
    ("y", None, True), ("n", None, True), ("2", None, True), ("1.0", None, True),
    ("maybe", None, True),
])
def test_boolean_forms(text, expected, wrong):
    values, null, wrong_mask = parse_booleans(pd.Series([text], dtype=object))
    assert (None if null[0] or wrong_mask[0] else bool(values[0]), bool(wrong_mask[0])) == \
        (expected, wrong)


# --------------------------------------------------------------------------
# Sessions: the cap of 100 and a naive cross-check


def test_sessions_list_is_capped_at_the_newest_100(tmp_path):
    start = datetime(2021, 3, 1)  # a Monday; London is GMT until the 28th
    rows = []
    for k in range(105):  # one session an hour: 3 events, 2 s
        for second in range(3):
            rows.append((str(len(rows) + 1), "10", stamp(start + timedelta(hours=k, seconds=second)),
                         f"s{k}.com", "t"))
    write_csv(tmp_path, "users", COLUMNS["users"], [("1", "ann", "uk")])
    write_csv(tmp_path, "devices", COLUMNS["devices"], [("10", "ios", "f")])
    write_csv(tmp_path, "user_devices", COLUMNS["user_devices"], [("1", "10")])
    write_csv(tmp_path, "dnsreqs", COLUMNS["dnsreqs"], rows)
    result = compute_ucn(tmp_path)
    sessions = result["sessions"]["1"]
    assert len(sessions) == 100
    assert [s["start"] for s in sessions[:2]] == ["2021-03-05T08:00:00", "2021-03-05T07:00:00"]
    assert sessions[-1]["start"] == "2021-03-01T05:00:00"
    assert sessions[0]["top_domains"] == [["s104.com", 3]]
    user = result["user"]["1"]
    assert_same(user["last_session"], sessions[0])
    assert user["sessions_count"] == 105
    assert_same(user["sessions_seconds"], 210.0)
    assert user["session_duration_hist"] == bins(0, 0, 0, 0, 105, 0, 0, 0, 0, 0, 0)
    assert user["inter_event_hist"] == bins(0, 0, 0, 0, 210, 0, 0, 104, 0, 0, 0)


EDGES_US = [0, 1_000, 10_000, 100_000, 10**6, 10**7, 6 * 10**7, 6 * 10**8, 36 * 10**8,
            864 * 10**8, 6048 * 10**8]
GAPS_US = [0, 1, 999, 1_000, 1_001, 10_000, 999_999, 10**6, 10**6 + 1, 599_999_999,
           600_000_000, 600_000_001, 3_600_000_000, 86_400_000_000]


def naive_activity(events, country):
    """Row-by-row reference: events = [(ts_us, table, id, devid, domain)] of one user."""
    zone = ZoneInfo("Europe/Paris" if country == "fr" else "Europe/London")
    ordered = sorted(events)
    weekday, weekend = [0] * 24, [0] * 24
    for ts, *_ in ordered:
        local = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=ts)
        local = local.astimezone(zone)
        (weekend if local.weekday() >= 5 else weekday)[local.hour] += 1
    gap_hist = [0] * 11
    for before, after in zip(ordered, ordered[1:]):
        gap_hist[bisect.bisect_right(EDGES_US, after[0] - before[0]) - 1] += 1
    groups = []
    for event in ordered:
        if groups and event[0] - groups[-1][-1][0] <= 600_000_000:
            groups[-1].append(event)
        else:
            groups.append([event])
    kept = [g for g in groups if g[-1][0] - g[0][0] >= 1_000_000 and len(g) >= 3]
    duration_hist = [0] * 11
    for group in kept:
        duration_hist[bisect.bisect_right(EDGES_US, group[-1][0] - group[0][0]) - 1] += 1
    return {
        "user_events_by_hour_weekday": weekday, "user_events_by_hour_weekend": weekend,
        "inter_event_hist": gap_hist, "sessions_count": len(kept),
        "sessions_seconds": sum(g[-1][0] - g[0][0] for g in kept) / 1_000_000,
        "session_duration_hist": duration_hist,
    }, [(g[0][0], g[-1][0], len(g), sum(e[1] == "dnsreqs" for e in g),
         sorted({e[3] for e in g})) for g in reversed(kept)][:100]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([1, 2]), st.sampled_from(["dnsreqs", "httpreqs"]),
                          st.sampled_from([10, 11]), st.sampled_from(GAPS_US),
                          st.sampled_from(["t", "f", ""])), min_size=1, max_size=60))
def test_sessions_and_histograms_match_a_naive_computation(draws):
    # Two users (fr, uk), two personal devices each, events around the
    # 2021-03-28 DST switch; timelines advance by gaps near the edges.
    base = int((datetime(2021, 3, 27, 23, 0) - datetime(1970, 1, 1)).total_seconds()) * 10**6
    cursor = {1: base, 2: base + 123}
    rows = {"dnsreqs": [], "httpreqs": []}
    events = {1: [], 2: []}
    for number, (user, table, device, gap, flag) in enumerate(draws, start=1):
        cursor[user] += gap * 37  # spread: hours cross midnight and the switch
        ts = cursor[user]
        devid = device + 10 * (user - 1)
        text = (datetime(1970, 1, 1) + timedelta(microseconds=ts)).isoformat()
        rows[table].append((str(number), str(devid), text, f"d{number % 3}", flag))
        if table == "dnsreqs" or flag == "t":
            events[user].append((ts, table, number, devid, f"d{number % 3}"))
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        write_csv(folder, "users", COLUMNS["users"], [("1", "f", "fr"), ("2", "u", "uk")])
        write_csv(folder, "devices", COLUMNS["devices"],
                  [(str(d), "p", "f") for d in (10, 11, 20, 21)])
        write_csv(folder, "user_devices", COLUMNS["user_devices"],
                  [("1", "10"), ("1", "11"), ("2", "20"), ("2", "21")])
        for table, table_rows in rows.items():
            write_csv(folder, table, COLUMNS[table], table_rows)
        result = compute_ucn(folder)
    for user, country in ((1, "fr"), (2, "uk")):
        fields, sessions = naive_activity(events[user], country)
        actual = result["user"][str(user)]
        assert_same({name: actual[name] for name in fields}, fields)
        records = result["sessions"][str(user)]
        assert [(_micros(r["start"]), _micros(r["end"]), r["events"], r["dns_events"], r["devices"])
                for r in records] == sessions
        assert all(r["duration_s"] == (_micros(r["end"]) - _micros(r["start"])) / 10**6
                   for r in records)


def _micros(iso: str) -> int:
    return (datetime.fromisoformat(iso) - datetime(1970, 1, 1)) // timedelta(microseconds=1)
