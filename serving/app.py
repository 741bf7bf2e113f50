"""The HTTP feature server: Redis snapshots over HTTP for model servers and dashboards (`fsp serve`).

Why FastAPI rather than the web server Faust hosts: the server must run
without a worker (stateless replicas beside the workers, scaled on their own),
and FastAPI gives request validation (422) and an OpenAPI description from
the same type hints.

Every read of an entity is one Redis command (HGETALL), so a reader never
sees half of an update: the worker's write script replaces all fields and
`_meta` at once. A batch read is one pipeline of such commands (one round
trip). Nothing is cached but the report (GET /v1/{dataset}/report, the page of `fsp report`), which
reads every snapshot of a dataset and is drawn at most once per FSP_REPORT_CACHE_S seconds (60).
"""
from __future__ import annotations

import threading
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Annotated
from urllib.parse import quote

import orjson
import redis
import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

import datasets
from contract import keys
from stream.client import SILENT_WORKER_S, decode_snapshot, stalest, worker_beats

ID_PATTERN = r"^[A-Za-z0-9._:@+-]{1,200}$"  # ids as the stream writes them: hex, integers, emails' hashes
MAX_BATCH = 1_000

EntityId = Annotated[str, Path(pattern=ID_PATTERN, description="the entity's id, as `fsp get` takes it")]
ReportUser = Annotated[str | None, Query(pattern=ID_PATTERN, description="ucn: the report of this one user")]


class OrjsonResponse(JSONResponse):
    """JSON by orjson: the snapshots are decoded and encoded once each (FastAPI's own ORJSONResponse is
    deprecated)."""

    def render(self, content) -> bytes:
        return orjson.dumps(content)


class BatchRequest(BaseModel):
    ids: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(..., min_length=1, max_length=MAX_BATCH)


class Problem(BaseModel):
    detail: str


def _errors(*codes: int) -> dict:
    """The error answers a route can give, for the OpenAPI description."""
    said = {400: "the body is not JSON", 401: "no valid bearer token (FSP_SERVE_TOKEN is set)",
            404: "no such entity (or dataset, entity kind)", 503: "Redis is not answering"}
    return {code: {"model": Problem, "description": said[code]} for code in codes}


class RedisAway(Exception):
    """Redis did not answer: 503 with its one-line reason."""


def _decode(raw: dict, now: float) -> dict:
    """A snapshot hash as {field: value}, with `_meta.age_s`: seconds since a feature last changed
    (`updated_at`)."""
    features = decode_snapshot(raw)
    meta = features.get("_meta")
    if isinstance(meta, dict) and isinstance(meta.get("updated_at"), str):
        written = datetime.fromisoformat(meta["updated_at"]).replace(tzinfo=timezone.utc).timestamp()
        meta["age_s"] = round(max(0.0, now - written), 3)
    return features


class ReportCache:
    """Reports drawn on request and kept for `seconds`: a report reads every snapshot of its dataset, so
    one drawing serves its page, its figures and every reader for that long. One drawing at a time."""

    def __init__(self, redis_url: str, prefix: str, seconds: float, most: int = 32):
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=10.0, socket_connect_timeout=2.0)
        self.prefix, self.seconds, self.most = prefix, seconds, most
        self.lock = threading.Lock()
        self.kept: dict[tuple, tuple[float, object]] = {}  # (dataset, user) -> (drawn at, stream.report.Report)

    def get(self, dataset: str, user: str | None):
        from stream.report import build_report

        with self.lock:
            now = time.monotonic()
            self.kept = {k: v for k, v in self.kept.items() if now - v[0] < self.seconds}
            if (dataset, user) not in self.kept:
                if len(self.kept) >= self.most:
                    self.kept.pop(min(self.kept, key=lambda k: self.kept[k][0]))
                self.kept[(dataset, user)] = (now, build_report(self.redis, dataset, self.prefix, user))
            return self.kept[(dataset, user)][1]


