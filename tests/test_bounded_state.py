"""One key fed a history that used to pass the broker's record limit: the pipeline goes on, exact, and no
state record passes 64 KB (through the worker's record path in one process: stream.runtime.driver)."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from stream.logic.sessions import pending_in_state
from stream.runtime import state_backends
from stream.runtime.driver import RecordPath, changelog_table

LIMIT = 64 * 1024
T0 = datetime(2021, 1, 1)


@pytest.fixture(params=[state_backends.MEMORY, state_backends.ROCKSDB])
def new_path(request, tmp_path):
    """A record path on the memory store and on RocksDB (its own directory)."""
    return lambda: RecordPath(store_kind=request.param, state_dir=str(tmp_path / "state"), keep_sent=False)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def feed(path: RecordPath, topic: str, key, rows, partition: int | None = None) -> None:
    if partition is None:
        partition = path.runtime.partition_of(str(key).encode())
    asyncio.run(path.feed(topic, [(str(key).encode(), orjson.dumps(rows))], partition=partition))


def replay_progress(path: RecordPath, moment: datetime) -> None:
    """The replay's word into every partition: every row up to `moment` is published."""
    asyncio.run(path.replay_progress("ucn", int(moment.replace(tzinfo=timezone.utc).timestamp()) * 1_000_000))


def largest_state_record(path: RecordPath) -> int:
    return max(size for topic, size in path.app.producer.largest.items() if changelog_table(topic))


def test_a_project_with_60000_bandwidth_rows_stays_small_and_exact(new_path):
    """At ~50,000 rows the project's state used to pass 1 MB: the worker died on every restart."""
    path = new_path()
    feed(path, "storj.projects", "p1", [{"project_id": "p1", "user_id": "u1", "created_at": iso(T0)}])
    rounds = [[{"project_id": "p1", "interval_start": iso(T0 + timedelta(hours=h)), "action": 1 + h % 2,
                "settled": 10} for h in range(start, start + 2_500)] for start in range(0, 60_000, 2_500)]
    for rows in rounds:
        feed(path, "storj.bbr", "p1", rows)
    feed(path, "storj.bbr", "p1", rounds[3])  # a redelivered round changes nothing
    state = path.state("storj_project", "p1").state
    assert (state.uploads, state.downloads, state.events) == (30_000, 30_000, 60_001)  # + the projects row
    assert sum(state.monthly_upload_bytes.values()) == 300_000
    assert path.dead_letters("storj") == []
    assert largest_state_record(path) < LIMIT


def test_an_operator_with_2000_nodes_stays_small(new_path):
    """620 bytes per node used to make an operator of 1,600 nodes pass 1 MB."""
    path = new_path()
    for n in range(2_000):
        feed(path, "storj.nodes", f"n{n}", [{"id": f"n{n}", "email_hash": "e1", "wallet": f"0x{n % 3}",
                                             "created_at": iso(T0), "free_disk": 5, "piece_count": 1}])
    feed(path, "storj.nodes", "n7", [{"id": "n7", "email_hash": "e2", "created_at": iso(T0 + timedelta(days=1))}])
    operator = path.state("storj_operator", "e1").state
    assert (operator.node_count, operator.free_disk_bytes, operator.piece_count) == (1_999, 9_995, 1_999)
    assert operator.wallet_nodes == {"0x0": 667, "0x1": 666, "0x2": 666}
    assert path.state("storj_operator", "e2").state.node_count == 1
    assert path.dead_letters("storj") == []
    assert largest_state_record(path) < LIMIT


def _burst_time(i: int) -> datetime:
    """Bursts of 50 events a second apart, 15 minutes between bursts: sessions that close."""
    return T0 + timedelta(seconds=i + (i // 50) * 900)


def _activity(path: RecordPath, device: int, start: int, count: int, id_stride: int) -> None:
    """`count` dns rows from id `start` (every `id_stride`-th id), an http row every 10th, a location."""
    feed(path, "ucn.dnsreqs", device, [{"id": id_stride * i, "devid": device, "ts": iso(_burst_time(i)),
                                        "query": "x.org"} for i in range(start, start + count)])
    feed(path, "ucn.httpreqs", device, [{"id": id_stride * i + 1, "devid": device, "req_url_host": "x.org",
                                         "ts": iso(_burst_time(i) + timedelta(seconds=1))}
                                        for i in range(start, start + count, 10)])
    feed(path, "ucn.locations", device, [{"id": start, "devid": device, "entertime": iso(_burst_time(start)),
                                          "exittime": iso(_burst_time(start) + timedelta(hours=1)), "name": "home"}])


def _link(path: RecordPath, user: int, device: int) -> None:
    feed(path, "ucn.users", user, [{"id": user, "username": "u", "country": "fr"}])
    feed(path, "ucn.devices", device, [{"id": device, "platform": "ios", "shared": False}])
    feed(path, "ucn.user_devices", device, [{"user_id": user, "device_id": device}])


def test_a_device_held_for_3000_rows_before_its_link_keeps_them_beside_its_state(new_path):
    path = new_path()
    for start in range(0, 3_000, 250):
        _activity(path, 7, start, 250, 1)
    device = path.state("ucn_device", "7").state
    assert device.held_rows == 3_312 and device.held_parts == 6  # 3,000 dns, 300 http, 12 location rows
    assert largest_state_record(path) < LIMIT
    _link(path, 1, 7)
    assert path.state("ucn_user", "1").state.dns_rows == 3_000
    # the user holds the 3,000 released events in its window until the stream's event time passes them
    replay_progress(path, _burst_time(3_000))
    feed(path, "ucn.dnsreqs", 7, [{"id": 3_000, "devid": 7, "ts": iso(_burst_time(3_000)), "query": "x.org"}])
    assert path.state("ucn_user", "1").state.dns_rows == 3_001
    assert len(path.runtime.store("ucn_user").codec.encode(path.state("ucn_user", "1"))) < LIMIT
    left = [raw for p in range(2) for raw, value in path.runtime.store("ucn_device").data.items_in(p)
            if raw[2:3] in (b"h", b"o") and value and orjson.loads(value)["c"] is not None]
    assert left == []  # held parts and owed records beside the device: all delivered
    assert path.dead_letters("ucn") == []


def test_a_device_with_60000_ids_interleaved_with_other_devices_stays_small(new_path):
    path = new_path()
    _link(path, 1, 7)
    for start in range(0, 60_000, 250):  # a session window holds what one batch brings: 250 events here
        _activity(path, 7, start, 250, 3)
        replay_progress(path, _burst_time(start + 249))
    feed(path, "ucn.dnsreqs", 7, [{"id": 3 * i, "devid": 7, "ts": iso(_burst_time(i)), "query": "x.org"}
                                  for i in range(0, 60_000, 997)])  # duplicates
    window = path.state("ucn_user", "1").state.window
    pending = pending_in_state(window)
    # what a window holds: the last batch (250 dns + 25 http events) and the events within gap + lateness
    # (70 minutes: under 5 bursts of 50) of the user's event time, not the 60,000 events of the history
    assert pending <= 275 + 5 * 55, pending
    assert path.state("ucn_device", "7").state.duplicate_rows == len(range(0, 60_000, 997))
    assert path.state("ucn_user", "1").state.dns_rows == 60_000
    assert path.dead_letters("ucn") == []
    assert largest_state_record(path) < LIMIT
