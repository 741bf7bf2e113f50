"""Snapshots as table rows (stream.feature_table) and their Parquet/CSV files (fsp.export), without Redis."""
from __future__ import annotations

import csv
from datetime import date, datetime

import orjson
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datasets.ucn.features import HIST_BINS
from fsp.export import CsvRows, ParquetRows
from stream.feature_table import SESSIONS, WrongType, csv_cell, features, frame, map_fields, table, tables

STORJ_USER = {
    "email_hash": "ab", "created_at": "2021-02-11", "projects": 2, "project_created_dates": ["2021-02-12"],
    "tier": "free", "bandwidth_limit_bytes": 10, "usage_limit_bytes": 20, "uploads": 3, "downloads": 1,
    "upload_bytes_by_month": {"2021-03": 5, "2021-04": 0}, "download_bytes_by_month": {},
    "first_activity_at": "2021-03-01T10:00:00", "last_activity_at": "2021-04-02T11:00:00.250000",
    "storage_bytes": 7, "storage_updated_at": None, "over_bandwidth_months": [], "over_storage_limit": False,
    "usage_sessions_count": 1, "usage_sessions_seconds": 3600.0, "operator_nodes": 0,
    "operator_paid_by_month": {}, "operator_paid_total": 0.0,
    "_meta": {"version": 9, "updated_at": "2026-01-01T00:00:00.5", "events": 4, "watermark": "2021-04-02T11:00:00"},
}

SESSION = {"user": 6, "start": "2015-11-24T18:29:25.599586", "end": "2015-11-24T18:37:49", "duration_s": 503.4,
           "events": 3, "dns_events": 2, "http_events": 1, "devices": [12], "platforms": ["macbook"],
           "top_domains": [["www.bbc.co.uk", 2], ["a.com", 1]], "locations": []}


def test_a_snapshot_becomes_a_typed_row_with_the_id_first():
    shape = table("storj", "user")
    row = shape.row("u1", STORJ_USER)
    assert list(row)[0] == "id" and row["id"] == "u1"
    assert row["created_at"] == date(2021, 2, 11) and row["project_created_dates"] == [date(2021, 2, 12)]
    assert row["last_activity_at"] == datetime(2021, 4, 2, 11, 0, 0, 250000)
    assert row["upload_bytes_by_month"] == {"2021-03": 5, "2021-04": 0} and row["download_bytes_by_month"] == {}
    assert row["storage_updated_at"] is None and row["operator_paid_total"] == 0.0
    assert row["_meta"]["version"] == 9 and row["_meta"]["updated_at"] == datetime(2026, 1, 1, 0, 0, 0, 500000)
    assert shape.unknown_fields == set()


def test_exploded_maps_vectors_and_records_name_their_columns():
    shape = table("storj", "user", explode=True, map_keys={"upload_bytes_by_month": {"2021-04", "2021-03"}})
    row = shape.row("u1", STORJ_USER)
    assert [n for n in shape.names if n.startswith("upload_bytes_by_month")] == [
        "upload_bytes_by_month-2021-03", "upload_bytes_by_month-2021-04"]
    assert row["upload_bytes_by_month-2021-04"] == 0  # a month that counted, summing 0, is no null
    assert not [n for n in shape.names if n.startswith("download_bytes_by_month")]  # no entity has a key
    assert row["_meta-version"] == 9 and "_meta" not in row
    assert row["project_created_dates"] == [date(2021, 2, 12)]  # a list of varying length stays a list

    ucn = table("ucn", "user", explode=True)
    slots = [n for n in ucn.names if n.startswith("bytes_by_week_slot-")]
    assert len(slots) == 84 and slots[0] == "bytes_by_week_slot-mon-00" and slots[-1] == "bytes_by_week_slot-sun-22"
    assert [n for n in ucn.names if n.startswith("inter_event_hist-")][4] == "inter_event_hist-1s"
    row = ucn.row("6", {"bytes_by_week_slot": list(range(84)), "inter_event_hist": [0] * 10,
                        "last_session": SESSION, "open_session": None})
    assert row["id"] == 6
    assert row["bytes_by_week_slot-mon-02"] == 1 and row["bytes_by_week_slot-sun-22"] == 83
    assert row["inter_event_hist-604800s"] is None  # a short vector: the missing bin is null, not 0
    assert row["last_session-top_domains"] == [{"domain": "www.bbc.co.uk", "count": 2}, {"domain": "a.com", "count": 1}]
    assert row["open_session-start"] is None and row["username"] is None  # null record, missing feature


def test_the_session_table_has_a_row_per_record_without_an_id_column():
    shape = table("ucn", SESSIONS)
    row = shape.row("6", SESSION)
    assert shape.names[0] == "user" and row["user"] == 6 and row["end"] == datetime(2015, 11, 24, 18, 37, 49)
    assert ("ucn", SESSIONS) in tables() and map_fields("ucn", SESSIONS) == []


def test_every_declared_histogram_label_is_a_bin_of_the_spec():
    assert HIST_BINS == ("0s", "0.001s", "0.01s", "0.1s", "1s", "10s", "60s", "600s", "3600s", "86400s", "604800s")


@pytest.mark.parametrize("features, message", [
    ({"projects": "3"}, "storj user u1 projects: expected int, got \"3\""),
    ({"projects": True}, "storj user u1 projects: expected int, got true"),
    ({"created_at": "yesterday"}, "storj user u1 created_at: expected date"),
    ({"upload_bytes_by_month": [1]}, "storj user u1 upload_bytes_by_month: expected map<int>"),
])
def test_a_value_of_another_type_is_a_one_line_error_naming_the_cell(features, message):
    with pytest.raises(WrongType, match="^" + message.replace("(", r"\(")):
        table("storj", "user").row("u1", features)


