"""Tests of the synthetic storj dump: layout, determinism, sizes, hard cases, bad rows.

The checks read the written files back the way the contract does (SPEC.md,
docs/readings.md) and do not reuse the generator's own tables or constants.
"""
import csv
import datetime as dt
import re
from pathlib import Path

import pandas as pd
import pytest

from datasets.storj.generate import generate_storj

REGIONS = ("ap", "eu", "us")
HOUR = pd.Timedelta(hours=1)
FREE = 50_000_000_000

# table -> (file name, columns, key, event time, integer columns)
TABLES = {
    "users": ("{r}_users_a.csv", ["id", "email_hash", "password_hash", "created_at"],
              "id", "created_at", []),
    "projects": ("{r}_projects.csv",
                 ["created_at", "project_id", "user_id", "usage_limit", "bandwidth_limit"],
                 "project_id", "created_at", ["usage_limit", "bandwidth_limit"]),
    "nodes": ("{r}_nodes_a.csv",
              ["id", "audit_success_count", "total_audit_count", "uptime_success_count",
               "total_uptime_count", "created_at", "vetted_at", "wallet", "free_disk",
               "last_contact_success", "last_contact_failure", "contained", "disqualified",
               "suspended", "piece_count", "audit_reputation_alpha", "audit_reputation_beta",
               "exit_finished_at", "email_hash"],
              "id", "created_at", ["free_disk", "piece_count"]),
    "payments": ("{r}_node_payments.csv", ["period", "node_id", "amount"],
                 "node_id", "period", ["amount"]),
    "receipts": ("{r}_node_payments_receipt.csv", ["period", "node_id", "amount", "receipt"],
                 "node_id", "period", ["amount"]),
    "bbr": ("bucket_data/{r}_bbr.csv",
            ["interval_start", "action", "inline", "settled", "project_id"],
            "project_id", "interval_start", ["action", "inline", "settled"]),
    "bst": ("bucket_data/{r}_bst.csv", ["interval_start", "inline", "remote", "project_id"],
            "project_id", "interval_start", ["inline", "remote"]),
}
ALL_FILES = sorted(spec[0].format(r=r) for spec in TABLES.values() for r in REGIONS)


@pytest.fixture(scope="module", params=[1, 5])
def dump(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"storj{request.param}")
    generate_storj(folder, seed=request.param, scale=0.02)
    return folder


def read(folder: Path, table: str) -> pd.DataFrame:
    """All regions of a table as text (empty cell = ''), index column dropped, in publish order."""
    frames = []
    for region in REGIONS:
        path = TABLES[table][0].format(r=region)
        frame = pd.read_csv(folder / path, dtype=str, keep_default_na=False, index_col=0)
        frames.append(frame.assign(file=path))
    return pd.concat(frames, ignore_index=True).sort_values("file", kind="stable")


def normalised(frame: pd.DataFrame) -> pd.DataFrame:
    """Ids, hashes, wallets and receipts lower-cased, as the contract does."""
    out = frame.copy()
    for column in out.columns:
        if column in ("id", "wallet", "receipt") or column.endswith(("_id", "_hash")):
            out[column] = out[column].str.strip().str.lower()
    return out


def when(cells: pd.Series) -> pd.Series:
    return pd.to_datetime(cells, utc=True, format="ISO8601")


def number(cells: pd.Series) -> pd.Series:
    return pd.to_numeric(cells.replace("", "0")).astype("int64")


