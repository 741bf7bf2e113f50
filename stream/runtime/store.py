"""Keyed state in a changelog-backed Faust table, one write per key per batch.

The table holds each key's state as the bytes last written (orjson), which are
also its changelog record, sent to the partition the key came from so that
recovery puts it back on the worker that owns that partition. Decoded states
are kept beside them (`_live`) for speed, each with the bytes it was decoded
from: a value the table got otherwise (changelog recovery after a rebalance)
is decoded again.

Writes can be undone: while a `Journal` is open, every key read or written is
noted, and `Journal.rollback` puts back the bytes of before and drops the
decoded states, which the failed work may have changed in place. That is what
lets the stage runner take back a batch that failed half-way and apply its
records one by one (stream.runtime.stages).

The record goes through `send` (the runtime's producer queue), not Faust's
`send_changelog`: that one parks it in Faust's producer buffer, which the
flush before an offset commit may give up on after 0.1 s, so an input offset
could be committed while its state write was still unsent; a crash then lost
the write for good.
"""
from __future__ import annotations

import orjson

from contract.wire import MAX_VALUE_BYTES

PARTITION_FIELD = "_p"
# The largest state record written (the broker's limit). A write past it fails inside the unit of work,
# so the record that would grow the state that far is a dead letter and the partition goes on.
MAX_STATE_BYTES = MAX_VALUE_BYTES


class StateTooLarge(ValueError):
    """A key's state would pass MAX_STATE_BYTES."""


class Journal:
    """What the open unit of work read and wrote, across every store of a worker."""

    def __init__(self):
        self.open = False
        self._read: list = []  # (store, raw key)
        self._written: list = []  # (store, raw key, bytes before or None)

    def begin(self) -> None:
        self.open = True
        self._read.clear()
        self._written.clear()

    def commit(self) -> None:
        self.open = False
        self._read.clear()
        self._written.clear()

    def rollback(self) -> None:
        for store, raw, before in reversed(self._written):
            store._restore(raw, before)
        for store, raw in self._read:
            store._live.pop(raw, None)
        self.commit()


class StateStore:
    def __init__(self, table, send, journal: Journal | None = None):
        self.table = table
        self.topic = table.changelog_topic.get_topic_name()
        self._send = send  # send(topic, key, value, partition)
        self._journal = journal or Journal()
        self._live: dict[bytes, tuple[bytes, dict]] = {}  # raw key -> (bytes in the table, decoded state)

    def get(self, key: str):
        raw = key.encode()
        value = self.table.data.get(raw)
        if value is None:
            return None
        if self._journal.open:
            self._journal._read.append((self, raw))
        live = self._live.get(raw)
        if live is not None and live[0] is value:
            return live[1]
        state = orjson.loads(value)
        self._live[raw] = (value, state)
        return state

    def put(self, partition: int, key: str, state: dict) -> None:
        state[PARTITION_FIELD] = partition
        raw = key.encode()
        value = orjson.dumps(state)
        if len(value) > MAX_STATE_BYTES:
            raise StateTooLarge(f"the state of {self.topic} key {key[:100]!r} would be {len(value):,} bytes, "
                                f"over the {MAX_STATE_BYTES:,}-byte limit of a record")
        data = self.table.data
        if self._journal.open:
            self._journal._written.append((self, raw, data.get(raw)))
            self._journal._read.append((self, raw))
        data[raw] = value
        self._live[raw] = (value, state)
        self._send(self.topic, key, value, partition)

    def delete(self, partition: int, key: str) -> None:
        """Forget a key: a tombstone in the changelog (recovery drops the key)."""
        raw = key.encode()
        data = self.table.data
        before = data.get(raw)
        if before is None:
            return
        if self._journal.open:
            self._journal._written.append((self, raw, before))
            self._journal._read.append((self, raw))
        data.pop(raw, None)
        self._live.pop(raw, None)
        self._send(self.topic, key, None, partition)

    def view(self, partition: int) -> PartitionView:
        return PartitionView(self, partition)

    def _restore(self, raw: bytes, before: bytes | None) -> None:
        if before is None:
            self.table.data.pop(raw, None)
        else:
            self.table.data[raw] = before

    def items_in_partition(self, partition: int):
        return self.items_in_partitions({partition})

    def items_in_partitions(self, partitions: set[int]):
        for raw in list(self.table.data.keys()):
            key = raw.decode() if isinstance(raw, (bytes, bytearray)) else str(raw)
            if key.startswith("__"):  # bookkeeping (end-of-run marks), not an entity
                continue
            state = self.get(key)
            if state is not None and state.get(PARTITION_FIELD) in partitions:
                yield key, state


class PartitionView:
    """A store seen from one partition: what the pure logic's de-duplicators read and write
    (`stream.logic.dedup.KeyValue`); their keys live in the partition of the entity they belong to."""

    __slots__ = ("store", "partition")

    def __init__(self, store: StateStore, partition: int):
        self.store, self.partition = store, partition

    def get(self, key: str):
        return self.store.get(key)

    def put(self, key: str, value: dict) -> None:
        self.store.put(self.partition, key, value)

    def delete(self, key: str) -> None:
        self.store.delete(self.partition, key)
