"""Live-mode latency for `fsp bench`: single-row messages at a steady rate, timed from produce until
Redis shows the snapshot that counts them. Runs as a process of its own (see bench.suite)."""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta

import orjson
import redis as redis_lib

from contract import keys
from fsp.demo import start_worker, stop_worker, wait_worker_ready
from fsp.stack import Stack, start_broker
from replay.publisher import make_producer


def live_latency(redis_url: str, partitions: int, rate: int, seconds: float, users: int = 50) -> dict:
    """Single-row messages at a steady rate; latency from produce to the snapshot showing it in Redis."""
    broker = start_broker()
    stack = Stack(broker.address, redis_url, [broker])
    prefix = f"bench-live-{uuid.uuid4().hex[:6]}:"
    state_dir = tempfile.mkdtemp(prefix="fsp-bench-live-state-")  # a fresh broker's worker starts from nothing
    worker = start_worker(stack.kafka_broker, redis_url, prefix, partitions, "storj", state_dir=state_dir)
    alive = lambda: worker.poll() is None  # noqa: E731
    r, previous_events = redis_lib.Redis.from_url(redis_url), None
    try:
        wait_worker_ready(stack.kafka_broker, redis_url, prefix, partitions, "storj", alive=alive)
        producer = make_producer(stack.kafka_broker)
        projects = [(f"live-project-{i}", f"live-user-{i}") for i in range(users)]
        for project, user in projects:
            producer.send("storj.projects", key=project.encode(), value=orjson.dumps(
                {"created_at": "2021-01-01T00:00:00", "project_id": project, "user_id": user,
                 "usage_limit": 1, "bandwidth_limit": 1}))
        producer.flush()
        user_keys = [keys.feature_key(prefix, "storj", "user", user) for _, user in projects]
        deadline = time.monotonic() + 60
        while sum(r.exists(k) for k in user_keys) < users and time.monotonic() < deadline:
            time.sleep(0.05)
        sent: list[list[float]] = [[] for _ in projects]
        latencies: list[float] = []
        stop = threading.Event()
        index_of = {key.encode(): i for i, key in enumerate(user_keys)}
        # Redis tells when a snapshot is written (keyspace notifications): polling 50 keys every few ms
        # took a good part of a core away from the worker on a 2-core machine, and timed coarsely.
        previous_events = r.config_get("notify-keyspace-events").get("notify-keyspace-events", "")
        r.config_set("notify-keyspace-events", "Kh")
        db = r.connection_pool.connection_kwargs.get("db", 0)
        pubsub = r.pubsub(ignore_subscribe_messages=True)
        pubsub.psubscribe(f"__keyspace@{db}__:{prefix}feat:storj:user:*")

        def watch() -> None:
            seen = [0] * users
            reader = redis_lib.Redis.from_url(redis_url)
            while not (stop.is_set() and all(seen[i] == len(sent[i]) for i in range(users))):
                message = pubsub.get_message(timeout=0.5)
                if message is None:
                    continue
                now = time.perf_counter()
                key = message["channel"].split(b":", 1)[1]
                i = index_of.get(key)
                if i is None:
                    continue
                count = min(int(reader.hget(key, "uploads") or 0), len(sent[i]))
                for j in range(seen[i], count):
                    latencies.append(now - sent[i][j])
                seen[i] = max(seen[i], count)
            reader.close()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        total, start = int(rate * seconds), time.perf_counter()
        for n in range(total):
            due = start + n / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            index = n % users
            project = projects[index][0]
            sent[index].append(time.perf_counter())
            # event time moves on like a real feed: one hourly rollup per project every 50 events
            interval = datetime(2021, 1, 1) + timedelta(hours=n // users)
            producer.send("storj.bbr", key=project.encode(), value=orjson.dumps(
                {"interval_start": interval.isoformat(), "action": 1, "inline": n, "settled": 1,
                 "project_id": project}))
        producer.flush()
        stop.set()
        watcher.join(60)
        ordered = sorted(latencies)

        def pct(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

        return {"events": total, "seen": len(ordered), "rate": rate, "seconds": seconds,
                "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": ordered[-1] * 1000 if ordered else None}
    finally:
        stop_worker(worker)
        shutil.rmtree(state_dir, ignore_errors=True)
        stack.stop()
        if previous_events is not None:
            r.config_set("notify-keyspace-events", previous_events)
        r.close()


def main() -> None:
    redis_url, partitions, rate, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(live_latency(redis_url, partitions, rate, seconds)), flush=True)


if __name__ == "__main__":
    main()
