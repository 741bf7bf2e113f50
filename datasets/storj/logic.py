"""Incremental state of the storj dataset: projects, nodes, accounts, operators, users.

The stream keys work the way Kafka Streams does a foreign-key join
(docs/architecture.md):

    projects+bbr+bst (key project_id) --project summary--> user (key user_id)
    nodes+payments   (key node_id)    --node summary-----> operator (key email_hash)
    users            (key id)         --account----------> user
                                      --link-------------> operator
    operator                          --operator summary-> user (each linked user)

Each stage's state for one key is a plain JSON-able dict (it is what the
changelog stores). The functions here apply a batch of normalised rows
(`contract.rows.Row`) to one key's state and say what to send on. Summaries
carry a per-source sequence number: a receiver keeps the newest per source, so
a redelivered or reordered summary is harmless. Nothing here knows Kafka.
"""
from __future__ import annotations

from contract.timeutil import US_PER_S, date_of, format_ts, parse_ts_or_none, year_of
from stream.logic.dedup import DayBucketedIds
from stream.logic.sequence import next_seq
from stream.logic.sessions import SessionWindow

FREE_BANDWIDTH_LIMIT = 50_000_000_000
USAGE_SESSION_GAP_US = 7_200 * US_PER_S


def _newer(row_ts: int, current: dict | None) -> bool:
    """Upsert rule: the greatest event time wins; on equal times the later arrival wins."""
    return current is None or row_ts >= current["ts"]


def _add(total: int | None, value: int | None) -> int:
    return (total or 0) + (value or 0)


def _dedup(state: dict, rows, seen: DayBucketedIds) -> list:
    """The rows whose eid this key has not applied yet (the first one counts), counted as events.

    The ids live in their own store (`stream.logic.dedup`), not in `state`: the state stays the size
    of what the key needs now, whatever its history."""
    new = seen.first_seen(state, rows)
    state["events"] = state.get("events", 0) + len(new)
    return new


# --------------------------------------------------------------------------- projects


def new_project() -> dict:
    return {"row": None, "seq": 0, "announced": [], "up": 0, "down": 0, "up_m": {}, "down_m": {},
            "first": None, "last": None, "st_ts": None, "st_sum": 0, "sess": None, "sess_n": 0, "sess_us": 0,
            "late": 0}


def apply_project_rows(state: dict, table: str, rows, seen: DayBucketedIds) -> None:
    """Fold projects/bbr/bst rows of one project into its state (`seen`: the project's applied ids)."""
    window = None
    for row in _dedup(state, rows, seen):
        values = row.values
        if table == "projects":
            if _newer(row.ts, state["row"]):
                state["row"] = {"ts": row.ts, "user_id": values.get("user_id"),
                                "usage_limit": values.get("usage_limit"),
                                "bandwidth_limit": values.get("bandwidth_limit")}
            user = values.get("user_id")
            if user is not None and user not in state["announced"]:
                state["announced"].append(user)
        elif table == "bbr":
            _apply_bandwidth(state, row)
            if window is None:
                window = _usage_window(state)
            if not window.add(row.ts):
                state["late"] += 1
        elif table == "bst":
            _apply_storage(state, row)
    if window is not None:
        _count_closed(state, window.close_due())
        state["sess"] = window.to_state()


def _apply_bandwidth(state: dict, row) -> None:
    action, settled, month = row.values.get("action"), row.values.get("settled"), row.values["interval_start"][:7]
    if action == 1:
        state["up"] += 1
        state["up_m"][month] = _add(state["up_m"].get(month), settled)
    elif action == 2:
        state["down"] += 1
        state["down_m"][month] = _add(state["down_m"].get(month), settled)
    state["first"] = row.ts if state["first"] is None else min(state["first"], row.ts)
    state["last"] = row.ts if state["last"] is None else max(state["last"], row.ts)


def _apply_storage(state: dict, row) -> None:
    remote = row.values.get("remote")
    if state["st_ts"] is None or row.ts > state["st_ts"]:
        state["st_ts"], state["st_sum"] = row.ts, remote or 0
    elif row.ts == state["st_ts"]:
        state["st_sum"] += remote or 0


def _usage_window(state: dict) -> SessionWindow:
    """The project's usage sessions: only their number and durations count, so the window keeps bounds."""
    if state["sess"] is None:
        return SessionWindow(USAGE_SESSION_GAP_US, keep_events=False)
    return SessionWindow.from_state(state["sess"], gap_us=USAGE_SESSION_GAP_US, keep_events=False)