def current(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """Entity upsert: the greatest created_at wins, equal times: the later file, then row."""
    ordered = frame.assign(t=when(frame["created_at"])).sort_values("t", kind="stable")
    return ordered.drop_duplicates(key, keep="last")


def distinct(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Rows that count: equal normalised rows count once."""
    return normalised(frame).drop_duplicates(TABLES[table][1])


# --- validity per docs/readings.md ---------------------------------------------

TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:\.\d{1,6})?)?)?"
                  r"(?:Z|[+-]\d\d(?::?\d\d)?)?")


def parses_as_time(text: str) -> bool:
    match = TIME.fullmatch(text)
    if not match:
        return False
    try:
        dt.datetime(*(int(part or 0) for part in match.groups()))
    except ValueError:
        return False
    return True


def is_integer(text: str) -> bool:
    if re.fullmatch(r"[+-]?\d+", text):
        return True
    try:
        return float(text).is_integer()
    except ValueError:
        return False


def invalid_lines(folder: Path) -> set[tuple[str, int]]:
    """(file, physical line) of every row that is a dead letter."""
    bad = set()
    for _, (pattern, columns, key, time, typed) in TABLES.items():
        for region in REGIONS:
            path = pattern.format(r=region)
            with open(folder / path, newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle)
                header = next(reader)
                assert header == [""] + columns
                for cells in reader:
                    row = dict(zip(header, cells))
                    ok = (len(cells) == len(header) and row[key].strip() != ""
                          and parses_as_time(row[time])
                          and all(row[c] == "" or is_integer(row[c]) for c in typed))
                    if not ok:
                        bad.add((path, reader.line_num))
    return bad


# --- layout, determinism, sizes ------------------------------------------------

def test_files_and_headers_are_the_notebooks(tmp_path):
    summary = generate_storj(tmp_path, seed=2, scale=0.02)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.csv"))
    assert written == ALL_FILES
    assert summary["folder"] == str(tmp_path)
    for pattern, columns, *_ in TABLES.values():
        for region in REGIONS:
            path = tmp_path / pattern.format(r=region)
            assert path.read_text().split("\n", 1)[0] == "," + ",".join(columns)
            frame = pd.read_csv(path)
            assert list(frame.columns) == ["Unnamed: 0"] + columns
            assert len(frame) > 0


def test_same_arguments_give_the_same_bytes(tmp_path):
    first = generate_storj(tmp_path / "a", seed=3, scale=0.02, bad_rows=7)
    second = generate_storj(tmp_path / "b", seed=3, scale=0.02, bad_rows=7)
    generate_storj(tmp_path / "c", seed=4, scale=0.02, bad_rows=7)  # another seed: other bytes
    for path in ALL_FILES:
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes()
    assert {k: v for k, v in first.items() if k != "folder"} == \
        {k: v for k, v in second.items() if k != "folder"}
    assert any((tmp_path / "a" / p).read_bytes() != (tmp_path / "c" / p).read_bytes()
               for p in ALL_FILES)


def test_sizes_follow_the_scale(tmp_path):
    summary = generate_storj(tmp_path, seed=1, scale=0.05)
    expected = {"users": 3_000, "projects": 5_000, "bbr": 150_000, "bst": 60_000,
                "nodes": 4_000, "payments": 20_000, "receipts": 10_000}
    for table, rows in expected.items():
        assert 0.6 * rows * 0.05 <= summary["rows"][table] <= 1.5 * rows * 0.05, table
        assert summary["rows"][table] == len(read(tmp_path, table))
    for path, rows in summary["files"].items():
        assert rows == len((tmp_path / path).read_text().splitlines()) - 1


def test_cells_are_spelled_like_the_dump(dump):
    bbr, bst = read(dump, "bbr"), read(dump, "bst")
    assert bbr["interval_start"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:00:00").all()
    assert bst["interval_start"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:00").all()
    assert (bst["interval_start"].str[14:16] != "00").any()
    created = pd.concat([read(dump, t)["created_at"] for t in ("users", "projects", "nodes")])
    assert created.str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d").any()
    assert created.str.contains(r":\d\d\.\d{6}").any()
    assert created.str.endswith("+00:00").any()
    times = pd.concat([when(created), when(bbr["interval_start"]), when(bst["interval_start"])])
    assert times.min() >= pd.Timestamp("2019-01-01", tz="UTC")
    assert times.max() < pd.Timestamp("2021-06-01", tz="UTC")
    for table in ("payments", "receipts"):
        assert read(dump, table)["period"].str.fullmatch(r"20(19|20|21)-\d\d-01").all()
    projects = read(dump, "projects")
    for column in ("usage_limit", "bandwidth_limit"):
        assert projects[column].str.fullmatch(r"\d+").all()
    assert read(dump, "payments")["amount"].str.fullmatch(r"\d*").all()
    nodes = normalised(read(dump, "nodes"))
    assert nodes["id"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert nodes["email_hash"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert nodes["wallet"].str.fullmatch(r"0x[0-9a-f]{40}").all()
    users = normalised(read(dump, "users"))
    assert users["id"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert normalised(projects)["project_id"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert read(dump, "receipts")["receipt"].str.fullmatch(r"0x[0-9a-f]{64}").all()


def test_usage_comes_in_bursts_with_gaps_at_the_session_edge(dump):
    bbr = distinct(read(dump, "bbr"), "bbr").assign(t=lambda f: when(f["interval_start"]))
    gaps = pd.concat([times.drop_duplicates().sort_values().diff().dropna()
                      for _, times in bbr.groupby("project_id")["t"]])
    assert (gaps == HOUR).any() and (gaps == 2 * HOUR).any() and (gaps == 3 * HOUR).any()
    assert (gaps > 24 * HOUR).any()
    assert (bbr.groupby(["project_id", "t"]).size() >= 3).any()  # several buckets
    assert set(bbr["action"]) >= {"1", "2"}
    projects = normalised(read(dump, "projects"))
    assert projects["project_id"].isin(bbr["project_id"]).mean() < 0.6  # many never transact


# --- hard cases ------------------------------------------------------------------

@pytest.mark.parametrize("table", ["users", "projects", "bbr", "bst", "nodes", "payments"])
def test_exact_duplicates_across_regions(dump, table):
    frame = read(dump, table)
    files = frame.groupby(TABLES[table][1])["file"].nunique()
    assert (files > 1).any()


@pytest.mark.parametrize("table, columns", [
    ("users", ["id", "email_hash"]), ("projects", ["project_id", "user_id"]),
    ("bbr", ["project_id"]), ("bst", ["project_id"]),
    ("nodes", ["id", "email_hash", "wallet"]), ("payments", ["node_id"])])
def test_upper_case_ids_and_case_only_copies(dump, table, columns):
    frame = read(dump, table)
    for column in columns:
        assert frame[column].str.contains("[A-F]").any(), column
    upper = ~(frame[columns] == frame[columns].apply(lambda c: c.str.lower())).all(axis=1)
    groups = normalised(frame).assign(upper=upper).groupby(TABLES[table][1])["upper"]
    assert (groups.any() & ~groups.all()).any()  # one normalised row, written in both cases


def test_projects_republished_with_a_new_bandwidth_limit(dump):
    projects = normalised(read(dump, "projects")).assign(t=lambda f: when(f["created_at"]))
    by_project = projects.groupby("project_id")
    later = (by_project["t"].nunique() > 1) & (by_project["bandwidth_limit"].nunique() > 1)
    assert later.any()
    ties = projects[projects.duplicated(["project_id", "t"], keep=False)]
    by_tie = ties.groupby(["project_id", "t"])
    same_time = (by_tie["bandwidth_limit"].nunique() > 1) & (by_tie["file"].nunique() > 1)
    assert same_time.any()
    winners = current(projects, "project_id").set_index("project_id")["file"]
    for project_id, _ in same_time[same_time].index:
        assert winners[project_id] == ties[ties["project_id"] == project_id]["file"].max()


def test_projects_move_to_another_user(dump):
    projects = normalised(read(dump, "projects"))
    assert (projects.groupby("project_id")["user_id"].nunique() > 1).any()


def test_usage_before_its_project_and_without_one(dump):
    projects = normalised(read(dump, "projects"))
    created = when(projects["created_at"]).groupby(projects["project_id"]).min()
    for table in ("bbr", "bst"):
        usage = normalised(read(dump, table))
        first_use = when(usage["interval_start"]).groupby(usage["project_id"]).min()
        known = first_use.index.isin(created.index)
        assert (~known).any(), table
    bbr = normalised(read(dump, "bbr"))
    first_use = when(bbr["interval_start"]).groupby(bbr["project_id"]).min()
    both = created.index.intersection(first_use.index)
    assert (created[both] > first_use[both]).any()


def test_users_who_run_nodes_and_operators_with_several_nodes_and_wallets(dump):
    users, nodes = read(dump, "users"), read(dump, "nodes")
    pairs = users[["email_hash"]].assign(low=users["email_hash"].str.lower()).merge(
        nodes[["email_hash"]].assign(low=nodes["email_hash"].str.lower()), on="low")
    assert len(pairs) > 0
    assert (pairs["email_hash_x"] != pairs["email_hash_y"]).any()  # same email, other case
    operators = normalised(nodes).groupby("email_hash")
    assert ((operators["id"].nunique() >= 2) & (operators["wallet"].nunique() >= 2)).any()


def test_never_contacted_and_sanctioned_nodes(dump):
    nodes = read(dump, "nodes")
    assert {"", "1970-01-01 00:00:00", "2070-01-01 00:00:00"} <= set(nodes["last_contact_success"])
    assert (nodes["disqualified"] != "").any()
    assert (nodes["suspended"] != "").any()
    assert (nodes["disqualified"] == "").mean() > 0.5


def test_free_projects_over_their_limits(dump):
    projects = current(normalised(read(dump, "projects")), "project_id").set_index("project_id")
    free = projects[number(projects["bandwidth_limit"]) == FREE]
    bbr = distinct(read(dump, "bbr"), "bbr")
    downloads = bbr[(bbr["action"] == "2") & bbr["project_id"].isin(free.index)]
    monthly = number(downloads["settled"]).groupby(
        [downloads["project_id"], downloads["interval_start"].str[:7]]).sum()
    limit = number(free["bandwidth_limit"]).reindex(monthly.index.get_level_values(0)).to_numpy()
    assert (monthly.to_numpy() > limit).any()

    bst = distinct(read(dump, "bst"), "bst")
    bst = bst[bst["project_id"].isin(free.index)].assign(t=lambda f: when(f["interval_start"]))
    latest = bst[bst["t"] == bst.groupby("project_id")["t"].transform("max")]
    stored = number(latest["remote"]).groupby(latest["project_id"]).sum()
    assert (stored > number(free["usage_limit"])[stored.index]).any()


def test_nodes_republished_with_another_email_and_payments_of_unknown_nodes(dump):
    nodes = normalised(read(dump, "nodes"))
    by_node = nodes.groupby("id")
    assert ((by_node["created_at"].nunique() > 1) & (by_node["email_hash"].nunique() > 1)).any()
    payments = normalised(read(dump, "payments"))
    assert (~payments["node_id"].isin(nodes["id"])).any()


def test_missing_users_odd_actions_and_null_cells(dump):
    users, projects = normalised(read(dump, "users")), normalised(read(dump, "projects"))
    assert (~projects["user_id"].isin(users["id"])).any()
    bbr = read(dump, "bbr")
    odd = ~bbr["action"].isin(["1", "2"])
    assert odd.any() and odd.mean() < 0.02  # rare
    assert (bbr["settled"] == "").any()
    assert (read(dump, "bst")["remote"] == "").any()
    assert (read(dump, "payments")["amount"] == "").any()


def test_negative_free_disk(dump):
    assert (number(read(dump, "nodes")["free_disk"]) < 0).any()


# --- bad rows ----------------------------------------------------------------------

def test_every_row_is_valid_without_bad_rows(dump):
    assert invalid_lines(dump) == set()


def test_bad_rows_are_where_the_summary_says(tmp_path):
    summary = generate_storj(tmp_path, seed=9, scale=0.02, bad_rows=30)
    recorded = {(bad["file"], bad["line"]) for bad in summary["bad_rows"]}
    assert len(summary["bad_rows"]) == len(recorded) == 30
    assert invalid_lines(tmp_path) == recorded
    assert {bad["file"] for bad in summary["bad_rows"]} == set(ALL_FILES)
    reasons = " ".join(bad["reason"] for bad in summary["bad_rows"])
    for kind in ("unparsable", "missing", "not an integer", "cell"):
        assert kind in reasons
    for bad in summary["bad_rows"]:
        line = (tmp_path / bad["file"]).read_text().split("\n")[bad["line"] - 1]
        if ": " in bad["reason"]:
            assert bad["reason"].split(": ")[1] in line.split(",")
    generate_storj(tmp_path / "clean", seed=9, scale=0.02)
    for path in ALL_FILES:  # without the bad lines, the files are the clean dump
        lines = (tmp_path / path).read_text().split("\n")
        kept = [text for number, text in enumerate(lines, 1) if (path, number) not in recorded]
        assert kept == (tmp_path / "clean" / path).read_text().split("\n")
