"""Prometheus metrics of the worker (optional HTTP endpoint with --metrics-port)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.events = Counter("fsp_events", "Source rows received", ["dataset", "table"], registry=self.registry)
        self.dead_letters = Counter("fsp_dead_letters", "Records sent to the dead-letter topic", ["dataset", "cause"],
                                    registry=self.registry)
        self.rerouted = Counter("fsp_rerouted_rows", "Rows re-published under their normalised key",
                                registry=self.registry)
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

    def events_in(self, dataset: str, table: str, count: int) -> None:
        if count:
            self.events.labels(dataset, table).inc(count)

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)
