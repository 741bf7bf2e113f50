"""Prometheus metrics of the worker (optional HTTP endpoint with --metrics-port).

Besides the worker's own, the registry holds Faust's Prometheus sensor
(`faust_*`: rebalances, offset commits and their latency, committed and end
offsets per partition). Its per-message and per-event metrics stay empty: the
worker hands whole batches to the stages and never runs Faust's streams,
which is what feeds them; so consumer lag, event time and latencies are
measured here.
"""
from __future__ import annotations

import time
from bisect import bisect_left

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

# Bucket bounds of state record sizes, in bytes, up to the 1,000,000-byte limit of a record (store.MAX_STATE_BYTES).
STATE_RECORD_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1_000_000)
# Event-to-snapshot latency, seconds: a live hop takes milliseconds, a replay's backlog minutes.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
# Snapshot age (since a feature last changed), seconds: a minute to 90 days.
AGE_BUCKETS_S = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400, 90 * 86400)


class BulkHistogram:
    """A histogram fed many values at once from the hot path (prometheus_client's `observe` takes a lock
    and costs 0.6-1.3 us a value; here a value is one bisect and one addition, ~0.08 us)."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], buckets):
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self.bounds = list(buckets)
        self._series: dict[tuple, list] = {}  # label values -> [count per bucket and +Inf, sum]

    def _series_of(self, labels: tuple) -> list:
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = [[0] * (len(self.bounds) + 1), 0.0]
        return series

    def observe_many(self, labels: tuple, values) -> None:
        series = self._series_of(labels)
        counts, bounds = series[0], self.bounds
        for value in values:
            counts[bisect_left(bounds, value)] += 1
            series[1] += value

    def observer(self, labels: tuple):
        """A callable observing one value of that series (for a value at a time, e.g. each record written)."""
        series = self._series_of(labels)
        counts, bounds = series[0], self.bounds

        def observe(value) -> None:
            counts[bisect_left(bounds, value)] += 1
            series[1] += value

        return observe

    def collect(self):
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, (counts, total) in list(self._series.items()):
            cumulative, buckets = 0, []
            for bound, count in zip([*self.bounds, float("inf")], list(counts)):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            family.add_metric(list(labels), buckets, total)
        yield family


class ConsumerLag:
    """Per partition this worker consumes: records not read yet, and for source topics the event time
    reached (every row older than it is applied: stages.Stage.applied_up_to) and how far that is behind.

    Lag in event time is 0 for a partition with nothing unread; otherwise it is measured against the
    newest event time this worker reached in any partition of the same topic (`behind="newest"`: what a
    replay can say), and against the wall clock (`behind="wall_clock"`: a live feed)."""

    def __init__(self):
        self._records: dict[tuple[str, int], int] = {}
        self._event_us: dict[tuple[str, int], int] = {}

    def position(self, topic: str, partition: int, next_offset: int, highwater: int | None) -> None:
        if highwater is not None:
            self._records[(topic, partition)] = max(0, highwater - next_offset)

    def event_time(self, topic: str, partition: int, ts_us: int) -> None:
        known = self._event_us.get((topic, partition))
        if known is None or ts_us > known:
            self._event_us[(topic, partition)] = ts_us

    def forget(self, tps) -> None:
        """Partitions revoked: another worker reports them now."""
        for tp in tps:
            self._records.pop((tp.topic, tp.partition), None)
            self._event_us.pop((tp.topic, tp.partition), None)

    def summary(self) -> dict:
        """What a worker's heartbeat says of its lag (the server's /ready shows it): records not read yet
        over its partitions, and the most event time a source partition with unread records is behind
        the newest of its topic."""
        records, event_us = dict(self._records), dict(self._event_us)
        newest: dict[str, int] = {}
        for (topic, _), ts_us in event_us.items():
            newest[topic] = max(newest.get(topic, ts_us), ts_us)
        behind = [newest[topic] - ts_us for (topic, partition), ts_us in event_us.items()
                  if records.get((topic, partition), 0)]
        return {"records": sum(records.values()), "event_time_s": round(max(behind, default=0) / 1e6, 3)}

    def collect(self, now: float | None = None):
        now = time.time() if now is None else now
        records, event_us = dict(self._records), dict(self._event_us)
        lag_records = GaugeMetricFamily("fsp_consumer_lag_records", "Records in a partition not read yet "
                                        "(its high watermark at the last fetch minus the next offset to read)",
                                        labels=["topic", "partition"])
        for (topic, partition), lag in sorted(records.items()):
            lag_records.add_metric([topic, str(partition)], lag)
        reached = GaugeMetricFamily("fsp_consumer_event_time_seconds", "Event time a source partition reached: "
                                    "every row older than it is applied (epoch seconds)", labels=["topic", "partition"])
        behind = GaugeMetricFamily("fsp_consumer_lag_seconds", "Event time a source partition is behind: the newest "
                                   "reached in any partition of its topic, or the wall clock, minus its own; 0 "
                                   "when it has nothing unread", labels=["topic", "partition", "behind"])
        newest: dict[str, int] = {}
        for (topic, _), ts_us in event_us.items():
            newest[topic] = max(newest.get(topic, ts_us), ts_us)
        for (topic, partition), ts_us in sorted(event_us.items()):
            labels = [topic, str(partition)]
            reached.add_metric(labels, ts_us / 1e6)
            caught_up = records.get((topic, partition), 0) == 0
            behind.add_metric([*labels, "newest"], 0 if caught_up else (newest[topic] - ts_us) / 1e6)
            behind.add_metric([*labels, "wall_clock"], 0 if caught_up else max(0.0, now - ts_us / 1e6))
        yield from (lag_records, reached, behind)


class SnapshotAges:
    """How long ago the features of a dataset's entities last changed, as a gauge histogram: counted in
    Redis by the worker every few seconds (stream.runtime.worker), one ZCOUNT per bucket of the freshness
    set, whatever the number of entities. Its sum is not known (NaN): the buckets are the figure."""

    def __init__(self):
        self._counts: dict[tuple[str, str], list[int]] = {}  # (dataset, entity) -> at most each bound, then all

    def update(self, dataset: str, entity: str, cumulative: list[int]) -> None:
        self._counts[(dataset, entity)] = cumulative

    def collect(self):
        family = GaugeHistogramMetricFamily("fsp_snapshot_age_seconds", "Entities by the time since a feature of "
                                            "theirs last changed (updated_at), per dataset and entity kind",
                                            labels=["dataset", "entity"])
        for (dataset, entity), cumulative in sorted(self._counts.items()):
            buckets = [(str(bound), count) for bound, count in zip(AGE_BUCKETS_S, cumulative)]
            family.add_metric([dataset, entity], [*buckets, ("+Inf", cumulative[-1])], float("nan"))
        yield family


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.events = Counter("fsp_events", "Source rows received", ["dataset", "table"], registry=self.registry)
        self.dead_letters = Counter("fsp_dead_letters", "Records sent to the dead-letter topic, by dataset, cause "
                                    "(bad_message, bad_row, apply_error) and the table they came through",
                                    ["dataset", "cause", "table"],
                                    registry=self.registry)
        self.rerouted = Counter("fsp_rerouted_rows", "Rows re-published to their key's partition, by why: "
                                "key (not the row's normalised key) or partition (another producer's hashing)",
                                ["why"], registry=self.registry)
        self.redis_up = Gauge("fsp_redis_up", "1 when the last Redis write succeeded", registry=self.registry)
        self.batches = Counter("fsp_batches", "Record batches handled", ["stage"], registry=self.registry)
        self.batch_records = Counter("fsp_batch_records", "Kafka records in handled batches", ["stage"],
                                     registry=self.registry)
        self.snapshots_rewritten = Counter("fsp_snapshots_rewritten",
                                           "Snapshots written again after Redis lost its data",
                                           registry=self.registry)
        self.unknown_topic_messages = Gauge("fsp_unknown_topic_messages",
                                            "Messages in {dataset}.* topics that no stage reads", ["topic"],
                                            registry=self.registry)
        self.redis_errors = Counter("fsp_redis_errors", "Failed Redis pipeline writes", registry=self.registry)
        self.state_record_bytes = BulkHistogram("fsp_state_record_bytes", "Size of each state record written",
                                                ("table",), STATE_RECORD_BUCKETS)
        self.registry.register(self.state_record_bytes)
        self.state_record_max_bytes = Gauge("fsp_state_record_max_bytes",
                                            "Largest state record written since the worker started", ["table"],
                                            registry=self.registry)
        self.changelog_records_read = Counter("fsp_changelog_records_read",
                                              "Changelog records read back (recovery and standby replicas)",
                                              ["topic"], registry=self.registry)
        self.consumer_lag = ConsumerLag()
        self.registry.register(self.consumer_lag)
        self.event_to_snapshot = BulkHistogram(
            "fsp_event_to_snapshot_seconds", "From a source record's arrival in Kafka (its timestamp, carried "
            "across stages) to Redis acknowledging the snapshot write it led to; per snapshot, the oldest "
            "record of its batch", ("dataset",), LATENCY_BUCKETS_S)
        self.registry.register(self.event_to_snapshot)
        self.snapshot_ages = SnapshotAges()
        self.registry.register(self.snapshot_ages)

    def snapshots_written(self, when: float, arrivals: list[tuple[str, int]]) -> None:
        """SnapshotSink.on_written: (dataset, arrival in epoch ms) of each snapshot acknowledged at `when`."""
        by_dataset: dict[str, list[float]] = {}
        for dataset, arrived_ms in arrivals:
            by_dataset.setdefault(dataset, []).append(max(0.0, when - arrived_ms / 1000))
        for dataset, latencies in by_dataset.items():
            self.event_to_snapshot.observe_many((dataset,), latencies)

    def events_in(self, dataset: str, table: str, count: int) -> None:
        if count:
            self.events.labels(dataset, table).inc(count)

    def state_record_size(self, table: str):
        """A callable taking the size of each state record written to `table`: how close states grow to the
        record limit, and what a changelog and a state directory hold."""
        observe = self.state_record_bytes.observer((table,))
        largest_gauge = self.state_record_max_bytes.labels(table)
        largest = 0

        def record_size(size: int) -> None:
            nonlocal largest
            observe(size)
            if size > largest:
                largest = size
                largest_gauge.set(size)

        return record_size

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)
