"""A replay's progress marks in a source batch (stream.runtime.stages): they split the batch only for a stage
that keeps event time by them, so that a stage that ignores them writes a key once per batch."""
from __future__ import annotations

import asyncio

import orjson

from contract import wire
from stream.runtime.driver import RecordPath

TS_US = 1_609_459_200_000_000  # 2021-01-01


def batch(path: RecordPath, topic: str, key: str, messages: list[bytes]) -> None:
    """`messages` as one fetched batch of the key's partition."""
    asyncio.run(path.feed(topic, [(key.encode(), value) for value in messages], path.partition_of(key.encode())))


def test_a_storj_project_folds_its_rows_on_both_sides_of_a_progress_mark_in_one_write():
    path = RecordPath()
    batch(path, "storj.projects", "p1", [orjson.dumps({"project_id": "p1", "user_id": "u1",
                                                       "created_at": "2020-12-01T00:00:00"})])
    sent_before = len(path.app.producer.sent)
    rows = [[{"project_id": "p1", "interval_start": f"2021-01-01T0{hour}:00:00", "action": 1, "settled": 10}]
            for hour in range(4)]
    mark = wire.encode_progress("bbr", path.partition_of(b"p1"), TS_US)
    batch(path, "storj.bbr", "p1", [orjson.dumps(rows[0]), orjson.dumps(rows[1]), mark,
                                    orjson.dumps(rows[2]), mark, orjson.dumps(rows[3])])
    project = path.state("storj_project", "p1")
    assert project.state.events == 5 and project.state.uploads == 4  # (and the projects row)
    assert project.writes == 2  # the projects row's, then one for the batch: split at each mark, 3
    sent = [orjson.loads(value) for topic, _, value, _ in path.app.producer.sent[sent_before:]
            if topic == "storj.internal.user"]
    summaries = [record for value in sent for record in (value if isinstance(value, list) else [value])]
    assert len(summaries) == 1  # the project's summary once for the batch, not once per part


def test_a_ucn_device_still_applies_the_rows_before_a_progress_mark_before_it():
    """The ucn device stage keeps event time by the marks: what came before one is applied first."""
    path = RecordPath()
    device = "7"
    dns = [[{"id": n, "devid": 7, "ts": f"2015-11-02T10:0{n}:00"}] for n in range(3)]
    mark = wire.encode_progress("dnsreqs", path.partition_of(device.encode()), TS_US)
    batch(path, "ucn.dnsreqs", device, [orjson.dumps(dns[0]), mark, orjson.dumps(dns[1]), orjson.dumps(dns[2])])
    assert path.state("ucn_device", device).writes == 2  # the part before the mark, then the part after it