def create_app(redis_url: str, prefix: str = "", token: str | None = None,
               report_seconds: float = 60) -> FastAPI:
    """`token`: when set, every request but /health must carry `Authorization: Bearer <token>`;
    `report_seconds`: how long a drawn report is served before it is drawn again."""
    client = aioredis.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)

    @asynccontextmanager
    async def lifespan(app):
        yield
        await client.aclose()

    app = FastAPI(title="usage features", version="1", default_response_class=OrjsonResponse, lifespan=lifespan,
                  description="Feature snapshots kept current by the stream workers, read from Redis.")

    async def authorised(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is not None and authorization != f"Bearer {token}":
            raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})

    def known(dataset: str, entity: str) -> None:
        if dataset not in datasets.names() or entity not in datasets.get(dataset).snapshot_entities:
            known_kinds = ", ".join(f"{d}/{e}" for d in datasets.names() for e in datasets.get(d).snapshot_entities)
            raise HTTPException(404, f"no entity {entity!r} in dataset {dataset!r}; known: {known_kinds}")

    async def call(awaitable):
        try:
            return await awaitable
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
            raise RedisAway(f"Redis is not answering ({type(exc).__name__}: {exc})") from None

    @app.exception_handler(RedisAway)
    async def redis_away(request: Request, exc: RedisAway):
        return OrjsonResponse({"detail": str(exc)}, status_code=503)

    guarded = [Depends(authorised)]
    reports = ReportCache(redis_url, prefix, report_seconds)

    def report_of(dataset: str, user: str | None):
        from stream.report import NoData, report_datasets

        known = report_datasets()
        if dataset not in known:
            raise HTTPException(404, f"no report of dataset {dataset!r}; known: {', '.join(known)}")
        try:
            return reports.get(dataset, user)
        except NoData as exc:
            raise HTTPException(404, str(exc)) from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise RedisAway(f"Redis is not answering ({type(exc).__name__}: {exc})") from None

    # Before the entity routes, whose {entity} would take "report"; plain `def`: drawing runs in a thread.
    @app.get("/v1/{dataset}/report", dependencies=guarded, responses=_errors(401, 404, 503),
             response_class=HTMLResponse, summary="the report of `fsp report` as an HTML page (figures below it)")
    def report_page(dataset: str, user: ReportUser = None) -> HTMLResponse:
        report = report_of(dataset, user)
        query = f"?user={quote(user)}" if user is not None else ""
        return HTMLResponse(report.html(lambda name: f"report/{name}{query}"))

    @app.get("/v1/{dataset}/report/{figure}", dependencies=guarded, responses=_errors(401, 404, 503),
             response_class=Response, summary="a figure of the report (PNG)")
    def report_figure(dataset: str, figure: str, user: ReportUser = None) -> Response:
        png = report_of(dataset, user).images.get(figure)
        if png is None:
            raise HTTPException(404, f"no figure {figure!r} in the {dataset} report")
        return Response(png, media_type="image/png")

    @app.get("/health", summary="the process is up (no Redis call)")
    async def health() -> dict:
        return {"ok": True}

    @app.get("/ready", dependencies=guarded, responses=_errors(401, 503),
             summary="Redis answers; which workers said they were alive, and how far behind their input they are")
    async def ready() -> dict:
        await call(client.ping())
        workers = worker_beats(await call(client.hgetall(keys.workers_key(prefix))), time.time())
        alive = [w for w, beat in workers.items() if beat["seconds_since_beat"] <= SILENT_WORKER_S]
        for beat in workers.values():
            beat["seconds_since_beat"] = round(beat["seconds_since_beat"], 1)
        lag = [workers[w]["lag"] for w in alive if workers[w]["lag"] is not None]
        return {"redis": "ok", "workers_alive": len(alive), "workers": workers,
                "lag": {"records": sum(x["records"] for x in lag),
                        "event_time_s": max((x["event_time_s"] for x in lag), default=0)}}

    # before the route of one entity: `stale` is no entity id (ids are hex digests and integers)
    @app.get("/v1/{dataset}/{entity}/stale", dependencies=guarded, responses=_errors(401, 404, 503),
             summary="the entities whose features last changed longest ago, stalest first")
    async def stale(dataset: str, entity: str,
                    older_than: Annotated[float, Query(ge=0, allow_inf_nan=False,
                                                       description="seconds since a feature last changed")] = 3600,
                    limit: Annotated[int, Query(ge=1, le=MAX_BATCH)] = 100) -> dict:
        known(dataset, entity)
        rows = await call(stalest(client, dataset, entity, older_than, limit, prefix))
        return {"older_than": older_than, "entities": rows}

    @app.get("/v1/{dataset}/{entity}/{entity_id}", dependencies=guarded, responses=_errors(401, 404, 503),
             summary="one entity's features")
    async def one(dataset: str, entity: str, entity_id: EntityId) -> dict:
        known(dataset, entity)
        raw = await call(client.hgetall(keys.feature_key(prefix, dataset, entity, entity_id)))
        if not raw:
            raise HTTPException(404, f"no {dataset} {entity} {entity_id!r}")
        return {"id": entity_id, "features": _decode(raw, time.time())}

    @app.post("/v1/{dataset}/{entity}", dependencies=guarded, responses=_errors(400, 401, 404, 503),
              summary=f"many entities in one round trip (at most {MAX_BATCH:,})")
    async def batch(dataset: str, entity: str, request: BatchRequest) -> dict:
        known(dataset, entity)
        pipe = client.pipeline(transaction=False)
        for entity_id in request.ids:
            pipe.hgetall(keys.feature_key(prefix, dataset, entity, entity_id))
        results = await call(pipe.execute())
        now = time.time()
        found = {entity_id: _decode(raw, now) for entity_id, raw in zip(request.ids, results) if raw}
        return {"found": found, "missing": [entity_id for entity_id in request.ids if entity_id not in found]}

    @app.get("/v1/{dataset}/{entity}", dependencies=guarded, responses=_errors(401, 404, 503),
             summary="a page of entity ids (SSCAN cursor)")
    async def ids(dataset: str, entity: str, cursor: Annotated[int, Query(ge=0)] = 0,
                  count: Annotated[int, Query(ge=1, le=MAX_BATCH)] = 100) -> dict:
        known(dataset, entity)
        next_cursor, members = await call(client.sscan(keys.entities_key(prefix, dataset, entity), cursor,
                                                       count=count))
        return {"ids": sorted(m.decode() for m in members), "next_cursor": int(next_cursor)}

    @app.get("/v1/{dataset}/user/{entity_id}/sessions", dependencies=guarded, responses=_errors(401, 404, 503),
             summary="a ucn user's latest sessions, newest first")
    async def sessions(dataset: str, entity_id: EntityId,
                       count: Annotated[int, Query(ge=1, le=MAX_BATCH)] = 100) -> dict:
        having = [name for name in datasets.names() if "user" in datasets.get(name).session_lists]
        if dataset not in having:
            raise HTTPException(404, f"no sessions in dataset {dataset!r}; only {', '.join(having)} users have them")
        pipe = client.pipeline(transaction=False)
        pipe.exists(keys.feature_key(prefix, dataset, "user", entity_id))
        pipe.lrange(keys.sessions_key(prefix, dataset, entity_id), 0, count - 1)
        exists, items = await call(pipe.execute())
        if not exists and not items:
            raise HTTPException(404, f"no {dataset} user {entity_id!r}")
        return {"id": entity_id, "sessions": [orjson.loads(item) for item in items]}

    return app
