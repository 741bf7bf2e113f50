"""The Redis sink against a real Redis: versions only grow, session lists take each session once."""
from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
import redis

from stream.runtime.sink import SnapshotSink

pytestmark = pytest.mark.integration


@pytest.fixture
def sink(redis_url):
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    sink = SnapshotSink(redis_url, prefix, sessions_cap=3)
    yield sink
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


def _session(start: str) -> dict:
    return {"user": 1, "start": start, "end": start, "events": 3}


def _sessions(sink, redis_url) -> list[str]:
    client = redis.Redis.from_url(redis_url)
    try:
        return [orjson.loads(v)["start"] for v in client.lrange(f"{sink.prefix}sessions:ucn:user:1", 0, -1)]
    finally:
        client.close()


def test_sessions_sent_again_after_a_crash_are_not_listed_twice(sink, redis_url):
    async def run():
        sink.sessions("ucn", 1, [_session("2023-01-01T00:00:00"), _session("2023-01-01T01:00:00")])
        await sink.flush()
        # a redelivery / re-send repeats the last ones, with one new session after them
        sink.sessions("ucn", 1, [_session("2023-01-01T01:00:00"), _session("2023-01-01T01:30:00.500000")])
        await sink.flush()
        sink.sessions("ucn", 1, [_session("2023-01-01T00:00:00")])
        await sink.flush()
        await sink.close()

    asyncio.run(run())
    assert _sessions(sink, redis_url) == ["2023-01-01T01:30:00.500000", "2023-01-01T01:00:00",
                                          "2023-01-01T00:00:00"]


def test_session_list_keeps_the_newest_up_to_the_cap(sink, redis_url):
    async def run():
        sink.sessions("ucn", 1, [_session(f"2023-01-0{d}T00:00:00") for d in range(1, 6)])
        await sink.flush()
        await sink.close()

    asyncio.run(run())
    assert _sessions(sink, redis_url) == ["2023-01-05T00:00:00", "2023-01-04T00:00:00", "2023-01-03T00:00:00"]


def test_an_older_snapshot_version_never_overwrites_a_newer_one(sink, redis_url):
    async def run():
        sink.snapshot("storj", "user", "u1", 5, {"uploads": 2})
        sink.snapshot("storj", "user", "u1", 4, {"uploads": 1})
        await sink.flush()
        await sink.close()

    asyncio.run(run())
    client = redis.Redis.from_url(redis_url)
    try:
        stored = client.hgetall(f"{sink.prefix}feat:storj:user:u1")
    finally:
        client.close()
    assert orjson.loads(stored[b"uploads"]) == 2
    assert orjson.loads(stored[b"_meta"])["version"] == 5
