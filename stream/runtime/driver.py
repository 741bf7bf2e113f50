"""The worker's record path in one process: the real Runtime, stages, runner and state stores (memory
or RocksDB), with Faust's producer replaced by a list. Records the stages send to internal topics are
fed on to the next stage, so a message goes all the way (decode -> normalise -> apply -> next stage)
without a broker.

What Kafka Streams' TopologyTestDriver is to a topology: the poison and bounded-state tests use it, and so
does the growth benchmark (bench/growth.py), which measures what one update costs as a key's history
grows without the broker's and Faust's noise around it.
"""
from __future__ import annotations

import asyncio
import shutil
import tempfile
import weakref
from collections import defaultdict
from typing import NamedTuple

import faust
import orjson

import datasets as registry
from contract import tables, wire
from stream.runtime import state_backends
from stream.runtime.sink import SnapshotSink
from stream.runtime.stages import StageRunner
from stream.runtime.worker import Runtime, dlq_topic

APP_ID = "record-path"


def changelog_table(topic: str) -> str | None:
    """The table whose changelog `topic` is, or None."""
    prefix, suffix = f"{APP_ID}-", "-changelog"
    return topic[len(prefix):-len(suffix)] if topic.startswith(prefix) and topic.endswith(suffix) else None


class TP(NamedTuple):
    topic: str
    partition: int


class Record(NamedTuple):
    key: bytes | None
    value: bytes | None
    offset: int
    timestamp: int = 0  # none known: no arrival, so no event-to-snapshot latency
    headers: tuple = ()


class Delivered(NamedTuple):
    """What a delivery future holds (aiokafka's RecordMetadata, the part the stores read)."""
    topic: str
    partition: int
    offset: int


class _Producer:
    """Delivers every record at once, unless `hold` is set: then deliveries wait for `deliver()`."""

    def __init__(self, keep_sent: bool = True):
        self.sent: list[tuple[str, bytes | None, bytes, int | None]] = []
        self.keep_sent = keep_sent  # False: keep only what the next stage reads and the sizes written
        self.largest: dict[str, int] = defaultdict(int)  # topic -> largest value sent
        self.sent_bytes: dict[str, int] = defaultdict(int)
        self.hold = False
        self._held: list = []
        self._offsets: dict = defaultdict(int)

    async def send(self, topic, key, value, partition, timestamp, headers):
        size = len(value or b"")
        self.sent_bytes[topic] += size
        if size > self.largest[topic]:
            self.largest[topic] = size
        if self.keep_sent or ".internal." in topic:
            self.sent.append((topic, key, value, partition))
        future = asyncio.get_running_loop().create_future()
        offset = self._offsets[(topic, partition)]
        self._offsets[(topic, partition)] += 1
        if self.hold:
            self._held.append((future, Delivered(topic, partition, offset)))
        else:
            future.set_result(Delivered(topic, partition, offset))
        return future

    def deliver(self, fail: bool = False) -> None:
        """Deliver (or fail) what is held."""
        held, self._held = self._held, []
        for future, metadata in held:
            future.set_exception(OSError("not delivered")) if fail else future.set_result(metadata)


class _App:
    """Faust's tables (with their real stores) in an app that is never started."""

    consumer_generation_id = 1

    def __init__(self, store_kind: str, state_dir: str, keep_sent: bool = True):
        self.producer = _Producer(keep_sent)
        self._faust = faust.App(APP_ID, store=state_backends.store_url(store_kind), datadir=state_dir,
                                web_enabled=False)

    def Table(self, name, **kwargs):  # noqa: N802 (Faust's name)
        return self._faust.Table(name, **kwargs)


