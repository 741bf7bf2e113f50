"""Messages sent to a `{dataset}.*` topic the dataset does not have (a typo in a live producer's table
name): the worker does not read them, but it counts them and says so, instead of ignoring them silently.

A worker subscribes to the topics of its tables only, so such messages never reach a stage and cannot
be dead letters one by one. Every CHECK_EVERY_S seconds the worker lists the broker's topics and counts
the messages in those it does not know; the counts go to the log (once per topic and count), to the
`fsp_unknown_topic_messages` gauge and to the dataset's status hash (`unknown_topics`).
"""
from __future__ import annotations

import asyncio
import logging
import os

log = logging.getLogger(__name__)

CHECK_EVERY_ENV = "FSP_UNKNOWN_TOPICS_CHECK_S"
CHECK_EVERY_S = 30.0


def check_every_s() -> float:
    return float(os.environ.get(CHECK_EVERY_ENV) or CHECK_EVERY_S)


def unknown_topics(names, datasets, known) -> list[str]:
    """The topics among `names` that look like a dataset's (`{dataset}.x`) but that no stage reads."""
    known = set(known)
    prefixes = tuple(f"{dataset}." for dataset in datasets)
    return sorted(n for n in names if n.startswith(prefixes) and n not in known)


def count_messages(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Messages held in each topic (end offset minus start offset, over its partitions)."""
    from kafka import KafkaConsumer, TopicPartition

    from common.kafka_security import kafka_python_args
    from stream.runtime.consumer import true_end_offsets

    if not topics:
        return {}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False, **kafka_python_args())
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        starts = consumer.beginning_offsets(tps)
        ends = true_end_offsets(bootstrap, consumer.end_offsets(tps))
    finally:
        consumer.close()
    counts = dict.fromkeys(topics, 0)
    for tp in tps:
        counts[tp.topic] += ends[tp] - starts[tp]
    return counts


def list_topics(bootstrap: str) -> set[str]:
    from kafka import KafkaConsumer

    from common.kafka_security import kafka_python_args

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), **kafka_python_args())
    try:
        return consumer.topics()
    finally:
        consumer.close()


class UnknownTopicCounter:
    """What the worker's timer runs: count, then say it in the log (when a count changes), in the
    metrics and in each dataset's status hash."""

    def __init__(self, runtime, bootstrap: str, datasets, known):
        self.runtime, self.bootstrap, self.datasets, self.known = runtime, bootstrap, list(datasets), list(known)
        self._said: dict[str, int] = {}

    async def check(self) -> None:
        try:
            names = await asyncio.to_thread(list_topics, self.bootstrap)
            found = unknown_topics(names, self.datasets, self.known)
            counts = await asyncio.to_thread(count_messages, self.bootstrap, found)
        except Exception as exc:  # the broker away: the consumer says so too; try again next time
            log.warning("could not count messages in unknown topics (%s)", exc)
            return
        for topic, count in counts.items():
            self.runtime.metrics.unknown_topic_messages.labels(topic).set(count)
            if self._said.get(topic) != count:
                self._said[topic] = count
                log.warning("%d messages in topic %s, which no stage reads (not a table of %s)", count, topic,
                            topic.split(".", 1)[0])
        for dataset in self.datasets:
            mine = {t: c for t, c in counts.items() if t.startswith(f"{dataset}.")}
            if mine:
                self.runtime.sink.status(dataset, "unknown_topics", mine)
