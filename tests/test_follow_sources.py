"""Follow mode's readers over a real SQLite file and CSV folder, no broker: the rows a poll finds are the rows
a full replay reads, with the same event ids, each once."""
from __future__ import annotations

import json
import sqlite3
from collections import Counter

import pytest

from datasets.ucn.generate import generate_ucn
from replay.follow import DatabaseSource, FolderSource, only_follower
from replay.sources.base import SourceRow
from replay.sources.csv_folder import read_folder
from replay.sources.database import read_database


def _eids(items) -> Counter:
    return Counter(item.row.eid for item in items if isinstance(item, SourceRow))


def _reopened(source, cls, *args):
    """The source as a restarted follow has it: from its saved state, through JSON."""
    return cls(*args, json.loads(json.dumps(source.state())))


def test_database_polls_find_new_rows_once_with_the_replays_event_ids(tmp_path):
    url = f"sqlite:///{tmp_path / 'ucn.db'}"
    generate_ucn(url, seed=8, scale=0.02)
    source = DatabaseSource(url, "ucn", None)
    history, _ = source.history()
    assert _eids(history) == _eids(read_database(url, "ucn"))
    source.advance(now_s=0)
    assert list(source.read()) == []
    source.advance(now_s=1)
    db = sqlite3.connect(tmp_path / "ucn.db")
    with db:
        top = db.execute("SELECT MAX(id) FROM dnsreqs").fetchone()[0]
        db.execute("INSERT INTO dnsreqs (id, devid, ts, query, user_req) VALUES (?, 1, '2015-11-30 07:00:00', "
                   "'a.example', 1), (?, 1, '2015-10-01 07:00:00', 'late.example', 1)", (top + 1, top + 2))
        db.execute("INSERT INTO user_devices (user_id, device_id) VALUES (2, 1)")
        db.execute("INSERT INTO dnsreqs (id, devid, ts, query, user_req) VALUES (NULL, 1, '2015-11-30 07:00:01', "
                   "'no-id.example', 1)")
    db.close()
    source = _reopened(source, DatabaseSource, url, "ucn")
    polled = list(source.read())
    source.advance(now_s=2)
    new = {f"dnsreqs:{top + 1}", f"dnsreqs:{top + 2}", "user_devices:2:1"}
    assert _eids(polled) == Counter(new)  # the row with an old event time too: found by its id
    assert [item.reason for item in polled if not isinstance(item, SourceRow)] == ["missing id"]
    assert {eid for eid in _eids(read_database(url, "ucn")) if eid in new} == new  # same ids as a replay's
    assert polled[0].spec.name == "user_devices"  # reference rows first, as in a replay
    assert list(source.read()) == []


def test_a_table_without_id_is_followed_by_event_time(tmp_path):
    db_path = tmp_path / "storj.db"
    db = sqlite3.connect(db_path)
    with db:
        db.execute("CREATE TABLE bbr (interval_start timestamp, action integer, inline integer, settled integer, "
                   "project_id text)")
        db.executemany("INSERT INTO bbr VALUES (?, 1, 0, ?, 'p1')",
                       [("2021-04-20 17:00:00", 1), ("2021-04-20 18:00:00", 2)])
    url = f"sqlite:///{db_path}"
    source = DatabaseSource(url, "storj", None)
    assert len(list(source.history()[0])) == 2
    source.advance(now_s=0)
    assert source.state()["bbr"]["kind"] == "time"
    with db:  # one more row at the newest instant, one later, one older (not found: documented)
        db.executemany("INSERT INTO bbr VALUES (?, 1, 0, ?, 'p1')",
                       [("2021-04-20 18:00:00", 3), ("2021-04-20 19:00:00", 4), ("2021-04-20 16:00:00", 5)])
    db.close()
    source = _reopened(source, DatabaseSource, url, "storj")
    polled = list(source.read())
    source.advance(now_s=1)
    assert sorted(item.row.values["settled"] for item in polled) == [3, 4]
    assert list(source.read()) == []


def test_folder_history_then_appended_rows_have_the_replays_event_ids(tmp_path):
    folder = tmp_path / "ucn"
    generate_ucn(str(folder), seed=8, scale=0.02)
    source = FolderSource(str(folder), "ucn", None)
    history, total = source.history()
    assert _eids(history) == _eids(read_folder(folder, "ucn")) and total > 1000
    source.advance(now_s=0)
    with open(folder / "dnsreqs.csv", "a") as handle:
        handle.write("99999,99999,1,2015-11-30 07:00:00,a.example,True\n")
    source = _reopened(source, FolderSource, str(folder), "ucn")
    polled = source.read()
    source.advance(now_s=1)
    assert _eids(polled) == Counter({"dnsreqs:99999": 1})
    assert polled[0].origin == f"dnsreqs.csv:{sum(1 for _ in open(folder / 'dnsreqs.csv'))}"
    assert source.read() == []


def test_a_second_follower_of_one_source_is_refused_while_the_first_runs(tmp_path):
    import os
    import subprocess
    import sys

    cursor = tmp_path / ".fsp" / "follow-ucn-abc.json"
    with only_follower(cursor):
        other = subprocess.run([sys.executable, "-c", f"from replay.follow import only_follower\n"
                                f"with only_follower(__import__('pathlib').Path({str(cursor)!r})): pass"],
                               capture_output=True, text=True)
        assert other.returncode == 1
        assert other.stderr.strip() == (f"error: another follow of this source is running (pid {os.getpid()}, "
                                        f"lock {cursor.with_suffix('.lock')})")
    with only_follower(cursor):  # free again once the first is done
        pass
    with pytest.raises(SystemExit, match="another follow"), only_follower(cursor), only_follower(cursor):
        pass
