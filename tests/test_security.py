"""Kafka SASL/TLS and Redis TLS, as configured by environment variables, through the real pipeline.

Redis TLS runs against a real `redis-server` with a TLS port. Kafka runs against the
embedded broker (Tansu 0.6), which can neither log anyone in nor speak TLS (see
tests/kafka_front.py): its own `--authentication` is used to prove that a refused login
stops the worker and the replay at once; SCRAM, PLAIN and TLS handshakes are done by a
front door in front of it, so every client library really negotiates them.
"""
from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.kafka_security import KafkaSecurity, aiokafka_args, confluent_config, faust_credentials, kafka_python_args
from datasets.storj.generate import generate_storj
from fsp.stack import Process, free_port, start_broker, wait_for_port
from tests.kafka_front import KafkaFront

USERS = {"features": "features-secret"}
SECURITY_VARS = ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD",
                 "KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE")
EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


# --------------------------------------------------------------------------- servers and certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict:
    """A throw-away CA and a server certificate for 127.0.0.1 / localhost signed by it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no `openssl` command to make test certificates")
    folder = tmp_path_factory.mktemp("certs")

    def run(*args):
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=folder)

    run("req", "-x509", *EC_KEY, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=fsp test CA")
    run("req", *EC_KEY, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "san.cnf")
    return {name: str(folder / name) for name in ("ca.crt", "server.crt", "server.key")}


@pytest.fixture
def tls_redis(certs):
    """redis-server listening only on a TLS port; yields (rediss:// URL trusting the test CA, port)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server on PATH")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="fsp-redis-tls-")
    proc = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--tls-cert-file",
         certs["server.crt"], "--tls-key-file", certs["server.key"], "--tls-ca-cert-file", certs["ca.crt"],
         "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, proc=proc)
    except RuntimeError:
        output = proc.stdout.read().decode(errors="replace")
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.skip(f"redis-server cannot serve TLS (built without it?): {output.strip()[-200:]}")
    server = Process("redis-tls", f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={certs['ca.crt']}", proc, workdir)
    yield server.address, port
    server.stop()


@dataclass
class SecuredBroker:
    """The embedded broker behind a SASL/TLS front; `address` is what clients use."""

    tansu: Process
    front: KafkaFront

    @property
    def address(self) -> str:
        return self.front.address

    def stop(self) -> None:
        self.front.stop()
        self.tansu.stop()


def start_secured_broker(users: dict | None, tls: ssl.SSLContext | None = None) -> SecuredBroker:
    port = free_port()
    tansu = start_broker(advertised=f"127.0.0.1:{port}")
    front = KafkaFront(int(tansu.address.rsplit(":", 1)[1]), port, users=users, tls=tls).start()
    return SecuredBroker(tansu, front)


def server_tls(certs) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs["server.crt"], certs["server.key"])
    return context


def use_security(monkeypatch, **values) -> None:
    """Set the KAFKA_* security variables of this process (and so of the workers it starts)."""
    for name in SECURITY_VARS:
        value = values.get(name.removeprefix("KAFKA_").lower())
        if value:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------- Redis TLS


@pytest.mark.integration
def test_storj_pipeline_writes_to_redis_over_tls(pipeline_factory, tls_redis, tmp_path):
    url, port = tls_redis
    pipeline = pipeline_factory("storj", redis=url)
    folder = str(tmp_path / "dump")
    generate_storj(folder, seed=61, scale=0.05)
    pipeline.replay("storj", folder, timeout=120)
    mismatches, counts = pipeline.verify("storj", folder)
    assert [str(m) for m in mismatches] == []
    assert counts["user"] > 10


@pytest.mark.integration
def test_redis_tls_port_refuses_plain_and_untrusted_clients(tls_redis):
    url, port = tls_redis
    assert redis.Redis.from_url(url).ping()
    with pytest.raises(redis.ConnectionError):  # the server drops a client that does not start TLS
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, retry=Retry(NoBackoff(), 0)).ping()
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis.Redis.from_url(f"rediss://127.0.0.1:{port}/0", socket_timeout=5).ping()


