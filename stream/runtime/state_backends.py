"""Where the worker's keyed state lives: Faust's memory or RocksDB store, read and written by partition.

`StateStore` (stream.runtime.store) works on either through the same few
methods: `get_in`, `put_in`, `before_put`/`undo_put` (the unit of work's
undo), `items_in` (one partition's keys, without touching the others) and
`track_delivery` (called with the future of each state write's changelog
record).

Both are Faust stores, so Faust still recovers them from the changelog on
start and rebalance. The project writes without Faust's stream API (there is
no current event, which Faust's own `_set` requires), so writes go to the
partition given by the caller.

RocksDB keeps a partition's state on disk between runs, with the changelog
offset it reflects (Faust's persisted offset), so that a restarted worker
reads only the changelog's tail. That offset may only ever cover records the
broker has: a write is kept in memory (`_unsettled`) until its changelog
record is delivered, and only then goes to the database, together with the
record's offset, in one atomic batch, in the order the records were sent. A
worker killed at any moment leaves a database that is exactly a prefix of the
changelog, which recovery then completes.

The project's writes skip RocksDB's write-ahead log, as Kafka Streams' do: the
changelog is the log. Half of a write's cost was the WAL. A worker killed
with SIGKILL loses what was only in the memtables, and the database falls back
to its last flush: still a prefix of the changelog, with its offset, so the
restarted worker reads a longer tail. Flushes keep that tail short: once no
state was written for FLUSH_IDLE_S, and at least every FLUSH_EVERY_S. Faust's
own writes (recovery from the changelog) keep the log, and a logged offset
after unlogged states could claim states the database lost: a partition is
flushed, and the flush waited for, before Faust writes its offset, when the
partition moves away and when the store stops.
"""
from __future__ import annotations

import asyncio
import shutil
from collections import defaultdict, deque

import faust.stores
import rocksdict
from faust.stores import memory, rocksdb

MEMORY, ROCKSDB = "memory", "rocksdb"  # the settings' names (common.config: FSP_STORE)

# Faust's defaults (64 MiB write buffers, a 2 GiB block cache) are per database, and the worker opens
# one per table and partition (20 for storj on 4 partitions): small buffers keep the worker's memory
# bounded and let RocksDB move state to disk as it grows.
ROCKSDB_OPTIONS = {"write_buffer_size": 4 * 1024 * 1024, "max_write_buffer_number": 2,
                   "block_cache_size": 8 * 1024 * 1024}


DELETED = b""  # what a deleted key holds until its tombstone is delivered (no state encodes to no bytes)

# The project's writes to RocksDB skip its write-ahead log (see the module doc) and are flushed to disk
# once no state was written for FLUSH_IDLE_S, and at least every FLUSH_EVERY_S while writes go on.
UNLOGGED = rocksdict.WriteOptions()
UNLOGGED.disable_wal = True
FLUSH_IDLE_S = 0.2
FLUSH_EVERY_S = 5.0


def store_url(kind: str) -> str:
    return {MEMORY: "fsp-memory://", ROCKSDB: "fsp-rocksdb://"}[kind]


def table_options(kind: str) -> dict | None:
    return dict(ROCKSDB_OPTIONS) if kind == ROCKSDB else None


class _Generations:
    """`generation` changes whenever the store's content may have changed other than through the project's
    own writes (`put_in`, `undo_put`; it never uses Faust's table API): Faust's recovery from the changelog,
    a rebalance (revoking partitions included), a reset. A reader that keeps decoded values
    (stream.runtime.store.StateStore) trusts them while it stays the same."""

    generation = 0

    def _changed_under_readers(self) -> None:
        self.generation += 1

    def apply_changelog_batch(self, *args, **kwargs) -> None:
        self._changed_under_readers()
        super().apply_changelog_batch(*args, **kwargs)  # type: ignore[misc]

    async def on_recovery_completed(self, *args, **kwargs) -> None:
        await super().on_recovery_completed(*args, **kwargs)  # type: ignore[misc]
        self._changed_under_readers()

    def reset_state(self) -> None:
        self._changed_under_readers()
        super().reset_state()  # type: ignore[misc]

    async def on_rebalance(self, *args, **kwargs) -> None:
        self._changed_under_readers()
        await super().on_rebalance(*args, **kwargs)  # type: ignore[misc]
        self._changed_under_readers()


