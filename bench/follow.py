"""Follow-mode latency: rows committed in PostgreSQL at a steady rate while `fsp replay --follow` runs, each
timed from its commit until Redis shows the feature it moves.

    python -m bench.follow [--rate 100] [--seconds 30] [--interval 1] [--pg-url postgresql://...]

Everything runs here as it would in production, each part a process of its own: an embedded broker, a
stream worker (ucn), `fsp replay ucn <PostgreSQL> --follow`, and this process inserting rows, one
transaction each, and polling Redis. A small ucn history (generated) is loaded into a schema of its own,
with users of the bench's own, each with one personal device; every row is a `devicetraffic` row of one of
those devices, so it adds 1 to its user's `traffic_seconds`. The delay of a row is the first time Redis
shows its user's count at or past the row's number, minus the time its COMMIT returned. It includes the
poll interval (a row waits up to `--interval` s for the next poll) and everything after it: read, publish,
the worker's two stages, the Redis write. Redis is polled every 2 ms, so a delay is known to ~2 ms.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta

PG_URL = os.environ.get("PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
READY = "following new rows every"
USERS = 10
FIRST_ID = 1_000_000  # ids of the bench's own users, devices and rows: above the generated ones


def _wait_line(proc: subprocess.Popen, lines: list, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"follow did not say {text!r}: {lines[-5:]}")
        time.sleep(0.02)


def follow_latency(redis_url: str, partitions: int = 4, rate: int = 100, seconds: float = 30, interval: float = 1.0,
                   pg_url: str = PG_URL) -> dict:
    import redis as redis_lib
    import sqlalchemy as sa

    from contract import keys
    from datasets.ucn.generate import generate_ucn
    from fsp.demo import start_worker, stop_worker, wait_worker_ready
    from fsp.stack import start_broker

    schema = f"fsp_bench_follow_{uuid.uuid4().hex[:6]}"
    source = f"{pg_url}?options=-csearch_path%3D{schema}"
    engine = sa.create_engine(source.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        engine.connect().close()
    except sa.exc.OperationalError as exc:
        raise SystemExit(f"error: no PostgreSQL at {pg_url}: "
                         f"{str(exc.orig).strip().splitlines()[0] if exc.orig else exc}") from None
    work = tempfile.mkdtemp(prefix="fsp-bench-follow-")
    prefix = f"bench-follow-{uuid.uuid4().hex[:6]}:"
    broker = start_broker()
    worker = follow = None
    r = redis_lib.Redis.from_url(redis_url)
    try:
        generate_ucn(pg_url, seed=1, scale=0.02, schema=schema)
        users = [(FIRST_ID + i, FIRST_ID + i) for i in range(USERS)]  # (user id, its device id)
        with engine.begin() as conn:
            end = conn.execute(sa.text("SELECT MAX(ts) FROM devicetraffic")).scalar_one()
            conn.execute(sa.text("INSERT INTO users (id, username, country) VALUES (:u, 'bench', 'uk')"),
                         [{"u": u} for u, _ in users])
            conn.execute(sa.text("INSERT INTO devices (id, platform, shared) VALUES (:d, 'bench', false)"),
                         [{"d": d} for _, d in users])
            conn.execute(sa.text("INSERT INTO user_devices (user_id, device_id) VALUES (:u, :d)"),
                         [{"u": u, "d": d} for u, d in users])
        worker = start_worker(broker.address, redis_url, prefix, partitions, "ucn",
                              os.path.join(work, "worker.log"), state_dir=os.path.join(work, "state"))
        wait_worker_ready(broker.address, redis_url, prefix, partitions, "ucn",
                          alive=lambda: worker.poll() is None)
        env = {**os.environ, "KAFKA_BROKER": broker.address, "REDIS_URL": redis_url, "FEATURE_PREFIX": prefix,
               "PARTITIONS": str(partitions)}
        follow = subprocess.Popen([sys.executable, "-m", "fsp", "replay", "ucn", source, "--follow", "--interval",
                                   str(interval), "--no-progress"], cwd=work, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(line.rstrip() for line in follow.stdout), daemon=True).start()
        _wait_line(follow, lines, READY, 120)

        feature_keys = [keys.feature_key(prefix, "ucn", "user", u) for u, _ in users]
        row_id = [FIRST_ID]

        def insert(conn, device: int, n: int) -> None:
            conn.execute(sa.text("INSERT INTO devicetraffic (id, devid, ts, packets_in, bytes_in, packets_out, "
                                 "bytes_out) VALUES (:id, :d, :ts, 1, 100, 1, 50)"),
                         {"id": row_id[0], "d": device, "ts": end + timedelta(minutes=1, milliseconds=10 * n)})
            row_id[0] += 1

        def counts() -> list[int]:
            pipe = r.pipeline(transaction=False)
            for key in feature_keys:
                pipe.hget(key, "traffic_seconds")
            return [int(v) if v is not None else 0 for v in pipe.execute()]

        # one row per user first: once Redis shows them, the history before them is applied
        with engine.begin() as conn:
            for i, (_, device) in enumerate(users):
                insert(conn, device, i)
        deadline = time.monotonic() + 120
        while min(counts()) < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the warm-up rows never showed in Redis")
            time.sleep(0.05)

        committed: list[list[float]] = [[] for _ in users]  # per user: commit time of its k-th bench row
        delays: list[float] = []
        stop = threading.Event()

        def watch() -> None:
            seen = [0] * len(users)
            while True:
                done = stop.is_set()
                now = time.perf_counter()
                for i, count in enumerate(counts()):
                    reached = min(count - 1, len(committed[i]))  # the warm-up row is 1
                    for k in range(seen[i], reached):
                        delays.append(now - committed[i][k])
                    seen[i] = max(seen[i], reached)
                if done and all(seen[i] == len(committed[i]) for i in range(len(users))):
                    return
                if done and time.perf_counter() - stopped_at[0] > 60:
                    return
                time.sleep(0.002)

        stopped_at = [0.0]
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        total, start = int(rate * seconds), time.perf_counter()
        with engine.connect() as conn:
            for n in range(total):
                pause = start + n / rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                i = n % len(users)
                with conn.begin():
                    insert(conn, users[i][1], len(users) + n)
                committed[i].append(time.perf_counter())
        stopped_at[0] = time.perf_counter()
        stop.set()
        watcher.join(90)
        ordered = sorted(delays)

        def pct(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

        return {"rows": total, "seen": len(ordered), "rate": rate, "seconds": seconds, "interval_s": interval,
                "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": ordered[-1] * 1000 if ordered else None}
    finally:
        if follow is not None and follow.poll() is None:
            follow.send_signal(signal.SIGTERM)
            follow.wait(30)
        if worker is not None:
            stop_worker(worker)
        broker.stop()
        for key in r.scan_iter(match=f"{prefix}*", count=1000):
            r.delete(key)
        r.close()
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
        shutil.rmtree(work, ignore_errors=True)


def describe(result: dict) -> str:
    return (f"follow: {result['rows']:,} rows committed in PostgreSQL at {result['rate']:,}/s, polled every "
            f"{result['interval_s']:g} s: commit -> visible in Redis p50 {result['p50_ms']:.0f} ms, "
            f"p99 {result['p99_ms']:.0f} ms, max {result['max_ms']:.0f} ms ({result['seen']:,} seen)")


def main(argv=None) -> None:
    from common.config import Settings
    from fsp.stack import redis_reachable, start_redis

    parser = argparse.ArgumentParser(prog="python -m bench.follow", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=100, help="rows committed per second")
    parser.add_argument("--seconds", type=float, default=30, help="how long rows are committed")
    parser.add_argument("--interval", type=float, default=1.0, help="follow's poll interval (its default: 1 s)")
    parser.add_argument("--pg-url", default=PG_URL, help="the PostgreSQL (a schema of its own is made and dropped)")
    parser.add_argument("--redis-url", default=None, help="default: REDIS_URL, else an embedded server")
    parser.add_argument("--json", action="store_true", help="one JSON line instead of a sentence")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    redis_url, server = args.redis_url or settings.redis_url, None
    if redis_url is None or not redis_reachable(redis_url):
        server = start_redis()
        redis_url = server.address
    try:
        result = follow_latency(redis_url, settings.partitions, args.rate, args.seconds, args.interval, args.pg_url)
    finally:
        if server is not None:
            server.stop()
    print(json.dumps(result) if args.json else describe(result), flush=True)


if __name__ == "__main__":
    main()
