"""A Faust consumer that hands whole per-partition record batches to a handler.

Faust's stream API costs ~65-70 us per Kafka message whatever it holds. This
consumer keeps Faust's group membership, partition assignment, offset commits
and changelog-backed tables, but replaces the per-message drain loop: each
fetched batch of one topic-partition goes to `handler(tp, records)` at once,
and its offsets are acknowledged after the handler returns (at-least-once;
the stages are idempotent, so a redelivered batch changes nothing).
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Awaitable, Callable

from faust.transport.consumer import ensure_TPset
from faust.transport.drivers import aiokafka as faust_aiokafka

from contract import wire
from stream.runtime.alignment import EventTimeAligner

log = logging.getLogger(__name__)

BatchHandler = Callable[[object, list], Awaitable[None]]

CANNOT_GO_ON_EXIT = 70  # the worker stopped itself: a supervisor restarts it, and it resumes from its commits
FAULT_ENV = "FSP_FAULT_LOOP_FAILS_AT"  # fault injection for tests: the loop fails at the N-th batch of keyed records
SLOW_ENV = "FSP_FAULT_SECONDS_PER_BATCH"  # for tests: a slow worker, that waits this long after each keyed batch


def stop_for_good(why: str, exc: BaseException | None = None) -> None:
    """Exit with CANNOT_GO_ON_EXIT and one line saying why, never linger as a worker that consumes nothing.

    Nothing is lost: inputs are committed only after their outputs are out (at-least-once), so a
    restarted worker takes up where the last commit left off.
    """
    if exc is not None:
        log.debug("cause", exc_info=exc)
    print(f"error: worker stopping: {why}", file=sys.stderr, flush=True)
    os._exit(CANNOT_GO_ON_EXIT)


def true_end_offsets(bootstrap: str, reported: dict) -> dict:
    """End offsets read off the log itself: from just before the reported end, read to the last record.

    Tansu answers ListOffsets(LATEST) with the last batch's base offset + 1, not the end of that
    batch; Faust's changelog recovery stops at what it is told, so it would miss the rest of the
    last batch of every changelog partition. Reading on from there costs one batch per partition.
    """
    from kafka import KafkaConsumer, TopicPartition

    tps = {TopicPartition(tp.topic, tp.partition): tp for tp, end in reported.items() if end}
    ends = dict(reported)
    if not tps:
        return ends
    from common.kafka_security import kafka_python_args

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False,
                             auto_offset_reset="earliest", max_poll_records=10_000, **kafka_python_args())
    try:
        consumer.assign(list(tps))
        for ktp, tp in tps.items():
            consumer.seek(ktp, max(reported[tp] - 1, 0))
        # The reported end lies inside the last batch, so each partition has at least that record to
        # return: wait for it (a loaded broker may answer slowly), then take what else comes at once.
        missing, deadline = set(tps), time.monotonic() + 30
        while missing and time.monotonic() < deadline:
            for ktp, records in consumer.poll(timeout_ms=500).items():
                missing.discard(ktp)
                ends[tps[ktp]] = max(ends[tps[ktp]], records[-1].offset + 1)
        if missing:
            raise RuntimeError(f"could not read the end of {sorted(str(t) for t in missing)}")
        while batch := consumer.poll(timeout_ms=200):
            for ktp, records in batch.items():
                ends[tps[ktp]] = max(ends[tps[ktp]], records[-1].offset + 1)
    finally:
        consumer.close()
    return ends


FETCH_MAX_WAIT_ENV = "KAFKA_FETCH_MAX_WAIT_MS"
FETCH_MAX_WAIT_MS = 10  # default for the embedded broker (see fetch_max_wait_ms)


def fetch_max_wait_ms() -> int:
    """How long the broker may hold a fetch that has no data yet.

    Faust hard-codes 1,500 ms. Apache Kafka answers a waiting fetch as soon as
    data arrives, so a long wait costs nothing there (the compose file sets
    500 ms). The embedded broker does not: it answers when the wait is over,
    so every hop would take up to the wait; 10 ms keeps live latency low at
    the price of polling (idle, ~23 % of a core for the broker and ~11 % for
    the worker, measured over 10 s).
    """
    from common.config import number_in_range

    return number_in_range(FETCH_MAX_WAIT_ENV, FETCH_MAX_WAIT_MS, 0, 60_000, unit="milliseconds")


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_consumer(self, *args, **kwargs):
        consumer = super()._create_consumer(*args, **kwargs)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms()  # read by its fetcher when it starts
        return consumer


class BatchConsumer(faust_aiokafka.Consumer):
    batch_handler: BatchHandler | None = None
    bootstrap: str = ""
    batch_topics: frozenset = frozenset()  # topics of the stages; the rest (changelogs) go Faust's way
    before_commit: Callable[[], Awaitable[None]] | None = None
    after_fetch: Callable[[], Awaitable[None]] | None = None  # once per fetch, after every batch of it
    on_changelog_batch: Callable[[object, int], None] | None = None  # (tp, records) Faust handles itself
    on_position: Callable[[object, int, int | None], None] | None = None  # (tp, next offset, high watermark)
    on_revoked: Callable[[set], None] | None = None

    def _new_consumer_thread(self):
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def highwaters(self, *partitions):
        reported = await super().highwaters(*partitions)
        return await asyncio.to_thread(true_end_offsets, self.bootstrap, dict(reported))

    _applying: asyncio.Lock | None = None

    @property
    def applying(self) -> asyncio.Lock:
        """Held while a batch is applied. Faust does not know our handler: without this, a rebalance could
        revoke a partition (its offsets dropped, its state store closed, its recovery begun elsewhere)
        while one of its batches was still writing state and records."""
        if self._applying is None:
            self._applying = asyncio.Lock()
        return self._applying

    async def on_partitions_revoked(self, revoked) -> None:
        async with self.applying:
            self._forget_aligned()
            await super().on_partitions_revoked(revoked)
            if self.on_revoked is not None:
                self.on_revoked(revoked)

    # Event-time alignment (stream.runtime.alignment) of the topics in `aligned_topics`.
    aligned_topics: frozenset = frozenset()
    _aligner: EventTimeAligner | None = None
    _aligned_paused: set | None = None

    @property
    def aligner(self) -> EventTimeAligner:
        if self._aligner is None:
            self._aligner = EventTimeAligner(lambda record: wire.header_event_time(record.headers))
            self._aligned_paused = set()
        return self._aligner

    def _forget_aligned(self) -> None:
        """Partitions move, and every one is read again from its commit: records held are dropped, and the
        partitions paused to hold them are no longer paused."""
        if self._aligner is not None:
            self._aligner.clear()
            self._paused_partitions.difference_update(self._aligned_paused)
            self._aligned_paused.clear()

    def _caught_up(self, tp) -> bool:
        """Every record the broker has of `tp` was fetched and applied."""
        highwater = self.highwater(tp)
        return highwater is not None and (self._read_offset.get(tp) or 0) >= highwater

    def _pause_held(self) -> None:
        """Partitions with records held are paused, so the fetcher keeps at most one batch of theirs."""
        held = ensure_TPset(self._aligner.held)
        paused = self._aligned_paused
        if held - paused:
            self.pause_partitions(held - paused)
        if paused - held:
            self.resume_partitions(ensure_TPset(paused - held))
        paused.clear()
        paused.update(held)

    def _rebalanced_since(self, generation) -> bool:
        """A rebalance began or ended since the records were fetched: Faust seeks every partition again."""
        return self.app.consumer_generation_id != generation or not self.flow_active

    async def _commit_offsets(self, offsets, start_new_transaction: bool = True) -> bool:
        if self.before_commit is not None:  # records still owed for these offsets go to the producer first
            await self.before_commit()
        return await super()._commit_offsets(offsets, start_new_transaction=start_new_transaction)

    def _ack_offsets(self, tp, offsets: list[int]) -> None:
        committed = self._committed_offset[tp]
        if committed is not None:
            offsets = [o for o in offsets if o >= committed]
        index = self._acked_index[tp]
        fresh = [o for o in offsets if o not in index]
        index.update(fresh)
        self._acked[tp].extend(fresh)
        self._n_acked += len(fresh)

    _fail_at: int = 0
    _slow_by: float = 0.0

    def _track_position(self, tp) -> None:
        """After a batch of `tp`: Faust's monitor and `on_position` (consumer lag) learn where it stands."""
        highwater = self.highwater(tp)
        self.app.monitor.track_tp_end_offset(tp, highwater)
        if self.on_position is not None and tp.topic in self.batch_topics:
            self.on_position(tp, self._read_offset[tp], highwater)

    async def _apply(self, tp, batch: list, generation) -> bool:
        """Hand one partition's batch to the handler and acknowledge it; True when a rebalance came first."""
        async with self.applying:  # a rebalance waits for the batch (on_partitions_revoked)
            if self._rebalanced_since(generation):
                return True
            if self._fail_at and batch[0].key is not None:  # counts batches of keyed records
                self._fail_at -= 1
                if not self._fail_at:
                    raise RuntimeError(f"fault injected by {FAULT_ENV}")
            await self.batch_handler(tp, batch)
            self._ack_offsets(tp, [r.offset for r in batch])
        if self._slow_by and batch[0].key is not None:
            await asyncio.sleep(self._slow_by)  # outside the lock: a rebalance need not wait for it
        return False

    async def _drain_messages(self, fetcher) -> None:  # the hot loop
        batch_topics = self.batch_topics
        callback = self.callback
        to_message = self._to_message
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        self._fail_at = int(os.environ.get(FAULT_ENV) or 0)
        self._slow_by = float(os.environ.get(SLOW_ENV) or 0)
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                records, active = await self._wait_next_records(1.0)
                await asyncio.sleep(0)
                if self.should_stop or not self.flow_active:
                    continue
                if not records and not (self._aligner is not None and self._aligner.held):
                    continue  # (records held wait for a partition at most MAX_WAIT_S: look again)
                generation = self.app.consumer_generation_id
                aligned = self.aligned_topics
                stale = False
                for tp, batch in records.items():
                    if active is not None and tp not in active and tp not in self._buffered_partitions:
                        continue
                    next_offset = read_offset.get(tp)  # the next offset to read (Faust seeds it on seek)
                    if next_offset is not None:
                        batch = [r for r in batch if r.offset >= next_offset]
                    if not batch:
                        continue
                    if tp.topic in aligned:
                        self.aligner.offer(tp, batch)  # applied below, in event-time order
                        continue
                    if tp.topic in batch_topics:
                        stale = await self._apply(tp, batch, generation)
                    elif not (stale := self._rebalanced_since(generation)):
                        # changelog recovery and anything else Faust routes itself
                        if self.on_changelog_batch is not None:
                            self.on_changelog_batch(tp, len(batch))
                        for record in batch:
                            await callback(to_message(tp, record))
                    if stale:
                        break
                    read_offset[tp] = batch[-1].offset + 1
                    self._track_position(tp)
                if aligned and not stale and self._aligner is not None:
                    partitions = [tp for tp in self.assignment() if tp.topic in aligned]
                    for tp, batch in self._aligner.release(partitions, self._caught_up, time.monotonic()):
                        if await self._apply(tp, batch, generation):
                            break
                        read_offset[tp] = batch[-1].offset + 1
                        self._track_position(tp)
                    else:
                        self._pause_held()
                if self.after_fetch is not None:
                    await self.after_fetch()
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:  # not a record's fault (those are dead letters): the worker cannot go on
            stop_for_good(f"the consumer loop failed ({type(exc).__name__}: {exc})", exc)


