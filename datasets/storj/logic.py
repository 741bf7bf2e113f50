"""Incremental state of the storj dataset: projects, nodes, accounts, operators, users.

The stream keys work the way Kafka Streams does a foreign-key join
(docs/architecture.md):

    projects+bbr+bst (key project_id) --project summary--> user (key user_id)
    nodes+payments   (key node_id)    --node summary-----> operator (key email_hash)
    users            (key id)         --account----------> user
                                      --link-------------> operator
    operator                          --operator summary-> user (each linked user)

Each stage's state for one key is a typed record (a msgspec Struct: `ProjectState`, `NodeState`,
`AccountState`, `OperatorState`, `UserState`) whose JSON is what the changelog stores: the fields have
names that say what they hold, the JSON keys stay the short ones of the changelog (`uploads` is "up").
The records the stages send each other are typed too (`ProjectSummary`, `NodeSummary`,
`AccountSummary`, `AccountLink`, `OperatorSummary`), one tagged union on the JSON key "k". What the
runtime keeps per key (partition, write count, version, ...) is not part of these types: the state
store keeps it beside them (stream.runtime.store).

The functions here apply a batch of normalised rows (`contract.rows.Row`) to one key's state and say
what to send on. Summaries carry a per-source sequence number: a receiver keeps the newest per source,
so a redelivered or reordered summary is harmless. Nothing here knows Kafka.
"""
from __future__ import annotations

from typing import Any, Union

import msgspec
from msgspec import UNSET, Struct, field

from contract.timeutil import US_PER_S, format_ts, parse_ts_or_none, to_datetime, year_of
from stream.logic.dedup import DayBucketedIds, DedupState
from stream.logic.sequence import next_seq
from stream.logic.sessions import SessionWindow

FREE_BANDWIDTH_LIMIT = 50_000_000_000
USAGE_SESSION_GAP_US = 7_200 * US_PER_S

Scalar = Union[str, int, float, bool, None]  # a column read leniently (contract.tables: scalar_cols)

# The figures of a summary that retracts (a project or node that left its owner) are absent from its
# JSON, as they always were: UNSET, which msgspec leaves out. They are typed as a full summary's so
# that code reading stored summaries (always full ones) needs no narrowing; `retracts` tells them apart.
ABSENT: Any = UNSET


# --------------------------------------------------------------------------- records between stages


class _Record(Struct, tag_field="k"):
    """A record one storj stage sends another; its kind is the JSON key "k"."""


class ProjectSummary(_Record, tag="project"):
    """A project's figures for its owner, or, without them (`retracts`), a word to a user the project
    once named that it is no longer theirs."""

    id: str
    seq: int
    owner: str | None
    created: str = ABSENT  # the date of the newest projects row
    usage_limit: int | None = ABSENT
    bandwidth_limit: int | None = ABSENT
    uploads: int = field(name="up", default=ABSENT)
    downloads: int = field(name="down", default=ABSENT)
    monthly_upload_bytes: dict[str, int] = field(name="up_m", default=ABSENT)
    monthly_download_bytes: dict[str, int] = field(name="down_m", default=ABSENT)
    first_usage_at: int | None = field(name="first", default=ABSENT)
    last_usage_at: int | None = field(name="last", default=ABSENT)
    storage_at: int | None = field(name="st_ts", default=ABSENT)  # the newest storage tally's time
    storage_bytes: int = field(name="st_sum", default=ABSENT)  # the sum of the tallies at that time
    months_over_bandwidth: list[str] = field(name="over_months", default=ABSENT)
    over_storage_limit: bool = field(name="over_storage", default=ABSENT)
    usage_sessions: int = field(name="sess_n", default=ABSENT)  # kept ones, the open ones included
    usage_session_us: int = field(name="sess_us", default=ABSENT)
    events: int = ABSENT

    @property
    def retracts(self) -> bool:
        return self.uploads is UNSET


