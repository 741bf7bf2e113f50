"""Where state lives, measured: one storj replay through one worker with its state in memory or RocksDB.

    python -m bench.state --store rocksdb --scale 1 [--data DIR] [--restart kill|stop]

Prints one JSON line: events/s end to end (first publish -> last snapshot in Redis), the worker's CPU
time during the replay (RocksDB's own threads included) and peak RSS, the state directory's size on disk
(the workers' logs are kept beside it), then, after the worker is killed (or stopped) and started
again on its directory: how many changelog records its recovery read and how long it took from its
start until a new live event was served (its user's snapshot in Redis).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from urllib.request import urlopen

import orjson

from bench.measure import cpu_seconds
from bench.suite import _peak_rss_mb
from contract import keys
from fsp.demo import start_worker, stop_worker, wait_worker_ready
from fsp.stack import free_port, start_broker

PARTITIONS = 4


def du_bytes(path: str) -> int:
    out = subprocess.run(["du", "-sb", path], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def changelog_records_read(metrics_port: int) -> int:
    text = urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("fsp_changelog_records_read_total{")))


def publish_live_event(broker: str, user: str) -> None:
    from replay.publisher import make_producer

    producer = make_producer(broker)
    project = f"live-project-{user}"
    producer.send("storj.projects", key=project.encode(), value=orjson.dumps(
        {"created_at": "2021-01-01T00:00:00", "project_id": project, "user_id": user,
         "usage_limit": 1, "bandwidth_limit": 1}))
    producer.flush()
    producer.close()


def seconds_until_served(redis_url: str, prefix: str, user: str, since: float, alive, timeout: float = 600) -> float:
    import redis

    r = redis.Redis.from_url(redis_url)
    key = keys.feature_key(prefix, "storj", "user", user)
    deadline = time.monotonic() + timeout
    while not r.exists(key):
        if time.monotonic() > deadline or not alive():
            raise RuntimeError(f"{key} never appeared")
        time.sleep(0.02)
    return time.monotonic() - since


def measure(store: str, data: str, redis_url: str, restart: str) -> dict:
    from replay.job import replay

    broker = start_broker()
    prefix = f"bench-state-{uuid.uuid4().hex[:6]}:"
    state_dir = tempfile.mkdtemp(prefix=f"fsp-bench-state-{store}-")
    env_store = os.environ.get("FSP_STORE")
    os.environ["FSP_STORE"] = store  # the workers inherit it
    worker = None
    try:
        worker = start_worker(broker.address, redis_url, prefix, PARTITIONS, "storj", state_dir=state_dir,
                              log_path=f"{state_dir}.log")
        alive = lambda: worker.poll() is None  # noqa: E731
        wait_worker_ready(broker.address, redis_url, prefix, PARTITIONS, "storj", alive=alive)
        cpu_before = cpu_seconds(worker.pid)
        summary = replay("storj", data, broker.address, redis_url, partitions=PARTITIONS, prefix=prefix, wait=True,
                         timeout=1200, progress=False, alive=alive, state_dir=os.path.join(state_dir, "replay"))
        seconds = summary.seconds + summary.wait_seconds
        result = {"store": store, "events": summary.published, "seconds": round(seconds, 2),
                  "events_per_s": round(summary.published / seconds), "worker_peak_rss_mb": _peak_rss_mb(worker.pid),
                  "worker_cpu_s": round(cpu_seconds(worker.pid) - cpu_before, 2)}
        if restart == "kill":
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        else:
            stop_worker(worker)
        result["state_dir_bytes"] = du_bytes(state_dir)
        port = free_port()
        started = time.monotonic()
        worker = start_worker(broker.address, redis_url, prefix, PARTITIONS, "storj", metrics_port=port,
                              state_dir=state_dir, log_path=f"{state_dir}.restarted.log")
        user = f"live-user-{uuid.uuid4().hex[:6]}"
        publish_live_event(broker.address, user)
        result["restart"] = restart
        result["restart_to_live_event_served_s"] = round(seconds_until_served(redis_url, prefix, user, started,
                                                                              alive), 2)
        result["changelog_records_read_on_restart"] = changelog_records_read(port)
        return result
    finally:
        if worker is not None:
            stop_worker(worker)
        broker.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
        if env_store is None:
            os.environ.pop("FSP_STORE", None)
        else:
            os.environ["FSP_STORE"] = env_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=["rocksdb", "memory"], required=True)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--data", default=None, help="a storj dump (default: generated at --scale, seed 1)")
    parser.add_argument("--restart", choices=["kill", "stop"], default="kill")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    data = args.data
    if data is None or not os.path.isdir(data):
        from datasets.storj.generate import generate_storj

        data = data or tempfile.mkdtemp(prefix="fsp-bench-state-data-")
        generate_storj(data, seed=1, scale=args.scale)
    print(json.dumps({"scale": args.scale, **measure(args.store, data, redis_url, args.restart)}), flush=True)


if __name__ == "__main__":
    main()
