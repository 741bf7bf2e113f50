"""storj end to end on the real stack: CSV dump -> replay -> broker -> worker -> Redis == pandas batch."""
from __future__ import annotations

import json
import time

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from datasets.storj.generate import generate_storj

pytestmark = pytest.mark.integration


def _without_meta(features: dict) -> dict:
    return {eid: {k: v for k, v in f.items() if k != "_meta"} for eid, f in features.items()}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replay_equals_batch_for_several_seeds(pipeline, tmp_path, seed):
    folder = tmp_path / "dump"
    generate_storj(folder, seed=seed, scale=0.04)
    summary = pipeline.replay("storj", str(folder))
    assert summary.published > 5_000 and summary.duplicates > 0
    mismatches, counts = pipeline.verify("storj", str(folder))
    assert counts["user"] > 50 and counts["operator"] > 5
    assert [str(m) for m in mismatches] == []


def test_replay_sorted_on_disk_in_small_runs_is_exact(pipeline, tmp_path, monkeypatch):
    """A CSV folder sorted in runs of 500 rows spilled to disk (as a dump larger than memory is) gives the
    same features as the batch; the spilled runs are gone once the replay ends."""
    folder, spill = tmp_path / "dump", tmp_path / "spill"
    spill.mkdir()
    generate_storj(folder, seed=4, scale=0.04, bad_rows=3)
    monkeypatch.setenv("FSP_SORT_RUN_ROWS", "500")
    monkeypatch.setenv("FSP_SORT_DIR", str(spill))
    summary = pipeline.replay("storj", str(folder))
    assert summary.rows_read > 15 * 500 and summary.bad_rows == 3  # 18 runs
    assert list(spill.iterdir()) == []
    mismatches, _ = pipeline.verify("storj", str(folder))
    assert [str(m) for m in mismatches] == []


def test_rerun_of_a_replay_changes_no_feature(pipeline, tmp_path):
    folder = tmp_path / "dump"
    generate_storj(folder, seed=7, scale=0.03)
    pipeline.replay("storj", str(folder))
    before_users, before_ops = pipeline.features("storj", "user"), pipeline.features("storj", "operator")
    second = pipeline.replay("storj", str(folder))  # a new run of the same rows
    assert second.published == second.rows_read - second.duplicates
    after_users, after_ops = pipeline.features("storj", "user"), pipeline.features("storj", "operator")
    assert _without_meta(after_users) == _without_meta(before_users)
    assert _without_meta(after_ops) == _without_meta(before_ops)
    for user_id, features in after_users.items():
        assert features["_meta"]["version"] >= before_users[user_id]["_meta"]["version"]
        assert features["_meta"]["updated_at"] == before_users[user_id]["_meta"]["updated_at"]  # nothing changed


