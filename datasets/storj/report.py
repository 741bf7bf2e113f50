"""storj's report (`fsp report storj`, GET /v1/storj/report): what the notebook drew, from the user
snapshots: bandwidth by month and tier, free users over their limits, storage per user, and operators who
are also users. What it plots is report_data.py (pure)."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from stream.client import scan_ids, snapshot_pages
from stream.report import Chart, NoData, Report, figure, png
from stream.report_data import GB

from .report_data import TIERS, StorjData

TIER_COLOURS = {"free": "#4C72B0", "paid": "#DD8452"}


def build(r, prefix: str, user: str | None = None) -> Report:
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
    return png(fig)


def _over_limits(data: StorjData) -> bytes:
    months = data.months()
    fig, ax = figure(9.5, 3.2)
    ax.bar(range(len(months)), [data.free_over_bandwidth.get(m, 0) for m in months], color="#C44E52")
    ax.set_xticks(range(len(months)), months, rotation=60, ha="right")
    ax.set_xlabel("month (UTC)")
    ax.set_ylabel("free-tier users over\na bandwidth limit")
    return png(fig)


def _storage_hist(data: StorjData) -> bytes:
    fig, ax = figure(9.5, 3.2)
    stored = [s for t in TIERS for s in data.storage[t] if s > 0]
    if stored:
        bins = np.logspace(np.log10(min(stored) / GB), np.log10(max(stored) / GB) + 1e-9, 40)
        ax.hist([np.array([s for s in data.storage[t] if s > 0]) / GB for t in TIERS], bins=bins, stacked=True,
                label=list(TIERS), color=[TIER_COLOURS[t] for t in TIERS])
        ax.set_xscale("log")
        ax.legend(title="tier")
    ax.set_xlabel("storage per user, GB (log scale)")
    ax.set_ylabel("users")
    return png(fig)


def _operators_scatter(data: StorjData) -> bytes:
    fig, ax = figure(9.5, 4.2)
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
    return png(fig)
