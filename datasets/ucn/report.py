"""ucn's report (`fsp report ucn`, GET /v1/ucn/report): what the analysis drew, from the user snapshots and
their session lists: traffic and activity by local hour and week slot, inter-event times, session
durations and sessions per day, for all users or one. What it plots is report_data.py (pure)."""
from __future__ import annotations

import numpy as np

from stream.client import scan_ids, session_pages, snapshot_pages
from stream.report import Chart, NoData, Report, figure, png
from stream.report_data import GB, ecdf

from .features import HOURS
from .report_data import DAYS, HIST_EDGES_S, UcnData, bin_labels, hist_cdf, per_day_of_kind, week_grid

LOCAL_TIME = "local time (Europe/London; Europe/Paris for users in France)"


def build(r, prefix: str, user: str | None) -> Report:
    ids = [user] if user is not None else scan_ids(r, "ucn", "user", prefix)
    data = UcnData()
    named = None
    for page in snapshot_pages(r, "ucn", "user", ids, prefix):
        sessions: dict[str, list] = {}
        for chunk in session_pages(r, "ucn", [user_id for user_id, _ in page], prefix):
            for user_id, record in chunk:
                sessions.setdefault(user_id, []).append(record)
        for user_id, features in page:
            data.add_user(features, sessions.get(user_id, []))
            named = features
    if not data.users:
        raise NoData(f"no ucn user {user!r} in Redis" if user is not None else
                     f"no ucn user snapshots in Redis (FEATURE_PREFIX={prefix!r}): replay a ucn source first")
    who = (f"user {user} ({named.get('username') or 'no name'}, {named.get('country') or 'no country'})"
           if user is not None else f"all {data.users:,} users")
    bytes_grid = per_day_of_kind(*data.bytes_hours) / GB
    events_grid = per_day_of_kind(*data.events_hours)
    dates, per_day = data.days()
    charts = [
        Chart("bytes-by-hour.png", "Traffic by local hour, weekdays and weekends",
              f"bytes in + out of devicetraffic, {who}, in GB per day of the kind (the weekday total ÷ 5, the "
              f"weekend total ÷ 2), summed over every week; {LOCAL_TIME}.",
              _hour_heatmap(bytes_grid, "GB per day", "{:.2f}")),
        Chart("events-by-hour.png", "Activity events by local hour, weekdays and weekends",
              f"DNS requests and user HTTP requests, {who}, per day of the kind (weekday total ÷ 5, weekend "
              f"total ÷ 2), summed over every week; {LOCAL_TIME}.",
              _hour_heatmap(events_grid, "events per day", "{:.0f}")),
        Chart("bytes-by-week-slot.png", "Traffic by 2-hour slot of the local week",
              f"bytes in + out of devicetraffic, {who}, GB per slot summed over every week; {LOCAL_TIME}.",
              _week_heatmap(week_grid(data.bytes_week) / GB)),
        Chart("inter-event-times.png", "Time between consecutive activity events",
              f"gaps between a user's consecutive activity events over the whole history, {who}, on the "
              f"SPEC's log bins (a gap equal to an edge counts in the upper bin); "
              f"{int(data.inter_event.sum()):,} gaps.", _bins_bar(data.inter_event, "gaps")),
        Chart("session-durations.png", "Session duration (CDF)",
              f"activity sessions (gap 600 s, ≥ 3 events, ≥ 1 s), {who}: the line is every session in the "
              f"session lists ({data.sessions_listed:,}, exact durations), the dots every closed session "
              f"({data.sessions_count:,}) at the SPEC's bin edges, from the snapshots' histograms.",
              _duration_cdf(data)),
        Chart("sessions-per-day.png", "Sessions per day",
              f"sessions in the session lists by the local date they started, {who}; "
              f"{data.sessions_listed:,} of {data.sessions_count:,} closed sessions.",
              _per_day_bars(dates, per_day)),
    ]
    cannot = [
        "Activity events by 2-hour week slot: the snapshots count activity events by local hour for weekdays "
        "and weekends only (user_events_by_hour_weekday/weekend); only traffic bytes have week slots "
        "(bytes_by_week_slot).",
        f"Sessions per day and exact session durations come from the session lists, which keep the newest "
        f"sessions of each user only (SESSIONS_CAP, 100 by default): {data.users_cut:,} of {data.users:,} users "
        f"have more sessions than their list holds, so older days are missing for them. The duration dots "
        f"cover every session, but only at the bins' edges.",
        "Hours are each user's own local time; the snapshots do not say how many weeks each user was "
        "observed, so the hour and slot figures are totals over the weeks, not averages per week.",
    ]
    facts = [("users", f"{data.users:,}"), ("closed sessions", f"{data.sessions_count:,}"),
             ("sessions in the lists", f"{data.sessions_listed:,}"),
             ("countries", ", ".join(f"{c}: {n}" for c, n in sorted(data.countries.items())))]
    return Report("ucn", f"ucn network activity, {who}", charts, cannot, facts)


def _hour_heatmap(grid: np.ndarray, unit: str, fmt: str) -> bytes:
    fig, ax = figure(9.5, 2.6)
    image = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_yticks([0, 1], ["Mon–Fri", "Sat–Sun"])
    ax.set_xticks(range(24), HOURS)
    ax.set_xlabel("hour of the day, local time")
    fig.colorbar(image, ax=ax, label=unit, pad=0.01)
    return png(fig)


def _week_heatmap(grid: np.ndarray) -> bytes:
    fig, ax = figure(9.5, 3.6)
    image = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_yticks(range(7), DAYS)
    ax.set_xticks(range(12), [f"{h:02d}–{h + 2:02d}" for h in range(0, 24, 2)])
    ax.set_xlabel("2-hour slot, local time")
    fig.colorbar(image, ax=ax, label="GB", pad=0.01)
    return png(fig)


def _bins_bar(counts: np.ndarray, what: str) -> bytes:
    fig, ax = figure(9.5, 3.2)
    ax.bar(range(len(counts)), counts, color="#4C72B0")
    ax.set_xticks(range(len(counts)), bin_labels(), rotation=30, ha="right")
    ax.set_xlabel("time between consecutive activity events (log bins)")
    ax.set_ylabel(what)
    return png(fig)


def _duration_cdf(data: UcnData) -> bytes:
    fig, ax = figure(9.5, 3.4)
    if data.durations:
        x, y = ecdf(data.durations)
        ax.step(x, y, where="post", label=f"sessions in the lists ({len(x):,})")
    edges, fractions = hist_cdf(data.duration_hist)
    if data.sessions_count:
        ax.plot(edges, fractions, "o", color="#DD8452", label=f"every closed session ({data.sessions_count:,})")
    ax.set_xscale("log")
    ticks = HIST_EDGES_S[3:]  # 1 s (the shortest kept session) to 7 d: the SPEC's bin edges
    ax.set_xlim(ticks[0], ticks[-1])
    ax.set_xticks(ticks, ["1 s", "10 s", "1 min", "10 min", "1 h", "1 d", "7 d"])
    ax.minorticks_off()
    ax.set_xlabel("session duration (log scale)")
    ax.set_ylabel("fraction of sessions ≤ duration")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return png(fig)


def _per_day_bars(dates, counts) -> bytes:
    fig, ax = figure(9.5, 3.0)
    if dates:
        ax.bar(dates, counts, width=1.0, color="#4C72B0")
        fig.autofmt_xdate()
    ax.set_xlabel("local date the session started")
    ax.set_ylabel("sessions")
    return png(fig)