def test_bad_rows_are_dead_lettered_with_file_and_line(pipeline, tmp_path):
    folder = tmp_path / "dump"
    generated = generate_storj(folder, seed=3, scale=0.03, bad_rows=12)
    (folder / "eu_invoices.csv").write_text(",id,total\n0,a,1\n")  # a table the dataset does not have
    summary = pipeline.replay("storj", str(folder))
    assert summary.bad_rows == 12
    assert summary.ignored_files == ["eu_invoices.csv"]
    expected_origins = {f"{b['file']}:{b['line']}" for b in generated["bad_rows"]}
    reported = {b["origin"] for b in summary.bad_examples}
    assert reported == expected_origins
    consumer = KafkaConsumer(bootstrap_servers=pipeline.broker, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    parts = [TopicPartition("storj.dlq", p) for p in range(pipeline.partitions)]
    consumer.assign(parts)
    letters = [orjson.loads(m.value) for m in consumer]
    consumer.close()
    assert {letter["origin"] for letter in letters} == expected_origins
    assert all(letter["reason"] for letter in letters)
    mismatches, _ = pipeline.verify("storj", str(folder))
    assert [str(m) for m in mismatches] == []


def test_live_single_row_messages_give_the_same_features(pipeline, tmp_path):
    """A live producer sends one row per message (some with upper-case ids, some garbage) and no end mark."""
    from replay.job import read_source
    from stream.client import connect

    folder = tmp_path / "dump"
    generate_storj(folder, seed=5, scale=0.01)
    ordered, bad = read_source("storj", str(folder))
    assert not bad
    producer = KafkaProducer(bootstrap_servers=pipeline.broker)
    for i, item in enumerate(ordered):
        row = dict(item.row.values)
        key = item.row.key
        if i % 7 == 0 and item.spec.name != "bbr":  # a live feed may not normalise ids (bbr stays in order:
            # a re-routed row arrives later, and usage sessions only take rows within the lateness)
            key = key.upper()
            row[item.spec.key] = key
        producer.send(item.spec.topic, key=key.encode(), value=json.dumps(row).encode())
    garbage = [b"not json {", b'{"project_id": "y", "interval_start": "never"}', b"42", b'"text"',
               b"[1, 2]",  # two rows that are not objects: two dead letters
               b'{"project_id": null, "interval_start": "2021-01-01T00:00:00", "action": 1}',
               b'{"project_id": "z", "interval_start": "2021-01-01T00:00:00", "action": "upload"}',
               b"\xff\xfe not utf-8"]
    for value in garbage:
        producer.send("storj.bbr", key=b"x", value=value)
    producer.flush()
    # the stream needs no end mark for order-free features; send one only to know when it is done
    from replay.publisher import send_end_marks

    send_end_marks(producer, "storj", "live-check", pipeline.partitions)
    producer.flush()
    producer.close()
    from stream.client import wait_finished

    wait_finished(connect(pipeline.redis_url), "storj", "live-check", "user", pipeline.partitions,
                  pipeline.prefix, timeout=120, alive=lambda: pipeline.worker.poll() is None)
    # Rows re-routed under their lower-case key go to the end of the log, behind the end marks: the run
    # can finish before they are applied. Their features follow within a few seconds.
    deadline = time.monotonic() + 30
    while (mismatches := pipeline.verify("storj", str(folder))[0]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [str(m) for m in mismatches] == []
    status = connect(pipeline.redis_url).hget(f"{pipeline.prefix}status:storj", "dead_letters")
    assert status is not None and int(status) == len(garbage) + 1


def test_restarted_worker_recovers_state_from_the_changelog(pipeline, tmp_path):
    """A new worker process rebuilds its tables from the changelog (the broker reports end offsets oddly:
    recovery must still read to the true end), then a rerun of the replay changes nothing."""
    folder = tmp_path / "dump"
    generate_storj(folder, seed=11, scale=0.02)
    pipeline.replay("storj", str(folder))
    before = _without_meta(pipeline.features("storj", "user"))
    pipeline.restart_worker()
    pipeline.replay("storj", str(folder), timeout=90)
    assert _without_meta(pipeline.features("storj", "user")) == before
    mismatches, _ = pipeline.verify("storj", str(folder))
    assert [str(m) for m in mismatches] == []


def _changelog_records_read(metrics_port: int) -> int:
    from urllib.request import urlopen

    text = urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("fsp_changelog_records_read_total{")))


