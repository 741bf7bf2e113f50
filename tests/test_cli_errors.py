"""Everything a user can get wrong gives one line on stderr, naming the setting or argument, with exit
code 2 for usage and 1 for failures, within seconds."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

PG_URL = os.environ.get("PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def fsp(*args, env: dict | None = None, timeout: float = 60):
    base = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BROKER", "REDIS_URL", "PARTITIONS")}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "fsp", *args], env={**base, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)
    return done.returncode, done.stderr.strip(), time.monotonic() - started


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("args, env, code, message", [
    (["get", "storj", "user", "x"], {"REDIS_URL": "localhost:6379"}, 2,
     "error: REDIS_URL='localhost:6379' is no Redis URL: expected redis://host:port/db (or rediss://, unix://)"),
    (["get", "storj", "user", "x"], {"REDIS_URL": "redis://127.0.0.1:1/0"}, 1,
     "error: no Redis answers at REDIS_URL=redis://127.0.0.1:1/0"),
    (["get", "storj", "user", "x"], {}, 2, "error: no Redis: set REDIS_URL"),
    (["replay", "storj", "/no/such/folder"], {"KAFKA_BROKER": "127.0.0.1:1"}, 2,
     "error: no such folder: /no/such/folder"),
    (["verify", "storj", "/no/such/folder"], {"REDIS_URL": "redis://127.0.0.1:6379/0"}, 2,
     "error: no such folder: /no/such/folder"),
    (["replay", "ucn", "mysql://u@h/db"], {"KAFKA_BROKER": "127.0.0.1:1"}, 2,
     "error: source 'mysql://u@h/db': expected a CSV folder, postgresql://... or sqlite:///FILE"),
    (["replay", "storj", "/"], {"KAFKA_BROKER": "127.0.0.1:1", "PARTITIONS": "abc"}, 2,
     "error: PARTITIONS='abc': expected a whole number of at least 1"),
    (["replay", "storj", "/"], {"KAFKA_BROKER": "127.0.0.1:1", "SESSIONS_CAP": "0"}, 2,
     "error: SESSIONS_CAP='0': expected a whole number of at least 1"),
    (["worker"], {"KAFKA_BROKER": "127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:6379/0", "FSP_STORE": "disk"}, 2,
     "error: FSP_STORE must be one of rocksdb, memory, not 'disk'"),
    (["publish", "storj", "bbr", "/no/such/file"], {"KAFKA_BROKER": "127.0.0.1:1"}, 2,
     "error: cannot read /no/such/file: No such file or directory"),
    (["export", "storj", "device", "--out", "x.parquet"], {"REDIS_URL": "redis://127.0.0.1:6379/0"}, 2,
     "error: nothing to export as storj device: known are storj user, storj operator, ucn user, ucn sessions"),
    (["export", "shop", "user", "--out", "x.parquet"], {"REDIS_URL": "redis://127.0.0.1:6379/0"}, 2,
     "error: nothing to export as shop user: known are "),
    (["export", "storj", "user", "--out", "x.parquet"], {"REDIS_URL": "redis://127.0.0.1:1/0"}, 1,
     "error: no Redis answers at REDIS_URL=redis://127.0.0.1:1/0"),
    (["export", "storj", "user", "--out", "/no/such/folder/x.csv"], {"REDIS_URL": "redis://127.0.0.1:6379/0"}, 2,
     "error: cannot write /no/such/folder/x.csv: no folder /no/such/folder"),
    (["export", "storj", "user", "--out", "x.csv", "--ids-file", "/no/such/file"], {}, 2,
     "error: cannot read --ids-file /no/such/file: No such file or directory"),
    (["report", "shop", "--out", "r"], {"REDIS_URL": "redis://127.0.0.1:6379/0"}, 2,
     "error: no report of dataset 'shop': known are storj, ucn"),
    (["report", "ucn", "--out", "r"], {"REDIS_URL": "redis://127.0.0.1:1/0"}, 1,
     "error: no Redis answers at REDIS_URL=redis://127.0.0.1:1/0"),
    (["replay", "storj", "/", "--follow", "--wait"], {"KAFKA_BROKER": "127.0.0.1:1"}, 2,
     "error: --wait waits for a run's end, which --follow never sends: watch for the line 'following new rows' "
     "instead, and end the run with --resume"),
    (["replay", "storj", "/", "--follow", "--interval", "0"], {"KAFKA_BROKER": "127.0.0.1:1"}, 2,
     "error: --interval must be positive, not 0"),
    (["worker"], {"KAFKA_BROKER": "127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:6379/0", "FEATURE_TTL": "storj=3x"},
     2, "error: FEATURE_TTL, storj: '3x' is no duration"),
    (["worker"], {"KAFKA_BROKER": "127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:6379/0", "FEATURE_TTL": "nope=1d"}, 2,
     "error: FEATURE_TTL='nope=1d': expected DATASET=DURATION pairs"),
    (["stale", "storj", "--older-than", "an hour"], {"REDIS_URL": "redis://127.0.0.1:6379/0"}, 2,
     "error: --older-than: 'an hour' is no duration"),
    (["stale", "ucn", "--entity", "operator"], {"REDIS_URL": "redis://127.0.0.1:6379/0"}, 2,
     "error: no entity 'operator' in ucn; known: user"),
])
def test_a_wrong_setting_or_argument_is_one_line(args, env, code, message):
    returncode, stderr, _ = fsp(*args, env=env)
    assert returncode == code
    assert one_line(stderr).startswith(message)


def test_a_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path):
    path = tmp_path / "missing.db"
    returncode, stderr, _ = fsp("replay", "ucn", f"sqlite:///{path}", env={"KAFKA_BROKER": "127.0.0.1:1"})
    assert returncode == 2 and one_line(stderr) == f"error: no SQLite file '{path}' in sqlite:///{path}"
    assert not path.exists()


def test_a_missing_postgresql_database_is_one_line():
    import sqlalchemy as sa

    try:
        sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg2://")).connect().close()
    except sa.exc.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {PG_URL}: {exc}")
    url = PG_URL.rsplit("/", 1)[0] + "/no_such_database_here"
    returncode, stderr, _ = fsp("replay", "ucn", url, env={"KAFKA_BROKER": "127.0.0.1:1"})
    assert returncode == 1
    line = one_line(stderr)
    assert line.startswith(f"error: cannot read {url}: ") and "no_such_database_here" in line


def test_a_folder_without_table_files_is_one_line(tmp_path):
    returncode, stderr, _ = fsp("replay", "storj", str(tmp_path), env={"KAFKA_BROKER": "127.0.0.1:1"})
    assert returncode == 2 and one_line(stderr) == f"error: no storj table files in {tmp_path}"


@pytest.mark.parametrize("follow", [[], ["--follow"]])
def test_a_database_without_the_datasets_tables_is_one_line(tmp_path, follow):
    import sqlite3

    with sqlite3.connect(tmp_path / "other.db") as db:
        db.execute("CREATE TABLE other (a integer)")
    url = f"sqlite:///{tmp_path / 'other.db'}"
    returncode, stderr, _ = fsp("replay", "ucn", url, *follow, env={"KAFKA_BROKER": "127.0.0.1:1"})
    assert returncode == 2 and one_line(stderr) == f"error: no ucn tables in {url}"


def test_a_kafka_address_where_nothing_listens_fails_within_seconds(tmp_path):
    from datasets.storj.generate import generate_storj

    generate_storj(tmp_path, seed=2, scale=0.002)
    returncode, stderr, took = fsp("replay", "storj", str(tmp_path), env={"KAFKA_BROKER": "127.0.0.1:1"})
    assert returncode == 1
    assert one_line(stderr) == "error: no Kafka broker answers at KAFKA_BROKER=127.0.0.1:1 within 5 s"
    assert took < 15


def test_stack_refuses_a_redis_url_that_does_not_answer():
    returncode, stderr, _ = fsp("stack", env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert returncode == 1 and one_line(stderr).startswith("error: no Redis answers at REDIS_URL=redis://127.0.0.1:1/0")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(state) and not state.startswith("Z")


@pytest.mark.integration
def test_stack_stops_its_children_on_sigterm():
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BROKER", "REDIS_URL")}
    stack = subprocess.Popen([sys.executable, "-m", "fsp", "stack"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert stack.stdout.readline().startswith("export KAFKA_BROKER=")
        children = _children(stack.pid)
        assert children  # the embedded broker at least
        stack.send_signal(signal.SIGTERM)
        assert stack.wait(30) == 0
        deadline = time.monotonic() + 10
        while any(_alive(child) for child in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [child for child in children if _alive(child)]
    finally:
        if stack.poll() is None:
            stack.kill()


@pytest.mark.integration
def test_replay_wait_without_a_worker_says_so_within_seconds_after_its_summary(pipeline_factory, tmp_path):
    from datasets.storj.generate import generate_storj

    pipeline = pipeline_factory()
    from stream.client import live_workers

    pipeline.worker.kill()
    pipeline.worker.wait()
    deadline = time.monotonic() + 15
    while live_workers(pipeline.redis(), "storj", pipeline.prefix) and time.monotonic() < deadline:
        time.sleep(0.5)  # a beat it gave before it was killed goes stale
    folder = tmp_path / "dump"
    generate_storj(folder, seed=2, scale=0.002)
    env = {"KAFKA_BROKER": pipeline.broker, "REDIS_URL": pipeline.redis_url, "FEATURE_PREFIX": pipeline.prefix}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "fsp", "replay", "storj", str(folder), "--wait", "--no-progress"],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert time.monotonic() - started < 30
    assert done.returncode == 1
    assert done.stdout.startswith("replay storj run ")  # the summary of what was published comes first
    assert one_line(done.stderr).startswith("error: no storj stream worker is running")


@pytest.mark.integration
def test_partitions_that_do_not_match_the_topics_are_one_line(pipeline, tmp_path):
    """The pipeline's topics have 4 partitions; a replay told 8 would place keys where no state is."""
    from datasets.storj.generate import generate_storj

    generate_storj(tmp_path / "dump", seed=2, scale=0.002)
    pipeline.wait_ready()  # the worker made the topics, with 4 partitions
    env = {"KAFKA_BROKER": pipeline.broker, "PARTITIONS": "8"}
    returncode, stderr, _ = fsp("replay", "storj", str(tmp_path / "dump"), env=env)
    assert returncode == 1
    assert one_line(stderr) == ("error: PARTITIONS=8 but storj.users has 4 partitions; set PARTITIONS=4 "
                                "(every topic of the project has the same count)")
