"""`fsp demo`: generate a storj dump, replay it through a worker into Redis, show and verify it."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import datasets
from common.config import Settings
from fsp.stack import bring_up

DATASET = "storj"  # the dataset the demo shows (its output speaks of storj's users and operators)


def start_worker(kafka_broker: str, redis_url: str, prefix: str, partitions: int, datasets: str,
                 log_path: str | None = None, metrics_port: int | None = None,
                 state_dir: str | None = None, launcher: list[str] | None = None) -> subprocess.Popen:
    """`state_dir`: the worker's own (FSP_STATE_DIR): two workers must not share one, and a worker of a
    fresh broker must not find the state of another broker's changelogs. `launcher`: the command that runs
    the command line (default `python -m fsp`; a test's registers a dataset of its own first)."""
    env = {**os.environ, "KAFKA_BROKER": kafka_broker, "REDIS_URL": redis_url, "FEATURE_PREFIX": prefix,
           "PARTITIONS": str(partitions)}
    if state_dir is not None:
        env["FSP_STATE_DIR"] = state_dir
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    extra = ["--metrics-port", str(metrics_port)] if metrics_port else []
    command = [*(launcher or [sys.executable, "-m", "fsp"]), "worker", "--datasets", datasets, *extra]
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_worker_ready(kafka_broker: str, redis_url: str, prefix: str, partitions: int, dataset: str,
                      timeout: float = 120, alive=None) -> None:
    """Block until a worker has joined its group and runs: an empty run (end marks only) completes."""
    import uuid

    from common.topics import ensure_topics
    from contract.tables import topics
    from replay.publisher import make_producer, send_end_marks
    from stream.client import connect, wait_finished

    ensure_topics(kafka_broker, topics(dataset), partitions)
    producer = make_producer(kafka_broker)
    run = f"ready-{uuid.uuid4().hex[:6]}"
    send_end_marks(producer, dataset, run, partitions)
    producer.close()
    wait_finished(connect(redis_url), dataset, run, datasets.get(dataset).final_stage, partitions, prefix, timeout,
                  alive=alive)


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} EB"


def print_top_users(users: dict[str, dict], top: int = 10) -> None:
    def bandwidth(f):
        return sum(f["upload_bytes_by_month"].values()) + sum(f["download_bytes_by_month"].values())

    ranked = sorted(users.items(), key=lambda kv: bandwidth(kv[1]), reverse=True)[:top]
    print(f"\nTop {len(ranked)} of {len(users)} users by bandwidth (uploads + downloads):")
    print(f"  {'user':<34} {'tier':<5} {'bandwidth':>11} {'storage':>11} {'sessions':>8} {'operator paid':>13}")
    for user_id, f in ranked:
        print(f"  {user_id:<34} {f['tier']:<5} {_bytes(bandwidth(f)):>11} {_bytes(f['storage_bytes']):>11} "
              f"{f['usage_sessions_count']:>8} {f['operator_paid_total']:>13.2f}")


def print_export_and_report(r, stack, prefix: str, out: str) -> None:
    """Write the demo's table and report, and say how to make them again from a Redis that stays up."""
    from fsp.export import export_table
    from stream.report import build_report

    table = os.path.join(out, f"{DATASET}-users.parquet")
    exported = export_table(r, DATASET, "user", table, prefix=prefix, progress=False)
    report = build_report(r, DATASET, prefix).write(os.path.join(out, "report"))[0]
    print(f"\nExported {exported.rows:,} users to {table}; the report is {report}")
    env = ""
    if any(process.name == "redis" for process in stack.started):
        print("This demo's broker and Redis stop now. To keep the snapshots, run the demo on a stack that stays up:")
        print("  ./run stack     # in another terminal: prints `export KAFKA_BROKER=... REDIS_URL=...`; run those here")
        print("  ./run demo")
        print("then export and draw them:")
    else:
        env = f"REDIS_URL={stack.redis_url} " + (f"FEATURE_PREFIX={prefix} " if prefix else "")
        print("The snapshots stay in this Redis; export and draw them again with")
    print(f"  {env}./run export storj user --out {out}/users.parquet   # --format csv, --explode, --ids a,b")
    print(f"  {env}./run export storj operator --out {out}/operators.csv")
    print(f"  {env}./run report storj --out {out}/report   # then open {out}/report/index.html")
    print(f"  {env}./run serve   # serves the same report at http://127.0.0.1:8000/v1/storj/report")


def run_demo(scale: float = 1.0, seed: int = 1, out: str = "demo-data") -> int:
    from replay.job import print_summary, replay
    from stream.client import all_features, connect
    from verify.job import verify

    settings = Settings.from_env()
    t0 = time.monotonic()
    print(f"generating a {DATASET} sample dump (scale {scale}, seed {seed}) in {out}/ ...", flush=True)
    datasets.get(DATASET).generate(out, seed=seed, scale=scale)
    stack = bring_up(settings.kafka_broker, settings.redis_url)
    print(f"broker {stack.kafka_broker}, Redis {stack.redis_url}", flush=True)
    worker = start_worker(stack.kafka_broker, stack.redis_url, settings.prefix, settings.partitions, DATASET,
                          log_path=os.path.join(out, "worker.log"), state_dir=os.path.join(out, "worker-state"))
    try:
        summary = replay(DATASET, out, stack.kafka_broker, stack.redis_url, partitions=settings.partitions,
                         prefix=settings.prefix, wait=True, timeout=150,
                         alive=lambda: worker.poll() is None)
        print_summary(summary)
        r = connect(stack.redis_url)
        print_top_users(all_features(r, DATASET, "user", settings.prefix))
        mismatches, counts = verify(DATASET, out, stack.redis_url, settings.prefix)
        for m in mismatches[:10]:
            print("  ", m)
        print(f"\nverify: {sum(counts.values())} snapshots recomputed in batch with pandas, "
              f"{len(mismatches)} mismatches")
        some_user = next(iter(sorted(all_features(r, DATASET, "user", settings.prefix))), "<id>")
        print("\nRead any snapshot with")
        print(f"  redis-cli -u {stack.redis_url} HGETALL {settings.prefix}feat:storj:user:{some_user}")
        print(f"  REDIS_URL={stack.redis_url} fsp get storj user {some_user}")
        print_export_and_report(r, stack, settings.prefix, out)
        print(f"demo finished in {time.monotonic() - t0:.1f}s")
        return 1 if mismatches else 0
    finally:
        stop_worker(worker)
        stack.stop()
