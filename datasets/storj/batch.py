"""Batch reference computation of the ``storj`` features.

``verify`` compares what the stream wrote to Redis with the output of this
module.  It is the reference the stream is tested against, so it is written
independently of ``stream/`` and ``contract/``: it reads the CSV dumps itself
and applies SPEC.md (sections 1, 4 and 5) and docs/readings.md with pandas.

    compute_storj(folder) -> {"user": {user_id: {field: value}},
                              "operator": {email_hash: {field: value}},
                              "stats": {"rows": …, "bad": …, "bad_reasons": …,
                                        "duplicates": …}}

Values are JSON-compatible: ints for bytes and counts, floats for currency and
seconds, ``YYYY-MM-DD`` dates, ``YYYY-MM`` months, ISO timestamps of naive UTC,
sorted lists, maps with sorted keys, ``None``.

The pipeline: read every table (text cells, bad rows out, normalise, drop
duplicates), resolve the entity tables (users, projects, nodes) to their
winning rows, aggregate usage per project, then per user, and nodes and
payments per operator.  Time is integer microseconds since the epoch (UTC).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from verify.csv_cells import read_csv_cells

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
SESSION_GAP_US = 7_200 * US_PER_SECOND
MIN_SESSION_US = 1 * US_PER_SECOND
FREE_BANDWIDTH_LIMIT = 50_000_000_000
AMOUNT_UNIT = 1_000_000
NEVER_CONTACTED_YEARS = (1970, 2070)
EPOCH = datetime(1970, 1, 1)
# Event times outside [0001-01-02, 9999-12-31) UTC are bad rows (a day off either end of the calendar).
ACCEPTED_FROM_US = (datetime(1, 1, 2) - EPOCH) // timedelta(microseconds=1)
ACCEPTED_UNTIL_US = (datetime(9999, 12, 31) - EPOCH) // timedelta(microseconds=1)
ORDER = "_order"  # (file order, row order) of a row within its table


@dataclass(frozen=True)
class Table:
    """A storj source table: its name, key, event time and typed columns."""

    name: str
    key: str
    time: str
    columns: tuple[str, ...]
    integers: tuple[str, ...] = ()


TABLES = {  # file name (after the region prefix) -> table
    "users_a": Table("users", "id", "created_at", ("id", "email_hash", "created_at")),
    "projects": Table(
        "projects", "project_id", "created_at",
        ("created_at", "project_id", "user_id", "usage_limit", "bandwidth_limit"),
        ("usage_limit", "bandwidth_limit"),
    ),
    "bbr": Table(
        "bbr", "project_id", "interval_start",
        ("interval_start", "action", "inline", "settled", "project_id"),
        ("action", "inline", "settled"),
    ),
    "bst": Table(
        "bst", "project_id", "interval_start",
        ("interval_start", "inline", "remote", "project_id"),
        ("inline", "remote"),
    ),
    "nodes_a": Table(
        "nodes", "id", "created_at",
        ("id", "wallet", "email_hash", "created_at", "last_contact_success",
         "disqualified", "suspended", "free_disk", "piece_count"),
        ("free_disk", "piece_count"),
    ),
    "node_payments": Table(
        "payments", "node_id", "period", ("period", "node_id", "amount"), ("amount",)
    ),
    "node_payments_receipt": Table(
        "receipts", "node_id", "period", ("period", "node_id", "amount", "receipt"), ("amount",)
    ),
}

_FILE_NAME = re.compile(r"[^_]+_(?P<file>.+)\.csv")
_TIMESTAMP = (
    r"(?a)\A(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,6}))?)?"
    r"(?P<zone>Z|(?P<sign>[+-])(?P<zone_hour>\d{2})(?::?(?P<zone_minute>\d{2}))?)?)?\Z"
)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


# --------------------------------------------------------------------------
# Entry point


def compute_storj(folder) -> dict:
    """Compute every storj user and operator feature over the CSV folder."""
    tables, stats = read_tables(Path(folder))
    users = _winning_rows(tables["users"], "id", "created_at")
    projects = _winning_rows(tables["projects"], "project_id", "created_at")
    nodes = _winning_rows(tables["nodes"], "id", "created_at")
    operators = _operator_features(nodes, tables["payments"], users)
    user_ids = set(tables["users"]["id"]) | set(tables["projects"]["user_id"].dropna())
    user_features = _user_features(sorted(user_ids), users, projects, tables, operators)
    return {"user": user_features, "operator": operators, "stats": stats}


# --------------------------------------------------------------------------
# Reading: files, bad rows, normalisation, duplicates


def read_tables(folder: Path) -> tuple[dict[str, pd.DataFrame], dict]:
    """Read, validate, normalise and de-duplicate every storj table."""
    files = _table_files(folder)
    tables = {}
    stats = {"rows": {}, "bad": {}, "bad_reasons": {}, "duplicates": {}}
    for table in TABLES.values():
        frame, rows, bad = _read_raw(files[table.name], table)
        frame, bad_reasons = _validate(frame, table, bad)
        duplicated = frame.drop(columns=ORDER).duplicated(keep="first")
        tables[table.name] = frame[~duplicated].reset_index(drop=True)
        stats["rows"][table.name] = rows
        stats["bad"][table.name] = sum(bad_reasons.values())
        stats["bad_reasons"][table.name] = dict(sorted(bad_reasons.items()))
        stats["duplicates"][table.name] = int(duplicated.sum())
    return tables, stats


def _table_files(folder: Path) -> dict[str, list[Path]]:
    """Table name -> its files, in sorted order of their path relative to folder."""
    candidates = [*folder.glob("*.csv"), *(folder / "bucket_data").glob("*.csv")]
    files = {table.name: [] for table in TABLES.values()}
    for path in sorted(candidates, key=lambda p: p.relative_to(folder).as_posix()):
        match = _FILE_NAME.fullmatch(path.name)
        if path.is_file() and match and match["file"] in TABLES:
            files[TABLES[match["file"]].name].append(path)
    return files


def _read_raw(paths: list[Path], table: Table) -> tuple[pd.DataFrame, int, Counter]:
    """Concatenate the table's files as text; count rows and unreadable lines."""
    frames, rows, bad = [], 0, Counter()
    for path in paths:
        frame, file_rows, file_bad = read_csv_cells(path, dtype="str")
        frames.append(frame)
        rows += file_rows
        bad += file_bad
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for column in table.columns:
        if column not in frame.columns:
            frame[column] = pd.Series(pd.NA, index=frame.index, dtype="str")
    frame[ORDER] = np.arange(len(frame), dtype=np.int64)
    return frame, rows, bad


