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
    """Every snapshot of an entity kind, by id (in memory: for verify and the demo)."""
    ids = scan_ids(r, dataset, entity, prefix)
    return {entity_id: features for page in snapshot_pages(r, dataset, entity, ids, prefix)
            for entity_id, features in page}


PAGE = 1_000  # entities per pipelined read: one page of snapshots is what a reader holds at a time


def scan_ids(r: redis.Redis, dataset: str, entity: str, prefix: str = "", page: int = PAGE) -> list[str]:
    """Every id of an entity kind, sorted, read by SSCAN in pages (one SMEMBERS of a large set blocks
    Redis for every other client); SSCAN may list an id twice while Redis resizes the set, hence the set."""
    key = keys.entities_key(prefix, dataset, entity)
    ids, cursor = set(), 0
    while True:
        cursor, members = r.sscan(key, cursor, count=page)
        ids.update(member.decode() for member in members)
        if int(cursor) == 0:
            return sorted(ids)


def snapshot_pages(r: redis.Redis, dataset: str, entity: str, ids: list[str], prefix: str = "",
                   fields: list[str] | None = None, page: int = PAGE):
    """The snapshots of `ids`, a page of [(id, {field: value})] at a time, each page one pipelined round
    trip of HGETALL (HMGET of `fields` when given): a reader holds one page, not the store. An id without
    a snapshot (deleted since, or never there) is left out."""
    for start in range(0, len(ids), page):
        chunk = ids[start:start + page]
        pipe = r.pipeline(transaction=False)
        for entity_id in chunk:
            key = keys.feature_key(prefix, dataset, entity, entity_id)
            pipe.hmget(key, fields) if fields else pipe.hgetall(key)
        out = []
        for entity_id, raw in zip(chunk, pipe.execute()):
            if fields:
                raw = {name.encode(): value for name, value in zip(fields, raw) if value is not None}
            if raw:
                out.append((entity_id, decode_snapshot(raw)))
        yield out


def session_pages(r: redis.Redis, dataset: str, ids: list[str], prefix: str = "", page: int = PAGE):
    """The closed sessions of the users `ids` (SPEC §3: the newest SESSIONS_CAP each), a page of users
    at a time as [(user id, session record)], newest first per user."""
    for start in range(0, len(ids), page):
        chunk = ids[start:start + page]
        pipe = r.pipeline(transaction=False)
        for entity_id in chunk:
            pipe.lrange(keys.sessions_key(prefix, dataset, entity_id), 0, -1)
        yield [(entity_id, orjson.loads(item)) for entity_id, items in zip(chunk, pipe.execute()) for item in items]


def table_pages(r: redis.Redis, dataset: str, entity: str, ids: list[str] | None = None, prefix: str = "",
                explode: bool = False, page: int = PAGE):
    """(the table of `dataset`/`entity` as stream.feature_table shapes it, its rows a page at a time).

    `entity` is a snapshot kind or "sessions" (ucn); `ids` a subset (default: every entity). With
    `explode`, the map features are read once first (HMGET, every entity) for the keys that become
    columns: a table has one set of columns, known before its first row."""
    from stream.feature_table import SESSIONS, map_fields, table

    source = "user" if entity == SESSIONS else entity
    ids = scan_ids(r, dataset, source, prefix, page) if ids is None else list(ids)
    maps = map_fields(dataset, entity) if explode else []
    keys_seen: dict[str, set] = {name: set() for name in maps}
    if maps:
        for chunk in snapshot_pages(r, dataset, entity, ids, prefix, fields=maps, page=page):
            for _, features in chunk:
                for name, value in features.items():
                    keys_seen[name].update(value or ())
    shape = table(dataset, entity, explode, keys_seen)
    pages = (session_pages(r, dataset, ids, prefix, page) if entity == SESSIONS
             else snapshot_pages(r, dataset, entity, ids, prefix, page=page))
    return shape, ([shape.row(entity_id, features) for entity_id, features in chunk] for chunk in pages)


def features_frame(r: redis.Redis, dataset: str, entity: str, prefix: str = "", ids: list[str] | None = None,
                   explode: bool = False):
    """Every snapshot of an entity kind (or ucn's "sessions") as a pandas DataFrame, a row per entity
    (session), typed columns as `fsp export` writes them (stream.feature_table): ints as nullable Int64,
    times as datetime64, maps as dicts, lists as lists; `explode` spreads maps and vectors over columns."""
    from stream.feature_table import frame

    shape, pages = table_pages(r, dataset, entity, ids, prefix, explode)
    return frame(shape, [row for page in pages for row in page])


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
        beats[worker.decode()] = {"datasets": beat.get("datasets", []), "seconds_since_beat": now - beat.get("at", 0),
                                  "lag": beat.get("lag")}
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
