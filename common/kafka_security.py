"""Kafka security settings (SASL, TLS) from the environment, as each client library wants them.

The project talks to Kafka through four libraries (kafka-python for admin and end
offsets, librdkafka for the replay, aiokafka under Faust for the worker, aiokafka
directly in the benchmark); each spells the same settings differently. One set of
environment variables (see README, Configuration) feeds all of them, so a secured
cluster needs no per-command flags and every client of a process agrees.
"""
from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"  # KAFKA_SECURITY_PROTOCOL
    mechanism: str = "PLAIN"  # KAFKA_SASL_MECHANISM (used with SASL_*)
    username: str | None = None  # KAFKA_SASL_USERNAME
    password: str | None = None  # KAFKA_SASL_PASSWORD
    cafile: str | None = None  # KAFKA_SSL_CAFILE: CA bundle the broker's certificate is checked against
    certfile: str | None = None  # KAFKA_SSL_CERTFILE: client certificate (mutual TLS)
    keyfile: str | None = None  # KAFKA_SSL_KEYFILE: its private key

    @classmethod
    def from_env(cls, environ=None) -> "KafkaSecurity":
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(name) or None

        security = cls(
            protocol=(get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper(),
            mechanism=(get("KAFKA_SASL_MECHANISM") or "PLAIN").upper(),
            username=get("KAFKA_SASL_USERNAME"),
            password=get("KAFKA_SASL_PASSWORD"),
            cafile=get("KAFKA_SSL_CAFILE"),
            certfile=get("KAFKA_SSL_CERTFILE"),
            keyfile=get("KAFKA_SSL_KEYFILE"),
        )
        security.validate()
        return security

    def validate(self) -> None:
        """Refuse a configuration no client could use, with the variable to fix (not a client's stack trace)."""
        if self.protocol not in PROTOCOLS:
            raise SystemExit(f"error: KAFKA_SECURITY_PROTOCOL={self.protocol!r}: use one of {', '.join(PROTOCOLS)}")
        if self.sasl:
            if self.mechanism not in MECHANISMS:
                raise SystemExit(f"error: KAFKA_SASL_MECHANISM={self.mechanism!r}: use one of {', '.join(MECHANISMS)}")
            if not self.username or self.password is None:
                raise SystemExit(f"error: KAFKA_SECURITY_PROTOCOL={self.protocol} needs KAFKA_SASL_USERNAME and "
                                 "KAFKA_SASL_PASSWORD")
        if bool(self.certfile) != bool(self.keyfile):
            raise SystemExit("error: KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def secured(self) -> bool:
        return self.protocol != "PLAINTEXT"

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for aiokafka (and Faust): the given CA (else the system's), hostname checked."""
        context = ssl.create_default_context(cafile=self.cafile)
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        return context


def _current(security: KafkaSecurity | None) -> KafkaSecurity:
    return security if security is not None else KafkaSecurity.from_env()


def _protocol_and_sasl_args(s: KafkaSecurity) -> dict:
    """What kafka-python and aiokafka spell alike (both name the SCRAM credentials sasl_plain_* too)."""
    args: dict = {"security_protocol": s.protocol}
    if s.sasl:
        args.update(sasl_mechanism=s.mechanism, sasl_plain_username=s.username, sasl_plain_password=s.password)
    return args


def kafka_python_args(security: KafkaSecurity | None = None) -> dict:
    """Keyword arguments for kafka-python's KafkaAdminClient, KafkaConsumer and KafkaProducer."""
    s = _current(security)
    if not s.secured:
        return {}
    args = _protocol_and_sasl_args(s)
    if s.tls:
        args["ssl_check_hostname"] = True
        for key, value in (("ssl_cafile", s.cafile), ("ssl_certfile", s.certfile), ("ssl_keyfile", s.keyfile)):
            if value:
                args[key] = value
    return args


def confluent_config(security: KafkaSecurity | None = None) -> dict:
    """Configuration entries for confluent-kafka (librdkafka) clients."""
    s = _current(security)
    if not s.secured:
        return {}
    config: dict = {"security.protocol": s.protocol}
    if s.sasl:
        config.update({"sasl.mechanisms": s.mechanism, "sasl.username": s.username, "sasl.password": s.password})
    if s.tls:
        for key, value in (("ssl.ca.location", s.cafile), ("ssl.certificate.location", s.certfile),
                           ("ssl.key.location", s.keyfile)):
            if value:
                config[key] = value
    return config


def aiokafka_args(security: KafkaSecurity | None = None) -> dict:
    """Keyword arguments for aiokafka clients (it wants an SSLContext rather than file names)."""
    s = _current(security)
    if not s.secured:
        return {}
    args = _protocol_and_sasl_args(s)
    if s.tls:
        args["ssl_context"] = s.ssl_context()
    return args


def faust_credentials(security: KafkaSecurity | None = None):
    """`broker_credentials` for faust.App: None, SSLCredentials or SASLCredentials (PLAIN, SCRAM-SHA-256/512)."""
    import faust

    s = _current(security)
    if not s.secured:
        return None
    context = s.ssl_context() if s.tls else None
    if not s.sasl:
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(username=s.username, password=s.password, mechanism=s.mechanism,
                                 ssl_context=context)
