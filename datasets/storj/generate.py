"""Synthetic Storj dumps, shaped like the real ones, for tests and benchmarks.

Why: the real dumps (see the notebook in ``shared/seeds/``) cannot be shipped,
yet the replay, the stream and the batch check (``verify``) all have to run on
data of the same shape. This module writes the same files, columns and cell
spellings as the real dump, sized by ``scale``, and plants at every scale the
hard cases that the feature contract (``SPEC.md`` sections 1 and 5,
``docs/readings.md``) has to get right: duplicates across regions and after
lower-casing, upserts (later time, equal time in a later file, another user,
another email), usage before or without its project, projects without a user,
nodes never contacted, projects over their limits, odd actions, null cells,
negative free disk. With ``bad_rows`` it also writes malformed lines and
returns where they are, so that dead letters can be checked line by line.

Everything is drawn from one ``numpy.random.default_rng(seed)``, so the same
arguments give byte-identical files. Inside, times are integer microseconds
(UTC). How a timestamp is spelled depends only on its value, so a copy of a
row is written byte for byte like the original.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REGIONS = ("ap", "eu", "us")

SECOND = 1_000_000
HOUR = 3_600 * SECOND
DAY = 24 * HOUR
START = int(np.datetime64("2019-01-01", "us").astype(np.int64))
END = int(np.datetime64("2021-06-01", "us").astype(np.int64))  # exclusive
EPOCH_2070 = int(np.datetime64("2070-01-01", "us").astype(np.int64))
PERIODS = (np.arange("2019-03", "2021-06", dtype="datetime64[M]")  # first days of months paid
           .astype("datetime64[us]").astype(np.int64))

FREE_BANDWIDTH = 50_000_000_000
PAID_BANDWIDTH = (100_000_000_000, 150_000_000_000, 500_000_000_000, 1_000_000_000_000)
FREE_USAGE = (50_000_000_000, 2_000_000_000_000)
PAID_USAGE = (2_000_000_000_000, 10_000_000_000_000)
NEGATIVE_DISK = -2_132_077_848  # a value seen in the real nodes table
ZERO_WALLET = "0x" + "0" * 40

# Rows at scale 1 (all regions), and the floor that keeps every hard case possible.
SIZES = {"users": 3_000, "projects": 5_000, "bbr": 150_000, "bst": 60_000,
         "nodes": 4_000, "payments": 20_000, "receipts": 10_000}
MINIMUM = {"users": 12, "projects": 40, "bbr": 200, "bst": 80,
           "nodes": 12, "payments": 40, "receipts": 20}
ACTIVE_SHARE = 0.35  # projects with any usage; the others never transact
MIN_ACTIVE = 12

# Steps between a project's hourly rollups: 1 h, exactly the 7,200 s session
# gap (2 h, same session), just over it (3 h), else an idle gap of hours to months.
STEP_HOURS = (1, 2, 3)
STEP_SHARES = (0.62, 0.14, 0.08)

# Cell spellings.
TEXT, INT, FLOAT, CREATED, STAMP, DATE = "text", "int", "float", "created", "stamp", "date"


@dataclass(frozen=True)
class Table:
    """A source table: its file, columns (name -> spelling), key, event time, integer columns."""

    file: str
    columns: dict[str, str]
    key: str
    time: str
    typed: tuple[str, ...]


TABLES = {
    "users": Table(
        "{region}_users_a.csv",
        {"id": TEXT, "email_hash": TEXT, "password_hash": TEXT, "created_at": CREATED},
        "id", "created_at", ()),
    "projects": Table(
        "{region}_projects.csv",
        {"created_at": CREATED, "project_id": TEXT, "user_id": TEXT, "usage_limit": INT,
         "bandwidth_limit": INT},
        "project_id", "created_at", ("usage_limit", "bandwidth_limit")),
    "nodes": Table(
        "{region}_nodes_a.csv",
        {"id": TEXT, "audit_success_count": INT, "total_audit_count": INT,
         "uptime_success_count": INT, "total_uptime_count": INT, "created_at": CREATED,
         "vetted_at": CREATED, "wallet": TEXT, "free_disk": INT, "last_contact_success": STAMP,
         "last_contact_failure": STAMP, "contained": TEXT, "disqualified": STAMP,
         "suspended": STAMP, "piece_count": INT, "audit_reputation_alpha": FLOAT,
         "audit_reputation_beta": FLOAT, "exit_finished_at": STAMP, "email_hash": TEXT},
        "id", "created_at", ("free_disk", "piece_count")),
    "payments": Table(
        "{region}_node_payments.csv",
        {"period": DATE, "node_id": TEXT, "amount": INT},
        "node_id", "period", ("amount",)),
    "receipts": Table(
        "{region}_node_payments_receipt.csv",
        {"period": DATE, "node_id": TEXT, "amount": INT, "receipt": TEXT},
        "node_id", "period", ("amount",)),
    "bbr": Table(
        "bucket_data/{region}_bbr.csv",
        {"interval_start": STAMP, "action": INT, "inline": INT, "settled": INT, "project_id": TEXT},
        "project_id", "interval_start", ("action", "inline", "settled")),
    "bst": Table(
        "bucket_data/{region}_bst.csv",
        {"interval_start": STAMP, "inline": INT, "remote": INT, "project_id": TEXT},
        "project_id", "interval_start", ("inline", "remote")),
}

# Id columns written in upper case now and then (the contract lower-cases them).
UPPER_COLUMNS = {"users": ("id", "email_hash"), "projects": ("project_id", "user_id"),
                 "bbr": ("project_id",), "bst": ("project_id",),
                 "nodes": ("id", "email_hash", "wallet"), "payments": ("node_id",)}
CROSS_REGION_COPIES = ("users", "projects", "bbr", "bst", "nodes", "payments")

BAD_TIMES = ("not-a-date", "2021-13-45 10:00:00")
BAD_INTEGERS = ("abc", "1.5")


def generate_storj(out_dir: str | Path, seed: int = 1, scale: float = 1.0,
                   bad_rows: int = 0) -> dict:
    """Write a synthetic storj dump into ``out_dir`` and return what was written.

    The summary holds ``folder``, ``rows`` (data lines per table, all regions),
    ``files`` (data lines per file) and ``bad_rows``: one
    ``{"file", "line", "reason"}`` per malformed line (``line`` is 1-based,
    the header being line 1).
    """
    rng = np.random.default_rng(seed)
    tables = _base_tables(rng, scale)
    _plant_hard_cases(rng, tables)
    dump = {path: (name, lines) for name, frame in tables.items()
            for path, lines in _render(name, frame).items()}
    bad = _inject_bad_rows(rng, dump, bad_rows)
    folder = Path(out_dir)
    for path, (_, lines) in dump.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    files = {path: len(lines) - 1 for path, (_, lines) in sorted(dump.items())}
    rows = {name: sum(n for path, n in files.items() if dump[path][0] == name) for name in TABLES}
    return {"folder": str(folder), "rows": rows, "files": files, "bad_rows": bad}


# --- random building blocks ------------------------------------------------

def _hex(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """n random lower-case hex strings of an even width, as an object array."""
    raw = rng.bytes(n * width // 2).hex().encode("ascii")
    return np.frombuffer(raw, dtype=f"S{width}").astype(str).astype(object)


def _regions(rng: np.random.Generator, n: int) -> np.ndarray:
    """Balanced random regions, so that every region gets rows."""
    return np.asarray(REGIONS, dtype=object)[rng.permutation(n) % len(REGIONS)]


def _some_whole_seconds(rng: np.random.Generator, times: np.ndarray) -> np.ndarray:
    """Drop the microseconds of about half of the times (both spellings occur)."""
    return np.where(rng.random(len(times)) < 0.5, times - times % SECOND, times)


def _times(rng: np.random.Generator, n: int, lo: int, hi: int) -> np.ndarray:
    """n instants in [lo, hi), more of them recent (the service grew)."""
    return _some_whole_seconds(rng, lo + ((hi - lo) * np.sqrt(rng.random(n))).astype(np.int64))


def _later(rng: np.random.Generator, times: np.ndarray) -> np.ndarray:
    """Instants strictly after ``times`` and before END."""
    return times + ((END - times) * rng.uniform(0.05, 0.5, len(times))).astype(np.int64)


def _sometimes(rng: np.random.Generator, values: np.ndarray, share: float) -> pd.Series:
    """``values`` as a nullable integer column, null outside a random ``share`` of rows."""
    return pd.Series(values, dtype="Int64").where(rng.random(len(values)) < share)


def _split(rng: np.random.Generator, total: int, parts: int) -> np.ndarray:
    """Split ``total`` into ``parts`` positive, unequal quotas."""
    weights = rng.lognormal(0.0, 1.0, parts)
    return rng.multinomial(max(total - parts, 0), weights / weights.sum()) + 1


def _bytes(rng: np.random.Generator, median: float, n: int, cap: float) -> np.ndarray:
    """Heavy-tailed byte counts, a few of them zero."""
    sizes = np.minimum(rng.lognormal(np.log(median), 2.0, n), cap).astype(np.int64)
    return np.where(rng.random(n) < 0.08, 0, sizes)


def _few(n: int, share: float = 0.004) -> int:
    """How many rows carry one hard case: a share of the table, at least two."""
    return max(2, round(n * share))


# --- base tables -----------------------------------------------------------

def _base_tables(rng: np.random.Generator, scale: float) -> dict[str, pd.DataFrame]:
    """Clean, lower-case tables with a ``region`` column, sized by ``scale``."""
    size = {name: max(MINIMUM[name], round(rows * scale)) for name, rows in SIZES.items()}
    users = _users(rng, size["users"])
    projects = _projects(rng, size["projects"], users)
    bbr, bst = _usage(rng, projects, size["bbr"], size["bst"])
    nodes = _nodes(rng, size["nodes"], users)
    payments = _payments(rng, size["payments"], nodes)
    receipts = _receipts(rng, size["receipts"], payments)
    return {"users": users, "projects": projects, "nodes": nodes, "payments": payments,
            "receipts": receipts, "bbr": bbr, "bst": bst}


def _users(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "id": _hex(rng, n, 32),
        "email_hash": _hex(rng, n, 64),
        "password_hash": _hex(rng, n, 64),
        "created_at": _times(rng, n, START, END - 30 * DAY),
        "region": _regions(rng, n),
    })


def _projects(rng: np.random.Generator, n: int, users: pd.DataFrame) -> pd.DataFrame:
    """Projects of the users (some users have many, some none), mostly free."""
    appetite = rng.lognormal(0.0, 1.0, len(users))
    owner = rng.choice(len(users), n, p=appetite / appetite.sum())
    delay = rng.exponential(20 * DAY, n).astype(np.int64)
    created = np.minimum(users["created_at"].to_numpy()[owner] + delay, END - DAY)
    paid = rng.random(n) < 0.15
    return pd.DataFrame({
        "created_at": _some_whole_seconds(rng, created),
        "project_id": _hex(rng, n, 32),
        "user_id": users["id"].to_numpy()[owner],
        "usage_limit": np.where(paid, rng.choice(PAID_USAGE, n), rng.choice(FREE_USAGE, n)),
        "bandwidth_limit": np.where(paid, rng.choice(PAID_BANDWIDTH, n), FREE_BANDWIDTH),
        "region": users["region"].to_numpy()[owner],
    })


def _usage(rng: np.random.Generator, projects: pd.DataFrame, n_bbr: int,
           n_bst: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bandwidth rollups and storage tallies of the active projects."""
    n_active = min(len(projects), max(MIN_ACTIVE, round(ACTIVE_SHARE * len(projects))))
    active = np.sort(rng.choice(len(projects), n_active, replace=False))
    tallies = _tally_schedule(rng)
    created = projects["created_at"].to_numpy()
    bandwidth, storage = [], []
    for project, bbr_quota, bst_quota in zip(active, _split(rng, n_bbr, n_active),
                                             _split(rng, n_bst, n_active)):
        buckets = int(rng.integers(1, 4))
        rollups = _bandwidth(rng, created[project], bbr_quota, buckets)
        bandwidth.append(rollups)
        storage.append(_storage(rng, tallies, rollups["interval_start"][0], bst_quota, buckets))
    return _stack(bandwidth, projects, active), _stack(storage, projects, active)


