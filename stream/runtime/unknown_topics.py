"""Messages sent to a `{dataset}.*` topic the dataset does not have (a typo in a live producer's table
name): the worker does not read them, but it counts them and says so, instead of ignoring them silently.

A worker subscribes to the topics of its tables only, so such messages never reach a stage and cannot
be dead letters one by one. Every CHECK_EVERY_S seconds the worker lists the broker's topics and counts
the messages in those it does not know; the counts go to the log (once per topic and count), to the
`fsp_unknown_topic_messages` gauge and to the dataset's status hash (`unknown_topics`).
"""
from __future__ import annotations

import os

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

    from fsp.kafka_security import kafka_python_args
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

    from fsp.kafka_security import kafka_python_args

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), **kafka_python_args())
    try:
        return consumer.topics()
    finally:
        consumer.close()
