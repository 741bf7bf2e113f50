"""Synthetic UCN study tables, shaped like the study's database, for tests and benchmarks.

Why: the study's database (see the notebook in ``shared/seeds/``) cannot be
shipped, yet the replay, the stream and the batch check (``verify``) all have
to run on data of its shape, from a CSV folder as well as from PostgreSQL or
SQLite. This module writes the study's eight tables with their column names
and types (``httpreqs2`` being the study's name of the HTTP table), sized by
``scale``, and plants at every scale the hard cases that the feature contract
(``SPEC.md`` sections 1, 4 and 5, ``docs/readings.md``) has to get right:

- users in ``uk`` and ``fr`` (a few without a country), one user with devices
  but no data and one without devices;
- personal devices (``shared`` false or null), shared devices linked to the two
  users of a household, a non-shared device linked to two users (it belongs to
  both), devices linked to nobody, devices absent from ``devices`` but present
  in ``user_devices`` or in the events, ``user_devices`` pairs written twice;
- two months of events (2015-10-01 .. 2015-11-30) across the end of summer
  time in both zones (25 Oct 2015, 01:00 UTC): bursts of DNS and HTTP requests
  of one or two interleaved devices, idle gaps of many lengths, per-second
  device traffic while a device is active, per-application traffic, locations;
- scripted episodes: gaps of exactly 599 s, 600 s, 601 s and 600.000001 s
  between consecutive activity events of one user (DNS, or HTTP with
  ``user_url`` true; non-activity HTTP rows sit inside the gaps), events at
  one instant on two devices of a user, sessions across local midnight and the
  weekend boundary (one of them only in local time), sessions across the DST
  change in London and Paris, locations that touch a session at one instant;
- ids unique per table except a few exact copies of rows (an id seen twice
  counts once), null cells wherever the study has them.

With ``bad_rows`` it also writes rows that must become dead letters (null
time, null ``devid``, and in CSV an unparsable time or a wrong number of
cells) and returns where they are.

Everything is drawn from one ``numpy.random.default_rng(seed)``, so the same
arguments give the same rows (byte-identical CSV files) whatever the target.
Inside, times are integer microseconds (naive UTC); they are spelled
``2015-11-10 10:12:38.772903``, without the fraction when it is zero.
"""
from __future__ import annotations

import csv
import io
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 3_600 * SECOND
DAY = 24 * HOUR


def _us(text: str) -> int:
    """Microseconds since the epoch of a naive UTC time."""
    return int(np.datetime64(text, "us").astype(np.int64))


START = _us("2015-10-01")
END = _us("2015-12-01")  # exclusive
ZONES = {"uk": "Europe/London", "fr": "Europe/Paris"}  # anything else is London

# Sizes at scale 1 (about 300,000 rows in all) and the floors that keep every case possible.
USERS, MIN_USERS = 25, 8
ACTIVITIES = 1_320  # bursts of requests, over all users, households and lone devices
BACKGROUND_RUNS = 6_000  # short runs of traffic without requests (sync, push)
MIN_ACTIVITIES_PER_ACTOR = 2
BURSTS_PER_DAY = 4  # on the days an actor is online at all

# Column kinds.
INT, BIGINT, TEXT, BOOL, TS = "int", "bigint", "text", "bool", "ts"
BYTES = {"packets_in": BIGINT, "bytes_in": BIGINT, "packets_out": BIGINT, "bytes_out": BIGINT}
TABLES: dict[str, dict[str, str]] = {
    "users": {"id": INT, "username": TEXT, "country": TEXT},
    "devices": {"id": INT, "platform": TEXT, "shared": BOOL},
    "user_devices": {"user_id": INT, "device_id": INT},
    "devicetraffic": {"id": INT, "devid": INT, "ts": TS, **BYTES},
    "deviceapptraffic": {"id": INT, "devid": INT, "ts": TS, "dstport": INT, "service": TEXT, **BYTES},
    "httpreqs2": {"id": INT, "devid": INT, "ts": TS, "req_url_host": TEXT, "user_url": BOOL},
    "dnsreqs": {"id": INT, "devid": INT, "ts": TS, "query": TEXT, "user_req": BOOL},
    "locations": {"id": INT, "devid": INT, "entertime": TS, "exittime": TS, "name": TEXT},
}
EVENT_TIME = {"devicetraffic": "ts", "deviceapptraffic": "ts", "httpreqs2": "ts", "dnsreqs": "ts",
              "locations": "entertime"}
PRIMARY_KEYS = ("users", "devices")  # the event tables hold deliberate duplicate ids
SQL_TYPES = {
    "postgresql": {INT: "integer", BIGINT: "bigint", TEXT: "text", BOOL: "boolean",
                   TS: "timestamp without time zone"},
    "sqlite": {INT: "integer", BIGINT: "bigint", TEXT: "text", BOOL: "boolean", TS: "timestamp"},
}

# People, devices and places.
UK_FIRST = ("michael", "neena", "chris", "david", "sarah", "james", "emma", "oliver", "lucy",
            "harry", "sophie", "tom")
UK_LAST = ("brogan", "gupta", "maley", "harrison", "clifford", "bowen", "barnes", "bridgeman",
           "gluch", "kemp", "walsh", "turner")
FR_FIRST = ("salma", "norbert", "carmen", "jason", "benoit", "amelie", "marc", "julie", "francois",
            "luc", "claire", "majid")
FR_LAST = ("cardino", "ormain", "filiatre", "desir", "lefevre", "martin", "bernard", "dubois",
           "moreau", "laurent", "simon", "roux")
PHONES = ("iphone", "android-phone")
COMPUTERS = ("macbook", "windows-pc", "ipad", "linux-pc")
HOSTVIEW = "windows-pc"  # its monitor stamps milliseconds and leaves exit times open
STREETS = {
    "uk": ("Faraday Road", "Triumph Road", "Long Row West", "Derby Road", "Mansfield Road",
           "Castle Boulevard", "Alfreton Road", "Hucknall Road", "Carlton Road", "Wollaton Road"),
    "fr": ("Rue de Rivoli", "Boulevard Saint-Michel", "Rue Oberkampf", "Avenue de Flandre",
           "Rue de la Roquette", "Rue Mouffetard", "Boulevard Voltaire", "Rue du Bac",
           "Avenue d'Italie", "Rue Lepic"),
}
CITIES = {"uk": ("Nottingham", "Nottingham, United Kingdom"), "fr": ("Paris", "Paris, France")}