def install(app, handler: BatchHandler, topics, bootstrap: str, before_commit=None, after_fetch=None,
            on_changelog_batch=None, on_position=None, on_revoked=None, aligned_topics=()) -> None:
    """Make `app` consume with BatchConsumer, feeding `handler` the batches of `topics`.

    `before_commit` runs before every offset commit, `after_fetch` after the batches of one fetch,
    `on_changelog_batch(tp, count)` for each batch of records Faust handles itself (changelogs),
    `on_position(tp, next offset, high watermark)` after each batch of `topics`, `on_revoked(tps)` once
    partitions are taken away; the batches of `aligned_topics` (some of `topics`) are applied in
    event-time order across their partitions (stream.runtime.alignment).
    """
    BatchConsumer.batch_handler = staticmethod(handler)
    BatchConsumer.before_commit = staticmethod(before_commit) if before_commit else None
    BatchConsumer.after_fetch = staticmethod(after_fetch) if after_fetch else None
    BatchConsumer.on_changelog_batch = staticmethod(on_changelog_batch) if on_changelog_batch else None
    BatchConsumer.on_position = staticmethod(on_position) if on_position else None
    BatchConsumer.on_revoked = staticmethod(on_revoked) if on_revoked else None
    BatchConsumer.bootstrap = bootstrap
    BatchConsumer.batch_topics = frozenset(topics)
    BatchConsumer.aligned_topics = frozenset(aligned_topics) & frozenset(topics)
    app.transport.Consumer = BatchConsumer
