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

The table's store is one of stream.runtime.state_backends (memory or
RocksDB), read and written by partition: a key's state lives in the
partition its input came from, which every caller knows.
"""
from __future__ import annotations

from functools import partial

import orjson

from contract.wire import MAX_VALUE_BYTES
from stream.runtime.state_backends import DELETED

PARTITION_FIELD = "_p"
BATCH_FIELD = "_b"  # how many times the key's state was written
LOG_FIELD = "_x"  # what the last write changed beside the state (see Beside)
BESIDE_PREFIX = "__"  # keys of entries beside a state (and bookkeeping): not entities
# The largest state record written (the broker's limit). A write past it fails inside the unit of work,
# so the record that would grow the state that far is a dead letter and the partition goes on.
MAX_STATE_BYTES = MAX_VALUE_BYTES
# Decoded states kept per store when the state is on disk (in memory every key's is kept). A decoded
# state takes several times its bytes: with 20,000 the worker's peak RSS on storj scale 2 was 804 MB,
# with 4,000 577-612 MB (memory store: 709-772 MB), for ~5-12 % more CPU than the memory store.
LIVE_CACHE_KEYS = 4_000


class StateTooLarge(ValueError):
    """A key's state would pass MAX_STATE_BYTES."""


class Journal:
    """What the open unit of work read and wrote, across every store of a worker."""

    def __init__(self):
        self.open = False
        self._read: list = []  # (store, raw key)
        self._written: list = []  # (store, partition, raw key, what the backend needs to undo the write)

    def begin(self) -> None:
        self.open = True
        self._read.clear()
        self._written.clear()

    def commit(self) -> None:
        self.open = False
        self._read.clear()
        self._written.clear()

    def rollback(self) -> None:
        for store, partition, raw, before in reversed(self._written):
            store.data.undo_put(partition, raw, before)
        for store, raw in self._read:
            store._live.pop(raw, None)
        self.commit()


