"""Reading features from Redis: the small client behind `fsp get`, and run completion."""
from __future__ import annotations

import time

import orjson
import redis

from contract import keys


def connect(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def decode_snapshot(raw: dict) -> dict:
    """A snapshot hash as read from Redis (bytes -> JSON bytes) as {field: value}, `_meta` included."""
    return {k.decode(): orjson.loads(v) for k, v in raw.items()}


def get_features(r: redis.Redis, dataset: str, entity: str, entity_id, prefix: str = "") -> dict | None:
    """The current snapshot of one entity as a dict (field -> value), `_meta` included; None if absent."""
    raw = r.hgetall(keys.feature_key(prefix, dataset, entity, entity_id))
    return decode_snapshot(raw) if raw else None


def get_sessions(r: redis.Redis, dataset: str, entity_id, prefix: str = "", count: int = 100) -> list[dict]:
    return [orjson.loads(v) for v in r.lrange(keys.sessions_key(prefix, dataset, entity_id), 0, count - 1)]


async def stalest(r, dataset: str, entity: str, older_than_s: float, limit: int = 100, prefix: str = "",
                  now: float | None = None) -> list[dict]:
    """The entities whose features last changed more than `older_than_s` ago, stalest first (ties by id):
    id, updated_at, written_at, watermark and age_s (seconds since updated_at). `r` is an asyncio client.

    Read from the freshness set (contract.keys.freshness_key), then each one's `_meta`; an entity whose
    snapshot expired but is not swept out of the set yet (stream.runtime.expiry) has none and is skipped."""
    now = time.time() if now is None else now
    fresh = keys.freshness_key(prefix, dataset, entity)
    cutoff = f"({now - older_than_s:.6f}"  # strictly older
    rows: list[dict] = []
    offset = 0
    while len(rows) < limit:
        wanted = limit - len(rows)
        page = await r.zrangebyscore(fresh, "-inf", cutoff, start=offset, num=wanted, withscores=True)
        if not page:
            break
        pipe = r.pipeline(transaction=False)
        for member, _ in page:
            pipe.hget(keys.feature_key(prefix, dataset, entity, member.decode()), "_meta")
        for (member, updated), raw in zip(page, await pipe.execute()):
            if raw is not None:
                meta = orjson.loads(raw)
                rows.append({"id": member.decode(), "updated_at": meta.get("updated_at"),
                             "written_at": meta.get("written_at"), "watermark": meta.get("watermark"),
                             "age_s": round(now - updated, 3)})
        offset += len(page)
        if len(page) < wanted:
            break
    return rows


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
            out[entity_id] = decode_snapshot(raw)
    return out


def run_finished(r: redis.Redis, dataset: str, run: str, stage: str, partitions: int, prefix: str = "") -> bool:
    status = r.hkeys(keys.status_key(prefix, dataset))
    done = {s.decode() for s in status}
    return all(f"{run}:{stage}:{p}" in done for p in range(partitions))


SILENT_WORKER_S = 10.0  # a worker that has not beaten for this long is taken for gone


def live_workers(r: redis.Redis, dataset: str, prefix: str = "", now: float | None = None) -> list[str]:
    """Ids of the workers of `dataset` that said they were alive within SILENT_WORKER_S."""
    beats = worker_beats(r.hgetall(keys.workers_key(prefix)), time.time() if now is None else now)
    return [worker for worker, beat in beats.items()
            if beat["seconds_since_beat"] <= SILENT_WORKER_S and dataset in beat["datasets"]]


def worker_beats(raw: dict, now: float) -> dict[str, dict]:
    """The workers hash (contract.keys.workers_key) as read from Redis: worker id -> its datasets and the
    seconds since it last said it was alive."""
    beats = {}
    for worker, value in raw.items():
        beat = orjson.loads(value)
        beats[worker.decode()] = {"datasets": beat.get("datasets", []), "seconds_since_beat": now - beat.get("at", 0)}
    return beats


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
