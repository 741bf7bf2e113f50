"""Faults injected into the real pipeline; each test ends by comparing Redis with the batch computation."""
from __future__ import annotations

import threading
import time

import pytest

from datasets.storj.generate import generate_storj
from datasets.ucn.generate import generate_ucn

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def _replay_in_background(pipeline, dataset, source, result):
    def run():
        try:
            result["summary"] = pipeline.replay(dataset, source, watch_worker=False, timeout=240)
        except BaseException as exc:  # reported by the test
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_for_line(log_path: str, text: str, process, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_path, "rb") as handle:
            if text.encode() in handle.read():
                return
        assert process.poll() is None, f"the worker exited before saying {text!r}"
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} in {log_path} after {timeout} s")


def _restart_and_finish(pipeline, dataset, folder, thread, result, since):
    """Start a new worker in place of the dead one, let the replay end, compare with the batch result."""
    pipeline.restart_worker(dataset, kill=True)
    thread.join(300)
    assert "error" not in result, result.get("error")
    recovered_in = time.monotonic() - since
    mismatches, counts = pipeline.verify(dataset, folder)
    return recovered_in, mismatches, counts


@pytest.mark.parametrize("seed, kill_after_s", [(21, 0.3), (21, 1.5), (23, 0.8), (24, 1.2)])
def test_worker_killed_mid_replay_loses_nothing_and_counts_nothing_twice(pipeline, tmp_path, seed, kill_after_s):
    """Seed 21 at 1.5 s used to leave a moved node with its old operator: a state write parked in Faust's
    producer buffer could miss the flush before an offset commit (see stream/runtime/store.py)."""
    folder = str(tmp_path / "dump")
    generate_storj(folder, seed=seed, scale=0.25)
    pipeline.wait_ready()
    result: dict = {}
    thread = _replay_in_background(pipeline, "storj", folder, result)
    time.sleep(kill_after_s)
    assert pipeline.worker.poll() is None, "the worker was meant to be killed mid-run"
    recovered_in, mismatches, counts = _restart_and_finish(pipeline, "storj", folder, thread, result,
                                                           time.monotonic())
    assert not mismatches, "\n".join(str(m) for m in mismatches)
    print(f"\nseed {seed}, kill -9 after {kill_after_s}s: {result['summary'].published} events, 0 lost, "
          "0 double counted, "
          f"run done {recovered_in:.1f}s after the kill ({counts})")


@pytest.mark.parametrize("seed, kill_after_s", [(22, 1.0), (25, 2.0)])
def test_ucn_worker_killed_mid_replay_keeps_sessions_exact(pipeline_factory, tmp_path, seed, kill_after_s):
    """Device contributions and closed sessions are deltas: they are owed in state until delivered."""
    pipeline = pipeline_factory("ucn")
    folder = str(tmp_path / "ucn")
    generate_ucn(folder, seed=seed, scale=0.3)
    pipeline.wait_ready("ucn")
    result: dict = {}
    thread = _replay_in_background(pipeline, "ucn", folder, result)
    time.sleep(kill_after_s)
    assert pipeline.worker.poll() is None, "the worker was meant to be killed mid-run"
    recovered_in, mismatches, counts = _restart_and_finish(pipeline, "ucn", folder, thread, result,
                                                           time.monotonic())
    assert [str(m)[:300] for m in mismatches] == []
    print(f"\nucn seed {seed}, kill -9 after {kill_after_s}s: {result['summary'].published} events, 0 lost, "
          f"0 double counted, run done {recovered_in:.1f}s after the kill ({counts})")


def test_ucn_worker_dying_between_state_write_and_records_loses_nothing(pipeline_factory, tmp_path, monkeypatch):
    """The exact crash window of delta records: the state that says "forwarded" is durable, the records
    are not sent. The next worker must send them again (and once only)."""
    from stream.runtime.relay import FAULT_ENV, FAULT_EXIT

    monkeypatch.setenv(FAULT_ENV, "40")  # the first worker dies before relaying its 40th owed batch
    pipeline = pipeline_factory("ucn")
    monkeypatch.delenv(FAULT_ENV)
    folder = str(tmp_path / "ucn")
    generate_ucn(folder, seed=26, scale=0.2)
    pipeline.wait_ready("ucn")
    result: dict = {}
    thread = _replay_in_background(pipeline, "ucn", folder, result)
    assert pipeline.worker.wait(120) == FAULT_EXIT
    recovered_in, mismatches, counts = _restart_and_finish(pipeline, "ucn", folder, thread, result,
                                                           time.monotonic())
    assert [str(m)[:300] for m in mismatches] == []
    print(f"\nucn worker died with owed records unsent: {result['summary'].published} events, 0 lost, "
          f"0 double counted, run done {recovered_in:.1f}s after ({counts})")


