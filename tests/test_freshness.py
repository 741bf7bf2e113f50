"""Freshness and expiry against a real Redis, through the worker's own sink: `updated_at` moves only when a
feature changes, the freshness set lists the stalest entities, a TTL is set and renewed by every write, and
an expired entity is gone from reads, from the entity set and from the stale listing."""
from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import datetime

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import keys
from stream.client import get_features, stalest
from stream.runtime.expiry import ExpirySweeper
from stream.runtime.sink import SnapshotSink

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0  # the sinks' clock in these tests: a fixed epoch, moved by hand


@pytest.fixture
def prefix(redis_url):
    prefix = f"test-fresh-{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


def write(redis_url: str, prefix: str, writes, at: float = T0, ttl_s: dict | None = None) -> None:
    """`writes`: (dataset, entity, id, version, features) snapshots, flushed together at clock `at`."""
    async def run():
        sink = SnapshotSink(redis_url, prefix, ttl_s=ttl_s)
        sink.clock = lambda: at
        for dataset, entity, entity_id, version, features in writes:
            sink.snapshot(dataset, entity, entity_id, version, features, 1, "2021-01-01T00:00:00")
        await sink.flush()
        await sink.close()

    asyncio.run(run())


def meta(redis_url: str, prefix: str, entity_id: str, dataset: str = "storj", entity: str = "user") -> dict:
    return get_features(redis.Redis.from_url(redis_url), dataset, entity, entity_id, prefix)["_meta"]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso + "+00:00").timestamp()


def stale(redis_url: str, prefix: str, older_than: float, limit: int, now: float, entity: str = "user") -> list[dict]:
    async def run():
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await stalest(client, "storj", entity, older_than, limit, prefix, now)
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_a_write_with_unchanged_features_keeps_updated_at_and_moves_version_and_written_at(redis_url, prefix):
    write(redis_url, prefix, [("storj", "user", "u1", 1, {"uploads": 1, "tier": "free"})], at=T0)
    write(redis_url, prefix, [("storj", "user", "u1", 2, {"uploads": 1, "tier": "free"})], at=T0 + 60)
    unchanged = meta(redis_url, prefix, "u1")
    assert unchanged["version"] == 2
    assert epoch(unchanged["updated_at"]) == T0 and epoch(unchanged["written_at"]) == T0 + 60
    write(redis_url, prefix, [("storj", "user", "u1", 3, {"uploads": 2, "tier": "free"})], at=T0 + 120)
    changed = meta(redis_url, prefix, "u1")
    assert epoch(changed["updated_at"]) == epoch(changed["written_at"]) == T0 + 120
    assert changed["watermark"] == "2021-01-01T00:00:00"
    client = redis.Redis.from_url(redis_url)
    assert client.zscore(keys.freshness_key(prefix, "storj", "user"), "u1") == T0 + 120
    assert orjson.loads(client.hget(keys.feature_key(prefix, "storj", "user", "u1"), "uploads")) == 2


def test_a_renamed_feature_with_the_same_value_is_a_change(redis_url, prefix):
    write(redis_url, prefix, [("storj", "user", "u1", 1, {"uploads": 1})], at=T0)
    write(redis_url, prefix, [("storj", "user", "u1", 2, {"upload_count": 1})], at=T0 + 1)
    assert epoch(meta(redis_url, prefix, "u1")["updated_at"]) == T0 + 1


FEATURES = st.sampled_from([{"uploads": 0}, {"uploads": 1}, {"uploads": 1, "tier": "paid"}, {"uploads": 1.0}])


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 6), FEATURES), min_size=1, max_size=8))
def test_updated_at_is_when_the_newest_version_s_features_first_appeared(redis_url, prefix, writes):
    """Writes come in any version order, one flush a second; a stale version changes nothing. updated_at
    (and the freshness score) is the time of the first of the applied writes since which the features
    have been what they are now."""
    entity = f"u{uuid.uuid4().hex[:8]}"
    applied_version, features_now, changed_at = 0, None, None
    for second, (version, features) in enumerate(writes):
        at = T0 + second
        write(redis_url, prefix, [("storj", "user", entity, version, features)], at=at)
        if version > applied_version:
            applied_version = version
            if orjson.dumps(features) != orjson.dumps(features_now):  # 1 and 1.0 are two values
                features_now, changed_at = features, at
    stored = meta(redis_url, prefix, entity)
    assert stored["version"] == applied_version
    assert epoch(stored["updated_at"]) == changed_at
    assert redis.Redis.from_url(redis_url).zscore(keys.freshness_key(prefix, "storj", "user"), entity) == changed_at


def test_a_deleted_snapshot_leaves_the_freshness_set(redis_url, prefix):
    write(redis_url, prefix, [("storj", "operator", "e1", 1, {"nodes": 1})])
    write(redis_url, prefix, [("storj", "operator", "e1", 2, None)])
    client = redis.Redis.from_url(redis_url)
    assert client.zcard(keys.freshness_key(prefix, "storj", "operator")) == 0
    assert not client.exists(keys.feature_key(prefix, "storj", "operator", "e1"))


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ages=st.lists(st.integers(0, 5), min_size=1, max_size=12), gone=st.sets(st.integers(0, 11)),
       older_than=st.integers(0, 5), limit=st.integers(1, 6))
