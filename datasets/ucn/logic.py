"""Incremental state of the ucn dataset: devices (stage 1) and users (stage 2).

The stream keys work the way Kafka Streams does a foreign-key join
(DESIGN.md, "Joins"):

    devices, user_devices, devicetraffic, deviceapptraffic,
    httpreqs (httpreqs2), dnsreqs, locations      (key: device id)
        --device record (link info + the batch's contributions)--> user (key: user id)
    users                                         (key: user id)  --------> user

Each stage's state for one key is a plain JSON-able dict (what the changelog
stores after every batch). The functions here apply a batch of normalised rows
(``contract.rows.Row``) or stage-1 records to one key's state and say what to
send on. Nothing here knows Kafka, Faust or Redis.

Stage 1: one device
-------------------
``new_device()``, ``apply_device_rows(state, table, rows, seen)``,
``device_outbox(state, device_id) -> [(user_key, record)]``.

* ``devices``: the first row per id counts (platform, shared; null shared is
  false). ``user_devices``: owners, de-duplicated on (user_id, device_id),
  never removed. Event rows are de-duplicated per table by id, with the
  ids kept outside the state (``dedup.BlockedIntIds``); ``httpreqs2`` is
  ``httpreqs``.
* Event rows are folded at once into a compact *pending contribution*
  (``state["pend"]``): traffic sums and per-UTC-hour byte buckets, bytes per
  service, dns/http row counts, the activity events one by one, the location
  intervals that can match a session. ``device_outbox`` forwards it to every
  owner when the device is *personal*: it has a ``devices`` row, at least one
  owner and is not shared. Until then the contribution is held in the state
  (``state["held"]`` counts its rows). Once the ``devices`` row says shared,
  held and new events are dropped from the features and counted in
  ``state["unowned_events"]``. Events of devices that never get a row or an
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
  ``state["late_links"]``. A replay publishes the reference tables first, so
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
  only (``state["ief"]`` is the time of the last final event); kept ones
  update the session counters and become session records.
* Events later than the lateness (rejected by the window) still count in the
  order-free features and are counted as late events.
* Known limit, locations: a session's ``locations`` are resolved when it
  closes, from the location intervals the user has received by then. A
  location row that arrives after the session closed (possible in a live
  feed, never in a replay, where windows close at the end mark) is not added
  to it. Intervals that end before the last final event cannot match any
  later session and are dropped from the state.

Records (stage 1 -> stage 2), one per owner per ``device_outbox`` call::

    {"k": "device", "user": 17, "device": 42, "seq": 5,
     "platform": "ios" | None, "shared": False,
     "ev": {                                  # absent when there is nothing new
        "n": rows, "wm": max event time (us),
        "tr": [rows, bytes_in, bytes_out, packets_in, packets_out, first_ts, last_ts],
        "hb": {"<bucket ts>": bytes_in + bytes_out},   # UTC hour start (exact ts in
                                                       # the rare hours whose local
                                                       # offset is not whole-hour)
        "svc": {service | "unknown": bytes_in + bytes_out},
        "dns": dns rows, "http": http rows (any user_url),
        "acts": [[ts, "dnsreqs" | "httpreqs", id, domain | None], ...],  # or "acz": the same,
                                                       # encoded by stream.logic.event_codec
        "locs": [[entertime, exittime, name], ...]}}   # only rows that can match

Optional ``ev`` keys are present only when non-empty. ``seq`` grows per
device: a user ignores a record whose ``seq`` is not greater than the last
one it applied from that device, so a redelivered record is harmless.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from datetime import timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

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


# --------------------------------------------------------------------------- stage 1: devices


def new_device() -> dict:
    return {
        "dev": None,  # {"platform", "shared"} from the first devices row
        "owners": [],  # user ids in link order
        "told": [],  # owners that got the link info
        "pend": None,  # contribution not forwarded yet (held or this batch's)
        "held": 0,  # rows in pend
        "fwd": 0,  # rows forwarded to owners
        "unowned_events": 0,  # rows of a shared device: in no user's features
        "late_links": 0,
        "dups": 0,
        "events": 0,  # rows applied (duplicates excluded), reference rows included
        "seq": 0,
    }


def _new_contribution() -> dict:
    return {"n": 0, "wm": None}


def oldest_held(state: dict) -> int | None:
    """Event time of the oldest row the device holds back (no owner or no devices row yet), or None."""
    if not state["held"]:
        return None
    if state.get("held_parts"):
        return state.get("held_first")
    return state["pend"].get("first") if state["pend"] else None


def apply_device_rows(state: dict, table: str, rows, seen: BlockedIntIds) -> None:
    """Fold a batch of one table's rows of one device into its state (`seen`: the device's applied ids,
    kept outside the state: see stream.logic.dedup)."""
    if table == "httpreqs2":
        table = HTTP
    if table == "devices":
        for row in rows:
            if state["dev"] is None:
                values = row.values
                state["dev"] = {"platform": values.get("platform"), "shared": values.get("shared") is True}
                state["events"] += 1
            else:
                state["dups"] += 1
        return
    if table == "user_devices":
        for row in rows:
            user = _as_id(row.values.get("user_id"))
            if user is None or user in state["owners"]:
                state["dups"] += 1
                continue
            state["owners"].append(user)
            state["events"] += 1
            if state["fwd"]:
                state["late_links"] += 1
        return
    if table not in EVENT_TABLES:
        raise ValueError(f"not a ucn device table: {table}")
    pend = state["pend"]
    fold = _FOLD[table]
    firsts = seen.first_seen(table, [_as_id(row.values.get("id")) for row in rows])
    for row, first in zip(rows, firsts):
        if not first:
            state["dups"] += 1
            continue
        state["events"] += 1
        if pend is None:
            pend = state["pend"] = _new_contribution()
        fold(pend, row)
        pend["n"] += 1
        if row.ts is not None and (pend.get("first") is None or row.ts < pend["first"]):
            pend["first"] = row.ts  # the oldest row held: a progress mark must not pass it (stream.logic.progress)
        if pend["wm"] is None or row.ts > pend["wm"]:
            pend["wm"] = row.ts
        state["held"] += 1


def _fold_traffic(pend: dict, row) -> None:
    values, ts = row.values, row.ts
    bytes_in, bytes_out = values.get("bytes_in") or 0, values.get("bytes_out") or 0
    tr = pend.get("tr")
    if tr is None:
        pend["tr"] = [1, bytes_in, bytes_out, values.get("packets_in") or 0, values.get("packets_out") or 0, ts, ts]
    else:
        tr[0] += 1
        tr[1] += bytes_in
        tr[2] += bytes_out
        tr[3] += values.get("packets_in") or 0
        tr[4] += values.get("packets_out") or 0
        if ts < tr[5]:
            tr[5] = ts
        if ts > tr[6]:
            tr[6] = ts
    buckets = pend.setdefault("hb", {})
    key = str(time_bucket(ts))
    buckets[key] = buckets.get(key, 0) + bytes_in + bytes_out


def _fold_app(pend: dict, row) -> None:
    values = row.values
    service = values.get("service")
    service = "unknown" if service is None else service
    services = pend.setdefault("svc", {})
    services[service] = services.get(service, 0) + (values.get("bytes_in") or 0) + (values.get("bytes_out") or 0)


def _fold_dns(pend: dict, row) -> None:
    pend["dns"] = pend.get("dns", 0) + 1
    pend.setdefault("acts", []).append([row.ts, DNS, _as_id(row.values.get("id")), row.values.get("query")])


def _fold_http(pend: dict, row) -> None:
    pend["http"] = pend.get("http", 0) + 1
    if row.values.get("user_url") is True:
        pend.setdefault("acts", []).append(
            [row.ts, HTTP, _as_id(row.values.get("id")), row.values.get("req_url_host")])


def _fold_location(pend: dict, row) -> None:
    values = row.values
    exit_ts, name = parse_ts_or_none(values.get("exittime")), values.get("name")
    if row.ts is None or exit_ts is None or name is None:
        return  # a null entertime, exittime or name never matches
    pend.setdefault("locs", []).append([row.ts, exit_ts, name])


_FOLD = {"devicetraffic": _fold_traffic, "deviceapptraffic": _fold_app, "dnsreqs": _fold_dns,
         HTTP: _fold_http, "locations": _fold_location}


def device_outbox(state: dict, device_id, held: HeldParts | None = None) -> list[tuple[str, dict]]:
    """Records for the user stage: (user id as text, record). See the module doc. `held`: the parts of
    the contribution the device held back beside its state, if any (`HeldParts`)."""
    dev = state["dev"]
    if dev is None:
        return []  # unknown device: events stay held
    owners = state["owners"]
    told = set(state["told"])
    new_owners = [u for u in owners if u not in told]
    if dev["shared"]:
        if state["pend"] is not None or state.get("held_parts"):
            state["unowned_events"] += state["held"]
            _forget_held(state, held)
        targets, contributions = new_owners, []
    else:
        if not owners:
            return []  # no owner yet: events stay held
        contributions = (held.take(state) if held is not None else []) + (
            [state["pend"]] if state["pend"] is not None else [])
        targets = owners if contributions else new_owners
    if not targets:
        return []
    device = _as_id(device_id)
    out = []
    contributions = [piece for contribution in contributions for piece in _pieces(contribution)]
    for contribution in contributions or [None]:  # oldest first, each its own sequence number
        state["seq"] = next_seq(state["seq"])
        for user in targets:
            record = {"k": "device", "user": user, "device": device, "seq": state["seq"],
                      "platform": dev["platform"], "shared": dev["shared"]}
            if contribution is not None:
                record["ev"] = contribution
            out.append((str(user), record))
    if contributions:
        state["fwd"] += state["held"]
        _forget_held(state, None)
    state["told"] = list(owners)
    return out


PIECE_EVENTS = 400  # activity events per record: a contribution of more is sent in pieces (~25 KB each)


def _pieces(contribution: dict) -> list[dict]:
    """A contribution as records of at most PIECE_EVENTS activity events, in order. The first carries
    the counts and sums; the last carries `wm`."""
    acts = contribution.get("acts", ())
    if len(acts) <= PIECE_EVENTS:
        return [_compact(dict(contribution))]
    first = {k: v for k, v in contribution.items() if k not in ("acts", "wm")}
    pieces = [first] + [{"n": 0} for _ in range(PIECE_EVENTS, len(acts), PIECE_EVENTS)]
    for piece, start in zip(pieces, range(0, len(acts), PIECE_EVENTS)):
        piece["acts"] = acts[start:start + PIECE_EVENTS]
    pieces[-1]["wm"] = contribution.get("wm")
    return [_compact(piece) for piece in pieces]


def _compact(piece: dict) -> dict:
    """A piece's activity events as flat integer lists (`acz`, stream.logic.event_codec): a device's
    record, and the state that owes it, take about a third of the bytes."""
    acts = piece.get("acts")
    if acts:
        encoded = event_codec.encode_rows(acts)
        if encoded is not None:
            del piece["acts"]
            piece["acz"] = encoded
    return piece


def activity_events(ev: dict):
    acts = ev.get("acts")
    if acts is None and "acz" in ev:
        return event_codec.decode_rows(ev["acz"])
    return acts or ()


HELD_PART_ROWS = 500  # a held contribution of this many rows moves beside the state (~40 KB at most)


class HeldParts:
    """What a device holds back (no owner or no devices row yet), in parts beside its state once it grows:
    a device that is never linked would otherwise grow its state with every row it gets."""

    def __init__(self, store: KeyValue, device_key: str):
        self.store, self.device_key = store, device_key

    def _name(self, number: int) -> str:
        return f"h{number}|{self.device_key}"

    def spill(self, state: dict) -> None:
        """After a batch: move the held contribution out of the state once it has HELD_PART_ROWS rows."""
        pend = state["pend"]
        if not state["held"] or pend is None or pend["n"] < HELD_PART_ROWS:
            return
        number = state.get("held_parts", 0)
        if number == 0:
            state["held_first"] = pend.get("first")
        self.store.put(self._name(number), {"part": pend})
        state["held_parts"], state["pend"] = number + 1, None

    def take(self, state: dict) -> list[dict]:
        """The parts in the order they were held, removed from beside the state."""
        parts = []
        for number in range(state.get("held_parts", 0)):
            part = self.store.get(self._name(number))
            self.store.delete(self._name(number))
            if part is not None:
                parts.append(part["part"])
        return parts


def _forget_held(state: dict, held: HeldParts | None) -> None:
    if held is not None:
        held.take(state)
    state["pend"], state["held"] = None, 0
    state.pop("held_parts", None)
    state.pop("held_first", None)


# --------------------------------------------------------------------------- stage 2: users


def _zone_bins() -> dict:
    return {"bwd": [0] * 24, "bwe": [0] * 24, "bws": [0] * 84, "ewd": [0] * 24, "ewe": [0] * 24}


def new_user(user_id=None) -> dict:
    return {
        "id": None if user_id is None else _as_id(user_id),
        "user": None,  # {"username", "country"} of the first users row
        "devices": {},  # str(device id) -> [platform, shared]
        "seq": {},  # str(device id) -> last applied record seq
        "tr": [0, 0, 0, 0, 0, None, None],  # rows, bytes_in, bytes_out, packets_in, packets_out, first, last
        "dns": 0,
        "http": 0,
        "svc": {},
        "zb": {LONDON: _zone_bins(), PARIS: _zone_bins()},  # one zone once the country is known
        "ieh": [0] * BINS,
        "ief": None,  # time of the last final activity event
        "sess_n": 0,
        "sess_us": 0,
        "sdh": [0] * BINS,
        "last_session": None,
        "locs": [],  # [entertime, exittime, name] that may still match a session
        "win": None,
        "events": 0,
        "wm": None,
    }


def apply_user_rows(state: dict, rows) -> None:
    """Fold ``users`` rows of one user (the first row counts)."""
    for row in rows:
        if state["user"] is not None:
            continue
        values = row.values
        user = state["user"] = {"username": values.get("username"), "country": values.get("country")}
        if state["id"] is None:
            state["id"] = _as_id(values.get("id", row.key))
        state["events"] += 1
        zone = zone_of(user["country"])
        state["zb"] = {zone: state["zb"].get(zone) or _zone_bins()}


def _window(state: dict) -> SessionWindow:
    params: dict = {"gap_us": SESSION_GAP_US, "lateness_us": LATENESS_US, "min_events": SESSION_MIN_EVENTS,
                    "auto_watermark": False}
    if state["win"] is None:
        return SessionWindow(**params)
    return SessionWindow.from_state(state["win"], **params)


def apply_user_records(state: dict, records, event_time: int | None = None) -> list[dict]:
    """Fold stage-1 records into the user; return the kept sessions that closed (oldest first).

    `event_time`: how far every source that can still send this user an activity event has come (the
    caller's stream.logic.source_clock), or None while that is not known; sessions close only behind it.
    """
    window = None
    for record in records:
        if record.get("k") != "device":
            continue
        device = record["device"]
        dev_key = str(device)
        if record["seq"] <= state["seq"].get(dev_key, 0):
            continue  # redelivered
        state["seq"][dev_key] = record["seq"]
        if state["id"] is None:
            state["id"] = record["user"]
        state["devices"][dev_key] = [record["platform"], bool(record["shared"])]
        contribution = record.get("ev")
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
    state["win"] = window.to_state()
    return closed


def _fold_contribution(state: dict, window: SessionWindow, device, ev: dict) -> None:
    zones = state["zb"]
    tr = ev.get("tr")
    if tr is not None:
        mine = state["tr"]
        for i in range(5):
            mine[i] += tr[i]
        mine[5] = tr[5] if mine[5] is None else min(mine[5], tr[5])
        mine[6] = tr[6] if mine[6] is None else max(mine[6], tr[6])
    for bucket, volume in ev.get("hb", {}).items():
        bucket = int(bucket)
        for zone, bins in zones.items():
            hour, weekday = _local_at(zone, bucket)
            bins["bwe" if weekday >= 5 else "bwd"][hour] += volume
            bins["bws"][weekday * 12 + hour // 2] += volume
    services = state["svc"]
    for service, volume in ev.get("svc", {}).items():
        services[service] = services.get(service, 0) + volume
    state["dns"] += ev.get("dns", 0)
    state["http"] += ev.get("http", 0)
    for ts, table, event_id, domain in activity_events(ev):
        for zone, bins in zones.items():
            hour, weekday = local_hour_weekday(zone, ts)
            bins["ewe" if weekday >= 5 else "ewd"][hour] += 1
        window.add(ts, (table, event_id), [device, domain])
    locs = ev.get("locs")
    if locs:
        known = {tuple(loc) for loc in state["locs"]}
        for enter, exit_ts, name in locs:
            if (state["ief"] is None or exit_ts > state["ief"]) and (enter, exit_ts, name) not in known:
                known.add((enter, exit_ts, name))
                state["locs"].append([enter, exit_ts, name])
    state["events"] += ev.get("n", 0)
    wm = ev.get("wm")
    if wm is not None and (state["wm"] is None or wm > state["wm"]):
        state["wm"] = wm


def _finalise(state: dict, closed) -> list[dict]:
    """Walk final sessions in order: inter-event gaps, then kept-session features."""
    out = []
    hist = state["ieh"]
    for session in closed:
        last = state["ief"]
        for event in session.events:
            if last is not None:
                hist[hist_bin(event.ts_us - last)] += 1
            last = event.ts_us
        state["ief"] = last
        if not session.kept:
            continue
        record = _session_record(state, session)
        state["sess_n"] += 1
        state["sess_us"] += session.duration_us
        state["sdh"][hist_bin(session.duration_us)] += 1
        state["last_session"] = record
        out.append(record)
    if closed and state["locs"]:
        final = state["ief"]
        state["locs"] = [loc for loc in state["locs"] if loc[1] > final]
    return out


def _session_record(state: dict, session) -> dict:
    start, end = session.start_us, session.end_us
    devices = sorted({event.payload[0] for event in session.events})
    platforms = set()
    for device in devices:
        info = state["devices"].get(str(device))
        if info is not None and info[0] is not None:
            platforms.add(info[0])
    dns_events = sum(1 for event in session.events if event.order[0] == DNS)
    domains = Counter(event.payload[1] for event in session.events if event.payload[1] is not None)
    top = sorted(domains.items(), key=lambda item: (-item[1], item[0]))[:TOP_DOMAINS]
    places = sorted({name for enter, exit_ts, name in state["locs"] if enter <= end and exit_ts >= start})
    return {
        "user": state["id"],
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


def close_user_windows(state: dict) -> list[dict]:
    """End of a replay: every pending session becomes final; return the kept ones."""
    if state["win"] is None:
        return []
    window = _window(state)
    closed = _finalise(state, window.close_all())
    state["win"] = window.to_state()
    return closed


def close_at_run_end(state: dict, again: bool = False) -> list[dict] | None:
    """What an end-of-run mark does to one user: the kept sessions it closes, or None when it changes
    nothing.

    A run's first completion makes every pending session final. A mark that comes back after its run
    completed (a worker died before its input offsets were committed) closes nothing: the sessions of
    that run were closed, and written, before the run's completion was; whatever is pending now came
    after the run (live rows, or the next run's), and closing it would make the rest of those
    sessions' events late for good.
    """
    if again or not (state["win"] and pending_in_state(state["win"])):
        return None
    return close_user_windows(state)


def advance_user_watermark(state: dict, ts_us: int) -> list[dict]:
    """Move the user's event time forward (e.g. to a partition-wide watermark)
    and close what that makes final; return the kept sessions closed."""
    window = _window(state)
    window.advance_to(ts_us)
    closed = _finalise(state, window.close_due())
    state["win"] = window.to_state()
    return closed


def _open_session(state: dict) -> dict | None:
    if state["win"] is None:
        return None
    pending = _window(state).open_session()
    if pending is None:
        return None
    return {"start": format_ts(pending["start"]), "last_event_at": format_ts(pending["last_event_at"]),
            "events": pending["events"]}


def user_features(state: dict) -> dict:
    """The ``ucn/user`` snapshot (SPEC §4)."""
    user = state["user"] or {}
    country = user.get("country")
    zone = zone_of(country)
    bins = state["zb"].get(zone) or _zone_bins()
    tr = state["tr"]
    devices = state["devices"].values()
    return {
        "username": user.get("username"),
        "country": country,
        "devices_personal": sum(1 for _, shared in devices if not shared),
        "devices_shared": sum(1 for _, shared in devices if shared),
        "traffic_seconds": tr[0],
        "first_traffic_at": format_ts(tr[5]),
        "last_traffic_at": format_ts(tr[6]),
        "bytes_in": tr[1],
        "bytes_out": tr[2],
        "packets_in": tr[3],
        "packets_out": tr[4],
        "dns_requests": state["dns"],
        "http_requests": state["http"],
        "bytes_by_hour_weekday": list(bins["bwd"]),
        "bytes_by_hour_weekend": list(bins["bwe"]),
        "bytes_by_week_slot": list(bins["bws"]),
        "user_events_by_hour_weekday": list(bins["ewd"]),
        "user_events_by_hour_weekend": list(bins["ewe"]),
        "bytes_by_service": dict(sorted(state["svc"].items())),
        "inter_event_hist": list(state["ieh"]),
        "sessions_count": state["sess_n"],
        "sessions_seconds": state["sess_us"] / US_PER_S,
        "session_duration_hist": list(state["sdh"]),
        "last_session": dict(state["last_session"]) if state["last_session"] is not None else None,
        "open_session": _open_session(state),
    }


def user_events(state: dict) -> int:
    """Rows that reached this user: its users row and its personal devices' event rows."""
    return state["events"]


def user_watermark(state: dict) -> int | None:
    """Greatest event time (us) of the user's rows, or None."""
    return state["wm"]


def user_late_events(state: dict) -> int:
    """Activity events later than the lateness (counted, kept out of sessions and gaps)."""
    return state["win"]["late_events"] if state["win"] is not None else 0
