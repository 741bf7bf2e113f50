"""Keyed state in a changelog-backed Faust table, one write per key per batch.

The table holds each key's state as the bytes last written (JSON), which are
also its changelog record, sent to the partition the key came from so that
recovery puts it back on the worker that owns that partition. Decoded states
are kept beside them (`_live`) for speed, each with the bytes it was decoded
from, and trusted while the store's `generation` stays the same: a change the
store got otherwise (changelog recovery, a rebalance) drops them all.

Beside the logic's state the store keeps fields of its own: the key's
partition (`_p`), how many times its state was written (`_b`) and the log of
what the last write changed beside it (`_x`, see Beside); the stages add a
snapshot version (`ver`), whether a snapshot exists (`snap`) and the records
the key owes until they are delivered (`owed`, stream.logic.owed). Each table
has a codec that says how a state and those fields make one record:

* `StructCodec`: the state is a typed msgspec Struct (the storj and ucn tables);
  the store hands out an `Entry` (the state, and the runtime's fields as
  attributes) and writes both as one JSON object, the runtime's fields under
  their short keys beside the state's, as the dict layout always had them;
* `DICTS`: the state is a dict that holds those fields itself (a table its
  dataset gives no codec, and every key starting `__`: entries beside a
  state, end-of-run marks), read and written with orjson.

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

import logging
from functools import partial
from typing import Any, Generic, TypeVar

import msgspec
import orjson

from contract.wire import MAX_VALUE_BYTES
from stream.runtime.state_backends import DELETED

PARTITION_FIELD = "_p"
BATCH_FIELD = "_b"  # how many times the key's state was written
LOG_FIELD = "_x"  # what the last write changed beside the state (see Beside)
OWED_FIELD = "owed"  # records the key owes until delivered (stream.logic.owed)
BESIDE_PREFIX = "__"  # keys of entries beside a state (and bookkeeping): not entities
log = logging.getLogger(__name__)

# The largest state record written (the broker's limit). A write past it fails inside the unit of work,
# so the record that would grow the state that far is a dead letter and the partition goes on.
MAX_STATE_BYTES = MAX_VALUE_BYTES
# Decoded states kept per store when the state is on disk (in memory every key's is kept). A decoded
# state takes several times its bytes: with 20,000 the worker's peak RSS on storj scale 2 was 804 MB,
# with 4,000 577-612 MB (memory store: 709-772 MB), for ~5-12 % more CPU than the memory store.
LIVE_CACHE_KEYS = 4_000


class StateTooLarge(ValueError):
    """A key's state would pass MAX_STATE_BYTES."""


S = TypeVar("S", bound=msgspec.Struct)


class Entry(Generic[S]):
    """What a typed table holds for a key: the logic's `state`, and beside it the fields the runtime owns,
    written into the same record under their keys of the dict layout (`_p`, `_b`, `_x`, `ver`, `snap`,
    `owed`)."""

    __slots__ = ("state", "partition", "writes", "log", "version", "snapshot", "owed")

    def __init__(self, state: S, partition: int | None = None, writes: int = 0, log: dict | None = None,
                 version: int = 0, snapshot: bool = False, owed: list | None = None):
        self.state = state
        self.partition = partition  # _p: the partition the key's input comes from
        self.writes = writes  # _b: how many times the key's state was written
        self.log = log  # _x: what the last write changed beside the state (see Beside)
        self.version = version  # ver: the key's snapshot version, or a stage's own number (stream.runtime.sink)
        self.snapshot = snapshot  # snap: whether the key has a snapshot in Redis (a stage's)
        self.owed = owed  # owed: records not known delivered yet (stream.logic.owed), None when there are none

    def __repr__(self) -> str:
        return (f"Entry({self.state!r}, partition={self.partition}, writes={self.writes}, log={self.log!r}, "
                f"version={self.version}, snapshot={self.snapshot}, owed={self.owed!r})")


class _RuntimeFields(msgspec.Struct):
    """The runtime's fields of a record, read on their own (the state's keys are skipped)."""

    partition: int | None = msgspec.field(name=PARTITION_FIELD, default=None)
    writes: int = msgspec.field(name=BATCH_FIELD, default=0)
    log: dict[str, Any] | None = msgspec.field(name=LOG_FIELD, default=None)
    version: int = msgspec.field(name="ver", default=0)
    snapshot: bool = msgspec.field(name="snap", default=False)
    owed: list[Any] | None = msgspec.field(name=OWED_FIELD, default=None)