def _changelog_records(broker: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    from stream.runtime.consumer import true_end_offsets

    consumer = KafkaConsumer(bootstrap_servers=broker)
    try:
        tps = [TopicPartition(topic, p) for topic in consumer.topics() if topic.endswith("-changelog")
               for p in consumer.partitions_for_topic(topic)]
        reported = consumer.end_offsets(tps)
    finally:
        consumer.close()
    return sum(true_end_offsets(broker, reported).values())


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_worker_killed_after_a_replay_reads_the_whole_changelog_in_memory_and_only_its_tail_on_disk(
        pipeline_factory, tmp_path, monkeypatch, store):
    """RocksDB keeps each partition's state with the changelog offset it reflects: a worker killed with
    SIGKILL and started again on its directory reads the changelogs' tails, not the whole of them (in
    memory it must read them all), and its state is whole: a rerun of the replay, de-duplicated by that
    state, changes nothing."""
    from fsp.stack import free_port
    from stream.runtime.state_backends import FLUSH_IDLE_S

    monkeypatch.setenv("FSP_STORE", store)  # the workers inherit it
    pipeline = pipeline_factory()
    folder = tmp_path / "dump"
    generate_storj(folder, seed=12, scale=0.05)
    pipeline.replay("storj", str(folder))
    before = _without_meta(pipeline.features("storj", "user"))
    written = _changelog_records(pipeline.broker)
    # RocksDB puts states on disk once writes pause (they skip its write-ahead log): a worker killed in
    # the instant after its last writes would read those again too
    time.sleep(10 * FLUSH_IDLE_S)
    port = free_port()
    pipeline.restart_worker(kill=True, metrics_port=port)
    pipeline.wait_ready()
    read = _changelog_records_read(port)
    print(f"\n{store}: changelogs hold {written} records; the restarted worker read {read} of them")
    assert written > 1000
    if store == "memory":
        assert read >= written
    else:
        assert read < written / 20
    pipeline.replay("storj", str(folder), timeout=90)
    assert _without_meta(pipeline.features("storj", "user")) == before
    mismatches, _ = pipeline.verify("storj", str(folder))
    assert [str(m) for m in mismatches] == []


def test_a_state_dir_left_by_another_broker_is_dropped_not_mixed_in(pipeline_factory, tmp_path):
    """The embedded broker keeps nothing: a worker of a new one must not take the old databases (their
    persisted offsets lie past the new changelogs' ends) for its own state, or the same replay would
    look like a rerun of events already applied."""
    from fsp.demo import stop_worker

    folder = tmp_path / "dump"
    generate_storj(folder, seed=14, scale=0.02)
    state_dir = str(tmp_path / "one-state-dir")
    first = pipeline_factory(state_dir=state_dir)
    first.replay("storj", str(folder))
    stop_worker(first.worker)
    second = pipeline_factory(state_dir=state_dir)  # a new broker, the same directory
    second.replay("storj", str(folder), state_dir=str(tmp_path / "replay-2"))
    mismatches, _ = second.verify("storj", str(folder))
    assert [str(m) for m in mismatches] == []
    assert "dropped, recovered from the changelogs instead" in second.worker_log()


def test_interrupted_replay_resumes_and_ends_exact(pipeline, tmp_path, monkeypatch):
    from replay import publisher
    from replay.job import checkpoint_path, source_stream

    monkeypatch.setattr(publisher, "CHECKPOINT_ROWS", 1000)
    folder = tmp_path / "dump"
    generate_storj(folder, seed=13, scale=0.03)
    items, total = source_stream("storj", str(folder))

    def cut_after(rows, n):
        for i, item in enumerate(rows):
            if i == n:
                raise KeyboardInterrupt("replay stopped by its user")
            yield item

    state_dir = str(tmp_path / "state")
    checkpoint = publisher.Checkpoint(checkpoint_path("storj", str(folder), state_dir))
    with pytest.raises(KeyboardInterrupt):
        publisher.publish(cut_after(items, total // 2), "storj", pipeline.broker, pipeline.partitions, pack=500,
                          checkpoint=checkpoint, progress=False)
    assert 0 < checkpoint.load()["done_rows"] < total
    resumed = pipeline.replay("storj", str(folder), resume=True, state_dir=state_dir, pack=500)
    assert resumed.skipped_by_resume >= 1000 and resumed.published + resumed.skipped_by_resume < total
    mismatches, _ = pipeline.verify("storj", str(folder))
    assert [str(m) for m in mismatches] == []
    again = pipeline.replay("storj", str(folder), resume=True, state_dir=state_dir, pack=500)
    assert again.run != resumed.run  # a finished run is not resumed: a new one, judged by its own marks
    assert again.skipped_by_resume == 0


def test_replay_fails_when_bad_rows_pass_the_threshold(pipeline, tmp_path):
    folder = tmp_path / "dump"
    generate_storj(folder, seed=3, scale=0.01, bad_rows=5)
    with pytest.raises(SystemExit, match="--max-bad 2 bad rows, nothing published"):
        pipeline.replay("storj", str(folder), max_bad=2, wait=False)
    consumer = KafkaConsumer(bootstrap_servers=pipeline.broker)
    dlq = [TopicPartition("storj.dlq", p) for p in range(pipeline.partitions)]
    published = consumer.end_offsets(dlq)
    consumer.close()
    assert sum(published.values()) == 0  # not even the dead letters
