"""`fsp bench growth`: does one update cost more as a key's history grows?

Four keys are fed a long history in rounds, through the worker's real record
path in one process (stream.runtime.driver: the real stages, runner and
stores, no broker), and at 1%, 10%, 50% and 100% of the history the bench
reports the CPU per row of the median round among those just before that
point and the largest changelog record written in them. In one process the figures are the
record path's own, without the broker's and Faust's noise: what grows with
history would grow there. The target (issue #13): the last point costs at
most 1.5x the first, and no record passes 64 KB.

Cases:
* storj project: one project with two buckets fed 200,000 bandwidth rows,
  hour after hour (5.7 years);
* storj operator: one email with 5,000 nodes;
* ucn device: one device with 100,000 dns and http rows whose ids
  interleave with two other devices' (every third id), a location a day;
* ucn user: one user with two devices over 12 months of activity, traffic
  and locations, one day per round.
"""
from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timedelta, timezone

import orjson

from stream.runtime.driver import changelog_table

POINTS = (0.01, 0.10, 0.50, 1.00)
RECORD_LIMIT = 64 * 1024
T0 = datetime(2021, 1, 1)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")


def _msg(key, rows) -> tuple[bytes, bytes]:
    return str(key).encode(), orjson.dumps(rows)


class _Meter:
    """Per round: rows, CPU seconds and the largest changelog record."""

    def __init__(self, path):
        self.path, self.rounds = path, []

    async def round(self, rows: int, feed) -> None:
        producer = self.path.app.producer
        producer.largest.clear()
        self.path.runtime.sink._pending.clear()  # no Redis here: snapshots are made, then dropped
        started = time.process_time()
        await feed()
        cpu = time.process_time() - started
        largest = max((size for topic, size in producer.largest.items() if changelog_table(topic)), default=0)
        topic = max((t for t in producer.largest if changelog_table(t)), key=producer.largest.get, default="")
        self.rounds.append((rows, cpu, largest, changelog_table(topic) or ""))

    def report(self) -> list[dict]:
        total = sum(rows for rows, _, _, _ in self.rounds)
        out = []
        for point in POINTS:
            upto, index = 0, 0
            for index, (rows, _, _, _) in enumerate(self.rounds):  # noqa: B007 (the index is used after the loop)
                upto += rows
                if upto >= point * total:
                    break
            # the round at the point and the ones just before it (at least 3, 2% of the rounds); the median
            # round, so that one garbage collection or a first call's warm-up does not make the figure
            width = max(3, len(self.rounds) // 50)
            window = self.rounds[max(0, index + 1 - width): index + 1]
            per_row = sorted(cpu / rows for rows, cpu, _, _ in window if rows)
            largest = max(window, key=lambda r: r[2])
            out.append({"point": point, "rows_so_far": upto, "cpu_us_per_row": 1e6 * per_row[len(per_row) // 2],
                        "largest_record": largest[2], "largest_in": largest[3]})
        return out


async def _storj_project(path, rows_total: int = 200_000, per_round: int = 2_000) -> _Meter:
    meter = _Meter(path)
    await path.feed("storj.users", [_msg("u1", {"id": "u1", "email_hash": "e1", "created_at": _iso(T0)})])
    await path.feed("storj.projects", [_msg("p1", {"project_id": "p1", "user_id": "u1", "created_at": _iso(T0),
                                                   "usage_limit": 10**12, "bandwidth_limit": 10**11})])
    rng = random.Random(1)
    hour = 0
    for _ in range(rows_total // per_round):
        rows = []
        for _ in range(per_round // 4):  # two buckets, an upload and a download row each, every hour:
            moment = T0 + timedelta(hours=hour)  # ~35,000 rows a year, 200,000 in 5.7 years
            hour += 1
            for action in (1, 1, 2, 2):
                rows.append({"project_id": "p1", "interval_start": _iso(moment), "action": action,
                             "settled": rng.randrange(10**9), "inline": 0})
        await meter.round(len(rows), lambda rows=rows: path.feed("storj.bbr", [_msg("p1", rows)]))
    return meter


async def _storj_operator(path, nodes: int = 5_000, per_round: int = 50) -> _Meter:
    meter = _Meter(path)
    await path.feed("storj.users", [_msg("u1", {"id": "u1", "email_hash": "e1", "created_at": _iso(T0)})])
    for start in range(0, nodes, per_round):
        messages = [_msg(f"n{i}", {"id": f"n{i}", "email_hash": "e1", "wallet": f"0x{i % 7}",
                                   "created_at": _iso(T0 + timedelta(minutes=i)), "free_disk": 10**9,
                                   "piece_count": i, "last_contact_success": _iso(T0),
                                   "disqualified": None, "suspended": None})
                    for i in range(start, start + per_round)]
        await meter.round(len(messages), lambda messages=messages: path.feed("storj.nodes", messages,
                                                                             partition=0))
    return meter


def _us(moment) -> int:
    """A naive UTC datetime as the stream's event time (microseconds)."""
    return int(moment.replace(tzinfo=timezone.utc).timestamp()) * 1_000_000


async def _ucn_link(path, user: int, devices: list[int]) -> None:
    await path.feed("ucn.users", [_msg(user, {"id": user, "username": f"u{user}", "country": "fr"})])
    for device in devices:
        await path.feed("ucn.devices", [_msg(device, {"id": device, "platform": "ios", "shared": False})])
        await path.feed("ucn.user_devices", [_msg(device, {"user_id": user, "device_id": device})])


async def _ucn_device(path, events: int = 100_000, per_round: int = 1_000) -> _Meter:
    meter = _Meter(path)
    await _ucn_link(path, 1, [7])
    moment = T0
    partition = path.runtime.partition_of(b"7")
    for start in range(0, events, per_round):
        dns, http, places = [], [], []
        for i in range(start, start + per_round):
            moment += timedelta(seconds=1 if i % 50 else 900)  # bursts of 50 events, 15 minutes apart
            if i % 2:
                http.append({"id": 3 * i + 1, "devid": 7, "ts": _iso(moment), "req_url_host": "example.org",
                             "user_url": True})
            else:
                dns.append({"id": 3 * i + 1, "devid": 7, "ts": _iso(moment), "query": "example.org"})
            if i % 1_000 == 0:
                places.append({"id": i + 1, "devid": 7, "entertime": _iso(moment),
                               "exittime": _iso(moment + timedelta(hours=1)), "name": "home"})

        async def feed(dns=dns, http=http, places=places, moment=moment) -> None:
            await path.feed("ucn.locations", [_msg(7, places)], partition=partition)
            await path.feed("ucn.dnsreqs", [_msg(7, dns)], partition=partition)
            await path.feed("ucn.httpreqs", [_msg(7, http)], partition=partition)
            await path.replay_progress("ucn", _us(moment))

        await meter.round(per_round + len(places), feed)
    return meter


async def _ucn_user(path, days: int = 365) -> _Meter:
    meter = _Meter(path)
    devices = [7, 8]
    await _ucn_link(path, 1, devices)
    rng = random.Random(2)
    ids = {"dnsreqs": 0, "httpreqs": 0, "devicetraffic": 0, "locations": 0}

    def next_id(table: str) -> int:
        ids[table] += 1
        return ids[table]

    for day in range(days):
        by_topic: dict[str, dict[int, list]] = {}
        for device in devices:
            for session in range(rng.randint(2, 6)):
                moment = T0 + timedelta(days=day, hours=8 + 3 * session, minutes=rng.randrange(60))
                place = {"id": next_id("locations"), "devid": device, "entertime": _iso(moment),
                         "exittime": _iso(moment + timedelta(hours=2)), "name": f"place {session}"}
                by_topic.setdefault("ucn.locations", {}).setdefault(device, []).append(place)
                for _ in range(rng.randint(5, 40)):
                    moment += timedelta(seconds=rng.randint(1, 120))
                    table = rng.choice(("dnsreqs", "httpreqs"))
                    row = {"id": next_id(table), "devid": device, "ts": _iso(moment)}
                    row.update({"query": "example.org"} if table == "dnsreqs" else
                               {"req_url_host": "example.org", "user_url": True})
                    by_topic.setdefault(f"ucn.{table}", {}).setdefault(device, []).append(row)
                    traffic = {"id": next_id("devicetraffic"), "devid": device, "ts": _iso(moment),
                               "bytes_in": rng.randrange(10**5), "bytes_out": rng.randrange(10**4),
                               "packets_in": 10, "packets_out": 5}
                    by_topic.setdefault("ucn.devicetraffic", {}).setdefault(device, []).append(traffic)
        rows = sum(len(r) for per_device in by_topic.values() for r in per_device.values())

        async def feed(by_topic=by_topic, day=day) -> None:
            for topic, per_device in by_topic.items():
                for device, device_rows in per_device.items():
                    partition = path.runtime.partition_of(str(device).encode())
                    await path.feed(topic, [_msg(device, device_rows)], partition=partition)
            await path.replay_progress("ucn", _us(T0 + timedelta(days=day + 1)) - 1)

        await meter.round(rows, feed)
    return meter


CASES = {
    "storj project, 200,000 bandwidth rows": _storj_project,
    "storj operator, 5,000 nodes": _storj_operator,
    "ucn device, 100,000 interleaved ids": _ucn_device,
    "ucn user, 12 months": _ucn_user,
}


def run_growth(quick: bool = False) -> dict:
    """Every case in a fresh record path; `quick` feeds a tenth of each history (for a smoke run)."""
    from stream.runtime.driver import RecordPath

    small = {"storj project, 200,000 bandwidth rows": {"rows_total": 4_000},
             "storj operator, 5,000 nodes": {"nodes": 200},
             "ucn device, 100,000 interleaved ids": {"events": 4_000},
             "ucn user, 12 months": {"days": 10}}
    for name, case in CASES.items():  # warm up (imports, caches) so that the first point is not the first call
        asyncio.run(case(RecordPath(partitions=4, keep_sent=False), **small[name]))
    results = {}
    for name, case in CASES.items():
        path = RecordPath(partitions=4, keep_sent=False)
        kwargs = {}
        if quick:
            kwargs = {"storj project, 200,000 bandwidth rows": {"rows_total": 20_000},
                      "storj operator, 5,000 nodes": {"nodes": 500},
                      "ucn device, 100,000 interleaved ids": {"events": 10_000},
                      "ucn user, 12 months": {"days": 36}}[name]
        meter = asyncio.run(case(path, **kwargs))
        points = meter.report()
        results[name] = {
            "points": points,
            "last_over_first": points[-1]["cpu_us_per_row"] / points[0]["cpu_us_per_row"],
            "largest_record": max(size for _, _, size, _ in meter.rounds),
            "changelog_bytes": sum(v for t, v in path.app.producer.sent_bytes.items() if changelog_table(t)),
            "rows": sum(rows for rows, _, _, _ in meter.rounds),
            "dead_letters": sum(v for t, v in path.app.producer.sent_bytes.items() if t.endswith(".dlq")),
        }
    return results


def print_growth(results: dict) -> None:
    print(f"{'case':40} {'at':>5} {'rows':>8} {'CPU us/row':>11} {'largest record':>15}")
    for name, result in results.items():
        for p in result["points"]:
            print(f"{name:40} {p['point']:>5.0%} {p['rows_so_far']:>8,} {p['cpu_us_per_row']:>11.1f} "
                  f"{p['largest_record']:>9,} B {p['largest_in']}")
        verdict = "flat" if result["last_over_first"] <= 1.5 else "GROWS"
        size = "ok" if result["largest_record"] <= RECORD_LIMIT else "OVER 64 KB"
        print(f"{'':40} last/first {result['last_over_first']:.2f} ({verdict}); largest record "
              f"{result['largest_record']:,} B ({size}); changelog {result['changelog_bytes']:,} B for "
              f"{result['rows']:,} rows; dead letters {result['dead_letters']:,} B")
