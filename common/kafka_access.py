"""Fail at start, once and clearly, when no Kafka broker answers or it refuses our SASL credentials or TLS.

Kafka clients take a refused login for a broker that is down: Faust/aiokafka retry
for ever, kafka-python gives up after a while with "Unable to bootstrap". librdkafka
names the cause (an authentication or TLS error) on the first attempt, so one metadata
request through it tells a wrong password from a slow broker within a second.
"""
from __future__ import annotations

import time

from common.kafka_security import KafkaSecurity, confluent_config


def refusal_message(security: KafkaSecurity, code: int, detail: str) -> str:
    from confluent_kafka import KafkaError

    if code == KafkaError._SSL:
        return (f"error: TLS with Kafka failed (KAFKA_SSL_CAFILE={security.cafile or '<system CAs>'}): {detail}; "
                "not starting")
    return (f"error: Kafka refused the SASL credentials (KAFKA_SASL_MECHANISM={security.mechanism}, "
            f"KAFKA_SASL_USERNAME={security.username}): {detail}; not starting")


def check_kafka(bootstrap: str, security: KafkaSecurity | None = None, timeout: float = 5.0) -> None:
    """SystemExit with one line when the broker refuses us, or when no broker answers within `timeout`
    seconds (kafka-python and Faust would retry for 30 s or for ever); return once it answers."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    security = security if security is not None else KafkaSecurity.from_env()
    errors: list = []
    admin = AdminClient({"bootstrap.servers": bootstrap, **confluent_config(security), "error_cb": errors.append,
                         "log_level": 0})
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=0.25)
            return
        except KafkaException:
            pass
        admin.poll(0)  # serves error_cb
        for error in errors:
            if error.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
                raise SystemExit(refusal_message(security, error.code(), error.str()))
        if time.monotonic() >= deadline:
            raise SystemExit(f"error: no Kafka broker answers at KAFKA_BROKER={bootstrap} within {timeout:.0f} s")
