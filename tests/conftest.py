"""Fixtures that run the real thing: the embedded broker, Redis, a stream worker process."""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings

from fsp.stack import redis_reachable, start_broker, start_redis

LOCAL_REDIS = "redis://127.0.0.1:6379/0"
PG_URL = os.environ.get("PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
# Workers of the tests join groups on the embedded broker, which accepts short session timeouts: a worker
# is ready in ~5 s instead of ~8 s, and ~5 s instead of ~23 s after a kill -9 (stream.runtime.worker).
os.environ.setdefault("FSP_GROUP_SESSION_TIMEOUT_S", "4")
# The suite runs in several processes beside brokers and workers: how fast Hypothesis draws or runs an
# example says how busy the machine is, not whether the property holds. No deadline and no health check
# on speed for any property test (a test's own @settings adds to this profile).
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


@pytest.fixture(scope="session")
def redis_url():
    """The machine's Redis when there is one, else a throw-away server (tests use their own key prefix)."""
    url = os.environ.get("REDIS_URL") or LOCAL_REDIS
    if redis_reachable(url):
        yield url
        return
    server = start_redis()
    yield server.address
    server.stop()


@dataclass
class Pipeline:
    """A broker, a worker and a key prefix of their own; Redis shared, keys apart."""

    broker: str
    redis_url: str
    prefix: str
    partitions: int
    worker: object
    log_path: str
    state_dir: str  # the worker's RocksDB state: a restarted worker finds it again

    def replay(self, dataset: str, source: str, watch_worker: bool = True, **kwargs):
        from replay.job import replay

        kwargs.setdefault("wait", True)
        kwargs.setdefault("timeout", 120)
        kwargs.setdefault("progress", False)
        kwargs.setdefault("state_dir", os.path.join(os.path.dirname(self.log_path), "state"))
        alive = (lambda: self.worker.poll() is None) if watch_worker else None
        return replay(dataset, source, self.broker, self.redis_url, partitions=self.partitions, prefix=self.prefix,
                      alive=alive, **kwargs)

    def wait_ready(self, dataset: str = "storj", timeout: float = 120) -> None:
        from fsp.demo import wait_worker_ready

        wait_worker_ready(self.broker, self.redis_url, self.prefix, self.partitions, dataset, timeout,
                          alive=lambda: self.worker.poll() is None)

    def extra_worker(self, datasets: str = "storj"):
        """Start one more worker in the same consumer group (it takes over some partitions)."""
        from fsp.demo import start_worker

        self.extra_log = self.log_path + ".extra"
        self.extra = start_worker(self.broker, self.redis_url, self.prefix, self.partitions, datasets,
                                  self.extra_log, state_dir=self.state_dir + "-extra")
        return self.extra

    def restart_worker(self, datasets: str = "storj", kill: bool = False, metrics_port: int | None = None) -> None:
        """Stop the worker (SIGKILL when `kill`, else a clean stop) and start a new one in the same group,
        on the same state directory."""
        import signal

        from fsp.demo import start_worker, stop_worker

        if kill:
            self.worker.send_signal(signal.SIGKILL)
            self.worker.wait()
        else:
            stop_worker(self.worker)
        self.log_path += ".next"
        self.worker = start_worker(self.broker, self.redis_url, self.prefix, self.partitions, datasets,
                                   self.log_path, metrics_port=metrics_port, state_dir=self.state_dir)

    def redis(self):
        from stream.client import connect

        return connect(self.redis_url)

    def features(self, dataset: str, entity: str) -> dict:
        from stream.client import all_features

        return all_features(self.redis(), dataset, entity, self.prefix)

    def verify(self, dataset: str, source: str):
        from verify.job import verify

        mismatches, counts = verify(dataset, source, self.redis_url, self.prefix)
        return mismatches, counts

    def worker_log(self) -> str:
        with open(self.log_path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")


def _cleanup(redis_url: str, prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(redis_url)
    keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        r.delete(*keys[start:start + 1000])


@pytest.fixture
def pipeline_factory(redis_url, tmp_path):
    """Start pipelines (broker + worker) on demand; everything stops and is cleaned after the test."""
    from fsp.demo import start_worker

    started = []

    def make(datasets: str = "storj", partitions: int = 4, redis: str | None = None,
             prefix: str | None = None, broker=None, state_dir: str | None = None,
             metrics_port: int | None = None, launcher: list[str] | None = None) -> Pipeline:
        """`broker`: one the caller started (anything with .address and .stop()), else a fresh embedded one;
        `state_dir`: the worker's, else a new one; `metrics_port`: where the worker serves its metrics;
        `launcher`: how the worker's command line is run (fsp.demo.start_worker)."""
        broker = broker or start_broker()
        redis_url_here = redis or redis_url
        prefix = prefix or f"test-{uuid.uuid4().hex[:8]}:"
        log_path = str(tmp_path / f"worker-{len(started)}.log")
        state_dir = state_dir or str(tmp_path / f"worker-{len(started)}-state")
        worker = start_worker(broker.address, redis_url_here, prefix, partitions, datasets, log_path,
                              state_dir=state_dir, metrics_port=metrics_port, launcher=launcher)
        pipeline = Pipeline(broker.address, redis_url_here, prefix, partitions, worker, log_path, state_dir)
        started.append((broker, pipeline))
        return pipeline

    yield make
    for broker, pipeline in started:
        # The test is over: its workers are killed, not stopped cleanly (Faust's shutdown takes ~1.5 s and
        # would check nothing here; the tests that need a clean stop make one themselves).
        for worker in (pipeline.worker, getattr(pipeline, "extra", None)):
            if worker is not None and worker.poll() is None:
                worker.kill()
                worker.wait()
        broker.stop()
        if pipeline.redis_url == redis_url:
            _cleanup(redis_url, pipeline.prefix)


@pytest.fixture
def pg_schema():
    """A schema of its own in the test PostgreSQL (PG_URL), dropped afterwards; the test is skipped without one."""
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {PG_URL}: {exc}")
    yield schema
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture
def pipeline(pipeline_factory) -> Pipeline:
    return pipeline_factory()


@dataclass
class ReplayedStore:
    """Snapshots in Redis of a small storj and a small ucn dump, replayed by a worker that has stopped
    since: readers (export, report) need Redis only."""

    redis_url: str
    prefix: str
    storj_source: str
    ucn_source: str

    def redis(self):
        from stream.client import connect

        return connect(self.redis_url)


@pytest.fixture(scope="session")
def replayed_store(redis_url, tmp_path_factory) -> ReplayedStore:
    """One replay of each dataset for every test that only reads what it left in Redis; the broker and
    worker stop once it is done (nothing runs in the background of later tests), the keys at the end."""
    from datasets.storj.generate import generate_storj
    from datasets.ucn.generate import generate_ucn
    from fsp.demo import start_worker, stop_worker

    folder = tmp_path_factory.mktemp("replayed")
    storj, ucn = str(folder / "storj"), str(folder / "ucn")
    generate_storj(storj, seed=7, scale=0.03)
    generate_ucn(ucn, seed=1, scale=0.05)
    broker = start_broker()
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    log_path = str(folder / "worker.log")
    worker = start_worker(broker.address, redis_url, prefix, 4, "storj,ucn", log_path,
                          state_dir=str(folder / "worker-state"))
    pipeline = Pipeline(broker.address, redis_url, prefix, 4, worker, log_path, str(folder / "worker-state"))
    try:
        pipeline.replay("storj", storj)
        pipeline.replay("ucn", ucn)
    except BaseException:
        _cleanup(redis_url, prefix)
        raise
    finally:
        stop_worker(worker)
        broker.stop()
    yield ReplayedStore(redis_url, prefix, storj, ucn)
    _cleanup(redis_url, prefix)

