"""`fsp serve` as a process against a real Redis, snapshots written by the worker's own sink."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import orjson
import pytest

from fsp.stack import free_port, start_redis, wait_for_port
from stream.runtime.sink import SnapshotSink

pytestmark = pytest.mark.integration

USERS = [f"{n:032x}" for n in range(250)]


def _write_snapshots(redis_url: str, prefix: str) -> None:
    async def write():
        sink = SnapshotSink(redis_url, prefix)
        for n, user in enumerate(USERS):
            sink.snapshot("storj", "user", user, 10 + n, {"storage_bytes": n, "tier": "pro"}, n, "2021-01-01T00:00:00")
        sink.snapshot("ucn", "user", "7", 3, {"sessions_count": 2}, 40, "2015-10-21T21:32:22")
        sink.sessions("ucn", "7", [{"start": "2015-10-21T20:00:00", "n": 1}, {"start": "2015-10-21T21:00:00", "n": 2}])
        await sink.flush()
        await sink.close()

    asyncio.run(write())


def _serve(redis_url: str, prefix: str, token: str | None = None):
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "FEATURE_PREFIX": prefix}
    env.pop("FSP_SERVE_TOKEN", None)
    if token:
        env["FSP_SERVE_TOKEN"] = token
    proc = subprocess.Popen([sys.executable, "-m", "fsp", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_port(port, proc=proc)
    return proc, f"http://127.0.0.1:{port}"


def _call(url: str, body=None, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=None if body is None else orjson.dumps(body),
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


@pytest.fixture
def served(redis_url):
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    _write_snapshots(redis_url, prefix)
    proc, base = _serve(redis_url, prefix)
    yield base
    proc.terminate()
    proc.wait(10)
    import redis

    r = redis.Redis.from_url(redis_url)
    for key in r.scan_iter(match=f"{prefix}*", count=1000):
        r.delete(key)


def test_one_entity_with_its_meta_and_the_errors_a_client_can_get(served):
    status, body = _call(f"{served}/v1/storj/user/{USERS[3]}")
    assert status == 200 and body["id"] == USERS[3]
    features = body["features"]
    assert features["storage_bytes"] == 3 and features["tier"] == "pro"
    assert features["_meta"]["version"] == 13 and features["_meta"]["watermark"] == "2021-01-01T00:00:00"
    assert 0 <= features["_meta"]["age_s"] < 60
    assert _call(f"{served}/v1/storj/user/{'f' * 32}")[0] == 404  # well-formed, unknown
    assert _call(f"{served}/v1/storj/user/{'f' * 300}")[0] == 422  # malformed: too long
    assert _call(f"{served}/v1/storj/user/a%20b")[0] == 422  # malformed: a space
    status, body = _call(f"{served}/v1/storj/device/{USERS[0]}")
    assert status == 404 and "storj/operator" in body["detail"]
    assert _call(f"{served}/v1/nope/user/{USERS[0]}")[0] == 404


def test_a_batch_read_returns_every_known_entity_and_names_the_missing(served):
    wanted = USERS[:100] + ["f" * 32]
    status, body = _call(f"{served}/v1/storj/user", {"ids": wanted})
    assert status == 200
    assert sorted(body["found"]) == sorted(USERS[:100]) and body["missing"] == ["f" * 32]
    assert all(body["found"][u]["_meta"]["version"] == 10 + USERS.index(u) for u in USERS[:100])
    assert _call(f"{served}/v1/storj/user", {"ids": ["a"] * 1_001})[0] == 422  # over the batch limit
    assert _call(f"{served}/v1/storj/user", {"ids": []})[0] == 422


def test_entity_ids_page_through_every_entity_once(served):
    cursor, seen = 0, []
    while True:
        status, body = _call(f"{served}/v1/storj/user?cursor={cursor}&count=60")
        assert status == 200
        seen += body["ids"]
        cursor = body["next_cursor"]
        if cursor == 0:
            break
    assert sorted(set(seen)) == sorted(USERS)


def test_a_ucn_users_sessions_newest_first(served):
    status, body = _call(f"{served}/v1/ucn/user/7/sessions")
    assert status == 200 and [s["n"] for s in body["sessions"]] == [2, 1]
    assert _call(f"{served}/v1/ucn/user/8/sessions")[0] == 404
    assert _call(f"{served}/v1/storj/user/{USERS[0]}/sessions")[0] == 404


def test_the_stalest_entities_come_first_ties_by_id(served):
    status, body = _call(f"{served}/v1/storj/user/stale?older_than=0&limit=5")
    assert status == 200 and [row["id"] for row in body["entities"]] == sorted(USERS)[:5]  # one write, one time
    assert all(row["watermark"] == "2021-01-01T00:00:00" and row["age_s"] >= 0 for row in body["entities"])
    assert _call(f"{served}/v1/storj/user/stale?older_than=3600")[1]["entities"] == []  # all written just now
    assert _call(f"{served}/v1/storj/user/stale?limit=0")[0] == 422
    assert _call(f"{served}/v1/storj/user/stale?older_than=nan")[0] == 422
    assert _call(f"{served}/v1/storj/device/stale")[0] == 404


def test_the_openapi_description_lists_every_read(served):
    status, spec = _call(f"{served}/openapi.json")
    assert status == 200
    assert {"/v1/{dataset}/{entity}/{entity_id}", "/v1/{dataset}/{entity}",
            "/v1/{dataset}/user/{entity_id}/sessions", "/ready", "/health"} <= set(spec["paths"])
    assert {"get", "post"} <= set(spec["paths"]["/v1/{dataset}/{entity}"])  # a page of ids; a batch read


def test_a_token_guards_every_read(redis_url):
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    _write_snapshots(redis_url, prefix)
    proc, base = _serve(redis_url, prefix, token="s3cret")
    try:
        assert _call(f"{base}/v1/storj/user/{USERS[0]}")[0] == 401
        assert _call(f"{base}/v1/storj/user/{USERS[0]}", token="wrong")[0] == 401
        assert _call(f"{base}/v1/storj/user/{USERS[0]}", token="s3cret")[0] == 200
        assert _call(f"{base}/health")[0] == 200  # liveness needs no token
    finally:
        proc.terminate()
        proc.wait(10)


def test_redis_away_is_a_503_with_one_line_and_the_server_carries_on():
    server = start_redis()
    prefix = "serve-test:"
    _write_snapshots(server.address, prefix)
    proc, base = _serve(server.address, prefix)
    try:
        assert _call(f"{base}/ready")[1]["redis"] == "ok"
        server.stop()
        for path in (f"/v1/storj/user/{USERS[0]}", "/ready", "/v1/storj/report"):
            status, body = _call(base + path)
            assert status == 503 and body["detail"].startswith("Redis is not answering")
            assert "\n" not in body["detail"]
        assert _call(f"{base}/health")[0] == 200
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
        server.stop()


def test_ready_reports_the_stream_lag_of_the_live_workers(redis_url):
    """Each worker's heartbeat says how far behind its input it is (stream.runtime.metrics.ConsumerLag.summary);
    /ready adds up the records and takes the largest event-time lag of the workers alive."""
    import time

    import redis

    from contract import keys

    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    r = redis.Redis.from_url(redis_url)
    now = time.time()
    r.hset(keys.workers_key(prefix), mapping={
        "a": orjson.dumps({"at": now, "datasets": ["storj"], "lag": {"records": 120, "event_time_s": 30.5}}),
        "b": orjson.dumps({"at": now, "datasets": ["ucn"], "lag": {"records": 7, "event_time_s": 3600.0}}),
        "gone": orjson.dumps({"at": now - 3600, "datasets": ["ucn"], "lag": {"records": 10**6, "event_time_s": 9e9}}),
    })
    proc, base = _serve(redis_url, prefix)
    try:
        status, body = _call(f"{base}/ready")
        assert status == 200 and body["workers_alive"] == 2
        assert body["lag"] == {"records": 127, "event_time_s": 3600.0}
        assert body["workers"]["a"]["lag"] == {"records": 120, "event_time_s": 30.5}
    finally:
        proc.terminate()
        proc.wait(10)
        r.delete(keys.workers_key(prefix))