def _count_closed(state: dict, closed) -> None:
    for session in closed:
        if session.kept:
            state["sess_n"] += 1
            state["sess_us"] += session.duration_us


def _pending_sessions(state: dict) -> tuple[int, int]:
    """Kept sessions still open (they count already; closing them changes nothing)."""
    return _usage_window(state).pending_kept() if state["sess"] else (0, 0)


def close_project_windows(state: dict) -> None:
    """End of a replay: every usage session becomes final."""
    if state["sess"] is None:
        return
    window = _usage_window(state)
    _count_closed(state, window.close_all())
    state["sess"] = window.to_state()


def project_outbox(state: dict, project_id: str) -> list[tuple[str, dict]]:
    """Records for the user stage: (user_id, record). Empty while the project row is unknown."""
    row = state["row"]
    if row is None:
        return []
    state["seq"] = next_seq(state["seq"])
    owner = row["user_id"]
    out = []
    # Retract from every user the project ever named but its owner, every time: a retraction lost in a
    # crash (its state already written) is sent again with the next emission.
    for user in state["announced"]:
        if user != owner:
            out.append((user, {"k": "project", "id": project_id, "seq": state["seq"], "owner": owner}))
    if owner is not None:
        out.append((owner, {"k": "project", "id": project_id, "seq": state["seq"], "owner": owner,
                            **project_summary(state)}))
    return out


def project_summary(state: dict) -> dict:
    row = state["row"]
    bandwidth_limit, usage_limit = row["bandwidth_limit"], row["usage_limit"]
    over_months = []
    if bandwidth_limit is not None:
        over_months = sorted(m for m, total in state["down_m"].items() if total > bandwidth_limit)
    pending_n, pending_us = _pending_sessions(state)
    return {
        "created": date_of(row["ts"]), "usage_limit": usage_limit, "bandwidth_limit": bandwidth_limit,
        "up": state["up"], "down": state["down"], "up_m": state["up_m"], "down_m": state["down_m"],
        "first": state["first"], "last": state["last"], "st_ts": state["st_ts"], "st_sum": state["st_sum"],
        "over_months": over_months,
        "over_storage": usage_limit is not None and state["st_sum"] > usage_limit,
        "sess_n": state["sess_n"] + pending_n, "sess_us": state["sess_us"] + pending_us,
        "events": state.get("events", 0),
    }


# --------------------------------------------------------------------------- nodes


def new_node() -> dict:
    return {"row": None, "seq": 0, "owners": [], "paid": {}}


def apply_node_rows(state: dict, table: str, rows, seen: DayBucketedIds) -> None:
    for row in _dedup(state, rows, seen):
        values = row.values
        if table == "nodes":
            if _newer(row.ts, state["row"]):
                state["row"] = {"ts": row.ts, **{c: values.get(c) for c in (
                    "email_hash", "wallet", "last_contact_success", "disqualified", "suspended",
                    "free_disk", "piece_count")}}
        elif table == "payments":
            month = values["period"][:7]  # the canonical ISO time: YYYY-MM first
            state["paid"][month] = _add(state["paid"].get(month), values.get("amount"))
        # receipts feed no feature: they are only de-duplicated and counted


def _filled(value) -> bool:
    """A non-blank cell (disqualified / suspended hold a date when they apply)."""
    return value is not None and str(value).strip() != ""


def _never_contacted(value) -> bool:
    ts = parse_ts_or_none(value)
    return ts is None or year_of(ts) in (1970, 2070)


def node_outbox(state: dict, node_id: str) -> list[tuple[str, dict]]:
    """Records for the operator stage: (email_hash, record)."""
    row = state["row"]
    if row is None:
        return []
    state["seq"] = next_seq(state["seq"])
    email = row["email_hash"]
    out = []
    owners = state.setdefault("owners", [])  # every email the node ever had: retract from all but the current
    if email is not None and email not in owners:
        owners.append(email)
    for past in owners:
        if past != email:
            out.append((past, {"k": "node", "id": node_id, "seq": state["seq"], "owner": email}))
    if email is not None:
        out.append((email, {
            "k": "node", "id": node_id, "seq": state["seq"], "owner": email, "ts": row["ts"], "wallet": row["wallet"],
            "never_contacted": _never_contacted(row["last_contact_success"]),
            "disqualified": _filled(row["disqualified"]), "suspended": _filled(row["suspended"]),
            "free_disk": row["free_disk"], "piece_count": row["piece_count"], "paid": state["paid"],
            "events": state.get("events", 0),
        }))
    return out


# --------------------------------------------------------------------------- accounts (users rows)


def new_account() -> dict:
    return {"row": None, "seq": 0, "emails": []}