DOMAINS = {  # by popularity
    "any": ("www.google.com", "www.facebook.com", "graph.facebook.com", "fbcdn.net",
            "www.youtube.com", "i.ytimg.com", "clients4.google.com", "mail.google.com",
            "www.gstatic.com", "api.twitter.com", "pbs.twimg.com", "www.wikipedia.org",
            "outlook.office365.com", "www.amazon.com", "s3.amazonaws.com", "ssl.gstatic.com",
            "apis.google.com", "www.linkedin.com", "www.instagram.com", "scontent.cdninstagram.com",
            "itunes.apple.com", "init.itunes.apple.com", "gsp1.apple.com", "www.dropbox.com",
            "d.dropbox.com", "www.spotify.com", "audio-ak.spotify.com", "www.netflix.com",
            "ad.doubleclick.net", "WWW.Google.com"),
    "uk": ("www.google.co.uk", "www.bbc.co.uk", "news.bbc.co.uk", "www.theguardian.com",
           "www.nottingham.ac.uk", "www.amazon.co.uk", "www.dailymail.co.uk", "www.tesco.com",
           "www.rightmove.co.uk", "www.skysports.com"),
    "fr": ("www.google.fr", "www.lemonde.fr", "www.leboncoin.fr", "www.orange.fr",
           "www.lefigaro.fr", "www.inria.fr", "www.sncf.com", "www.free.fr", "www.20minutes.fr",
           "www.allocine.fr"),
}
SERVICES = ((443, "https", 0.5), (80, "http", 0.22), (53, "dns", 0.06), (993, "imaps", 0.03),
            (5223, "apple-push", 0.03), (5228, "google-play", 0.03), (123, "ntp", 0.02),
            (1935, "rtmp", 0.02), (3478, "stun", 0.02), (8080, "http-alt", 0.02))
UNNAMED_SERVICE = 0.05  # an unusual port, no service name

# Local hour of an activity's start, Monday-Friday and Saturday-Sunday.
HOUR_WEIGHTS = {
    False: (1, .5, .3, .2, .2, .4, 1.5, 3, 4, 3, 2.5, 2.5, 3, 2.5, 2.5, 2.5, 3, 3.5, 4.5, 5, 5.5, 5, 4,
            2.5),
    True: (2, 1, .5, .3, .2, .2, .4, 1, 2, 3, 4, 4, 4, 3.5, 3.5, 3.5, 3.5, 4, 4.5, 5, 5.5, 5, 4.5, 3),
}
# Gaps between the requests of one burst: sub-second, seconds, tens of seconds, minutes (< 600 s).
INTRA_GAPS = ((0.55, 0.3), (0.30, 5.0), (0.12, 40.0), (0.03, None))

# Scripted episodes: (seconds after the anchor, device slot, table, user flag).
DNS, HTTP = "dnsreqs", "httpreqs2"
EDGE_EVENTS = (
    # burst A: two devices at one instant, then interleaved
    (0, 0, DNS, True), (0, 1, DNS, True), (1.5, 0, HTTP, True), (2.25, 1, DNS, False),
    (7.000001, 0, DNS, True), (12, 1, HTTP, True),
    (611, 0, DNS, True), (614.5, 0, HTTP, True), (620, 1, DNS, True),  # 599 s after 12
    (920, 0, HTTP, False),  # not an activity event
    (1220, 1, HTTP, True), (1221, 0, DNS, True), (1230.5, 0, DNS, True),  # exactly 600 s after 620
    (1500, 1, HTTP, None),  # null user_url: not an activity event either
    (1831.5, 0, DNS, True), (1832, 1, DNS, True), (1840, 0, HTTP, True),  # 601 s after 1230.5
    (2440.000001, 1, DNS, True), (2445, 0, DNS, True), (2450, 1, HTTP, True),  # 600.000001 s after
)
EVENING_OFFSETS = (0, 95.5, 180, 240.25, 410, 530.000002, 700, 905, 1111.1, 1300, 1480)
DST_OFFSETS = (0, 150, 300, 450, 600, 900, 1200, 1500, 1800, 2400, 2700)
EPISODES = (  # (user role, anchor in UTC, events)
    ("edge", "2015-11-10T10:12:38.772903", EDGE_EVENTS),
    ("edge", "2015-11-13T23:48:10.250000", EVENING_OFFSETS),  # Friday -> Saturday, GMT
    ("edge_fr", "2015-11-15T22:50:00.500000", EVENING_OFFSETS),  # Sunday -> Monday in Paris only
    ("edge", "2015-10-25T00:40:00.000321", DST_OFFSETS),  # across 01:00 UTC, end of BST
    ("edge_fr", "2015-10-25T00:40:01.250000", DST_OFFSETS),  # and of CEST
)
RESERVED_MARGIN = 3 * HOUR  # no random activity of the episode's user this close to it

BAD_TIMES = ("not-a-time", "2015-13-45 10:00:00")
CSV_BAD_KINDS = ("null time", "null devid", "unparsable time", "wrong width")
DATABASE_BAD_KINDS = ("null time", "null devid")


def generate_ucn(out: str, seed: int = 1, scale: float = 1.0, bad_rows: int = 0,
                 schema: str | None = None) -> dict:
    """Write the ucn tables to a folder (one ``{table}.csv`` each) or a database URL.

    ``out`` holding ``://`` is a database: ``postgresql://…`` (tables created in
    ``schema`` when given, COPY) or ``sqlite:///path.db`` (``schema`` ignored);
    existing tables of the same names are dropped first. The summary holds
    ``format`` (``csv``, ``postgresql``, ``sqlite``), ``target``, ``schema``,
    ``rows`` (rows written per table, duplicates and bad rows included),
    ``bad_rows`` (one ``{"table", "line" | "id", "reason"}`` per bad row;
    ``line`` is 1-based, the header being line 1) and ``cases`` (where the
    planted hard cases are).
    """
    rng = np.random.default_rng(seed)
    population = _population(rng, scale)
    tables = _tables(rng, population, scale)
    duplicated = {name: _duplicate_rows(rng, tables, name) for name in EVENT_TIME}
    duplicated_links = _duplicate_links(rng, tables)
    fmt = _format_of(out)
    bad = _bad_row_plan(rng, tables, bad_rows, CSV_BAD_KINDS if fmt == "csv" else DATABASE_BAD_KINDS)
    _insert_bad_rows(tables, bad)
    if fmt == "csv":
        target = _write_folder(Path(out), tables, bad)
        records = [{"table": b.table, "line": b.slot + 2, "reason": b.reason} for b in bad]
    else:
        target = _write_database(out, fmt, tables, schema)
        records = [{"table": b.table, "id": b.id, "reason": b.reason} for b in bad]
    cases = {**population.cases, "duplicated_ids": duplicated, "duplicated_links": duplicated_links}
    rows = {name: len(frame) for name, frame in tables.items()}
    return {"format": fmt, "target": target, "schema": schema if fmt == "postgresql" else None,
            "rows": rows, "bad_rows": records, "cases": cases}


