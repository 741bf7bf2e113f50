"""RecordSender against the embedded broker: records that share their batch's future still learn their
own offsets (RocksDB's settle stores them as the offset its database reflects)."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from common.topics import ensure_topics
from fsp.stack import start_broker
from stream.runtime.sending import RecordSender

pytestmark = pytest.mark.integration

TOPIC = "sender-offsets"


async def _send_and_read(bootstrap: str, records: int) -> tuple[dict, dict, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=16_384)
    await producer.start()
    try:
        sender = RecordSender(SimpleNamespace(producer=SimpleNamespace(_producer=producer)))
        expected, shared = {}, 0
        for n in range(records):  # as Runtime._drain_sends: the open batch, else `send`
            key, value, partition = f"k{n % 7}".encode(), f"record {n}".encode() + b"x" * (n % 300), n % 2
            appended = sender.append(TOPIC, key, value, partition, None)
            if appended is None:
                future, at = await sender.send(TOPIC, key, value, partition, None), 0
            else:
                (future, at), shared = appended, shared + 1
            expected[value] = (partition, future, at)
            if n % 500 == 0:
                await asyncio.sleep(0.03)  # let batches go out, so that records land in many batches
        await producer.flush()
        offsets = {value: (partition, future.result().offset + at)
                   for value, (partition, future, at) in expected.items()}
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        found: dict = {}
        while len(found) < records:
            batches = await consumer.getmany(timeout_ms=2_000)
            if not batches:
                break
            for tp, messages in batches.items():
                for message in messages:
                    found[message.value] = (tp.partition, message.offset)
    finally:
        await consumer.stop()
    return offsets, found, shared


def test_records_sharing_a_batch_future_know_their_own_offsets():
    broker = start_broker()
    try:
        ensure_topics(broker.address, [TOPIC], 2)
        offsets, found, shared = asyncio.run(_send_and_read(broker.address, 3_000))
    finally:
        broker.stop()
    assert len(found) == 3_000
    assert offsets == found
    assert 2_000 < shared < 3_000  # most records went into an open batch; a batch's first went through send