def apply_account_rows(state: dict, rows, seen: DayBucketedIds) -> bool:
    """Upsert user rows; True when something new was applied."""
    changed = False
    for row in _dedup(state, rows, seen):
        changed = True
        if _newer(row.ts, state["row"]):
            state["row"] = {"ts": row.ts, "email_hash": row.values.get("email_hash")}
    return changed


def account_outbox(state: dict, user_id: str) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    """(records for the user stage, link records for the operator stage)."""
    row = state["row"]
    state["seq"] = next_seq(state["seq"])
    seq, email = state["seq"], row["email_hash"]
    to_users = [(user_id, {"k": "account", "seq": seq, "email_hash": email, "created_at": date_of(row["ts"]),
                           "events": state.get("events", 0)})]
    to_operators = []
    linked = state.setdefault("emails", [])  # every email the user ever had: unlink from all but the current
    if email is not None and email not in linked:
        linked.append(email)
    for past in linked:
        to_operators.append((past, {"k": "link", "user": user_id, "seq": seq, "email": email}))
    return to_users, to_operators


# --------------------------------------------------------------------------- operators


def new_operator() -> dict:
    """Totals over the operator's current nodes; each node's last summary is kept apart (`OperatorNodes`),
    so the state stays the same size however many nodes the operator runs."""
    return {"nodes": 0, "wallets": {}, "never_contacted": 0, "disqualified": 0, "suspended": 0, "free_disk": 0,
            "piece_count": 0, "paid": {}, "events": 0, "wm": None,
            "users": [], "user_seq": {}, "ver": 0}


class OperatorNodes:
    """One operator's nodes, one entry each in a store beside the operator's state (`keyvalue.KeyValue`):
    {"seq": newest summary applied, "node": that summary while the node is the operator's, else None}.

    Names end with the email and carry the node id's length, so no two (node, email) pairs share one."""

    def __init__(self, store, email: str):
        self.store, self.email = store, email

    def _name(self, node_id: str) -> str:
        return f"{len(node_id)}:{node_id}|{self.email}"

    def get(self, node_id: str) -> dict:
        return self.store.get(self._name(node_id)) or {"seq": 0, "node": None}

    def put(self, node_id: str, entry: dict) -> None:
        self.store.put(self._name(node_id), entry)


def _count_node(state: dict, node: dict, sign: int) -> None:
    """Add (sign 1) or take away (sign -1) one node summary from the operator's totals."""
    state["nodes"] += sign
    wallet = node["wallet"]
    if wallet is not None:
        count = state["wallets"].get(wallet, 0) + sign
        if count:
            state["wallets"][wallet] = count
        else:
            del state["wallets"][wallet]
    for flag in ("never_contacted", "disqualified", "suspended"):
        state[flag] += sign * bool(node[flag])
    state["free_disk"] += sign * (node["free_disk"] or 0)
    state["piece_count"] += sign * (node["piece_count"] or 0)
    paid = state["paid"]  # month -> [total, nodes with that month]: a month stays while a node has it
    for month, amount in node["paid"].items():
        total, count = paid.get(month, (0, 0))
        if count + sign:
            paid[month] = [total + sign * amount, count + sign]
        else:
            del paid[month]
    state["events"] += sign * node.get("events", 0)


def apply_operator_records(state: dict, email: str, records, nodes: OperatorNodes) -> list[str]:
    """Apply node summaries and user links; return the users newly linked."""
    users = set(state["users"])
    newly_linked = []
    for record in records:
        if record["k"] == "node":
            node_id, seq = record["id"], record["seq"]
            entry = nodes.get(node_id)
            if seq <= entry["seq"]:
                continue
            if entry["node"] is not None:
                _count_node(state, entry["node"], -1)
            current = record if record["owner"] == email else None
            if current is not None:
                _count_node(state, current, 1)
                if record.get("ts") is not None and (state["wm"] is None or record["ts"] > state["wm"]):
                    state["wm"] = record["ts"]
            nodes.put(node_id, {"seq": seq, "node": current})
            continue
        source, seq = record["user"], record["seq"]
        if seq <= state["user_seq"].get(source, 0):
            continue
        state["user_seq"][source] = seq
        if record["email"] == email:
            if source not in users:
                users.add(source)
                newly_linked.append(source)
        else:
            users.discard(source)
    state["users"] = sorted(users)
    return newly_linked


def _money(micros: int) -> float:
    return round(micros / 1_000_000, 6)


def _paid_by_month(state: dict) -> dict:
    return {m: _money(total) for m, (total, _) in sorted(state["paid"].items())}


