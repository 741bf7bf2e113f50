"""Tests of the synthetic ucn tables: layout, determinism, sizes, hard cases,
the same rows in CSV, SQLite and PostgreSQL, bad rows.

The checks read what was written, the way the contract does (SPEC.md sections
1, 4 and 5, docs/readings.md), and do not reuse the generator's own tables,
constants or its summary's ``cases`` to find the hard cases.
"""
import csv
import datetime as dt
import os
import re
import sqlite3
import uuid
from pathlib import Path

import pandas as pd
import pytest

from datasets.ucn.generate import generate_ucn

S = 1_000_000  # one second in microseconds
GAP = 600 * S
POSTGRES_URL = os.environ.get("UCN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
ZONES = {"fr": "Europe/Paris"}  # anything else is Europe/London
DST_END = "2015-10-25 01:00"  # UTC, both zones

# table -> column -> kind, as the study's database has them
COLUMNS = {
    "users": {"id": "int", "username": "text", "country": "text"},
    "devices": {"id": "int", "platform": "text", "shared": "bool"},
    "user_devices": {"user_id": "int", "device_id": "int"},
    "devicetraffic": {"id": "int", "devid": "int", "ts": "ts", "packets_in": "int",
                      "bytes_in": "int", "packets_out": "int", "bytes_out": "int"},
    "deviceapptraffic": {"id": "int", "devid": "int", "ts": "ts", "dstport": "int",
                         "service": "text", "packets_in": "int", "bytes_in": "int",
                         "packets_out": "int", "bytes_out": "int"},
    "httpreqs2": {"id": "int", "devid": "int", "ts": "ts", "req_url_host": "text",
                  "user_url": "bool"},
    "dnsreqs": {"id": "int", "devid": "int", "ts": "ts", "query": "text", "user_req": "bool"},
    "locations": {"id": "int", "devid": "int", "entertime": "ts", "exittime": "ts", "name": "text"},
}
EVENT_TIME = {"devicetraffic": "ts", "deviceapptraffic": "ts", "httpreqs2": "ts", "dnsreqs": "ts",
              "locations": "entertime"}
SQL_TYPES = {"int": {"integer", "bigint"}, "text": {"text"}, "bool": {"boolean"},
             "ts": {"timestamp without time zone"}}
STAMP = r"2015-1[012]-\d\d \d\d:\d\d:\d\d(\.\d{6})?"


@pytest.fixture(scope="module", params=[1, 7])
def data(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"ucn{request.param}")
    generate_ucn(str(folder), seed=request.param, scale=0.02)
    return folder


@pytest.fixture
def pg_schema():
    """A schema of its own on the local PostgreSQL, dropped afterwards."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(postgres(POSTGRES_URL))
    try:
        engine.connect().close()
    except sqlalchemy.exc.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}: {exc}")
    name = f"test_ucn_{uuid.uuid4().hex[:12]}"
    yield name
    with engine.begin() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    engine.dispose()


def postgres(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


# --- reading back ---------------------------------------------------------------

def read(folder: Path, table: str) -> pd.DataFrame:
    """A table as text (empty cell = ''), the index column dropped, in file order."""
    return pd.read_csv(folder / f"{table}.csv", dtype=str, keep_default_na=False, index_col=0)


def micros(cells: pd.Series) -> pd.Series:
    return pd.to_datetime(cells, format="ISO8601").dt.as_unit("us").astype("int64")


def local(micro: pd.Series, countries: pd.Series) -> pd.Series:
    """Naive local wall-clock times of UTC microseconds, per the user's country."""
    out = pd.Series(pd.NaT, index=micro.index, dtype="datetime64[us]")
    utc = pd.to_datetime(micro, unit="us").dt.tz_localize("UTC")
    for zone in ("Europe/London", "Europe/Paris"):
        mine = countries.map(lambda c: ZONES.get(c, "Europe/London")) == zone
        out[mine] = utc[mine].dt.tz_convert(zone).dt.tz_localize(None).dt.as_unit("us")
    return out


def personal_links(folder: Path) -> pd.DataFrame:
    """(user_id, device_id) of devices listed in `devices`, not shared (null = false)."""
    devices = read(folder, "devices").set_index("id")
    links = read(folder, "user_devices").drop_duplicates()
    links = links[links["device_id"].isin(devices.index)]
    return links[links["device_id"].map(devices["shared"]) != "True"]


def activity_events(folder: Path) -> pd.DataFrame:
    """Every user's activity events (DNS, HTTP with user_url true), ids counted once,
    in (ts, table, id) order, with the gap to the user's previous event."""
    dns = read(folder, "dnsreqs").drop_duplicates("id")
    http = read(folder, "httpreqs2").drop_duplicates("id")
    http = http[http["user_url"] == "True"]
    events = pd.concat([dns.assign(table="dnsreqs"), http.assign(table="httpreqs")])
    events = events.merge(personal_links(folder), left_on="devid", right_on="device_id")
    users = read(folder, "users").set_index("id")["country"]
    events = events.assign(t=micros(events["ts"]), n=events["id"].astype(int),
                           country=events["user_id"].map(users))
    events = events.sort_values(["user_id", "t", "table", "n"]).reset_index(drop=True)
    events["gap"] = events.groupby("user_id")["t"].diff()
    return events


def sessions(folder: Path) -> pd.DataFrame:
    """Kept sessions (gap > 600 s splits; ≥ 3 events, ≥ 1 s) with local start and end."""
    events = activity_events(folder)
    events["session"] = (events["gap"].isna() | (events["gap"] > GAP)).cumsum()
    kept = events.groupby("session").agg(user_id=("user_id", "first"), country=("country", "first"),
                                         start=("t", "min"), end=("t", "max"), events=("t", "size"),
                                         devices=("devid", "nunique"))
    kept = kept[(kept["events"] >= 3) & (kept["end"] - kept["start"] >= S)].copy()
    kept["local_start"] = local(kept["start"], kept["country"])
    kept["local_end"] = local(kept["end"], kept["country"])
    return kept


def parses_as_time(text: str) -> bool:
    """The timestamps docs/readings.md accepts."""
    shape = (r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,6})?)?)?"
             r"(?:Z|[+-]\d\d(?::?\d\d)?)?")
    if not re.fullmatch(shape, text.strip()):
        return False
    try:
        dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def invalid_lines(folder: Path) -> set[tuple[str, int]]:
    """(table, physical line) of every event row that must be a dead letter."""
    bad = set()
    for table, time in EVENT_TIME.items():
        with open(folder / f"{table}.csv", newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            assert header == [""] + list(COLUMNS[table])
            for cells in reader:
                row = dict(zip(header, cells))
                if (len(cells) != len(header) or not row["devid"].strip()
                        or not parses_as_time(row[time])):
                    bad.add((table, reader.line_num))
    return bad


def as_text(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Cells of a table read from anywhere, spelled like the CSV files."""
    out = {}
    for column, kind in COLUMNS[table].items():
        cells = frame[column].astype(object).where(frame[column].notna(), None)
        cells = cells.replace("", None)
        if kind == "int":
            numbers = pd.to_numeric(cells).astype("Int64")
            out[column] = numbers.map(lambda v: "" if pd.isna(v) else str(int(v)))
        elif kind == "bool":
            spelled = {True: "True", False: "False", "True": "True", "False": "False"}  # 1 and 0 are True, False
            out[column] = cells.map(lambda v, spelled=spelled: "" if v is None else spelled[v])
        elif kind == "ts":
            stamps = pd.to_datetime(cells, format="ISO8601").dt.strftime("%Y-%m-%d %H:%M:%S.%f")
            out[column] = stamps.str.replace(r"\.000000$", "", regex=True).fillna("")
        else:
            out[column] = cells.fillna("").astype(str)
    text = pd.DataFrame(out)
    return text.sort_values(list(text.columns)).reset_index(drop=True)


# --- layout, determinism, sizes -------------------------------------------------

def test_one_file_per_table_with_the_study_columns(tmp_path):
    summary = generate_ucn(str(tmp_path), seed=2, scale=0.02)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{t}.csv" for t in COLUMNS)
    assert summary["format"] == "csv" and summary["target"] == str(tmp_path)
    for table, columns in COLUMNS.items():
        path = tmp_path / f"{table}.csv"
        assert path.read_text().split("\n", 1)[0] == "," + ",".join(columns)
        frame = pd.read_csv(path)
        assert list(frame.columns) == ["Unnamed: 0"] + list(columns)
        assert list(frame["Unnamed: 0"]) == list(range(len(frame)))
        assert summary["rows"][table] == len(frame) > 0


def test_same_arguments_give_the_same_bytes(tmp_path):
    first = generate_ucn(str(tmp_path / "a"), seed=3, scale=0.02, bad_rows=6)
    second = generate_ucn(str(tmp_path / "b"), seed=3, scale=0.02, bad_rows=6)
    generate_ucn(str(tmp_path / "c"), seed=4, scale=0.02, bad_rows=6)  # another seed: other bytes
    names = [f"{t}.csv" for t in COLUMNS]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    drop = ("target",)
    assert {k: v for k, v in first.items() if k not in drop} == \
        {k: v for k, v in second.items() if k not in drop}
    assert any((tmp_path / "a" / n).read_bytes() != (tmp_path / "c" / n).read_bytes() for n in names)


def test_rows_grow_linearly_with_the_scale(tmp_path):
    small = generate_ucn(str(tmp_path / "small"), seed=5, scale=0.1)
    large = generate_ucn(str(tmp_path / "large"), seed=5, scale=0.2)
    for table, rows in large["rows"].items():
        assert rows == len(read(tmp_path / "large", table))
    total_small, total_large = sum(small["rows"].values()), sum(large["rows"].values())
    assert 18_000 <= total_small <= 45_000
    assert 1.5 <= total_large / total_small <= 2.6


def test_scale_one_is_the_size_and_shape_of_the_study(tmp_path):
    summary = generate_ucn(str(tmp_path), seed=1, scale=1.0)
    rows = summary["rows"]
    assert 250_000 <= sum(rows.values()) <= 350_000
    assert rows["devicetraffic"] == max(rows.values())
    assert rows["dnsreqs"] + rows["httpreqs2"] > 0.25 * sum(rows.values())
    users = read(tmp_path, "users")
    assert 22 <= len(users) <= 28
    assert 0.5 <= (users["country"] == "uk").mean() <= 0.8
    assert (users["country"] == "fr").sum() >= 4
    per_user = personal_links(tmp_path).groupby("user_id").size()
    assert per_user.max() <= 4 and per_user.between(1, 3).mean() >= 0.8


def test_cells_are_spelled_like_the_study(data):
    for table, time in EVENT_TIME.items():
        frame = read(data, table)
        assert frame[time].str.fullmatch(STAMP).all(), table
        assert frame["devid"].str.fullmatch(r"\d+").all() and frame["id"].str.fullmatch(r"\d+").all()
    for table in ("dnsreqs", "httpreqs2"):
        ts = read(data, table)["ts"]
        assert ts.str.contains(r"\.\d{6}$").mean() > 0.9  # microseconds
        assert (ts.str.contains(r"\.\d{3}000$")).any()  # the hostview PC's milliseconds
    assert read(data, "devicetraffic")["ts"].str.fullmatch(r"\S+ \d\d:\d\d:\d\d").all()
    times = pd.concat([micros(read(data, t)[c]) for t, c in EVENT_TIME.items()])
    assert times.min() >= micros(pd.Series(["2015-10-01"]))[0]
    assert times.max() < micros(pd.Series(["2015-12-01 12:00"]))[0]
    assert set(read(data, "users")["country"]) == {"uk", "fr", ""}
    devices = read(data, "devices")
    assert set(devices["platform"]) <= {"iphone", "android-phone", "macbook", "windows-pc", "ipad",
                                        "linux-pc"}
    for table, column in (("devices", "shared"), ("httpreqs2", "user_url"), ("dnsreqs", "user_req")):
        assert set(read(data, table)[column]) <= {"True", "False", ""}
    for column in ("packets_in", "bytes_in", "packets_out", "bytes_out"):
        assert read(data, "devicetraffic")[column].str.fullmatch(r"\d*").all()


def test_null_cells_where_the_study_has_them(data):
    expected = {"users": ["country"], "devices": ["shared"],
                "devicetraffic": ["packets_in", "bytes_in", "packets_out", "bytes_out"],
                "deviceapptraffic": ["service", "packets_in", "bytes_in", "packets_out", "bytes_out"],
                "httpreqs2": ["req_url_host", "user_url"], "dnsreqs": ["query"],
                "locations": ["exittime", "name"]}
    for table, columns in expected.items():
        frame = read(data, table)
        for column in columns:
            assert (frame[column] == "").any(), (table, column)
            assert (frame[column] == "").mean() < 0.7, (table, column)
    assert (read(data, "dnsreqs")["user_req"] != "").all()
    for table in ("user_devices", "devicetraffic", "dnsreqs", "httpreqs2"):
        frame = read(data, table)
        assert not (frame == "").all(axis=1).any()
    assert (read(data, "users")["username"] != "").all()


# --- activity, sessions, time -----------------------------------------------------

def test_exact_gaps_at_the_session_edge_between_activity_events(data):
    events = activity_events(data)
    edges = {599 * S, 600 * S, 601 * S, 600 * S + 1}
    by_user = events.groupby("user_id")["gap"].apply(lambda gaps: edges <= set(gaps.dropna()))
    assert by_user.any()
    user = by_user[by_user].index[0]
    mine = events[events["user_id"] == user]
    assert set(mine.loc[mine["gap"].isin(edges), "table"]) == {"dnsreqs", "httpreqs"}
    # a user_url false or null request lies inside the 600 s and the 601 s gaps: not an activity event
    http = read(data, "httpreqs2").assign(t=lambda f: micros(f["ts"]))
    passive = http[http["devid"].isin(mine["devid"]) & (http["user_url"] != "True")]
    for gap in (600 * S, 601 * S):
        ends = mine.loc[mine["gap"] == gap, "t"]
        assert any(passive["t"].between(end - gap + 1, end - 1).any() for end in ends), gap


def test_gaps_of_many_lengths(data):
    gaps = activity_events(data)["gap"].dropna()
    for low, high in ((0, 0.001), (0.001, 1), (1, 60), (60, 600), (600, 3_600),
                      (3_600, 86_400), (86_400, 7 * 86_400)):
        assert ((gaps >= low * S) & (gaps < high * S)).any(), (low, high)


def test_two_devices_of_a_user_at_one_instant_and_interleaved(data):
    events = activity_events(data)
    previous = events.groupby("user_id")["devid"].shift()
    assert ((events["gap"] == 0) & previous.notna() & (events["devid"] != previous)).any()
    events["session"] = (events["gap"].isna() | (events["gap"] > GAP)).cumsum()
    switches = (events["devid"] != previous) & previous.notna() & (events["gap"] <= GAP)
    assert (switches.groupby(events["session"]).sum() >= 3).any()  # A B A B within one session


def test_sessions_across_local_midnight_and_the_weekend(data):
    kept = sessions(data)
    midnight = kept["local_start"].dt.date != kept["local_end"].dt.date
    weekend = kept["local_start"].dt.day_of_week >= 5
    boundary = weekend != (kept["local_end"].dt.day_of_week >= 5)
    for country in ("uk", "fr"):
        assert (midnight & boundary & (kept["country"] == country)).any(), country
    utc_date = pd.to_datetime(kept["start"], unit="us").dt.date == \
        pd.to_datetime(kept["end"], unit="us").dt.date
    assert (midnight & boundary & utc_date).any()  # a boundary crossed in local time only


def test_sessions_across_the_end_of_summer_time(data):
    kept = sessions(data)
    change = micros(pd.Series([DST_END]))[0]
    across = (kept["start"] < change) & (kept["end"] > change)
    assert set(kept.loc[across, "country"]) >= {"uk", "fr"}
    traffic = micros(read(data, "devicetraffic")["ts"])
    assert traffic.min() < change - 14 * 86_400 * S and traffic.max() > change + 21 * 86_400 * S


# --- devices and links ---------------------------------------------------------------

def test_shared_co_owned_and_unknown_devices(data):
    devices = read(data, "devices").set_index("id")
    links = read(data, "user_devices")
    names = read(data, "users").set_index("id")["username"]
    active = set(pd.concat([read(data, t)["devid"] for t in ("dnsreqs", "httpreqs2", "devicetraffic")]))
    distinct = links.drop_duplicates()
    owners = distinct.groupby("device_id")["user_id"].apply(sorted)
    shared = [d for d in owners.index if d in devices.index and devices.at[d, "shared"] == "True"]
    assert shared and all(len(owners[d]) == 2 for d in shared)
    households = [{names[u].split(".")[0] for u in owners[d]} for d in shared]
    assert all(len(family) == 1 for family in households)
    assert set(shared) & active
    co_owned = [d for d in owners.index if d in devices.index and devices.at[d, "shared"] == "False"
                and len(owners[d]) == 2]
    assert co_owned and set(co_owned) & set(read(data, "dnsreqs")["devid"])
    assert any(devices.at[d, "shared"] == "" and len(owners[d]) == 1
               for d in owners.index if d in devices.index)
    unlinked = set(devices.index) - set(links["device_id"])
    assert unlinked & active
    linked_unknown = set(links["device_id"]) - set(devices.index)
    assert linked_unknown & active
    assert active - set(devices.index) - set(links["device_id"])  # in the events only
    assert links.duplicated().any() and links.duplicated().sum() <= 3
    assert set(names.index) - set(links["user_id"])  # a user without devices
    quiet = set(links["user_id"]) - set(activity_events(data)["user_id"])
    assert any(set(links.loc[links["user_id"] == u, "device_id"]).isdisjoint(active) for u in quiet)


def test_duplicated_ids_are_exact_copies_of_a_few_rows(data):
    for table in EVENT_TIME:
        frame = read(data, table)
        repeated = frame["id"].duplicated(keep=False)
        assert repeated.any(), table
        assert frame["id"].value_counts().max() == 2
        assert frame[repeated].duplicated(keep=False).all()  # same values in every column
        assert frame["id"].duplicated().sum() <= max(2, 0.01 * len(frame))


def test_locations_overlap_sessions_even_at_one_instant(data):
    locations = read(data, "locations").drop_duplicates("id")
    assert locations["name"].str.fullmatch(r"(.+, (Nottingham|Paris)|Nottingham, United Kingdom|"
                                           r"Paris, France|)").all()
    assert (locations["name"] == "Faraday Road, Nottingham").any() or \
        locations["name"].str.endswith(", Nottingham").any()
    closed = locations[(locations["exittime"] != "") & (locations["name"] != "")]
    closed = closed.assign(enter=micros(closed["entertime"]), exit=micros(closed["exittime"]))
    assert (closed["enter"] <= closed["exit"]).all()
    stays = closed.merge(personal_links(data), left_on="devid", right_on="device_id")
    pairs = stays.merge(sessions(data), on="user_id")
    overlap = (pairs["enter"] <= pairs["end"]) & (pairs["exit"] >= pairs["start"])
    assert overlap.sum() >= 3
    assert (pairs["exit"] == pairs["start"]).any()  # touches at one instant: still overlaps
    assert (pairs["enter"] == pairs["end"] + 1).any()  # 1 µs after: does not


# --- databases ------------------------------------------------------------------------

def read_sqlite(path: Path, table: str) -> pd.DataFrame:
    with sqlite3.connect(path) as connection:
        return pd.read_sql_query(f'SELECT * FROM "{table}"', connection)


def read_postgresql(schema: str, table: str) -> pd.DataFrame:
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres(POSTGRES_URL))
    try:
        return pd.read_sql_query(f'SELECT * FROM "{schema}"."{table}"', engine)
    finally:
        engine.dispose()


@pytest.mark.integration
def test_the_same_rows_in_csv_sqlite_and_postgresql(tmp_path, pg_schema):
    folder, db = tmp_path / "csv", tmp_path / "ucn.db"
    generate_ucn(str(folder), seed=11, scale=0.02)
    lite = generate_ucn(f"sqlite:///{db}", seed=11, scale=0.02, schema="ignored")
    pg = generate_ucn(POSTGRES_URL, seed=11, scale=0.02, schema=pg_schema)
    assert (lite["format"], pg["format"], pg["schema"]) == ("sqlite", "postgresql", pg_schema)
    for table in COLUMNS:
        expected = read(folder, table)
        wanted = as_text(expected, table)  # the CSV cells are already spelled canonically
        pd.testing.assert_frame_equal(
            wanted, expected.sort_values(list(expected.columns)).reset_index(drop=True),
            check_dtype=False, check_column_type=False)
        for frame in (read_sqlite(db, table), read_postgresql(pg_schema, table)):
            assert list(frame.columns) == list(COLUMNS[table])
            pd.testing.assert_frame_equal(as_text(frame, table), wanted)


@pytest.mark.integration
def test_postgresql_column_types_and_replacing_tables(pg_schema):
    generate_ucn(POSTGRES_URL, seed=12, scale=0.02, schema=pg_schema)
    summary = generate_ucn(POSTGRES_URL, seed=13, scale=0.02, schema=pg_schema)
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres(POSTGRES_URL))
    with engine.connect() as connection:
        types = connection.exec_driver_sql(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = '{pg_schema}'").fetchall()
        counts = {table: connection.exec_driver_sql(
            f'SELECT count(*) FROM "{pg_schema}"."{table}"').scalar() for table in COLUMNS}
    engine.dispose()
    found = {(table, column): kind for table, column, kind in types}
    assert {table for table, _ in found} == set(COLUMNS)
    for table, columns in COLUMNS.items():
        for column, kind in columns.items():
            assert found[(table, column)] in SQL_TYPES[kind], (table, column)
    assert found[("devicetraffic", "bytes_in")] == "bigint"
    assert counts == summary["rows"]  # dropped and written again, not appended


def test_sqlite_tables_are_replaced(tmp_path):
    db = tmp_path / "ucn.db"
    generate_ucn(f"sqlite:///{db}", seed=12, scale=0.02)
    summary = generate_ucn(f"sqlite:///{db}", seed=13, scale=0.03)
    with sqlite3.connect(db) as connection:
        counts = {t: connection.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in COLUMNS}
    assert counts == summary["rows"]
    assert summary["format"] == "sqlite" and summary["schema"] is None


# --- bad rows ---------------------------------------------------------------------------

def test_every_row_is_valid_without_bad_rows(data):
    assert invalid_lines(data) == set()


def test_csv_bad_rows_are_where_the_summary_says(tmp_path):
    summary = generate_ucn(str(tmp_path), seed=9, scale=0.02, bad_rows=16)
    recorded = {(bad["table"], bad["line"]) for bad in summary["bad_rows"]}
    assert len(summary["bad_rows"]) == len(recorded) == 16
    assert invalid_lines(tmp_path) == recorded
    assert len({bad["table"] for bad in summary["bad_rows"]}) == len(EVENT_TIME)
    reasons = " ".join(bad["reason"] for bad in summary["bad_rows"])
    for kind in ("missing ts", "missing devid", "unparsable", "wrong column count"):
        assert kind in reasons
    generate_ucn(str(tmp_path / "clean"), seed=9, scale=0.02)
    for table in COLUMNS:  # without the bad lines (and the index cell), the clean tables
        lines = (tmp_path / f"{table}.csv").read_text().split("\n")
        kept = [text.split(",", 1)[-1] for number, text in enumerate(lines, 1)
                if (table, number) not in recorded]
        clean = (tmp_path / "clean" / f"{table}.csv").read_text().split("\n")
        assert kept == [text.split(",", 1)[-1] for text in clean]
    for bad in summary["bad_rows"]:  # new ids: the duplicates stay the planted ones
        cells = (tmp_path / f"{bad['table']}.csv").read_text().split("\n")[bad["line"] - 1].split(",")
        ids = read(tmp_path / "clean", bad["table"])["id"]
        assert cells[1] not in set(ids)


def check_database_bad_rows(summary: dict, frames: dict[str, pd.DataFrame], count: int) -> None:
    assert len(summary["bad_rows"]) == count
    recorded = {(bad["table"], bad["id"]) for bad in summary["bad_rows"]}
    assert len(recorded) == count and len({t for t, _ in recorded}) >= 3
    broken = set()
    for table, time in EVENT_TIME.items():
        frame = frames[table]
        null = frame[time].isna() | frame["devid"].isna()
        broken |= {(table, int(i)) for i in frame.loc[null, "id"]}
    assert broken == recorded
    assert {bad["reason"] for bad in summary["bad_rows"]} <= \
        {"missing ts", "missing entertime", "missing devid"}


def test_sqlite_bad_rows_are_null_cells(tmp_path):
    db = tmp_path / "bad.db"
    summary = generate_ucn(f"sqlite:///{db}", seed=9, scale=0.02, bad_rows=10)
    check_database_bad_rows(summary, {t: read_sqlite(db, t) for t in EVENT_TIME}, 10)


@pytest.mark.integration
def test_postgresql_bad_rows_are_null_cells(pg_schema):
    summary = generate_ucn(POSTGRES_URL, seed=9, scale=0.02, bad_rows=10, schema=pg_schema)
    check_database_bad_rows(summary, {t: read_postgresql(pg_schema, t) for t in EVENT_TIME}, 10)
