"""Incremental state of the ucn dataset: devices (stage 1) and users (stage 2).

The stream keys work the way Kafka Streams does a foreign-key join
(DESIGN.md, "Joins"):

    devices, user_devices, devicetraffic, deviceapptraffic,
    httpreqs (httpreqs2), dnsreqs, locations      (key: device id)
        --device record (link info + the batch's contributions)--> user (key: user id)
    users                                         (key: user id)  --------> user

Each stage's state for one key is a typed record (a msgspec Struct: ``DeviceState``,
``UserState``) whose JSON is what the changelog stores after every batch: the
fields have names that say what they hold, the JSON keys stay the short ones of
the changelog (``zone_bins`` is "zb"), so a record written before still reads.
What the runtime keeps per key (partition, write count, snapshot version, owed
records) is not part of these types: the state store keeps it beside them
(stream.runtime.store). The record a device sends its users is typed too
(``DeviceRecord``, its contribution a ``Contribution``). The functions here
apply a batch of normalised rows (``contract.rows.Row``) or stage-1 records to
one key's state and say what to send on. Nothing here knows Kafka, Faust or
Redis.

Stage 1: one device
-------------------
``new_device()``, ``apply_device_rows(state, table, rows, seen)``,
``device_outbox(state, device_id, held) -> [(user_key, DeviceRecord)]``.

* ``devices``: the first row per id counts (platform, shared; null shared is
  false). ``user_devices``: owners, de-duplicated on (user_id, device_id),
  never removed. Event rows are de-duplicated per table by id, with the
  ids kept outside the state (``dedup.BlockedIntIds``); ``httpreqs2`` is
  ``httpreqs``.
* Event rows are folded at once into a compact *pending contribution*
  (``state.pending``, "pend"): traffic sums and per-UTC-hour byte buckets, bytes per
  service, dns/http row counts, the activity events one by one, the location
  intervals that can match a session. ``device_outbox`` forwards it to every
  owner when the device is *personal*: it has a ``devices`` row, at least one
  owner and is not shared. Until then the contribution is held in the state
  (``state.held_rows`` counts its rows). Once the ``devices`` row says shared,
  held and new events are dropped from the features and counted in
  ``state.unowned_events``. Events of devices that never get a row or an
  owner stay held (counted in ``held``).
* Every owner of a device with a ``devices`` row (shared or not) gets a
  record with the device's link info, so the user can count
  ``devices_personal`` / ``devices_shared``.
* Known limit, de-duplication scope: ids are remembered per device and
  table, so a row repeating an id already seen on *another* device counts
  again (duplicates in the sources are exact copies, same device).
* Known limit, ``late_links``: an owner linked after some of the device's
  events were already forwarded gets the events from then on only (the
  earlier ones are not kept); such links are counted in
  ``state.late_links``. A replay publishes the reference tables first, so
  this only happens when a live feed links a device that is already in use.

Stage 2: one user
-----------------
``new_user()``, ``apply_user_rows(state, rows)``,
``apply_user_records(state, records) -> [session records]``,
``close_user_windows(state) -> [session records]``, ``close_at_run_end(state, again)``,
``user_features(state)``,
``user_events(state)``, ``user_watermark(state)``, ``user_late_events(state)``.

* Order-free features (counts, sums, min/max, local-hour bins, bytes per
  service) are folded in as records arrive. Local hours need the user's
  country, whose ``users`` row may come after the first records: until it
  is known the bins are kept for both zones (Europe/London and Europe/Paris),
  afterwards for the user's zone only.
* Activity events go into a ``SessionWindow`` (gap 600 s, >= 3 events,
  >= 1 s, lateness 3,600 s). The window's watermark is the event time the
  stage gives: how far every source partition of activity has come
  (stream.logic.source_clock). Closed sessions (kept or
  not) are walked in order to fill ``inter_event_hist`` from final events
  only (``state.last_final_event_at`` is the time of the last final event); kept ones
  update the session counters and become session records.
* Events later than the lateness (rejected by the window) still count in the
  order-free features and are counted as late events.
* Known limit, locations: a session's ``locations`` are resolved when it
  closes, from the location intervals the user has received by then. A
  location row that arrives after the session closed (possible in a live
  feed, never in a replay, where windows close at the end mark) is not added
  to it. Intervals that end before the last final event cannot match any
  later session and are dropped from the state.

Records (stage 1 -> stage 2), one per owner per ``device_outbox`` call (``DeviceRecord``, its
``ev`` a ``Contribution``), in JSON::

    {"k": "device", "user": 17, "device": 42, "seq": 5,
     "platform": "ios" | None, "shared": False,
     "ev": {                                  # absent when there is nothing new
        "n": rows, "wm": max event time (us), "first": min event time (us),
        "tr": [rows, bytes_in, bytes_out, packets_in, packets_out, first_ts, last_ts],
        "hb": {"<bucket ts>": bytes_in + bytes_out},   # UTC hour start (exact ts in
                                                       # the rare hours whose local
                                                       # offset is not whole-hour)
        "svc": {service | "unknown": bytes_in + bytes_out},
        "dns": dns rows, "http": http rows (any user_url),
        "acts": [[ts, "dnsreqs" | "httpreqs", id, domain | None], ...],  # or "acz": the same,
                                                       # encoded by stream.logic.event_codec
        "locs": [[entertime, exittime, name], ...]}}   # only rows that can match

Optional ``ev`` keys are present only when non-empty (a contribution in pieces has ``wm`` in its last
piece only, ``first`` the oldest row's time in its first). ``seq`` grows per
device: a user ignores a record whose ``seq`` is not greater than the last
one it applied from that device, so a redelivered record is harmless.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from datetime import timezone
from functools import lru_cache
from typing import Any, Union
from zoneinfo import ZoneInfo

import msgspec
from msgspec import Struct, field

from contract.timeutil import ONE_US, US_PER_S, format_ts, parse_ts_or_none, to_datetime
from stream.logic import event_codec
from stream.logic.dedup import BlockedIntIds
from stream.logic.keyvalue import KeyValue
from stream.logic.sequence import next_seq
from stream.logic.sessions import DEFAULT_LATENESS_US, SessionWindow, pending_in_state

SESSION_GAP_US = 600 * US_PER_S
SESSION_MIN_EVENTS = 3
LATENESS_US = DEFAULT_LATENESS_US
# The source tables whose rows can still change a session: activity events, and the locations a closing
# session is matched with (stream.logic.source_clock). Traffic rows carry no activity event, so however far
# behind they are they hold nothing.
SESSION_SOURCES = ("dnsreqs", "httpreqs", "httpreqs2", "locations")
TOP_DOMAINS = 10
HOUR_US = 3_600 * US_PER_S
HIST_EDGES_US = (0, 1_000, 10_000, 100_000, US_PER_S, 10 * US_PER_S, 60 * US_PER_S, 600 * US_PER_S,
                 3_600 * US_PER_S, 86_400 * US_PER_S, 604_800 * US_PER_S)
BINS = len(HIST_EDGES_US)
EVENT_TABLES = ("devicetraffic", "deviceapptraffic", "httpreqs", "dnsreqs", "locations")
DNS, HTTP = "dnsreqs", "httpreqs"  # their order in (ts, table, id): "dnsreqs" < "httpreqs"

LONDON, PARIS = "L", "P"  # zone keys in the state
_ZONES = {LONDON: ZoneInfo("Europe/London"), PARIS: ZoneInfo("Europe/Paris")}
_UTC = timezone.utc

Id = Union[int, str]  # a ucn id: an int, or the text of a key that is none
Location = tuple[int, int, str]  # (entertime, exittime, name) of a location row that can match a session

_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


def _int64(total: int) -> int:
    """A sum the changelog can hold (what orjson, which wrote these states before, can write): a row or
    record that would carry it past 64 bits fails (and is a dead letter) instead of the key's state."""
    if _INT64_MIN <= total <= _UINT64_MAX:
        return total
    raise TypeError("Integer exceeds 64-bit range")