class NodeSummary(_Record, tag="node"):
    """A node's figures for its operator (the email it names), or, without them (`retracts`), a word to
    an email the node once named."""

    id: str
    seq: int
    owner: str | None
    ts: int = ABSENT  # of the newest nodes row
    wallet: str | None = ABSENT
    never_contacted: bool = ABSENT
    disqualified: bool = ABSENT
    suspended: bool = ABSENT
    free_disk: int | None = ABSENT
    piece_count: int | None = ABSENT
    monthly_paid: dict[str, int] = field(name="paid", default=ABSENT)  # micros by month
    events: int = ABSENT

    @property
    def retracts(self) -> bool:
        return self.never_contacted is UNSET


class AccountSummary(_Record, tag="account"):
    """A user's own row, for the user stage."""

    seq: int
    email_hash: str | None
    created_at: str
    events: int


class AccountLink(_Record, tag="link"):
    """Which email a user has now, for the operator of each email the user ever had."""

    user: str
    seq: int
    email: str | None


class OperatorSummary(_Record, tag="operator"):
    """What every user linked to an operator shows of it."""

    email_hash: str
    seq: int
    node_count: int = field(name="nodes")
    paid_by_month: dict[str, float]
    paid_total: float


ToUser = Union[ProjectSummary, AccountSummary, OperatorSummary]  # the records of storj.internal.user
ToOperator = Union[NodeSummary, AccountLink]  # the records of storj.internal.operator
Record = Union[ToUser, ToOperator]


# --------------------------------------------------------------------------- states


class SourceState(DedupState):
    """What every state of a source stage (projects, nodes, accounts) keeps: its applied ids (beside it,
    stream.logic.dedup) and how many rows it applied."""

    events: int = 0


def _newer(row_ts: int, current) -> bool:
    """Upsert rule: the greatest event time wins; on equal times the later arrival wins."""
    return current is None or row_ts >= current.ts


def _date(ts_us: int) -> str:
    return to_datetime(ts_us).date().isoformat()


def _add(total: int | None, value: int | None) -> int:
    return (total or 0) + (value or 0)


def _dedup(state: SourceState, rows, seen: DayBucketedIds) -> list:
    """The rows whose eid this key has not applied yet (the first one counts), counted as events.

    The ids live in their own store (`stream.logic.dedup`), not in `state`: the state stays the size
    of what the key needs now, whatever its history."""
    new = seen.first_seen(state, rows)
    state.events += len(new)
    return new


# --------------------------------------------------------------------------- projects


class ProjectRow(Struct):
    """The project's newest projects row: its owner and limits."""

    ts: int
    user_id: str | None
    usage_limit: int | None
    bandwidth_limit: int | None


class ProjectState(SourceState):
    row: ProjectRow | None = None
    seq: int = 0  # of the last summary sent
    announced_users: list[str] = field(name="announced", default_factory=list)  # every owner it ever named
    uploads: int = field(name="up", default=0)
    downloads: int = field(name="down", default=0)
    monthly_upload_bytes: dict[str, int] = field(name="up_m", default_factory=dict)
    monthly_download_bytes: dict[str, int] = field(name="down_m", default_factory=dict)
    first_usage_at: int | None = field(name="first", default=None)
    last_usage_at: int | None = field(name="last", default=None)
    storage_at: int | None = field(name="st_ts", default=None)  # the newest storage tally's time
    storage_bytes: int = field(name="st_sum", default=0)  # the sum of the tallies at that time
    # the pending usage sessions (SessionWindow.to_state of an aggregate-only window), None before usage
    usage_window: dict[str, Any] | None = field(name="sess", default=None)
    usage_sessions: int = field(name="sess_n", default=0)  # closed and kept
    usage_session_us: int = field(name="sess_us", default=0)
    late_usage_rows: int = field(name="late", default=0)  # too late for their session: counted nowhere


def new_project() -> ProjectState:
    return ProjectState()


