"""Generic stage plumbing: decode a record batch, route marks, dead-letter bad input.

A stage owns some topics and one or more state stores. For every fetched
batch of one topic-partition the runner decodes the messages, normalises
source rows (`contract.rows.normalise`), sends bad ones to the dataset's
dead-letter topic with the reason and origin, groups the good ones by key and
hands them to the stage. Marks split the batch: what came before a mark is
applied before the mark is counted.

No record can stop a partition. Applying a batch is a unit of work: if any
exception comes out of the stage, its state writes, snapshots and records are
taken back (`store.Journal`) and the batch is applied again key by key, then
record by record, so that only the records that fail become dead letters,
with the exception's type (as Kafka Streams' processing exception handler
does). Nothing in a stage's `apply` talks to the broker or Redis, so whatever
fails there is the input's fault (or a bug it reveals), never an outage.
"""
from __future__ import annotations

import base64
import hashlib
import logging
from collections import defaultdict

import msgspec
import orjson

from contract import tables, wire
from contract.rows import BadRow, normalise
from stream.logic.marks import record_mark, run_complete
from stream.runtime.context import StageContext
from stream.runtime.sink import ARRIVED_MS, now_iso

log = logging.getLogger(__name__)


MARKS_KEY = "__marks__:"  # state key prefix of a stage partition's end-of-run marks
# Header of the records a stage sends downstream: when the oldest source record behind them reached Kafka
# (epoch ms), so that the last stage can time its snapshots from the source (Metrics.event_to_snapshot).
ARRIVED_HEADER = "fsp-arrived"


def arrival_ms(records: list) -> int | None:
    """When the oldest source record behind `records` reached Kafka: their ARRIVED_HEADER, else their own
    timestamp (the producer's create time, or the broker's append time)."""
    oldest = None
    for record in records:
        at = wire.header_int(record.headers, ARRIVED_HEADER) or record.timestamp
        if at is not None and at > 0 and (oldest is None or at < oldest):
            oldest = at
    return oldest


class Outbox:
    """Records to send this batch, grouped by (topic, key): one message per key.

    Owed records (stream.logic.owed) are kept apart: the relay sends them once
    the state writes of the batch are acknowledged.
    """

    def __init__(self):
        self.by_topic: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        self.owed: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        self.owed_upto = 0
        # (topic, table, partition) -> (event time, replay run or None)
        self.progress: dict[tuple[str, str, int], tuple[int, str | None]] = {}

    def note_progress(self, topic: str, table: str, partition: int, ts_us: int, run: str | None = None) -> None:
        """Broadcast to every partition of `topic`, after this batch's owed records, that rows of
        `table`'s `partition` are applied up to `ts_us` (`run`: the replay they come from, if any)."""
        key = (topic, table, partition)
        known = self.progress.get(key)
        if known is None or ts_us > known[0] or run != known[1]:
            self.progress[key] = (max(ts_us, known[0]) if known else ts_us, run)

    def owe(self, tag: list, messages) -> None:
        for topic, key, record in messages:
            self.owed[topic][key].append(record)
        self.owed_upto = max(self.owed_upto, tag[1])

    def add(self, topic: str, key: str, record: dict) -> None:
        self.by_topic[topic][key].append(record)

    def extend(self, topic: str, pairs) -> None:
        for key, record in pairs:
            self.by_topic[topic][key].append(record)

    def merge(self, other: Outbox) -> None:
        """Take what a finished unit of work queued."""
        for topic, by_key in other.by_topic.items():
            mine = self.by_topic[topic]
            for key, records in by_key.items():
                mine[key].extend(records)
        for topic, by_key in other.owed.items():
            mine = self.owed[topic]
            for key, records in by_key.items():
                mine[key].extend(records)
        self.owed_upto = max(self.owed_upto, other.owed_upto)
        for (topic, table, partition), (ts_us, run) in other.progress.items():
            self.note_progress(topic, table, partition, ts_us, run)