def _as_id(value):
    """ucn ids are ints; a message key arrives as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return value


def hist_bin(micros: int) -> int:
    """Bin of a gap or duration: edge[i] <= micros < edge[i+1], last bin open."""
    return max(bisect_right(HIST_EDGES_US, micros) - 1, 0)


# --------------------------------------------------------------------------- local time


def _offset_us(zone: str, ts_us: int) -> int:
    local = to_datetime(ts_us).replace(tzinfo=_UTC).astimezone(_ZONES[zone])
    return local.utcoffset() // ONE_US  # type: ignore[operator]  # an aware time has an offset


@lru_cache(maxsize=1 << 14)
def _regular_hour(hour_start: int) -> bool:
    """True when, in both zones, the UTC hour has one whole-hour offset: then
    every instant of it has the same local hour and weekday."""
    for zone in _ZONES:
        offset = _offset_us(zone, hour_start)
        if offset % HOUR_US or _offset_us(zone, hour_start + HOUR_US - 1) != offset:
            return False
    return True


def time_bucket(ts_us: int) -> int:
    """The UTC hour start of ts_us, or ts_us itself in an irregular hour
    (Paris before 1911); all instants of a bucket share local hour and weekday."""
    hour = ts_us - ts_us % HOUR_US
    return hour if _regular_hour(hour) else ts_us


@lru_cache(maxsize=1 << 16)
def _local_at(zone: str, ts_us: int) -> tuple[int, int]:
    local = to_datetime(ts_us).replace(tzinfo=_UTC).astimezone(_ZONES[zone])
    return local.hour, local.weekday()


def local_hour_weekday(zone: str, ts_us: int) -> tuple[int, int]:
    """(local hour, weekday Monday=0) of a UTC instant in zone ``"L"`` or ``"P"``."""
    return _local_at(zone, time_bucket(ts_us))


def zone_of(country) -> str:
    return PARIS if country == "fr" else LONDON


def time_zone(country) -> ZoneInfo:
    """The local time of a user of `country` (SPEC §1: `fr` is Europe/Paris, anything else Europe/London)."""
    return _ZONES[zone_of(country)]


# --------------------------------------------------------------------------- records between stages


class Traffic(Struct, array_like=True):
    """Traffic rows summed: one JSON list [rows, bytes_in, bytes_out, packets_in, packets_out, first, last]
    (the times of the first and last row; None before any)."""

    rows: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0
    first_at: int | None = None
    last_at: int | None = None


class Contribution(Struct, omit_defaults=True):
    """A device's rows not forwarded yet, folded (its pending state), and what its users get of them (a
    record's "ev", whole or in pieces). Keys are absent while empty."""

    rows: int = field(name="n")
    watermark: int | None = field(name="wm", default=None)  # the newest row's time (in a piece: the last's)
    first_row_at: int | None = field(name="first", default=None)  # the oldest row's time
    traffic: Traffic | None = field(name="tr", default=None)
    hour_bytes: dict[str, int] = field(name="hb", default_factory=dict)  # str(time_bucket) -> bytes in + out
    service_bytes: dict[str, int] = field(name="svc", default_factory=dict)  # service | "unknown" -> bytes
    dns_rows: int = field(name="dns", default=0)
    http_rows: int = field(name="http", default=0)  # any user_url
    # activity events [ts, "dnsreqs" | "httpreqs", id, domain | None], or (in a record) the same encoded
    # by stream.logic.event_codec
    activity: list[list[Any]] = field(name="acts", default_factory=list)
    activity_encoded: dict[str, Any] | None = field(name="acz", default=None)
    locations: list[Location] = field(name="locs", default_factory=list)  # only rows that can match