class StructCodec(Generic[S]):
    """Records of a table whose states are `state_type` (a msgspec Struct), handed out as `Entry`s.

    `version`, `snapshot`: whether the table's stage keeps those fields (its records have the keys `ver`,
    `snap`); the others have none, as before. The owed records (`owed`) are written when there are any."""

    def __init__(self, state_type: type[S], version: bool = False, snapshot: bool = False):
        if not state_type.__struct_fields__:
            raise TypeError(f"{state_type.__name__} has no fields: its record would be no JSON object to extend")
        self.state_type = state_type
        self._state = msgspec.json.Decoder(state_type)
        self._runtime = msgspec.json.Decoder(_RuntimeFields)
        self._encoder = msgspec.json.Encoder()
        self._buffer = bytearray()
        self.version, self.snapshot = version, snapshot

    def decode(self, value: bytes) -> Entry[S]:
        fields = self._runtime.decode(value)
        return Entry(self._state.decode(value), fields.partition, fields.writes, fields.log, fields.version,
                     fields.snapshot, fields.owed)

    def encode(self, entry: Entry[S]) -> bytes:
        """The state's JSON object with the runtime's fields added at its end: one record (written in one
        buffer, copied once)."""
        buffer, encoder = self._buffer, self._encoder
        encoder.encode_into(entry.state, buffer)
        buffer[-1:] = b',"_p":%d,"_b":%d' % (entry.partition, entry.writes)  # in place of the state's "}"
        if self.version:
            buffer += b',"ver":%d' % entry.version
        if self.snapshot:
            buffer += b',"snap":true' if entry.snapshot else b',"snap":false'
        if entry.log is not None:
            buffer += b',"_x":'
            encoder.encode_into(entry.log, buffer, -1)
        if entry.owed:
            buffer += b',"owed":'
            encoder.encode_into(entry.owed, buffer, -1)
        buffer += b"}"
        return bytes(buffer)

    @staticmethod
    def fields(entry: Entry[S]) -> Entry[S]:
        return entry


class _DictFields:
    """The runtime's fields of a dict state: kept in the dict itself."""

    __slots__ = ("state",)

    def __init__(self, state: dict):
        self.state = state

    @property
    def partition(self) -> int | None:
        return self.state.get(PARTITION_FIELD)

    @partition.setter
    def partition(self, value: int) -> None:
        self.state[PARTITION_FIELD] = value

    @property
    def writes(self) -> int:
        return self.state.get(BATCH_FIELD, 0)

    @writes.setter
    def writes(self, value: int) -> None:
        self.state[BATCH_FIELD] = value

    @property
    def log(self) -> dict | None:
        return self.state.get(LOG_FIELD)

    @log.setter
    def log(self, value: dict | None) -> None:
        if value is None:
            self.state.pop(LOG_FIELD, None)
        else:
            self.state[LOG_FIELD] = value


class DictCodec:
    """Records of a table whose states are dicts (orjson), the runtime's fields inside them."""

    decode = staticmethod(orjson.loads)
    encode = staticmethod(orjson.dumps)
    fields = _DictFields