class PartitionedMemory(_Generations, memory.Store):
    """Faust's memory store with the keys of each partition indexed, including those recovered."""

    durable = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.keys_by_partition: dict[int, set] = defaultdict(set)

    def get_in(self, partition: int, raw: bytes) -> bytes | None:
        return self.data.get(raw)

    def put_in(self, partition: int, raw: bytes, value: bytes) -> None:
        if value is DELETED or not value:
            self.data.pop(raw, None)
            self.keys_by_partition[partition].discard(raw)
            return
        self.data[raw] = value
        self.keys_by_partition[partition].add(raw)

    def before_put(self, partition: int, raw: bytes) -> bytes | None:
        return self.data.get(raw)

    def undo_put(self, partition: int, raw: bytes, before: bytes | None) -> None:
        if before is None:
            self.data.pop(raw, None)
            self.keys_by_partition[partition].discard(raw)
        else:
            self.data[raw] = before

    def items_in(self, partition: int):
        data = self.data
        for raw in list(self.keys_by_partition.get(partition, ())):
            value = data.get(raw)
            if value is not None:
                yield raw, value

    def track_delivery(self, partition: int, raw: bytes, value: bytes, future, at: int = 0) -> None:
        """Nothing to do: memory does not outlive the process."""

    def apply_changelog_batch(self, batch, to_key, to_value) -> None:
        batch = list(batch)
        super().apply_changelog_batch(batch, to_key, to_value)
        for event in batch:
            keys = self.keys_by_partition[event.message.partition]
            raw = to_key(event.key)
            if raw in self.data:
                keys.add(raw)
            else:
                keys.discard(raw)

    async def on_recovery_completed(self, active_tps, standby_tps) -> None:
        """Faust drops the recovered keys of partitions not assigned; the keys written here go too."""
        await super().on_recovery_completed(active_tps, standby_tps)
        active = {tp.partition for tp in active_tps}
        for partition in [p for p in self.keys_by_partition if p not in active]:
            for raw in self.keys_by_partition.pop(partition):
                self.data.pop(raw, None)