# --------------------------------------------------------------------------- Kafka SASL / TLS end to end


@pytest.mark.integration
@pytest.mark.parametrize("protocol,mechanism", [("SASL_PLAINTEXT", "SCRAM-SHA-256"), ("SASL_SSL", "SCRAM-SHA-512")])
def test_storj_pipeline_over_authenticated_kafka(pipeline_factory, monkeypatch, certs, tmp_path, protocol,
                                                 mechanism):
    tls = server_tls(certs) if protocol == "SASL_SSL" else None
    broker = start_secured_broker(USERS, tls)
    use_security(monkeypatch, security_protocol=protocol, sasl_mechanism=mechanism, sasl_username="features",
                 sasl_password=USERS["features"], ssl_cafile=certs["ca.crt"] if tls else None)
    pipeline = pipeline_factory("storj", broker=broker)
    folder = str(tmp_path / "dump")
    generate_storj(folder, seed=62, scale=0.03)
    pipeline.replay("storj", folder, timeout=120)
    mismatches, counts = pipeline.verify("storj", folder)
    assert [str(m) for m in mismatches] == []
    assert counts["user"] > 10
    assert set(broker.front.logins) == {mechanism} and not broker.front.refused


@pytest.mark.integration
@pytest.mark.parametrize("protocol,mechanism,client_cert", [
    ("SASL_PLAINTEXT", "PLAIN", False), ("SASL_SSL", "PLAIN", False), ("SSL", None, False), ("SSL", None, True),
    ("SASL_PLAINTEXT", "SCRAM-SHA-512", False)])
def test_every_client_library_connects_with_the_settings(monkeypatch, certs, protocol, mechanism, client_cert):
    """kafka-python (topics, end offsets), librdkafka (replay), aiokafka as Faust configures it (worker);
    `client_cert`: the front requires a client certificate signed by the test CA (mutual TLS)."""
    import asyncio

    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from common.kafka_access import check_kafka
    from common.topics import ensure_topics, partitions_of
    from replay.publisher import make_producer
    from stream.runtime.consumer import true_end_offsets

    tls = server_tls(certs) if protocol.endswith("SSL") else None
    if client_cert:
        tls.verify_mode = ssl.CERT_REQUIRED
        tls.load_verify_locations(certs["ca.crt"])
    broker = start_secured_broker(USERS if mechanism else None, tls)
    try:
        use_security(monkeypatch, security_protocol=protocol, sasl_mechanism=mechanism,
                     sasl_username="features" if mechanism else None,
                     sasl_password=USERS["features"] if mechanism else None,
                     ssl_cafile=certs["ca.crt"] if tls else None,
                     ssl_certfile=certs["server.crt"] if client_cert else None,  # any cert the CA signed will do
                     ssl_keyfile=certs["server.key"] if client_cert else None)
        check_kafka(broker.address)
        ensure_topics(broker.address, ["sec.t"], 2)
        assert partitions_of(broker.address, "sec.t") == 2
        producer = make_producer(broker.address)
        for n in range(10):
            producer.send("sec.t", value=b"v%d" % n, key=b"k", partition=0)
        producer.close()

        class TP:  # what Faust hands to highwaters
            topic, partition = "sec.t", 0

        tp = TP()
        assert true_end_offsets(broker.address, {tp: 1})[tp] == 10

        async def read_with_faust_settings() -> int:
            from aiokafka import AIOKafkaConsumer

            consumer = AIOKafkaConsumer("sec.t", bootstrap_servers=broker.address, auto_offset_reset="earliest",
                                        **credentials_to_aiokafka_auth(faust_credentials()))
            await consumer.start()
            try:
                count, deadline = 0, time.monotonic() + 20
                while count < 10 and time.monotonic() < deadline:
                    batches = await consumer.getmany(timeout_ms=1000)
                    count += sum(len(records) for records in batches.values())
                return count
            finally:
                await consumer.stop()

        assert asyncio.run(read_with_faust_settings()) == 10
        if client_cert:  # and without a client certificate the front lets nobody in
            from confluent_kafka import KafkaException
            from confluent_kafka.admin import AdminClient

            bare = AdminClient({"bootstrap.servers": broker.address, "security.protocol": "SSL",
                                "ssl.ca.location": certs["ca.crt"], "log_level": 0})
            with pytest.raises(KafkaException):
                bare.list_topics(timeout=2)
        if mechanism:
            assert set(broker.front.logins) == {mechanism} and not broker.front.refused
    finally:
        broker.stop()


