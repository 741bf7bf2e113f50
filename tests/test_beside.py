"""Entries beside a key's state (stream.runtime.store.Beside): a crash keeps a prefix of one changelog
partition's writes; the state is written before the entries a batch changed and logs them, so no entry a
durable state counts on is lost, and none is ahead of its state. On a table of typed states (the log is a
field of the store's Entry) and on one of dict states (the log is a key of the dict)."""
from __future__ import annotations

import pytest

from datasets.storj import logic as storj
from stream.runtime import state_backends
from stream.runtime.driver import RecordPath
from stream.runtime.store import Entry


@pytest.fixture(params=[(kind, table) for kind in (state_backends.MEMORY, state_backends.ROCKSDB)
                        for table in ("storj_operator", "test_dicts")], ids=lambda p: "-".join(p))
def store(request, tmp_path):
    kind, table = request.param
    path = RecordPath(store_kind=kind, state_dir=str(tmp_path / "state"))
    if table == "test_dicts":  # every dataset's states are typed now: a table of dict states of its own
        path.runtime.add_table(table)
    store = path.runtime.store(table)
    writer = {"now": "w1"}
    store.writer = lambda: writer["now"]
    store.writer_is = lambda name: writer.update(now=name)
    return store


def _typed(store) -> bool:
    return store.table.name == "storj_operator"


def _log(store, state):
    """The state's log of what its last write changed beside it (None: none)."""
    return state.log if _typed(store) else state.get("_x")


def _crash(store, partition: int, keep: dict[bytes, bytes | None]) -> None:
    """What a crash leaves: these keys as they were (None: never written); a new writer."""
    for raw, value in keep.items():
        store.data.put_in(partition, raw, value if value is not None else state_backends.DELETED)
    store._live.clear()
    store.writer_is("after-crash")


def _batch(store, partition: int, key: str, changes: dict):
    state = store.get(partition, key) or (Entry(storj.new_operator()) if _typed(store) else {"n": 0})
    beside = store.beside(partition, state)
    for name, value in changes.items():
        if value is None:
            beside.delete(name)
        else:
            beside.put(name, value)
    if _typed(store):
        state.state.node_count += 1
    else:
        state["n"] += 1
    store.put(partition, key, state)
    return state


def test_entries_a_durable_state_counts_on_survive_the_loss_of_their_own_writes(store):
    _batch(store, 0, "k", {"a": {"v": 1}, "gone": {"v": 5}})
    _batch(store, 0, "k", {"a": {"v": 2}, "b": {"v": 9}, "gone": None})
    # the state's second write survived, the entries written after it did not
    _crash(store, 0, {b"__a": store.data.get_in(0, b"__a") and b'{"v":1}', b"__b": None, b"__gone": b'{"v":5}'})
    state = store.get(0, "k")
    beside = store.beside(0, state)
    assert (beside.get("a"), beside.get("b"), beside.get("gone")) == ({"v": 2}, {"v": 9}, None)
    # the next batch writes them again before its own state: then the log can go
    _batch(store, 0, "k", {"c": {"v": 3}})
    assert store.data.get_in(0, b"__b") == b'{"v":9}' and store.data.get_in(0, b"__gone") is None
    _batch(store, 0, "k", {})
    assert _log(store, store.get(0, "k")) is None and b'"_x"' not in store.data.get_in(0, b"k")


def test_a_lost_state_write_takes_its_entries_with_it(store):
    _batch(store, 1, "k", {"a": {"v": 1}})
    durable = store.data.get_in(1, b"k")
    _batch(store, 1, "k", {"a": {"v": 2}})
    _crash(store, 1, {b"k": durable, b"__a": b'{"v":1}'})  # a prefix: the state's write went, so did a's
    assert store.beside(1, store.get(1, "k")).get("a") == {"v": 1}


def test_entries_are_no_entities_of_the_table(store):
    _batch(store, 0, "k", {"a": {"v": 1}})
    assert [key for key, _ in store.items_in_partition(0)] == ["k"]


def test_a_state_keeps_only_its_last_batch_of_changes(store):
    for n in range(50):
        state = _batch(store, 0, "k", {f"e{n}": {"v": n}})
    assert list(_log(store, state)["e"]) == ["e49"]
    assert store.beside(0, state).get("e3") == {"v": 3}