def _paid_total(state: dict) -> float:
    return _money(sum(total for total, _ in state["paid"].values()))


def operator_features(state: dict) -> dict | None:
    """The operator snapshot (SPEC §4), or None when it has no current node."""
    if not state["nodes"]:
        return None
    return {
        "nodes": state["nodes"],
        "wallets": sorted(state["wallets"]),
        "never_contacted_nodes": state["never_contacted"],
        "disqualified_nodes": state["disqualified"],
        "suspended_nodes": state["suspended"],
        "free_disk_bytes": state["free_disk"],
        "piece_count": state["piece_count"],
        "paid_by_month": _paid_by_month(state),
        "paid_total": _paid_total(state),
        "users": list(state["users"]),
    }


def operator_summary(state: dict, email: str) -> dict:
    """What every linked user shows of its operator."""
    return {"k": "operator", "email_hash": email, "seq": state["ver"], "nodes": state["nodes"],
            "paid_by_month": _paid_by_month(state), "paid_total": _paid_total(state)}


def operator_events(state: dict) -> int:
    return state["events"]


def operator_watermark(state: dict) -> int | None:
    """The newest event time of a node summary the operator applied (it does not go back when a node
    leaves)."""
    return state["wm"]


# --------------------------------------------------------------------------- users


def new_user() -> dict:
    return {"account": None, "account_seq": 0, "projects": {}, "project_seq": {}, "ops": {}, "ver": 0}


def apply_user_records(state: dict, records) -> None:
    for record in records:
        kind = record["k"]
        if kind == "account":
            if record["seq"] > state["account_seq"]:
                state["account_seq"] = record["seq"]
                state["account"] = record
        elif kind == "project":
            pid = record["id"]
            if record["seq"] <= state["project_seq"].get(pid, 0):
                continue
            state["project_seq"][pid] = record["seq"]
            if "up" in record:
                state["projects"][pid] = record
            else:
                state["projects"].pop(pid, None)
        elif kind == "operator":
            current = state["ops"].get(record["email_hash"])
            if current is None or record["seq"] > current["seq"]:
                state["ops"][record["email_hash"]] = record


def _merge_months(maps) -> dict:
    merged: dict[str, int] = {}
    for months in maps:
        for month, total in months.items():
            merged[month] = merged.get(month, 0) + total
    return dict(sorted(merged.items()))


def user_features(state: dict) -> dict:
    account = state["account"]
    projects = list(state["projects"].values())
    email = account["email_hash"] if account else None
    operator = state["ops"].get(email) if email is not None else None
    firsts = [p["first"] for p in projects if p["first"] is not None]
    lasts = [p["last"] for p in projects if p["last"] is not None]
    storage_times = [p["st_ts"] for p in projects if p["st_ts"] is not None]
    return {
        "email_hash": email,
        "created_at": account["created_at"] if account else None,
        "projects": len(projects),
        "project_created_dates": sorted({p["created"] for p in projects}),
        "tier": "free" if all((p["bandwidth_limit"] or 0) <= FREE_BANDWIDTH_LIMIT for p in projects) else "paid",
        "bandwidth_limit_bytes": sum(p["bandwidth_limit"] or 0 for p in projects),
        "usage_limit_bytes": sum(p["usage_limit"] or 0 for p in projects),
        "uploads": sum(p["up"] for p in projects),
        "downloads": sum(p["down"] for p in projects),
        "upload_bytes_by_month": _merge_months(p["up_m"] for p in projects),
        "download_bytes_by_month": _merge_months(p["down_m"] for p in projects),
        "first_activity_at": format_ts(min(firsts)) if firsts else None,
        "last_activity_at": format_ts(max(lasts)) if lasts else None,
        "storage_bytes": sum(p["st_sum"] for p in projects if p["st_ts"] is not None),
        "storage_updated_at": format_ts(max(storage_times)) if storage_times else None,
        "over_bandwidth_months": sorted({m for p in projects for m in p["over_months"]}),
        "over_storage_limit": any(p["over_storage"] for p in projects),
        "usage_sessions_count": sum(p["sess_n"] for p in projects),
        "usage_sessions_seconds": sum(p["sess_us"] for p in projects) / US_PER_S,
        "operator_nodes": operator["nodes"] if operator else 0,
        "operator_paid_by_month": operator["paid_by_month"] if operator else {},
        "operator_paid_total": operator["paid_total"] if operator else 0.0,
    }


def user_events(state: dict) -> int:
    account_events = state["account"].get("events", 0) if state["account"] else 0
    return account_events + sum(p.get("events", 0) for p in state["projects"].values())