# --------------------------------------------------------------------------- refused credentials


def _run_fsp(args, env: dict, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "fsp", *args], env=env, capture_output=True, text=True,
                            timeout=timeout)
    return result, time.monotonic() - started


def _refused_env(broker: str, certs, protocol: str = "SASL_PLAINTEXT") -> dict:
    return {"PATH": "/usr/bin:/bin", "KAFKA_BROKER": broker, "REDIS_URL": "redis://127.0.0.1:1/0",
            "KAFKA_SECURITY_PROTOCOL": protocol, "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "KAFKA_SASL_USERNAME": "features", "KAFKA_SASL_PASSWORD": "not-the-password",
            **({"KAFKA_SSL_CAFILE": certs["ca.crt"]} if protocol == "SASL_SSL" else {})}


def _assert_one_clear_refusal(result, seconds: float) -> None:
    assert result.returncode != 0
    assert "Kafka refused the SASL credentials" in result.stderr
    assert "KAFKA_SASL_USERNAME=features" in result.stderr and "not-the-password" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one line, no retry storm
    assert seconds < 20


def _dump(folder) -> str:
    """A small storj dump to replay: the source is read before the broker is asked."""
    from datasets.storj.generate import generate_storj

    generate_storj(folder / "dump", seed=2, scale=0.002)
    return str(folder / "dump")


@pytest.mark.integration
def test_embedded_broker_refusing_the_login_stops_worker_and_replay_at_once(certs, tmp_path):
    """Tansu's own SASL (`--authentication`): a real broker refusing the credentials."""
    broker = start_broker(authentication=True)
    try:
        env = _refused_env(broker.address, certs)
        for args in (["worker", "--datasets", "storj"], ["replay", "storj", _dump(tmp_path), "--no-progress"]):
            result, seconds = _run_fsp(args, env)
            _assert_one_clear_refusal(result, seconds)
            assert "unknown-user" in result.stderr
    finally:
        broker.stop()


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_wrong_password_stops_worker_and_replay_at_once(certs, tmp_path, protocol):
    broker = start_secured_broker(USERS, server_tls(certs) if protocol == "SASL_SSL" else None)
    try:
        env = _refused_env(broker.address, certs, protocol)
        for args in (["worker", "--datasets", "storj"], ["replay", "storj", _dump(tmp_path), "--no-progress"]):
            refused_before = len(broker.front.refused)
            result, seconds = _run_fsp(args, env)
            _assert_one_clear_refusal(result, seconds)
            assert "Authentication failed" in result.stderr
            assert 1 <= len(broker.front.refused) - refused_before <= 20  # a few attempts, then it stops
    finally:
        broker.stop()


@pytest.mark.integration
def test_untrusted_broker_certificate_stops_the_worker_with_a_tls_error(certs):
    broker = start_secured_broker(None, server_tls(certs))
    try:
        env = {"PATH": "/usr/bin:/bin", "KAFKA_BROKER": broker.address, "REDIS_URL": "redis://127.0.0.1:1/0",
               "KAFKA_SECURITY_PROTOCOL": "SSL"}  # no KAFKA_SSL_CAFILE: the test CA is not trusted
        result, seconds = _run_fsp(["worker", "--datasets", "storj"], env)
        assert result.returncode != 0 and seconds < 20
        assert "TLS with Kafka failed" in result.stderr and "certificate verify failed" in result.stderr
    finally:
        broker.stop()


# --------------------------------------------------------------------------- settings -> client arguments


def test_plaintext_adds_nothing_to_any_client():
    plain = KafkaSecurity()
    assert kafka_python_args(plain) == {} and confluent_config(plain) == {} and aiokafka_args(plain) == {}
    assert faust_credentials(plain) is None


