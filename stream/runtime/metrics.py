"""Prometheus metrics of the worker (optional HTTP endpoint with --metrics-port)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Bucket bounds of state record sizes, in bytes, up to the 1,000,000-byte limit of a record (store.MAX_STATE_BYTES).
STATE_RECORD_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1_000_000)


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
        self.snapshots_rewritten = Counter("fsp_snapshots_rewritten", "Snapshots written again after Redis lost its data",
                                           registry=self.registry)
        self.unknown_topic_messages = Gauge("fsp_unknown_topic_messages",
                                            "Messages in {dataset}.* topics that no stage reads", ["topic"],
                                            registry=self.registry)
        self.redis_errors = Counter("fsp_redis_errors", "Failed Redis pipeline writes", registry=self.registry)
        self.state_record_bytes = Histogram("fsp_state_record_bytes", "Size of each state record written",
                                            ["table"], buckets=STATE_RECORD_BUCKETS, registry=self.registry)
        self.state_record_max_bytes = Gauge("fsp_state_record_max_bytes",
                                            "Largest state record written since the worker started", ["table"],
                                            registry=self.registry)
        self.changelog_records_read = Counter("fsp_changelog_records_read",
                                              "Changelog records read back (recovery and standby replicas)",
                                              ["topic"], registry=self.registry)

    def events_in(self, dataset: str, table: str, count: int) -> None:
        if count:
            self.events.labels(dataset, table).inc(count)

    def state_record_size(self, table: str):
        """A callable taking the size of each state record written to `table`: how close states grow to the
        record limit, and what a changelog and a state directory hold."""
        observe = self.state_record_bytes.labels(table).observe
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