# --- small random helpers ----------------------------------------------------

def _few(n: int, share: float) -> int:
    """How many rows carry one hard case: a share of the table, at least two."""
    return max(2, round(n * share))


def _ramp(lengths: np.ndarray) -> np.ndarray:
    """0, 1, …, n-1 for each group length n, concatenated."""
    return np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def _zipf(rng: np.random.Generator, n_items: int, n: int) -> np.ndarray:
    """n draws of item ranks, the first items much more likely."""
    weights = 1.0 / np.arange(1, n_items + 1) ** 1.1
    return rng.choice(n_items, n, p=weights / weights.sum())


def _some(rng: np.random.Generator, n: int, share: float,
          eligible: np.ndarray | None = None, least: int = 2) -> np.ndarray:
    """A random ``share`` of n rows, and at least ``least`` (of the eligible
    ones), so that every kind of null cell exists at any scale."""
    eligible = np.ones(n, dtype=bool) if eligible is None else eligible
    chosen = (rng.random(n) < share) & eligible
    missing = least - int(chosen.sum())
    if missing > 0:
        pool = np.flatnonzero(eligible & ~chosen)
        chosen[rng.choice(pool, min(missing, len(pool)), replace=False)] = True
    return chosen


def _nullable(values: np.ndarray, null: np.ndarray, dtype: str) -> pd.Series:
    return pd.Series(values).astype(dtype).mask(null)


def _seconds(value: float) -> int:
    """Seconds after an anchor as exact microseconds."""
    return round(value * SECOND)