def test_sasl_scram_arguments_for_each_library():
    s = KafkaSecurity(protocol="SASL_PLAINTEXT", mechanism="SCRAM-SHA-512", username="u", password="p")
    assert kafka_python_args(s) == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                                    "sasl_plain_username": "u", "sasl_plain_password": "p"}
    assert confluent_config(s) == {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
                                   "sasl.username": "u", "sasl.password": "p"}
    assert aiokafka_args(s) == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                                "sasl_plain_username": "u", "sasl_plain_password": "p"}
    creds = faust_credentials(s)
    assert (type(creds).__name__, creds.protocol.value, creds.mechanism.value, creds.username, creds.password,
            creds.ssl_context) == ("SASLCredentials", "SASL_PLAINTEXT", "SCRAM-SHA-512", "u", "p", None)


def test_ssl_with_client_certificate_arguments_for_each_library(certs):
    s = KafkaSecurity(protocol="SSL", cafile=certs["ca.crt"], certfile=certs["server.crt"],
                      keyfile=certs["server.key"])
    assert kafka_python_args(s) == {"security_protocol": "SSL", "ssl_check_hostname": True,
                                    "ssl_cafile": certs["ca.crt"], "ssl_certfile": certs["server.crt"],
                                    "ssl_keyfile": certs["server.key"]}
    assert confluent_config(s) == {"security.protocol": "SSL", "ssl.ca.location": certs["ca.crt"],
                                   "ssl.certificate.location": certs["server.crt"],
                                   "ssl.key.location": certs["server.key"]}
    args = aiokafka_args(s)
    assert set(args) == {"security_protocol", "ssl_context"} and args["security_protocol"] == "SSL"
    assert args["ssl_context"].check_hostname and args["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    creds = faust_credentials(s)
    assert type(creds).__name__ == "SSLCredentials" and creds.protocol.value == "SSL"
    assert creds.context.verify_mode == ssl.CERT_REQUIRED


def test_sasl_ssl_arguments_for_each_library(certs):
    s = KafkaSecurity(protocol="SASL_SSL", mechanism="PLAIN", username="u", password="p", cafile=certs["ca.crt"])
    assert kafka_python_args(s) == {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN",
                                    "sasl_plain_username": "u", "sasl_plain_password": "p",
                                    "ssl_check_hostname": True, "ssl_cafile": certs["ca.crt"]}
    assert confluent_config(s) == {"security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
                                   "sasl.username": "u", "sasl.password": "p", "ssl.ca.location": certs["ca.crt"]}
    args = aiokafka_args(s)
    assert {k: v for k, v in args.items() if k != "ssl_context"} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_plain_username": "u",
        "sasl_plain_password": "p"}
    assert isinstance(args["ssl_context"], ssl.SSLContext)
    creds = faust_credentials(s)
    assert (creds.protocol.value, creds.mechanism.value) == ("SASL_SSL", "PLAIN")
    assert isinstance(creds.ssl_context, ssl.SSLContext)


def test_settings_come_from_the_environment_and_bad_ones_are_named():
    env = {"KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_MECHANISM": "scram-sha-256",
           "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p", "KAFKA_SSL_CAFILE": "/ca.pem"}
    assert KafkaSecurity.from_env(env) == KafkaSecurity("SASL_SSL", "SCRAM-SHA-256", "u", "p", "/ca.pem")
    assert KafkaSecurity.from_env({}) == KafkaSecurity()
    assert KafkaSecurity.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u",
                                   "KAFKA_SASL_PASSWORD": "p"}).mechanism == "PLAIN"
    for bad, named in (({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
                       ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI",
                         "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, "KAFKA_SASL_MECHANISM"),
                       ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "KAFKA_SASL_USERNAME"),
                       ({"KAFKA_SSL_CERTFILE": "/c.pem"}, "KAFKA_SSL_KEYFILE")):
        with pytest.raises(SystemExit, match=named):
            KafkaSecurity.from_env(bad)