def _steps(rng: np.random.Generator, n: int) -> np.ndarray:
    """Hours between consecutive rollup hours of one project."""
    kind = rng.choice(len(STEP_HOURS) + 1, n, p=STEP_SHARES + (1 - sum(STEP_SHARES),))
    idle = 4 + rng.lognormal(np.log(30), 1.5, n).astype(np.int64)
    short = np.asarray(STEP_HOURS)[np.minimum(kind, len(STEP_HOURS) - 1)]
    return np.where(kind < len(STEP_HOURS), short, idle)


def _bandwidth(rng: np.random.Generator, created: int, quota: int,
               buckets: int) -> dict[str, np.ndarray]:
    """One project's hourly rollups: one row per bucket and action used in an hour."""
    used = rng.random((quota, buckets, 2)) < (0.7, 0.45)  # (upload, download)
    used[:, 0, 0] |= ~used.any(axis=(1, 2))
    point, _, action = np.nonzero(used)
    point, action = point[:quota], action[:quota] + 1
    offset = np.concatenate(([0], np.cumsum(_steps(rng, quota - 1))))[point]
    first, latest = -(-created // HOUR), END // HOUR - 1 - offset[-1]
    hours = (int(rng.integers(first, latest + 1)) if latest >= first else first) + offset
    keep = hours < END // HOUR
    n = len(point)
    settled = np.where(action == 1, _bytes(rng, 4e6, n, 5e10), _bytes(rng, 1e6, n, 5e10))
    inline = np.where(rng.random(n) < 0.15, rng.integers(1, 8_192, n), 0)
    return {"interval_start": hours[keep] * HOUR, "action": action[keep],
            "inline": inline[keep], "settled": settled[keep]}


def _tally_schedule(rng: np.random.Generator) -> np.ndarray:
    """Storage tallies run for every project at once, about every 4 h, at arbitrary minutes."""
    slots = np.arange(START, END, 4 * HOUR)
    return slots + rng.integers(0, 240, len(slots)) * 60 * SECOND


def _storage(rng: np.random.Generator, tallies: np.ndarray, since: int, quota: int,
             buckets: int) -> dict[str, np.ndarray]:
    """One project's tallies from its first use on, one row per bucket, stored bytes drifting."""
    first = np.searchsorted(tallies, since)
    times = tallies[first:first + -(-quota // buckets)]
    drift = np.exp(np.cumsum(rng.normal(0.01, 0.05, (len(times), buckets)), axis=0))
    remote = (rng.lognormal(np.log(2e8), 2.0, buckets) * drift).astype(np.int64).ravel()[:quota]
    n = len(remote)
    return {"interval_start": np.repeat(times, buckets)[:quota],
            "inline": np.where(rng.random(n) < 0.3, rng.integers(1, 4_096, n), 0),
            "remote": remote}


def _stack(parts: list[dict[str, np.ndarray]], projects: pd.DataFrame,
           owners: np.ndarray) -> pd.DataFrame:
    """One frame from per-project column arrays, with the project's id and region."""
    frame = pd.DataFrame({column: np.concatenate([part[column] for part in parts])
                          for column in parts[0]})
    owner = np.repeat(owners, [len(part["interval_start"]) for part in parts])
    frame["project_id"] = projects["project_id"].to_numpy()[owner]
    frame["region"] = projects["region"].to_numpy()[owner]
    return frame


def _operators(rng: np.random.Generator, n: int,
               users: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Email hash and wallet of n nodes: a few operators run many nodes and
    wallets, a fifth of them are also users, a few wallets are all zeros."""
    n_operators = max(4, n * 2 // 5)
    reach = rng.pareto(1.2, n_operators) + 1
    operator = rng.choice(n_operators, n, p=reach / reach.sum())
    emails = _hex(rng, n_operators, 64)
    is_user = rng.random(n_operators) < 0.2
    emails[is_user] = rng.choice(users["email_hash"].to_numpy(), is_user.sum())
    wallets = ("0x" + _hex(rng, 3 * n_operators, 40)).reshape(n_operators, 3)
    n_wallets = rng.integers(1, 4, n_operators)
    wallet = wallets[operator, rng.integers(0, 3, n) % n_wallets[operator]]
    wallet[rng.random(n) < 0.01] = ZERO_WALLET
    return emails[operator], wallet


def _nodes(rng: np.random.Generator, n: int, users: pd.DataFrame) -> pd.DataFrame:
    """Nodes with their history; some never contacted, disqualified or suspended."""
    email, wallet = _operators(rng, n, users)
    created = _times(rng, n, START, END - 7 * DAY)
    seen = created - created % SECOND + ((END - created) * rng.uniform(0, 1, n)).astype(np.int64)
    last_contact = pd.Series(seen, dtype="Int64")
    never = rng.random(n) < 0.03
    last_contact[never] = rng.choice(np.array([pd.NA, 0, EPOCH_2070], dtype=object), never.sum())
    failed = seen - ((seen - created) * rng.random(n)).astype(np.int64)
    audits = rng.integers(0, 50_000, n)
    uptimes = rng.integers(0, 200_000, n)
    disk = rng.lognormal(np.log(1e12), 1.0, n).astype(np.int64)
    pieces = rng.lognormal(np.log(2e5), 1.5, n).astype(np.int64)
    return pd.DataFrame({
        "id": _hex(rng, n, 64),
        "audit_success_count": audits - rng.binomial(audits, 0.02),
        "total_audit_count": audits,
        "uptime_success_count": uptimes - rng.binomial(uptimes, 0.05),
        "total_uptime_count": uptimes,
        "created_at": created,
        "vetted_at": _sometimes(rng, _later(rng, created), 0.8),
        "wallet": wallet,
        "free_disk": np.where(rng.random(n) < 0.02, -rng.integers(1, 2**31, n), disk),
        "last_contact_success": last_contact,
        "last_contact_failure": _sometimes(rng, failed, 0.7),
        "contained": np.where(rng.random(n) < 0.01, "True", "False").astype(object),
        "disqualified": _sometimes(rng, seen, 0.03),
        "suspended": _sometimes(rng, seen, 0.03),
        "piece_count": np.where(rng.random(n) < 0.05, 0, pieces),
        "audit_reputation_alpha": np.round(rng.uniform(1, 100, n), 3),
        "audit_reputation_beta": np.round(rng.uniform(0, 5, n), 3),
        "exit_finished_at": _sometimes(rng, seen, 0.02),
        "email_hash": email,
        "region": _regions(rng, n),
    })


def _payments(rng: np.random.Generator, n: int, nodes: pd.DataFrame) -> pd.DataFrame:
    """Monthly payments of nodes, for consecutive months from the node's creation on
    (older nodes have more)."""
    created = nodes["created_at"].to_numpy()
    first = np.maximum(np.searchsorted(PERIODS, created, side="right") - 1, 0)
    weights = rng.lognormal(0.0, 0.5, len(nodes)) * (len(PERIODS) - first)
    count = rng.multinomial(n, weights / weights.sum())
    node = np.repeat(np.arange(len(nodes)), count)
    month = first[node] + np.arange(len(node)) - np.repeat(np.cumsum(count) - count, count)
    node, month = node[month < len(PERIODS)], month[month < len(PERIODS)]
    amount = np.minimum(rng.lognormal(np.log(2e6), 1.5, len(node)), 5e7).astype(np.int64)
    return pd.DataFrame({
        "period": PERIODS[month],
        "node_id": nodes["id"].to_numpy()[node],
        "amount": np.where(rng.random(len(node)) < 0.1, 0, amount),
        "region": nodes["region"].to_numpy()[node],
    })


def _receipts(rng: np.random.Generator, n: int, payments: pd.DataFrame) -> pd.DataFrame:
    """Receipts of some payments."""
    rows = np.sort(rng.choice(len(payments), min(n, len(payments)), replace=False))
    receipts = payments.iloc[rows].reset_index(drop=True)
    receipts["receipt"] = "0x" + _hex(rng, len(rows), 64)
    return receipts


# --- hard cases --------------------------------------------------------------

def _plant_hard_cases(rng: np.random.Generator, tables: dict[str, pd.DataFrame]) -> None:
    """Edit base rows, add copies of them, then add later rows (in that order,
    so that every later row really comes after the copies in its file)."""
    projects = tables["projects"]  # stays the base rows: later rows are built from them
    picks = _pick_projects(rng, tables)
    _usage_before_project(rng, projects, tables["bbr"], picks["usage_first"])
    _usage_without_project(rng, projects, tables, picks["no_project"])
    projects.loc[picks["no_user"], "user_id"] = _hex(rng, len(picks["no_user"]), 32)
    _odd_actions(rng, tables["bbr"])
    for name, column in (("bbr", "settled"), ("bst", "remote"), ("payments", "amount")):
        _null_cells(rng, tables[name], column)
    _odd_nodes(rng, tables["nodes"], tables["users"])

    for name, columns in UPPER_COLUMNS.items():
        _upper_case_cells(rng, tables[name], columns)
        _append(tables, name, _upper_case_copies(rng, tables[name], columns))
    for name in CROSS_REGION_COPIES:
        _append(tables, name, _cross_region_copies(rng, tables[name]))

    for pick, same_time in (("later_limit", False), ("same_time_limit", True)):
        _append(tables, "projects", _new_limits(rng, projects, picks[pick], same_time))
    _append(tables, "projects", _moved(rng, projects, tables["users"], picks["moved"]))
    _append(tables, "bbr", _over_bandwidth(rng, projects, tables["bbr"], picks["over_bandwidth"]))
    _append(tables, "bst", _over_storage(rng, projects, tables["bst"], picks["over_storage"]))
    _append(tables, "nodes", _republished_nodes(rng, tables["nodes"]))
    _append(tables, "nodes", _node_of_user_other_case(rng, tables["nodes"], tables["users"]))
    _append(tables, "payments", _payments_without_node(rng, tables["payments"]))


def _append(tables: dict[str, pd.DataFrame], name: str, rows: pd.DataFrame) -> None:
    tables[name] = pd.concat([tables[name], rows], ignore_index=True)


def _pick_projects(rng: np.random.Generator,
                   tables: dict[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    """Disjoint sets of base projects, one per project hard case."""
    projects = tables["projects"]
    free = (projects["bandwidth_limit"] == FREE_BANDWIDTH).to_numpy()
    used = projects["project_id"].isin(tables["bbr"]["project_id"]).to_numpy()
    stored = projects["project_id"].isin(tables["bst"]["project_id"]).to_numpy()
    anywhere = np.ones(len(projects), dtype=bool)
    order = rng.permutation(len(projects))
    taken = np.zeros(len(projects), dtype=bool)
    k = _few(len(projects))

    def take(eligible: np.ndarray) -> np.ndarray:
        chosen = order[eligible[order] & ~taken[order]][:k]
        taken[chosen] = True
        return chosen

    return {
        "over_bandwidth": take(used & free),
        "over_storage": take(stored & free),
        "usage_first": take(used),
        "no_project": take(used),
        "later_limit": take(anywhere),
        "same_time_limit": take((projects["region"] != REGIONS[-1]).to_numpy()),
        "moved": take(anywhere),
        "no_user": take(anywhere),
    }


def _usage_before_project(rng: np.random.Generator, projects: pd.DataFrame, bbr: pd.DataFrame,
                          rows: np.ndarray) -> None:
    """Move the creation of these projects after their first rollup."""
    first_use = bbr.groupby("project_id")["interval_start"].min()
    first = first_use[projects.loc[rows, "project_id"]].to_numpy()
    created = np.minimum(first + rng.integers(HOUR, 10 * DAY, len(rows)), END - SECOND)
    projects.loc[rows, "created_at"] = created


def _usage_without_project(rng: np.random.Generator, projects: pd.DataFrame,
                           tables: dict[str, pd.DataFrame], rows: np.ndarray) -> None:
    """Give the usage of these projects ids that no project row has."""
    renamed = dict(zip(projects.loc[rows, "project_id"], _hex(rng, len(rows), 32)))
    for name in ("bbr", "bst"):
        ids = tables[name]["project_id"]
        tables[name]["project_id"] = ids.map(renamed).fillna(ids)


def _odd_actions(rng: np.random.Generator, bbr: pd.DataFrame) -> None:
    """A few rollups with an action other than upload (1) or download (2)."""
    rows = rng.choice(len(bbr), _few(len(bbr), 0.001), replace=False)
    bbr.loc[rows, "action"] = rng.choice((3, 4, 5), len(rows))


def _null_cells(rng: np.random.Generator, frame: pd.DataFrame, column: str) -> None:
    frame[column] = frame[column].astype("Int64")
    frame.loc[rng.choice(len(frame), _few(len(frame), 0.002), replace=False), column] = pd.NA


def _odd_nodes(rng: np.random.Generator, nodes: pd.DataFrame, users: pd.DataFrame) -> None:
    """Make sure each special node exists whatever the scale."""
    rows = rng.choice(len(nodes), 10, replace=False)
    never, team = rows[:3], rows[7:]
    disqualified, suspended, negative, user = rows[3:7]
    nodes.loc[never, "last_contact_success"] = [pd.NA, 0, EPOCH_2070]
    for row, column in ((disqualified, "disqualified"), (suspended, "suspended")):
        nodes.loc[row, column] = nodes.at[row, "created_at"] // SECOND * SECOND + DAY
    nodes.loc[negative, "free_disk"] = NEGATIVE_DISK
    nodes.loc[user, "email_hash"] = rng.choice(users["email_hash"].to_numpy())
    nodes.loc[team, "email_hash"] = nodes.at[team[0], "email_hash"]
    nodes.loc[team, "wallet"] = ("0x" + _hex(rng, 2, 40))[[0, 1, 1]]


def _upper(value: str) -> str:
    """Upper-case an id; a wallet keeps its ``0x``."""
    return value[:2] + value[2:].upper() if value.startswith("0x") else value.upper()


def _upper_case_cells(rng: np.random.Generator, frame: pd.DataFrame,
                      columns: tuple[str, ...]) -> None:
    for column in columns:
        rows = rng.choice(len(frame), _few(len(frame), 0.01), replace=False)
        frame.loc[rows, column] = [_upper(value) for value in frame.loc[rows, column]]


def _upper_case_copies(rng: np.random.Generator, frame: pd.DataFrame,
                       columns: tuple[str, ...]) -> pd.DataFrame:
    """Copies, ids in upper case, of rows written in lower case: duplicates once normalised."""
    lower = np.logical_and.reduce([(frame[c] == frame[c].str.lower()).to_numpy() for c in columns])
    rows = rng.choice(np.flatnonzero(lower), _few(len(frame), 0.002), replace=False)
    copies = frame.iloc[rows].copy()
    for column in columns:
        copies[column] = [_upper(value) for value in copies[column]]
    return copies


def _cross_region_copies(rng: np.random.Generator, frame: pd.DataFrame) -> pd.DataFrame:
    """Exact copies of rows (from ap when it has rows) in the next region's file."""
    k = _few(len(frame), 0.002)
    pool = np.flatnonzero(frame["region"].to_numpy() == REGIONS[0])
    pool = pool if len(pool) >= k else np.arange(len(frame))
    copies = frame.iloc[rng.choice(pool, k, replace=False)].copy()
    copies["region"] = [REGIONS[(REGIONS.index(r) + 1) % len(REGIONS)] for r in copies["region"]]
    return copies


def _new_limits(rng: np.random.Generator, projects: pd.DataFrame, rows: np.ndarray,
                same_time: bool) -> pd.DataFrame:
    """Projects re-published with another bandwidth limit: later, or at the
    same time in a later region's file (the later file wins)."""
    new = projects.loc[rows].copy()
    free = new["bandwidth_limit"] == FREE_BANDWIDTH
    new["bandwidth_limit"] = np.where(free, rng.choice(PAID_BANDWIDTH, len(new)), FREE_BANDWIDTH)
    if same_time:
        new["region"] = [REGIONS[rng.integers(REGIONS.index(region) + 1, len(REGIONS))]
                         for region in new["region"]]
    else:
        new["created_at"] = _later(rng, new["created_at"].to_numpy())
    return new


def _moved(rng: np.random.Generator, projects: pd.DataFrame, users: pd.DataFrame,
           rows: np.ndarray) -> pd.DataFrame:
    """Projects handed over to another user later on."""
    new = projects.loc[rows].copy()
    ids = users["id"].str.lower().to_numpy()
    other = rng.integers(0, len(ids), len(new))
    same = ids[other] == new["user_id"].str.lower().to_numpy()
    other = np.where(same, (other + 1) % len(ids), other)
    new["user_id"] = ids[other]
    new["created_at"] = _later(rng, new["created_at"].to_numpy())
    return new


def _over_bandwidth(rng: np.random.Generator, projects: pd.DataFrame, bbr: pd.DataFrame,
                    rows: np.ndarray) -> pd.DataFrame:
    """Four distinct downloads in one hour of each project, more than the free limit together."""
    first_use = bbr.groupby(bbr["project_id"].str.lower())["interval_start"].min()
    ids = projects.loc[rows, "project_id"].str.lower().to_numpy()
    step = rng.integers(1, 100_000_000, len(rows))
    return pd.DataFrame({
        "interval_start": np.repeat(first_use[ids].to_numpy(), 4),
        "action": 2,
        "inline": 0,
        "settled": FREE_BANDWIDTH // 4 + np.repeat(step, 4) * np.tile(np.arange(1, 5), len(rows)),
        "project_id": np.repeat(ids, 4),
        "region": np.repeat(projects.loc[rows, "region"].to_numpy(), 4),
    })


def _over_storage(rng: np.random.Generator, projects: pd.DataFrame, bst: pd.DataFrame,
                  rows: np.ndarray) -> pd.DataFrame:
    """One more bucket at each project's latest tally, storing more than its usage limit."""
    last_tally = bst.groupby(bst["project_id"].str.lower())["interval_start"].max()
    ids = projects.loc[rows, "project_id"].str.lower().to_numpy()
    return pd.DataFrame({
        "interval_start": last_tally[ids].to_numpy(),
        "inline": 0,
        "remote": projects.loc[rows, "usage_limit"].to_numpy() + rng.integers(1, 10**9, len(rows)),
        "project_id": ids,
        "region": projects.loc[rows, "region"].to_numpy(),
    })


def _republished_nodes(rng: np.random.Generator, nodes: pd.DataFrame) -> pd.DataFrame:
    """Nodes published again later under another operator's email."""
    new = nodes.iloc[rng.choice(len(nodes), _few(len(nodes)), replace=False)].copy()
    emails = np.unique(nodes["email_hash"].str.lower())
    new["email_hash"] = [rng.choice(emails[emails != own.lower()]) for own in new["email_hash"]]
    new["created_at"] = _later(rng, new["created_at"].to_numpy())
    return new


def _node_of_user_other_case(rng: np.random.Generator, nodes: pd.DataFrame,
                             users: pd.DataFrame) -> pd.DataFrame:
    """A new node run by a user, its email hash written in the other case than the user's."""
    node = nodes.iloc[[rng.integers(len(nodes))]].copy()
    email = users["email_hash"].iloc[rng.integers(len(users))]
    node["email_hash"] = email.upper() if email == email.lower() else email.lower()
    node["id"] = _hex(rng, 1, 64)
    return node


def _payments_without_node(rng: np.random.Generator, payments: pd.DataFrame) -> pd.DataFrame:
    new = payments.iloc[rng.choice(len(payments), _few(len(payments), 0.002), replace=False)].copy()
    new["node_id"] = _hex(rng, len(new), 64)
    return new


# --- writing -----------------------------------------------------------------

def _render(name: str, frame: pd.DataFrame) -> dict[str, list[str]]:
    """CSV lines (header first) of each region's file, as ``DataFrame.to_csv`` writes them."""
    table = TABLES[name]
    text = pd.DataFrame({column: _spell(frame[column], kind)
                         for column, kind in table.columns.items()})
    regions = frame["region"].to_numpy()
    return {table.file.format(region=region):
            text[regions == region].reset_index(drop=True).to_csv(lineterminator="\n").splitlines()
            for region in REGIONS}


def _spell(column: pd.Series, kind: str) -> np.ndarray:
    """Cells of a column as text; null is an empty cell."""
    if kind == TEXT:
        return column.to_numpy(dtype=object)
    if kind == FLOAT:
        return column.astype(str).to_numpy()
    values = column.to_numpy(dtype=np.int64, na_value=0)
    spelled = values.astype(str) if kind == INT else _spell_times(values, kind)
    return np.where(column.isna().to_numpy(), "", spelled)


def _spell_times(values: np.ndarray, kind: str) -> np.ndarray:
    """``2019-03-01`` (DATE), ``2021-04-20 17:00:00`` (STAMP); CREATED adds the
    microseconds when there are some and ``+00:00`` to a third of the values."""
    moments = values.astype("datetime64[us]")
    if kind == DATE:
        return np.datetime_as_string(moments, unit="D")
    spelled = _with_space(np.datetime_as_string(moments, unit="s"))
    if kind == STAMP:
        return spelled
    fine = _with_space(np.datetime_as_string(moments, unit="us"))
    spelled = np.where(values % SECOND == 0, spelled, fine)
    return np.where(values // SECOND % 3 == 0, np.char.add(spelled, "+00:00"), spelled)


def _with_space(stamps: np.ndarray) -> np.ndarray:
    """``2021-04-20T17:00:00`` -> ``2021-04-20 17:00:00``, in place."""
    chars = stamps.view("U1").reshape(len(stamps), stamps.dtype.itemsize // 4)
    chars[:, 10] = " "
    return stamps


# --- malformed rows ------------------------------------------------------------

def _inject_bad_rows(rng: np.random.Generator, dump: dict[str, tuple[str, list[str]]],
                     count: int) -> list[dict]:
    """Insert ``count`` malformed lines, spread over the files, at random places."""
    paths = [path for path in sorted(dump) if len(dump[path][1]) > 1]
    order = [paths[i] for i in rng.permutation(len(paths))]
    targets = [order[i % len(order)] for i in range(count)]
    bad = []
    for path in paths:
        name, lines = dump[path]
        k = targets.count(path)
        slots = np.sort(rng.choice(len(lines) - 1 + k, k, replace=False))
        made = [_malformed(rng, lines[t], TABLES[name]) for t in rng.integers(1, len(lines), k)]
        for slot, (line, reason) in zip(slots, made):
            lines.insert(slot + 1, line)
            bad.append({"file": path, "line": int(slot) + 2, "reason": reason})
    return bad


def _malformed(rng: np.random.Generator, line: str, table: Table) -> tuple[str, str]:
    """A broken copy of a valid line (cells never hold commas or quotes) and why it is bad."""
    cells = line.split(",")
    position = {column: i + 1 for i, column in enumerate(table.columns)}  # cell 0 is the index
    kinds = ("time", "key", "type", "width") if table.typed else ("time", "key", "width")
    kind = kinds[rng.integers(len(kinds))]
    if kind == "time":
        value = BAD_TIMES[rng.integers(len(BAD_TIMES))]
        cells[position[table.time]] = value
        return ",".join(cells), f"unparsable {table.time}: {value}"
    if kind == "key":
        cells[position[table.key]] = ""
        return ",".join(cells), f"missing {table.key}"
    if kind == "type":
        column = table.typed[rng.integers(len(table.typed))]
        value = BAD_INTEGERS[rng.integers(len(BAD_INTEGERS))]
        cells[position[column]] = value
        return ",".join(cells), f"not an integer in {column}: {value}"
    if rng.random() < 0.5:
        return ",".join(cells + [cells[-1]]), "extra cell"
    return ",".join(cells[:-1]), "missing cell"
