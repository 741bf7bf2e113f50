"""`fsp report`: the seeds' pictures, drawn from the feature snapshots in Redis, as one HTML page with PNGs.

The figures are what the two analyses drew (SPEC's seeds): for ucn the traffic and activity by local hour
and week slot, inter-event times, session durations and sessions per day; for storj the bandwidth by
month and tier, free users over their limits, storage per user, and operators who are also users. Each
is drawn from what the snapshots carry; where a feature is missing the page says what a figure cannot
show. Data shaping is fsp.report_data (pure); this module draws (matplotlib, Agg: no display) and writes
the page, for `fsp report` and for `fsp serve` (GET /v1/{dataset}/report).
"""
from __future__ import annotations

import html
import io
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fsp.report_data import (  # noqa: E402
    DAYS,
    GB,
    HIST_EDGES_S,
    TIERS,
    StorjData,
    UcnData,
    bin_labels,
    ecdf,
    hist_cdf,
    per_day_of_kind,
    week_grid,
)
from stream.client import scan_ids, session_pages, snapshot_pages  # noqa: E402
from stream.feature_table import HOURS  # noqa: E402

DATASETS = ("storj", "ucn")
LOCAL_TIME = "local time (Europe/London; Europe/Paris for users in France)"
TIER_COLOURS = {"free": "#4C72B0", "paid": "#DD8452"}


class NoData(LookupError):
    """Nothing in Redis to draw: one line for the user."""


@dataclass
class Chart:
    name: str  # the PNG's file name
    title: str
    caption: str
    png: bytes


