"""A real worker (embedded broker, Redis) with FEATURE_TTL set and its metrics endpoint open: after a storj
replay its snapshots carry the TTL, and the endpoint shows consumer lag, event time, event-to-snapshot
latency, snapshot ages, dead letters by cause and Faust's own sensor."""
from __future__ import annotations

import csv
import re
import time
from datetime import datetime
from urllib.request import urlopen

import pytest

from contract import keys
from datasets.storj.generate import generate_storj
from fsp.stack import free_port
from replay.publisher import make_producer
from stream.runtime.stages import ARRIVED_HEADER

pytestmark = pytest.mark.integration


def scrape(port: int) -> dict[tuple, float]:
    """Every sample of the endpoint: (name, its labels sorted) -> value."""
    text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            name, _, labels = series.partition("{")
            pairs = re.findall(r'(\w+)="([^"]*)"', labels)
            samples[(name, tuple(sorted(pairs)))] = float(value)
    return samples


def sample(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def matching(samples: dict, name: str, **labels) -> list[float]:
    """The values of every series of `name` with at least these labels."""
    return [value for (series, pairs), value in samples.items()
            if series == name and set(labels.items()) <= set(pairs)]


def bbr_times(folder) -> list[float]:
    times = []
    for path in folder.rglob("*_bbr.csv"):
        with open(path, newline="") as handle:
            times += [datetime.fromisoformat(row["interval_start"] + "+00:00").timestamp()
                      for row in csv.DictReader(handle)]
    return times


def internal_records(broker: str, topic: str, partitions: int) -> list:
    """The keyed records of an internal topic (summaries; marks have no key)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=broker, auto_offset_reset="earliest", consumer_timeout_ms=3000)
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        return [record for record in consumer if record.key is not None]
    finally:
        consumer.close()


def test_a_worker_reports_its_freshness_and_expires_snapshots(pipeline_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURE_TTL", "storj=30d")  # the worker inherits it
    port = free_port()
    pipeline = pipeline_factory(metrics_port=port)
    pipeline.wait_ready()  # rows published before the worker runs would wait for it: a latency of their own
    folder = tmp_path / "dump"
    generate_storj(folder, seed=21, scale=0.02)
    pipeline.replay("storj", str(folder))
    producer = make_producer(pipeline.broker)
    producer.send("storj.bbr", key=b"p1", value=b"no JSON")  # a dead letter, cause bad_message
    producer.flush()
    users = pipeline.features("storj", "user")
    r = pipeline.redis()
    some_user = keys.feature_key(pipeline.prefix, "storj", "user", next(iter(users)))
    assert 29.9 * 86400_000 < r.pttl(some_user) <= 30 * 86400_000

    deadline = time.monotonic() + 20  # snapshot ages are counted every 5 s
    while True:
        samples = scrape(port)
        fresh = sample(samples, "fsp_snapshot_age_seconds_bucket", dataset="storj", entity="user", le="60")
        dead = sample(samples, "fsp_dead_letters_total", dataset="storj", cause="bad_message", table="bbr")
        if (fresh == len(users) and dead == 1) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert fresh == len(users) and dead == 1
    assert sample(samples, "fsp_snapshot_age_seconds_gcount", dataset="storj", entity="user") == len(users)

    written = sample(samples, "fsp_event_to_snapshot_seconds_count", dataset="storj")
    assert written >= len(users)  # every user snapshot is written at least once, each one timed
    assert 0 < sample(samples, "fsp_event_to_snapshot_seconds_sum", dataset="storj") / written < 120

    assert len(matching(samples, "fsp_consumer_lag_records", topic="storj.bbr")) == pipeline.partitions
    assert len(matching(samples, "fsp_consumer_lag_records", topic="storj.internal.user")) == pipeline.partitions
    assert set(matching(samples, "fsp_consumer_lag_records")) == {0}  # the replay is applied: nothing unread
    assert set(matching(samples, "fsp_consumer_lag_seconds")) == {0}
    reached = sample(samples, "fsp_consumer_event_time_seconds", topic="storj.bbr", partition="0")
    times = bbr_times(folder)
    assert min(times) <= reached <= max(times)

    assert matching(samples, "faust_topic_partition_offset_commited")  # Faust's own sensor

    summaries = internal_records(pipeline.broker, "storj.internal.user", pipeline.partitions)
    arrivals = [int(dict(record.headers)[ARRIVED_HEADER]) for record in summaries]  # each carries its source's
    assert summaries and all(at <= record.timestamp for at, record in zip(arrivals, summaries))