class DeviceRecord(Struct, tag_field="k", tag="device", omit_defaults=True):
    """What a device tells each owner: its link info, and its contribution when there is one."""

    user: Id
    device: Id
    seq: int
    platform: str | None
    shared: bool
    contribution: Contribution | None = field(name="ev", default=None)


# --------------------------------------------------------------------------- stage 1: devices


class DeviceRow(Struct):
    """The device's first devices row."""

    platform: str | None
    shared: bool  # a null shared is false


class DeviceState(Struct, omit_defaults=True):
    """One device. Every field but the held parts' is always in its JSON (no default)."""

    device_row: DeviceRow | None = field(name="dev")
    owners: list[Id]  # user ids in link order
    told_owners: list[Id] = field(name="told")  # owners that got the link info
    pending: Contribution | None = field(name="pend")  # contribution not forwarded yet (held or this batch's)
    held_rows: int = field(name="held")  # rows in pending and the held parts
    forwarded_rows: int = field(name="fwd")  # rows forwarded to owners
    unowned_events: int  # rows of a shared device: in no user's features
    late_links: int
    duplicate_rows: int = field(name="dups")
    events: int  # rows applied (duplicates excluded), reference rows included
    seq: int  # of the last record sent
    held_parts: int = 0  # parts of the held contribution beside the state (HeldParts)
    held_first_at: int | None = field(name="held_first", default=None)  # the oldest held row's time, with parts


