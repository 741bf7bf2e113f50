"""Any producer gets the same features: where a row lands is the stream's job (SPEC §2)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import zlib
from itertools import groupby

import orjson
import pytest
from confluent_kafka import Producer

from datasets.storj.generate import generate_storj
from stream.runtime.partitioning import KeyPartitioner

pytestmark = pytest.mark.integration


def _ordered(folder):
    from replay.job import read_source

    ordered, bad = read_source("storj", str(folder))
    assert not bad
    return ordered


def _finish(pipeline, run: str, folder) -> None:
    """End marks (only to know when the run is through), then the features, once re-placed rows are in."""
    from kafka import KafkaProducer

    from replay.publisher import send_end_marks
    from stream.client import connect, wait_finished

    producer = KafkaProducer(bootstrap_servers=pipeline.broker)
    send_end_marks(producer, "storj", run, pipeline.partitions)
    producer.flush()
    producer.close()
    wait_finished(connect(pipeline.redis_url), "storj", run, "user", pipeline.partitions, pipeline.prefix,
                  timeout=180, alive=lambda: pipeline.worker.poll() is None)
    deadline = time.monotonic() + 30  # rows re-placed after the end marks follow within seconds
    while (mismatches := pipeline.verify("storj", str(folder))[0]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [str(m) for m in mismatches] == []


def test_a_history_by_murmur2_then_a_live_feed_by_librdkafkas_crc32_on_two_workers_is_exact(pipeline, tmp_path):
    """A dump's history as the replay places it, then its last 150 rows as a live feed from librdkafka's
    default partitioner (CRC32), one row per message, to two workers: every key's state stays in one place.
    The feed keeps a live pace: rows two hours of event time apart are 0.4 s apart, so that a row the stream
    re-places reaches its partition before rows later than its session's gap + lateness (SPEC §2)."""
    from replay.publisher import publish

    folder = tmp_path / "dump"
    generate_storj(folder, seed=21, scale=0.02)
    ordered = _ordered(folder)
    history, live = ordered[:-150], ordered[-150:]
    assert all(item.row.ts is not None for item in live)
    pipeline.extra_worker()
    publish(history, "storj", pipeline.broker, pipeline.partitions, end_mark=False, progress=False)
    crc32 = Producer({"bootstrap.servers": pipeline.broker, "linger.ms": 5})  # partitioner: consistent_random
    paced_from = None
    for item in live:
        if paced_from is not None and item.row.ts - paced_from > 2 * 3_600 * 1_000_000:
            crc32.flush()
            time.sleep(0.4)
            paced_from = item.row.ts
        paced_from = item.row.ts if paced_from is None else paced_from
        crc32.produce(item.spec.topic, key=item.row.key.encode(), value=orjson.dumps(item.row.values))
        crc32.poll(0)
    crc32.flush()
    murmur2 = KeyPartitioner(pipeline.partitions)
    elsewhere = sum(1 for item in live
                    if zlib.crc32(item.row.key.encode()) % pipeline.partitions != murmur2(item.row.key.encode()))
    assert elsewhere > len(live) // 2  # most live rows came on another partition than the replay's
    _finish(pipeline, "mixed", folder)


def test_fsp_publish_sends_rows_as_a_live_producer(pipeline, tmp_path):
    """Every table of a small dump through `fsp publish` (JSON lines, keys taken from the rows), table after
    table in the order the dump's rows first appear."""
    folder = tmp_path / "dump"
    generate_storj(folder, seed=23, scale=0.005)
    env = {**os.environ, "KAFKA_BROKER": pipeline.broker, "PARTITIONS": str(pipeline.partitions)}
    for number, (table, items) in enumerate(groupby(sorted(_ordered(folder), key=_first_seen_order()),
                                                    key=lambda item: item.spec.name)):
        lines = tmp_path / f"{number}-{table}.jsonl"
        rows = [item.row.values for item in items]
        # one row per line, and the same rows again as arrays of three: a duplicate of each is no change
        text = b"\n".join(orjson.dumps(row) for row in rows) + b"\n" + b"\n".join(
            orjson.dumps(rows[i:i + 3]) for i in range(0, len(rows), 3))
        lines.write_bytes(text + b"\n")
        done = subprocess.run([sys.executable, "-m", "fsp", "publish", "storj", table, str(lines)], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"published {2 * len(rows)} rows to storj.{table}")
    _finish(pipeline, "published", folder)


def _first_seen_order():
    order: dict[str, int] = {}

    def key(item):
        return order.setdefault(item.spec.name, len(order))
    return key


def test_fsp_publish_reports_lines_that_are_no_rows_and_rows_that_break_the_contract(pipeline, tmp_path):
    lines = tmp_path / "rows.jsonl"
    lines.write_text('{"project_id": "P1", "interval_start": "2021-04-20T17:00:00", "action": 2}\n'
                     'not json\n'
                     '[{"interval_start": "2021-04-20T18:00:00"}]\n\n')
    env = {**os.environ, "KAFKA_BROKER": pipeline.broker}
    done = subprocess.run([sys.executable, "-m", "fsp", "publish", "storj", "bbr", str(lines)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "published 2 rows to storj.bbr" in done.stdout
    assert "1 of them break the contract and will be dead letters (first: line 3: missing key project_id)" \
        in done.stdout
    assert "skipped line 2: not JSON" in done.stdout
    assert done.stderr.strip() == "error: 1 lines were no rows and were not published"
    wrong = subprocess.run([sys.executable, "-m", "fsp", "publish", "storj", "nope", str(lines)], env=env,
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and wrong.stderr.startswith("error: no table 'nope' in storj (topics: ")
