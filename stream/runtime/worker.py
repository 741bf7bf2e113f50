"""The stream worker: a Faust app whose consumer feeds record batches to the stages.

Faust provides the consumer group, partition assignment, offset commits and
changelog-backed tables (recovered on start); the stages hold the logic; the
sink writes snapshots to Redis. Run it with `fsp worker`.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

import faust
import orjson
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor

import datasets as registry
from common.config import DEFAULT_STATE_DIR, number_in_range
from common.gc_tuning import tune_gc
from common.topics import ensure_topics
from contract import keys, tables, wire
from stream.logic import owed
from stream.runtime import consumer, state_backends, unknown_topics
from stream.runtime.context import StageContext
from stream.runtime.expiry import SWEEP_EVERY_S, ExpirySweeper
from stream.runtime.metrics import AGE_BUCKETS_S, Metrics
from stream.runtime.partitioning import KeyPartitioner
from stream.runtime.relay import Relay
from stream.runtime.sending import RecordSender, distinct_futures
from stream.runtime.sink import ARRIVED_MS, SnapshotSink
from stream.runtime.stages import ARRIVED_HEADER, StageRunner, dead_letter_value
from stream.runtime.store import DICTS, Journal, StateStore

log = logging.getLogger("fsp.worker")

REDIS_RETRY_MAX_S = 30.0
SINK_FLUSH_EVERY = 500  # queued Redis writes that trigger a flush before the fetch's end

# Faust's Kafka consumer runs in a thread of its own; each fetch it hands over waits for the GIL, which
# CPython passes between busy threads every 5 ms by default. At 0.5 ms, live latency p99 (1,000 events/s,
# 3 runs of 15 s each way) went from 55-68 ms to 49-60 ms; throughput did not change.
GIL_SWITCH_INTERVAL_S = 0.0005

# No standby replicas (Faust's default is 1; Kafka Streams' is 0). Faust feeds a standby's changelog
# records through a queue that it clears when it resumes the flow at the end of a recovery; records
# fetched in between are dropped for good while later ones move the standby's offset on, so a standby
# that takes over is missing keys (the rebalance-then-kill fault test caught it: a whole partition's
# projects recovered without their state and counted again). Without standbys a worker that takes a
# partition over recovers it as an active one, from its own state on disk and the changelog's tail,
# which a recovery reads to the end before any input is applied. Following the others' changelogs
# also cost each worker ~19 % more CPU.
STANDBY_REPLICAS = 0


def dlq_topic(dataset: str) -> str:
    return f"{dataset}.dlq"


def all_topics(datasets) -> list[str]:
    """Every topic of the `datasets` (names): sources, internal, dead letters."""
    names = []
    for dataset in datasets:
        names += [*tables.topics(dataset), *registry.get(dataset).internal_topics, dlq_topic(dataset)]
    return names


class Runtime:
    """What the stages share: stores, sink, producer, metrics."""

    def __init__(self, app: faust.App, sink: SnapshotSink, partitions: int,
                 store_kind: str = state_backends.MEMORY):
        self.app = app
        self.store_kind = store_kind
        self.sink = sink
        self.partitions = partitions
        self.metrics = Metrics()
        self.tables: dict[str, faust.Table] = {}
        self._stores: dict[str, StateStore] = {}
        self._pending_sends: list = []
        self.partition_of = KeyPartitioner(partitions)  # internal topics have `partitions` partitions
        self.relay = Relay()
        self.sender = RecordSender(app)
        self.journal = Journal()  # state writes of the unit of work in progress (see stages.StageRunner)
        self.stages: list = []
        self._rewrites = 0  # times Redis was found to have lost its data since the last rewrite began
        self._rewrite_task: asyncio.Future | None = None
        self._redis_failures = 0  # failed Redis writes in a row
        self._redis_retry_at = 0.0  # monotonic time before which no Redis write is tried

    def add_table(self, name: str, codec=DICTS) -> None:
        """A table in the app's store (one of stream.runtime.state_backends); `codec`: how its states make
        records (store.StructCodec for typed states, else dicts)."""
        self.tables[name] = self.app.Table(name, partitions=self.partitions, key_type=bytes, value_type=bytes,
                                           options=state_backends.table_options(self.store_kind))
        self._stores[name] = StateStore(self.tables[name], self._send, self.journal,
                                        record_size=self.metrics.state_record_size(name), writer=self.writer,
                                        codec=codec)

    def add_dataset(self, dataset) -> list:
        """The dataset's state tables, and its stages, each given the dataset's StageContext. A table's states
        are the type its stage declares (KeyedStage.state_codec), else dicts."""
        codecs = {stage.state_table: stage.state_codec for stage in dataset.stages
                  if getattr(stage, "state_codec", None) is not None}
        for name in dataset.state_tables:
            self.add_table(name, codecs.get(name, DICTS))
        context = StageContext(self, dataset.name)
        return [stage_cls(context) for stage_cls in dataset.stages]

    def writer(self) -> str:
        """Who writes state now: this process in this consumer generation (see store.Beside)."""
        return f"{self.relay.incarnation}:{self.app.consumer_generation_id}"

    def beside(self, table: str, partition: int, state):
        """The entries kept beside a key's `state` in `table` (store.Beside): what the store handed out for
        it (a dict, or a store.Entry in a typed table)."""
        return self._stores[table].beside(partition, state)

    def count_changelog_records(self, tp, count: int) -> None:
        """How much of the changelogs recovery reads: with state on disk, only their tails."""
        self.metrics.changelog_records_read.labels(tp.topic).inc(count)

    def store(self, name: str) -> StateStore:
        return self._stores[name]

    def _send(self, topic: str, key: str | None, value: bytes, partition: int | None = None, on_sent=None) -> None:
        """Queue a record; `on_sent(future, at)` is called once it is handed over (see _drain_sends)."""
        self._pending_sends.append((topic, key.encode() if key is not None else None, value, partition, on_sent, None))

    async def _drain_sends(self) -> list:
        """Hand queued sends to the producer; return futures that are done when every record is delivered
        (most records share their batch's: see RecordSender.append). `on_sent(future, at)`: the record's
        offset is `at` past the future's result's."""
        sends, self._pending_sends = self._pending_sends, []
        placed = await self.sender.send_all((topic, key, value, partition, headers)
                                            for topic, key, value, partition, _, headers in sends)
        for (_topic, _key, _value, _partition, on_sent, _headers), (future, at) in zip(sends, placed):
            if on_sent is not None:
                on_sent(future, at)
        return distinct_futures(placed)

    def _messages(self, by_topic: dict) -> list[tuple[str, bytes, bytes, int, list | None]]:
        """One message per (topic, key), or a few in order when it would pass the broker's limit:
        (topic, key, records as one value, the key's partition, headers: when their input arrived)."""
        arrived = ARRIVED_MS.get()
        headers = None if arrived is None else [(ARRIVED_HEADER, str(arrived).encode())]
        messages = []
        for topic, by_key in by_topic.items():
            for key, records in by_key.items():
                raw_key = key.encode()
                partition = self.partition_of(raw_key)
                for value in wire.encode_rows_within(records):
                    messages.append((topic, raw_key, value, partition, headers))
        return messages

    async def send_outbox(self, outbox) -> None:
        self._pending_sends.extend((topic, key, value, partition, None, headers)
                                   for topic, key, value, partition, headers in self._messages(outbox.by_topic))
        writes = await self._drain_sends()
        if outbox.owed or outbox.progress:
            # progress marks go last, through the relay like the owed records: a receiver that reads one
            # has read every record the batch sent it before
            marks = [(topic, None, wire.encode_progress(table, source, ts_us, run), partition, None)
                     for (topic, table, source), (ts_us, run) in outbox.progress.items()
                     for partition in range(self.partitions)]
            self.relay.after(writes, self._messages(outbox.owed) + marks, outbox.owed_upto)

    async def broadcast_mark(self, topic: str, run: str, origin: str) -> None:
        for partition in range(self.partitions):
            self._send(topic, None, wire.encode_mark(run, origin), partition)
        await self._drain_sends()

    def begin(self) -> tuple[int, int]:
        """Open a unit of work: state writes, queued sends and snapshots from here on can be taken back."""
        self.journal.begin()
        return len(self._pending_sends), self.sink.pending

    def rollback(self, savepoint: tuple[int, int]) -> None:
        self.journal.rollback()
        del self._pending_sends[savepoint[0]:]
        self.sink.rollback(savepoint[1])

    def commit(self) -> None:
        self.journal.commit()

    def reroute(self, topic: str, key: str, row: dict, why: str) -> None:
        """Re-publish a row to the partition its normalised key belongs to (the stream's placement)."""
        self.metrics.rerouted.labels(why).inc()
        self._send(topic, key, orjson.dumps(row), self.partition_of(key.encode()))

    def dead_letter(self, dataset: str, reason: str, tp, record, row=None, cause: str = "bad_message",
                    **extra) -> None:
        """`cause`: bad_message (not a message of the format), bad_row (fails the contract) or
        apply_error (a stage failed on it)."""
        self.metrics.dead_letters.labels(dataset, cause, tp.topic.split(".", 1)[-1]).inc()
        self._send(dlq_topic(dataset), None, dead_letter_value(reason, tp, record, row, cause=cause, **extra))
        self.sink.count(dataset, "dead_letters")

    def owe(self, entry: owed.Owes, messages: list, outbox, spill: owed.Spill | None = None) -> None:
        """Keep delta records with the key's state (its store `entry`'s `owed`) and queue them for the relay
        (stream.logic.owed)."""
        if messages:
            tag = self.relay.next_tag()
            owed.remember(entry, tag, messages, spill)
            outbox.owe(tag, messages)

    async def before_commit(self) -> None:
        """Owed records go to the producer (whose flush then delivers them) and snapshots to Redis, so that
        a committed input has its outputs out; with Redis away the snapshots stay queued (see flush_sink)."""
        await self.relay.drain()
        await self.flush_sink()

    async def flush_sink_if_full(self) -> None:
        """A large fetch (a replay) writes as it goes: one pipeline per fetch would hold every snapshot
        of it in memory at once (measured: peak RSS 464 MB instead of 263 MB on storj scale 1)."""
        if self.sink.pending >= SINK_FLUSH_EVERY:
            await self.flush_sink()

    async def flush_sink(self, check: bool = False) -> None:
        """Write queued snapshots (with `check`, ask Redis whether it lost our data even when none are).

        Redis away is no input's fault: the snapshots stay queued, consumption goes on, and the writes
        are tried again with a backoff doubling from 0.5 s to REDIS_RETRY_MAX_S, said once in the log
        when they start failing and once when Redis is back."""
        now = time.monotonic()
        if now < self._redis_retry_at:
            return
        try:
            await (self.sink.check() if check and not self.sink.pending else self.sink.flush())
            self.metrics.redis_up.set(1)
        except Exception as exc:
            self.metrics.redis_up.set(0)
            self.metrics.redis_errors.inc()
            self._redis_failures += 1
            self._redis_retry_at = now + min(0.5 * 2 ** (self._redis_failures - 1), REDIS_RETRY_MAX_S)
            if self._redis_failures == 1:
                log.warning("Redis write failed (%s); %d snapshot writes kept, retried with backoff",
                            exc, self.sink.pending)
            return
        if self._redis_failures:
            log.warning("Redis is back after %d failed writes", self._redis_failures)
            self._redis_failures = 0
        if self.sink.lost_data:
            self.sink.lost_data = False
            self._rewrites += 1
            if self._rewrite_task is None or self._rewrite_task.done():
                self._rewrite_task = asyncio.ensure_future(self._write_snapshots())

    async def _write_snapshots(self) -> None:
        """Redis restarted empty or was flushed: write every snapshot this worker owns again from its
        state, version unchanged, a few hundred at a time while consumption goes on. Session lists are
        not in the state and stay as they are."""
        ARRIVED_MS.set(None)  # this task's own: no input arrival behind these writes
        while self._rewrites:
            self._rewrites = 0
            log.warning("Redis lost its data: rewriting the snapshots of this worker's partitions")
            assigned = self.app.consumer.assignment()
            written = 0
            for stage in self.stages:
                if stage.snapshot_store is None:
                    continue
                owned = {tp.partition for tp in assigned if tp.topic in stage.topics}
                for key, state in self.store(stage.snapshot_store).items_in_partitions(owned):
                    stage.write_snapshot(key, state)
                    written += 1
                    if self.sink.pending >= SINK_FLUSH_EVERY:
                        await self.flush_sink()
            await self.flush_sink()
            self.metrics.snapshots_rewritten.inc(written)
            log.warning("Redis lost its data: %d snapshots rewritten", written)


def quiet_logs(level: str = "WARNING") -> None:
    """Faust leaves the root logger at DEBUG; its and aiokafka's chatter costs throughput."""
    for name in ("aiokafka", "faust", "mode", "kafka", "asyncio"):
        logging.getLogger(name).setLevel(level)


SESSION_TIMEOUT_ENV = "FSP_GROUP_SESSION_TIMEOUT_S"


def group_session_timeout_s() -> float:
    """How long the group waits for a silent worker before its partitions move (the consumer's session
    timeout; heartbeats go every second). A worker that joins waits on it: on the embedded broker
    (`python -m bench.restart`) a worker was ready 8.0 s after its start and 22.8 s after a kill -9 of
    the one before with 10 s, 4.8 s and 5.3 s with 4 s. Apache Kafka refuses values under its
    group.min.session.timeout.ms (6 s by default); short values also move partitions away from a worker
    that merely stalls."""
    return number_in_range(SESSION_TIMEOUT_ENV, 10, 3, 300, parse=float, unit="seconds")


def build_app(kafka_broker: str, redis_url: str, prefix: str = "", partitions: int = 4,
              datasets=None, app_id: str = "usage-features", sessions_cap: int = 100,
              store_kind: str = state_backends.ROCKSDB, state_dir=DEFAULT_STATE_DIR, feature_ttl=None):
    """`datasets`: the names of those to process (default: every one); `store_kind`: where keyed state lives
    (state_backends.ROCKSDB under `state_dir`, or MEMORY); `feature_ttl`: per dataset, seconds a snapshot
    lives after its last write (FEATURE_TTL)."""
    datasets = tuple(datasets or registry.names())
    ensure_topics(kafka_broker, all_topics(datasets), partitions)
    from common.kafka_security import faust_credentials

    app = faust.App(
        app_id,
        broker=[f"kafka://{b}" for b in kafka_broker.split(",")],
        broker_credentials=faust_credentials(),  # SASL / TLS from KAFKA_SECURITY_PROTOCOL etc.
        store=state_backends.store_url(store_kind),
        datadir=str(state_dir),  # RocksDB's files: {state_dir}/v1/tables/{table}-{partition}.db
        topic_partitions=partitions,
        topic_replication_factor=1,
        broker_rebalance_timeout=3,
        broker_session_timeout=group_session_timeout_s(),
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        table_cleanup_interval=3600,
        table_standby_replicas=STANDBY_REPLICAS,
        broker_commit_interval=1.0,
        producer_linger_ms=5,
        producer_max_batch_size=1024 * 1024,
        stream_buffer_maxsize=100_000,
    )
    sink = SnapshotSink(redis_url, prefix, sessions_cap, ttl_s=feature_ttl)
    runtime = Runtime(app, sink, partitions, store_kind)
    sink.on_written = runtime.metrics.snapshots_written
    app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(runtime.metrics.registry, "faust"))
    stages = []
    for dataset in map(registry.get, datasets):
        stages += runtime.add_dataset(dataset)
    runtime.stages = stages
    runner = StageRunner(runtime, stages)
    for stage in stages:
        for topic in stage.topics:
            app.topics.add(app.topic(topic, key_serializer="raw", value_serializer="raw"))
    lag = runtime.metrics.consumer_lag
    consumer.install(app, runner.handle, runner.by_topic, kafka_broker, before_commit=runtime.before_commit,
                     after_fetch=runtime.flush_sink, on_changelog_batch=runtime.count_changelog_records,
                     on_position=lambda tp, offset, highwater: lag.position(tp.topic, tp.partition, offset, highwater),
                     on_revoked=lag.forget,
                     aligned_topics=[topic for stage in stages for topic in stage.aligned_topics])

    @app.task
    async def relay_owed_records() -> None:
        await runtime.relay.run(runtime.sender)

    unknown = unknown_topics.UnknownTopicCounter(runtime, kafka_broker, datasets, all_topics(datasets))

    @app.timer(unknown_topics.check_every_s())
    async def count_unknown_topics() -> None:
        """Messages to `{dataset}.*` topics no stage reads are counted and said, not ignored silently."""
        await unknown.check()

    crashed_checks: dict[str, int] = {}

    @app.timer(2.0)
    async def exit_when_consumption_stopped() -> None:
        """Faust can log its fetcher or consumer as crashed and carry on consuming nothing: stop instead,
        so that a supervisor restarts the worker. A fetcher restarted by a rebalance is crashed for a
        moment: only one still crashed at three checks in a row counts."""
        for name, service in (("fetcher", app._fetcher), ("consumer", app.consumer), ("producer", app.producer)):
            crashed_checks[name] = crashed_checks.get(name, 0) + 1 if service.crashed and not app.rebalancing else 0
            if crashed_checks[name] >= 3:
                consumer.stop_for_good(f"Faust's {name} crashed ({service.crash_reason!r})")

    @app.timer(HEARTBEAT_S)
    async def beat() -> None:
        """Say in Redis that this worker is alive: `replay --wait` fails fast when none is."""
        try:
            await runtime.sink.redis.hset(keys.workers_key(prefix), runtime.sink.writer,
                                          orjson.dumps({"at": time.time(), "datasets": list(datasets),
                                                        "lag": runtime.metrics.consumer_lag.summary()}))
        except Exception:  # Redis away: its outage is reported by the snapshot writes
            pass

    sweeper = ExpirySweeper(sink.redis, prefix, feature_ttl or {}, datasets)
    if sweeper.kinds:
        @app.timer(SWEEP_EVERY_S)
        async def forget_expired_entities() -> None:
            """Expired snapshots leave the entity and freshness sets (stream.runtime.expiry)."""
            try:
                await sweeper.sweep()
            except Exception as exc:  # Redis away: the snapshot writes report it
                log.debug("expiry sweep failed: %s", exc)

    @app.timer(SNAPSHOT_AGES_EVERY_S)
    async def count_snapshot_ages() -> None:
        """The snapshot age histogram (Metrics.snapshot_ages): a few ZCOUNTs per entity kind."""
        try:
            await count_ages(runtime, prefix, datasets)
        except Exception as exc:  # Redis away: the snapshot writes report it
            log.debug("counting snapshot ages failed: %s", exc)

    @app.timer(1.0)
    async def retry_redis_writes() -> None:
        """Snapshots queued while Redis was away are written once it is back, even with no new events;
        a Redis that lost its data gets every snapshot back (Runtime.flush_sink)."""
        await runtime.flush_sink(check=True)

    return app, runtime


HEARTBEAT_S = 2.0  # how often a worker says it is alive (contract.keys.workers_key)
SNAPSHOT_AGES_EVERY_S = 5.0  # a few ZCOUNTs per entity kind: cheap whatever the number of entities


async def count_ages(runtime: Runtime, prefix: str, datasets, now: float | None = None) -> None:
    """Per entity kind, how many entities' features last changed at most each AGE_BUCKETS_S ago, and all."""
    now = time.time() if now is None else now
    kinds = [(dataset, entity) for dataset in datasets for entity in registry.get(dataset).snapshot_entities]
    pipe = runtime.sink.redis.pipeline(transaction=False)
    for dataset, entity in kinds:
        fresh = keys.freshness_key(prefix, dataset, entity)
        for bound in AGE_BUCKETS_S:
            pipe.zcount(fresh, f"{now - bound:.6f}", "+inf")
        pipe.zcard(fresh)
    counts = await pipe.execute()
    width = len(AGE_BUCKETS_S) + 1
    for n, (dataset, entity) in enumerate(kinds):
        runtime.metrics.snapshot_ages.update(dataset, entity, counts[n * width:(n + 1) * width])


def changelog_end_offsets(kafka_broker: str, tps) -> dict:
    """{(topic, partition): end offset} of changelog partitions; 0 for a topic the broker does not have."""
    from kafka import KafkaConsumer, TopicPartition

    from common.kafka_security import kafka_python_args

    client = KafkaConsumer(bootstrap_servers=kafka_broker.split(","), **kafka_python_args())
    try:
        existing = client.topics()
        reported = client.end_offsets([TopicPartition(*tp) for tp in tps if tp[0] in existing])
    finally:
        client.close()
    return consumer.true_end_offsets(kafka_broker, reported)


def forget_state_of_other_logs(runtime: Runtime, kafka_broker: str) -> None:
    """A state directory left by a worker of another cluster (or of a new embedded broker) must not be
    taken for this one's: see state_backends.drop_state_of_other_logs."""
    on_disk = state_backends.persisted_offsets_on_disk(runtime.tables.values(), runtime.partitions)
    if not on_disk:
        return
    dropped = state_backends.drop_state_of_other_logs(on_disk, changelog_end_offsets(kafka_broker, on_disk))
    if dropped:
        log.warning("state of %d partitions was not of this cluster's changelogs (offsets past their end): "
                    "dropped, recovered from the changelogs instead: %s", len(dropped), ", ".join(dropped))


def check_redis(redis_url: str) -> None:
    """Fail at start, once and clearly, when Redis refuses our credentials (no retry storm later)."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise SystemExit(f"error: Redis refused the credentials in REDIS_URL ({exc}); not starting") from None
    except redis.ResponseError as exc:
        if "NOPERM" in str(exc):  # an ACL user without PING still authenticated: fine
            return
        raise
    except (redis.ConnectionError, redis.TimeoutError):
        pass  # maybe not up yet: snapshots wait for it, and their writes say so (Runtime.flush_sink)
    finally:
        client.close()


def say_assignments(app, datasets) -> None:
    """One line when the worker is ready (its first rebalance and state recovery are done) and one at every
    change of its partitions afterwards."""
    said: dict = {}
    source_topics = {topic for dataset in datasets for topic in tables.topics(dataset)}

    @app.on_rebalance_complete.connect
    async def on_rebalanced(app, **kwargs) -> None:
        assigned = app.consumer.assignment() if app.consumer is not None else set()
        partitions = sorted({tp.partition for tp in assigned if tp.topic in source_topics})
        if said.get("partitions") == partitions:
            return
        first = "partitions" not in said
        said["partitions"] = partitions
        print(f"worker {'ready' if first else 'reassigned'}: partitions {partitions} of every source topic "
              f"(generation {app.consumer_generation_id})", file=sys.stderr, flush=True)


def dump_tasks_on_sigusr1() -> None:
    """`kill -USR1 <worker pid>` writes every asyncio task's stack to the log: what is a stuck worker waiting on?"""
    import asyncio
    import signal

    def dump(*_):
        loop = asyncio._get_running_loop()
        tasks = asyncio.all_tasks(loop) if loop is not None else set()
        print(f"--- {len(tasks)} asyncio tasks ---", file=sys.stderr)
        for task in tasks:
            task.print_stack(limit=8, file=sys.stderr)
        sys.stderr.flush()

    signal.signal(signal.SIGUSR1, dump)


def run_worker(kafka_broker: str, redis_url: str, prefix: str = "", partitions: int = 4,
               datasets=None, loglevel: str = "warning", metrics_port: int | None = None,
               store_kind: str = state_backends.ROCKSDB, state_dir=DEFAULT_STATE_DIR, sessions_cap: int = 100,
               feature_ttl=None) -> None:
    datasets = tuple(datasets or registry.names())
    quiet_logs(os.environ.get("FSP_LOGLEVEL", "warning").upper())
    tune_gc()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    check_redis(redis_url)
    consumer.fetch_max_wait_ms()  # a mistyped setting stops the worker here, not inside the consumer thread
    group_session_timeout_s()
    dump_tasks_on_sigusr1()
    app, runtime = build_app(kafka_broker, redis_url, prefix, partitions, datasets, sessions_cap=sessions_cap,
                             store_kind=store_kind, state_dir=state_dir, feature_ttl=feature_ttl)
    forget_state_of_other_logs(runtime, kafka_broker)
    log.info("state: %s%s", store_kind, f" in {state_dir}" if store_kind == state_backends.ROCKSDB else "")
    say_assignments(app, datasets)
    if metrics_port:
        runtime.metrics.serve(metrics_port)
    from faust.worker import Worker

    worker = Worker(app, loglevel=os.environ.get("FSP_LOGLEVEL", loglevel), quiet=True, redirect_stdouts=False)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    worker.execute_from_commandline()