def new_device() -> DeviceState:
    return DeviceState(device_row=None, owners=[], told_owners=[], pending=None, held_rows=0, forwarded_rows=0,
                       unowned_events=0, late_links=0, duplicate_rows=0, events=0, seq=0)


def oldest_held(state: DeviceState) -> int | None:
    """Event time of the oldest row the device holds back (no owner or no devices row yet), or None."""
    if not state.held_rows:
        return None
    if state.held_parts:
        return state.held_first_at
    return state.pending.first_row_at if state.pending is not None else None


def apply_device_rows(state: DeviceState, table: str, rows, seen: BlockedIntIds) -> None:
    """Fold a batch of one table's rows of one device into its state (`seen`: the device's applied ids,
    kept outside the state: see stream.logic.dedup)."""
    if table == "httpreqs2":
        table = HTTP
    if table == "devices":
        for row in rows:
            if state.device_row is None:
                values = row.values
                state.device_row = DeviceRow(values.get("platform"), values.get("shared") is True)
                state.events += 1
            else:
                state.duplicate_rows += 1
        return
    if table == "user_devices":
        for row in rows:
            user = _as_id(row.values.get("user_id"))
            if user is None or user in state.owners:
                state.duplicate_rows += 1
                continue
            state.owners.append(user)
            state.events += 1
            if state.forwarded_rows:
                state.late_links += 1
        return
    if table not in EVENT_TABLES:
        raise ValueError(f"not a ucn device table: {table}")
    pend = state.pending
    fold = _FOLD[table]
    firsts = seen.first_seen(table, [_as_id(row.values.get("id")) for row in rows])
    for row, first in zip(rows, firsts):
        if not first:
            state.duplicate_rows += 1
            continue
        state.events += 1
        if pend is None:
            pend = state.pending = Contribution(0)
        fold(pend, row)
        pend.rows += 1
        ts = row.ts
        if ts is not None and (pend.first_row_at is None or ts < pend.first_row_at):
            pend.first_row_at = ts  # the oldest row held: a progress mark must not pass it (stream.logic.progress)
        if pend.watermark is None or ts > pend.watermark:
            pend.watermark = ts
        state.held_rows += 1


def _fold_traffic(pend: Contribution, row) -> None:
    values, ts = row.values, row.ts
    bytes_in, bytes_out = values.get("bytes_in") or 0, values.get("bytes_out") or 0
    packets_in, packets_out = values.get("packets_in") or 0, values.get("packets_out") or 0
    tr = pend.traffic
    if tr is None:
        pend.traffic = Traffic(1, bytes_in, bytes_out, packets_in, packets_out, ts, ts)
    else:
        tr.rows += 1
        tr.bytes_in = _int64(tr.bytes_in + bytes_in)
        tr.bytes_out = _int64(tr.bytes_out + bytes_out)
        tr.packets_in = _int64(tr.packets_in + packets_in)
        tr.packets_out = _int64(tr.packets_out + packets_out)
        if tr.first_at is None or ts < tr.first_at:
            tr.first_at = ts
        if tr.last_at is None or ts > tr.last_at:
            tr.last_at = ts
    buckets = pend.hour_bytes
    key = str(time_bucket(ts))
    buckets[key] = _int64(buckets.get(key, 0) + bytes_in + bytes_out)


def _fold_app(pend: Contribution, row) -> None:
    values = row.values
    service = values.get("service")
    service = "unknown" if service is None else service
    services = pend.service_bytes
    services[service] = _int64(services.get(service, 0) + (values.get("bytes_in") or 0)
                               + (values.get("bytes_out") or 0))


def _fold_dns(pend: Contribution, row) -> None:
    pend.dns_rows += 1
    pend.activity.append([row.ts, DNS, _as_id(row.values.get("id")), row.values.get("query")])


def _fold_http(pend: Contribution, row) -> None:
    pend.http_rows += 1
    if row.values.get("user_url") is True:
        pend.activity.append([row.ts, HTTP, _as_id(row.values.get("id")), row.values.get("req_url_host")])


def _fold_location(pend: Contribution, row) -> None:
    values = row.values
    exit_ts, name = parse_ts_or_none(values.get("exittime")), values.get("name")
    if row.ts is None or exit_ts is None or name is None:
        return  # a null entertime, exittime or name never matches
    pend.locations.append((row.ts, exit_ts, name))


