"""`fsp bench`: throughput of the project against baselines, measured in one run.

Figures: replay publish rate; end-to-end events/s (first publish -> last
snapshot written in Redis) with packed messages and with one event per
message; the same events through a naive Faust agent and a raw aiokafka
consumer; pandas computing the features in batch; the state the worker keeps
per user (changelogs) and the Redis snapshot size; the packed run again with
two workers in one consumer group. Results are printed as a table of ratios
and written, with the machine description, to a JSON file.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid

import orjson

from bench.baselines import NAIVE_TOPIC
from common.config import Settings
from common.topics import ensure_topics
from fsp.demo import start_worker, stop_worker, wait_worker_ready
from fsp.stack import bring_up
from replay.publisher import make_producer


def _machine() -> dict:
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "platform": platform.platform()}


def _peak_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _e2e(stack, settings, folder, pack: int, prefix: str, dataset: str = "storj", workers: int = 1,
         measure_state: bool = False) -> dict:
    """One replay through `workers` workers in one consumer group, timed from the first publish until
    Redis shows the run finished; with `measure_state`, the state left in the changelogs too."""
    from bench.measure import (
        cpu_seconds,
        main_thread_cpu_seconds,
        redis_bytes_per_user,
        state_sizes,
        wait_group_settled,
    )
    from fsp.stack import Stack, start_broker
    from replay.job import replay

    broker = start_broker()  # a broker of its own: no state or offsets left by another run
    stack = Stack(broker.address, stack.redis_url, [broker])
    procs = []
    run_tag = uuid.uuid4().hex[:6]
    replay_state = os.path.join(folder, f".state-{run_tag}")
    # what the run leaves on disk beside the dump (a worker's RocksDB state is ~50-100 MB a run): removed after
    state_dirs = [replay_state]

    def start(n: int) -> None:
        suffix = f"-w{n + 1}" if n else ""
        procs.append(start_worker(stack.kafka_broker, stack.redis_url, prefix, settings.partitions, dataset,
                                  os.path.join(folder, f"worker-{dataset}-{pack}{suffix}.log"),
                                  state_dir=os.path.join(folder, f".worker-state-{run_tag}{suffix}")))
        state_dirs.append(os.path.join(folder, f".worker-state-{run_tag}{suffix}"))

    start(0)
    worker = procs[0]
    alive = lambda: all(proc.poll() is None for proc in procs)  # noqa: E731
    try:
        wait_worker_ready(stack.kafka_broker, stack.redis_url, prefix, settings.partitions, dataset, alive=alive)
        rebalance_s = None
        if workers > 1:  # join the others once the first runs, so that the group rebalances as in production
            for n in range(1, workers):
                start(n)
            rebalance_s = wait_group_settled(stack.kafka_broker, workers, alive=alive)
            wait_worker_ready(stack.kafka_broker, stack.redis_url, prefix, settings.partitions, dataset,
                              alive=alive)
        cpu_before = [cpu_seconds(proc.pid) for proc in procs]
        main_before = main_thread_cpu_seconds(worker.pid)
        t0 = time.perf_counter()
        summary = replay(dataset, folder, stack.kafka_broker, stack.redis_url, partitions=settings.partitions,
                         prefix=prefix, pack=pack, wait=True, timeout=600, progress=False, alive=alive,
                         state_dir=replay_state)
        # replay() reads and sorts the source before publishing: time from the first publish
        seconds = summary.seconds + summary.wait_seconds
        result = {"events": summary.published, "seconds": seconds, "publish_rows_per_s": summary.rate,
                  "messages": summary.messages, "total_with_read_s": time.perf_counter() - t0,
                  "worker_peak_rss_mb": _peak_rss_mb(worker.pid)}
        # Tansu does not report assignments: each worker's CPU time during the run shows the split
        result["worker_cpu_s"] = [None if b is None else cpu_seconds(p.pid) - b for p, b in zip(procs, cpu_before)]
        main_after = main_thread_cpu_seconds(worker.pid)
        if main_before is not None and main_after is not None:
            result["worker_main_thread_cpu_s"] = round(main_after - main_before, 2)
        if workers > 1:
            result.update(workers=workers, group_settle_s=rebalance_s,
                          worker_peak_rss_mb_each=[_peak_rss_mb(p.pid) for p in procs])
        if measure_state:
            result["state"] = state_sizes(stack.kafka_broker, dataset)
            result["redis"] = redis_bytes_per_user(stack.redis_url, prefix, dataset)
        return result
    finally:
        for proc in procs:
            stop_worker(proc)
        stack.stop()
        for path in state_dirs:
            shutil.rmtree(path, ignore_errors=True)


def _single_event_topic(stack, folder) -> int:
    """Every event of the dump, one per message, for the baselines; how many."""
    from replay.job import read_source

    ordered, _ = read_source("storj", folder)
    ensure_topics(stack.kafka_broker, [NAIVE_TOPIC], 4)
    producer = make_producer(stack.kafka_broker)
    for item in ordered:
        producer.send(NAIVE_TOPIC, key=item.row.key.encode(),
                      value=orjson.dumps({**item.row.values, "__table": item.spec.name}))
    producer.close()
    return len(ordered)


def _baseline(kind: str, broker: str, events: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.baselines", kind, broker, str(events)],
                         capture_output=True, text=True, timeout=900)
    lines = [line[line.index('{"events"'):] for line in out.stdout.splitlines() if '{"events"' in line]
    if not lines:  # (Faust writes terminal control codes before our line)
        raise RuntimeError(f"{kind} baseline failed: {out.stdout[-1000:]} {out.stderr[-2000:]}")
    return json.loads(lines[-1])


def _pandas(folder) -> dict:
    from datasets.storj.batch import compute_storj

    t0 = time.perf_counter()
    result = compute_storj(folder)
    seconds = time.perf_counter() - t0
    rows = sum(result["stats"]["rows"].values())
    return {"events": rows, "seconds": seconds}


def _live_latency(redis_url: str, partitions: int, rate: int, seconds: float) -> dict:
    """Runs bench.live in a process of its own: in this one, after the other runs, the collector's
    pauses over the rows they left in memory stalled the producer and the watcher (p99 180-230 ms in the
    full bench against 45-65 ms alone)."""
    out = subprocess.run([sys.executable, "-m", "bench.live", redis_url, str(partitions), str(rate), str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 300)
    lines = [line for line in out.stdout.splitlines() if line.startswith('{"events"')]
    if not lines:
        raise RuntimeError(f"live latency run failed: {out.stdout[-1000:]} {out.stderr[-2000:]}")
    return json.loads(lines[-1])


def _server_latency(redis_url: str, seconds: float) -> list[dict]:
    """bench.serve in a process of its own: `fsp serve` over 3,020 storj user snapshots, single reads at
    1,000/s and 100-entity batch reads at 100/s, open loop from another process."""
    out = subprocess.run([sys.executable, "-m", "bench.serve", "--seconds", str(seconds)],
                         env={**os.environ, "REDIS_URL": redis_url}, capture_output=True, text=True,
                         timeout=2 * seconds + 300)
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{"users"')]
    if len(lines) != 2:
        raise RuntimeError(f"server latency run failed: {out.stdout[-1000:]} {out.stderr[-2000:]}")
    return lines


def _follow_latency(redis_url: str, seconds: float) -> dict:
    """bench.follow in a process of its own (as the live run): rows committed in PostgreSQL at 100/s
    while `replay --follow` polls every second; {"skipped": why} without a PostgreSQL."""
    out = subprocess.run([sys.executable, "-m", "bench.follow", "--json", "--seconds", str(seconds),
                          "--redis-url", redis_url], capture_output=True, text=True, timeout=seconds + 300)
    lines = [line for line in out.stdout.splitlines() if line.startswith('{"rows"')]
    if lines:
        return json.loads(lines[-1])
    last = (out.stderr.strip().splitlines() or ["no output"])[-1]
    if last.startswith("error: no PostgreSQL"):  # none here: the other figures stand
        return {"skipped": last[len("error: "):]}
    raise RuntimeError(f"follow latency run failed: {out.stdout[-1000:]} {out.stderr[-2000:]}")


def _replay_rates(ucn_folder: str, scale: float) -> dict:
    """The replay alone, per source kind (ucn in CSV, SQLite and PostgreSQL): rows/s read+published."""
    from datasets.ucn.generate import generate_ucn
    from fsp.stack import start_broker
    from replay.job import replay

    sources = {"csv": ucn_folder}
    sqlite_path = os.path.abspath("bench-data/ucn.db")
    generate_ucn(f"sqlite:///{sqlite_path}", seed=1, scale=scale)
    sources["sqlite"] = f"sqlite:///{sqlite_path}"
    pg = os.environ.get("PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        generate_ucn(pg, seed=1, scale=scale, schema="fsp_bench")
        sources["postgresql"] = f"{pg}?options=-csearch_path%3Dfsp_bench"
    except Exception as exc:  # no PostgreSQL here: measure the others
        print(f"(PostgreSQL skipped: {exc.__class__.__name__})")
    rates = {}
    for kind, source in sources.items():
        broker = start_broker()
        try:
            t0 = time.perf_counter()
            summary = replay("ucn", source, broker.address, None, partitions=4, progress=False,
                             state_dir=os.path.join("bench-data", ".state-" + uuid.uuid4().hex[:6]))
            total = time.perf_counter() - t0
            rates[kind] = {"rows": summary.rows_read, "read_and_publish_rows_per_s": summary.rows_read / total,
                           "publish_rows_per_s": summary.rate}
        finally:
            broker.stop()
    return rates


def _rate(d: dict) -> float:
    return d["events"] / d["seconds"] if d["seconds"] else 0.0


def _scaling_wanted(args) -> bool:
    """The two-worker run is on unless `--skip-scaling` says otherwise."""
    return not getattr(args, "skip_scaling", False)


def _print_state(results: dict) -> None:
    print("\nstate kept by the worker (changelogs read to the end, latest value per key, bookkeeping keys left out)")
    print(f"{'table':<16} {'keys':>9} {'value bytes':>13} {'bytes/key':>10}")
    for run in ("project_packed", "ucn_packed"):
        state = results.get(run, {}).get("state")
        if not state:
            continue
        for table, t in state["tables"].items():
            print(f"{table:<16} {t['keys']:>9,} {t['value_bytes']:>13,} {t['mean_bytes_per_key']:>10,.0f}")
    for dataset, run in (("storj", "project_packed"), ("ucn", "ucn_packed")):
        state, redis_size = results.get(run, {}).get("state"), results.get(run, {}).get("redis") or {}
        if not state or not state["users"]:
            continue
        line = (f"{dataset}: state bytes per user {state['state_bytes_per_user']:,.0f} "
                f"({state['state_bytes']:,} bytes / {state['users']:,} users)")
        if redis_size.get("sampled"):
            line += (f"; Redis per user {redis_size['bytes_per_user']:,.0f} bytes (MEMORY USAGE of the snapshot"
                     + (" and session list" if redis_size["sessions_bytes_per_user"] else "")
                     + f", {redis_size['sampled']:,} of {redis_size['users']:,} users sampled; snapshot fields "
                     f"and values {redis_size['snapshot_payload_bytes_per_user']:,.0f} bytes)")
        print(line)


def _scaling(one: dict, two: dict) -> dict:
    rate_one, rate_two = _rate(one), _rate(two)
    return {"cpus": os.cpu_count(), "events": one["events"], "events_per_s_1_worker": rate_one,
            "events_per_s_2_workers": rate_two, "ratio": rate_two / rate_one if rate_one else None,
            "worker_cpu_s_1_worker": one.get("worker_cpu_s"), "worker_cpu_s_2_workers": two.get("worker_cpu_s")}


def _print_scaling(results: dict) -> None:
    scaling = results.get("scaling")
    if not scaling:
        return
    cpu = lambda seconds: ", ".join(f"{c:.1f}" for c in seconds or [] if c is not None)  # noqa: E731
    print(f"\nscaling, storj packed end to end on {scaling['cpus']} CPUs: 1 worker "
          f"{scaling['events_per_s_1_worker']:,.0f} events/s, 2 workers in one group "
          f"{scaling['events_per_s_2_workers']:,.0f} events/s: ratio {scaling['ratio']:.2f} "
          f"(worker CPU s during the run: 1 worker {cpu(scaling['worker_cpu_s_1_worker'])}; 2 workers "
          f"{cpu(scaling['worker_cpu_s_2_workers'])}; group settled "
          f"{results['project_packed_2_workers']['group_settle_s']:.1f}s after the second joined)")


def run_bench(args) -> None:
    from datasets.storj.generate import generate_storj

    settings = Settings.from_env()
    folder = os.path.abspath("bench-data/storj")
    generate_storj(folder, seed=1, scale=args.scale)
    stack = bring_up(settings.kafka_broker, settings.redis_url)
    results: dict = {"machine": _machine(), "scale": args.scale, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        results["project_packed"] = _e2e(stack, settings, folder, 20_000, f"bench-{uuid.uuid4().hex[:6]}:",
                                         measure_state=True)
        if _scaling_wanted(args):  # right after the one-worker run, on the same data, for a fair ratio
            results["project_packed_2_workers"] = _e2e(stack, settings, folder, 20_000,
                                                       f"bench-{uuid.uuid4().hex[:6]}:", workers=2)
        results["project_single"] = _e2e(stack, settings, folder, 1, f"bench-{uuid.uuid4().hex[:6]}:")
        events = _single_event_topic(stack, folder)
        results["naive_faust"] = _baseline("naive", stack.kafka_broker, min(args.naive_events, events))
        # the ceiling reads every event the project did: over the first 30,000 alone (0.2-0.3 s) its rate, and
        # the ratio with it, moved 3x from run to run with the time its first fetches took
        results["raw_aiokafka"] = _baseline("raw", stack.kafka_broker, events)
        results["pandas_batch"] = _pandas(folder)
        from datasets.ucn.generate import generate_ucn

        ucn_folder = os.path.abspath("bench-data/ucn")
        generate_ucn(ucn_folder, seed=1, scale=args.scale)
        results["ucn_packed"] = _e2e(stack, settings, ucn_folder, 20_000, f"bench-{uuid.uuid4().hex[:6]}:", "ucn",
                                     measure_state=True)
        results["replay_by_source"] = _replay_rates(ucn_folder, args.scale)
        if args.live_seconds:
            results["live"] = _live_latency(stack.redis_url, settings.partitions, args.live_rate,
                                            args.live_seconds)
        if args.follow_seconds:
            results["follow"] = _follow_latency(stack.redis_url, args.follow_seconds)
        if args.serve_seconds:
            results["serve"] = _server_latency(stack.redis_url, args.serve_seconds)
    finally:
        stack.stop()
    if "project_packed_2_workers" in results:
        results["scaling"] = _scaling(results["project_packed"], results["project_packed_2_workers"])
    project = _rate(results["project_packed"])
    rows = [
        ("project, packed messages (end to end)", results["project_packed"]),
        ("project, one event per message (end to end)", results["project_single"]),
        ("naive Faust agent, one event per message", results["naive_faust"]),
        ("raw aiokafka consumer (Python ceiling)", results["raw_aiokafka"]),
        ("pandas batch, same features", results["pandas_batch"]),
    ]
    print(f"\nstorj scale {args.scale}: replay published {results['project_packed']['publish_rows_per_s']:,.0f} rows/s")
    print(f"{'pipeline':<48} {'events':>9} {'seconds':>8} {'events/s':>10} {'project ÷ it':>12}")
    for name, d in rows:
        rate = _rate(d)
        print(f"{name:<48} {d['events']:>9,} {d['seconds']:>8.2f} {rate:>10,.0f} "
              f"{project / rate if rate else 0:>12.2f}")
    ucn = results["ucn_packed"]
    print(f"\nucn scale {args.scale}: {ucn['events']:,} events end to end in {ucn['seconds']:.2f}s = "
          f"{_rate(ucn):,.0f} events/s; worker peak RSS {ucn['worker_peak_rss_mb']:.0f} MB "
          f"(storj worker {results['project_packed']['worker_peak_rss_mb']:.0f} MB)")
    for kind, r in results.get("replay_by_source", {}).items():
        print(f"replay ucn from {kind:<10}: {r['rows']:,} rows, read + published "
              f"{r['read_and_publish_rows_per_s']:,.0f} "
              f"rows/s (publishing alone {r['publish_rows_per_s']:,.0f} rows/s)")
    _print_state(results)
    _print_scaling(results)
    if "live" in results:
        live = results["live"]
        print(f"live: {live['events']:,} single-row messages at {live['rate']:,}/s: produce -> visible in Redis "
              f"p50 {live['p50_ms']:.1f} ms, p99 {live['p99_ms']:.1f} ms, max {live['max_ms']:.1f} ms "
              f"({live['seen']:,} seen)")
    if "follow" in results:
        from bench.follow import describe

        follow = results["follow"]
        print(f"follow: skipped ({follow['skipped']})" if "skipped" in follow else describe(follow))
    for read in results.get("serve", ()):
        print(f"fsp serve, {read['entities_per_request']} entit{'y' if read['entities_per_request'] == 1 else 'ies'} "
              f"per request at {read['target_rate']:,.0f}/s ({read['achieved_rate']:,.0f}/s achieved): "
              f"p50 {read['p50_ms']} ms, p99 {read['p99_ms']} ms, {read['errors']} errors")
    with open(args.out, "w") as handle:
        json.dump(results, handle, indent=2)
    print(f"\nwritten to {args.out}")
