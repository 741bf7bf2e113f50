"""What the report's figures plot, from feature snapshots: pure (numpy, no Redis, no matplotlib).

Each dataset has an accumulator fed one snapshot (and, for ucn, one user's session list) at a time, so
the report reads Redis page by page. It keeps sums, and per entity only the few numbers a distribution
needs. Bytes stay integers here; the figures turn them into GB.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import numpy as np

from datasets.ucn.logic import HIST_EDGES_US, time_zone

GB = 1e9
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


def ecdf(values) -> tuple[np.ndarray, np.ndarray]:
    """(sorted values, fraction of values ≤ each): the empirical distribution function."""
    x = np.sort(np.asarray(values, dtype=float))
    return x, np.arange(1, len(x) + 1) / max(len(x), 1)


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


TIERS = ("free", "paid")


@dataclass
class StorjData:
    """Sums and per-user figures over the storj users fed to it."""

    users: Counter = field(default_factory=Counter)  # tier -> users
    upload: dict = field(default_factory=lambda: {tier: Counter() for tier in TIERS})  # tier -> month -> bytes
    download: dict = field(default_factory=lambda: {tier: Counter() for tier in TIERS})
    free_over_bandwidth: Counter = field(default_factory=Counter)  # month -> free users over a project's limit
    free_over_storage: int = 0
    storage: dict = field(default_factory=lambda: {tier: [] for tier in TIERS})  # tier -> bytes per user
    operators: list = field(default_factory=list)  # (earned, bytes used, tier) of users who run nodes

    def add_user(self, features: dict) -> None:
        tier = features.get("tier") if features.get("tier") in TIERS else "free"
        self.users[tier] += 1
        uploads = features.get("upload_bytes_by_month") or {}
        downloads = features.get("download_bytes_by_month") or {}
        self.upload[tier].update(uploads)
        self.download[tier].update(downloads)
        storage = features.get("storage_bytes") or 0
        self.storage[tier].append(storage)
        if tier == "free":
            self.free_over_bandwidth.update(features.get("over_bandwidth_months") or [])
            self.free_over_storage += bool(features.get("over_storage_limit"))
        if features.get("operator_nodes"):
            used = sum(uploads.values()) + sum(downloads.values()) + storage
            self.operators.append((features.get("operator_paid_total") or 0.0, used, tier))

    def months(self) -> list[str]:
        """Every month with bandwidth or a free user over a limit, in order."""
        seen = set(self.free_over_bandwidth)
        for by_tier in (self.upload, self.download):
            for counter in by_tier.values():
                seen.update(counter)
        return sorted(seen)

    def monthly(self, direction: str) -> dict[str, np.ndarray]:
        """tier -> bytes of each of `months()` ("upload" or "download")."""
        months = self.months()
        by_tier = self.upload if direction == "upload" else self.download
        return {tier: np.array([by_tier[tier].get(m, 0) for m in months], dtype=np.int64) for tier in TIERS}