class StateStore:
    """One table's keyed state: decoded on read, encoded once per write, its changelog record sent by us."""

    def __init__(self, table, send, journal: Journal | None = None, record_size=None, writer=lambda: "w"):
        self.table = table
        self.writer = writer  # who writes now: a worker process in one consumer generation (see Beside)
        self.data = table.data  # a stream.runtime.state_backends store
        self.topic = table.changelog_topic.get_topic_name()
        self._send = send  # send(topic, key, value, partition, on_sent)
        self._journal = journal or Journal()
        self._record_size = record_size  # called with the size of every record written (metrics)
        self._live: dict[bytes, tuple[bytes, dict]] = {}  # raw key -> (bytes in the store, decoded state)
        self._live_limit = LIVE_CACHE_KEYS if self.data.durable else None

    def get(self, partition: int, key: str):
        raw = key.encode()
        value = self.data.get_in(partition, raw)
        if value is None:
            return None
        if self._journal.open:
            self._journal._read.append((self, raw))
        return self._decoded(raw, value)

    def _decoded(self, raw: bytes, value: bytes) -> dict:
        """The cached state when it was decoded from these bytes (RocksDB hands out new bytes objects for
        the same value, hence the comparison, which is by identity first)."""
        live = self._live.get(raw)
        if live is not None and live[0] == value:
            return live[1]
        state = orjson.loads(value)
        self._remember(raw, value, state)
        return state

    def _remember(self, raw: bytes, value: bytes, state: dict) -> None:
        live = self._live
        live[raw] = (value, state)
        if self._live_limit is not None and len(live) > self._live_limit:
            del live[next(iter(live))]  # the oldest: states on disk are not all kept in memory

    def put(self, partition: int, key: str, state: dict) -> None:
        state[PARTITION_FIELD] = partition
        log = None
        if not key.startswith(BESIDE_PREFIX):
            writes = state.get(BATCH_FIELD, 0)
            log = state.get(LOG_FIELD)
            if log is not None and log["b"] != writes:  # an earlier write's: nothing beside changed this time
                if log["t"] != self.writer():
                    self._write_beside(partition, log)  # that writer's entries may be lost: again, before
                del state[LOG_FIELD]
                log = None
            state[BATCH_FIELD] = writes + 1
        self._write(partition, key, state)
        if log is not None:
            self._write_beside(partition, log)

    def _write_beside(self, partition: int, log: dict) -> None:
        for name, value in log["e"].items():
            if value is None:
                self.delete(partition, BESIDE_PREFIX + name)
            else:
                self._write(partition, BESIDE_PREFIX + name, value)

    def _write(self, partition: int, key: str, state: dict) -> None:
        raw = key.encode()
        value = orjson.dumps(state)
        if len(value) > MAX_STATE_BYTES:
            raise StateTooLarge(f"the state of {self.topic} key {key[:100]!r} would be {len(value):,} bytes, "
                                f"over the {MAX_STATE_BYTES:,}-byte limit of a record")
        data = self.data
        if self._journal.open:
            self._journal._written.append((self, partition, raw, data.before_put(partition, raw)))
            self._journal._read.append((self, raw))
        data.put_in(partition, raw, value)
        self._remember(raw, value, state)
        if self._record_size is not None:
            self._record_size(len(value))
        on_sent = partial(data.track_delivery, partition, raw, value) if data.durable else None
        self._send(self.topic, key, value, partition, on_sent)

    def delete(self, partition: int, key: str) -> None:
        """Forget a key: a tombstone in the changelog (recovery drops the key too)."""
        raw = key.encode()
        data = self.data
        if data.get_in(partition, raw) is None:
            return
        if self._journal.open:
            self._journal._written.append((self, partition, raw, data.before_put(partition, raw)))
            self._journal._read.append((self, raw))
        data.put_in(partition, raw, DELETED)
        self._live.pop(raw, None)
        on_sent = partial(data.track_delivery, partition, raw, DELETED) if data.durable else None
        self._send(self.topic, key, None, partition, on_sent)

    def beside(self, partition: int, state: dict) -> Beside:
        """The entries kept beside a key's `state` (stream.logic.keyvalue.KeyValue), in its changelog."""
        return Beside(self, partition, state)

    def items_in_partition(self, partition: int):
        return self.items_in_partitions({partition})

    def items_in_partitions(self, partitions: set[int]):
        """(key, state) of the entities in `partitions`, read from those partitions only."""
        for partition in sorted(partitions):
            for raw, value in self.data.items_in(partition):
                if raw.startswith(b"__"):  # entries beside a state, bookkeeping (end-of-run marks): no entity
                    continue
                state = self._decoded(raw, value)
                if state.get(PARTITION_FIELD) == partition:
                    yield raw.decode(), state


class Beside:
    """Entries beside one key's state, in the same table: what the pure logic keeps out of the state so that
    the state stays small (applied ids, an operator's nodes, owed records, held rows).

    The entries a batch changes are logged in the state itself (LOG_FIELD) and written after it, in the
    same changelog partition, which Kafka keeps in order: whatever survives a crash is a prefix of those
    writes. So an entry is never ahead of its state, and one the crash lost is still in the state's log,
    which reads first. The next write of the state drops the log once its entries are safe: written by
    this writer before it (else written again first). A log holds one batch's changes, so the state
    grows by what a batch changes, never by history.
    """

    __slots__ = ("store", "partition", "state")

    def __init__(self, store: StateStore, partition: int, state: dict):
        self.store, self.partition, self.state = store, partition, state

    def get(self, name: str):
        log = self.state.get(LOG_FIELD)
        if log is not None and name in log["e"]:
            return log["e"][name]
        return self.store.get(self.partition, BESIDE_PREFIX + name)

    def put(self, name: str, value) -> None:
        self._log()["e"][name] = value

    def delete(self, name: str) -> None:
        self._log()["e"][name] = None

    def _log(self) -> dict:
        """This batch's log (the one of an earlier write is dropped, its entries written again first unless
        this writer wrote them)."""
        state, writer = self.state, self.store.writer()
        writes = state.get(BATCH_FIELD, 0)
        log = state.get(LOG_FIELD)
        if log is None or log["b"] != writes:
            if log is not None and log["t"] != writer:
                self.store._write_beside(self.partition, log)
            log = state[LOG_FIELD] = {"b": writes, "t": writer, "e": {}}
        return log
