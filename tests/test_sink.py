"""The Redis sink against a real Redis: versions only grow, session lists take each session once."""
from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
import redis

from stream.runtime import sink as sink_module
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


def _client(redis_url):
    return redis.Redis.from_url(redis_url)


def test_a_large_mixed_flush_writes_every_snapshot_session_list_and_counter(sink, redis_url):
    n = 2 * sink_module.ENTITIES_PER_CALL + 50  # three script calls' worth of snapshots

    async def run():
        for i in range(n):
            sink.snapshot("storj", "user", f"u{i}", 10 + i, {"uploads": i, "ratio": i / 7, "months": {"2023-01": i}})
            sink.sessions("ucn", i % 4, [_session(f"2023-01-01T0{i % 10}:00:00")])
        sink.count("storj", "dead_letters", 3)
        sink.snapshot("storj", "user", "u0", 5, {"uploads": -1})  # older: must not win
        sink.snapshot("storj", "user", "gone", 100, None)
        sink.status("storj", "run-1:user:0", {"at": "2023-01-01T00:00:00"})
        await sink.flush()
        await sink.close()

    asyncio.run(run())
    client = _client(redis_url)
    try:
        for i in (0, 1, n // 2, n - 1):
            stored = client.hgetall(f"{sink.prefix}feat:storj:user:u{i}")
            assert orjson.loads(stored[b"uploads"]) == i
            assert orjson.loads(stored[b"ratio"]) == i / 7  # floats exact: values are stored as sent
            assert orjson.loads(stored[b"_meta"])["version"] == 10 + i
        assert client.scard(f"{sink.prefix}entities:storj:user") == n
        assert client.hget(f"{sink.prefix}status:storj", "dead_letters") == b"3"
        assert client.hexists(f"{sink.prefix}status:storj", "run-1:user:0")
        assert client.llen(f"{sink.prefix}sessions:ucn:user:1") == 3  # the cap
    finally:
        client.close()


def test_a_redis_that_lost_its_scripts_still_takes_writes(sink, redis_url):
    async def run():
        sink.snapshot("storj", "user", "u1", 1, {"uploads": 1})
        await sink.flush()
        _client(redis_url).script_flush()  # as after a restart of Redis
        sink.snapshot("storj", "user", "u1", 2, {"uploads": 2})
        await sink.flush()
        await sink.close()

    asyncio.run(run())
    assert _client(redis_url).hget(f"{sink.prefix}feat:storj:user:u1", "uploads") == b"2"


def test_an_error_reply_keeps_the_writes_queued_and_the_connection_usable(sink, redis_url):
    client = _client(redis_url)
    client.set(f"{sink.prefix}entities:storj:user", "not a set")  # SADD on it fails with WRONGTYPE

    async def run():
        sink.snapshot("storj", "user", "u1", 1, {"uploads": 1})
        sink.count("storj", "dead_letters")
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            await sink.flush()
        assert sink.pending == 2
        client.delete(f"{sink.prefix}entities:storj:user")
        await sink.flush()  # the same connection, its replies read in step
        assert sink.pending == 0
        await sink.close()

    asyncio.run(run())
    assert client.smembers(f"{sink.prefix}entities:storj:user") == {b"u1"}
    assert client.hget(f"{sink.prefix}feat:storj:user:u1", "uploads") == b"1"
    client.close()


def test_a_writer_finds_out_that_redis_lost_what_it_wrote(sink, redis_url):
    from contract import keys

    async def go():
        sink.snapshot("storj", "user", "u1", 1, {"uploads": 1})
        await sink.flush()
        await sink.check()
        assert not sink.lost_data  # its mark is there
        redis.Redis.from_url(redis_url).delete(keys.writers_key(sink.prefix))  # as FLUSHALL or an empty restart
        await sink.flush()  # nothing queued: no round trip, nothing learnt
        assert not sink.lost_data
        await sink.check()
        assert sink.lost_data
        await sink.close()

    asyncio.run(go())
