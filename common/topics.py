"""Topic creation: every topic the project uses exists with the same partition count.

Stages are co-partitioned (a key lives in the same partition number in every
topic), so all topics of a deployment get one partition count. Tansu keeps
topic configs only when set at creation, so they are set here.
"""
from __future__ import annotations

import logging

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from common.kafka_security import kafka_python_args

log = logging.getLogger(__name__)


def ensure_topics(bootstrap: str, names, partitions: int, configs: dict | None = None) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fsp-admin", **kafka_python_args())
    try:
        existing = set(admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if not missing:
            return
        new = [NewTopic(n, partitions, 1, topic_configs=configs or {}) for n in missing]
        try:
            admin.create_topics(new)
        except TopicAlreadyExistsError:
            pass
    finally:
        admin.close()


def partitions_of(bootstrap: str, topic: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fsp-admin", **kafka_python_args())
    try:
        described = admin.describe_topics([topic])
        return len(described[0]["partitions"])
    finally:
        admin.close()