class PartitionedRocksDB(_Generations, rocksdb.Store):
    """Faust's RocksDB store written by partition, each write going to disk once its changelog record is
    delivered (see the module doc)."""

    durable = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._unsettled: dict[int, dict[bytes, bytes]] = defaultdict(dict)  # written, not yet on disk
        # per partition, in send order: [future, [(raw, value), ...], `at` of the last] for each run of
        # records that share a delivery future (a producer batch's), so that a settle looks at each once
        self._in_flight: dict[int, deque] = defaultdict(deque)
        self._settle_scheduled = False
        self._unflushed: set[int] = set()  # partitions written since their last flush was asked for
        self._unlogged: set[int] = set()  # partitions written since their last flush that was waited for
        self._flush_timer: asyncio.TimerHandle | None = None
        self._last_write = self._first_unflushed = 0.0  # loop time

    def _db(self, partition: int):
        db = self._dbs.get(partition)
        return db if db is not None else self._db_for_partition(partition)

    def get_in(self, partition: int, raw: bytes) -> bytes | None:
        unsettled = self._unsettled.get(partition)
        if unsettled:
            value = unsettled.get(raw)
            if value is not None:
                return value or None  # DELETED: gone, though its tombstone is not delivered yet
        return self._db(partition).get(raw)

    def put_in(self, partition: int, raw: bytes, value: bytes) -> None:
        self._unsettled[partition][raw] = value

    def before_put(self, partition: int, raw: bytes) -> bytes | None:
        """The database is written only on delivery, so undoing a write is undoing its unsettled value."""
        return self._unsettled[partition].get(raw)

    def undo_put(self, partition: int, raw: bytes, before: bytes | None) -> None:
        unsettled = self._unsettled[partition]
        if before is None:
            unsettled.pop(raw, None)
        else:
            unsettled[raw] = before

    def items_in(self, partition: int):
        unsettled = dict(self._unsettled.get(partition, ()))
        offset_key = self.offset_key
        for raw, value in self._db(partition).items():
            if raw != offset_key:
                value = unsettled.pop(raw, value)
                if value:
                    yield raw, value
        yield from ((raw, value) for raw, value in unsettled.items() if value)

    def track_delivery(self, partition: int, raw: bytes, value: bytes, future, at: int = 0) -> None:
        """The record's offset is `at` past `future`'s result's (records of one batch share its future:
        they are one entry of `_in_flight`, watched once)."""
        in_flight = self._in_flight[partition]
        if in_flight:
            last = in_flight[-1]
            if last[0] is future:
                last[1].append((raw, value))
                last[2] = at
                return
        in_flight.append([future, [(raw, value)], at])
        future.add_done_callback(self._on_delivery)

    def _on_delivery(self, future) -> None:
        """Deliveries of one producer request come together: settle them in one database write."""
        if not self._settle_scheduled:
            self._settle_scheduled = True
            future.get_loop().call_soon(self._settle, future.get_loop())

    def _settle(self, loop) -> None:
        self._settle_scheduled = False
        for partition, in_flight in self._in_flight.items():
            if in_flight and in_flight[0][0].done():
                self._settle_partition(partition, in_flight)
        if self._unflushed:
            now = loop.time()
            if self._flush_timer is None:
                self._first_unflushed = now
                self._flush_timer = loop.call_later(FLUSH_IDLE_S, self._flush_when_due, loop)
            self._last_write = now

    def _flush_when_due(self, loop) -> None:
        """Flush the partitions written since the last flush once writes pause, or have gone on for
        FLUSH_EVERY_S; RocksDB writes the memtables out in the background."""
        now = loop.time()
        if now - self._last_write < FLUSH_IDLE_S and now - self._first_unflushed < FLUSH_EVERY_S:
            self._flush_timer = loop.call_later(FLUSH_IDLE_S, self._flush_when_due, loop)
            return
        self._flush_timer = None
        for partition in self._unflushed:
            db = self._dbs.get(partition)
            if db is not None:
                db.flush(False)
        self._unflushed.clear()

    def _flush_and_wait(self, partitions) -> None:
        """Put the unlogged writes of `partitions` on disk before anything logged is written after them."""
        for partition in [p for p in partitions if p in self._unlogged]:
            db = self._dbs.get(partition)
            if db is not None:
                db.flush(True)
            self._unlogged.discard(partition)
            self._unflushed.discard(partition)

    def set_persisted_offset(self, tp, offset: int) -> None:
        """Faust's offset write (recovery) is logged: the unlogged states it would claim go to disk first."""
        self._flush_and_wait([tp.partition])
        super().set_persisted_offset(tp, offset)

    async def stop(self) -> None:
        self._flush_and_wait(self._unlogged)
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        await super().stop()

    def _settle_partition(self, partition: int, in_flight: deque) -> None:
        """Write the delivered prefix of the partition's sends and its last offset, atomically. A send that
        failed stops the prefix for good: nothing after it is ever marked persisted."""
        settled: dict[bytes, bytes] = {}  # a key written again within the prefix: its last value only
        offset = None
        while in_flight:
            future, written, at = in_flight[0]
            if not future.done() or future.cancelled() or future.exception() is not None:
                break
            in_flight.popleft()
            settled.update(written)
            offset = future.result().offset + at
        if offset is None:
            return
        db = self._db(partition)
        if offset > (self._disk_offset(db) or -1):  # else recovery already wrote newer records of this partition
            batch = rocksdict.WriteBatch(raw_mode=True)
            for raw, value in settled.items():
                if value:
                    batch.put(raw, value)
                else:  # DELETED
                    batch.delete(raw)
            batch.put(self.offset_key, str(offset).encode())
            db.write(batch, UNLOGGED)
            self._unflushed.add(partition)
            self._unlogged.add(partition)
        unsettled = self._unsettled.get(partition, {})
        for raw, value in settled.items():  # unless written again since
            if unsettled.get(raw) is value:
                del unsettled[raw]

    def _disk_offset(self, db) -> int | None:
        offset = db.get(self.offset_key)
        return int(offset) if offset is not None else None

    def revoke_partitions(self, table, tps) -> None:
        """Unsettled writes of a partition that moves away may be older than what its next owner writes;
        their deliveries still settle (never behind the database's offset)."""
        revoked = [tp.partition for tp in tps if tp.topic in table.changelog_topic.topics]
        for partition in revoked:
            self._unsettled.pop(partition, None)
        self._flush_and_wait(revoked)
        super().revoke_partitions(table, tps)


def persisted_offsets_on_disk(tables, partitions: int) -> dict:
    """{(changelog topic, partition): (database path, persisted offset)} of the RocksDB databases a
    previous worker left in the state directory, read without opening them for writing."""
    found = {}
    for table in tables:
        store = table.data
        if not isinstance(store, PartitionedRocksDB):
            continue
        for partition in range(partitions):
            path = store.partition_path(partition)
            if not path.exists():
                continue
            db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True),
                                 access_type=rocksdict.AccessType.read_only())
            try:
                offset = db.get(store.offset_key)
            finally:
                db.close()
            if offset is not None:
                found[(table.changelog_topic.get_topic_name(), partition)] = (path, int(offset))
    return found


def drop_state_of_other_logs(on_disk: dict, changelog_ends: dict) -> list:
    """Remove the databases whose persisted offset is not in their changelog (the topic is new, or
    shorter than what the database says it reflects): they hold the state of another cluster's log,
    e.g. a new embedded broker's. Their partitions are then recovered from the changelog alone."""
    dropped = []
    for tp, (path, offset) in on_disk.items():
        if offset >= changelog_ends.get(tp, 0):
            shutil.rmtree(path, ignore_errors=True)
            dropped.append(str(path))
    return dropped


faust.stores.STORES.aliases.setdefault("fsp-memory", f"{__name__}:PartitionedMemory")
faust.stores.STORES.aliases.setdefault("fsp-rocksdb", f"{__name__}:PartitionedRocksDB")
