"""The columns of ucn's exports (stream.feature_table): every feature of a user's snapshot and of a closed
session with its type (SPEC §4), and what the positions of its fixed-length vectors mean."""
from __future__ import annotations

from contract.timeutil import US_PER_S
from stream.feature_table import FLOAT, INT, META, SESSIONS, STR, TIMESTAMP, list_of, map_of, record

from .logic import HIST_EDGES_US

HOURS = tuple(f"{hour:02d}" for hour in range(24))  # local hour h: h:00 to h+1:00
WEEK_SLOTS = tuple(f"{day}-{hour:02d}" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
                   for hour in range(0, 24, 2))  # 2-hour slots of the local week, Monday 00:00 first
# The SPEC's log bins of gaps and durations by their lower edge (the last bin is open): 0s, 0.001s, ...
HIST_BINS = tuple(f"{edge / US_PER_S:g}s" for edge in HIST_EDGES_US)

SESSION = record(
    ("user", INT), ("start", TIMESTAMP), ("end", TIMESTAMP), ("duration_s", FLOAT), ("events", INT),
    ("dns_events", INT), ("http_events", INT), ("devices", list_of(INT)), ("platforms", list_of(STR)),
    ("top_domains", list_of(record(("domain", STR), ("count", INT)))), ("locations", list_of(STR)))
USER_META = record(*META.fields, ("late_events", INT))

ID_KIND = INT  # ids are the study's integers
COLUMNS = {
    "user": (
        ("username", STR), ("country", STR), ("devices_personal", INT), ("devices_shared", INT),
        ("traffic_seconds", INT), ("first_traffic_at", TIMESTAMP), ("last_traffic_at", TIMESTAMP),
        ("bytes_in", INT), ("bytes_out", INT), ("packets_in", INT), ("packets_out", INT), ("dns_requests", INT),
        ("http_requests", INT), ("bytes_by_hour_weekday", list_of(INT, HOURS)),
        ("bytes_by_hour_weekend", list_of(INT, HOURS)), ("bytes_by_week_slot", list_of(INT, WEEK_SLOTS)),
        ("user_events_by_hour_weekday", list_of(INT, HOURS)), ("user_events_by_hour_weekend", list_of(INT, HOURS)),
        ("bytes_by_service", map_of(INT)), ("inter_event_hist", list_of(INT, HIST_BINS)), ("sessions_count", INT),
        ("sessions_seconds", FLOAT), ("session_duration_hist", list_of(INT, HIST_BINS)),
        ("last_session", SESSION),
        ("open_session", record(("start", TIMESTAMP), ("last_event_at", TIMESTAMP), ("events", INT))),
        ("_meta", USER_META)),
    SESSIONS: SESSION.fields,
}
