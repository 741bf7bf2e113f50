"""The storj stages: projects, nodes, accounts -> operators -> users (see datasets.storj.logic).

Their states are typed (datasets.storj.logic's Structs, each stage's `state_type`), handed out by the
store as `store.Entry`s by the keyed runner (stream.runtime.keyed), and so are the records they send each
other (each stage's `record_type`)."""
from __future__ import annotations

import os
from functools import lru_cache

from contract.timeutil import format_ts
from stream.logic.dedup import DAY_US, DayBucketedIds
from stream.runtime.context import StageContext
from stream.runtime.keyed import KeyedStage
from stream.runtime.stages import Outbox
from stream.runtime.store import Entry

from . import logic as storj

USER_TOPIC = "storj.internal.user"
OPERATOR_TOPIC = "storj.internal.operator"


DEDUP_HORIZON_ENV = "FSP_DEDUP_HORIZON_DAYS"  # unset: ids are kept for good


@lru_cache(maxsize=1)
def dedup_horizon_us() -> int | None:
    """How far back in event time a storj key remembers its ids (see stream.logic.dedup), or None."""
    text = os.environ.get(DEDUP_HORIZON_ENV, "").strip()
    if not text:
        return None
    try:
        days = float(text)
    except ValueError:
        raise SystemExit(f"error: {DEDUP_HORIZON_ENV}={text!r} is not a number of days") from None
    if days < 1:
        raise SystemExit(f"error: {DEDUP_HORIZON_ENV}={text!r}: the horizon is at least 1 day")
    return int(days * DAY_US)


class SourceStage(KeyedStage):
    """A stage that reads source rows and keeps the ids each key applied (stream.logic.dedup)."""

    def __init__(self, context: StageContext):
        super().__init__(context)
        # read once: a bad setting stops the worker as it starts, not in the middle of a batch, and a
        # batch does not read the environment again for every key
        self.dedup_horizon_us = dedup_horizon_us()

    def seen_ids(self, partition: int, key: str, entry: Entry) -> DayBucketedIds:
        """The ids the key applied (stream.logic.dedup), beside its state."""
        return DayBucketedIds(self.beside(partition, entry), f"{self.name}:{key}", self.dedup_horizon_us)


class ProjectStage(SourceStage):
    name, dataset = "project", "storj"
    state_table, state_type = "storj_project", storj.ProjectState
    topics = ["storj.projects", "storj.bbr", "storj.bst"]
    downstream = [USER_TOPIC]

    def apply_key(self, partition, topic, key, entry, rows, outbox: Outbox) -> None:
        project = entry.state
        storj.apply_project_rows(project, _table(topic), rows, self.seen_ids(partition, key, entry))
        # summaries are whole: send one even when every row was a duplicate, since a redelivered
        # batch may be one whose state was written but whose records were lost in a crash
        outbox.extend(USER_TOPIC, storj.project_outbox(project, key))

    def end_key(self, partition, key, entry, outbox, again) -> bool:
        project = entry.state
        if again and project.usage_window:  # summaries sent at the first completion may be lost: whole ones again
            outbox.extend(USER_TOPIC, storj.project_outbox(project, key))
            return True
        if storj.has_open_usage_sessions(project):
            storj.close_project_windows(project)
            outbox.extend(USER_TOPIC, storj.project_outbox(project, key))
            return True
        return False

    notes_run_end_keys = True  # the end of a run visits the projects noted with open sessions, not all

    def run_end_changes(self, entry, again) -> bool:
        """Only projects with usage sessions (open ones, or, again, any) change at the end of a run: most
        of a replay's projects have none left open, and are not visited."""
        project = entry.state
        return bool(again and project.usage_window) or storj.has_open_usage_sessions(project)


