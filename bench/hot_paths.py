"""`python -m bench.hot_paths [--runs N]`: CPU per call of a few per-record steps of the worker, alone.

End to end, the worker's rate moves by 2x from hour to hour on a shared machine, which hides changes
of a few per cent; these steps are timed on their own, in CPU time, best of `--runs`:

- `send`: handing a 400-byte record to aiokafka's open batch and learning that it is delivered, with a
  future of its own per record (aiokafka's `MessageBatch.append`) or with the batch's (how
  `stream.runtime.sending.RecordSender.append` does it), 2,000 records a batch, futures gathered;
- `murmur2`: the partition hash of a 36-byte id, aiokafka's and `stream.runtime.partitioning`'s;
- `dedup`: one storj key's de-duplication (`DayBucketedIds.first_seen`) over a steady history, 20
  rows a day (a project) or one (a node: its state then keeps INLINE_IDS days), 1-5 rows a batch, in a
  memory key-value store.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import time

from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from aiokafka.producer.message_accumulator import BatchBuilder, MessageBatch
from aiokafka.structs import TopicPartition

from contract.rows import Row
from stream.logic import dedup, keyvalue
from stream.runtime.partitioning import murmur2

BATCH_RECORDS = 2_000


async def _send(own_future: bool, batches: int = 50) -> float:
    """CPU us per record."""
    tp, key, value = TopicPartition("t", 0), b"k" * 36, b"v" * 400
    new_future = asyncio.get_running_loop().create_future
    started = time.process_time()
    for _ in range(batches):
        batch = MessageBatch(tp, BatchBuilder(16 << 20, 0, is_transactional=False), 30, 0)
        futures = []
        for _ in range(BATCH_RECORDS):
            if own_future:
                futures.append(batch.append(key, value, None, new_future))
            else:
                batch._builder.append(timestamp=None, key=key, value=value, headers=[])
                futures.append(batch.future)
        batch.done(1_000)
        await asyncio.gather(*dict.fromkeys(futures))
    return (time.process_time() - started) / (batches * BATCH_RECORDS) * 1e6


def _per_call(function, arg, calls: int = 20_000) -> float:
    started = time.process_time()
    for _ in range(calls):
        function(arg)
    return (time.process_time() - started) / calls * 1e6


def _dedup(rows_a_day: int, rows: int = 60_000) -> float:
    """CPU us per first_seen call."""
    random.seed(1)
    history = [Row("p1", n * dedup.DAY_US // rows_a_day, f"{n:016x}", {}) for n in range(rows)]
    seen, state = dedup.DayBucketedIds(keyvalue.DictStore(), "project:p1"), dedup.DedupState()
    calls, at = 0, 0
    started = time.process_time()
    while at < rows:
        size = random.randint(1, 5)
        seen.first_seen(state, history[at:at + size])
        at, calls = at + size, calls + 1
    return (time.process_time() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hot_paths", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    key = b"0b7a5c1e-6f1a-4a4e-9d5e-2d3c7b9a1f00"
    timings = {
        "send, a future per record (us/record)": lambda: asyncio.run(_send(own_future=True)),
        "send, the batch's future (us/record)": lambda: asyncio.run(_send(own_future=False)),
        "murmur2, aiokafka's (us/key)": lambda: _per_call(aiokafka_murmur2, key),
        "murmur2, the worker's (us/key)": lambda: _per_call(murmur2, key),
        "dedup first_seen, 20 rows a day (us/call)": lambda: _dedup(20),
        "dedup first_seen, a row a day (us/call)": lambda: _dedup(1),
    }
    for name, measure in timings.items():
        print(f"{name}: {min(measure() for _ in range(args.runs)):.2f}")


if __name__ == "__main__":
    main()
