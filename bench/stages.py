"""`python -m bench.stages DATASET SOURCE`: CPU of a dataset's stages over a dump, in one process.

No broker and no worker: the rows are read and packed as the replay packs
them (one message per key per stretch of rows) and fed through every stage
by `stream.runtime.driver.RecordPath` (memory store; snapshots queued, not
written). What it gives is the stages' own cost per row -- normalising,
logic, state encoding, records between stages -- without the consumer
thread, the broker or Redis, so that two versions of the code compare on a
noisy machine better than end to end (run each from its own checkout,
alternating).
"""
from __future__ import annotations

import argparse
import asyncio
import time

from contract import wire
from replay.job import read_source
from stream.runtime.driver import RecordPath

STRETCH_ROWS = 2_000


def packed(dataset: str, source: str) -> tuple[int, list]:
    """(rows, stretches): each stretch a list of (topic, [(key, rows as one value)]) in event-time order."""
    ordered, _ = read_source(dataset, source)
    stretches = []
    for start in range(0, len(ordered), STRETCH_ROWS):
        by_topic: dict[str, dict[str, list]] = {}
        for item in ordered[start:start + STRETCH_ROWS]:
            by_topic.setdefault(item.spec.topic, {}).setdefault(item.row.key, []).append(item.row.values)
        stretches.append([(topic, [(key.encode(), wire.encode_rows(rows)) for key, rows in by_key.items()])
                          for topic, by_key in by_topic.items()])
    return len(ordered), stretches


async def feed(dataset: str, stretches: list) -> float:
    path = RecordPath(partitions=4, keep_sent=False, datasets=[dataset])
    path.runtime.sink.flush = _discard(path.runtime.sink)  # no Redis here: snapshots are made, then dropped
    started = time.process_time()
    for stretch in stretches:
        for topic, messages in stretch:
            await path.feed(topic, messages)
    return time.process_time() - started


def _discard(sink):
    async def flush() -> None:
        sink.rollback(0)  # every queued write taken back
    return flush


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("source", help="CSV folder or database URL")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    rows, stretches = packed(args.dataset, args.source)
    for _ in range(args.runs):
        cpu = asyncio.run(feed(args.dataset, stretches))
        print(f"{args.dataset}: {rows:,} rows, stages CPU {cpu:.2f} s, {1e6 * cpu / rows:.1f} us/row", flush=True)


if __name__ == "__main__":
    main()
