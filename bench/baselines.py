"""Baselines the benchmark measures the project against, on the same events and broker.

- naive: a plain Faust agent, one event per message, one table write per event;
- raw: an aiokafka consumer folding the same single-event messages into dicts
  (the ceiling of Python on this broker).
Each prints `{"events": n, "seconds": s}` as JSON on its last line.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time

import orjson

from contract import tables
from contract.rows import normalise

NAIVE_TOPIC = "bench.single"


def _spec_of(row: dict):
    return tables.table("storj", row.pop("__table"))


def run_naive(broker: str, expected: int) -> None:
    import faust

    from stream.runtime.worker import quiet_logs

    quiet_logs()
    app = faust.App("bench-naive", broker=f"kafka://{broker}", store="memory://", topic_partitions=4,
                    broker_rebalance_timeout=3, broker_session_timeout=10, broker_heartbeat_interval=1,
                    web_enabled=False, consumer_auto_offset_reset="earliest", topic_replication_factor=1)
    topic = app.topic(NAIVE_TOPIC, key_serializer="raw", value_serializer="raw")
    table = app.Table("bench-naive-state", default=dict, partitions=4)
    progress = {"n": 0, "t0": None}

    @app.agent(topic)
    async def fold(stream):
        async for _key, value in stream.items():
            if progress["t0"] is None:
                progress["t0"] = time.perf_counter()
            row = orjson.loads(value)
            spec = _spec_of(row)
            normalised = normalise(spec, row)
            state = dict(table[normalised.key])
            state["events"] = state.get("events", 0) + 1
            state["last"] = max(state.get("last", 0), normalised.ts)
            table[normalised.key] = state
            progress["n"] += 1
            if progress["n"] >= expected:
                print(json.dumps({"events": progress["n"], "seconds": time.perf_counter() - progress["t0"]}),
                      flush=True)
                sys.stdout.flush()
                import os

                os._exit(0)

    from faust.worker import Worker

    sys.argv = [sys.argv[0]]
    Worker(app, loglevel="error", quiet=True, redirect_stdouts=False).execute_from_commandline()


async def _raw(broker: str, expected: int) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(NAIVE_TOPIC, bootstrap_servers=broker, auto_offset_reset="earliest",
                                group_id="bench-raw", enable_auto_commit=True, max_poll_records=10_000)
    await consumer.start()
    state: dict = {}
    count, t0 = 0, None
    try:
        while count < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                if t0 is None:
                    t0 = time.perf_counter()
                for record in records:
                    row = orjson.loads(record.value)
                    spec = _spec_of(row)
                    normalised = normalise(spec, row)
                    entry = state.setdefault(normalised.key, {"events": 0, "last": 0})
                    entry["events"] += 1
                    entry["last"] = max(entry["last"], normalised.ts)
                    count += 1
    finally:
        await consumer.stop()
    print(json.dumps({"events": count, "seconds": time.perf_counter() - t0}), flush=True)


def main() -> None:
    kind, broker, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # the registry imports the dataset (and its stages) at the first table lookup: not inside the timing,
    # where over 30,000 events it took half the time
    tables.table("storj", "bbr")
    if kind == "naive":
        run_naive(broker, expected)  # Faust as it comes
    else:
        from common.gc_tuning import tune_gc

        tune_gc()  # the ceiling gets the collector settings the project runs with
        asyncio.run(_raw(broker, expected))


if __name__ == "__main__":
    main()