def _weekend(day_us: np.ndarray) -> np.ndarray:
    """Saturday or Sunday, for midnights in microseconds (1970-01-01 was a Thursday)."""
    return (day_us // DAY + 3) % 7 >= 5


def _local_to_utc(local: np.ndarray, countries: np.ndarray) -> np.ndarray:
    """Naive local times (µs) to naive UTC; a repeated hour is read as standard time."""
    utc = local.copy()
    for country in np.unique(countries):
        chosen = countries == country
        moments = pd.DatetimeIndex(local[chosen].astype("datetime64[us]"))
        aware = moments.tz_localize(ZONES.get(country, ZONES["uk"]),
                                    ambiguous=np.zeros(chosen.sum(), dtype=bool),
                                    nonexistent="shift_forward")
        utc[chosen] = aware.tz_convert(None).as_unit("us").asi8
    return utc


# --- people, devices, timelines ----------------------------------------------

@dataclass
class Actor:
    """Whoever produces one timeline of bursts: a user on their devices, a
    household on its shared devices, or a lone device."""

    devices: list[int]  # device indexes, the one carried around first
    country: str
    lo: int  # presence window, µs
    hi: int
    weight: float
    user: int | None = None
    reserved: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Population:
    users: pd.DataFrame  # the users table
    platforms: list[str]  # per device index (listed in `devices` or not)
    device_ids: np.ndarray  # per device index
    devices: pd.DataFrame  # the devices table
    links: pd.DataFrame  # user_devices, distinct pairs
    actors: list[Actor]
    places: dict[int, tuple[str, str, str]]  # user -> (home, work, elsewhere)
    roles: dict[str, int]  # role -> user id
    cases: dict


class _Devices:
    """Devices as they are made: platform, shared flag, listed in `devices` or not, owners."""

    def __init__(self) -> None:
        self.platform: list[str] = []
        self.shared: list[bool | None] = []
        self.listed: list[bool] = []
        self.owners: list[list[int]] = []

    def add(self, platform: str, shared: bool | None, owners: list[int], listed: bool = True) -> int:
        self.platform.append(platform)
        self.shared.append(shared)
        self.listed.append(listed)
        self.owners.append(list(owners))
        return len(self.platform) - 1


def _population(rng: np.random.Generator, scale: float) -> Population:
    n_users = max(MIN_USERS, round(USERS * scale))
    n_households = max(1, round(n_users / 9))
    order = [int(i) for i in rng.permutation(n_users) + 1]
    roles = {"edge": order[0], "edge_fr": order[1], "idle": order[2], "deviceless": order[3]}
    households = [order[4 + 2 * h: 6 + 2 * h] for h in range(n_households)]
    others = order[4 + 2 * n_households:]
    roles.update(null_country=others[0], unknown_holder=others[1])

    country = _countries(rng, roles, households, others)
    users = _users(rng, order, country, households)
    made = _Devices()
    personal = {user: _personal_devices(rng, made, user, roles) for user in sorted(country)}
    shared, co_owned = _household_devices(rng, made, households)
    unknown_linked = made.add("android-phone", False, [roles["unknown_holder"]], listed=False)
    personal[roles["unknown_holder"]].append(unknown_linked)
    made.shared[personal[roles["null_country"]][0]] = None  # null shared: a personal device
    for user in others[1:]:
        for device in personal[user]:
            if device != unknown_linked and rng.random() < 0.05:
                made.shared[device] = None
    loners = [made.add(str(rng.choice(COMPUTERS)), bool(rng.random() < 0.5), []) for _ in range(2)]
    orphan = made.add("ipad", False, [], listed=False)
    personal[households[0][0]].append(co_owned)

    device_ids = rng.permutation(len(made.platform)) + 1
    actors = _actors(rng, roles, country, personal, households, shared, loners + [orphan])
    null_shared = [i for i, value in enumerate(made.shared) if value is None]
    cases = {
        "edge_user": roles["edge"], "edge_user_fr": roles["edge_fr"], "idle_user": roles["idle"],
        "deviceless_user": roles["deviceless"], "null_country_user": roles["null_country"],
        "households": [[int(u) for u in pair] for pair in households],
        "shared_devices": sorted(int(device_ids[d]) for ds in shared for d in ds),
        "co_owned_device": int(device_ids[co_owned]),
        "null_shared_devices": sorted(int(device_ids[d]) for d in null_shared),
        "unlinked_devices": sorted(int(device_ids[d]) for d in loners),
        "unknown_devices": [int(device_ids[unknown_linked]), int(device_ids[orphan])],
    }
    return Population(users, made.platform, device_ids, _devices_table(made, device_ids),
                      _links_table(made, device_ids), actors, _places(rng, country), roles, cases)


def _countries(rng: np.random.Generator, roles: dict[str, int], households: list[list[int]],
               others: list[int]) -> dict[int, str | None]:
    """About two thirds uk; a household lives in one country; one user without a country."""
    def draw() -> str:
        return "uk" if rng.random() < 2 / 3 else "fr"

    country: dict[int, str | None] = {roles["edge"]: "uk", roles["edge_fr"]: "fr",
                                      roles["idle"]: draw(), roles["deviceless"]: draw()}
    for pair in households:
        home = draw()
        country.update({user: home for user in pair})
    country.update({user: draw() for user in others})
    country[roles["null_country"]] = None
    return country


def _users(rng: np.random.Generator, order: list[int], country: dict[int, str | None],
           households: list[list[int]]) -> pd.DataFrame:
    """The users table (in id order), with study-like user names."""
    names: dict[int, str] = {}
    for pair in households:
        surname = str(rng.choice(FR_LAST if country[pair[0]] == "fr" else UK_LAST))
        names.update({pair[0]: f"{surname}.wife", pair[1]: f"{surname}.husband"})
    for user in order:
        if user in names:
            continue
        first, last = (FR_FIRST, FR_LAST) if country[user] == "fr" else (UK_FIRST, UK_LAST)
        name = str(rng.choice(first)) + str(rng.choice(last))
        names[user] = name if name not in names.values() else f"{name}{user}"
    ids = sorted(names)
    return pd.DataFrame({"id": ids, "username": [names[u] for u in ids],
                         "country": [country[u] for u in ids]})


def _personal_devices(rng: np.random.Generator, made: _Devices, user: int,
                      roles: dict[str, int]) -> list[int]:
    """1-3 devices of the user's own, a phone first (the edge users: exactly two)."""
    if user == roles["deviceless"]:
        return []
    scripted = {roles["edge"]: ("iphone", "macbook"), roles["edge_fr"]: ("android-phone", "linux-pc")}
    if user in scripted:
        platforms = scripted[user]
    else:
        count = 1 if user == roles["idle"] else int(rng.choice((1, 2, 3), p=(0.45, 0.35, 0.2)))
        platforms = [str(rng.choice(PHONES))] + [str(rng.choice(COMPUTERS + PHONES[:1]))
                                                 for _ in range(count - 1)]
    return [made.add(platform, False, [user]) for platform in platforms]


def _household_devices(rng: np.random.Generator, made: _Devices,
                       households: list[list[int]]) -> tuple[list[list[int]], int]:
    """1-2 shared devices per household; the first household also has a device
    linked to both that is not flagged shared."""
    shared = [[made.add(str(rng.choice(COMPUTERS)), True, pair) for _ in range(rng.integers(1, 3))]
              for pair in households]
    co_owned = made.add("macbook", False, households[0])
    return shared, co_owned


def _devices_table(made: _Devices, device_ids: np.ndarray) -> pd.DataFrame:
    listed = np.flatnonzero(made.listed)
    order = listed[np.argsort(device_ids[listed])]
    shared = np.array(made.shared, dtype=object)[order]
    return pd.DataFrame({
        "id": device_ids[order],
        "platform": np.array(made.platform, dtype=object)[order],
        "shared": pd.Series(shared).astype("boolean"),
    })


def _links_table(made: _Devices, device_ids: np.ndarray) -> pd.DataFrame:
    pairs = sorted((user, int(device_ids[d])) for d, owners in enumerate(made.owners) for user in owners)
    return pd.DataFrame(pairs, columns=["user_id", "device_id"])


def _places(rng: np.random.Generator, country: dict[int, str | None]) -> dict[int, tuple[str, str, str]]:
    """Home, work and a vaguer place of each user, in the user's city."""
    places = {}
    for user, where in country.items():
        where = where or "uk"
        city, region = CITIES[where]
        home, work = rng.choice(STREETS[where], 2, replace=False)
        places[user] = (f"{home}, {city}", f"{work}, {city}", region)
    return places


def _actors(rng: np.random.Generator, roles: dict[str, int], country: dict[int, str | None],
            personal: dict[int, list[int]], households: list[list[int]],
            shared: list[list[int]], lone_devices: list[int]) -> list[Actor]:
    """Timelines: users (present for part of the study), households, lone devices."""
    scripted = (roles["edge"], roles["edge_fr"])
    actors = []
    for user in sorted(personal):
        if not personal[user] or user == roles["idle"]:
            continue
        lo, hi = (START, END) if user in scripted else _presence(rng)
        actors.append(Actor(personal[user], country[user] or "uk", lo, hi,
                            float(rng.lognormal(0.0, 0.8)), user))
    for pair, devices in zip(households, shared):
        actors.append(Actor(devices, country[pair[0]] or "uk", START, END,
                            0.5 * float(rng.lognormal(0.0, 0.5))))
    for device in lone_devices:
        actors.append(Actor([device], str(rng.choice(("uk", "fr"))), START, END, 0.2))
    return actors


def _presence(rng: np.random.Generator) -> tuple[int, int]:
    """A user's days in the study: from a week to the whole two months."""
    total = (END - START) // DAY
    days = int(rng.integers(7, total + 1))
    first = int(rng.integers(0, total - days + 1))
    return START + first * DAY, START + (first + days) * DAY


# --- activities and requests -------------------------------------------------

def _activities(rng: np.random.Generator, population: Population, scale: float) -> pd.DataFrame:
    """Bursts: actor, local and UTC start, number of requests, one or two devices."""
    actors = population.actors
    least = np.array([max(MIN_ACTIVITIES_PER_ACTOR, len(a.devices)) for a in actors])
    n = max(least.sum(), round(ACTIVITIES * scale))
    weights = np.array([a.weight * (a.hi - a.lo) for a in actors])
    counts = least + rng.multinomial(n - least.sum(), weights / weights.sum())
    actor = np.repeat(np.arange(len(actors)), counts)
    day = _active_days(rng, actors, counts)
    weekend = _weekend(day)
    hour = np.where(weekend, _hours(rng, True, len(actor)), _hours(rng, False, len(actor)))
    local = day + hour * HOUR + rng.integers(0, HOUR, len(actor))
    countries = np.array([a.country for a in actors], dtype=object)[actor]
    devices = _burst_devices(rng, actors, actor, _ramp(counts))
    return pd.DataFrame({
        "actor": actor, "local": local, "start": _local_to_utc(local, countries),
        "events": np.clip(rng.lognormal(np.log(55), 1.0, len(actor)), 3, 1_500).astype(np.int64),
        "dev1": devices[0], "dev2": devices[1],
    })


def _active_days(rng: np.random.Generator, actors: list[Actor], counts: np.ndarray) -> np.ndarray:
    """The (local) day of each burst: an actor is online on some days of its
    window, about four bursts a day, so that gaps last hours as well as days."""
    n_days = np.maximum(1, np.round(counts / BURSTS_PER_DAY).astype(np.int64))
    lo = np.repeat([a.lo for a in actors], n_days)
    width = (np.repeat([a.hi for a in actors], n_days) - lo) // DAY
    days = lo + (rng.random(len(lo)) * width).astype(np.int64) * DAY
    first = np.repeat(np.cumsum(n_days) - n_days, counts)
    return days[first + (rng.random(counts.sum()) * np.repeat(n_days, counts)).astype(np.int64)]


def _hours(rng: np.random.Generator, weekend: bool, n: int) -> np.ndarray:
    weights = np.asarray(HOUR_WEIGHTS[weekend], dtype=float)
    return rng.choice(24, n, p=weights / weights.sum())


def _burst_devices(rng: np.random.Generator, actors: list[Actor], actor: np.ndarray,
                   rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Device indexes of each burst: one, or (a third of the time) two interleaved
    (-1: none). An actor's first bursts go through all its devices, one each,
    so that every device has requests at any scale."""
    width = max(len(a.devices) for a in actors)
    table = np.array([a.devices + [-1] * (width - len(a.devices)) for a in actors])
    count = np.array([len(a.devices) for a in actors])[actor]
    first = (rng.random(len(actor)) * count).astype(np.int64)
    second = (first + 1 + (rng.random(len(actor)) * np.maximum(count - 1, 1)).astype(np.int64)) % count
    two = (count >= 2) & (rng.random(len(actor)) < 1 / 3)
    sweep = rank < count
    first = np.where(sweep, rank, first)
    two &= ~sweep
    return table[actor, first], np.where(two, table[actor, second], -1)


def _intra_gaps(rng: np.random.Generator, n: int) -> np.ndarray:
    """Microseconds between the requests of a burst, always under 600 s."""
    shares = [share for share, _ in INTRA_GAPS]
    kind = rng.choice(len(INTRA_GAPS), n, p=shares)
    gaps = np.empty(n)
    for k, (_, mean) in enumerate(INTRA_GAPS):
        chosen = kind == k
        gaps[chosen] = (rng.exponential(mean, chosen.sum()) if mean is not None
                        else rng.uniform(60, 599, chosen.sum()))
    return np.minimum(gaps * SECOND, 599 * SECOND).astype(np.int64)


def _random_requests(rng: np.random.Generator, population: Population,
                     activities: pd.DataFrame) -> pd.DataFrame:
    """The requests of every burst: device, time, table, user flag, domain."""
    counts = activities["events"].to_numpy()
    burst = np.repeat(np.arange(len(activities)), counts)
    first = np.cumsum(counts) - counts
    gaps = _intra_gaps(rng, len(burst))
    gaps[first] = 0
    elapsed = np.cumsum(gaps)
    ts = activities["start"].to_numpy()[burst] + elapsed - elapsed[first][burst]
    dev2 = activities["dev2"].to_numpy()[burst]
    device = np.where((dev2 >= 0) & (rng.random(len(burst)) < 0.5), dev2,
                      activities["dev1"].to_numpy()[burst])
    hostview = np.array(population.platforms) == HOSTVIEW
    ts = np.where(hostview[device], ts // 1_000 * 1_000, ts)
    countries = np.array([a.country for a in population.actors], dtype=object)
    opens = np.zeros(len(burst), dtype=bool)
    opens[first] = True
    return _requests(rng, device, ts, countries[activities["actor"].to_numpy()[burst]], burst, opens)


def _requests(rng: np.random.Generator, device: np.ndarray, ts: np.ndarray, countries: np.ndarray,
              burst_of: np.ndarray, opens: np.ndarray) -> pd.DataFrame:
    """Table, flag (1 true, 0 false; -1 null, set later) and domain of requests;
    a burst opens with a DNS lookup."""
    n = len(device)
    dns = opens | (rng.random(n) < 0.45)
    dns_flag = (rng.random(n) < 0.7).astype(np.int8)
    http_flag = (rng.random(n) < 0.37).astype(np.int8)
    local = rng.random(n) < 0.3
    domain = np.array(DOMAINS["any"], dtype=object)[_zipf(rng, len(DOMAINS["any"]), n)]
    for country in ("uk", "fr"):
        chosen = local & (countries == country)
        domain[chosen] = np.array(DOMAINS[country], dtype=object)[
            _zipf(rng, len(DOMAINS[country]), chosen.sum())]
    return pd.DataFrame({"device": device, "ts": ts, "table": np.where(dns, DNS, HTTP),
                         "flag": np.where(dns, dns_flag, http_flag), "domain": domain,
                         "burst": burst_of})


def _episodes(population: Population) -> tuple[pd.DataFrame, list[dict]]:
    """The scripted requests of the edge users, and the locations that touch them."""
    rows, locations = [], []
    actor_of = {a.user: a for a in population.actors if a.user is not None}
    for role, anchor_text, script in EPISODES:
        actor = actor_of[population.roles[role]]
        anchor = _us(anchor_text)
        events = _script(script)
        for offset, slot, table, flag in events:
            rows.append((actor.devices[slot], anchor + _seconds(offset), table,
                         -1 if flag is None else int(flag)))
        end = anchor + _seconds(events[-1][0])
        actor.reserved.append((anchor - RESERVED_MARGIN, end + RESERVED_MARGIN))
        if script is EDGE_EVENTS:
            locations += _touching_locations(actor, anchor)
    device, ts, table, flag = (np.array(column) for column in zip(*rows))
    domains = np.array(DOMAINS["uk"][:3] + DOMAINS["any"][:2], dtype=object)
    return pd.DataFrame({"device": device, "ts": ts, "table": table, "flag": flag.astype(np.int8),
                         "domain": domains[np.arange(len(rows)) % len(domains)],
                         "burst": -1}), locations


def _script(script: tuple) -> list[tuple]:
    """Episode events as (offset, slot, table, flag); bare offsets alternate the
    two devices, every third one an HTTP request of the user."""
    return [item if isinstance(item, tuple) else (item, i % 2, HTTP if i % 3 == 2 else DNS, True)
            for i, item in enumerate(script)]


def _touching_locations(actor: Actor, anchor: int) -> list[dict]:
    """A stay that ends exactly when the 601-s session starts (closed intervals
    overlap), and one that starts 1 µs after the last session ends (no overlap)."""
    phone = actor.devices[0]
    d_start, e_end = anchor + _seconds(1831.5), anchor + _seconds(2450)
    return [
        {"device": phone, "entertime": anchor - 50 * MINUTE, "exittime": d_start,
         "name": "Long Row West, Nottingham"},
        {"device": phone, "entertime": e_end + 1, "exittime": e_end + 2 * HOUR,
         "name": "Triumph Road, Nottingham"},
    ]


def _clear_reserved(activities: pd.DataFrame, requests: pd.DataFrame,
                    actors: list[Actor]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop the random bursts of a user that come near one of the user's episodes."""
    ends = requests.groupby("burst")["ts"].max().reindex(range(len(activities))).to_numpy()
    starts = activities["start"].to_numpy()
    keep = np.ones(len(activities), dtype=bool)
    for index, actor in enumerate(actors):
        mine = activities["actor"].to_numpy() == index
        for lo, hi in actor.reserved:
            keep &= ~(mine & (starts < hi) & (ends > lo))
    kept = np.flatnonzero(keep)
    return activities.iloc[kept], requests[np.isin(requests["burst"].to_numpy(), kept)]


# --- tables --------------------------------------------------------------------

def _tables(rng: np.random.Generator, population: Population, scale: float) -> dict[str, pd.DataFrame]:
    """Every table, rows in import order (device, then time), ids from 1."""
    activities = _activities(rng, population, scale)
    requests = _random_requests(rng, population, activities)
    scripted, touching = _episodes(population)
    activities, requests = _clear_reserved(activities, requests, population.actors)
    requests = pd.concat([requests, scripted], ignore_index=True)
    requests = requests[(requests["ts"].to_numpy() >= START) & (requests["ts"].to_numpy() < END)]
    ids = population.device_ids
    traffic = _traffic(rng, population, requests, scale)
    return {
        "users": population.users,
        "devices": population.devices,
        "user_devices": population.links,
        "devicetraffic": traffic,
        "deviceapptraffic": _app_traffic(rng, traffic),
        "httpreqs2": _request_table(rng, requests, ids, HTTP, "req_url_host", "user_url"),
        "dnsreqs": _request_table(rng, requests, ids, DNS, "query", "user_req"),
        "locations": _locations(rng, population, activities, requests, touching),
    }


def _numbered(frame: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Sort into import order and number the rows from 1."""
    frame = frame.sort_values(order, kind="stable").reset_index(drop=True)
    frame.insert(0, "id", np.arange(1, len(frame) + 1))
    return frame


def _request_table(rng: np.random.Generator, requests: pd.DataFrame, device_ids: np.ndarray,
                   table: str, domain: str, flag: str) -> pd.DataFrame:
    """DNS or HTTP rows. Some domains are null, and some user_url flags (never
    those of the scripted episodes, whose gaps must stay exact)."""
    rows = requests[requests["table"].to_numpy() == table]
    random = rows["burst"].to_numpy() >= 0
    flags = rows["flag"].to_numpy()
    domains = rows["domain"].to_numpy(dtype=object).copy()
    domains[_some(rng, len(rows), 0.01 if table == DNS else 0.04, random)] = None
    null_flags = _some(rng, len(rows), 0.05, random) if table == HTTP else np.zeros(len(rows), bool)
    frame = pd.DataFrame({"devid": device_ids[rows["device"].to_numpy()], "ts": rows["ts"].to_numpy(),
                          domain: domains, flag: _nullable(flags == 1, null_flags, "boolean")})
    return _numbered(frame, ["devid", "ts"])


def _traffic(rng: np.random.Generator, population: Population, requests: pd.DataFrame,
             scale: float) -> pd.DataFrame:
    """One row per device and second with traffic: the seconds around each
    request (an HTTP page loads for a few seconds) and short background runs."""
    seconds = requests["ts"].to_numpy() // SECOND
    lengths = np.where(requests["table"].to_numpy() == DNS, 1, rng.geometric(0.4, len(seconds)))
    devices = [np.repeat(requests["device"].to_numpy(), lengths)]
    starts = [np.repeat(seconds, lengths) + _ramp(lengths)]
    run_device, run_start, run_length = _background_runs(rng, population, scale)
    devices.append(np.repeat(run_device, run_length))
    starts.append(np.repeat(run_start, run_length) + _ramp(run_length))
    device_ids = population.device_ids[np.concatenate(devices)]
    seconds = np.concatenate(starts)
    inside = (seconds >= START // SECOND) & (seconds < END // SECOND)
    key = np.unique(device_ids[inside].astype(np.int64) * 10**11 + seconds[inside])
    n = len(key)
    packets_in = 1 + rng.lognormal(np.log(12), 1.3, n).astype(np.int64)
    packets_out = np.round(packets_in * rng.uniform(0.2, 1.2, n)).astype(np.int64)
    frame = pd.DataFrame({"devid": key // 10**11, "ts": key % 10**11 * SECOND,
                          **_byte_columns(rng, packets_in, packets_out)})
    return _numbered(frame, ["devid", "ts"])


def _background_runs(rng: np.random.Generator, population: Population,
                     scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(device index, first second, length) of traffic runs outside the bursts."""
    owned = [(device, a.lo, a.hi) for a in population.actors for device in a.devices]
    n = max(2 * len(owned), round(BACKGROUND_RUNS * scale))
    pick = np.concatenate([np.arange(len(owned)), rng.integers(0, len(owned), n - len(owned))])
    device, lo, hi = (np.array(column)[pick] for column in zip(*owned))
    start = (lo + (rng.random(n) * (hi - lo)).astype(np.int64)) // SECOND
    return device, start, rng.integers(1, 9, n)


def _byte_columns(rng: np.random.Generator, packets_in: np.ndarray,
                  packets_out: np.ndarray) -> dict[str, pd.Series]:
    """Packets and bytes in both directions, each null in a few rows."""
    n = len(packets_in)
    values = {"packets_in": packets_in, "bytes_in": packets_in * rng.integers(60, 1_500, n),
              "packets_out": packets_out, "bytes_out": packets_out * rng.integers(54, 400, n)}
    return {name: _nullable(column, _some(rng, n, 0.0005), "Int64") for name, column in values.items()}


def _app_traffic(rng: np.random.Generator, traffic: pd.DataFrame) -> pd.DataFrame:
    """Per-application rows for some seconds of traffic, now and then two services at once."""
    rows = np.flatnonzero(rng.random(len(traffic)) < 0.15)
    rows = np.sort(np.concatenate([rows, rows[rng.random(len(rows)) < 0.15]]))
    n = len(rows)
    shares = np.array([share for *_, share in SERVICES])
    service = rng.choice(len(SERVICES), n, p=shares / shares.sum())
    port = np.array([p for p, *_ in SERVICES])[service]
    names = np.array([s for _, s, _ in SERVICES], dtype=object)[service]
    unnamed = _some(rng, n, UNNAMED_SERVICE)
    names[unnamed] = None
    port = np.where(unnamed, rng.integers(1_024, 65_536, n), port)
    packets_in = 1 + rng.lognormal(np.log(6), 1.2, n).astype(np.int64)
    packets_out = np.round(packets_in * rng.uniform(0.2, 1.0, n)).astype(np.int64)
    frame = pd.DataFrame({"devid": traffic["devid"].to_numpy()[rows],
                          "ts": traffic["ts"].to_numpy()[rows], "dstport": port, "service": names,
                          "packets_in": packets_in, "packets_out": packets_out})
    frame = frame.drop_duplicates(["devid", "ts", "dstport"]).reset_index(drop=True)
    frame = frame.assign(**_byte_columns(rng, frame["packets_in"].to_numpy(),
                                         frame["packets_out"].to_numpy()))
    return _numbered(frame[list(TABLES["deviceapptraffic"])[1:]], ["devid", "ts", "dstport"])


def _locations(rng: np.random.Generator, population: Population, activities: pd.DataFrame,
               requests: pd.DataFrame, touching: list[dict]) -> pd.DataFrame:
    """Stays around half of the users' bursts: the phone's (whole seconds, from
    'moves') or, when a hostview PC is used, the PC's (milliseconds, often
    still open). Home in the evening, work on weekday daytime."""
    actors = population.actors
    ends = requests.groupby("burst")["ts"].max()
    users = np.array([-1 if a.user is None else a.user for a in actors])[activities["actor"].to_numpy()]
    chosen = _some(rng, len(activities), 0.5, users >= 0, least=6)
    bursts = activities[chosen]
    n = len(bursts)
    start = bursts["start"].to_numpy()
    end = ends.reindex(bursts.index).fillna(0).to_numpy(np.int64)
    end = np.maximum(end, start)
    phone = np.array([a.devices[0] for a in actors])[bursts["actor"].to_numpy()]
    pc = np.array(population.platforms)[bursts["dev1"].to_numpy()] == HOSTVIEW
    device = np.where(pc, bursts["dev1"].to_numpy(), phone)
    enter = start - rng.integers(5 * MINUTE, 90 * MINUTE, n)
    leave = end + rng.integers(5 * MINUTE, 90 * MINUTE, n)
    enter = np.where(pc, enter // 1_000 * 1_000, enter // SECOND * SECOND)
    leave = np.where(pc, leave // 1_000 * 1_000, leave // SECOND * SECOND)
    open_ended = (pc & (rng.random(n) < 0.6)) | _some(rng, n, 0.0)
    stays = pd.DataFrame({"device": device, "entertime": enter, "exittime": leave,
                          "open": open_ended,
                          "name": _place_names(rng, population, users[chosen], bursts["local"].to_numpy())})
    stays = pd.concat([_one_place_at_a_time(stays), pd.DataFrame(touching).assign(open=False)],
                      ignore_index=True)
    frame = pd.DataFrame({
        "devid": population.device_ids[stays["device"].to_numpy()],
        "entertime": stays["entertime"].to_numpy(np.int64),
        "exittime": _nullable(stays["exittime"].to_numpy(np.int64), stays["open"].to_numpy(bool), "Int64"),
        "name": stays["name"].to_numpy(dtype=object),
    })
    return _numbered(frame, ["devid", "entertime"])


def _one_place_at_a_time(stays: pd.DataFrame) -> pd.DataFrame:
    """A closed stay of a device starts when its previous closed stay ends (open
    ones, from hostview, may overlap anything); stays left empty are dropped."""
    stays = stays.sort_values(["device", "entertime"], kind="stable")
    closed = stays[~stays["open"]]
    before = closed.groupby("device")["exittime"].cummax().groupby(closed["device"]).shift()
    enter = np.maximum(closed["entertime"].to_numpy(), before.fillna(0).to_numpy(np.int64))
    closed = closed.assign(entertime=enter)
    return pd.concat([closed[closed["entertime"] < closed["exittime"]], stays[stays["open"]]])


def _place_names(rng: np.random.Generator, population: Population, users: np.ndarray,
                 local: np.ndarray) -> np.ndarray:
    hour = local % DAY // HOUR
    work_time = ~_weekend(local - local % DAY) & (hour >= 8) & (hour < 18)
    home_time = (hour >= 18) | (hour < 8)
    kind = np.where(work_time & (rng.random(len(users)) < 0.8), 1,
                    np.where(home_time & (rng.random(len(users)) < 0.9), 0, 2))
    table = np.array([population.places[int(u)] for u in users], dtype=object).reshape(-1, 3)
    names = table[np.arange(len(users)), kind]
    names[_some(rng, len(users), 0.03)] = None
    return names


# --- deliberate duplicates -----------------------------------------------------

def _duplicate_rows(rng: np.random.Generator, tables: dict[str, pd.DataFrame], name: str) -> list[int]:
    """Append exact copies of a few rows (a re-import): their ids appear twice."""
    frame = tables[name]
    rows = np.sort(rng.choice(len(frame), _few(len(frame), 0.0005), replace=False))
    tables[name] = pd.concat([frame, frame.iloc[rows]], ignore_index=True)
    return [int(i) for i in frame["id"].to_numpy()[rows]]


def _duplicate_links(rng: np.random.Generator, tables: dict[str, pd.DataFrame]) -> list[list[int]]:
    links = tables["user_devices"]
    rows = np.sort(rng.choice(len(links), 2, replace=False))
    tables["user_devices"] = pd.concat([links, links.iloc[rows]], ignore_index=True)
    return links.iloc[rows].to_numpy().tolist()


# --- bad rows --------------------------------------------------------------------

@dataclass
class BadRow:
    """A dead letter to be: a copy of a valid row with a new id, broken one way."""

    table: str
    id: int
    kind: str
    source: int  # row copied
    slot: int = 0  # position among the table's final rows
    text: str = ""  # the unparsable time
    reason: str = ""


def _bad_row_plan(rng: np.random.Generator, tables: dict[str, pd.DataFrame], count: int,
                  kinds: tuple[str, ...]) -> list[BadRow]:
    """``count`` bad rows spread over the event tables, at random places."""
    names = [list(EVENT_TIME)[i] for i in rng.permutation(len(EVENT_TIME))]
    plan = []
    for name in sorted(EVENT_TIME):
        k = sum(1 for i in range(count) if names[i % len(names)] == name)
        frame = tables[name]
        first_id = int(frame["id"].max()) + 1
        slots = np.sort(rng.choice(len(frame) + k, k, replace=False))
        for j, slot in enumerate(slots):
            kind = kinds[rng.integers(len(kinds))]
            bad = BadRow(name, first_id + j, kind, int(rng.integers(len(frame))), int(slot),
                         BAD_TIMES[rng.integers(len(BAD_TIMES))])
            time = EVENT_TIME[name]
            bad.reason = {"null time": f"missing {time}", "null devid": "missing devid",
                          "unparsable time": f"unparsable {time}: {bad.text}",
                          "wrong width": f"wrong column count {len(TABLES[name]) + 2} "
                                         f"(want {len(TABLES[name]) + 1})"}[kind]
            plan.append(bad)
    return plan


def _insert_bad_rows(tables: dict[str, pd.DataFrame], plan: list[BadRow]) -> None:
    """Put the bad rows at their slots, in place: copies under a new id, their
    null cells set (an unparsable time or an extra cell is spelled when a CSV
    file is written)."""
    for name in EVENT_TIME:
        mine = [bad for bad in plan if bad.table == name]
        if not mine:
            continue
        frame = tables[name]
        typed = {"devid": "Int64", EVENT_TIME[name]: "Int64"}
        frame = frame.astype(typed)
        copies = frame.iloc[[bad.source for bad in mine]].reset_index(drop=True)
        copies["id"] = [bad.id for bad in mine]
        for i, bad in enumerate(mine):
            if bad.kind in ("null time", "null devid"):
                copies.loc[i, EVENT_TIME[name] if bad.kind == "null time" else "devid"] = pd.NA
        total = len(frame) + len(mine)
        is_bad = np.zeros(total, dtype=bool)
        is_bad[[bad.slot for bad in mine]] = True
        order = np.empty(total, dtype=np.int64)
        order[~is_bad] = np.arange(len(frame))
        order[is_bad] = len(frame) + np.arange(len(mine))
        both = pd.concat([frame, copies], ignore_index=True)
        tables[name] = both.iloc[order].reset_index(drop=True)


# --- spelling cells ----------------------------------------------------------------

def _spell_times(values: np.ndarray) -> np.ndarray:
    """``2015-11-10 10:12:38.772903``; whole seconds without the fraction."""
    full = np.datetime_as_string(values.astype("datetime64[us]"), unit="us")
    chars = full.view("U1").reshape(len(full), -1)
    chars[:, 10] = " "
    return np.where(values % SECOND == 0, full.astype("U19"), full)


def _cells(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Every cell as CSV text: booleans ``True``/``False``, null as an empty cell."""
    cells = {}
    for column, kind in TABLES[name].items():
        series = frame[column]
        null = series.isna().to_numpy()
        if kind == TEXT:
            cells[column] = np.where(null, "", series.to_numpy(dtype=object, na_value=""))
            continue
        if kind == BOOL:
            spelled = np.where(series.to_numpy(dtype=bool, na_value=False), "True", "False")
        else:
            values = series.to_numpy(dtype=np.int64, na_value=0)
            spelled = _spell_times(values) if kind == TS else values.astype(str)
        cells[column] = np.where(null, "", spelled)
    return pd.DataFrame(cells)


def _python_rows(frame: pd.DataFrame, name: str) -> list[tuple]:
    """Rows as Python values for a DB-API driver: int, str, bool, None; times as text."""
    columns = []
    for column, kind in TABLES[name].items():
        series = frame[column]
        null = series.isna().to_numpy()
        if kind == TS:
            values = _spell_times(series.to_numpy(dtype=np.int64, na_value=0)).astype(object)
        elif kind == BOOL:
            values = series.to_numpy(dtype=bool, na_value=False).astype(object)
        elif kind == TEXT:
            values = series.to_numpy(dtype=object, na_value=None)
        else:
            values = series.to_numpy(dtype=np.int64, na_value=0).astype(object)
        values[null] = None
        columns.append(values.tolist())
    return list(zip(*columns))


# --- writing ---------------------------------------------------------------------

def _format_of(out: str) -> str:
    text = str(out)
    if "://" not in text:
        return "csv"
    backend = text.split("://", 1)[0].split("+", 1)[0]
    if backend in ("postgresql", "postgres"):
        return "postgresql"
    if backend == "sqlite":
        return "sqlite"
    raise ValueError(f"unsupported database URL: {text}")


def _write_folder(folder: Path, tables: dict[str, pd.DataFrame], plan: list[BadRow]) -> str:
    """One ``{table}.csv`` per table, as ``DataFrame.to_csv`` writes it (index
    column first); the bad rows that only text can hold are spelled here."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        cells = _cells(frame, name)
        mine = [bad for bad in plan if bad.table == name]
        for bad in mine:
            if bad.kind == "unparsable time":
                cells.loc[bad.slot, EVENT_TIME[name]] = bad.text
        lines = cells.to_csv(lineterminator="\n").split("\n")
        for bad in mine:
            if bad.kind == "wrong width":
                lines[bad.slot + 1] = _one_cell_more(lines[bad.slot + 1])
        (folder / f"{name}.csv").write_text("\n".join(lines), encoding="utf-8")
    return str(folder)


def _one_cell_more(line: str) -> str:
    cells = next(csv.reader([line]))
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells + [cells[-1]])
    return out.getvalue()


def _ddl(name: str, target: str, types: dict[str, str]) -> str:
    columns = [f"{column} {types[kind]}" + (" PRIMARY KEY" if column == "id" and name in PRIMARY_KEYS
                                            else "")
               for column, kind in TABLES[name].items()]
    return f"CREATE TABLE {target} ({', '.join(columns)})"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _write_database(url: str, fmt: str, tables: dict[str, pd.DataFrame], schema: str | None) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if fmt == "sqlite":
        _write_sqlite(parsed.database, tables)
    else:
        _write_postgresql(parsed, tables, schema)
    return parsed.render_as_string(hide_password=True)


def _write_postgresql(url, tables: dict[str, pd.DataFrame], schema: str | None) -> None:
    """Drop, create, COPY each table from an in-memory CSV (psycopg2), one transaction."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(url.set(drivername="postgresql+psycopg2"), poolclass=NullPool)
    connection = engine.raw_connection()
    try:
        with connection.cursor() as cursor:
            prefix = ""
            if schema:
                cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(schema)}")
                prefix = _quote(schema) + "."
            for name, frame in tables.items():
                target = prefix + _quote(name)
                cursor.execute(f"DROP TABLE IF EXISTS {target}")
                cursor.execute(_ddl(name, target, SQL_TYPES["postgresql"]))
                data = io.StringIO(_cells(frame, name).to_csv(index=False, header=False,
                                                              lineterminator="\n"))
                columns = ", ".join(TABLES[name])
                cursor.copy_expert(f"COPY {target} ({columns}) FROM STDIN WITH (FORMAT csv)", data)
        connection.commit()
    finally:
        connection.close()
        engine.dispose()


def _write_sqlite(path: str, tables: dict[str, pd.DataFrame]) -> None:
    """Drop, create and fill every table in one transaction."""
    connection = sqlite3.connect(path)
    try:
        with connection:
            for name, frame in tables.items():
                connection.execute(f"DROP TABLE IF EXISTS {_quote(name)}")
                connection.execute(_ddl(name, _quote(name), SQL_TYPES["sqlite"]))
                marks = ", ".join("?" * len(TABLES[name]))
                connection.executemany(f"INSERT INTO {_quote(name)} VALUES ({marks})",
                                       _python_rows(frame, name))
    finally:
        connection.close()