_FOLD = {"devicetraffic": _fold_traffic, "deviceapptraffic": _fold_app, "dnsreqs": _fold_dns,
         HTTP: _fold_http, "locations": _fold_location}


def device_outbox(state: DeviceState, device_id, held: HeldParts | None = None) -> list[tuple[str, DeviceRecord]]:
    """Records for the user stage: (user id as text, record). See the module doc. `held`: the parts of
    the contribution the device held back beside its state, if any (`HeldParts`)."""
    dev = state.device_row
    if dev is None:
        return []  # unknown device: events stay held
    owners = state.owners
    told = set(state.told_owners)
    new_owners = [u for u in owners if u not in told]
    contributions: list[Contribution]
    if dev.shared:
        if state.pending is not None or state.held_parts:
            state.unowned_events += state.held_rows
            _forget_held(state, held)
        targets, contributions = new_owners, []
    else:
        if not owners:
            return []  # no owner yet: events stay held
        contributions = (held.take(state) if held is not None else []) + (
            [state.pending] if state.pending is not None else [])
        targets = owners if contributions else new_owners
    if not targets:
        return []
    device = _as_id(device_id)
    out = []
    pieces: list[Contribution | None] = [piece for contribution in contributions for piece in _pieces(contribution)]
    for contribution in pieces or [None]:  # oldest first, each its own sequence number
        state.seq = seq = next_seq(state.seq)
        for user in targets:
            out.append((str(user), DeviceRecord(user, device, seq, dev.platform, dev.shared, contribution)))
    if contributions:
        state.forwarded_rows += state.held_rows
        _forget_held(state, None)
    state.told_owners = list(owners)
    return out


PIECE_EVENTS = 400  # activity events per record: a contribution of more is sent in pieces (~25 KB each)


def _pieces(contribution: Contribution) -> list[Contribution]:
    """A contribution as records of at most PIECE_EVENTS activity events, in order. The first carries
    the counts and sums; the last carries `wm`."""
    acts = contribution.activity
    if len(acts) <= PIECE_EVENTS:
        return [_compact(msgspec.structs.replace(contribution))]
    pieces = [msgspec.structs.replace(contribution, watermark=None)] + [
        Contribution(0) for _ in range(PIECE_EVENTS, len(acts), PIECE_EVENTS)]
    for piece, start in zip(pieces, range(0, len(acts), PIECE_EVENTS)):
        piece.activity = acts[start:start + PIECE_EVENTS]
    pieces[-1].watermark = contribution.watermark
    return [_compact(piece) for piece in pieces]


def _compact(piece: Contribution) -> Contribution:
    """A piece's activity events as flat integer lists (`acz`, stream.logic.event_codec): a device's
    record, and the state that owes it, take about a third of the bytes."""
    acts = piece.activity
    if acts:
        encoded = event_codec.encode_rows(acts)
        if encoded is not None:
            piece.activity = []
            piece.activity_encoded = encoded
    return piece


def activity_events(ev: Contribution):
    if not ev.activity and ev.activity_encoded is not None:
        return event_codec.decode_rows(ev.activity_encoded)
    return ev.activity


HELD_PART_ROWS = 500  # a held contribution of this many rows moves beside the state (~40 KB at most)


class HeldParts:
    """What a device holds back (no owner or no devices row yet), in parts beside its state once it grows:
    a device that is never linked would otherwise grow its state with every row it gets."""

    def __init__(self, store: KeyValue, device_key: str):
        self.store, self.device_key = store, device_key

    def _name(self, number: int) -> str:
        return f"h{number}|{self.device_key}"

    def spill(self, state: DeviceState) -> None:
        """After a batch: move the held contribution out of the state once it has HELD_PART_ROWS rows."""
        pend = state.pending
        if not state.held_rows or pend is None or pend.rows < HELD_PART_ROWS:
            return
        number = state.held_parts
        if number == 0:
            state.held_first_at = pend.first_row_at
        self.store.put(self._name(number), {"part": msgspec.to_builtins(pend)})  # an entry holds plain JSON
        state.held_parts, state.pending = number + 1, None

    def take(self, state: DeviceState) -> list[Contribution]:
        """The parts in the order they were held, removed from beside the state."""
        parts = []
        for number in range(state.held_parts):
            part = self.store.get(self._name(number))
            self.store.delete(self._name(number))
            if part is not None:
                parts.append(msgspec.convert(part["part"], Contribution))
        return parts