def test_a_feature_the_table_does_not_declare_is_left_out_and_reported():
    shape = table("storj", "operator")
    row = shape.row("e1", {"nodes": 1, "new_feature": 3})
    assert "new_feature" not in row and shape.unknown_fields == {"new_feature"}


def test_a_map_key_that_came_after_the_exploded_columns_is_reported():
    shape = table("storj", "operator", explode=True, map_keys={"paid_by_month": {"2021-03"}})
    row = shape.row("e1", {"paid_by_month": {"2021-03": 1.0, "2021-04": 2.0}})
    assert row["paid_by_month-2021-03"] == 1.0 and "paid_by_month-2021-04" not in row
    assert shape.unknown_fields == {"paid_by_month-2021-04"}


def test_csv_cells_and_the_frames_dtypes():
    assert [csv_cell(v) for v in (None, True, 3, 0.1, date(2021, 1, 2), datetime(2021, 1, 2, 3, 4, 5))] == [
        "", "true", "3", "0.1", "2021-01-02", "2021-01-02T03:04:05"]
    assert orjson.loads(csv_cell({"2021-04": 1})) == {"2021-04": 1}
    shape = table("storj", "user")
    df = frame(shape, [shape.row("a", STORJ_USER), shape.row("b", {"storage_bytes": None})])
    assert str(df["storage_bytes"].dtype) == "Int64" and df["storage_bytes"].isna().tolist() == [False, True]
    assert str(df["first_activity_at"].dtype) == "datetime64[us]"
    assert df.loc[0, "upload_bytes_by_month"] == {"2021-03": 5, "2021-04": 0}


# --------------------------------------------------------------------------- property: files hold every value

MONTHS = [f"2021-{m:02d}" for m in range(1, 13)]
maps = st.dictionaries(st.sampled_from(MONTHS), st.integers(0, 2**62), max_size=5)
operators = st.fixed_dictionaries({}, optional={
    "nodes": st.none() | st.integers(0, 10**6),
    "wallets": st.lists(st.text(max_size=8), max_size=3),
    "paid_by_month": st.dictionaries(st.sampled_from(MONTHS), st.floats(0, 1e6, allow_nan=False), max_size=4),
    "paid_total": st.none() | st.floats(0, 1e9, allow_nan=False),
    "users": st.lists(st.text(alphabet="0123456789abcdef", min_size=1, max_size=6), max_size=3),
})
users = st.fixed_dictionaries({"upload_bytes_by_month": maps}, optional={
    "download_bytes_by_month": maps, "created_at": st.none() | st.dates().map(str),
    "last_activity_at": st.none() | st.datetimes().map(datetime.isoformat),
})


@settings(max_examples=60, deadline=None)
@given(snapshots=st.lists(users, max_size=6), explode=st.booleans())
def test_exploded_months_missing_in_some_entities_are_null_and_every_value_is_in_its_cell(
        snapshots, explode, tmp_path_factory):
    """Months that only some entities have: each entity's cell holds its value or null, none is lost, and
    the Parquet and CSV files read back the same cells."""
    keys = {name: set().union(*(s.get(name, {}) for s in snapshots)) for name in map_fields("storj", "user")}
    shape = table("storj", "user", explode, keys)
    rows = [shape.row(f"u{n}", s) for n, s in enumerate(snapshots)]
    for snapshot, row in zip(snapshots, rows):
        for name in ("upload_bytes_by_month", "download_bytes_by_month"):
            held = snapshot.get(name)
            if not explode:
                assert row[name] == held
                continue
            cells = {column[len(name) + 1:]: value for column, value in row.items() if column.startswith(name + "-")}
            assert set(cells) == keys[name]
            assert {k: v for k, v in cells.items() if v is not None} == (held or {})
    folder = tmp_path_factory.mktemp("files")
    with ParquetRows(str(folder / "t.parquet"), shape) as writer:
        writer.write(rows)
    back = pq.read_table(folder / "t.parquet").to_pylist(maps_as_pydicts="strict")
    assert back == rows
    with CsvRows(str(folder / "t.csv"), shape) as writer:
        writer.write(rows)
    with open(folder / "t.csv", newline="") as handle:
        read = list(csv.reader(handle))
    assert read[0] == shape.names
    assert read[1:] == [[csv_cell(row[name]) for name in shape.names] for row in rows]


@settings(max_examples=40, deadline=None)
@given(snapshots=st.lists(operators, max_size=5))
def test_float_maps_none_values_and_empty_lists_round_trip_through_parquet(snapshots, tmp_path_factory):
    shape = table("storj", "operator")
    rows = [shape.row(f"e{n}", s) for n, s in enumerate(snapshots)]
    path = tmp_path_factory.mktemp("ops") / "o.parquet"
    with ParquetRows(str(path), shape) as writer:
        writer.write(rows)
    read = pq.read_table(path)
    assert read.column_names == shape.names and read.num_rows == len(snapshots)
    assert read.to_pylist(maps_as_pydicts="strict") == rows


def test_every_table_declares_the_meta_last():
    for key in tables():
        fields = features(*key)
        if key[1] != SESSIONS:
            assert fields[-1][0] == "_meta"