class Stage:
    """Subclasses set `name`, `topics`, `downstream` and implement the hooks; the end-of-run marks a stage
    partition waits for follow from the stages' topics and downstreams (`expected_marks`)."""

    name: str
    dataset: str
    topics: list[str]
    downstream: list[str] = []
    # topics whose partitions feed one event-time clock: read at the same pace (stream.runtime.alignment)
    aligned_topics: list[str] = []

    @staticmethod
    def is_source(topic: str) -> bool:
        """Source topics carry rows to normalise; internal ones carry records of another stage."""
        return ".internal." not in topic

    marks_table: str  # the store that also keeps this stage's end-of-run marks
    snapshot_store: str | None = None  # the store whose keys have snapshots in Redis, if any

    def write_snapshot(self, key: str, state) -> None:
        """Queue the key's snapshot as its state has it (after apply, and again when Redis lost its data;
        `state`: what the store holds for the key)."""

    def __init__(self, context: StageContext):
        self.context = context  # the narrow side of the runtime a stage may use (stream.runtime.context)

    def decode(self, topic: str, value: bytes):
        """("rows", items), ("mark", mark) or ("bad", reason) for one message of `topic` (contract.wire);
        a stage whose records are typed decodes them itself."""
        return wire.decode(value)

    async def apply(self, partition: int, topic: str, groups: dict[str, list], outbox: Outbox) -> None:
        raise NotImplementedError

    def applied_up_to(self, partition: int, topic: str, ts_us: int, outbox: Outbox) -> None:
        """A segment of a source topic's partition is applied; `ts_us` is the oldest event time of its last
        message. The messages after it start no earlier: a partition's messages come in the order of
        their first row's time (a replay packs one key's rows of a stretch of time into one message and
        sends a stretch's messages in the order their keys first appear; a live producer sends rows as
        they happen), though one message's rows may be older than the message before's last row. So
        rows older than `ts_us` are all applied: what a progress mark may say (stream.logic.progress)."""

    def on_progress(self, partition: int, topic: str, mark: dict, outbox: Outbox) -> None:
        """A progress mark, after what came before it in the partition is applied: from the replay in a
        source topic, or from the stage upstream (after the records it sent before it); ignored unless
        the stage keeps event time by it."""

    def reads_progress(self) -> bool:
        """Whether progress marks tell this stage anything (it has an `on_progress` of its own)."""
        return type(self).on_progress is not Stage.on_progress

    run_end_store: str | None = None  # the store whose keys the end of a run visits, if any

    async def before_run_end(self, partition: int) -> None:
        """Runs once before the keys are visited at the end of a run."""

    def run_end_changes(self, state, again: bool) -> bool:
        """Whether `end_run_for` may change this key's state or send anything: the end of a run visits
        only those keys, each in a unit of work of its own (default: every key)."""
        return True

    notes_run_end_keys = False  # whether the stage notes the keys the end of a run may change (below)

    def run_end_keys(self, partition: int) -> list[str] | None:
        """The keys of `run_end_store` the end of a run visits, when the stage has noted them as it wrote
        them (stream.logic.run_end_index), else None: every key of the partition."""
        return None

    def run_end_visited(self, partition: int, left: set[str]) -> None:
        """The end of a run is over: `left`, the keys it may still change (of all it visited: every key it
        noted, or every key of the partition)."""

    def end_run_for(self, partition: int, key: str, state, outbox: Outbox, again: bool = False) -> None:
        """Close what the end of a run closes (windows) for one key of `run_end_store`, before the mark
        moves on.

        `again`: the run's end mark came back after the run completed (a crash before the input was
        committed); what the first completion sent may be lost and must be sent again, but windows
        opened since (live data) must not be closed.
        """


def _changes_at_end(stage: Stage, state, again: bool) -> bool:
    """`stage.run_end_changes`; True for a state the check cannot read (the unit of work that ends it fails
    and reports it, and it is visited again)."""
    try:
        return stage.run_end_changes(state, again)
    except Exception:
        return True


