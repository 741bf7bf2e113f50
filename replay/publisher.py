"""Publish rows in event-time order as keyed batches, with progress, resume and an end mark.

Rows of one key inside a chunk of the merged order go out as one message (a
JSON array), in order; a chunk never reorders rows of one key, and keys are
independent, so the stream sees every key's rows in event-time order.
A checkpoint records how many merged rows are safely published (after a
producer flush), so `--resume` continues where an interrupted run stopped.
"""
from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from confluent_kafka import Producer
from tqdm import tqdm

from common.kafka_security import confluent_config
from common.topics import ensure_topics, partitions_of
from contract import tables, wire
from replay.sources.base import BadRecord
from stream.logic.idset import IdRanges

CHECKPOINT_ROWS = 20_000  # flush and record progress at least this often
PROGRESS_ROWS = 20_000  # a progress mark into every partition at least this often (the stream's event time)


@dataclass
class ReplaySummary:
    dataset: str
    run: str
    rows_read: int = 0
    published: int = 0
    duplicates: int = 0
    bad_rows: int = 0
    messages: int = 0
    skipped_by_resume: int = 0
    seconds: float = 0.0
    bad_examples: list = field(default_factory=list)
    ignored_files: list = field(default_factory=list)  # files of the source that are no known table

    @property
    def rate(self) -> float:
        return self.published / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {**self.__dict__, "rows_per_s": round(self.rate)}


class Checkpoint:
    """How far a replay of one source got: {"run", "done_rows", "finished"}."""

    def __init__(self, path: Path | None):
        self.path = path

    def load(self) -> dict:
        if self.path and self.path.exists():
            return json.loads(self.path.read_text())
        return {}

    def save(self, state: dict) -> None:
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            tmp.replace(self.path)


class FastProducer:
    """librdkafka's producer (~1-2 us a message; kafka-python's costs ~80 us) behind a small interface.

    The `murmur2_random` partitioner is the Java client's, which kafka-python and
    aiokafka (Faust) use too: a key lands in the same partition whoever sends it.
    """

    def __init__(self, bootstrap: str):
        self._producer = Producer({
            "bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 1 << 20, "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 2_000_000, "queue.buffering.max.kbytes": 1 << 21,
            "message.max.bytes": 16 << 20, "acks": 1, "log_level": 3, **confluent_config(),
        })
        self._errors: list[str] = []

    def _on_delivery(self, error, _message) -> None:
        if error is not None:
            self._errors.append(str(error))

    def send(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None,
             event_time: int | None = None) -> None:
        """`event_time`: what the message's rows are up to, in its header (contract.wire.EVENT_TIME_HEADER)."""
        kwargs = {"partition": partition} if partition is not None else {}
        if event_time is not None:
            kwargs["headers"] = wire.event_time_header(event_time)
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery, **kwargs)
                break
            except BufferError:  # local queue full: let deliveries drain
                self._producer.poll(0.05)
        self._producer.poll(0)

    def flush(self) -> None:
        self._producer.flush()
        if self._errors:
            errors, self._errors = self._errors, []
            raise RuntimeError(f"{len(errors)} messages not delivered: {errors[:3]}")

    def close(self) -> None:
        """Flush, then stop librdkafka's threads now rather than when the object is collected (until
        then they would go on reconnecting, and logging, to a broker that has gone away). Only once
        everything is delivered: librdkafka's close waits for undelivered messages, up to their 5-minute
        timeout, whatever timeout it is given, and a failed or interrupted flush must not wait again."""
        self.flush()
        self._producer.close()


def make_producer(bootstrap: str) -> FastProducer:
    return FastProducer(bootstrap)


class SeenEvents:
    """Event ids already published in this run, kept compact: ucn ids (`table:id`) as id ranges per table."""

    def __init__(self):
        self._ranges: dict[str, IdRanges] = {}
        self._other: set[str] = set()

    def add(self, eid: str) -> bool:
        """True when new."""
        table, sep, rest = eid.partition(":")
        if sep and rest.isdigit():
            ranges = self._ranges.get(table)
            if ranges is None:
                ranges = self._ranges[table] = IdRanges()
            return ranges.add(int(rest))
        if eid in self._other:
            return False
        self._other.add(eid)
        return True