def apply_project_rows(state: ProjectState, table: str, rows, seen: DayBucketedIds) -> None:
    """Fold projects/bbr/bst rows of one project into its state (`seen`: the project's applied ids)."""
    window = None
    for row in _dedup(state, rows, seen):
        values = row.values
        if table == "projects":
            if _newer(row.ts, state.row):
                state.row = ProjectRow(row.ts, values.get("user_id"), values.get("usage_limit"),
                                       values.get("bandwidth_limit"))
            user = values.get("user_id")
            if user is not None and user not in state.announced_users:
                state.announced_users.append(user)
        elif table == "bbr":
            _apply_bandwidth(state, row)
            if window is None:
                window = _usage_window(state)
            if not window.add(row.ts):
                state.late_usage_rows += 1
        elif table == "bst":
            _apply_storage(state, row)
    if window is not None:
        _count_closed(state, window.close_due())
        state.usage_window = window.to_state()


def _apply_bandwidth(state: ProjectState, row) -> None:
    action, settled, month = row.values.get("action"), row.values.get("settled"), row.values["interval_start"][:7]
    if action == 1:
        state.uploads += 1
        state.monthly_upload_bytes[month] = _add(state.monthly_upload_bytes.get(month), settled)
    elif action == 2:
        state.downloads += 1
        state.monthly_download_bytes[month] = _add(state.monthly_download_bytes.get(month), settled)
    first, last = state.first_usage_at, state.last_usage_at
    state.first_usage_at = row.ts if first is None else min(first, row.ts)
    state.last_usage_at = row.ts if last is None else max(last, row.ts)


def _apply_storage(state: ProjectState, row) -> None:
    remote = row.values.get("remote")
    if state.storage_at is None or row.ts > state.storage_at:
        state.storage_at, state.storage_bytes = row.ts, remote or 0
    elif row.ts == state.storage_at:
        state.storage_bytes += remote or 0


def _usage_window(state: ProjectState) -> SessionWindow:
    """The project's usage sessions: only their number and durations count, so the window keeps bounds."""
    if state.usage_window is None:
        return SessionWindow(USAGE_SESSION_GAP_US, keep_events=False)
    return SessionWindow.from_state(state.usage_window, gap_us=USAGE_SESSION_GAP_US, keep_events=False)


def _count_closed(state: ProjectState, closed) -> None:
    for session in closed:
        if session.kept:
            state.usage_sessions += 1
            state.usage_session_us += session.duration_us


def _pending_sessions(state: ProjectState) -> tuple[int, int]:
    """Kept sessions still open (they count already; closing them changes nothing)."""
    return _usage_window(state).pending_kept() if state.usage_window else (0, 0)


def has_open_usage_sessions(state: ProjectState) -> bool:
    """Does the end of a run have usage sessions to close?"""
    return bool(state.usage_window and state.usage_window.get("p"))


def close_project_windows(state: ProjectState) -> None:
    """End of a replay: every usage session becomes final."""
    if state.usage_window is None:
        return
    window = _usage_window(state)
    _count_closed(state, window.close_all())
    state.usage_window = window.to_state()


def _retractions(named: list[str], current: str | None, retraction) -> list:
    """(receiver, `retraction`) for everyone `named` but `current`: summaries are whole, so whoever the
    entity no longer belongs to is told every time, and a retraction lost in a crash comes again."""
    return [(receiver, retraction) for receiver in named if receiver != current]


def project_outbox(state: ProjectState, project_id: str) -> list[tuple[str, ProjectSummary]]:
    """Records for the user stage: (user_id, record). Empty while the project row is unknown."""
    row = state.row
    if row is None:
        return []
    state.seq = seq = next_seq(state.seq)
    owner = row.user_id
    out: list[tuple[str, ProjectSummary]] = _retractions(state.announced_users, owner,
                                                         ProjectSummary(project_id, seq, owner))
    if owner is not None:
        out.append((owner, project_summary(state, project_id)))
    return out