def test_the_stale_listing_is_the_stalest_first_ties_by_id_skipping_expired_ones(redis_url, ages, gone, older_than,
                                                                                  limit):
    """Entity i was last changed ages[i] hours before `now`; those in `gone` lost their hash (expired, not
    swept yet)."""
    prefix = f"test-fresh-{uuid.uuid4().hex[:8]}:"
    now = T0 + 10 * 3600
    try:
        for i, age in enumerate(ages):
            write(redis_url, prefix, [("storj", "user", f"u{i:02d}", 1, {"uploads": i})], at=now - age * 3600)
        client = redis.Redis.from_url(redis_url)
        for i in gone & set(range(len(ages))):
            client.delete(keys.feature_key(prefix, "storj", "user", f"u{i:02d}"))
        listed = stale(redis_url, prefix, older_than * 3600, limit, now)
        expected = sorted(((age, f"u{i:02d}") for i, age in enumerate(ages) if age > older_than and i not in gone),
                          key=lambda row: (-row[0], row[1]))
        assert [(row["age_s"] / 3600, row["id"]) for row in listed] == expected[:limit]
        assert all(epoch(row["updated_at"]) == now - row["age_s"] for row in listed)
    finally:
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)


def test_fsp_stale_lists_the_stalest_with_their_age(redis_url, prefix):
    import subprocess
    import sys

    now = time.time()
    for name, hours in (("recent", 0.5), ("old", 50), ("older", 100)):
        write(redis_url, prefix, [("storj", "user", name, 1, {"uploads": 1})], at=now - hours * 3600)
    env = {**os.environ, "REDIS_URL": redis_url, "FEATURE_PREFIX": prefix}
    done = subprocess.run([sys.executable, "-m", "fsp", "stale", "storj", "--older-than", "1h", "--limit", "5"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:3]] == ["older", "old"]
    days, clock = lines[1].split()[-2:]
    assert days == "4d" and clock.startswith("04:00:0")  # 100 hours and the seconds the command took
    assert lines[-1] == "2 of 2 storj users whose features last changed more than 1h ago, stalest first"


def test_a_ttl_is_set_and_renewed_by_every_write_and_dropped_without_one(redis_url, prefix):
    client = redis.Redis.from_url(redis_url)
    user = keys.feature_key(prefix, "ucn", "user", "7")
    sessions = keys.sessions_key(prefix, "ucn", "7")
    day = {"ucn": 86400}
    write(redis_url, prefix, [("ucn", "user", "7", 1, {"sessions_count": 0})], ttl_s=day)
    assert 86_300_000 < client.pttl(user) <= 86_400_000

    async def add_session():
        sink = SnapshotSink(redis_url, prefix, ttl_s=day)
        sink.sessions("ucn", "7", [{"start": "2015-01-01T00:00:00"}])
        await sink.flush()
        await sink.close()

    asyncio.run(add_session())
    assert 86_300_000 < client.pttl(sessions) <= 86_400_000
    client.pexpire(user, 5_000)
    client.pexpire(sessions, 5_000)  # as if most of the day had gone by
    write(redis_url, prefix, [("ucn", "user", "7", 2, {"sessions_count": 0})], ttl_s=day)  # unchanged: renews too
    assert client.pttl(user) > 86_300_000 and client.pttl(sessions) > 86_300_000
    write(redis_url, prefix, [("storj", "user", "u1", 1, {"uploads": 1})], ttl_s=day)
    assert client.pttl(keys.feature_key(prefix, "storj", "user", "u1")) == -1  # a TTL is per dataset
    write(redis_url, prefix, [("ucn", "user", "7", 3, {"sessions_count": 1})])  # FEATURE_TTL taken away
    assert client.pttl(user) == -1 and client.pttl(sessions) == -1


def test_an_expired_entity_is_gone_from_reads_the_entity_set_and_the_stale_listing(redis_url, prefix):
    """Three users with a 1 s TTL; "kept" is written again with unchanged features (and a longer TTL, as
    after a change of FEATURE_TTL), which renews its TTL but not its updated_at: the sweep must step past
    it, also when it looks at one candidate a tick."""
    from tests.test_serve import _call, _serve

    start = time.time()
    write(redis_url, prefix, [("storj", "user", name, 1, {"uploads": 1}) for name in ("gone1", "gone2", "kept")],
          at=start, ttl_s={"storj": 1.0})
    write(redis_url, prefix, [("storj", "user", "kept", 2, {"uploads": 1})], at=start + 0.1, ttl_s={"storj": 60})
    time.sleep(1.2)
    client = redis.Redis.from_url(redis_url)
    entities = keys.entities_key(prefix, "storj", "user")
    assert client.smembers(entities) == {b"gone1", b"gone2", b"kept"}  # not swept yet
    assert [row["id"] for row in stale(redis_url, prefix, 0, 10, time.time())] == ["kept"]

    async def sweep():
        sweeper_client = aioredis.Redis.from_url(redis_url)
        sweeper = ExpirySweeper(sweeper_client, prefix, {"storj": 1.0}, ["storj"], batch=1)
        removed = [await sweeper.sweep() for _ in range(4)]
        await sweeper_client.aclose()
        return removed

    assert sum(asyncio.run(sweep())) == 2
    assert client.smembers(entities) == {b"kept"}
    assert client.zrange(keys.freshness_key(prefix, "storj", "user"), 0, -1) == [b"kept"]
    proc, base = _serve(redis_url, prefix)
    try:
        assert _call(f"{base}/v1/storj/user/gone1")[0] == 404
        assert _call(f"{base}/v1/storj/user/kept")[0] == 200
        status, body = _call(f"{base}/v1/storj/user/stale?older_than=1&limit=10")
        assert status == 200 and [row["id"] for row in body["entities"]] == ["kept"]
        assert body["entities"][0]["age_s"] >= 1.2
        assert _call(f"{base}/v1/storj/user/stale?older_than=-1")[0] == 422
        assert _call(f"{base}/v1/storj/device/stale")[0] == 404
    finally:
        proc.terminate()
        proc.wait(10)
