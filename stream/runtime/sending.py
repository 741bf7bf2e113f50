"""The worker's records into the producer's batches with no per-record wrapper around them.

Every record the worker sends (state changelogs, records between stages, owed records, marks) carries
its partition. Faust's `Producer.send` and aiokafka's `AIOKafkaProducer.send` check, per record, what
does not change from one record to the next (transactions, headers, the topic's metadata, the partition
against it, serializers): ~70 % of the time the worker spent sending, ~5 % of its CPU on a storj
replay. `RecordSender` does those checks once per topic and partition and appends each record to
aiokafka's accumulator itself, in the order of the calls, as `send` would: the same batches.

`append` is the common case, without a coroutine or a future of the record's own: a record that goes
into the partition's open batch is known delivered by the batch's future, and its offset is the batch's
first plus its place in the batch. `send` is aiokafka's way, a future per record, for what `append`
leaves: a full batch or none open (it waits for room), records without a partition (dead letters),
records near the producer's request limit (whose size `send` checks, failing as it always did) and a
producer that is not aiokafka's (stream.runtime.driver's).
"""
from __future__ import annotations

import asyncio

from aiokafka.structs import TopicPartition


class RecordSender:
    def __init__(self, app):
        self.app = app
        self.producer = None  # the app's (Faust's, started or not), taken at the first send
        self._kafka = None  # the aiokafka producer the partitions below were checked with
        self._tps: dict[tuple[str, int], TopicPartition] = {}

    def append(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
               headers: list | None) -> tuple[asyncio.Future, int] | None:
        """(its batch's future, the record's offset from the batch's first) when the record goes into the
        partition's open batch now: the future is done when the whole batch is delivered, with the batch's
        first offset as its result. None when the record must go through `send` (no open batch, a full
        one, a record `send` must check, a producer that was restarted or is not aiokafka's, one that
        failed or closes).

        No future per record: making one, and its result on delivery, cost ~3 us a record (2,000-record
        batches, with their futures gathered), ~3 % of the worker's CPU on a storj replay; aiokafka's own
        also asked for the running loop, a `getpid` system call, per record."""
        kafka = self._kafka
        if kafka is None or partition is None or getattr(self.producer, "_producer", None) is not kafka:
            return None
        tp = self._tps.get((topic, partition))
        accumulator = kafka._message_accumulator
        if tp is None or accumulator._closed or accumulator._exception is not None:
            return None
        batches = accumulator._batches.get(tp)
        if not batches or _near_limit(kafka, key, value):
            return None
        batch = batches[-1]
        metadata = batch._builder.append(timestamp=None, key=key, value=value, headers=headers or [])
        if metadata is None:
            return None  # full: `send` waits for room
        return batch.future, metadata.offset

    async def send_all(self, records) -> list[tuple[asyncio.Future, int]]:
        """Hand over each record (topic, key, value, partition, headers), in order: `append` when it can,
        else `send`. For each, (a future done once it is delivered, its offset past that future's
        result's)."""
        placed = []
        for topic, key, value, partition, headers in records:
            appended = self.append(topic, key, value, partition, headers)
            placed.append(appended if appended is not None else (await self.send(topic, key, value, partition,
                                                                                headers), 0))
        return placed

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                   headers: list | None):
        """The record's own delivery future, as `producer.send` returns it (its result: the record's offset)."""
        if self.producer is None:
            self.producer = self.app.producer
        kafka = getattr(self.producer, "_producer", None)  # aiokafka's, while Faust's producer runs
        if kafka is None or partition is None or _near_limit(kafka, key, value):
            return await self.producer.send(topic, key, value, partition, None, headers)
        if kafka is not self._kafka:  # started again: its metadata is its own
            self._kafka, self._tps = kafka, {}
        tp = self._tps.get((topic, partition))
        if tp is None:
            await kafka.client._wait_on_metadata(topic)
            kafka._partition(topic, partition, None, None, None, None)  # the topic has that partition
            tp = self._tps[(topic, partition)] = TopicPartition(topic, partition)
        return await kafka._message_accumulator.add_message(tp, key, value, kafka._request_timeout_ms / 1000,
                                                            headers=headers or [])


RECORD_OVERHEAD = 1024  # more than a record's framing and headers take besides its key and value


def _near_limit(kafka, key: bytes | None, value: bytes | None) -> bool:
    """Whether the record may pass the producer's max_request_size: then `send` checks it exactly."""
    return len(value or b"") + len(key or b"") + RECORD_OVERHEAD > kafka._max_request_size


def distinct_futures(placed: list[tuple[asyncio.Future, int]]) -> list[asyncio.Future]:
    """The futures of `send_all`'s result, a batch's once: all done when every record is delivered."""
    return list(dict.fromkeys(future for future, _ in placed))