class RecordPath:
    """`await path.feed(topic, [(key, value), ...])` runs messages through every stage they reach."""

    def __init__(self, partitions: int = 2, store_kind: str = state_backends.MEMORY, state_dir: str | None = None,
                 keep_sent: bool = True, datasets=None):
        """`datasets`: the names of those whose stages run (default: every one); `state_dir`: where a RocksDB
        store lives (default: a temporary directory of its own, removed with the path)."""
        if state_dir is None:
            state_dir = tempfile.mkdtemp(prefix="record-path-")
            weakref.finalize(self, shutil.rmtree, state_dir, ignore_errors=True)
        self.app = _App(store_kind, state_dir, keep_sent)
        self.runtime = Runtime(self.app, SnapshotSink("redis://127.0.0.1:1/0", "fuzz:"), partitions, store_kind)
        stages = []
        for dataset in map(registry.get, datasets or registry.names()):
            stages += self.runtime.add_dataset(dataset)
        self.runner = StageRunner(self.runtime, stages)
        relay = self.runtime.relay
        relay.delivered = relay.drain = self._relay_owed  # no relay task here: owed records go out at once
        self._offsets: dict = defaultdict(int)
        self._relayed = 0

    async def feed(self, topic: str, messages: list[tuple[bytes | None, bytes | None]],
                   partition: int | None = None) -> None:
        """`partition`: where every message goes, else each goes to its key's (as a producer puts it)."""
        by_partition = defaultdict(list)
        for key, value in messages:
            by_partition[partition if partition is not None else self.partition_of(key)].append((key, value))
        for part, batch in by_partition.items():
            await self._handle(topic, part, batch)
        for _ in range(10):  # follow records on through the internal topics
            await self._relay_owed()
            internal = [s for s in self.app.producer.sent[self._relayed:] if ".internal." in s[0]]
            self._relayed = len(self.app.producer.sent)
            if not self.app.producer.keep_sent:
                self.app.producer.sent.clear()
                self._relayed = 0
            if not internal:
                break
            by_tp = defaultdict(list)
            for topic_name, key, value, part in internal:
                by_tp[(topic_name, part or 0)].append((key, value))
            for (topic_name, part), batch in by_tp.items():
                await self._handle(topic_name, part, batch)

    async def replay_progress(self, dataset: str, ts_us: int, run: str = "driver") -> None:
        """What a replay says into every partition of every source topic as it goes: every row up to
        `ts_us` is published (windows may close that far: stream.logic.source_clock)."""
        for topic in tables.topics(dataset):
            table = topic.split(".", 1)[1]
            for partition in range(self.runtime.partitions):
                await self.feed(topic, [(None, wire.encode_progress(table, partition, ts_us, run))], partition)

    def partition_of(self, key: bytes | None) -> int:
        return self.runtime.partition_of(key) if key is not None else 0

    def state(self, table: str, key: str):
        """The key's state, read from its partition (a dict, or a store.Entry in a typed table)."""
        return self.runtime.store(table).get(self.partition_of(key.encode()), key)

    async def _handle(self, topic, partition, messages) -> None:
        tp = TP(topic, partition)
        records = []
        for key, value in messages:
            records.append(Record(key, value, self._offsets[tp]))
            self._offsets[tp] += 1
        await self.runner.handle(tp, records)

    async def _relay_owed(self) -> None:
        """Owed records go out once their state writes are acknowledged (here: at once)."""
        queue = self.runtime.relay.queue
        while not queue.empty():
            writes, messages, upto = queue.get_nowait()
            for topic, key, value, part, headers in messages:
                await self.app.producer.send(topic, key, value, part, None, headers)
            relay = self.runtime.relay  # delivered at once: the next touch of a key drops what it owed
            relay._delivered_upto = max(relay._delivered_upto, upto)
            queue.task_done()

    def dead_letters(self, dataset: str) -> list[dict]:
        return [orjson.loads(value) for topic, _, value, _ in self.app.producer.sent if topic == dlq_topic(dataset)]

    def dead_letter_sizes(self) -> list[int]:
        return [len(value) for topic, _, value, _ in self.app.producer.sent if topic.endswith(".dlq")]

    def events(self, dataset: str) -> int:
        return int(sum(sample.value for metric in self.runtime.metrics.events.collect()
                       for sample in metric.samples
                       if sample.name.endswith("_total") and sample.labels["dataset"] == dataset))

    def rerouted(self) -> int:
        return int(sum(sample.value for metric in self.runtime.metrics.rerouted.collect()
                       for sample in metric.samples if sample.name.endswith("_total")))