@dataclass
class Report:
    dataset: str
    subtitle: str
    charts: list[Chart]
    cannot_show: list[str]
    facts: list[tuple[str, str]]
    generated_at: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))

    @property
    def images(self) -> dict[str, bytes]:
        return {chart.name: chart.png for chart in self.charts}

    def html(self, image_src=lambda name: name) -> str:
        """The page; `image_src(name)` is where it finds each PNG (beside it in a folder by default)."""
        esc = html.escape
        facts = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in self.facts)
        figures = "".join(
            f'<figure id="{esc(c.name)}"><h2>{esc(c.title)}</h2>'
            f'<img src="{esc(image_src(c.name))}" alt="{esc(c.title)}"><figcaption>{esc(c.caption)}</figcaption>'
            f"</figure>" for c in self.charts)
        missing = "".join(f"<li>{esc(note)}</li>" for note in self.cannot_show)
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(self.dataset)} features report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; padding: 0 1em; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: 2px 12px 2px 0; }}
figure {{ margin: 2em 0; }} img {{ max-width: 100%; border: 1px solid #ddd; }}
figcaption {{ color: #555; font-size: 0.9em; }} h2 {{ font-size: 1.1em; }}
</style></head><body>
<h1>{esc(self.dataset)} features report</h1>
<p>{esc(self.subtitle)}. Generated {esc(self.generated_at)} from the feature snapshots in Redis.</p>
<table>{facts}</table>
{figures}
<h2>What these figures cannot show</h2>
<ul>{missing}</ul>
</body></html>
"""

    def write(self, folder: str) -> list[str]:
        """index.html and the PNGs beside it: a folder that opens in any browser, offline."""
        os.makedirs(folder, exist_ok=True)
        written = []
        for chart in self.charts:
            path = os.path.join(folder, chart.name)
            with open(path, "wb") as handle:
                handle.write(chart.png)
            written.append(path)
        path = os.path.join(folder, "index.html")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(self.html())
        return [path, *written]


def build_report(r, dataset: str, prefix: str = "", user: str | None = None) -> Report:
    """Read the dataset's snapshots page by page and draw them; `user`: one ucn user's report."""
    if dataset == "ucn":
        return _ucn_report(r, prefix, user)
    if user is not None:
        raise NoData("a report of one user is for ucn users (storj has no per-user pictures)")
    return _storj_report(r, prefix)


# --------------------------------------------------------------------------- ucn


def _ucn_report(r, prefix: str, user: str | None) -> Report:
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
    fig, ax = _figure(9.5, 2.6)
    image = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_yticks([0, 1], ["Mon–Fri", "Sat–Sun"])
    ax.set_xticks(range(24), HOURS)
    ax.set_xlabel("hour of the day, local time")
    fig.colorbar(image, ax=ax, label=unit, pad=0.01)
    return _png(fig)


def _week_heatmap(grid: np.ndarray) -> bytes:
    fig, ax = _figure(9.5, 3.6)
    image = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_yticks(range(7), DAYS)
    ax.set_xticks(range(12), [f"{h:02d}–{h + 2:02d}" for h in range(0, 24, 2)])
    ax.set_xlabel("2-hour slot, local time")
    fig.colorbar(image, ax=ax, label="GB", pad=0.01)
    return _png(fig)


def _bins_bar(counts: np.ndarray, what: str) -> bytes:
    fig, ax = _figure(9.5, 3.2)
    ax.bar(range(len(counts)), counts, color="#4C72B0")
    ax.set_xticks(range(len(counts)), bin_labels(), rotation=30, ha="right")
    ax.set_xlabel("time between consecutive activity events (log bins)")
    ax.set_ylabel(what)
    return _png(fig)


def _duration_cdf(data: UcnData) -> bytes:
    fig, ax = _figure(9.5, 3.4)
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
    return _png(fig)


def _per_day_bars(dates, counts) -> bytes:
    fig, ax = _figure(9.5, 3.0)
    if dates:
        ax.bar(dates, counts, width=1.0, color="#4C72B0")
        fig.autofmt_xdate()
    ax.set_xlabel("local date the session started")
    ax.set_ylabel("sessions")
    return _png(fig)


# --------------------------------------------------------------------------- storj


def _storj_report(r, prefix: str) -> Report:
    data = StorjData()
    ids = scan_ids(r, "storj", "user", prefix)
    for page in snapshot_pages(r, "storj", "user", ids, prefix):
        for _, features in page:
            data.add_user(features)
    if not ids or not sum(data.users.values()):
        raise NoData(f"no storj user snapshots in Redis (FEATURE_PREFIX={prefix!r}): replay a storj source first")
    free = data.users["free"]
    operators = len(data.operators)
    charts = [
        Chart("bandwidth-by-month.png", "Monthly bandwidth by tier",
              "settled bytes of bucket bandwidth rollups by UTC month, uploads (action 1) and downloads (action 2), "
              "summed over the users of each tier (free: every project's bandwidth limit ≤ 50 GB).",
              _monthly_bandwidth(data)),
        Chart("free-over-limits.png", "Free-tier users over their limits",
              f"free-tier users with a project whose downloads in the month exceeded that project's bandwidth "
              f"limit; {data.free_over_storage:,} of {free:,} free-tier users have a project storing more than its "
              f"usage limit now.", _over_limits(data)),
        Chart("storage-per-user.png", "Storage per user",
              "each user's storage now (the latest storage tally of each project, summed), on log bins; users "
              f"storing nothing: {sum(1 for t in TIERS for s in data.storage[t] if not s):,} (not on the log axis).",
              _storage_hist(data)),
        Chart("operators-as-users.png", "Operators who are also users: earned against used",
              f"{operators:,} users whose email hash runs storage nodes: what their nodes earned (payments, "
              "amount ÷ 10^6) against what they used (uploads + downloads of every month + storage now, GB).",
              _operators_scatter(data)),
    ]
    cannot = [
        "What a user paid: the snapshots carry no prices, invoices or payments of users (only what operators "
        "earned), so the notebook's question, whether someone pays more than they earn, is drawn as earned "
        "against usage in GB, not against money paid.",
        "How far over its limit a project went, and in which project: over_bandwidth_months names the months "
        "only, and over_storage_limit is one flag for the user now, not per month.",
        "Storage over time: storage_bytes is the latest tally only; the monthly figures are bandwidth.",
    ]
    facts = [("users", f"{sum(data.users.values()):,} ({free:,} free, {data.users['paid']:,} paid)"),
             ("users who also operate nodes", f"{operators:,}"),
             ("months", f"{data.months()[0]} to {data.months()[-1]}" if data.months() else "none")]
    return Report("storj", "storj cloud storage usage, all users", charts, cannot, facts)


def _monthly_bandwidth(data: StorjData) -> bytes:
    months = data.months()
    fig = Figure(figsize=(9.5, 5.2), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    width = 0.4
    for ax, direction in zip(axes, ("upload", "download")):
        for n, (tier, values) in enumerate(data.monthly(direction).items()):
            ax.bar(np.arange(len(months)) + (n - 0.5) * width, values / GB, width, label=tier,
                   color=TIER_COLOURS[tier])
        ax.set_ylabel(f"{direction}s, GB")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(title="tier")
    axes[1].set_xticks(range(len(months)), months, rotation=60, ha="right")
    axes[1].set_xlabel("month (UTC)")
    return _png(fig)


def _over_limits(data: StorjData) -> bytes:
    months = data.months()
    fig, ax = _figure(9.5, 3.2)
    ax.bar(range(len(months)), [data.free_over_bandwidth.get(m, 0) for m in months], color="#C44E52")
    ax.set_xticks(range(len(months)), months, rotation=60, ha="right")
    ax.set_xlabel("month (UTC)")
    ax.set_ylabel("free-tier users over\na bandwidth limit")
    return _png(fig)


def _storage_hist(data: StorjData) -> bytes:
    fig, ax = _figure(9.5, 3.2)
    stored = [s for t in TIERS for s in data.storage[t] if s > 0]
    if stored:
        bins = np.logspace(np.log10(min(stored) / GB), np.log10(max(stored) / GB) + 1e-9, 40)
        ax.hist([np.array([s for s in data.storage[t] if s > 0]) / GB for t in TIERS], bins=bins, stacked=True,
                label=list(TIERS), color=[TIER_COLOURS[t] for t in TIERS])
        ax.set_xscale("log")
        ax.legend(title="tier")
    ax.set_xlabel("storage per user, GB (log scale)")
    ax.set_ylabel("users")
    return _png(fig)


def _operators_scatter(data: StorjData) -> bytes:
    fig, ax = _figure(9.5, 4.2)
    for tier in TIERS:
        points = [(earned, used / GB) for earned, used, t in data.operators if t == tier]
        if points:
            earned, used = zip(*points)
            ax.scatter(np.maximum(used, 1e-3), np.maximum(earned, 1e-3), s=14, alpha=0.7, label=tier,
                       color=TIER_COLOURS[tier])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("used: bandwidth + storage, GB (log; < 0.001 drawn at 0.001)")
    ax.set_ylabel("earned by their nodes (log; < 0.001 drawn at 0.001)")
    ax.grid(alpha=0.3)
    if data.operators:
        ax.legend(title="tier")
    return _png(fig)


# --------------------------------------------------------------------------- drawing


def _figure(width: float, height: float):
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()