def project_summary(state: ProjectState, project_id: str) -> ProjectSummary:
    """The project's figures for its owner (the project row is known)."""
    row = state.row
    assert row is not None
    bandwidth_limit, usage_limit = row.bandwidth_limit, row.usage_limit
    over_months: list[str] = []
    if bandwidth_limit is not None:
        over_months = sorted(m for m, total in state.monthly_download_bytes.items() if total > bandwidth_limit)
    pending_n, pending_us = _pending_sessions(state)
    return ProjectSummary(
        project_id, state.seq, row.user_id,
        created=_date(row.ts), usage_limit=usage_limit, bandwidth_limit=bandwidth_limit,
        uploads=state.uploads, downloads=state.downloads,
        monthly_upload_bytes=state.monthly_upload_bytes, monthly_download_bytes=state.monthly_download_bytes,
        first_usage_at=state.first_usage_at, last_usage_at=state.last_usage_at,
        storage_at=state.storage_at, storage_bytes=state.storage_bytes,
        months_over_bandwidth=over_months,
        over_storage_limit=usage_limit is not None and state.storage_bytes > usage_limit,
        usage_sessions=state.usage_sessions + pending_n, usage_session_us=state.usage_session_us + pending_us,
        events=state.events,
    )


# --------------------------------------------------------------------------- nodes


class NodeRow(Struct):
    """The node's newest nodes row, the columns the features read."""

    ts: int
    email_hash: str | None
    wallet: str | None
    last_contact_success: Scalar
    disqualified: Scalar
    suspended: Scalar
    free_disk: int | None
    piece_count: int | None


class NodeState(SourceState):
    row: NodeRow | None = None
    seq: int = 0  # of the last summary sent
    past_emails: list[str] = field(name="owners", default_factory=list)  # every email the node ever had
    monthly_paid: dict[str, int] = field(name="paid", default_factory=dict)  # micros by month


def new_node() -> NodeState:
    return NodeState()


def apply_node_rows(state: NodeState, table: str, rows, seen: DayBucketedIds) -> None:
    for row in _dedup(state, rows, seen):
        values = row.values
        if table == "nodes":
            if _newer(row.ts, state.row):
                get = values.get
                state.row = NodeRow(row.ts, get("email_hash"), get("wallet"), get("last_contact_success"),
                                    get("disqualified"), get("suspended"), get("free_disk"), get("piece_count"))
        elif table == "payments":
            month = values["period"][:7]  # the canonical ISO time: YYYY-MM first
            state.monthly_paid[month] = _add(state.monthly_paid.get(month), values.get("amount"))
        # receipts feed no feature: they are only de-duplicated and counted


def _filled(value) -> bool:
    """A non-blank cell (disqualified / suspended hold a date when they apply)."""
    return value is not None and str(value).strip() != ""


def _never_contacted(value) -> bool:
    ts = parse_ts_or_none(value)
    return ts is None or year_of(ts) in (1970, 2070)


def node_outbox(state: NodeState, node_id: str) -> list[tuple[str, NodeSummary]]:
    """Records for the operator stage: (email_hash, record)."""
    row = state.row
    if row is None:
        return []
    state.seq = seq = next_seq(state.seq)
    email = row.email_hash
    owners = state.past_emails  # every email the node ever had: retract from all but the current
    if email is not None and email not in owners:
        owners.append(email)
    out: list[tuple[str, NodeSummary]] = _retractions(owners, email, NodeSummary(node_id, seq, email))
    if email is not None:
        out.append((email, NodeSummary(
            node_id, seq, email, ts=row.ts, wallet=row.wallet,
            never_contacted=_never_contacted(row.last_contact_success),
            disqualified=_filled(row.disqualified), suspended=_filled(row.suspended),
            free_disk=row.free_disk, piece_count=row.piece_count, monthly_paid=state.monthly_paid,
            events=state.events,
        )))
    return out


# --------------------------------------------------------------------------- accounts (users rows)


class AccountRow(Struct):
    """The user's newest users row."""

    ts: int
    email_hash: str | None


class AccountState(SourceState):
    row: AccountRow | None = None
    seq: int = 0  # of the last records sent
    linked_emails: list[str] = field(name="emails", default_factory=list)  # every email the user ever had