def test_worker_rides_out_a_redis_outage_and_writes_complete_snapshots_after(pipeline_factory, tmp_path):
    from fsp.stack import free_port, start_redis

    port = free_port()
    server = start_redis(port)
    try:
        pipeline = pipeline_factory("storj", redis=server.address)
        pipeline.wait_ready()
        server.stop()  # Redis goes away (and comes back empty)
        folder = str(tmp_path / "dump")
        generate_storj(folder, seed=31, scale=0.03)
        summary = pipeline.replay("storj", folder, wait=False)
        time.sleep(4)
        assert pipeline.worker.poll() is None, "the worker must not crash while Redis is away"
        server = start_redis(port)
        from stream.client import connect, wait_finished

        wait_finished(connect(server.address), "storj", summary.run, "user", pipeline.partitions, pipeline.prefix,
                      timeout=60, alive=lambda: pipeline.worker.poll() is None)
        mismatches, _ = pipeline.verify("storj", folder)
        assert [str(m) for m in mismatches] == []
        assert "Redis write failed" in pipeline.worker_log()
    finally:
        server.stop()


def test_rebalance_a_worker_joins_then_one_is_killed_and_versions_never_go_back(pipeline_factory, tmp_path,
                                                                                 monkeypatch):
    """A second worker joins mid-replay (partitions move), then the first is killed while the replay still
    runs: features stay exact, and no snapshot version read from Redis ever decreases (compare-and-set in
    the write script). With Faust's standby replicas the survivor took over partitions whose standby copy
    had lost a stretch of the changelog, and counted their rows again (see worker.STANDBY_REPLICAS).

    The first worker is made slow (a pause after each batch) so that the replay still runs when it dies,
    however fast the machine and however slow the second worker is to start."""
    import signal

    from contract import keys
    from stream.runtime.consumer import SLOW_ENV

    monkeypatch.setenv(SLOW_ENV, "0.2")  # alone, it would take about 5x as long
    pipeline = pipeline_factory("storj")
    monkeypatch.delenv(SLOW_ENV)  # the second worker runs at full speed
    folder = str(tmp_path / "dump")
    generate_storj(folder, seed=41, scale=0.5)
    pipeline.wait_ready()
    r = pipeline.redis()
    seen_versions: dict[str, int] = {}
    went_back = []
    stop = threading.Event()

    def watch_versions():
        while not stop.is_set():
            pattern = keys.feature_key(pipeline.prefix, "storj", "user", "*")
            for key in list(r.scan_iter(match=pattern, count=500))[:300]:
                meta = r.hget(key, "_meta")
                if meta:
                    version = __import__("orjson").loads(meta)["version"]
                    if version < seen_versions.get(key, 0):
                        went_back.append(key)
                    seen_versions[key] = version
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_versions)
    watcher.start()
    result: dict = {}
    started = time.monotonic()
    thread = _replay_in_background(pipeline, "storj", folder, result)
    try:
        time.sleep(0.5)
        extra = pipeline.extra_worker()
        _wait_for_line(pipeline.extra_log, "worker ready", extra)  # the group rebalanced onto two workers
        assert thread.is_alive(), "the replay was meant to be running when the first worker dies"
        pipeline.worker.send_signal(signal.SIGKILL)
        pipeline.worker.wait()
        killed = time.monotonic()
        pipeline.worker = extra  # the survivor takes every partition back
        thread.join(300)
    finally:
        stop.set()
        watcher.join()
    assert "error" not in result, result.get("error")
    mismatches, _ = pipeline.verify("storj", folder)
    assert [str(m) for m in mismatches] == []
    assert went_back == []
    assert len(seen_versions) > 100
    print(f"\nthe first worker died {killed - started:.1f} s into the replay, which ended "
          f"{time.monotonic() - killed:.1f} s later")
