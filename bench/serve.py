"""The feature server under load: single and 100-entity batch reads at a fixed request rate.

    python -m bench.serve [--users 3020] [--rate 1000] [--seconds 10] [--batch-rate 100]

Writes `--users` storj user snapshots (the shape and size of a scale-1 store's, through the worker's own
sink) into REDIS_URL under a prefix of its own, starts `fsp serve` as a process of its own, and sends
requests from this process (another process than the server's) at a fixed rate, open loop: each request
starts on schedule whether or not the previous ones answered, so a slow server shows in the latency
rather than in a lower rate. Prints one JSON line per run: achieved requests/s, p50/p99/max latency, errors.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid

import aiohttp

from fsp.stack import free_port, wait_for_port

MONTHS = [f"2020-{m:02d}" for m in range(1, 13)]


def _user_features(rng: random.Random) -> dict:
    """What a storj user's snapshot holds (datasets.storj.logic.user_features), with made-up values."""
    by_month = {m: rng.randrange(10**9) for m in rng.sample(MONTHS, 6)}
    return {"created_at": "2020-01-21", "tier": "pro", "projects": rng.randrange(1, 5),
            "upload_bytes_by_month": by_month, "download_bytes_by_month": dict(by_month),
            "storage_bytes": rng.randrange(10**10), "sessions": rng.randrange(100),
            "session_seconds": rng.randrange(10**6), "over_limit_months": [], "over_storage_limit": False,
            "operator_nodes": rng.randrange(5), "operator_paid_by_month": {m: rng.random() * 100 for m in MONTHS[:4]},
            "first_activity": "2020-02-03T10:00:00", "last_activity": "2020-12-02T04:00:00"}


async def _fill(redis_url: str, prefix: str, users: list[str]) -> None:
    from stream.runtime.sink import SnapshotSink

    sink, rng = SnapshotSink(redis_url, prefix), random.Random(1)
    for n, user in enumerate(users):
        sink.snapshot("storj", "user", user, n + 1, _user_features(rng), 100, "2020-12-02T04:00:00")
        if sink.pending >= 500:
            await sink.flush()
    await sink.flush()
    await sink.close()


async def _load(base: str, users: list[str], rate: float, seconds: float, batch: int) -> dict:
    latencies, errors, kinds = [], 0, {}
    rng = random.Random(2)

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            if batch == 1:
                request = session.get(f"{base}/v1/storj/user/{rng.choice(users)}")
            else:
                request = session.post(f"{base}/v1/storj/user", json={"ids": rng.sample(users, batch)})
            async with request as response:
                await response.read()
                ok = response.status == 200
                if not ok:
                    kinds[f"HTTP {response.status}"] = kinds.get(f"HTTP {response.status}", 0) + 1
        except aiohttp.ClientError as exc:
            ok = False
            kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
        if ok:
            latencies.append(time.perf_counter() - started)
        else:
            errors += 1

    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(50):  # warm the connections and the server
            await one(session)
        latencies.clear()
        tasks, start = [], time.perf_counter()
        total = int(rate * seconds)
        for n in range(total):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(session)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2) if latencies else None

    return {"entities_per_request": batch, "target_rate": rate, "requests": total,
            "achieved_rate": round(len(latencies) / elapsed, 1), "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "max_ms": round(1000 * latencies[-1], 2) if latencies else None, "errors": errors,
            "error_kinds": kinds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=3_020)
    parser.add_argument("--rate", type=float, default=1_000, help="single reads per second")
    parser.add_argument("--batch-rate", type=float, default=100, help="100-entity batch reads per second")
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"bench-serve-{uuid.uuid4().hex[:6]}:"
    users = [uuid.UUID(int=random.Random(n).getrandbits(128)).hex for n in range(args.users)]
    asyncio.run(_fill(redis_url, prefix, users))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "fsp", "serve", "--port", str(port)],
                              env={**os.environ, "REDIS_URL": redis_url, "FEATURE_PREFIX": prefix},
                              stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc=server)
        base = f"http://127.0.0.1:{port}"
        for rate, batch in ((args.rate, 1), (args.batch_rate, 100)):
            result = asyncio.run(_load(base, users, rate, args.seconds, batch))
            print(json.dumps({"users": args.users, **result}), flush=True)
    finally:
        server.terminate()
        server.wait(10)
        import redis

        r = redis.Redis.from_url(redis_url)
        for key in r.scan_iter(match=f"{prefix}*", count=1000):
            r.delete(key)


if __name__ == "__main__":
    main()