def new_account() -> AccountState:
    return AccountState()


def apply_account_rows(state: AccountState, rows, seen: DayBucketedIds) -> bool:
    """Upsert user rows; True when something new was applied."""
    changed = False
    for row in _dedup(state, rows, seen):
        changed = True
        if _newer(row.ts, state.row):
            state.row = AccountRow(row.ts, row.values.get("email_hash"))
    return changed


def account_outbox(state: AccountState,
                   user_id: str) -> tuple[list[tuple[str, AccountSummary]], list[tuple[str, AccountLink]]]:
    """(records for the user stage, link records for the operator stage); the users row is known."""
    row = state.row
    assert row is not None
    state.seq = seq = next_seq(state.seq)
    email = row.email_hash
    to_users = [(user_id, AccountSummary(seq, email, _date(row.ts), state.events))]
    linked = state.linked_emails  # every email the user ever had: unlink from all but the current
    if email is not None and email not in linked:
        linked.append(email)
    to_operators = [(past, AccountLink(user_id, seq, email)) for past in linked]
    return to_users, to_operators


# --------------------------------------------------------------------------- operators


class OperatorState(Struct):
    """Totals over the operator's current nodes; each node's last summary is kept by `OperatorNodes`: in the
    state for the first INLINE_NODES nodes, apart beyond, so the state stays the same size however many
    nodes the operator runs."""

    node_count: int = field(name="nodes", default=0)
    wallet_nodes: dict[str, int] = field(name="wallets", default_factory=dict)  # wallet -> nodes with it
    never_contacted_nodes: int = field(name="never_contacted", default=0)
    disqualified_nodes: int = field(name="disqualified", default=0)
    suspended_nodes: int = field(name="suspended", default=0)
    free_disk_bytes: int = field(name="free_disk", default=0)
    piece_count: int = 0
    # month -> (micros, nodes with that month): a month stays while a node has it
    paid_by_month: dict[str, tuple[int, int]] = field(name="paid", default_factory=dict)
    events: int = 0
    watermark: int | None = field(name="wm", default=None)  # the newest node summary's event time
    users: list[str] = field(default_factory=list)  # linked now, sorted
    user_link_seq: dict[str, int] = field(name="user_seq", default_factory=dict)  # newest link per user
    # node id -> (newest summary applied, that summary while the node is the operator's) of its first
    # INLINE_NODES nodes; `nodes_aside`: how many have an entry beside the state instead (None: a record
    # written before they were counted)
    inline_nodes: dict[str, tuple[int, NodeSummary | None]] = field(name="in", default_factory=dict)
    nodes_aside: int | None = field(name="na", default=None)


# Node summaries an operator keeps in its state. Most operators run a few nodes (at storj scale 1, 913 of
# 1,043 at most 4): theirs are then never read or written beside it, one entry per node and batch.
INLINE_NODES = 4


def new_operator() -> OperatorState:
    return OperatorState(nodes_aside=0)


class OperatorNodes:
    """One operator's nodes: {node id: (newest summary's seq, that summary while the node is the operator's)},
    the first INLINE_NODES in its state, the others one entry each in a store beside it
    (`keyvalue.KeyValue`): {"seq": ..., "node": ...}. A node stays where it was first put.

    Names end with the email and carry the node id's length, so no two (node, email) pairs share one."""

    def __init__(self, store, email: str, state: OperatorState):
        self.store, self.email, self.state = store, email, state

    def _name(self, node_id: str) -> str:
        return f"{len(node_id)}:{node_id}|{self.email}"

    def get(self, node_id: str) -> tuple[int, NodeSummary | None]:
        """(the newest summary's seq, that summary while the node is the operator's)."""
        inline = self.state.inline_nodes.get(node_id)
        if inline is not None:
            return inline
        if self.state.nodes_aside == 0:
            return 0, None
        entry = self.store.get(self._name(node_id))
        if entry is None:
            return 0, None
        node = entry["node"]
        return entry["seq"], None if node is None else msgspec.convert(node, NodeSummary)

    def put(self, node_id: str, seq: int, node: NodeSummary | None) -> None:
        state = self.state
        inline = state.inline_nodes
        if node_id not in inline:
            name = self._name(node_id)
            aside = state.nodes_aside
            if aside == 0 or self.store.get(name) is None:  # a node new to the operator
                if len(inline) < INLINE_NODES:
                    inline[node_id] = (seq, node)
                    return
                if aside is not None:
                    state.nodes_aside = aside + 1
            self.store.put(name, {"seq": seq, "node": None if node is None else msgspec.to_builtins(node)})
            return
        inline[node_id] = (seq, node)


