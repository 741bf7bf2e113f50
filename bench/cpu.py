"""`python -m bench.cpu DATASET SOURCE [--runs N]`: the worker's CPU for one packed replay, end to end.

Each run is what `fsp bench` measures first (`bench.suite._e2e`): a broker of its own, one worker, the
dump replayed with packed messages and `--wait`; printed per run are the worker's CPU seconds from
the first publish until the run is in Redis (all threads, and its main thread alone: the event loop
where the stages run, whose time bounds the rate), the events per second, and how long the replay
read the source before its first publish and then published. CPU seconds move less than
rates with whatever else shares the machine: compare two checkouts by running this from each in
turn, several times (docs/performance.md).
"""
from __future__ import annotations

import argparse
import json
import uuid

from bench.suite import _e2e
from common.config import Settings
from fsp.stack import Stack, start_redis


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu", description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("source", help="a dump folder (`fsp generate`)")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    settings = Settings.from_env()
    redis = start_redis()
    try:
        for _ in range(args.runs):
            result = _e2e(Stack("", redis.address, []), settings, args.source, 20_000,
                          f"cpu-{uuid.uuid4().hex[:6]}:", args.dataset)
            cpu = result["worker_cpu_s"][0]
            publish_rate = result["publish_rows_per_s"]
            print(json.dumps({"events": result["events"], "worker_cpu_s": cpu,
                              "main_thread_cpu_s": result.get("worker_main_thread_cpu_s"),
                              "us_per_event": round(1e6 * cpu / result["events"], 2) if cpu else None,
                              "events_per_s": round(result["events"] / result["seconds"]),
                              # the rate's window (first publish -> in Redis), the publishing in it (a CSV
                              # folder's spilled runs are merged then), and the read and sort before it
                              "seconds": round(result["seconds"], 2),
                              "publish_s": round(result["events"] / publish_rate, 2) if publish_rate else None,
                              "read_s": round(result["total_with_read_s"] - result["seconds"], 2)}), flush=True)
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
