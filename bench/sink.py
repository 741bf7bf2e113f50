"""What one snapshot write costs: `python -m bench.sink [--snapshots 50000]`.

Writes storj-user-like snapshots through the worker's own SnapshotSink (queued and flushed 500 at a
time, as the worker does) into a Redis of its own (a throw-away server, unless `--redis-url` is given),
so that the server's CPU time (INFO cpu) is ours alone. Two cases: every write changes the features
(a replay), and every write repeats the stored features under a newer version (a redelivery, a summary
sent again). Prints microseconds per snapshot: wall clock, the writer's CPU, Redis's CPU.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid

import redis

from fsp.stack import start_redis
from stream.runtime.sink import SnapshotSink

FLUSH_EVERY = 500  # stream.runtime.worker.SINK_FLUSH_EVERY


def user_features(n: int) -> dict:
    """About the size and shape of a storj user's snapshot (~1.1 KB encoded)."""
    months = {f"2021-{m:02d}": n * 1_000_003 + m for m in range(1, 9)}
    return {
        "email_hash": f"{n:032x}", "created_at": "2021-01-02", "projects": 3,
        "project_created_dates": ["2021-01-02", "2021-02-03", "2021-03-04"], "tier": "paid",
        "bandwidth_limit_bytes": 150_000_000_000, "usage_limit_bytes": 75_000_000_000,
        "uploads": n, "downloads": 2 * n, "upload_bytes_by_month": months, "download_bytes_by_month": months,
        "first_activity_at": "2021-01-02T10:00:00", "last_activity_at": "2021-08-30T17:00:00",
        "storage_bytes": 7 * n, "storage_updated_at": "2021-08-30T00:00:00", "over_bandwidth_months": ["2021-03"],
        "over_storage_limit": False, "usage_sessions_count": n % 17, "usage_sessions_seconds": n * 3.5,
        "operator_nodes": 0, "operator_paid_by_month": {}, "operator_paid_total": 0.0,
    }


def _redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


VARIANTS = [user_features(n) for n in range(1_000)]  # built before timing: the writes are measured, not this


async def _write(redis_url: str, prefix: str, snapshots: int, entities: int, unchanged: bool, version0: int) -> None:
    """Entity e's k-th write has variant e + k of the features (changed), or always variant e (unchanged)."""
    sink = SnapshotSink(redis_url, prefix)
    ids = [f"{entity:032x}" for entity in range(entities)]
    try:
        for n in range(snapshots):
            entity = n % entities
            variant = entity if unchanged else entity + n // entities + 1
            sink.snapshot("storj", "user", ids[entity], version0 + n, VARIANTS[variant % len(VARIANTS)], n,
                          "2021-08-30T17:00:00")
            if sink.pending >= FLUSH_EVERY:
                await sink.flush()
        await sink.flush()
    finally:
        await sink.close()


def measure(redis_url: str, snapshots: int, entities: int, unchanged: bool) -> dict:
    """One run on a fresh key prefix: the entities are written once first (not timed), then `snapshots`
    writes are timed."""
    client = redis.Redis.from_url(redis_url)
    prefix = f"bench-sink-{uuid.uuid4().hex[:6]}:"
    try:
        asyncio.run(_write(redis_url, prefix, entities, entities, True, 1))
        redis_before, cpu_before, wall_before = _redis_cpu_s(client), time.process_time(), time.perf_counter()
        asyncio.run(_write(redis_url, prefix, snapshots, entities, unchanged, entities + 1))
        wall, cpu = time.perf_counter() - wall_before, time.process_time() - cpu_before
        redis_cpu = _redis_cpu_s(client) - redis_before
        return {"wall_us": wall / snapshots * 1e6, "writer_cpu_us": cpu / snapshots * 1e6,
                "redis_cpu_us": redis_cpu / snapshots * 1e6}
    finally:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=50_000)
    parser.add_argument("--entities", type=int, default=5_000, help="distinct entities the writes cycle over")
    parser.add_argument("--runs", type=int, default=3, help="runs per case; the median is printed")
    parser.add_argument("--redis-url", default=None, help="default: a throw-away redis-server of its own")
    args = parser.parse_args(argv)
    server = None if args.redis_url else start_redis()
    redis_url = args.redis_url or server.address
    results = {}
    try:
        for case, unchanged in (("changed", False), ("unchanged", True)):
            runs = [measure(redis_url, args.snapshots, args.entities, unchanged) for _ in range(args.runs)]
            results[case] = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
            results[case]["runs"] = [{k: round(v, 2) for k, v in r.items()} for r in runs]
    finally:
        if server is not None:
            server.stop()
    print(f"{args.snapshots:,} snapshot writes over {args.entities:,} entities, median of {args.runs} runs "
          f"(microseconds per snapshot)")
    print(f"{'case':<10} {'wall':>8} {'writer CPU':>11} {'Redis CPU':>10}")
    for case, r in results.items():
        print(f"{case:<10} {r['wall_us']:>8.2f} {r['writer_cpu_us']:>11.2f} {r['redis_cpu_us']:>10.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
