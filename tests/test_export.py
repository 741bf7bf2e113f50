"""`fsp export` on snapshots a real worker wrote: the table read back equals the independent batch
computation (verify/) cell by cell, typed and exploded, Parquet and CSV, every entity or a subset."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import date, datetime

import orjson
import pyarrow.parquet as pq
import pytest

from datasets.storj.batch import compute_storj
from datasets.ucn.batch import compute_ucn
from stream.client import features_frame
from verify.compare import compare

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def expected(replayed_store):
    return {"storj": compute_storj(replayed_store.storj_source), "ucn": compute_ucn(replayed_store.ucn_source)}


def export(store, *args) -> str:
    env = {**os.environ, "REDIS_URL": store.redis_url, "FEATURE_PREFIX": store.prefix}
    done = subprocess.run([sys.executable, "-m", "fsp", "export", *args, "--no-progress"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr  # every feature of a real snapshot is declared
    return done.stdout


def as_batch_writes_it(value):
    """A cell read back from a file in the JSON shape of the batch computation (and of Redis)."""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        if set(value) == {"domain", "count"}:  # a session's top domain, a [domain, count] pair in the contract
            return [value["domain"], value["count"]]
        return {key: as_batch_writes_it(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_batch_writes_it(item) for item in value]
    return value


def features_of(row: dict, wanted: dict) -> dict:
    """The features a row holds: a typed cell as it is; exploded cells (`FEATURE-KEY`) gathered again, a
    vector in column order, a map or record as the keys that hold a value."""
    out = {}
    for name, want in wanted.items():
        if name in row:
            out[name] = as_batch_writes_it(row[name])
            continue
        cells = {column[len(name) + 1:]: as_batch_writes_it(value) for column, value in row.items()
                 if column.startswith(name + "-")}
        if isinstance(want, list):
            out[name] = list(cells.values())
        else:
            held = {key: value for key, value in cells.items() if value is not None}
            out[name] = held if held or want is not None else None
    return out


def mismatches_with_batch(rows: list[dict], want: dict[str, dict], entity: str) -> list[str]:
    got = {str(row["id"]): row for row in rows}
    actual = {entity_id: features_of(row, want.get(entity_id, {})) for entity_id, row in got.items()}
    return [str(m) for m in compare({entity: want}, {entity: actual})]


@pytest.mark.parametrize("explode", [False, True], ids=["typed", "exploded"])
def test_parquet_equals_the_batch_computation_cell_by_cell(replayed_store, expected, tmp_path, explode):
    for dataset, entity in (("storj", "user"), ("storj", "operator"), ("ucn", "user")):
        out = tmp_path / f"{dataset}-{entity}.parquet"
        said = export(replayed_store, dataset, entity, "--out", str(out), *(["--explode"] if explode else []))
        want = expected[dataset][entity]
        assert said.startswith(f"exported {len(want):,} {dataset} {entity} rows")
        rows = pq.read_table(out).to_pylist(maps_as_pydicts="strict")
        assert len(rows) == len(want) > 5
        assert mismatches_with_batch(rows, want, entity) == []
        if explode and dataset == "storj" and entity == "user":
            months = sorted({m for f in want.values() for m in f["upload_bytes_by_month"]})
            assert [c for c in rows[0] if c.startswith("upload_bytes_by_month-")] == [
                f"upload_bytes_by_month-{m}" for m in months]


def test_ucn_sessions_are_a_table_of_their_own_equal_to_the_batch(replayed_store, expected, tmp_path):
    out = tmp_path / "sessions.parquet"
    export(replayed_store, "ucn", "sessions", "--out", str(out))
    rows = pq.read_table(out).to_pylist()
    by_user: dict[str, list] = {}
    for row in rows:
        by_user.setdefault(str(row["user"]), []).append(as_batch_writes_it(row))
    want = {user: sessions for user, sessions in expected["ucn"]["sessions"].items() if sessions}
    assert sum(map(len, want.values())) == len(rows) > 10
    assert by_user == want  # newest first within each user, as the list in Redis


def test_csv_of_a_subset_of_ids_with_the_months_exploded(replayed_store, expected, tmp_path):
    want = expected["storj"]["user"]
    busy = sorted(want, key=lambda u: -len(want[u]["upload_bytes_by_month"]))[:3]
    out = tmp_path / "some.csv"  # the suffix picks CSV
    said = export(replayed_store, "storj", "user", "--out", str(out), "--ids", ",".join(busy + ["f" * 32]),
                  "--explode")
    assert "1 of the 4 ids given have no snapshot" in said
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["id"] for row in rows) == sorted(busy)
    for row in rows:
        features = want[row["id"]]
        assert int(row["uploads"]) == features["uploads"]
        assert row["created_at"] == (features["created_at"] or "")
        assert row["storage_updated_at"] == (features["storage_updated_at"] or "")
        assert orjson.loads(row["project_created_dates"]) == features["project_created_dates"]
        months = {c.split("-", 1)[1]: v for c, v in row.items() if c.startswith("upload_bytes_by_month-")}
        assert {m: int(v) for m, v in months.items() if v} == features["upload_bytes_by_month"]
        assert set(months) == {m for u in busy for m in want[u]["upload_bytes_by_month"]}  # only these users'


def test_features_frame_is_the_same_table_in_pandas(replayed_store, expected):
    want = expected["storj"]["user"]
    frame = features_frame(replayed_store.redis(), "storj", "user", replayed_store.prefix)
    assert len(frame) == len(want) and str(frame["storage_bytes"].dtype) == "Int64"
    assert frame.set_index("id")["storage_bytes"].to_dict() == {u: f["storage_bytes"] for u, f in want.items()}
    some = sorted(want)[:2]
    subset = features_frame(replayed_store.redis(), "storj", "user", replayed_store.prefix, ids=some, explode=True)
    assert subset["id"].tolist() == some and "upload_bytes_by_month" not in subset.columns