def _validate(frame: pd.DataFrame, table: Table, bad: Counter) -> tuple[pd.DataFrame, Counter]:
    """Normalise the cells, drop bad rows and count them by reason."""
    frame = frame.where(frame != "")
    for column in frame.columns:
        if _is_normalised(column):
            frame[column] = _normalise_text(frame[column])
    bad_key = frame[table.key].isna()
    times = parse_times(frame[table.time])
    bad_time = ~bad_key & times.isna()
    bad_type = pd.Series(False, index=frame.index)
    for column in table.integers:
        frame[column], wrong = parse_integers(frame[column])
        bad_type |= wrong
    bad_type &= ~bad_key & ~bad_time
    reasons = bad + Counter(
        key=int(bad_key.sum()), time=int(bad_time.sum()), type=int(bad_type.sum())
    )
    good = ~(bad_key | bad_time | bad_type)
    frame = frame[good].copy()
    frame[table.time] = times[good].astype(np.int64)
    return frame, +reasons


def _is_normalised(column: str) -> bool:
    return column in ("id", "wallet", "receipt") or column.endswith(("_id", "_hash"))


def _normalise_text(values: pd.Series) -> pd.Series:
    """Lower-case and strip; a cell blank after stripping is null."""
    values = values.str.strip().str.lower()
    return values.where(values != "")


