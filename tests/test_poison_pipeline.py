"""Poison input and a worker that cannot go on, against the real broker, Redis and worker process."""
from __future__ import annotations

import json
import threading

import pytest
from kafka import KafkaProducer

from datasets.storj.generate import generate_storj

pytestmark = pytest.mark.integration

# Messages that used to kill the worker on every restart, each with the rows it holds.
POISON = [
    ("storj.bbr", b"p0", {"project_id": "p0", "interval_start": "0001-01-01T00:00:00+01:00", "action": 1}),
    ("storj.bbr", b"p0", {"project_id": "p0", "interval_start": "9999-12-31T23:30-01:00", "action": 1}),
    ("storj.bbr", b"p0", {"project_id": "p0", "interval_start": "2021-01-01T00:00:00", "action": 1e300}),
    ("storj.bst", b"p0", {"project_id": "p0", "interval_start": "2021-01-01T00:00:00", "remote": "1" * 30}),
    ("storj.nodes", b"n0", {"id": "n0", "email_hash": "e0", "wallet": {"a": 1}, "created_at": "2021-01-01T00:00:00"}),
    ("storj.projects", b"{}", {"project_id": {"x": 1}, "user_id": "u", "created_at": "2021-01-01T00:00:00"}),
    ("storj.users", b"u0", {"id": "u0", "email_hash": ["e0"], "created_at": "2021-01-01T00:00:00"}),
]


def test_poison_messages_beside_a_replay_leave_every_good_row_exact(pipeline, tmp_path):
    folder = str(tmp_path / "dump")
    generate_storj(folder, seed=41, scale=0.02)
    pipeline.wait_ready()
    producer = KafkaProducer(bootstrap_servers=pipeline.broker)
    for topic, key, row in POISON:
        producer.send(topic, key=key, value=json.dumps(row).encode())
    producer.send("storj.bbr", key=b"p0", value=b'{"project_id": "p0", "x": ' + b"[" * 3000 + b"]" * 3000 + b"}")
    producer.flush()
    producer.close()
    pipeline.replay("storj", folder)
    assert pipeline.worker.poll() is None
    mismatches, _ = pipeline.verify("storj", folder)
    assert [str(m) for m in mismatches] == []
    status = pipeline.redis().hget(f"{pipeline.prefix}status:storj", "dead_letters")
    assert int(status) == len(POISON) + 1


def test_a_worker_that_cannot_go_on_exits_with_one_line_and_a_restart_loses_nothing(pipeline_factory, tmp_path,
                                                                                   monkeypatch):
    from stream.runtime.consumer import CANNOT_GO_ON_EXIT, FAULT_ENV

    monkeypatch.setenv(FAULT_ENV, "20")  # the consumer loop fails at its 20th batch of rows
    pipeline = pipeline_factory()
    monkeypatch.delenv(FAULT_ENV)
    folder = str(tmp_path / "dump")
    generate_storj(folder, seed=42, scale=0.05)
    pipeline.wait_ready()
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(
        summary=pipeline.replay("storj", folder, watch_worker=False, timeout=240)))
    thread.start()
    assert pipeline.worker.wait(120) == CANNOT_GO_ON_EXIT
    lines = [line[line.index("error:"):] for line in pipeline.worker_log().splitlines() if "error:" in line]
    assert lines == [f"error: worker stopping: the consumer loop failed (RuntimeError: fault injected by {FAULT_ENV})"]
    pipeline.restart_worker()
    thread.join(300)
    assert "summary" in result
    mismatches, _ = pipeline.verify("storj", folder)
    assert [str(m) for m in mismatches] == []


def test_a_redis_flushed_after_a_full_replay_gets_every_snapshot_back_from_state(pipeline_factory, tmp_path):
    """No event comes after the flush: the snapshots can only come back from the worker's state."""
    import time

    import redis as redis_client

    from fsp.stack import start_redis

    server = start_redis()
    try:
        pipeline = pipeline_factory("storj", redis=server.address)
        folder = str(tmp_path / "dump")
        generate_storj(folder, seed=43, scale=0.05)
        pipeline.wait_ready()
        pipeline.replay("storj", folder)
        assert pipeline.verify("storj", folder)[0] == []
        redis_client.Redis.from_url(server.address).flushall()
        deadline = time.monotonic() + 60
        while (mismatches := pipeline.verify("storj", folder)[0]) and time.monotonic() < deadline:
            time.sleep(1)
        assert [str(m) for m in mismatches] == []
        assert "snapshots rewritten" in pipeline.worker_log()
    finally:
        server.stop()


def test_messages_to_a_topic_the_dataset_does_not_have_are_counted_and_said(pipeline_factory, monkeypatch):
    import time

    import orjson

    from stream.runtime.unknown_topics import CHECK_EVERY_ENV

    monkeypatch.setenv(CHECK_EVERY_ENV, "1")
    pipeline = pipeline_factory()
    pipeline.wait_ready()
    producer = KafkaProducer(bootstrap_servers=pipeline.broker)
    for i in range(3):
        producer.send("storj.unknown_table", key=b"k", value=b'{"id": %d}' % i)
    producer.flush()
    producer.close()
    deadline, counted = time.monotonic() + 60, None
    while time.monotonic() < deadline:
        counted = pipeline.redis().hget(f"{pipeline.prefix}status:storj", "unknown_topics")
        if counted is not None and orjson.loads(counted) == {"storj.unknown_table": 3}:
            break
        time.sleep(0.5)
    assert counted is not None and orjson.loads(counted) == {"storj.unknown_table": 3}
    assert "3 messages in topic storj.unknown_table, which no stage reads" in pipeline.worker_log()
