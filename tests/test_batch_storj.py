"""Hand-computed checks of the batch storj reference (datasets/storj/batch.py).

Every test writes a small CSV folder the way the dumps look (a leading unnamed
index column) and compares each field with a value worked out by hand from
SPEC.md and docs/readings.md.
"""
import csv
import json
from datetime import datetime, timedelta

import pandas as pd
import pytest

from datasets.storj.batch import compute_storj, parse_integers, parse_times
from tests.expected import EMPTY_STORJ_USER, typed

USERS = ["id", "email_hash", "password_hash", "created_at"]
PROJECTS = ["created_at", "project_id", "user_id", "usage_limit", "bandwidth_limit"]
BBR = ["interval_start", "action", "inline", "settled", "project_id"]
BST = ["interval_start", "inline", "remote", "project_id"]
NODES = ["id", "wallet", "email_hash", "created_at", "last_contact_success",
         "disqualified", "suspended", "free_disk", "piece_count"]
PAYMENTS = ["period", "node_id", "amount"]
RECEIPTS = ["period", "node_id", "amount", "receipt"]


def write_csv(folder, name, columns, rows, index=True):
    """Write a dump file; with index, a leading unnamed pandas index column."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([""] * index + columns)
        for number, row in enumerate(rows):
            writer.writerow([number] * index + list(row))
    return path


def assert_user(result, user_id, **expected):
    actual = {field: result["user"][user_id][field] for field in expected}
    assert typed(actual) == typed(expected)


def assert_snapshot(result, user_id, **fields):
    """The whole snapshot equals a user with no data, updated with fields."""
    expected = dict(EMPTY_STORJ_USER)
    expected.update(fields)
    assert typed(result["user"][user_id]) == typed(expected)


# --------------------------------------------------------------------------
# Reading: files, bad rows, duplicates


@pytest.fixture
def messy(tmp_path):
    write_csv(tmp_path, "ap_users_a.csv", USERS, [
        ["U1", "EH1", "PW", "2021-01-01 10:00:00"],
        ["", "eh", "pw", "2021-01-01"],             # bad: null key
        ["  ", "eh", "pw", "2021-01-01"],           # bad: blank key
        ["u2", "eh2", "pw", ""],                    # bad: null time
        ["u3", "eh3", "pw", "yesterday"],           # bad: unparsable time
        ["u4", "eh4", "pw", "2021-01-01", "extra"],  # bad: wrong column count
        ["u8", "eh8"],                              # bad: wrong column count
        ["u9", "eh9", "pw", "2021-01-01 25:00"],    # bad: unparsable time
    ])
    write_csv(tmp_path, "eu_users_a.csv", USERS, [
        ["u1", "eh1", "pw", "2021-01-01T10:00:00"],  # duplicate of U1 (case, time form)
        ["u5", "eh5", "pw", "2021-02-03"],
    ])
    bad_bytes = write_csv(tmp_path, "us_users_a.csv", USERS, [["u7", "eh7", "pw", "2021-01-01"]])
    with bad_bytes.open("ab") as handle:
        handle.write(b"1,u6,\xff\xfe,pw,2021-01-01\r\n")  # bad: not UTF-8
    write_csv(tmp_path, "ap_projects.csv", PROJECTS, [
        ["2021-01-01", "p1", "u1", "abc", "5"],      # bad: type
        ["2021-01-01", "p2", "u5", "1", "1.5"],      # bad: type
        ["2021-01-02", "p3", "u5", "1e3", "2000.0"],
        ["", "p4", "u5", "x", "1"],                # bad: null time (and type)
    ])
    write_csv(tmp_path, "eu_projects.csv", PROJECTS, [
        ["2021-01-02 00:00", " P3 ", "U5", "1000", "2000"],  # duplicate after normalising
    ])
    write_csv(tmp_path, "bucket_data/ap_bbr.csv", BBR, [
        ["2021-04-20 17:00:00", "1", "0", "10", "p3"],
        ["2021-04-20 17:00:00", "2", "0", "20", "p3"],
        ["2021-04-20 19:00:00", "1", "0", "12.5", "p3"],  # bad: type
    ])
    write_csv(tmp_path, "bucket_data/eu_bbr.csv", BBR, [
        ["2021-04-20 17:00:00", "1", "0", "10", "P3"],       # duplicate across regions
    ])
    write_csv(tmp_path, "us_bbr.csv", BBR, [                  # no index column: kept whole
        ["2021-04-20 18:00:00", "1", "0", "5", "p3"],
    ], index=False)
    write_csv(tmp_path, "ap_bbr_backup.csv", BBR, [["2021-04-20", "1", "0", "99", "p3"]])
    write_csv(tmp_path, "ap_node_payments.csv", PAYMENTS, [["2021-03-01", "n1", "7"]])
    write_csv(tmp_path, "ap_node_payments_receipt.csv", RECEIPTS, [
        ["2021-03-01", "n1", "x", "R1"],                     # bad: type
        ["2021-03-01", "n1", "7", "R1"],
        ["2021-03-01", "N1", "7.0", "r1"],                   # duplicate
    ])
    return compute_storj(tmp_path)


def test_stats_count_rows_bad_rows_and_duplicates(messy):
    assert messy["stats"] == {
        "rows": {"users": 12, "projects": 5, "bbr": 5, "bst": 0, "nodes": 0,
                 "payments": 1, "receipts": 3},
        "bad": {"users": 8, "projects": 3, "bbr": 1, "bst": 0, "nodes": 0,
                "payments": 0, "receipts": 1},
        "bad_reasons": {
            "users": {"columns": 2, "encoding": 1, "key": 2, "time": 3},
            "projects": {"time": 1, "type": 2}, "bbr": {"type": 1}, "bst": {}, "nodes": {},
            "payments": {}, "receipts": {"type": 1},
        },
        "duplicates": {"users": 1, "projects": 1, "bbr": 1, "bst": 0, "nodes": 0,
                       "payments": 0, "receipts": 1},
    }


def test_bad_rows_reach_no_feature(messy):
    # u2, u3, u4, u6, u8, u9 only appear in bad rows; p1 (user u1) and p2
    # were bad too; the 19:00 bbr row of p3 is bad.
    assert sorted(messy["user"]) == ["u1", "u5", "u7"]
    assert_user(messy, "u1", email_hash="eh1", created_at="2021-01-01", projects=0)
    assert_user(messy, "u5", projects=1, project_created_dates=["2021-01-02"],
                usage_limit_bytes=1000, bandwidth_limit_bytes=2000)


def test_duplicates_count_once_across_regions_and_case(messy):
    # 17:00 upload counted once (ap and eu copies); us_bbr.csv (no index
    # column) adds the 18:00 upload; ap_bbr_backup.csv is not a table file.
    assert_user(messy, "u5", uploads=2, downloads=1,
                upload_bytes_by_month={"2021-04": 15},
                download_bytes_by_month={"2021-04": 20},
                first_activity_at="2021-04-20T17:00:00",
                last_activity_at="2021-04-20T18:00:00")


def test_result_is_json_ready(messy):
    assert json.loads(json.dumps(messy)) == messy


def test_missing_folder_content_gives_empty_result(tmp_path):
    result = compute_storj(tmp_path)
    assert result["user"] == {} and result["operator"] == {}
    assert result["stats"]["rows"]["bbr"] == 0


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
    ("2021-02-29", None), ("2021-04-20 24:00", None), ("2021-04-20 17:60", None),
    ("2021-04-20 17:00:00.1234567", None), ("2021-04-20T17", None), ("20210420", None),
    ("2021-04-20 17:00:00 UTC", None), ("yesterday", None), ("", None), (None, None),
])
def test_timestamp_forms(text, expected):
    [micros] = parse_times(pd.Series([text], dtype="str")).tolist()
    instant = None if micros is pd.NA else datetime(1970, 1, 1) + timedelta(microseconds=micros)
    assert (instant and instant.isoformat()) == expected


@pytest.mark.parametrize("text, expected, wrong", [
    ("12", 12, False), ("-4", -4, False), ("+3", 3, False), (" 7 ", 7, False),
    ("12.0", 12, False), ("1e3", 1000, False), ("", None, False), (None, None, False),
    ("abc", None, True), ("1.5", None, True), ("inf", None, True), ("nan", None, True),
    ("1_000", None, True), ("99999999999999999999", None, True),
])
def test_integer_forms(text, expected, wrong):
    values, wrong_mask = parse_integers(pd.Series([text], dtype="str"))
    [value] = values.tolist()
    assert (None if value is pd.NA else value, bool(wrong_mask[0])) == (expected, wrong)


# --------------------------------------------------------------------------
# Upserts and the user set


@pytest.fixture
def upserts(tmp_path):
    write_csv(tmp_path, "ap_users_a.csv", USERS, [
        ["ua", "EH_A", "pw", "2021-03-01 08:00:00"],
        ["ub", "ehb1", "pw", "2021-01-01 00:00:00"],
        ["uc", "x1", "pw", "2021-01-05"],
        ["uc", "x2", "pw", "2021-01-05"],           # equal time, later row: wins
    ])
    write_csv(tmp_path, "eu_users_a.csv", USERS, [
        ["ua", "eh_old", "pw", "2021-02-01"],       # earlier time: loses
        ["ub", "ehb2", "pw", "2021-01-01T00:00:00"],  # equal time, later file: wins
    ])
    write_csv(tmp_path, "ap_projects.csv", PROJECTS, [
        ["2021-01-10", "pm", "ua", "100", "60000000000"],
        ["2021-01-15", "pa", "ua", "", ""],
        ["2021-01-20 12:00", "pz", "uz", "1", "50000000000"],
        ["2021-01-05", "pp", "uz", "2", "50000000001"],
        ["2021-01-20 23:59", "pq", "uz", "3", "0"],
        ["2021-01-01", "pv", "uv", "", ""],
        ["2021-01-01", "pf", "uf", "", "50000000000"],  # exactly the free limit
    ])
    write_csv(tmp_path, "eu_projects.csv", PROJECTS, [
        ["2021-02-10", "pm", "ub", "10", "1000"],   # later: pm moves to ub
        ["2021-01-02", "pv", "uc", "", ""],         # later: pv moves to uc
    ])
    write_csv(tmp_path, "ap_bbr.csv", BBR, [
        ["2021-01-05 10:00:00", "1", "0", "100", "pm"],  # before pm was created
        ["2021-02-01 10:00:00", "2", "0", "2000", "pm"],
        ["2021-02-01 11:00:00", "3", "0", "5", "pm"],    # other action
        ["2021-02-01 12:00:00", "2", "0", "", "pm"],     # null settled
        ["2021-02-01 12:00:00", "1", "0", "777", "pghost"],  # unknown project
    ])
    return compute_storj(tmp_path)


def test_user_set_includes_superseded_and_project_only_users(upserts):
    assert sorted(upserts["user"]) == ["ua", "ub", "uc", "uf", "uv", "uz"]
    assert_snapshot(upserts, "uv")  # only in a superseded projects row
    assert_snapshot(
        upserts, "uf",
        projects=1, project_created_dates=["2021-01-01"], tier="free",
        bandwidth_limit_bytes=50000000000,
    )
    assert_snapshot(
        upserts, "uz",
        projects=3, project_created_dates=["2021-01-05", "2021-01-20"], tier="paid",
        bandwidth_limit_bytes=100000000001, usage_limit_bytes=6,
    )


def test_upsert_later_time_and_equal_time_in_later_file_or_row(upserts):
    assert_user(upserts, "ua", email_hash="eh_a", created_at="2021-03-01")
    assert_user(upserts, "ub", email_hash="ehb2", created_at="2021-01-01")
    assert_user(upserts, "uc", email_hash="x2", created_at="2021-01-05", projects=1)


def test_project_move_takes_all_usage_with_it(upserts):
    assert_snapshot(
        upserts, "ua",
        email_hash="eh_a", created_at="2021-03-01", projects=1,
        project_created_dates=["2021-01-15"],
    )
    assert_snapshot(
        upserts, "ub",
        email_hash="ehb2", created_at="2021-01-01", projects=1,
        project_created_dates=["2021-02-10"], bandwidth_limit_bytes=1000,
        usage_limit_bytes=10, uploads=1, downloads=2,
        upload_bytes_by_month={"2021-01": 100},
        download_bytes_by_month={"2021-02": 2000},
        first_activity_at="2021-01-05T10:00:00", last_activity_at="2021-02-01T12:00:00",
        over_bandwidth_months=["2021-02"],  # 2000 > 1000, the current limit
        usage_sessions_count=1, usage_sessions_seconds=7200.0,
    )


# --------------------------------------------------------------------------
# Usage sessions


def test_usage_sessions_at_the_gap_edge(tmp_path):
    write_csv(tmp_path, "ap_projects.csv", PROJECTS, [
        ["2021-01-01", "s1", "u1", "", ""],
        ["2021-01-01", "s2", "u1", "", ""],
    ])
    day = "2021-04-20 "
    write_csv(tmp_path, "ap_bbr.csv", BBR, [
        [day + "10:00:00", "1", "0", "1", "s1"],
        [day + "10:00:00", "2", "0", "1", "s1"],   # same instant: one point
        [day + "12:00:00", "1", "0", "1", "s1"],   # gap 7,200 s: same session
        [day + "14:00:01", "1", "0", "1", "s1"],   # gap 7,201 s: new session
        [day + "14:30:01", "1", "0", "1", "s1"],
        [day + "20:00:00", "1", "0", "1", "s1"],   # single instant: not kept
        ["2021-05-01 00:00:00", "1", "0", "1", "s2"],
        ["2021-05-01 00:00:01", "1", "0", "1", "s2"],         # 1 s: kept
        ["2021-05-02 00:00:00", "1", "0", "1", "s2"],
        ["2021-05-02 00:00:00.999999", "1", "0", "1", "s2"],  # < 1 s: not kept
        ["2021-05-03 00:00:00", "1", "0", "1", "s2"],
        ["2021-05-03T02:00:01.5+02:00", "1", "0", "1", "s2"],  # 00:00:01.5 UTC
    ])
    result = compute_storj(tmp_path)
    # s1: 7,200 s + 1,800 s; s2: 1 s + 1.5 s
    assert_user(result, "u1", usage_sessions_count=4, usage_sessions_seconds=9002.5,
                first_activity_at="2021-04-20T10:00:00",
                last_activity_at="2021-05-03T00:00:01.500000")


def test_sessions_are_per_project_not_across_projects(tmp_path):
    write_csv(tmp_path, "ap_projects.csv", PROJECTS, [
        ["2021-01-01", "s1", "u1", "", ""],
        ["2021-01-01", "s2", "u1", "", ""],
    ])
    write_csv(tmp_path, "ap_bbr.csv", BBR, [
        ["2021-04-20 10:00:00", "1", "0", "1", "s1"],
        ["2021-04-20 10:30:00", "1", "0", "1", "s2"],
    ])
    assert_user(compute_storj(tmp_path), "u1", usage_sessions_count=0,
                usage_sessions_seconds=0.0, uploads=2)


# --------------------------------------------------------------------------
# Storage, limits and monthly bytes


def test_storage_at_latest_interval_and_storage_limit(tmp_path):
    write_csv(tmp_path, "ap_projects.csv", PROJECTS, [
        ["2021-01-01", "st1", "u1", "250", "0"],
        ["2021-01-01", "st2", "u1", "", "0"],     # no limit: never over
        ["2021-01-01", "st3", "u1", "5", "0"],    # no bst rows
        ["2021-01-01", "st4", "u2", "300", "0"],
        ["2021-01-01", "st5", "u3", "0", "0"],
        ["2021-01-01", "st6", "u4", "", "0"],     # no limit: never over
    ])
    write_csv(tmp_path, "ap_bst.csv", BST, [
        ["2021-04-01 00:00:00", "0", "999", "st1"],
        ["2021-04-02 00:00:00", "1", "100", "st1"],
        ["2021-04-02 00:00:00", "2", "200", "st1"],
        ["2021-04-02 00:00:00", "3", "", "st1"],
        ["2021-04-03 05:00:00", "0", "1000000000000", "st2"],
        ["2021-04-01 00:00:00", "0", "300", "st4"],
        ["2021-04-01 00:00:00", "0", "10", "st6"],
    ])
    write_csv(tmp_path, "bucket_data/eu_bst.csv", BST, [
        ["2021-04-02 00:00:00", "2", "200", "ST1"],  # duplicate bucket row
    ])
    result = compute_storj(tmp_path)
    assert_user(result, "u1", storage_bytes=1000000000300,
                storage_updated_at="2021-04-03T05:00:00", over_storage_limit=True,
                usage_limit_bytes=255)
    assert_user(result, "u2", storage_bytes=300, storage_updated_at="2021-04-01T00:00:00",
                over_storage_limit=False)   # 300 is not > 300
    assert_user(result, "u3", storage_bytes=0, storage_updated_at=None,
                over_storage_limit=False)
    assert_user(result, "u4", storage_bytes=10, over_storage_limit=False)


def test_storage_limit_is_the_current_one(tmp_path):
    write_csv(tmp_path, "ap_projects.csv", PROJECTS, [
        ["2021-01-01", "st1", "u1", "1000", "0"],
        ["2021-02-01", "st1", "u1", "10", "0"],
    ])
    write_csv(tmp_path, "ap_bst.csv", BST, [["2021-04-01", "0", "11", "st1"]])
    assert_user(compute_storj(tmp_path), "u1", over_storage_limit=True,
                usage_limit_bytes=10, projects=1)


def test_monthly_bytes_and_over_bandwidth_months(tmp_path):
    write_csv(tmp_path, "ap_projects.csv", PROJECTS, [
        ["2021-01-01", "b1", "u1", "", "1000"],
        ["2021-01-01", "b2", "u1", "", ""],       # no limit: never over
    ])
    write_csv(tmp_path, "ap_bbr.csv", BBR, [
        ["2021-03-03 00:00", "2", "0", "600", "b1"],
        ["2021-03-20 00:00", "2", "0", "500", "b1"],         # March: 1,100 > 1,000
        ["2021-04-01 00:00", "2", "0", "1000", "b1"],        # April: 1,000, not over
        ["2021-01-31T23:30:00-01:00", "2", "0", "2000", "b1"],  # 2021-02-01 UTC
        ["2021-03-05 00:00", "1", "0", "", "b1"],            # null settled
        ["2021-04-05 00:00", "1", "0", "7", "b1"],
        ["2021-03-01 00:00", "2", "0", "1000000000000000", "b2"],
        ["2021-04-02 00:00", "2", "0", "5", "b2"],           # user's April > 1,000
    ])
    result = compute_storj(tmp_path)
    assert list(result["user"]["u1"]["download_bytes_by_month"]) == [
        "2021-02", "2021-03", "2021-04"]  # keys sorted, not in row order
    assert_user(result, "u1",
                uploads=2, downloads=6, tier="free", bandwidth_limit_bytes=1000,
                upload_bytes_by_month={"2021-03": 0, "2021-04": 7},
                download_bytes_by_month={"2021-02": 2000, "2021-03": 1000000000001100,
                                         "2021-04": 1005},
                over_bandwidth_months=["2021-02", "2021-03"],
                first_activity_at="2021-02-01T00:30:00",
                last_activity_at="2021-04-05T00:00:00")


# --------------------------------------------------------------------------
# Operators and the user <-> operator link


@pytest.fixture
def operators(tmp_path):
    write_csv(tmp_path, "ap_nodes_a.csv", NODES, [
        ["N1", "0xAB", "OPX", "2021-01-01", "2021-04-01 10:00:00", "", "2021-03-01", "100", "5"],
        ["n2", "0xab", "opx", "2021-01-01", "", "2021-04-06", "", "", "7"],
        ["n3", "", "opx", "2021-01-01", "1970-01-01 00:00:00", " ", "", "50", ""],
        ["n4", "0xCD", "opx", "2021-01-01", "2070-01-01", "", "x", "0", "0"],
        ["n5", "0xef", "opx", "2021-01-01", "not a date", "", "", "0", "0"],
        ["n6", "", "opx", "2021-01-01", "2069-12-31T23:00:00-02:00", "", "", "0", "0"],
        ["n7", "", "opx", "2021-01-01", "1969-12-31T23:30:00", "", "", "0", "0"],
        ["n8", "0x01", "opx", "2021-01-01", "2021-04-01", "", "", "1", "1"],
        ["n9", "0x02", "", "2021-01-01", "2021-04-01", "", "", "1", "1"],
        ["n10", "0x03", "opz", "2021-01-01", "2021-04-01", "", "", "1", "1"],
    ])
    write_csv(tmp_path, "eu_nodes_a.csv", NODES, [
        ["n8", "0x01", "OPY", "2021-02-01", "2021-04-01", "", "", "1", "1"],  # moves
    ])
    write_csv(tmp_path, "ap_node_payments.csv", PAYMENTS, [
        ["2021-03-01", "N1", "1234567"],
        ["2021-03-15", "n1", "1"],
        ["2021-04-01", "n2", ""],               # null amount: month with 0
        ["2021-04-01", "n2", "2500000"],
        ["2021-04-01", "n8", "1000000"],
        ["2021-04-01", "ghost", "999"],         # no nodes row: nowhere
        ["2021-04-01", "n9", "5"],              # node without operator: nowhere
        ["2021-05-01", "n10", "100000"],        # 0.1 three times: 0.3, not
        ["2021-05-02", "n10", "100000"],        # 0.30000000000000004
        ["2021-05-03", "n10", "100000"],
    ])
    write_csv(tmp_path, "eu_node_payments.csv", PAYMENTS, [
        ["2021-03-15 00:00:00", "n1", "1.0"],  # duplicate
    ])
    write_csv(tmp_path, "ap_node_payments_receipt.csv", RECEIPTS, [
        ["2021-03-01", "n1", "1000000000", "R"],  # receipts feed no feature
    ])
    write_csv(tmp_path, "ap_users_a.csv", USERS, [
        ["ua", "OPX", "pw", "2021-01-01"],
        ["ub", "opx", "pw", "2021-01-01"],
        ["uc", "none", "pw", "2021-01-01"],
        ["ud", "opx", "pw", "2021-01-01"],
        ["ud", "other", "pw", "2021-02-01"],     # no longer opx
    ])
    return compute_storj(tmp_path)


def test_operator_features(operators):
    assert sorted(operators["operator"]) == ["opx", "opy", "opz"]
    expected = {
        "nodes": 7, "never_contacted_nodes": 5, "disqualified_nodes": 1,
        "suspended_nodes": 2, "free_disk_bytes": 150, "piece_count": 12,
        "wallets": ["0xab", "0xcd", "0xef"],
        "paid_by_month": {"2021-03": 1.234568, "2021-04": 2.5},
        "paid_total": 3.734568, "users": ["ua", "ub"],
    }
    assert typed(operators["operator"]["opx"]) == typed(expected)
    assert typed(operators["operator"]["opy"]) == typed({
        "nodes": 1, "never_contacted_nodes": 0, "disqualified_nodes": 0,
        "suspended_nodes": 0, "free_disk_bytes": 1, "piece_count": 1,
        "wallets": ["0x01"], "paid_by_month": {"2021-04": 1.0},
        "paid_total": 1.0, "users": [],
    })
    opz = operators["operator"]["opz"]
    assert typed([opz["paid_by_month"], opz["paid_total"]]) == typed([{"2021-05": 0.3}, 0.3])


def test_operator_without_payments(tmp_path):
    write_csv(tmp_path, "ap_nodes_a.csv", NODES, [
        ["n1", "", "op", "2021-01-01", "2021-04-01", "", "", "", ""],
    ])
    assert typed(compute_storj(tmp_path)["operator"]) == typed({"op": {
        "nodes": 1, "never_contacted_nodes": 0, "disqualified_nodes": 0,
        "suspended_nodes": 0, "free_disk_bytes": 0, "piece_count": 0,
        "wallets": [], "paid_by_month": {}, "paid_total": 0.0, "users": [],
    }})


def test_operator_link_by_email_case(operators):
    for user_id in ("ua", "ub"):
        assert_user(operators, user_id, email_hash="opx", operator_nodes=7,
                    operator_paid_by_month={"2021-03": 1.234568, "2021-04": 2.5},
                    operator_paid_total=3.734568)
    assert_snapshot(operators, "uc", email_hash="none", created_at="2021-01-01")
    assert_user(operators, "ud", email_hash="other", operator_nodes=0,
                operator_paid_by_month={}, operator_paid_total=0.0)