def expected_marks(stages: list[Stage], partitions: int) -> dict[Stage, int]:
    """The end-of-run marks each stage's partition waits for, from the declared graph: one from the replay
    per source topic it reads (into its own partition), and one from every partition of every stage that
    sends to an internal topic it reads (each passes its mark on to every partition downstream)."""
    senders = {topic: sum(topic in stage.downstream for stage in stages) for stage in stages for topic in stage.topics}
    return {stage: sum(1 if stage.is_source(topic) else partitions * senders[topic] for topic in stage.topics)
            for stage in stages}


class StageRunner:
    """Feeds record batches of one topic-partition into the stage that owns the topic."""

    def __init__(self, runtime, stages: list[Stage]):
        self.runtime = runtime
        self.by_topic = {topic: stage for stage in stages for topic in stage.topics}
        self.marks_expected = expected_marks(stages, runtime.partitions)
        # the source topics whose progress marks split a batch: where the stage keeps event time by them
        self.split_at_progress = {topic for stage in stages if stage.reads_progress()
                                  for topic in stage.topics if stage.is_source(topic)}

    async def handle(self, tp, records: list) -> None:
        stage = self.by_topic.get(tp.topic)
        if stage is None:
            return
        self.runtime.metrics.batches.labels(stage.name).inc()
        self.runtime.metrics.batch_records.labels(stage.name).inc(len(records))
        arrived = ARRIVED_MS.set(arrival_ms(records))  # read by the sink and by the records sent on
        try:
            await self._handle(stage, tp, records)
        finally:
            ARRIVED_MS.reset(arrived)

    async def _handle(self, stage: Stage, tp, records: list) -> None:
        outbox = Outbox()
        segment: list = []
        split_at_progress = tp.topic in self.split_at_progress
        for record in records:
            try:
                kind, payload = (stage.decode(tp.topic, record.value) if record.value is not None
                                 else ("bad", "empty value"))
            except wire.BadMessage as exc:
                kind, payload = "bad", str(exc)
            if kind == "mark" and payload.get(wire.MARK_FIELD) == wire.PROGRESS:
                if split_at_progress:  # the replay's: about the rows before it, applied first
                    await self._apply_segment(stage, tp, segment, outbox)
                    segment = []
                # No split where the stage ignores the marks (a key's rows on both sides of one are folded in
                # one write: split there, a storj replay wrote ~35 % more states), nor between stages (a
                # key's records of the whole batch are folded before its event time moves, and records
                # after the mark are newer than it).
                stage.on_progress(tp.partition, tp.topic, payload, outbox)
            elif kind == "mark":
                await self._apply_segment(stage, tp, segment, outbox)
                segment = []
                await self._on_mark(stage, tp, record, payload, outbox)
            elif kind == "bad":
                self.runtime.dead_letter(stage.dataset, payload, tp, record)
            else:
                segment.append((record, payload))
        await self._apply_segment(stage, tp, segment, outbox)
        await self.runtime.send_outbox(outbox)
        # snapshots go to Redis once per fetch (all its batches) and before every commit, or sooner when
        # many are queued (see worker.py)
        await self.runtime.flush_sink_if_full()

    async def _apply_segment(self, stage: Stage, tp, segment: list, outbox: Outbox) -> None:
        if not segment:
            return
        groups: dict[str, list] = defaultdict(list)
        origins: dict[str, list] = defaultdict(list)  # per key: (Kafka record, raw row) of each item
        reached = None  # the oldest event time of the last message with one (see Stage.applied_up_to)
        if stage.is_source(tp.topic):
            spec = tables.table_of_topic(tp.topic)
            partition_of, partition = self.runtime.partition_of, tp.partition
            for record, rows in segment:
                message_key = record.key.decode("utf-8", "replace") if record.key is not None else None
                # a message's rows share its key (a row keyed otherwise is re-routed): where the key belongs,
                # and its lists, are looked up once per message
                home = group = origin = None
                oldest = None
                for raw in rows:
                    try:
                        row = normalise(spec, raw)
                    except BadRow as exc:
                        self.runtime.dead_letter(stage.dataset, str(exc), tp, record, raw, cause="bad_row")
                        continue
                    if row.key != message_key:
                        # keyed differently or not at all (e.g. an upper-case id): re-route to the owning partition
                        self.runtime.reroute(tp.topic, row.key, raw, "key")
                        continue
                    if home is None:
                        home = partition_of(row.key.encode()) == partition
                        if home:
                            group, origin = groups[row.key], origins[row.key]
                    if not home:
                        # a producer that hashes keys otherwise (librdkafka's CRC32, a Go client): a key's state
                        # lives in one partition only, so its rows go there (SPEC §2)
                        self.runtime.reroute(tp.topic, row.key, raw, "partition")
                        continue
                    group.append(row)
                    origin.append((record, raw))
                    ts = row.ts
                    if ts is not None and (oldest is None or ts < oldest):
                        oldest = ts
                reached = reached if oldest is None else oldest
            self.runtime.metrics.events_in(stage.dataset, spec.name, sum(len(g) for g in groups.values()))
        else:
            for record, items in segment:
                key = record.key.decode("utf-8", "replace") if record.key is not None else ""
                groups[key].extend(items)
                origins[key].extend((record, item) for item in items)
        if await self._apply(stage, tp, groups, outbox) is not None:
            await self._apply_one_by_one(stage, tp, groups, origins, outbox)
        if reached is not None:
            stage.applied_up_to(tp.partition, tp.topic, reached, outbox)
            self.runtime.metrics.consumer_lag.event_time(tp.topic, tp.partition, reached)

    async def _apply(self, stage: Stage, tp, groups: dict, outbox: Outbox) -> Exception | None:
        async def apply(work: Outbox) -> None:
            await stage.apply(tp.partition, tp.topic, groups, work)

        return await self._unit_of_work(apply, outbox)

    async def _unit_of_work(self, work_on, outbox: Outbox) -> Exception | None:
        """Run `work_on(outbox)` all or nothing: after an exception its state writes, snapshots and
        records are taken back and the exception is returned (the input's fault: see the module doc)."""
        runtime = self.runtime
        savepoint = runtime.begin()
        work = Outbox()
        try:
            await work_on(work)
        except Exception as exc:
            runtime.rollback(savepoint)
            return exc
        runtime.commit()
        outbox.merge(work)
        return None

    def _report(self, stage: Stage, tp, record, raw, failed: str, exc: Exception) -> None:
        """What failed alone: a dead letter with the exception's type (origin: `record`), and a log line."""
        reason = f"{failed}: {str(exc)[:500]}"
        log.warning("%s @%s[%d]:%d (%s); dead-lettered", reason[:300], tp.topic, tp.partition, record.offset,
                    type(exc).__name__)
        self.runtime.dead_letter(stage.dataset, reason, tp, record, raw, cause="apply_error",
                                 error_type=type(exc).__name__)

    async def _end_run(self, stage: Stage, tp, mark_record, run: str, outbox: Outbox, again: bool) -> None:
        """Visit every key of the stage's partition (or those the stage noted: `run_end_keys`), each key a
        unit of work: a key that fails is taken back and reported as a dead letter (with the mark as its
        origin); the others and the run go on."""
        if stage.run_end_store is None:
            return
        await stage.before_run_end(tp.partition)
        partition = tp.partition
        store = self.runtime.store(stage.run_end_store)
        keys = None if again else stage.run_end_keys(partition)
        if keys is None:
            items = store.items_in_partition(partition)
        else:
            items = ((key, state) for key in keys if (state := store.get(partition, key)) is not None)
        notes = stage.notes_run_end_keys
        left = set()  # keys the end may still change (a failed unit of work, a window opened since: again)
        for key, state in items:
            if _changes_at_end(stage, state, again):
                async def end(work: Outbox, key=key) -> None:
                    stage.end_run_for(partition, key, store.get(partition, key), work, again)  # read again: journaled

                exc = await self._unit_of_work(end, outbox)
                if exc is not None:
                    self._report(stage, tp, mark_record, None,
                                 f"{stage.name} stage failed to end run {run} for key {key}", exc)
                if notes:
                    state = store.get(partition, key)
            if notes and state is not None and _changes_at_end(stage, state, False):
                left.add(key)
        stage.run_end_visited(partition, left)

    async def _apply_one_by_one(self, stage: Stage, tp, groups: dict, origins: dict, outbox: Outbox) -> None:
        """A batch failed: apply it key by key, and a failing key record by record; what fails alone is
        a dead letter."""
        for key, items in groups.items():
            if await self._apply(stage, tp, {key: items}, outbox) is None:
                continue
            for item, (record, raw) in zip(items, origins[key]):
                exc = await self._apply(stage, tp, {key: [item]}, outbox)
                if exc is not None:
                    self._report(stage, tp, record, raw, f"{stage.name} stage failed", exc)

    async def _on_mark(self, stage: Stage, tp, record, mark: dict, outbox: Outbox) -> None:
        partition = tp.partition
        run = str(mark.get("run"))
        store = self.runtime.store(stage.marks_table)
        key = f"{MARKS_KEY}{stage.name}:{partition}"
        seen = store.get(partition, key) or {}
        expected = self.marks_expected[stage]
        completes = record_mark(seen, run, str(mark.get("origin")), expected)
        if not completes and not run_complete(seen, run, expected):
            store.put(partition, key, seen)
            return
        # Complete now, or a mark redelivered after completion: a crash may have lost what completion sent
        # (end-of-run records, the marks downstream), so that is sent again; each step is idempotent.
        await self._end_run(stage, tp, record, run, outbox, again=not completes)
        await self.runtime.send_outbox(outbox)
        outbox.by_topic.clear()
        outbox.owed.clear()
        outbox.progress.clear()
        # after the run's end writes, in the same changelog partition: durable marks imply durable windows
        store.put(partition, key, seen)
        await self.runtime.relay.drain()  # the mark must follow every record sent before it
        origin = f"{stage.name}:{partition}"
        for topic in stage.downstream:
            await self.runtime.broadcast_mark(topic, run, origin)
        self.runtime.sink.status(stage.dataset, f"{run}:{stage.name}:{partition}", {"at": now_iso()})
        log.info("stage %s partition %d finished run %s", stage.name, partition, run)