def parse_times(values: pd.Series) -> pd.Series:
    """Timestamps (readings.md forms) -> Int64 microseconds since the epoch, UTC.

    Null, blank and unparsable cells give <NA>.  Each distinct text is parsed
    once (dumps repeat their interval starts a lot).
    """
    codes, uniques = pd.factorize(values)
    micros, valid = _parse_distinct_times(pd.Series(uniques, dtype="str"))
    parsed = np.zeros(len(codes), dtype=bool)
    parsed[codes >= 0] = valid[codes[codes >= 0]]
    result = np.zeros(len(codes), dtype=np.int64)
    result[parsed] = micros[codes[parsed]]
    parsed &= (result >= ACCEPTED_FROM_US) & (result < ACCEPTED_UNTIL_US)
    return pd.Series(pd.arrays.IntegerArray(np.where(parsed, result, 0), ~parsed), index=values.index)


def _parse_distinct_times(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Timestamp texts -> (int64 microseconds, mask of the parsable ones)."""
    parts = values.str.strip().str.extract(_TIMESTAMP)
    day = pd.to_datetime(parts["date"], format="%Y-%m-%d", errors="coerce")
    days = day.to_numpy("datetime64[D]").astype(np.int64)
    number = {name: _digits(parts[name]) for name in
              ("hour", "minute", "second", "zone_hour", "zone_minute")}
    fraction = _digits(parts["fraction"].str.ljust(6, "0"))
    sign = np.where(parts["sign"].to_numpy(object) == "-", -1, 1)
    offset = (number["zone_hour"] * 3_600 + number["zone_minute"] * 60) * US_PER_SECOND * sign
    micros = (days * US_PER_DAY + number["hour"] * 3_600 * US_PER_SECOND
              + number["minute"] * 60 * US_PER_SECOND + number["second"] * US_PER_SECOND
              + fraction - offset)
    valid = (day.notna().to_numpy() & (number["hour"] < 24) & (number["minute"] < 60)
             & (number["second"] < 60) & (number["zone_hour"] < 24)
             & (number["zone_minute"] < 60))
    return micros, valid


def _digits(values: pd.Series) -> np.ndarray:
    """Optional digit groups -> int64, missing as 0."""
    return pd.to_numeric(values, errors="coerce").fillna(0).to_numpy(np.int64)


def parse_integers(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Text -> (Int64 values, mask of the cells that are not integers).

    Each distinct text is parsed once; null cells are <NA> and not wrong.
    """
    codes, uniques = pd.factorize(values)
    parsed = [_integer(text) for text in uniques.tolist()]
    # One extra slot at the end: code -1 (a null cell) picks it.
    wrong = np.array([item is _NOT_INTEGER for item in parsed] + [False])[codes]
    known = np.array([isinstance(item, int) for item in parsed] + [False])[codes]
    numbers = np.array([item if isinstance(item, int) else 0 for item in parsed] + [0],
                       dtype=np.int64)[codes]
    integers = pd.arrays.IntegerArray(numbers, ~known)
    return pd.Series(integers, index=values.index), pd.Series(wrong, index=values.index)


_NOT_INTEGER = object()


def _integer(text: str):
    """One cell -> int, None (blank) or _NOT_INTEGER.

    Accepted: an optional sign and digits, or a float spelling of an integer
    (``12.0``, ``1e3``), with surrounding blanks.  Values beyond int64 are not
    integers here.
    """
    text = text.strip()
    if not text:
        return None
    if len(text) > 4_000:  # far beyond int64, and int() refuses over 4,300 digits
        return _NOT_INTEGER
    if _INTEGER.fullmatch(text):
        number = int(text)
    elif _FLOAT.fullmatch(text) and float(text).is_integer():
        number = int(float(text))
    else:
        return _NOT_INTEGER
    return number if _INT64_MIN <= number <= _INT64_MAX else _NOT_INTEGER


# --------------------------------------------------------------------------
# Entity tables


def _winning_rows(frame: pd.DataFrame, key: str, time: str) -> pd.DataFrame:
    """The row per key with the greatest event time; ties: the later row."""
    ordered = frame.sort_values([key, time, ORDER], kind="stable")
    return ordered.drop_duplicates(key, keep="last").reset_index(drop=True)


# --------------------------------------------------------------------------
# Operators


def _operator_features(nodes: pd.DataFrame, payments: pd.DataFrame,
                       users: pd.DataFrame) -> dict[str, dict]:
    """One operator per non-null email_hash of the current nodes."""
    nodes = nodes[nodes["email_hash"].notna()]
    flagged = nodes.assign(
        never_contacted=_never_contacted(nodes["last_contact_success"]),
        disqualified=_non_blank(nodes["disqualified"]),
        suspended=_non_blank(nodes["suspended"]),
    )
    counts = flagged.groupby("email_hash").agg(
        nodes=("id", "nunique"),
        never_contacted_nodes=("never_contacted", "sum"),
        disqualified_nodes=("disqualified", "sum"),
        suspended_nodes=("suspended", "sum"),
        free_disk_bytes=("free_disk", "sum"),
        piece_count=("piece_count", "sum"),
    )
    paid = payments.merge(nodes[["id", "email_hash"]], left_on="node_id", right_on="id")
    totals = paid.groupby("email_hash")["amount"].sum()
    counts["paid_total"] = totals.reindex(counts.index, fill_value=0)
    wallets = _sorted_lists(nodes, "email_hash", "wallet")
    paid_by_month = _maps_by_month(paid, "email_hash", "period", "amount")
    linked_users = _sorted_lists(users, "email_hash", "id")
    return {
        email: {
            "nodes": fields["nodes"],
            "wallets": wallets.get(email, []),
            "never_contacted_nodes": fields["never_contacted_nodes"],
            "disqualified_nodes": fields["disqualified_nodes"],
            "suspended_nodes": fields["suspended_nodes"],
            "free_disk_bytes": fields["free_disk_bytes"],
            "piece_count": fields["piece_count"],
            "paid_by_month": {month: _currency(total)
                              for month, total in paid_by_month.get(email, {}).items()},
            "paid_total": _currency(fields["paid_total"]),
            "users": linked_users.get(email, []),
        }
        for email, fields in _records(counts).items()
    }


def _never_contacted(last_contact: pd.Series) -> pd.Series:
    """Null, blank, unparsable, or an instant in 1970 or 2070 (UTC)."""
    micros = parse_times(last_contact)
    years = _years(micros.fillna(0).to_numpy(np.int64))
    return micros.isna() | pd.Series(np.isin(years, NEVER_CONTACTED_YEARS), index=micros.index)


def _non_blank(values: pd.Series) -> pd.Series:
    return values.notna() & (values.str.strip() != "")


def _currency(millionths: int) -> float:
    """Integer millionths -> currency units, rounded to 6 decimals."""
    return round(int(millionths) / AMOUNT_UNIT, 6)


# --------------------------------------------------------------------------
# Users


def _user_features(user_ids: list[str], users: pd.DataFrame, projects: pd.DataFrame,
                   tables: dict[str, pd.DataFrame], operators: dict) -> dict[str, dict]:
    """Every user snapshot: users row, current projects, usage, operator link."""
    owned = projects[projects["user_id"].notna()]
    owner = owned[["project_id", "user_id"]]
    bbr = tables["bbr"].merge(owner, on="project_id")
    bst = tables["bst"].merge(owner, on="project_id")
    features = {user_id: _empty_user() for user_id in user_ids}
    for fields_by_user in (_users_rows(users), _project_fields(owned), _activity_fields(bbr),
                           _usage_fields(_project_usage(owned, bbr, bst)),
                           _over_bandwidth_fields(bbr, owned)):
        for user_id, fields in fields_by_user.items():
            features[user_id].update(fields)
    for fields in features.values():
        fields.update(_operator_link(operators.get(fields["email_hash"])))
    return features


def _empty_user() -> dict:
    return {
        "email_hash": None, "created_at": None,
        "projects": 0, "project_created_dates": [], "tier": "free",
        "bandwidth_limit_bytes": 0, "usage_limit_bytes": 0,
        "uploads": 0, "downloads": 0,
        "upload_bytes_by_month": {}, "download_bytes_by_month": {},
        "first_activity_at": None, "last_activity_at": None,
        "storage_bytes": 0, "storage_updated_at": None,
        "over_bandwidth_months": [], "over_storage_limit": False,
        "usage_sessions_count": 0, "usage_sessions_seconds": 0.0,
    }


def _operator_link(operator: dict | None) -> dict:
    if operator is None:
        return {"operator_nodes": 0, "operator_paid_by_month": {}, "operator_paid_total": 0.0}
    return {
        "operator_nodes": operator["nodes"],
        "operator_paid_by_month": dict(operator["paid_by_month"]),
        "operator_paid_total": operator["paid_total"],
    }


def _users_rows(users: pd.DataFrame) -> dict[str, dict]:
    """email_hash and created_at (a date) of each winning users row."""
    dates = _dates(users["created_at"])
    return {user_id: {"email_hash": None if pd.isna(email) else email, "created_at": date}
            for user_id, email, date in zip(users["id"], users["email_hash"], dates)}


def _project_fields(owned: pd.DataFrame) -> dict[str, dict]:
    """Count, creation dates, tier and limits of each user's current projects."""
    owned = owned.assign(
        date=_dates(owned["created_at"]),
        paid=owned["bandwidth_limit"].fillna(0) > FREE_BANDWIDTH_LIMIT,
        bandwidth=owned["bandwidth_limit"].fillna(0),
        usage=owned["usage_limit"].fillna(0),
    )
    sums = owned.groupby("user_id").agg(
        projects=("project_id", "size"), paid=("paid", "any"),
        bandwidth_limit_bytes=("bandwidth", "sum"), usage_limit_bytes=("usage", "sum"),
    )
    dates = _sorted_lists(owned, "user_id", "date")
    return {
        user_id: {
            "projects": fields["projects"],
            "project_created_dates": dates[user_id],
            "tier": "paid" if fields["paid"] else "free",
            "bandwidth_limit_bytes": fields["bandwidth_limit_bytes"],
            "usage_limit_bytes": fields["usage_limit_bytes"],
        }
        for user_id, fields in _records(sums).items()
    }


def _activity_fields(bbr: pd.DataFrame) -> dict[str, dict]:
    """Counts, monthly bytes and activity span over the bbr rows of each user."""
    bbr = bbr.assign(upload=bbr["action"].eq(1).fillna(False),
                     download=bbr["action"].eq(2).fillna(False))
    activity = bbr.groupby("user_id").agg(
        uploads=("upload", "sum"), downloads=("download", "sum"),
        first=("interval_start", "min"), last=("interval_start", "max"),
    )
    upload_bytes = _maps_by_month(bbr[bbr["upload"]], "user_id", "interval_start", "settled")
    download_bytes = _maps_by_month(bbr[bbr["download"]], "user_id", "interval_start", "settled")
    return {
        user_id: {
            "uploads": fields["uploads"],
            "downloads": fields["downloads"],
            "upload_bytes_by_month": upload_bytes.get(user_id, {}),
            "download_bytes_by_month": download_bytes.get(user_id, {}),
            "first_activity_at": _iso(fields["first"]),
            "last_activity_at": _iso(fields["last"]),
        }
        for user_id, fields in _records(activity).items()
    }


def _project_usage(owned: pd.DataFrame, bbr: pd.DataFrame, bst: pd.DataFrame) -> pd.DataFrame:
    """Per current project: its user, storage, storage limit check and sessions."""
    usage = owned.set_index("project_id")[["user_id", "usage_limit"]]
    usage = usage.join(_latest_storage(bst)).join(_usage_sessions(bbr))
    usage["storage"] = usage["storage"].fillna(0)
    usage["over_storage"] = (usage["storage"] > usage["usage_limit"]).fillna(False)
    return usage.fillna({"sessions": 0, "session_us": 0})


def _latest_storage(bst: pd.DataFrame) -> pd.DataFrame:
    """Per project: sum of remote over its bst rows at its latest interval_start."""
    latest = bst.groupby("project_id")["interval_start"].transform("max")
    at_latest = bst[bst["interval_start"] == latest]
    storage = at_latest.groupby("project_id").agg(
        storage=("remote", "sum"), storage_at=("interval_start", "max")
    )
    return storage.astype("Int64")


def _usage_sessions(bbr: pd.DataFrame) -> pd.DataFrame:
    """Per project: number and total duration (µs) of kept usage sessions."""
    points = bbr[["project_id", "interval_start"]].drop_duplicates()
    points = points.sort_values(["project_id", "interval_start"])
    projects = points["project_id"].to_numpy(object)
    times = points["interval_start"].to_numpy(np.int64)
    starts = np.ones(len(times), dtype=bool)
    starts[1:] = (projects[1:] != projects[:-1]) | (np.diff(times) > SESSION_GAP_US)
    spans = points.groupby(np.cumsum(starts)).agg(
        project_id=("project_id", "first"), first=("interval_start", "min"),
        last=("interval_start", "max"),
    )
    spans["duration"] = spans["last"] - spans["first"]
    kept = spans[spans["duration"] >= MIN_SESSION_US]
    sessions = kept.groupby("project_id").agg(sessions=("duration", "size"),
                                              session_us=("duration", "sum"))
    return sessions.astype("Int64")


def _usage_fields(usage: pd.DataFrame) -> dict[str, dict]:
    """Storage and sessions of the projects, summed over each user."""
    totals = usage.groupby("user_id").agg(
        storage=("storage", "sum"), storage_at=("storage_at", "max"),
        over_storage=("over_storage", "any"),
        sessions=("sessions", "sum"), session_us=("session_us", "sum"),
    )
    return {
        user_id: {
            "storage_bytes": fields["storage"],
            "storage_updated_at": None if fields["storage_at"] is pd.NA
            else _iso(fields["storage_at"]),
            "over_storage_limit": fields["over_storage"],
            "usage_sessions_count": fields["sessions"],
            "usage_sessions_seconds": fields["session_us"] / US_PER_SECOND,
        }
        for user_id, fields in _records(totals).items()
    }


def _over_bandwidth_fields(bbr: pd.DataFrame, owned: pd.DataFrame) -> dict[str, dict]:
    """Months in which some project's download settled sum exceeds its limit."""
    downloads = bbr[bbr["action"].eq(2).fillna(False)]
    monthly = downloads.assign(month=_months(downloads["interval_start"]))
    monthly = monthly.groupby(["project_id", "user_id", "month"])["settled"].sum().reset_index()
    limit = monthly["project_id"].map(owned.set_index("project_id")["bandwidth_limit"])
    over = monthly[(monthly["settled"] > limit).fillna(False)]
    months = _sorted_lists(over, "user_id", "month")
    return {user_id: {"over_bandwidth_months": values} for user_id, values in months.items()}


# --------------------------------------------------------------------------
# Shared helpers: months, dates, timestamps


def _records(frame: pd.DataFrame) -> dict:
    """index -> {column: Python value} (ints, bools, <NA>) of an aggregate frame."""
    columns = {name: frame[name].tolist() for name in frame.columns}
    return {key: {name: values[row] for name, values in columns.items()}
            for row, key in enumerate(frame.index.tolist())}


def _sorted_lists(frame: pd.DataFrame, entity: str, value: str) -> dict[str, list]:
    """entity -> sorted distinct non-null values."""
    pairs = frame[[entity, value]].dropna().drop_duplicates().sort_values([entity, value])
    lists: dict[str, list] = {}
    for key, item in zip(pairs[entity].tolist(), pairs[value].tolist()):
        lists.setdefault(key, []).append(item)
    return lists


def _maps_by_month(frame: pd.DataFrame, entity: str, time: str, value: str) -> dict:
    """entity -> {month: sum of value (null adds 0)}, months sorted."""
    sums = frame.assign(month=_months(frame[time])).groupby([entity, "month"])[value].sum()
    maps: dict[str, dict] = {}
    for (key, month), total in zip(sums.index.tolist(), sums.tolist()):
        maps.setdefault(key, {})[month] = total
    return maps


def _months(micros: pd.Series) -> np.ndarray:
    """``YYYY-MM`` of each instant, as Python strings."""
    return _calendar(micros, "datetime64[M]")


def _dates(micros: pd.Series) -> np.ndarray:
    """``YYYY-MM-DD`` of each instant, as Python strings."""
    return _calendar(micros, "datetime64[D]")


def _calendar(micros: pd.Series, unit: str) -> np.ndarray:
    instants = micros.to_numpy(np.int64).astype("datetime64[us]")
    return instants.astype(unit).astype(str).astype(object)


def _years(micros: np.ndarray) -> np.ndarray:
    return micros.astype("datetime64[us]").astype("datetime64[Y]").astype(np.int64) + 1970


def _iso(micros) -> str:
    return (EPOCH + timedelta(microseconds=int(micros))).isoformat()