def _count_node(state: OperatorState, node: NodeSummary, sign: int) -> None:
    """Add (sign 1) or take away (sign -1) one node summary from the operator's totals."""
    state.node_count += sign
    wallet = node.wallet
    if wallet is not None:
        count = state.wallet_nodes.get(wallet, 0) + sign
        if count:
            state.wallet_nodes[wallet] = count
        else:
            del state.wallet_nodes[wallet]
    state.never_contacted_nodes += sign * node.never_contacted
    state.disqualified_nodes += sign * node.disqualified
    state.suspended_nodes += sign * node.suspended
    state.free_disk_bytes += sign * (node.free_disk or 0)
    state.piece_count += sign * (node.piece_count or 0)
    paid = state.paid_by_month
    for month, amount in node.monthly_paid.items():
        total, count = paid.get(month, (0, 0))
        if count + sign:
            paid[month] = (total + sign * amount, count + sign)
        else:
            del paid[month]
    state.events += sign * node.events


def apply_operator_records(state: OperatorState, email: str, records: list[ToOperator],
                           nodes: OperatorNodes) -> list[str]:
    """Apply node summaries and user links; return the users newly linked."""
    users = set(state.users)
    newly_linked = []
    for record in records:
        if isinstance(record, NodeSummary):
            node_id, seq = record.id, record.seq
            applied_seq, applied = nodes.get(node_id)
            if seq <= applied_seq:
                continue
            if applied is not None:
                _count_node(state, applied, -1)
            current = record if record.owner == email and not record.retracts else None
            if current is not None:
                _count_node(state, current, 1)
                if state.watermark is None or current.ts > state.watermark:
                    state.watermark = current.ts
            nodes.put(node_id, seq, current)
            continue
        source, seq = record.user, record.seq
        if seq <= state.user_link_seq.get(source, 0):
            continue
        state.user_link_seq[source] = seq
        if record.email == email:
            if source not in users:
                users.add(source)
                newly_linked.append(source)
        else:
            users.discard(source)
    state.users = sorted(users)
    return newly_linked


def _money(micros: int) -> float:
    return round(micros / 1_000_000, 6)


def _paid_by_month(state: OperatorState) -> dict[str, float]:
    return {m: _money(total) for m, (total, _) in sorted(state.paid_by_month.items())}


def _paid_total(state: OperatorState) -> float:
    return _money(sum(total for total, _ in state.paid_by_month.values()))


def operator_features(state: OperatorState) -> dict | None:
    """The operator snapshot (SPEC §4), or None when it has no current node."""
    if not state.node_count:
        return None
    return {
        "nodes": state.node_count,
        "wallets": sorted(state.wallet_nodes),
        "never_contacted_nodes": state.never_contacted_nodes,
        "disqualified_nodes": state.disqualified_nodes,
        "suspended_nodes": state.suspended_nodes,
        "free_disk_bytes": state.free_disk_bytes,
        "piece_count": state.piece_count,
        "paid_by_month": _paid_by_month(state),
        "paid_total": _paid_total(state),
        "users": list(state.users),
    }


def operator_summary(state: OperatorState, email: str, seq: int) -> OperatorSummary:
    """What every linked user shows of its operator; `seq`: the operator's version, which grows with
    every batch (the runtime keeps it)."""
    return OperatorSummary(email, seq, state.node_count, _paid_by_month(state), _paid_total(state))