class NodeStage(SourceStage):
    name, dataset = "node", "storj"
    state_table, state_type = "storj_node", storj.NodeState
    topics = ["storj.nodes", "storj.payments", "storj.receipts"]
    downstream = [OPERATOR_TOPIC]

    def apply_key(self, partition, topic, key, entry, rows, outbox) -> None:
        table = _table(topic)
        node = entry.state
        storj.apply_node_rows(node, table, rows, self.seen_ids(partition, key, entry))
        if table != "receipts":  # whole summaries, duplicates or not (see ProjectStage)
            outbox.extend(OPERATOR_TOPIC, storj.node_outbox(node, key))


class AccountStage(SourceStage):
    name, dataset = "account", "storj"
    state_table, state_type = "storj_account", storj.AccountState
    topics = ["storj.users"]
    downstream = [USER_TOPIC, OPERATOR_TOPIC]

    def apply_key(self, partition, topic, key, entry, rows, outbox) -> None:
        account = entry.state
        storj.apply_account_rows(account, rows, self.seen_ids(partition, key, entry))
        if account.row is not None:  # whole records, duplicates or not (see ProjectStage)
            to_users, to_operators = storj.account_outbox(account, key)
            outbox.extend(USER_TOPIC, to_users)
            outbox.extend(OPERATOR_TOPIC, to_operators)


class OperatorStage(KeyedStage):
    name, dataset = "operator", "storj"
    state_table, state_type = "storj_operator", storj.OperatorState
    topics = [OPERATOR_TOPIC]
    downstream = [USER_TOPIC]
    record_type = storj.ToOperator
    versioned = True  # its summaries carry the version, so that users keep the newest
    tracks_snapshot = True  # an operator that is gone has its snapshot removed once

    def new_state(self, key: str) -> storj.OperatorState:
        return storj.new_operator()  # (its count of nodes beside starts known: none)

    def apply_key(self, partition, topic, email, entry, records, outbox) -> None:
        operator = entry.state
        nodes = storj.OperatorNodes(self.beside(partition, entry), email, operator)
        storj.apply_operator_records(operator, email, records, nodes)
        had_snapshot = entry.snapshot
        features = storj.operator_features(operator)
        if features is not None or had_snapshot:  # None: the operator is gone, and so is its snapshot
            self._snapshot(email, entry, features)
        entry.snapshot = features is not None
        summary = storj.operator_summary(operator, email, entry.version)
        for user in operator.users:
            outbox.add(USER_TOPIC, user, summary)

    def write_snapshot(self, email: str, entry: Entry[storj.OperatorState]) -> None:
        if entry.snapshot:
            self._snapshot(email, entry, storj.operator_features(entry.state))

    def _snapshot(self, email: str, entry: Entry[storj.OperatorState], features: dict | None) -> None:
        watermark = storj.operator_watermark(entry.state)
        self.context.snapshot("operator", email, entry.version, features,
                              storj.operator_events(entry.state), format_ts(watermark) if watermark else None)


class UserStage(KeyedStage):
    name, dataset = "user", "storj"
    state_table, state_type = "storj_user", storj.UserState
    topics = [USER_TOPIC]
    record_type = storj.ToUser
    versioned = True

    def apply_key(self, partition, topic, user, entry, records, outbox) -> None:
        storj.apply_user_records(entry.state, records)
        self.write_snapshot(user, entry)

    def write_snapshot(self, user: str, entry: Entry[storj.UserState]) -> None:
        watermark = storj.user_watermark(entry.state)
        self.context.snapshot("user", user, entry.version, storj.user_features(entry.state),
                              storj.user_events(entry.state), format_ts(watermark) if watermark else None)


def _table(topic: str) -> str:
    """The source table of a topic (`storj.bbr` -> `bbr`)."""
    return topic.split(".", 1)[1]


STAGES = (ProjectStage, NodeStage, AccountStage, OperatorStage, UserStage)
STATE_TABLES = tuple(stage.state_table for stage in STAGES)
INTERNAL_TOPICS = (USER_TOPIC, OPERATOR_TOPIC)
