"""StateStore on both of its stores (Faust's memory store, RocksDB through rocksdict), in one process:
reads and writes by partition, undo of a unit of work, the per-partition walk, and, on disk, that a
write reaches the database (with its changelog offset) only once its changelog record is delivered."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from types import SimpleNamespace

import orjson
import pytest
from faust.types import TP

from stream.runtime.driver import RecordPath
from stream.runtime.state_backends import MEMORY, ROCKSDB

TABLE = "test_dicts"  # a table of dict states, added here; typed states (their codec): tests/test_typed_state.py


def run(coro):
    return asyncio.run(coro)


def _path(kind, tmp_path, **kwargs) -> RecordPath:
    path = RecordPath(partitions=4, store_kind=kind, state_dir=str(tmp_path / "state"), **kwargs)
    path.runtime.add_table(TABLE)  # every dataset's states are typed now
    return path


async def _put_and_send(path: RecordPath, partition: int, key: str, state: dict) -> None:
    path.runtime.store(TABLE).put(partition, key, state)
    await path.runtime._drain_sends()


async def _deliveries_settled() -> None:
    """Delivery callbacks run on the loop, and settle the writes in a callback of their own."""
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.mark.parametrize("kind", [MEMORY, ROCKSDB])
def test_a_state_written_is_read_back_from_its_partition(kind, tmp_path):
    async def scenario():
        path = _path(kind, tmp_path)
        store = path.runtime.store(TABLE)
        await _put_and_send(path, 2, "u1", {"n": 1})
        assert store.get(2, "u1") == {"n": 1, "_p": 2, "_b": 1}
        assert store.get(2, "nobody") is None
        assert store.get(2, "u1") is store.get(2, "u1")  # decoded once
        sent = [s for s in path.app.producer.sent if s[0] == store.topic]
        assert sent == [(store.topic, b"u1", orjson.dumps({"n": 1, "_p": 2, "_b": 1}), 2)]
        if kind == ROCKSDB:
            assert store.get(1, "u1") is None  # each partition has a database of its own

    run(scenario())


@pytest.mark.parametrize("kind", [MEMORY, ROCKSDB])
def test_rollback_puts_back_the_bytes_of_before_and_forgets_the_changed_decoded_state(kind, tmp_path):
    async def scenario():
        path = _path(kind, tmp_path)
        runtime, store = path.runtime, path.runtime.store(TABLE)
        await _put_and_send(path, 1, "u1", {"n": 1})
        savepoint = runtime.begin()
        state = store.get(1, "u1")
        state["n"] = 99  # changed in place by the work that then fails
        store.put(1, "u1", state)
        store.put(1, "u2", {"new": True})
        runtime.rollback(savepoint)
        assert store.get(1, "u1") == {"n": 1, "_p": 1, "_b": 1}
        assert store.get(1, "u2") is None
        assert [key for key, _ in store.items_in_partition(1)] == ["u1"]
        assert runtime._pending_sends == []  # the rolled-back writes' records are not sent

    run(scenario())


@pytest.mark.parametrize("kind", [MEMORY, ROCKSDB])
def test_the_walk_of_some_partitions_reads_those_only_and_skips_bookkeeping(kind, tmp_path):
    async def scenario():
        path = _path(kind, tmp_path)
        store = path.runtime.store(TABLE)
        for partition in range(4):
            for n in range(3):
                await _put_and_send(path, partition, f"u{partition}-{n}", {"n": n})
        await _put_and_send(path, 1, "__marks__:user:1", {"r1": ["a"]})
        walked = dict(store.items_in_partitions({1, 3}))
        assert sorted(walked) == ["u1-0", "u1-1", "u1-2", "u3-0", "u3-1", "u3-2"]
        assert walked["u3-2"] == {"n": 2, "_p": 3, "_b": 1}

    run(scenario())


def test_memory_walk_covers_keys_recovered_from_the_changelog(tmp_path):
    """Faust fills the memory store itself during recovery; the per-partition index must see those keys."""
    path = _path(MEMORY, tmp_path)
    store = path.runtime.store(TABLE)

    def changelog_record(partition, key, value):
        return SimpleNamespace(key=key, value=value, message=SimpleNamespace(partition=partition, value=value))

    store.data.apply_changelog_batch([changelog_record(2, b"r1", orjson.dumps({"n": 5, "_p": 2})),
                                      changelog_record(3, b"r2", orjson.dumps({"n": 6, "_p": 3}))],
                                     to_key=lambda k: k, to_value=lambda v: v)
    assert dict(store.items_in_partition(2)) == {"r1": {"n": 5, "_p": 2}}
    assert store.get(3, "r2") == {"n": 6, "_p": 3}


@pytest.mark.parametrize("kind", [MEMORY, ROCKSDB])
def test_a_state_recovery_changed_is_read_again_not_served_from_the_decoded_ones_kept(kind, tmp_path):
    """Decoded states are handed out again without reading the store only while nothing but this store's
    own writes changed it: recovery from the changelog (here a record another worker wrote) and a
    rebalance make it read the store again."""
    async def scenario():
        path = _path(kind, tmp_path)
        store = path.runtime.store(TABLE)
        await _put_and_send(path, 2, "u1", {"n": 1})
        await _deliveries_settled()
        assert store.get(2, "u1")["n"] == 1
        value = orjson.dumps({"n": 7, "_p": 2, "_b": 5})
        message = SimpleNamespace(partition=2, key=b"u1", value=value, offset=9, tp=TP(store.topic, 2))
        store.data.apply_changelog_batch([SimpleNamespace(key=b"u1", value=value, message=message)],
                                         to_key=lambda k: k, to_value=lambda v: v)
        assert store.get(2, "u1")["n"] == 7
        state = store.get(2, "u1")
        state["n"] = 8  # a change in place that no write followed (what a failed unit of work leaves)
        await store.data.on_rebalance(set(), set(), set())
        assert store.get(2, "u1")["n"] == 7  # read again from the store's bytes
        if kind == ROCKSDB:  # each partition a database of its own: another partition's key of that name
            assert store.get(1, "u1") is None  # is not the one kept

    run(scenario())


def _disk(store, partition: int, raw: bytes):
    return store.data._db_for_partition(partition).get(raw)


def _disk_offset(store, partition: int):
    return store.data.persisted_offset(SimpleNamespace(partition=partition))


def test_on_disk_a_write_waits_for_its_changelog_delivery_then_lands_with_its_offset(tmp_path):
    async def scenario():
        path = _path(ROCKSDB, tmp_path)
        store, producer = path.runtime.store(TABLE), path.app.producer
        producer.hold = True
        await _put_and_send(path, 0, "u1", {"n": 1})
        await _put_and_send(path, 0, "u1", {"n": 2})
        assert store.get(0, "u1")["n"] == 2  # readable at once
        assert _disk(store, 0, b"u1") is None and _disk_offset(store, 0) is None  # not delivered: not on disk
        producer.deliver()
        await _deliveries_settled()
        assert orjson.loads(_disk(store, 0, b"u1"))["n"] == 2
        assert _disk_offset(store, 0) == 1  # the changelog offset of the last write delivered
        assert store.data._unsettled[0] == {}

    run(scenario())


async def _on_disk_then_held(path: RecordPath, key: str, state: dict):
    """Write `key` to partition 0 and let it reach the database; deliveries are held from then on."""
    await _put_and_send(path, 0, key, state)
    await _deliveries_settled()
    path.app.producer.hold = True
    return path.runtime.store(TABLE), path.app.producer


def test_on_disk_writes_of_one_key_delivered_together_leave_the_last_one(tmp_path):
    async def scenario():
        path = _path(ROCKSDB, tmp_path)
        store, producer = await _on_disk_then_held(path, "kept", {"n": 0})
        await _put_and_send(path, 0, "gone", {"n": 1})
        store.delete(0, "gone")
        store.delete(0, "kept")
        await _put_and_send(path, 0, "kept", {"n": 2})
        await _put_and_send(path, 0, "kept", {"n": 3})
        producer.deliver()
        await _deliveries_settled()
        assert _disk(store, 0, b"gone") is None
        assert orjson.loads(_disk(store, 0, b"kept"))["n"] == 3
        assert _disk_offset(store, 0) == 5
        assert store.data._unsettled[0] == {}

    run(scenario())


def test_on_disk_a_write_whose_record_failed_is_never_marked_persisted(tmp_path):
    async def scenario():
        path = _path(ROCKSDB, tmp_path)
        store, producer = await _on_disk_then_held(path, "u1", {"n": 1})
        await _put_and_send(path, 0, "u1", {"n": 2})
        await _put_and_send(path, 0, "u2", {"n": 3})
        producer.deliver(fail=True)
        await _deliveries_settled()
        assert orjson.loads(_disk(store, 0, b"u1"))["n"] == 1
        assert _disk(store, 0, b"u2") is None
        assert _disk_offset(store, 0) == 0

    run(scenario())


def test_on_disk_a_new_worker_on_the_same_directory_finds_the_state_and_its_offset(tmp_path):
    async def first_worker():
        path = _path(ROCKSDB, tmp_path)
        for n in range(5):
            await _put_and_send(path, 3, f"u{n}", {"n": n})
        await _deliveries_settled()
        for table in path.runtime.tables.values():  # the worker stops: its databases close
            for db in table.data._dbs.values():
                db.close()
            table.data._dbs.clear()

    run(first_worker())
    store = _path(ROCKSDB, tmp_path).runtime.store(TABLE)
    assert store.get(3, "u4") == {"n": 4, "_p": 3, "_b": 1}
    assert _disk_offset(store, 3) == 4  # recovery reads the changelog from there on


def write_then_die(state_dir: str, before_dying: str) -> None:
    """In a process of its own (see the test below): 40 states written to partition 0 and delivered, then
    `before_dying`, then the process ends at once, as under SIGKILL (no close, no flush)."""
    from pathlib import Path

    from stream.runtime.state_backends import FLUSH_IDLE_S

    async def scenario():
        path = _path(ROCKSDB, Path(state_dir))
        store = path.runtime.store(TABLE)
        for n in range(40):
            await _put_and_send(path, 0, f"u{n}", {"n": n})
        await _deliveries_settled()
        if before_dying == "pause":
            await asyncio.sleep(FLUSH_IDLE_S * 10)
        elif before_dying == "faust-offset":  # what Faust's recovery writes after a changelog batch
            store.data.set_persisted_offset(TP(store.topic, 0), 99)
        os._exit(0)

    run(scenario())


@pytest.mark.parametrize("before_dying, offset_after", [("nothing", None), ("pause", 39), ("faust-offset", 99)])
def test_on_disk_a_killed_worker_leaves_no_offset_past_the_states_it_kept(tmp_path, before_dying, offset_after):
    """States go to RocksDB without its write-ahead log: killed at once, the worker loses them, and their
    offset with them (the changelog still has both); once writes pause they are flushed; and an offset
    Faust writes with the log puts the states it claims on disk first."""
    code = f"from tests.test_state_store import write_then_die; write_then_die({str(tmp_path)!r}, {before_dying!r})"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))
    store = _path(ROCKSDB, tmp_path).runtime.store(TABLE)  # a new worker on that directory
    assert _disk_offset(store, 0) == offset_after
    kept = [n for n in range(40) if _disk(store, 0, f"u{n}".encode()) is not None]
    assert kept == ([] if offset_after is None else list(range(40)))


def test_the_largest_state_record_of_each_table_is_a_metric(tmp_path):
    async def scenario():
        path = _path(MEMORY, tmp_path)
        await _put_and_send(path, 0, "small", {"n": 1})
        await _put_and_send(path, 0, "large", {"n": "x" * 5000})
        await _put_and_send(path, 0, "small2", {"n": 2})
        metrics = path.runtime.metrics
        assert metrics.state_record_max_bytes.labels(TABLE)._value.get() == len(
            orjson.dumps({"n": "x" * 5000, "_p": 0, "_b": 1}))
        histogram = {s.labels["le"]: s.value for m in metrics.state_record_bytes.collect() for s in m.samples
                     if s.name.endswith("_bucket") and s.labels["table"] == TABLE}
        assert histogram["256.0"] == 2 and histogram["16384.0"] == 3

    run(scenario())


def test_on_disk_the_decoded_states_kept_stay_bounded_and_every_key_still_reads_back(tmp_path, monkeypatch):
    """Decoded states are kept for store.LIVE_CACHE_KEYS keys, a fifth dropped at a time; a key whose
    decoded state was dropped is read and decoded again from its bytes."""
    from stream.runtime import store as store_module

    monkeypatch.setattr(store_module, "LIVE_CACHE_KEYS", 40)

    async def scenario():
        path = _path(ROCKSDB, tmp_path)
        store = path.runtime.store(TABLE)
        sizes = []
        for n in range(500):
            await _put_and_send(path, n % 4, f"u{n}", {"n": n})
            sizes.append(len(store._live))
        await _deliveries_settled()
        assert max(sizes) == 50 and 40 <= min(sizes[100:]) <= 41  # a fifth of 51 dropped
        assert f"u{499}".encode() in store._live  # the state just written is kept
        assert [store.get(n % 4, f"u{n}")["n"] for n in range(500)] == list(range(500))

    run(scenario())


def test_on_disk_keys_that_come_round_in_turn_mostly_find_their_state_decoded(tmp_path, monkeypatch):
    """Hourly usage visits every key in turn. With a few more keys than the decoded states kept, dropping
    the oldest would drop exactly the next key every time; the drops are spread, so most are found."""
    from stream.runtime import store as store_module

    monkeypatch.setattr(store_module, "LIVE_CACHE_KEYS", 40)

    async def scenario():
        path = _path(ROCKSDB, tmp_path)
        store = path.runtime.store(TABLE)
        found = 0
        for turn in range(10):
            for n in range(60):  # 60 keys, 40 kept (50 at most)
                key = f"u{n}"
                if turn:
                    found += key.encode() in store._live
                    state = store.get(n % 4, key)
                    assert state["turn"] == turn - 1
                await _put_and_send(path, n % 4, key, {"turn": turn})
        await _deliveries_settled()
        assert found / (9 * 60) > 0.5

    run(scenario())