DICTS = DictCodec()


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

    def __init__(self, table, send, journal: Journal | None = None, record_size=None, writer=lambda: "w",
                 codec: StructCodec | DictCodec = DICTS):
        self.table = table
        self.codec = codec  # how the table's states make records (`__` keys are always DICTS)
        self.writer = writer  # who writes now: a worker process in one consumer generation (see Beside)
        self.data = table.data  # a stream.runtime.state_backends store
        self.topic = table.changelog_topic.get_topic_name()
        self._send = send  # send(topic, key, value, partition, on_sent)
        self._journal = journal or Journal()
        self._record_size = record_size  # called with the size of every record written (metrics)
        self._live: dict[bytes, tuple[bytes, Any, int]] = {}  # raw key -> (bytes in the store, decoded, partition)
        self._live_limit = LIVE_CACHE_KEYS if self.data.durable else None
        self._live_generation = self.data.generation  # the store's, when `_live` was last known true

    def get(self, partition: int, key: str):
        """The key's state as its codec hands it out (an `Entry` in a typed table, else a dict), or None.

        A decoded state kept from this store's own write or read is handed out again without reading the
        store (a database read, on disk), unless the store changed otherwise since (its generation)."""
        raw = key.encode()
        data = self.data
        if data.generation != self._live_generation:
            self._live.clear()
            self._live_generation = data.generation
        live = self._live.get(raw)
        if live is not None and live[2] == partition:
            state = live[1]
        else:
            value = data.get_in(partition, raw)
            if value is None:
                return None
            state = self._decoded(partition, raw, value, DICTS if key.startswith(BESIDE_PREFIX) else self.codec)
        if self._journal.open:
            self._journal._read.append((self, raw))
        return state

    def _decoded(self, partition: int, raw: bytes, value: bytes, codec) -> Any:
        """The cached state when it was decoded from these bytes (RocksDB hands out new bytes objects for
        the same value, hence the comparison, which is by identity first)."""
        live = self._live.get(raw)
        if live is not None and live[2] == partition and live[0] == value:
            return live[1]
        state = codec.decode(value)
        self._remember(partition, raw, value, state)
        return state

    def _remember(self, partition: int, raw: bytes, value: bytes, state) -> None:
        live = self._live
        live[raw] = (value, state, partition)
        limit = self._live_limit
        if limit is not None and len(live) > limit + limit // 4:
            # states on disk are not all kept in memory: `limit` stay, one in five dropped at a time,
            # spread over every age, the state just kept excepted. Dropping the oldest would drop exactly
            # the keys wanted next when the keys come round in turn, as hourly usage does, live or
            # replayed: with a few more keys than the limit, no state would ever be found decoded.
            for kept in list(live)[::5]:  # (in place: a third of the time of building the dict again)
                if kept != raw:
                    del live[kept]

    def put(self, partition: int, key: str, state) -> None:
        """Write the key's state (what `get` handed out, or a new one: an `Entry` in a typed table)."""
        if key.startswith(BESIDE_PREFIX):  # bookkeeping of the table (end-of-run marks): a dict
            state[PARTITION_FIELD] = partition
            self._write(partition, key, state, DICTS)
            return
        codec = self.codec
        fields = codec.fields(state)
        fields.partition = partition
        writes = fields.writes
        log = fields.log
        if log is not None and log["b"] != writes:  # an earlier write's: nothing beside changed this time
            if log["t"] != self.writer():
                self._write_beside(partition, log)  # that writer's entries may be lost: again, before
            fields.log = log = None
        fields.writes = writes + 1
        self._write(partition, key, state, codec)
        if log is not None:
            self._write_beside(partition, log)

    def _write_beside(self, partition: int, log: dict) -> None:
        for name, value in log["e"].items():
            if value is None:
                self.delete(partition, BESIDE_PREFIX + name)
            else:
                self._write(partition, BESIDE_PREFIX + name, value, DICTS)

    def _write(self, partition: int, key: str, state, codec) -> None:
        raw = key.encode()
        value = codec.encode(state)
        if len(value) > MAX_STATE_BYTES:
            raise StateTooLarge(f"the state of {self.topic} key {key[:100]!r} would be {len(value):,} bytes, "
                                f"over the {MAX_STATE_BYTES:,}-byte limit of a record")
        data = self.data
        if self._journal.open:
            self._journal._written.append((self, partition, raw, data.before_put(partition, raw)))
            self._journal._read.append((self, raw))
        data.put_in(partition, raw, value)
        self._remember(partition, raw, value, state)
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

    def beside(self, partition: int, state) -> Beside:
        """The entries kept beside a key's `state` (what `get` handed out, or the new one the next `put`
        writes: stream.logic.keyvalue.KeyValue), in its changelog."""
        return Beside(self, partition, self.codec.fields(state))

    def items_in_partition(self, partition: int):
        return self.items_in_partitions({partition})

    def items_in_partitions(self, partitions: set[int]):
        """(key, state) of the entities in `partitions`, read from those partitions only."""
        codec = self.codec
        for partition in sorted(partitions):
            for raw, value in self.data.items_in(partition):
                if raw.startswith(b"__"):  # entries beside a state, bookkeeping (end-of-run marks): no entity
                    continue
                try:
                    state = self._decoded(partition, raw, value, codec)
                except (msgspec.DecodeError, orjson.JSONDecodeError) as exc:
                    # a record no version of the state type reads: skipped here (the walk and the keys after
                    # it go on); its key's next batch fails to read it too and becomes a dead letter
                    log.warning("%s key %r: state record not readable (%s); skipped", self.topic,
                                raw[:100].decode("utf-8", "replace"), str(exc)[:200])
                    continue
                if codec.fields(state).partition == partition:
                    yield raw.decode(), state


class Beside:
    """Entries beside one key's state, in the same table: what the pure logic keeps out of the state so that
    the state stays small (applied ids, an operator's nodes, owed records, held rows).

    The entries a batch changes are logged in the state's record (LOG_FIELD) and written after it, in the
    same changelog partition, which Kafka keeps in order: whatever survives a crash is a prefix of those
    writes. So an entry is never ahead of its state, and one the crash lost is still in the state's log,
    which reads first. The next write of the state drops the log once its entries are safe: written by
    this writer before it (else written again first). A log holds one batch's changes, so the state
    grows by what a batch changes, never by history.

    `fields`: the runtime's fields of the key's state (`Entry`, or a view of a dict state's), where the
    log and the write count are.
    """

    __slots__ = ("store", "partition", "fields")

    def __init__(self, store: StateStore, partition: int, fields):
        self.store, self.partition, self.fields = store, partition, fields

    def get(self, name: str):
        log = self.fields.log
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
        fields, writer = self.fields, self.store.writer()
        writes = fields.writes
        log = fields.log
        if log is None or log["b"] != writes:
            if log is not None and log["t"] != writer:
                self.store._write_beside(self.partition, log)
            log = fields.log = {"b": writes, "t": writer, "e": {}}
        return log
