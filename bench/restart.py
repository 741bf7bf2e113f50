"""`python -m bench.restart [DATASET]`: how long a worker takes to be ready -- started, after a kill -9 of the
one before, and after a clean stop -- on its own embedded broker, with FSP_GROUP_SESSION_TIMEOUT_S as set.

Ready means an empty run (end marks only) went through every stage into Redis (fsp.demo.wait_worker_ready).
A worker that joins the group waits for the group to give up the one before it when that one was killed,
which the group session timeout bounds (stream.runtime.worker.group_session_timeout_s).
"""
from __future__ import annotations

import os
import signal
import tempfile
import time
import uuid

from fsp.demo import start_worker, stop_worker, wait_worker_ready
from fsp.stack import bring_up, start_broker


def main() -> None:
    import argparse

    import datasets

    parser = argparse.ArgumentParser(prog="python -m bench.restart", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default="ucn", choices=datasets.names())
    dataset = parser.parse_args().dataset
    broker = start_broker()
    stack = bring_up(broker.address, os.environ.get("REDIS_URL"))  # the local Redis, else an embedded one
    redis_url = stack.redis_url
    prefix, folder = f"bench-restart-{uuid.uuid4().hex[:6]}:", tempfile.mkdtemp(prefix="bench-restart-")
    state_dir = os.path.join(folder, "state")
    worker = None

    def ready_after(step: str) -> None:
        nonlocal worker
        started = time.perf_counter()
        worker = start_worker(broker.address, redis_url, prefix, 4, dataset, os.path.join(folder, f"{step}.log"),
                              state_dir=state_dir)
        wait_worker_ready(broker.address, redis_url, prefix, 4, dataset, alive=lambda: worker.poll() is None)
        print(f"{step:>16}: ready in {time.perf_counter() - started:.1f} s", flush=True)

    try:
        ready_after("first start")
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        ready_after("after kill -9")
        stop_worker(worker)
        ready_after("after clean stop")
    finally:
        if worker is not None:
            stop_worker(worker)
        stack.stop()
        broker.stop()


if __name__ == "__main__":
    main()