def operator_events(state: OperatorState) -> int:
    return state.events


def operator_watermark(state: OperatorState) -> int | None:
    """The newest event time of a node summary the operator applied (it does not go back when a node
    leaves)."""
    return state.watermark


# --------------------------------------------------------------------------- users


class UserState(Struct):
    account: AccountSummary | None = None  # the newest
    account_seq: int = 0
    projects: dict[str, ProjectSummary] = field(default_factory=dict)  # the user's projects now, by id
    project_seq: dict[str, int] = field(default_factory=dict)  # the newest summary per project ever heard
    operators: dict[str, OperatorSummary] = field(name="ops", default_factory=dict)  # by email hash


def new_user() -> UserState:
    return UserState()


def apply_user_records(state: UserState, records: list[ToUser]) -> None:
    for record in records:
        if isinstance(record, AccountSummary):
            if record.seq > state.account_seq:
                state.account_seq = record.seq
                state.account = record
        elif isinstance(record, ProjectSummary):
            pid = record.id
            if record.seq <= state.project_seq.get(pid, 0):
                continue
            state.project_seq[pid] = record.seq
            if record.retracts:
                state.projects.pop(pid, None)
            else:
                state.projects[pid] = record
        else:
            current = state.operators.get(record.email_hash)
            if current is None or record.seq > current.seq:
                state.operators[record.email_hash] = record


def _merge_months(maps) -> dict:
    merged: dict[str, int] = {}
    for months in maps:
        for month, total in months.items():
            merged[month] = merged.get(month, 0) + total
    return dict(sorted(merged.items()))


def user_features(state: UserState) -> dict:
    account = state.account
    projects = list(state.projects.values())
    email = account.email_hash if account else None
    operator = state.operators.get(email) if email is not None else None
    firsts = [p.first_usage_at for p in projects if p.first_usage_at is not None]
    lasts = [p.last_usage_at for p in projects if p.last_usage_at is not None]
    storage_times = [p.storage_at for p in projects if p.storage_at is not None]
    return {
        "email_hash": email,
        "created_at": account.created_at if account else None,
        "projects": len(projects),
        "project_created_dates": sorted({p.created for p in projects}),
        "tier": "free" if all((p.bandwidth_limit or 0) <= FREE_BANDWIDTH_LIMIT for p in projects) else "paid",
        "bandwidth_limit_bytes": sum(p.bandwidth_limit or 0 for p in projects),
        "usage_limit_bytes": sum(p.usage_limit or 0 for p in projects),
        "uploads": sum(p.uploads for p in projects),
        "downloads": sum(p.downloads for p in projects),
        "upload_bytes_by_month": _merge_months(p.monthly_upload_bytes for p in projects),
        "download_bytes_by_month": _merge_months(p.monthly_download_bytes for p in projects),
        "first_activity_at": format_ts(min(firsts)) if firsts else None,
        "last_activity_at": format_ts(max(lasts)) if lasts else None,
        "storage_bytes": sum(p.storage_bytes for p in projects if p.storage_at is not None),
        "storage_updated_at": format_ts(max(storage_times)) if storage_times else None,
        "over_bandwidth_months": sorted({m for p in projects for m in p.months_over_bandwidth}),
        "over_storage_limit": any(p.over_storage_limit for p in projects),
        "usage_sessions_count": sum(p.usage_sessions for p in projects),
        "usage_sessions_seconds": sum(p.usage_session_us for p in projects) / US_PER_S,
        "operator_nodes": operator.node_count if operator else 0,
        "operator_paid_by_month": operator.paid_by_month if operator else {},
        "operator_paid_total": operator.paid_total if operator else 0.0,
    }


def user_events(state: UserState) -> int:
    account_events = state.account.events if state.account else 0
    return account_events + sum(p.events for p in state.projects.values())


def user_watermark(state: UserState) -> int | None:
    """The newest usage or storage time of the user's projects."""
    times = [t for p in state.projects.values() for t in (p.last_usage_at, p.storage_at) if t is not None]
    return max(times) if times else None
