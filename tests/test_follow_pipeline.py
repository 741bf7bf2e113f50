"""`fsp replay --follow` end to end: the history, then rows inserted into PostgreSQL (or appended to CSV files)
while follow runs as a process of its own, stopped and restarted on its cursor; the run ended by `--resume`.
Redis then equals the batch computation over every row."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from datasets.storj.generate import generate_storj
from datasets.ucn.generate import generate_ucn
from tests.conftest import PG_URL

pytestmark = pytest.mark.integration

READY = "following new rows every"


class Follow:
    """`fsp replay DATASET SOURCE --follow` as a process, its output lines collected as they come."""

    def __init__(self, pipeline, dataset: str, source: str, cwd: Path):
        self.env = {**os.environ, "KAFKA_BROKER": pipeline.broker, "REDIS_URL": pipeline.redis_url,
                    "FEATURE_PREFIX": pipeline.prefix, "PARTITIONS": str(pipeline.partitions)}
        self.pipeline, self.dataset, self.source, self.cwd = pipeline, dataset, source, cwd
        self.proc = subprocess.Popen([sys.executable, "-m", "fsp", "replay", dataset, source, "--follow",
                                      "--interval", "0.2", "--no-progress"], cwd=cwd, env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.lines if text in line]
            if found:
                return found[0]
            assert self.proc.poll() is None, f"follow exited {self.proc.returncode}: {self.lines}"
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} within {timeout} s: {self.lines}")

    def checkpoint(self) -> dict:
        from replay.job import checkpoint_path

        return json.loads(checkpoint_path(self.dataset, self.source, str(self.cwd / ".fsp"), "follow").read_text())

    def wait_published(self, rows: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.checkpoint()["follow"]["published"] < rows:
            assert time.monotonic() < deadline, f"published {self.checkpoint()['follow']['published']} of {rows}"
            time.sleep(0.05)

    def stop(self) -> list[str]:
        """SIGTERM: the process flushes, saves its cursor and exits 0."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(30) == 0, self.lines
        time.sleep(0.1)  # the reader thread takes the last lines
        return self.lines

    def finish(self) -> str:
        """`--resume` without `--follow`: what is new, then the end mark; `--wait` until Redis has it all.
        `--wait` gives up on a dataset no worker says it is alive for: a worker's first heartbeat can come
        seconds after it is ready, so it is awaited first."""
        from stream.client import live_workers

        deadline = time.monotonic() + 30
        while not live_workers(self.pipeline.redis(), self.dataset, self.pipeline.prefix):
            assert time.monotonic() < deadline, "the worker never said it was alive"
            time.sleep(0.1)
        done = subprocess.run([sys.executable, "-m", "fsp", "replay", self.dataset, self.source, "--resume", "--wait",
                               "--no-progress", "--timeout", "60"], cwd=self.cwd, env=self.env, capture_output=True,
                              text=True, timeout=90)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


def _personal_devices(conn) -> dict:
    """user -> one of its personal devices (linked, not shared)."""
    rows = conn.execute(sa.text(
        "SELECT ud.user_id, ud.device_id FROM user_devices ud JOIN devices d ON d.id = ud.device_id "
        "WHERE NOT COALESCE(d.shared, false) ORDER BY ud.user_id, ud.device_id")).fetchall()
    return {user: device for user, device in rows}


def _newest_event(conn) -> datetime:
    return max(conn.execute(sa.text(f"SELECT MAX({column}) FROM {table}")).scalar_one() for table, column in (
        ("dnsreqs", "ts"), ("httpreqs2", "ts"), ("devicetraffic", "ts"), ("deviceapptraffic", "ts"),
        ("locations", "entertime")))


def _distinct_rows(conn) -> int:
    """Rows the stream tells apart (event ids): what a run publishes when it publishes no row twice."""
    tables = ["users", "devices", "devicetraffic", "deviceapptraffic", "httpreqs2", "dnsreqs", "locations"]
    ids = sum(conn.execute(sa.text(f"SELECT COUNT(DISTINCT id) FROM {t}")).scalar_one() for t in tables)
    return ids + conn.execute(sa.text("SELECT COUNT(*) FROM (SELECT DISTINCT user_id, device_id FROM user_devices) l"))\
        .scalar_one()


def _insert(conn, table: str, rows: list[dict]) -> None:
    columns = list(rows[0])
    conn.execute(sa.text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                         f"({', '.join(':' + c for c in columns)})"), rows)