def _forget_held(state: DeviceState, held: HeldParts | None) -> None:
    if held is not None:
        held.take(state)
    state.pending, state.held_rows = None, 0
    state.held_parts, state.held_first_at = 0, None


# --------------------------------------------------------------------------- stage 2: users


def _hours() -> list[int]:
    return [0] * 24


class ZoneBins(Struct):
    """What a user's local hours count, in one zone."""

    bytes_weekday: list[int] = field(name="bwd", default_factory=_hours)  # by local hour
    bytes_weekend: list[int] = field(name="bwe", default_factory=_hours)
    bytes_week_slots: list[int] = field(name="bws", default_factory=lambda: [0] * 84)  # weekday * 12 + hour // 2
    events_weekday: list[int] = field(name="ewd", default_factory=_hours)  # activity events by local hour
    events_weekend: list[int] = field(name="ewe", default_factory=_hours)


class UsersRow(Struct):
    """The user's first users row."""

    username: str | None
    country: str | None


class DeviceInfo(Struct, array_like=True):
    """What a user knows of one of its devices: JSON [platform, shared]."""

    platform: str | None
    shared: bool


def _both_zones() -> dict[str, ZoneBins]:
    return {LONDON: ZoneBins(), PARIS: ZoneBins()}


def _histogram() -> list[int]:
    return [0] * BINS


class UserState(Struct):
    """One user."""

    user_id: Id | None = field(name="id", default=None)
    users_row: UsersRow | None = field(name="user", default=None)
    devices: dict[str, DeviceInfo] = field(default_factory=dict)  # by str(device id)
    device_seq: dict[str, int] = field(name="seq", default_factory=dict)  # str(device id) -> last applied seq
    traffic: Traffic = field(name="tr", default_factory=Traffic)
    dns_rows: int = field(name="dns", default=0)
    http_rows: int = field(name="http", default=0)
    service_bytes: dict[str, int] = field(name="svc", default_factory=dict)
    zone_bins: dict[str, ZoneBins] = field(name="zb", default_factory=_both_zones)  # one zone once the country is known
    inter_event_hist: list[int] = field(name="ieh", default_factory=_histogram)
    last_final_event_at: int | None = field(name="ief", default=None)  # time of the last final activity event
    sessions: int = field(name="sess_n", default=0)  # closed and kept
    session_us: int = field(name="sess_us", default=0)
    session_duration_hist: list[int] = field(name="sdh", default_factory=_histogram)
    last_session: dict[str, Any] | None = None  # the newest kept session's record
    locations: list[Location] = field(name="locs", default_factory=list)  # those that may still match a session
    window: dict[str, Any] | None = field(name="win", default=None)  # SessionWindow.to_state, None before events
    events: int = 0
    watermark: int | None = field(name="wm", default=None)  # the newest row's time


def new_user(user_id=None) -> UserState:
    return UserState(user_id=None if user_id is None else _as_id(user_id))


def apply_user_rows(state: UserState, rows) -> None:
    """Fold ``users`` rows of one user (the first row counts)."""
    for row in rows:
        if state.users_row is not None:
            continue
        values = row.values
        user = state.users_row = UsersRow(values.get("username"), values.get("country"))
        if state.user_id is None:
            state.user_id = _as_id(values.get("id", row.key))
        state.events += 1
        zone = zone_of(user.country)
        state.zone_bins = {zone: state.zone_bins.get(zone) or ZoneBins()}


_WINDOW_PARAMS: dict = {"gap_us": SESSION_GAP_US, "lateness_us": LATENESS_US, "min_events": SESSION_MIN_EVENTS,
                        "auto_watermark": False}
# The window last written into a state, with what it wrote: the user's snapshot, read right after, finds it
# here instead of decoding the window's events again (measured: most of the user stage's CPU went there).
_last_written: tuple[dict | None, SessionWindow | None] = (None, None)


def _window(state: UserState, peek: bool = False) -> SessionWindow:
    """The user's window, to change and write back with `_write_window` (`peek`: only to read)."""
    global _last_written
    written, window = _last_written
    if window is not None and written is state.window:
        if not peek:  # changed from now on: no longer what the state holds
            _last_written = (None, None)
        return window
    if state.window is None:
        return SessionWindow(**_WINDOW_PARAMS)
    return SessionWindow.from_state(state.window, **_WINDOW_PARAMS)


def _write_window(state: UserState, window: SessionWindow) -> None:
    global _last_written
    state.window = window.to_state()
    _last_written = (state.window, window)


