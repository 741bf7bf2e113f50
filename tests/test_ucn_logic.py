"""Tests of datasets.ucn.logic: hand-computed cases, and random batches/arrival
orders against an in-order pass and a brute force written here on its own.

Rows are built with ``contract.rows.normalise`` (the stream's own front door);
a small in-process harness plays the runtime: device messages go through
stage 1, the records are routed by user key to stage 2, and every state and
record makes a JSON round trip (the changelog and the internal topic).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import tables
from contract.rows import normalise
from contract.timeutil import format_ts, parse_ts
from datasets.ucn import logic as ucn
from stream.logic import dedup, keyvalue

S = 1_000_000
HOUR = 3_600 * S
GAP = 600 * S
LATENESS = 3_600 * S


def T(text: str) -> int:
    return parse_ts(text)


def row(table: str, **raw):
    """A normalised row; timestamps may be given as integer microseconds."""
    for column in ("ts", "entertime", "exittime"):
        if isinstance(raw.get(column), int):
            raw[column] = format_ts(raw[column])
    return normalise(tables.table("ucn", table), raw)


def dns(i, dev, ts, query="x.com"):
    return row("dnsreqs", id=i, devid=dev, ts=ts, query=query, user_req=True)


def http(i, dev, ts, host="h.com", user_url=True, table="httpreqs"):
    return row(table, id=i, devid=dev, ts=ts, req_url_host=host, user_url=user_url)


def traffic(i, dev, ts, bytes_in=0, bytes_out=0, packets_in=0, packets_out=0):
    return row("devicetraffic", id=i, devid=dev, ts=ts, bytes_in=bytes_in, bytes_out=bytes_out,
               packets_in=packets_in, packets_out=packets_out)


def location(i, dev, enter, exit_, name):
    return row("locations", id=i, devid=dev, entertime=enter, exittime=exit_, name=name)


def json_round_trip(value):
    """A typed state or record through its JSON (the changelog, the internal topic), read back as its type."""
    return msgspec.json.decode(msgspec.json.encode(value), type=type(value))


def as_sent(record: ucn.DeviceRecord) -> dict:
    """A record as its JSON reads in the internal topic."""
    return orjson.loads(msgspec.json.encode(record))


class Harness:
    """Plays the runtime: stage-1 states per device, stage-2 states per user. Its event time is the
    newest row applied so far, as one partition's progress marks would say (rows given out of order are
    what tests of late events give)."""

    def __init__(self):
        self.event_time: int | None = None
        self.devices: dict[str, ucn.DeviceState] = {}
        self.users: dict[str, ucn.UserState] = {}
        self.inbox: dict[str, list] = defaultdict(list)
        self.sessions: dict[str, list] = defaultdict(list)
        self.sent: list[tuple[str, dict]] = []
        self.seen = keyvalue.DictStore()  # every device's applied ids, as the runtime keeps them beside its state

    def device(self, table: str, rows) -> list[tuple[str, dict]]:
        """One message batch of a device topic; returns what stage 1 sent."""
        groups = defaultdict(list)
        for r in rows:
            groups[r.key].append(r)
            if r.ts is not None and (self.event_time is None or r.ts > self.event_time):
                self.event_time = r.ts
        sent = []
        for key, group in groups.items():
            state = self.devices.get(key) or ucn.new_device()
            ucn.apply_device_rows(state, table, group, dedup.BlockedIntIds(self.seen, key))
            out = ucn.device_outbox(state, key)
            self.devices[key] = json_round_trip(state)
            for user, record in out:
                self.inbox[user].append(json_round_trip(record))
                sent.append((user, as_sent(record)))
        self.sent.extend(sent)
        return sent

    def user_rows(self, rows) -> None:
        groups = defaultdict(list)
        for r in rows:
            groups[r.key].append(r)
        for key, group in groups.items():
            state = self.users.get(key) or ucn.new_user()
            ucn.apply_user_rows(state, group)
            self.users[key] = json_round_trip(state)

    def flush(self, user: str | None = None) -> list[dict]:
        """Apply the inbox of one user (or of every user) as one batch."""
        closed = []
        for key in [user] if user is not None else sorted(self.inbox):
            records, self.inbox[key] = self.inbox[key], []
            if not records:
                continue
            state = self.users.get(key) or ucn.new_user()
            got = ucn.apply_user_records(state, records, self.event_time)
            self.sessions[key].extend(got)
            closed.extend(got)
            self.users[key] = json_round_trip(state)
        return closed

    def close(self) -> list[dict]:
        closed = []
        for key in sorted(self.users):
            state = self.users[key]
            got = ucn.close_user_windows(state)
            self.sessions[key].extend(got)
            closed.extend(got)
            self.users[key] = json_round_trip(state)
        return closed

    def features(self, user) -> dict:
        return ucn.user_features(self.users[str(user)])


def personal_setup(h: Harness, user=1, dev=10, country="uk", platform="ios"):
    h.user_rows([row("users", id=user, username=f"u{user}", country=country)])
    h.device("devices", [row("devices", id=dev, platform=platform, shared=False)])
    h.device("user_devices", [row("user_devices", user_id=user, device_id=dev)])
    h.flush()


# --------------------------------------------------------------------------- stage 1


def test_device_holds_events_until_row_and_link_then_releases_them():
    h = Harness()
    t0 = T("2015-11-02 10:00:00")
    assert h.device("dnsreqs", [dns(1, 10, t0), dns(2, 10, t0 + S)]) == []
    assert h.device("devicetraffic", [traffic(1, 10, t0, 5, 6, 1, 2)]) == []
    assert h.devices["10"].held_rows == 3
    assert h.device("user_devices", [row("user_devices", user_id=1, device_id=10)]) == []  # no devices row yet
    assert h.devices["10"].held_rows == 3
    sent = h.device("devices", [row("devices", id=10, platform="ios", shared=None)])
    assert [user for user, _ in sent] == ["1"]
    record = sent[0][1]
    assert record["k"] == "device" and record["device"] == 10 and record["user"] == 1
    assert record["platform"] == "ios" and record["shared"] is False  # null shared is false
    assert record["ev"]["n"] == 3 and record["ev"]["dns"] == 2
    assert len(ucn.activity_events(msgspec.convert(record["ev"], ucn.Contribution))) == 2
    assert record["ev"]["tr"] == [1, 5, 6, 1, 2, t0, t0]
    assert h.devices["10"].held_rows == 0 and h.devices["10"].forwarded_rows == 3
    # from now on every batch is forwarded at once, one record per owner
    sent = h.device("dnsreqs", [dns(3, 10, t0 + 2 * S), dns(4, 10, t0 + 3 * S)])
    assert len(sent) == 1 and sent[0][1]["ev"]["dns"] == 2
    h.flush()
    f = h.features(1)
    assert f["dns_requests"] == 4 and f["devices_personal"] == 1 and f["devices_shared"] == 0
    assert f["traffic_seconds"] == 1 and f["bytes_in"] == 5 and f["packets_out"] == 2
    assert f["open_session"] == {"start": format_ts(t0), "last_event_at": format_ts(t0 + 3 * S), "events": 4}


def test_device_row_first_then_link_releases_too():
    h = Harness()
    t0 = T("2015-11-02 10:00:00")
    h.device("devices", [row("devices", id=10, platform="android", shared=False)])
    assert h.device("dnsreqs", [dns(1, 10, t0)]) == []  # no owner yet
    sent = h.device("user_devices", [row("user_devices", user_id=7, device_id=10)])
    assert [(u, r["ev"]["n"]) for u, r in sent] == [("7", 1)]


def test_shared_device_counts_for_devices_shared_and_drops_its_events():
    h = Harness()
    t0 = T("2015-11-02 10:00:00")
    h.user_rows([row("users", id=1, username="a", country="uk"), row("users", id=2, username="b", country="fr")])
    h.device("dnsreqs", [dns(1, 12, t0), dns(2, 12, t0 + S)])  # held: the device is unknown yet
    h.device("user_devices", [row("user_devices", user_id=1, device_id=12),
                              row("user_devices", user_id=2, device_id=12)])
    sent = h.device("devices", [row("devices", id=12, platform="mac", shared=True)])
    assert sorted(u for u, _ in sent) == ["1", "2"]
    assert all("ev" not in r and r["shared"] is True for _, r in sent)
    assert h.devices["12"].unowned_events == 2 and h.devices["12"].held_rows == 0
    assert h.device("dnsreqs", [dns(3, 12, t0 + 2 * S)]) == []
    assert h.devices["12"].unowned_events == 3
    h.flush()
    for user in (1, 2):
        f = h.features(user)
        assert (f["devices_personal"], f["devices_shared"], f["dns_requests"]) == (0, 1, 0)
        assert f["open_session"] is None


def test_two_owner_device_belongs_to_both():
    h = Harness()
    t0 = T("2015-11-02 10:00:00")
    h.device("devices", [row("devices", id=11, platform="ios", shared=False)])
    h.device("user_devices", [row("user_devices", user_id=1, device_id=11),
                              row("user_devices", user_id=2, device_id=11)])
    sent = h.device("httpreqs", [http(1, 11, t0, user_url=False), http(2, 11, t0 + S, user_url=True)])
    assert sorted(u for u, _ in sent) == ["1", "2"]
    h.flush()
    for user in (1, 2):
        f = h.features(user)
        assert f["http_requests"] == 2 and f["devices_personal"] == 1
        assert f["open_session"]["events"] == 1  # only the user_url row is an activity event


def test_unknown_device_stays_held_and_counts_nowhere():
    h = Harness()
    personal_setup(h, user=1, dev=10)
    h.device("user_devices", [row("user_devices", user_id=1, device_id=13)])  # 13 is not in devices
    h.device("dnsreqs", [dns(1, 13, T("2015-11-02 10:00:00"))])
    h.flush()
    assert h.devices["13"].held_rows == 1
    f = h.features(1)
    assert f["devices_personal"] == 1 and f["dns_requests"] == 0


def test_duplicates_by_id_count_once():
    h = Harness()
    personal_setup(h)
    t0 = T("2015-11-02 10:00:00")
    h.device("dnsreqs", [dns(5, 10, t0), dns(5, 10, t0)])
    h.device("dnsreqs", [dns(5, 10, t0)])
    h.device("httpreqs", [http(9, 10, t0 + S)])
    h.device("httpreqs2", [http(9, 10, t0 + S, table="httpreqs2")])  # the alias is the same table
    h.device("user_devices", [row("user_devices", user_id=1, device_id=10)])
    h.device("devices", [row("devices", id=10, platform="other", shared=True)])  # the first row counts
    h.device("devicetraffic", [traffic(1, 10, t0, 100), traffic(1, 10, t0, 100)])
    h.flush()
    f = h.features(1)
    assert (f["dns_requests"], f["http_requests"], f["bytes_in"]) == (1, 1, 100)
    assert f["devices_personal"] == 1 and f["devices_shared"] == 0
    assert h.devices["10"].owners == [1]
    assert h.devices["10"].duplicate_rows == 6
    assert h.seen.data["idnsreqs.0|10"]["r"] == [[5, 5]]


def test_redelivered_record_is_ignored():
    h = Harness()
    personal_setup(h)
    (user, record), = h.device("dnsreqs", [dns(1, 10, T("2015-11-02 10:00:00"))])
    h.inbox[user].append(msgspec.convert(record, ucn.DeviceRecord))  # the same record once more
    h.flush()
    assert h.features(1)["dns_requests"] == 1


def test_late_link_gets_later_events_only_and_is_counted():
    h = Harness()
    personal_setup(h, user=1, dev=10)
    t0 = T("2015-11-02 10:00:00")
    h.device("dnsreqs", [dns(1, 10, t0)])
    sent = h.device("user_devices", [row("user_devices", user_id=2, device_id=10)])
    assert [(u, "ev" in r) for u, r in sent] == [("2", False)]  # link info only
    assert h.devices["10"].late_links == 1
    sent = h.device("dnsreqs", [dns(2, 10, t0 + S)])
    assert sorted(u for u, _ in sent) == ["1", "2"]
    h.flush()
    assert h.features(1)["dns_requests"] == 2
    assert h.features(2)["dns_requests"] == 1 and h.features(2)["devices_personal"] == 1


# --------------------------------------------------------------------------- local time


def test_hist_bin_edges():
    assert ucn.hist_bin(0) == 0
    assert ucn.hist_bin(999) == 0
    assert ucn.hist_bin(1_000) == 1
    assert ucn.hist_bin(600 * S - 1) == 6
    assert ucn.hist_bin(600 * S) == 7
    assert ucn.hist_bin(600 * S + 1) == 7
    assert ucn.hist_bin(86_400 * S) == 9
    assert ucn.hist_bin(604_800 * S - 1) == 9
    assert ucn.hist_bin(604_800 * S) == 10
    assert ucn.hist_bin(10**15) == 10


def _profile_case(h: Harness, user: int, dev: int, country: str, row_first: bool):
    if row_first:
        h.user_rows([row("users", id=user, username=f"u{user}", country=country)])
    h.device("devices", [row("devices", id=dev, platform="ios", shared=False)])
    h.device("user_devices", [row("user_devices", user_id=user, device_id=dev)])
    times = [
        (T("2015-03-29 00:59:59.999999"), 1, 2),  # London GMT 00:59, Paris CET 01:59 (Sunday)
        (T("2015-03-29 01:00:00"), 4, 6),  # spring forward: London BST 02:00, Paris CEST 03:00
        (T("2015-07-01 12:00:00"), 100, 0),  # Wednesday summer: London 13, Paris 14
        (T("2015-12-02 12:00:00"), 0, 1000),  # Wednesday winter: London 12, Paris 13
        (T("2015-11-27 23:30:00"), 20_000, 0),  # Friday: London Fri 23:30, Paris Sat 00:30
        (T("2015-11-29 23:30:00"), 300_000, 0),  # Sunday: London Sun 23:30, Paris Mon 00:30
    ]
    h.device("devicetraffic", [traffic(i, dev, ts, b_in, b_out) for i, (ts, b_in, b_out) in enumerate(times)])
    # one activity event at each of the same instants, far apart (6 sessions of 1 event)
    h.device("dnsreqs", [dns(i, dev, ts) for i, (ts, _, _) in enumerate(times)])
    h.flush()
    if not row_first:  # the users row after the records: the bins must still be right
        h.user_rows([row("users", id=user, username=f"u{user}", country=country)])
    return h.features(user)


@pytest.mark.parametrize("row_first", [True, False])
def test_local_hours_weekends_and_week_slots_london(row_first):
    f = _profile_case(Harness(), 1, 10, "uk", row_first)
    weekday, weekend, slots = [0] * 24, [0] * 24, [0] * 84
    weekend[0] += 3  # Sun 00:59
    weekend[2] += 10  # Sun 02:00 BST
    weekday[13] += 100  # Wed 13:00 BST
    weekday[12] += 1000  # Wed 12:00 GMT
    weekday[23] += 20_000  # Fri 23:30
    weekend[23] += 300_000  # Sun 23:30
    slots[6 * 12 + 0] += 3
    slots[6 * 12 + 1] += 10
    slots[2 * 12 + 6] += 100 + 1000
    slots[4 * 12 + 11] += 20_000
    slots[83] += 300_000
    assert f["bytes_by_hour_weekday"] == weekday
    assert f["bytes_by_hour_weekend"] == weekend
    assert f["bytes_by_week_slot"] == slots
    assert f["user_events_by_hour_weekday"] == [int(v > 0) for v in weekday]
    assert f["user_events_by_hour_weekend"] == [int(v > 0) for v in weekend]
    assert f["bytes_in"] == 320_105 and f["bytes_out"] == 1008 and f["traffic_seconds"] == 6
    assert f["first_traffic_at"] == "2015-03-29T00:59:59.999999"
    assert f["last_traffic_at"] == "2015-12-02T12:00:00"


@pytest.mark.parametrize("row_first", [True, False])
def test_local_hours_weekends_and_week_slots_paris(row_first):
    f = _profile_case(Harness(), 2, 20, "fr", row_first)
    weekday, weekend, slots = [0] * 24, [0] * 24, [0] * 84
    weekend[1] += 3  # Sun 01:59 CET
    weekend[3] += 10  # Sun 03:00 CEST
    weekday[14] += 100
    weekday[13] += 1000
    weekend[0] += 20_000  # Sat 00:30
    weekday[0] += 300_000  # Mon 00:30: week slot 0
    slots[6 * 12 + 0] += 3
    slots[6 * 12 + 1] += 10
    slots[2 * 12 + 7] += 100
    slots[2 * 12 + 6] += 1000
    slots[5 * 12 + 0] += 20_000
    slots[0] += 300_000
    assert f["bytes_by_hour_weekday"] == weekday
    assert f["bytes_by_hour_weekend"] == weekend
    assert f["bytes_by_week_slot"] == slots
    assert f["user_events_by_hour_weekday"] == [int(v > 0) for v in weekday]
    assert f["user_events_by_hour_weekend"] == [int(v > 0) for v in weekend]
    assert f["country"] == "fr"


def test_null_country_is_london():
    f = _profile_case(Harness(), 3, 30, None, True)
    assert f["bytes_by_hour_weekday"][23] == 20_000 and f["country"] is None


def test_irregular_hours_are_exact():
    # Paris ran on local mean time (+00:09:21) before 1911: a UTC hour spans two local hours
    ts = T("1900-01-01 10:55:00")
    assert ucn.time_bucket(ts) == ts
    assert ucn.local_hour_weekday("P", ts) == (11, 0)
    assert ucn.local_hour_weekday("P", T("1900-01-01 10:45:00")) == (10, 0)
    assert ucn.time_bucket(T("2015-03-29 01:30:00")) == T("2015-03-29 01:00:00")


def test_bytes_by_service_with_null_service():
    h = Harness()
    personal_setup(h)
    t0 = T("2015-11-02 10:00:00")
    h.device("deviceapptraffic", [
        row("deviceapptraffic", id=1, devid=10, ts=t0, dstport=443, service="https", bytes_in=5, bytes_out=None),
        row("deviceapptraffic", id=2, devid=10, ts=t0, dstport=53, service=None, bytes_in=1, bytes_out=2),
        row("deviceapptraffic", id=3, devid=10, ts=t0, dstport=443, service="https", bytes_in=None, bytes_out=0),
    ])
    h.flush()
    assert h.features(1)["bytes_by_service"] == {"https": 5, "unknown": 3}
    assert list(h.features(1)["bytes_by_service"]) == ["https", "unknown"]


# --------------------------------------------------------------------------- sessions


def test_gap_of_exactly_600s_stays_in_the_session_and_600_000001s_splits():
    h = Harness()
    personal_setup(h)
    t0 = T("2015-11-02 10:00:00")
    times = [t0, t0 + S, t0 + 2 * S, t0 + 602 * S]
    t5 = times[-1] + 600 * S + 1
    times += [t5, t5 + S, t5 + 2 * S]
    h.device("dnsreqs", [dns(i, 10, ts, query="q.com") for i, ts in enumerate(times)])
    h.flush()
    f = h.features(1)
    assert f["sessions_count"] == 0
    assert f["inter_event_hist"] == [0] * 11  # nothing final yet
    assert f["open_session"] == {"start": format_ts(t5), "last_event_at": format_ts(t5 + 2 * S), "events": 3}
    closed = h.close()
    assert [(s["start"], s["end"], s["events"]) for s in closed] == [
        (format_ts(t0), format_ts(t0 + 602 * S), 4), (format_ts(t5), format_ts(t5 + 2 * S), 3)]
    assert closed[0]["duration_s"] == 602.0 and closed[1]["duration_s"] == 2.0
    f = h.features(1)
    hist = [0] * 11
    hist[4] = 4  # four gaps of 1 s
    hist[7] = 2  # 600 s and 600.000001 s
    assert f["inter_event_hist"] == hist
    durations = [0] * 11
    durations[7] = 1
    durations[4] = 1
    assert f["session_duration_hist"] == durations
    assert f["sessions_count"] == 2 and f["sessions_seconds"] == 604.0
    assert f["open_session"] is None
    assert f["last_session"] == closed[1]
    assert closed[1] == {"user": 1, "start": format_ts(t5), "end": format_ts(t5 + 2 * S), "duration_s": 2.0,
                         "events": 3, "dns_events": 3, "http_events": 0, "devices": [10], "platforms": ["ios"],
                         "top_domains": [["q.com", 3]], "locations": []}


def test_inter_event_hist_across_sessions_with_gap_zero_and_unkept_sessions():
    h = Harness()
    personal_setup(h)
    h.device("devices", [row("devices", id=11, platform="android", shared=False)])
    h.device("user_devices", [row("user_devices", user_id=1, device_id=11)])
    t0 = T("2015-11-02 10:00:00")
    # one instant on two devices (gap 0), then a lone event a day later (not kept), then 2 events 0.5 s apart
    h.device("dnsreqs", [dns(1, 10, t0), dns(2, 10, t0 + 5 * S)])
    h.device("httpreqs", [http(1, 11, t0), http(2, 11, t0 + 86_400 * S, user_url=True)])
    h.device("httpreqs", [http(3, 11, t0 + 86_400 * S + 1_000 * S, user_url=False)])  # not an activity
    h.device("dnsreqs", [dns(3, 10, t0 + 2 * 86_400 * S), dns(4, 10, t0 + 2 * 86_400 * S + S // 2)])
    assert h.flush() == h.sessions["1"]  # later events moved the event time past the first session
    h.close()
    closed = h.sessions["1"]
    assert len(closed) == 1  # [t0, t0, t0+5s]: 3 events, 5 s
    assert closed[0]["devices"] == [10, 11] and closed[0]["platforms"] == ["android", "ios"]
    assert (closed[0]["dns_events"], closed[0]["http_events"]) == (2, 1)
    f = h.features(1)
    hist = [0] * 11
    hist[0] = 1  # t0 dns / t0 http
    hist[4] = 1  # 5 s
    hist[8] = 1  # 86,395 s: just under a day
    hist[9] = 1  # 86,400 s: exactly a day goes to the upper bin
    hist[3] = 1  # 0.5 s
    assert f["inter_event_hist"] == hist
    assert f["sessions_count"] == 1 and f["http_requests"] == 3


def test_sessions_close_when_event_time_passes_them_and_late_events_count():
    h = Harness()
    personal_setup(h)
    t0 = T("2015-11-02 10:00:00")
    h.device("dnsreqs", [dns(i, 10, t0 + i * S) for i in range(3)])
    h.flush()
    # traffic never extends a session, but moves the user's event time on
    h.device("devicetraffic", [traffic(1, 10, t0 + 2 * S + GAP + LATENESS, 1, 1)])
    assert h.flush() == []  # exactly gap + lateness: not final yet
    h.device("devicetraffic", [traffic(2, 10, t0 + 2 * S + GAP + LATENESS + 1, 1, 1)])
    closed = h.flush()
    assert [s["events"] for s in closed] == [3]
    before = h.features(1)
    assert before["open_session"] is None and before["sessions_count"] == 1
    # an event inside the closed session, later than the lateness: counted, not sessioned
    h.device("dnsreqs", [dns(10, 10, t0 + S // 2)])
    assert h.flush() == []
    after = h.features(1)
    assert ucn.user_late_events(h.users["1"]) == 1
    assert after["dns_requests"] == before["dns_requests"] + 1
    assert sum(after["user_events_by_hour_weekday"]) == sum(before["user_events_by_hour_weekday"]) + 1
    assert after["inter_event_hist"] == before["inter_event_hist"]
    assert after["sessions_count"] == 1 and after["last_session"] == before["last_session"]
    assert ucn.user_watermark(h.users["1"]) == t0 + 2 * S + GAP + LATENESS + 1
    assert ucn.user_events(h.users["1"]) == 1 + 3 + 2 + 1  # users row + rows


def test_late_event_within_the_lateness_bridges_two_sessions():
    h = Harness()
    personal_setup(h)
    t0 = T("2015-11-02 10:00:00")
    h.device("dnsreqs", [dns(1, 10, t0), dns(2, 10, t0 + 1000 * S)])
    h.flush()
    h.device("dnsreqs", [dns(3, 10, t0 + 500 * S)])  # arrives last, lands between them
    h.flush()
    assert ucn.user_late_events(h.users["1"]) == 0
    closed = h.close()
    assert [(s["events"], s["duration_s"]) for s in closed] == [(3, 1000.0)]


def test_top_domains_ties_truncation_nulls_and_case():
    h = Harness()
    personal_setup(h)
    t0 = T("2015-11-02 10:00:00")
    domains = ["b.com"] * 3 + ["a.com"] * 3 + ["A.com"] * 2 + [None] * 2
    domains += ["z.com", "m.com", "e.com", "y.com", "c.com", "x.com", "d.com", "f.com"]
    h.device("dnsreqs", [dns(i, 10, t0 + i * S, query=d) for i, d in enumerate(domains)])
    h.flush()
    (session,) = h.close()
    assert session["top_domains"] == [["a.com", 3], ["b.com", 3], ["A.com", 2], ["c.com", 1], ["d.com", 1],
                                      ["e.com", 1], ["f.com", 1], ["m.com", 1], ["x.com", 1], ["y.com", 1]]
    assert session["events"] == len(domains)


def test_locations_overlap_edges():
    h = Harness()
    personal_setup(h)
    h.device("devices", [row("devices", id=12, platform="mac", shared=True)])
    h.device("user_devices", [row("user_devices", user_id=1, device_id=12)])
    start = T("2015-11-02 10:00:00")
    end = start + 10 * S
    h.device("locations", [
        location(1, 10, start - HOUR, start, "at-start"),  # touches the start: matches
        location(2, 10, start - HOUR, start - 1, "before"),
        location(3, 10, start, end, None),  # null name
        location(4, 10, start, None, "no-exit"),
        location(5, 10, start - 2 * HOUR, end + HOUR, "at-start"),  # same name again
    ])
    h.device("locations", [location(6, 12, start, end, "shared-device")])  # not a personal device
    h.device("dnsreqs", [dns(1, 10, start), dns(2, 10, start + 5 * S), dns(3, 10, end)])
    h.flush()
    # a location that arrives after the events but before the session closes still counts
    h.device("locations", [location(7, 10, end, end + HOUR, "at-end"),
                           location(8, 10, end + 1, end + HOUR, "after")])
    h.flush()
    (session,) = h.close()
    assert session["locations"] == ["at-end", "at-start"]
    # intervals ending before the last final event are dropped from the state
    assert all(loc[1] > end for loc in h.users["1"].locations)


def test_end_of_replay_closes_and_a_second_close_returns_nothing():
    h = Harness()
    personal_setup(h)
    t0 = T("2015-11-02 10:00:00")
    h.device("httpreqs", [http(i, 10, t0 + i * S, host="w.org") for i in range(3)])
    h.flush()
    assert h.features(1)["open_session"]["events"] == 3
    closed = h.close()
    assert len(closed) == 1 and closed[0]["http_events"] == 3
    assert h.features(1)["open_session"] is None
    assert h.close() == []
    assert h.features(1)["sessions_count"] == 1


def test_user_without_data_renders_empty_features():
    state = ucn.new_user()
    ucn.apply_user_rows(state, [row("users", id=5, username="e", country="fr")])
    f = ucn.user_features(state)
    assert f == {
        "username": "e", "country": "fr", "devices_personal": 0, "devices_shared": 0, "traffic_seconds": 0,
        "first_traffic_at": None, "last_traffic_at": None, "bytes_in": 0, "bytes_out": 0, "packets_in": 0,
        "packets_out": 0, "dns_requests": 0, "http_requests": 0, "bytes_by_hour_weekday": [0] * 24,
        "bytes_by_hour_weekend": [0] * 24, "bytes_by_week_slot": [0] * 84,
        "user_events_by_hour_weekday": [0] * 24, "user_events_by_hour_weekend": [0] * 24,
        "bytes_by_service": {}, "inter_event_hist": [0] * 11, "sessions_count": 0, "sessions_seconds": 0.0,
        "session_duration_hist": [0] * 11, "last_session": None, "open_session": None,
    }
    assert ucn.user_events(state) == 1 and ucn.user_watermark(state) is None
    assert list(state.zone_bins) == ["P"]  # one zone once the country is known


# --------------------------------------------------------------------------- brute force


EDGES = [0, 1_000, 10_000, 100_000, S, 10 * S, 60 * S, 600 * S, 3_600 * S, 86_400 * S, 604_800 * S]
UTC_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def brute_bin(micros):
    return sum(1 for edge in EDGES if edge <= micros) - 1


def brute_local(ts, country):
    local = (UTC_EPOCH + timedelta(microseconds=ts)).astimezone(
        ZoneInfo("Europe/Paris" if country == "fr" else "Europe/London"))
    return local.hour, local.weekday()


def brute_force(users, devices, links, events):
    """Every user's features and kept sessions, straight from the rows."""
    info = {}
    for r in devices:
        info.setdefault(r.values["id"], r.values)
    owners = defaultdict(set)
    for r in links:
        owners[r.values["device_id"]].add(r.values["user_id"])
    unique = {}
    for r in events:
        unique.setdefault(r.eid, r)
    out = {}
    for r in users:
        user, country = r.values["id"], r.values["country"]
        mine = {d for d in info if user in owners[d] and info[d].get("shared") is not True}
        shared = {d for d in info if user in owners[d] and info[d].get("shared") is True}
        rows = [e for e in unique.values() if int(e.key) in mine]
        by = lambda table, rows=rows: [e for e in rows if e.eid.split(":")[0] == table]  # noqa: E731
        tr = by("devicetraffic")
        f = {"username": r.values["username"], "country": country,
             "devices_personal": len(mine), "devices_shared": len(shared),
             "traffic_seconds": len(tr),
             "first_traffic_at": format_ts(min(e.ts for e in tr)) if tr else None,
             "last_traffic_at": format_ts(max(e.ts for e in tr)) if tr else None}
        for column in ("bytes_in", "bytes_out", "packets_in", "packets_out"):
            f[column] = sum(e.values.get(column) or 0 for e in tr)
        f["dns_requests"], f["http_requests"] = len(by("dnsreqs")), len(by("httpreqs"))
        wd, we, slots, ewd, ewe = [0] * 24, [0] * 24, [0] * 84, [0] * 24, [0] * 24
        for e in tr:
            volume = (e.values.get("bytes_in") or 0) + (e.values.get("bytes_out") or 0)
            hour, day = brute_local(e.ts, country)
            (we if day >= 5 else wd)[hour] += volume
            slots[day * 12 + hour // 2] += volume
        services = Counter()
        for e in by("deviceapptraffic"):
            service = e.values.get("service")
            services["unknown" if service is None else service] += (
                (e.values.get("bytes_in") or 0) + (e.values.get("bytes_out") or 0))
        acts = sorted(
            [(e.ts, "dnsreqs", e.values["id"], int(e.key), e.values.get("query")) for e in by("dnsreqs")]
            + [(e.ts, "httpreqs", e.values["id"], int(e.key), e.values.get("req_url_host"))
               for e in by("httpreqs") if e.values.get("user_url") is True])
        for a in acts:
            hour, day = brute_local(a[0], country)
            (ewe if day >= 5 else ewd)[hour] += 1
        gaps = [0] * 11
        for a, b in zip(acts, acts[1:]):
            gaps[brute_bin(b[0] - a[0])] += 1
        groups = []
        for a in acts:
            if groups and a[0] - groups[-1][-1][0] <= GAP:
                groups[-1].append(a)
            else:
                groups.append([a])
        places = [(e.ts, parse_ts(e.values["exittime"]), e.values["name"]) for e in by("locations")
                  if e.values.get("exittime") is not None and e.values.get("name") is not None]
        sessions = []
        for g in groups:
            start, end = g[0][0], g[-1][0]
            if end - start < S or len(g) < 3:
                continue
            domains = Counter(a[4] for a in g if a[4] is not None)
            devs = sorted({a[3] for a in g})
            sessions.append({
                "user": user, "start": format_ts(start), "end": format_ts(end), "duration_s": (end - start) / S,
                "events": len(g), "dns_events": sum(a[1] == "dnsreqs" for a in g),
                "http_events": sum(a[1] == "httpreqs" for a in g), "devices": devs,
                "platforms": sorted({info[d]["platform"] for d in devs if info[d].get("platform") is not None}),
                "top_domains": [[d, c] for d, c in sorted(domains.items(), key=lambda kv: (-kv[1], kv[0]))[:10]],
                "locations": sorted({n for a_, b_, n in places if a_ <= end and b_ >= start}),
            })
        durations = [0] * 11
        for s in sessions:
            durations[brute_bin(parse_ts(s["end"]) - parse_ts(s["start"]))] += 1
        f.update({
            "bytes_by_hour_weekday": wd, "bytes_by_hour_weekend": we, "bytes_by_week_slot": slots,
            "user_events_by_hour_weekday": ewd, "user_events_by_hour_weekend": ewe,
            "bytes_by_service": dict(sorted(services.items())), "inter_event_hist": gaps,
            "sessions_count": len(sessions),
            "sessions_seconds": sum(parse_ts(s["end"]) - parse_ts(s["start"]) for s in sessions) / S,
            "session_duration_hist": durations,
            "last_session": sessions[-1] if sessions else None, "open_session": None,
        })
        out[str(user)] = (f, sessions, 1 + len(rows))
    return out


# --------------------------------------------------------------------------- random runs

# device 10: personal of user 1; 11: null shared, linked to users 1 and 2; 12: shared, linked to both;
# 13: linked to user 2 but absent from devices (unknown); 14: in devices, linked to nobody.
DEVICE_ROWS = [(10, "ios", False), (11, "android", None), (12, "mac", True), (14, None, False)]
LINKS = [(1, 10), (1, 11), (2, 11), (1, 12), (2, 12), (2, 13), (1, 10)]
CENTRES = [T("2015-10-24 22:00:00"), T("2015-10-25 00:20:00"), T("2015-11-27 22:50:00"),
           T("2015-11-29 23:00:00"), T("2015-03-29 00:30:00")]
DOMAINS = ["a.com", "b.com", "A.com", None, "c.org"]
PLACES = ["home", "work", None]


@st.composite
def event_sets(draw):
    n = draw(st.integers(min_value=0, max_value=45))
    base = draw(st.sampled_from(CENTRES))
    clusters = draw(st.lists(st.integers(min_value=0, max_value=3 * 86_400), min_size=1, max_size=4))
    raws = []
    ids = Counter()
    for _ in range(n):
        table = draw(st.sampled_from(["dnsreqs", "dnsreqs", "httpreqs", "devicetraffic", "deviceapptraffic",
                                      "locations"]))
        dev = draw(st.sampled_from([10, 10, 11, 11, 12, 13, 14]))
        offset = draw(st.one_of(st.integers(min_value=0, max_value=1_300), st.sampled_from([0, 600, 1_200])))
        micros = draw(st.sampled_from([0, 0, 1, 500_000, 999_999]))
        ts = base + draw(st.sampled_from(clusters)) * S + offset * S + micros
        ids[table] += 1
        raw = {"id": ids[table], "devid": dev}
        if table == "dnsreqs":
            raw.update(ts=ts, query=draw(st.sampled_from(DOMAINS)), user_req=draw(st.sampled_from([True, None])))
        elif table == "httpreqs":
            raw.update(ts=ts, req_url_host=draw(st.sampled_from(DOMAINS)),
                       user_url=draw(st.sampled_from([True, True, False, None])))
        elif table in ("devicetraffic", "deviceapptraffic"):
            raw.update(ts=ts, bytes_in=draw(st.sampled_from([None, 0, 7, 1_000])),
                       bytes_out=draw(st.sampled_from([None, 3, 50])), packets_in=draw(st.sampled_from([None, 1])),
                       packets_out=draw(st.sampled_from([None, 2])))
            if table == "deviceapptraffic":
                raw.update(service=draw(st.sampled_from(["https", "dns", None])), dstport=443)
        else:
            duration = draw(st.sampled_from([None, 0, 1, 600 * S, 3 * HOUR]))
            raw.update(entertime=ts, exittime=None if duration is None else ts + duration,
                       name=draw(st.sampled_from(PLACES)))
        raws.append((table, raw))
    events = [row(table, **dict(raw)) for table, raw in raws]
    dup_positions = draw(st.lists(st.integers(min_value=0, max_value=max(n - 1, 0)), max_size=4)) if n else []
    events += [events[i] for i in dup_positions]  # exact copies: count once
    return events


def run_stream(users, devices, links, messages, user_flush, user_row_at):
    """Reference rows first (as the replay publishes them), then the event messages."""
    h = Harness()
    h.device("devices", devices)
    h.device("user_devices", links)
    for position, (table, rows) in enumerate(messages):
        for r in users:
            if user_row_at.get(r.key) == position:
                h.user_rows([r])
        h.device(table, rows)
        if user_flush(position):
            h.flush()
    h.user_rows([r for r in users if r.key not in h.users or h.users[r.key].users_row is None])
    h.flush()
    h.close()
    return h


def split_messages(ordered, cuts):
    """Consecutive rows of one (table, device) go into one message unless cut."""
    messages = []
    for i, r in enumerate(ordered):
        table = r.eid.split(":")[0]
        if messages and messages[-1][0] == table and messages[-1][1][-1].key == r.key and not cuts[i]:
            messages[-1][1].append(r)
        else:
            messages.append((table, [r]))
    return messages


@settings(max_examples=150, deadline=None)
@given(
    events=event_sets(),
    countries=st.tuples(st.sampled_from(["fr", "uk", None]), st.sampled_from(["fr", "uk", None])),
    data=st.data(),
)
def test_random_batches_and_arrival_orders_match_in_order_pass_and_brute_force(events, countries, data):
    users = [row("users", id=u, username=f"u{u}", country=c) for u, c in zip((1, 2), countries)]
    devices = [row("devices", id=d, platform=p, shared=s) for d, p, s in DEVICE_ROWS]
    links = [row("user_devices", user_id=u, device_id=d) for u, d in LINKS]

    # one in-order pass: (ts, table, id), one event per message, users flushed after each
    in_order = sorted(events, key=lambda r: (r.ts, r.eid.split(":")[0], r.values["id"]))
    first = run_stream(users, devices, links, [(r.eid.split(":")[0], [r]) for r in in_order],
                       lambda _: True, {})

    # random arrival within the lateness: sort by ts + a jitter in [0, lateness)
    jitter = data.draw(st.lists(st.integers(min_value=0, max_value=LATENESS - 1),
                                min_size=len(events), max_size=len(events)))
    arrival = [r for _, _, r in sorted(zip([r.ts + j for r, j in zip(events, jitter)], range(len(events)),
                                           events))]
    cuts = data.draw(st.lists(st.booleans(), min_size=len(events), max_size=len(events)))
    messages = split_messages(arrival, cuts)
    flushes = data.draw(st.lists(st.booleans(), min_size=len(messages), max_size=len(messages)))
    row_at = {r.key: data.draw(st.integers(min_value=0, max_value=len(messages))) for r in users}
    second = run_stream(users, devices, links, messages, lambda i: flushes[i], row_at)

    expected = brute_force(users, devices, links, events)
    for user in ("1", "2"):
        features, sessions, count = expected[user]
        for h in (first, second):
            assert ucn.user_features(h.users[user]) == features
            assert h.sessions[user] == sessions
            assert ucn.user_late_events(h.users[user]) == 0
            assert ucn.user_events(h.users[user]) == count
    for h in (first, second):
        dropped = {r.eid for r in events if r.key == "12"}
        assert h.devices.get("12", ucn.new_device()).unowned_events == len(dropped)
        for unknown in ("13", "14"):
            assert h.devices.get(unknown, ucn.new_device()).held_rows == len(
                {r.eid for r in events if r.key == unknown})
        assert all(state.late_links == 0 for state in h.devices.values())


# --------------------------------------------------------------------------- against the batch reference


def test_generated_dataset_matches_the_batch_reference(tmp_path):
    """The planted hard cases of the generator (DST, gaps of 600 s and 600.000001 s,
    co-owned, shared and unknown devices, duplicate ids, locations touching a
    session) replayed in event order, compared with datasets.ucn.batch."""
    from datasets.ucn.batch import compute_ucn
    from datasets.ucn.generate import generate_ucn
    from replay.merge import in_event_order
    from replay.sources.base import SourceRow
    from replay.sources.csv_folder import read_folder

    generate_ucn(str(tmp_path), seed=11, scale=0.05)
    items = in_event_order([item for item in read_folder(tmp_path, "ucn") if isinstance(item, SourceRow)])
    h = Harness()
    message: list = []
    for position, item in enumerate(items + [None]):
        if message and (item is None or item.spec.name != message[0].spec.name or len(message) >= 40):
            table, rows = message[0].spec.name, [m.row for m in message]
            h.user_rows(rows) if table == "users" else h.device(table, rows)
            message = []
            if position % 7 == 0:
                h.flush()
        if item is not None:
            message.append(item)
    h.flush()
    h.close()
    expected = compute_ucn(str(tmp_path))
    assert sum(f["sessions_count"] for f in expected["user"].values()) > 0
    for user, features in expected["user"].items():
        assert h.features(user) == features, user
        assert list(reversed(h.sessions[user]))[:100] == expected["sessions"][user], user
        assert ucn.user_late_events(h.users[user]) == 0


def _user_across_a_redelivered_end_mark(run_end) -> Harness:
    """User 1 with devices 10 and 11. An earlier run (the readiness probe's) has completed; a new worker
    then reads that run's end mark once more, between device 10's events and device 11's earlier ones
    (partitions caught up at different speeds after a crash). `run_end(state)` plays that mark."""
    h = Harness()
    personal_setup(h, user=1, dev=10)
    h.device("devices", [row("devices", id=11, platform="ios", shared=False)])
    h.device("user_devices", [row("user_devices", user_id=1, device_id=11)])
    h.flush()
    h.device("dnsreqs", [dns(1, 10, T("2015-11-02 10:00:00")), dns(2, 10, T("2015-11-02 10:05:00")),
                         dns(3, 10, T("2015-11-02 10:09:00"))])
    h.flush()
    run_end(h.users["1"])
    h.device("dnsreqs", [dns(4, 11, T("2015-11-02 10:02:00")), dns(5, 11, T("2015-11-02 10:07:00"))])
    h.flush()
    h.sessions["1"].extend(ucn.close_at_run_end(h.users["1"]) or [])  # this run's own end
    return h


def test_an_end_mark_redelivered_after_its_run_completed_closes_no_window():
    """The cause of lost gaps after a crash: a redelivered end mark of a completed run took the path of
    a first completion and closed the user's open sessions, so the rest of their events were late."""
    h = _user_across_a_redelivered_end_mark(lambda state: ucn.close_at_run_end(state, again=True))
    assert ucn.user_late_events(h.users["1"]) == 0
    features = h.features(1)
    assert features["sessions_count"] == 1 and h.sessions["1"][0]["events"] == 5
    assert sum(features["inter_event_hist"]) == 4
    # closing on the redelivered mark (the old path) loses device 11's events to lateness
    old = _user_across_a_redelivered_end_mark(ucn.close_user_windows)
    assert ucn.user_late_events(old.users["1"]) == 2
    assert sum(old.features(1)["inter_event_hist"]) == 2


def test_a_first_completion_closes_pending_sessions_and_a_quiet_user_is_left_alone():
    h = Harness()
    personal_setup(h)
    assert ucn.close_at_run_end(h.users["1"]) is None  # nothing pending: no write, no snapshot
    h.device("dnsreqs", [dns(i, 10, T("2015-11-02 10:00:00") + i * 60 * 10**6) for i in range(1, 4)])
    h.flush()
    closed = ucn.close_at_run_end(h.users["1"])
    assert [s["events"] for s in closed] == [3]
    assert ucn.close_at_run_end(h.users["1"]) is None


def test_a_large_contribution_goes_in_pieces_that_fold_to_the_same_user():
    t0 = T("2015-11-02 10:00:00")
    acts = [[t0 + i * 5 * S, "dnsreqs", i, f"d{i % 7}.org"] for i in range(1_000)]
    ev = msgspec.convert({"n": 1_000, "wm": acts[-1][0], "first": acts[0][0], "dns": 1_000, "acts": acts},
                         ucn.Contribution)
    pieces = [json_round_trip(p) for p in ucn._pieces(ev)]
    assert len(pieces) == 3 and [len(ucn.activity_events(p)) for p in pieces] == [400, 400, 200]
    assert [event for p in pieces for event in ucn.activity_events(p)] == acts
    sent = [orjson.loads(msgspec.json.encode(p)) for p in pieces]
    assert [("wm" in p) for p in sent] == [False, False, True] and sum(p["n"] for p in sent) == 1_000

    def user_after(contributions):
        state = ucn.new_user(1)
        apply_user_rows_for(state)
        records = [{"k": "device", "user": 1, "device": 10, "seq": n + 1, "platform": "ios", "shared": False,
                    "src": "dnsreqs", "ev": c} for n, c in enumerate(contributions)]
        ucn.apply_user_records(state, msgspec.json.decode(msgspec.json.encode(records), type=list[ucn.DeviceRecord]))
        ucn.close_user_windows(state)
        return ucn.user_features(state)

    assert user_after(pieces) == user_after([ev])


def apply_user_rows_for(state):
    ucn.apply_user_rows(state, [row("users", id=1, username="u", country="fr")])