def _shown(value):
    """A dead letter's row as JSON: a typed record as its JSON, anything else orjson cannot write as text."""
    return wire.struct_json(value) if isinstance(value, msgspec.Struct) else str(value)


MAX_ORIGINAL_BYTES = 256 * 1024  # of the original message kept in a dead letter
MAX_ROW_BYTES = 64 * 1024  # of the row kept beside it


def dead_letter_value(reason: str, tp, record, row=None, **extra) -> bytes:
    """A dead letter: the reason, where it came from and the original message.

    It always fits the broker's limit (Apache Kafka's default is 1 MB): the original is kept up to
    MAX_ORIGINAL_BYTES (as text when it is UTF-8, else base64), with its size and SHA-256 so that a
    truncated one can still be told apart; the row only when it encodes within MAX_ROW_BYTES.
    """
    original = record.value or b""
    kept = original[:MAX_ORIGINAL_BYTES]
    try:
        text, b64 = kept.decode("utf-8"), None
    except UnicodeDecodeError:
        text, b64 = None, base64.b64encode(kept).decode()
    try:
        row_json = orjson.dumps(row, default=_shown) if row is not None else None
    except (TypeError, orjson.JSONEncodeError):
        row_json = None
    letter = {
        "reason": reason[:2000],
        **extra,
        "origin": {"topic": tp.topic, "partition": tp.partition, "offset": record.offset},
        "row": orjson.Fragment(row_json) if row_json is not None and len(row_json) <= MAX_ROW_BYTES else None,
        "original": text,
        "original_bytes": len(original),
        "original_sha256": hashlib.sha256(original).hexdigest(),
        "truncated": len(kept) < len(original),
    }
    if b64 is not None:
        letter["original_b64"] = b64
    return orjson.dumps(letter)