class Publisher:
    """One run's producer and counts: rows in event-time order go out packed by key (see the module doc),
    with progress marks as event time moves. A one-shot replay uses it once (`publish`); follow mode
    (replay.follow) feeds it the history, then every poll's new rows, under one run id."""

    def __init__(self, dataset: str, bootstrap: str, partitions: int, run: str, progress_marks: bool = True):
        ensure_topics(bootstrap, tables.topics(dataset) + [f"{dataset}.dlq"], partitions)
        first_topic = tables.topics(dataset)[0]
        existing = partitions_of(bootstrap, first_topic)
        if existing != partitions:
            raise SystemExit(f"error: PARTITIONS={partitions} but {first_topic} has {existing} partitions; set "
                             f"PARTITIONS={existing} (every topic of the project has the same count)")
        self.dataset, self.partitions, self.run = dataset, partitions, run
        self.progress_marks = progress_marks
        self.producer = make_producer(bootstrap)
        self.summary = ReplaySummary(dataset, run)
        self.newest_ts: int | None = None  # event time of the newest row sent
        self.marked_ts: int | None = None  # event time of the last progress marks sent

    def publish_items(self, items, pack: int, seen: SeenEvents, skip: int = 0, checkpoint: Checkpoint | None = None,
                      bar=None, should_stop=None) -> int:
        """Publish `items` (in event-time order) in chunks of `pack` rows; BadRecords go to the dead-letter
        topic. The first `skip` rows were published by an interrupted run; `checkpoint` records how far
        this gets; `should_stop` is asked between chunks. Returns the rows gone through."""
        summary, producer, dataset = self.summary, self.producer, self.dataset
        messages: dict[tuple[str, str], list] = defaultdict(list)
        index = flushed_at = marked_at = 0

        def send_chunk() -> None:
            for (topic, key), rows in messages.items():
                producer.send(topic, key=key.encode(), value=wire.encode_rows(rows), event_time=self.newest_ts)
                summary.published += len(rows)
            summary.messages += len(messages)
            messages.clear()

        for item in items:
            summary.rows_read += 1
            if isinstance(item, BadRecord):
                summary.bad_rows += 1
                if len(summary.bad_examples) < 20:
                    summary.bad_examples.append(item.as_dict())
                producer.send(f"{dataset}.dlq", value=orjson.dumps({
                    "reason": item.reason, "origin": item.origin, "table": item.table, "original": item.original}))
                continue
            index += 1
            if not seen.add(item.row.eid):
                summary.duplicates += 1
            elif index <= skip:
                summary.skipped_by_resume += 1
            else:
                messages[(item.spec.topic, item.row.key)].append(item.row.values)
            if item.row.ts is not None and (self.newest_ts is None or item.row.ts > self.newest_ts):
                self.newest_ts = item.row.ts
            if index % pack == 0:
                send_chunk()
                if bar is not None:
                    bar.update(pack)
                if index - marked_at >= PROGRESS_ROWS:
                    # rows of the newest time may follow in the next chunk: the mark stops just before it
                    self.mark_progress()
                    marked_at = index
                if checkpoint is not None and index - flushed_at >= CHECKPOINT_ROWS:
                    producer.flush()  # everything up to `index` is in the broker: safe to resume after it
                    checkpoint.save({"run": self.run, "done_rows": index, "finished": False})
                    flushed_at = index
                if should_stop is not None and should_stop():
                    return index
        send_chunk()
        if bar is not None:
            bar.update(index % pack)
        return index

    def mark_progress(self) -> None:
        """Progress marks just before the newest event time sent, when it moved since the last ones."""
        if not self.progress_marks or self.newest_ts is None:
            return
        if self.marked_ts is None or self.newest_ts - 1 > self.marked_ts:
            self.marked_ts = self.newest_ts - 1
            send_progress_marks(self.producer, self.dataset, self.run, self.partitions, self.marked_ts)

    def remark_progress(self) -> None:
        """The last progress marks again (a worker restarted since has heard nothing: its windows wait)."""
        if self.progress_marks and self.marked_ts is not None:
            send_progress_marks(self.producer, self.dataset, self.run, self.partitions, self.marked_ts)

    def end_run(self) -> None:
        send_end_marks(self.producer, self.dataset, self.run, self.partitions)

    def flush(self) -> None:
        self.producer.flush()

    def close(self) -> None:
        self.producer.close()


def publish(items, dataset: str, bootstrap: str, partitions: int = 4, pack: int = 20_000,
            checkpoint: Checkpoint | None = None, resume: bool = False, progress: bool = True,
            end_mark: bool = True, run: str | None = None, total: int | None = None) -> ReplaySummary:
    """Publish SourceRows of `items` (an iterable in event-time order, read lazily); BadRecords go
    to the dead-letter topic with their reason and origin. Without `end_mark`, no marks at all."""
    checkpoint = checkpoint or Checkpoint(None)
    previous = checkpoint.load() if resume else {}
    # a resumed run keeps its id (its marks are counted together); a finished one is done: a new one
    run = run or (previous.get("run") if previous and not previous.get("finished") else None) or uuid.uuid4().hex[:12]
    skip = previous.get("done_rows", 0) if resume and not previous.get("finished") else 0
    publisher = Publisher(dataset, bootstrap, partitions, run, progress_marks=end_mark)
    started = time.perf_counter()
    bar = tqdm(total=total, unit="row", disable=not progress, desc=f"replay {dataset}", smoothing=0.1)
    try:
        index = publisher.publish_items(items, pack, SeenEvents(), skip, checkpoint, bar)
        if end_mark:
            publisher.end_run()
        publisher.flush()
        checkpoint.save({"run": run, "done_rows": index, "finished": True})
    finally:
        bar.close()
        publisher.close()
    publisher.summary.seconds = time.perf_counter() - started
    return publisher.summary


def send_progress_marks(producer, dataset: str, run: str, partitions: int, ts_us: int) -> None:
    """Every row of the run up to `ts_us` is published: said into every partition of every topic, empty
    ones included, so that the stream knows how far each has come (stream.logic.source_clock)."""
    for topic in tables.topics(dataset):
        table = topic.split(".", 1)[1]  # the name it is published under (an alias is a topic of its own)
        for partition in range(partitions):
            producer.send(topic, value=wire.encode_progress(table, partition, ts_us, run), partition=partition,
                          event_time=ts_us)


def send_end_marks(producer, dataset: str, run: str, partitions: int) -> None:
    for topic in tables.topics(dataset):
        for partition in range(partitions):
            producer.send(topic, value=wire.encode_mark(run, f"replay:{topic}:{partition}"), partition=partition)
