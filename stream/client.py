"""Reading features from Redis: the small client behind `fsp get`, and run completion."""
from __future__ import annotations

import time

import orjson
import redis

from contract import keys


def connect(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def get_features(r: redis.Redis, dataset: str, entity: str, entity_id, prefix: str = "") -> dict | None:
    """The current snapshot of one entity as a dict (field -> value), `_meta` included; None if absent."""
    raw = r.hgetall(keys.feature_key(prefix, dataset, entity, entity_id))
    if not raw:
        return None
    return {k.decode(): orjson.loads(v) for k, v in raw.items()}


def get_sessions(r: redis.Redis, dataset: str, entity_id, prefix: str = "", count: int = 100) -> list[dict]:
    return [orjson.loads(v) for v in r.lrange(keys.sessions_key(prefix, dataset, entity_id), 0, count - 1)]


def entity_ids(r: redis.Redis, dataset: str, entity: str, prefix: str = "") -> list[str]:
    return sorted(m.decode() for m in r.smembers(keys.entities_key(prefix, dataset, entity)))


def all_features(r: redis.Redis, dataset: str, entity: str, prefix: str = "") -> dict[str, dict]:
    ids = entity_ids(r, dataset, entity, prefix)
    pipe = r.pipeline(transaction=False)
    for entity_id in ids:
        pipe.hgetall(keys.feature_key(prefix, dataset, entity, entity_id))
    out = {}
    for entity_id, raw in zip(ids, pipe.execute()):
        if raw:
            out[entity_id] = {k.decode(): orjson.loads(v) for k, v in raw.items()}
    return out


def run_finished(r: redis.Redis, dataset: str, run: str, stage: str, partitions: int, prefix: str = "") -> bool:
    status = r.hkeys(keys.status_key(prefix, dataset))
    done = {s.decode() for s in status}
    return all(f"{run}:{stage}:{p}" in done for p in range(partitions))


SILENT_WORKER_S = 10.0  # a worker that has not beaten for this long is taken for gone


def live_workers(r: redis.Redis, dataset: str, prefix: str = "", now: float | None = None) -> list[str]:
    """Ids of the workers of `dataset` that said they were alive within SILENT_WORKER_S."""
    now = time.time() if now is None else now
    alive = []
    for worker, value in r.hgetall(keys.workers_key(prefix)).items():
        beat = orjson.loads(value)
        if now - beat.get("at", 0) <= SILENT_WORKER_S and dataset in beat.get("datasets", ()):
            alive.append(worker.decode())
    return alive


def workers_alive(r: redis.Redis, dataset: str, prefix: str = ""):
    """An `alive` for wait_finished: false once no worker of the dataset said it was alive for
    SILENT_WORKER_S (contract.keys.workers_key)."""
    return lambda: bool(live_workers(r, dataset, prefix))


def wait_finished(r: redis.Redis, dataset: str, run: str, stage: str, partitions: int, prefix: str = "",
                  timeout: float = 300.0, poll: float = 0.05, alive=None) -> float:
    """Block until every partition of the final stage reported the run's end; return when (monotonic).

    `alive`, when given, is asked about once a second and ends the wait early when false (e.g.
    `workers_alive`)."""
    deadline = time.monotonic() + timeout
    checked = 0.0
    while time.monotonic() < deadline:
        if run_finished(r, dataset, run, stage, partitions, prefix):
            return time.monotonic()
        if alive is not None and time.monotonic() - checked >= 1.0:
            checked = time.monotonic()
            if not alive():
                raise RuntimeError(f"no {dataset} stream worker is running: run {run} is published but not "
                                   "processed")
        time.sleep(poll)
    raise TimeoutError(f"{dataset} run {run} not reflected in Redis after {timeout}s")