def apply_user_records(state: UserState, records: list[DeviceRecord], event_time: int | None = None) -> list[dict]:
    """Fold stage-1 records into the user; return the kept sessions that closed (oldest first).

    `event_time`: how far every source that can still send this user an activity event has come (the
    caller's stream.logic.source_clock), or None while that is not known; sessions close only behind it.
    """
    window = None
    for record in records:
        device = record.device
        dev_key = str(device)
        if record.seq <= state.device_seq.get(dev_key, 0):
            continue  # redelivered
        state.device_seq[dev_key] = record.seq
        if state.user_id is None:
            state.user_id = record.user
        state.devices[dev_key] = DeviceInfo(record.platform, record.shared)
        contribution = record.contribution
        if contribution is None:
            continue
        if window is None:
            window = _window(state)
        _fold_contribution(state, window, device, contribution)
    if window is None:
        return []
    if event_time is not None:
        window.advance_to(event_time)
    closed = _finalise(state, window.close_due())
    _write_window(state, window)
    return closed


def _fold_contribution(state: UserState, window: SessionWindow, device, ev: Contribution) -> None:
    zones = state.zone_bins
    tr = ev.traffic
    if tr is not None:
        mine = state.traffic
        mine.rows += tr.rows
        mine.bytes_in = _int64(mine.bytes_in + tr.bytes_in)
        mine.bytes_out = _int64(mine.bytes_out + tr.bytes_out)
        mine.packets_in = _int64(mine.packets_in + tr.packets_in)
        mine.packets_out = _int64(mine.packets_out + tr.packets_out)
        if tr.first_at is not None and (mine.first_at is None or tr.first_at < mine.first_at):
            mine.first_at = tr.first_at
        if tr.last_at is not None and (mine.last_at is None or tr.last_at > mine.last_at):
            mine.last_at = tr.last_at
    for bucket, volume in ev.hour_bytes.items():
        bucket_us = int(bucket)
        for zone, bins in zones.items():
            hour, weekday = _local_at(zone, bucket_us)
            by_hour = bins.bytes_weekend if weekday >= 5 else bins.bytes_weekday
            by_hour[hour] = _int64(by_hour[hour] + volume)
            slots, slot = bins.bytes_week_slots, weekday * 12 + hour // 2
            slots[slot] = _int64(slots[slot] + volume)
    services = state.service_bytes
    for service, volume in ev.service_bytes.items():
        services[service] = _int64(services.get(service, 0) + volume)
    state.dns_rows += ev.dns_rows
    state.http_rows += ev.http_rows
    for ts, table, event_id, domain in activity_events(ev):
        for zone, bins in zones.items():
            hour, weekday = local_hour_weekday(zone, ts)
            (bins.events_weekend if weekday >= 5 else bins.events_weekday)[hour] += 1
        window.add(ts, (table, event_id), [device, domain])
    locs = ev.locations
    if locs:
        known = set(state.locations)
        final = state.last_final_event_at
        for enter, exit_ts, name in locs:
            location = (enter, exit_ts, name)
            if (final is None or exit_ts > final) and location not in known:
                known.add(location)
                state.locations.append(location)
    state.events += ev.rows
    wm = ev.watermark
    if wm is not None and (state.watermark is None or wm > state.watermark):
        state.watermark = wm


def _finalise(state: UserState, closed) -> list[dict]:
    """Walk final sessions in order: inter-event gaps, then kept-session features."""
    out = []
    hist = state.inter_event_hist
    for session in closed:
        last = state.last_final_event_at
        for event in session.events:
            if last is not None:
                hist[hist_bin(event.ts_us - last)] += 1
            last = event.ts_us
        state.last_final_event_at = last
        if not session.kept:
            continue
        record = _session_record(state, session)
        state.sessions += 1
        state.session_us += session.duration_us
        state.session_duration_hist[hist_bin(session.duration_us)] += 1
        state.last_session = record
        out.append(record)
    final = state.last_final_event_at
    if closed and state.locations and final is not None:
        state.locations = [loc for loc in state.locations if loc[1] > final]
    return out


