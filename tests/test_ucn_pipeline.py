"""ucn end to end on the real stack, from CSV, SQLite and PostgreSQL: Redis == pandas batch, sessions included."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from kafka.partitioner.default import murmur2

from datasets.ucn.generate import generate_ucn
from tests.conftest import PG_URL

pytestmark = pytest.mark.integration


def _assert_exact(pipeline, source):
    mismatches, counts = pipeline.verify("ucn", source)
    assert counts["user"] >= 8
    assert [str(m)[:400] for m in mismatches] == []


@pytest.mark.parametrize("seed", [1, 2])
def test_csv_replay_equals_batch(pipeline_factory, tmp_path, seed):
    pipeline = pipeline_factory("ucn")
    folder = str(tmp_path / "ucn")
    generate_ucn(folder, seed=seed, scale=0.05)
    summary = pipeline.replay("ucn", folder)
    assert summary.published > 10_000
    _assert_exact(pipeline, folder)
    users = pipeline.features("ucn", "user")
    assert sum(f["sessions_count"] for f in users.values()) > 10
    assert all(f["open_session"] is None for f in users.values())  # the end mark closed every window


def test_sqlite_replay_equals_batch(pipeline_factory, tmp_path):
    pipeline = pipeline_factory("ucn")
    url = f"sqlite:///{tmp_path / 'ucn.db'}"
    generate_ucn(url, seed=3, scale=0.05)
    pipeline.replay("ucn", url)
    _assert_exact(pipeline, url)


def _largest_state_records(metrics_port: int) -> dict[str, float]:
    from urllib.request import urlopen

    text = urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return {line.split('table="', 1)[1].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith("fsp_state_record_max_bytes{")}


def test_a_scale_1_study_replays_exactly_and_no_state_record_passes_64_kb(pipeline_factory, tmp_path):
    """311,846 rows, shared devices among them. Before the session windows' events were kept as flat
    integer lists and the activity sources read at one event-time pace, a user's record reached
    170-275 KB here: its window held every event ahead of the slowest source partition."""
    from fsp.stack import free_port

    port = free_port()
    pipeline = pipeline_factory("ucn", metrics_port=port)
    folder = str(tmp_path / "ucn")
    generate_ucn(folder, seed=3, scale=1)
    pipeline.replay("ucn", folder)
    _assert_exact(pipeline, folder)
    largest = _largest_state_records(port)
    assert set(largest) >= {"ucn_user", "ucn_device"}
    assert all(size <= 64 * 1024 for size in largest.values()), largest


def test_postgresql_replay_equals_batch_across_partitions(pipeline_factory, pg_schema):
    pipeline = pipeline_factory("ucn")
    generate_ucn(PG_URL, seed=4, scale=0.05, schema=pg_schema)
    url = f"{PG_URL}?options=-csearch_path%3D{pg_schema}"
    pipeline.replay("ucn", url)
    _assert_exact(pipeline, url)
    # the data has users whose personal devices live in different partitions
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.connect() as conn:
        links = conn.execute(sa.text("SELECT user_id, device_id FROM user_devices")).fetchall()
    engine.dispose()
    partitions = {}
    for user_id, device_id in links:
        partitions.setdefault(user_id, set()).add((murmur2(str(device_id).encode()) & 0x7FFFFFFF) % 4)
    assert any(len(p) > 1 for p in partitions.values())


def test_sessions_cap_reaches_the_worker(pipeline_factory, tmp_path, monkeypatch):
    from contract import keys

    monkeypatch.setenv("SESSIONS_CAP", "3")
    pipeline = pipeline_factory("ucn")
    folder = str(tmp_path / "ucn")
    generate_ucn(folder, seed=4, scale=0.03)
    pipeline.replay("ucn", folder)
    users = pipeline.features("ucn", "user")
    r = pipeline.redis()
    lengths = {user: r.llen(keys.sessions_key(pipeline.prefix, "ucn", user)) for user in users}
    assert max(lengths.values()) == 3
    assert any(f["sessions_count"] > 3 for f in users.values())
    assert "worker ready: partitions [0, 1, 2, 3]" in pipeline.worker_log()
