"""What ucn's report plots (datasets/ucn/report.py), from user snapshots and session lists: pure (numpy, no
Redis, no matplotlib). Bytes stay integers here; the figures turn them into GB."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import numpy as np

from .logic import HIST_EDGES_US, time_zone

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WEEKDAYS, WEEKEND_DAYS = 5, 2
HIST_EDGES_S = np.array(HIST_EDGES_US[1:]) / 1e6  # upper edges of the SPEC's bins but the last (open)


def week_grid(slots) -> np.ndarray:
    """84 two-hour slots of the local week (slot 0 = Monday 00:00-02:00) as 7 days x 12 slots."""
    return np.asarray(slots).reshape(7, 12)


def per_day_of_kind(weekday, weekend) -> np.ndarray:
    """Hour totals of weekdays and of weekends as a 2 x 24 grid per day of the kind (÷ 5, ÷ 2), so that
    the two rows compare: a weekday total sums five days of every week, a weekend total two."""
    return np.vstack([np.asarray(weekday) / WEEKDAYS, np.asarray(weekend) / WEEKEND_DAYS])


def bin_labels() -> list[str]:
    """The SPEC's log bins (edges 0, 1 ms, 10 ms, ... 7 d; the last open) as short labels."""
    names = ["0", "1 ms", "10 ms", "0.1 s", "1 s", "10 s", "1 min", "10 min", "1 h", "1 d", "7 d"]
    return [f"{low}–{high}" for low, high in zip(names, names[1:])] + [f"≥ {names[-1]}"]


def hist_cdf(counts) -> tuple[np.ndarray, np.ndarray]:
    """(upper bin edges in seconds, fraction below each) of a histogram on the SPEC's bins; the open last
    bin has no upper edge and is left out."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    fractions = np.cumsum(counts)[:-1] / total if total else np.zeros(len(counts) - 1)
    return HIST_EDGES_S, fractions


def local_date(start: str, country) -> date:
    """The local date a session started on (its start is naive UTC, SPEC §2)."""
    return datetime.fromisoformat(start).replace(tzinfo=timezone.utc).astimezone(time_zone(country)).date()


@dataclass
class UcnData:
    """Sums over the ucn users fed to it (all users, or one for a user's report)."""

    users: int = 0
    bytes_hours: np.ndarray = field(default_factory=lambda: np.zeros((2, 24), dtype=np.int64))
    events_hours: np.ndarray = field(default_factory=lambda: np.zeros((2, 24), dtype=np.int64))
    bytes_week: np.ndarray = field(default_factory=lambda: np.zeros(84, dtype=np.int64))
    inter_event: np.ndarray = field(default_factory=lambda: np.zeros(11, dtype=np.int64))
    duration_hist: np.ndarray = field(default_factory=lambda: np.zeros(11, dtype=np.int64))
    sessions_count: int = 0  # every closed session (the counts in the snapshots)
    durations: list[float] = field(default_factory=list)  # seconds, of the sessions in the lists
    sessions_by_day: Counter = field(default_factory=Counter)  # local date -> sessions in the lists
    users_cut: int = 0  # users with more sessions than their list keeps
    countries: Counter = field(default_factory=Counter)

    def add_user(self, features: dict, sessions: list[dict]) -> None:
        """One user's snapshot and closed-session list (newest first, capped: SPEC §3)."""
        self.users += 1
        self.countries[features.get("country") or "unknown"] += 1
        self.bytes_hours += [_vector(features, "bytes_by_hour_weekday", 24),
                             _vector(features, "bytes_by_hour_weekend", 24)]
        self.events_hours += [_vector(features, "user_events_by_hour_weekday", 24),
                              _vector(features, "user_events_by_hour_weekend", 24)]
        self.bytes_week += _vector(features, "bytes_by_week_slot", 84)
        self.inter_event += _vector(features, "inter_event_hist", 11)
        self.duration_hist += _vector(features, "session_duration_hist", 11)
        count = features.get("sessions_count") or 0
        self.sessions_count += count
        self.users_cut += count > len(sessions)
        for session in sessions:
            self.durations.append(session["duration_s"])
            self.sessions_by_day[local_date(session["start"], features.get("country"))] += 1

    @property
    def sessions_listed(self) -> int:
        return len(self.durations)

    def days(self) -> tuple[list[date], np.ndarray]:
        """Every local date from the first session to the last (days without one count 0)."""
        if not self.sessions_by_day:
            return [], np.zeros(0, dtype=np.int64)
        first, last = min(self.sessions_by_day), max(self.sessions_by_day)
        dates = [date.fromordinal(n) for n in range(first.toordinal(), last.toordinal() + 1)]
        return dates, np.array([self.sessions_by_day.get(d, 0) for d in dates], dtype=np.int64)


def _vector(features: dict, name: str, length: int) -> np.ndarray:
    """A fixed-length feature; zeros where the snapshot has none (null) or is short."""
    out = np.zeros(length, dtype=np.int64)
    values = features.get(name) or []
    out[:len(values)] = values[:length]
    return out