def test_postgresql_follow_through_a_restart_equals_batch_and_keeps_sessions_across_the_handover(
        pipeline_factory, pg_schema, tmp_path):
    from stream.client import get_sessions

    pipeline = pipeline_factory("ucn")
    generate_ucn(PG_URL, seed=6, scale=0.03, schema=pg_schema)
    pipeline.wait_ready("ucn")
    url = f"{PG_URL}?options=-csearch_path%3D{pg_schema}"
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.connect() as conn:
        devices = _personal_devices(conn)
        end = _newest_event(conn)
        next_id = {t: conn.execute(sa.text(f"SELECT MAX(id) FROM {t}")).scalar_one() + 1
                   for t in ("dnsreqs", "httpreqs2", "devicetraffic")}
    assert len(devices) >= 4

    def event(table: str, device: int, ts: datetime) -> dict:
        row_id, next_id[table] = next_id[table], next_id[table] + 1
        if table == "dnsreqs":
            return {"id": row_id, "devid": device, "ts": ts, "query": "follow.example", "user_req": True}
        if table == "httpreqs2":
            return {"id": row_id, "devid": device, "ts": ts, "req_url_host": "follow.example", "user_url": True}
        return {"id": row_id, "devid": device, "ts": ts, "packets_in": 1, "bytes_in": 100, "packets_out": 1,
                "bytes_out": 50}

    def at(minutes: float):
        """One dnsreqs row per user's device, `minutes` after the handover (a second apart per user)."""
        return [event("dnsreqs", device, handover + timedelta(minutes=minutes, seconds=n))
                for n, device in enumerate(devices.values())]

    # The history ends inside a session of every user: three events in its last 90 s.
    handover = end + timedelta(seconds=90)
    with engine.begin() as conn:
        _insert(conn, "dnsreqs", at(-1.5) + at(-1) + at(-0.5))

    follow = Follow(pipeline, "ucn", url, tmp_path)
    follow.wait_for(READY)
    published = follow.checkpoint()["follow"]["published"]
    transactions = [
        # within the 10 min gap of the history's last events: the open sessions go on
        {"dnsreqs": at(4), "devicetraffic": [event("devicetraffic", d, handover + timedelta(minutes=4))
                                             for d in devices.values()]},
        {"httpreqs2": [event("httpreqs2", d, handover + timedelta(minutes=9)) for d in devices.values()]},
        # new sessions 80 min on: event time passes the first ones' end + gap + lateness (70 min)
        {"dnsreqs": at(80)},
    ]
    for rows in transactions:
        with engine.begin() as conn:
            for table, batch in rows.items():
                _insert(conn, table, batch)
        published += sum(len(batch) for batch in rows.values())
        follow.wait_published(published)
    assert any("stopped; cursor saved" in line for line in follow.stop())

    # a restart resumes from the cursor: the history is not published again
    again = Follow(pipeline, "ucn", url, tmp_path)
    assert "resumed from its cursor" in again.wait_for(READY)
    with engine.begin() as conn:
        _insert(conn, "dnsreqs", at(83))
    published += len(devices)
    again.wait_published(published)

    def spanning(user) -> list[dict]:
        return [s for s in get_sessions(pipeline.redis(), "ucn", user, pipeline.prefix)
                if datetime.fromisoformat(s["start"]) < handover < datetime.fromisoformat(s["end"])]

    # the sessions across the handover closed by event time, with no end mark, each whole
    deadline = time.monotonic() + 30
    while not all(spanning(user) for user in devices) and time.monotonic() < deadline:
        time.sleep(0.2)
    for user in devices:
        assert [(s["events"] >= 5, s["end"]) for s in spanning(user)] == \
            [(True, (handover + timedelta(minutes=9)).isoformat())], user
    again.stop()
    assert "ended with 0 rows published now" in again.finish()

    with engine.connect() as conn:
        assert again.checkpoint()["follow"]["published"] == _distinct_rows(conn)  # no row published twice
    engine.dispose()
    mismatches, counts = pipeline.verify("ucn", url)
    assert counts["user"] >= 5
    assert [str(m)[:400] for m in mismatches] == []
    users = pipeline.features("ucn", "user")
    assert all(f["open_session"] is None and f["_meta"]["late_events"] == 0 for f in users.values())


def test_csv_follow_reads_appended_lines_and_new_files(pipeline_factory, tmp_path):
    pipeline = pipeline_factory("storj")
    folder = tmp_path / "dump"
    generate_storj(folder, seed=7, scale=0.01)
    pipeline.wait_ready("storj")
    bbr = folder / "bucket_data" / "us_bbr.csv"
    header = bbr.read_text().splitlines()[0]
    assert header == ",interval_start,action,inline,settled,project_id"
    lines = bbr.read_text().splitlines()[1:]
    last = max(datetime.fromisoformat(line.split(",")[1]) for line in lines)
    project = lines[-1].split(",")[-1]

    def row(n: int, hours: int) -> str:
        return f"{9000 + n},{last + timedelta(hours=hours)},{1 + n % 2},0,{1000 + n},{project}\n"

    follow = Follow(pipeline, "storj", str(folder), tmp_path)
    follow.wait_for(READY)
    published = follow.checkpoint()["follow"]["published"]
    with open(bbr, "a") as handle:
        handle.write(row(0, 1) + row(1, 1) + row(2, 2)[:12])  # the last line is cut short
    follow.wait_published(published + 2)
    time.sleep(0.6)  # three more polls: the partial line waits
    assert follow.checkpoint()["follow"]["published"] == published + 2
    with open(bbr, "a") as handle:
        handle.write(row(2, 2)[12:])
    (folder / "bucket_data" / "zz_bbr.csv").write_text(header + "\n" + row(3, 3) + row(4, 30))
    follow.wait_published(published + 5)
    follow.stop()
    follow.finish()
    mismatches, counts = pipeline.verify("storj", str(folder))
    assert [str(m)[:400] for m in mismatches] == []
    user = next(f for f in pipeline.features("storj", "user").values() if f["last_activity_at"] ==
                (last + timedelta(hours=30)).isoformat())
    assert user["usage_sessions_count"] >= 2  # the row 30 hours on began a session of its own