def _session_record(state: UserState, session) -> dict:
    start, end = session.start_us, session.end_us
    devices = sorted({event.payload[0] for event in session.events})
    platforms = set()
    for device in devices:
        info = state.devices.get(str(device))
        if info is not None and info.platform is not None:
            platforms.add(info.platform)
    dns_events = sum(1 for event in session.events if event.order[0] == DNS)
    domains = Counter(event.payload[1] for event in session.events if event.payload[1] is not None)
    top = sorted(domains.items(), key=lambda item: (-item[1], item[0]))[:TOP_DOMAINS]
    places = sorted({name for enter, exit_ts, name in state.locations if enter <= end and exit_ts >= start})
    return {
        "user": state.user_id,
        "start": format_ts(start),
        "end": format_ts(end),
        "duration_s": (end - start) / US_PER_S,
        "events": len(session.events),
        "dns_events": dns_events,
        "http_events": len(session.events) - dns_events,
        "devices": devices,
        "platforms": sorted(platforms),
        "top_domains": [[domain, count] for domain, count in top],
        "locations": places,
    }


def close_user_windows(state: UserState) -> list[dict]:
    """End of a replay: every pending session becomes final; return the kept ones."""
    if state.window is None:
        return []
    window = _window(state)
    closed = _finalise(state, window.close_all())
    _write_window(state, window)
    return closed


def close_at_run_end(state: UserState, again: bool = False) -> list[dict] | None:
    """What an end-of-run mark does to one user: the kept sessions it closes, or None when it changes
    nothing.

    A run's first completion makes every pending session final. A mark that comes back after its run
    completed (a worker died before its input offsets were committed) closes nothing: the sessions of
    that run were closed, and written, before the run's completion was; whatever is pending now came
    after the run (live rows, or the next run's), and closing it would make the rest of those
    sessions' events late for good.
    """
    if again or not (state.window and pending_in_state(state.window)):
        return None
    return close_user_windows(state)


def advance_user_watermark(state: UserState, ts_us: int) -> list[dict]:
    """Move the user's event time forward (e.g. to a partition-wide watermark)
    and close what that makes final; return the kept sessions closed."""
    window = _window(state)
    window.advance_to(ts_us)
    closed = _finalise(state, window.close_due())
    _write_window(state, window)
    return closed


def _open_session(state: UserState) -> dict | None:
    if state.window is None:
        return None
    pending = _window(state, peek=True).open_session()
    if pending is None:
        return None
    return {"start": format_ts(pending["start"]), "last_event_at": format_ts(pending["last_event_at"]),
            "events": pending["events"]}


def user_features(state: UserState) -> dict:
    """The ``ucn/user`` snapshot (SPEC §4)."""
    user = state.users_row
    username, country = (user.username, user.country) if user is not None else (None, None)
    bins = state.zone_bins.get(zone_of(country)) or ZoneBins()
    tr = state.traffic
    devices = state.devices.values()
    return {
        "username": username,
        "country": country,
        "devices_personal": sum(1 for info in devices if not info.shared),
        "devices_shared": sum(1 for info in devices if info.shared),
        "traffic_seconds": tr.rows,
        "first_traffic_at": format_ts(tr.first_at),
        "last_traffic_at": format_ts(tr.last_at),
        "bytes_in": tr.bytes_in,
        "bytes_out": tr.bytes_out,
        "packets_in": tr.packets_in,
        "packets_out": tr.packets_out,
        "dns_requests": state.dns_rows,
        "http_requests": state.http_rows,
        "bytes_by_hour_weekday": list(bins.bytes_weekday),
        "bytes_by_hour_weekend": list(bins.bytes_weekend),
        "bytes_by_week_slot": list(bins.bytes_week_slots),
        "user_events_by_hour_weekday": list(bins.events_weekday),
        "user_events_by_hour_weekend": list(bins.events_weekend),
        "bytes_by_service": dict(sorted(state.service_bytes.items())),
        "inter_event_hist": list(state.inter_event_hist),
        "sessions_count": state.sessions,
        "sessions_seconds": state.session_us / US_PER_S,
        "session_duration_hist": list(state.session_duration_hist),
        "last_session": dict(state.last_session) if state.last_session is not None else None,
        "open_session": _open_session(state),
    }


def user_events(state: UserState) -> int:
    """Rows that reached this user: its users row and its personal devices' event rows."""
    return state.events


def user_watermark(state: UserState) -> int | None:
    """Greatest event time (us) of the user's rows, or None."""
    return state.watermark


def user_late_events(state: UserState) -> int:
    """Activity events later than the lateness (counted, kept out of sessions and gaps)."""
    return state.window["late_events"] if state.window is not None else 0
