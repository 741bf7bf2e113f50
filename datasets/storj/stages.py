"""The storj stages: projects, nodes, accounts -> operators -> users (see datasets.storj.logic).

Their states are typed (datasets.storj.logic's Structs, each table's `CODECS` entry), handed out by the
store as `store.Entry`s, and so are the records they send each other (decoded here, `ReadsRecords`)."""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Union

import msgspec

from contract import wire
from contract.timeutil import format_ts
from stream.logic.dedup import DAY_US, DayBucketedIds
from stream.runtime.context import StageContext
from stream.runtime.sink import next_version
from stream.runtime.stages import Outbox, Stage
from stream.runtime.store import Entry, StructCodec

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


STORE = {"project": "storj_project", "node": "storj_node", "account": "storj_account"}  # stage -> its table


def seen_ids(context: StageContext, stage: str, partition: int, key: str, entry: Entry) -> DayBucketedIds:
    """The ids the key applied (stream.logic.dedup), beside its state."""
    return DayBucketedIds(context.beside(STORE[stage], partition, entry), f"{stage}:{key}", dedup_horizon_us())


class ReadsRecords(Stage):
    """A stage that reads the records of other storj stages (`records`: a union of datasets.storj.logic's
    record types) decodes them straight into their types; what is not such a record is a mark, or a bad
    message (a dead letter)."""

    records: Any

    def __init__(self, context: StageContext):
        super().__init__(context)
        self._records = msgspec.json.Decoder(Union[self.records, list[self.records]])

    def decode(self, topic: str, value: bytes):
        try:
            records = self._records.decode(value)
        except msgspec.DecodeError as exc:
            kind, payload = wire.decode(value)  # a mark, or no record of ours (BadMessage when not JSON)
            return (kind, payload) if kind == "mark" else ("bad", f"not a storj record: {exc}")
        return "rows", records if isinstance(records, list) else [records]


class ProjectStage(Stage):
    name, dataset = "project", "storj"
    marks_table = "storj_project"
    topics = ["storj.projects", "storj.bbr", "storj.bst"]
    downstream = [USER_TOPIC]

    def __init__(self, context: StageContext):
        super().__init__(context)
        dedup_horizon_us()  # a bad setting stops the worker as it starts, not in the middle of a batch

    async def apply(self, partition, topic, groups, outbox: Outbox) -> None:
        table = topic.split(".", 1)[1]
        store = self.context.store("storj_project")
        for key, rows in groups.items():
            entry = store.get(partition, key) or Entry(storj.new_project())
            project = entry.state
            storj.apply_project_rows(project, table, rows, seen_ids(self.context, self.name, partition, key, entry))
            # summaries are whole: send one even when every row was a duplicate, since a redelivered
            # batch may be one whose state was written but whose records were lost in a crash
            outbox.extend(USER_TOPIC, storj.project_outbox(project, key))
            store.put(partition, key, entry)

    run_end_store = "storj_project"

    def end_run_for(self, partition, key, entry, outbox, again=False) -> None:
        project = entry.state
        if again and project.usage_window:  # summaries sent at the first completion may be lost: whole ones again
            outbox.extend(USER_TOPIC, storj.project_outbox(project, key))
            self.context.store("storj_project").put(partition, key, entry)
        elif storj.has_open_usage_sessions(project):
            storj.close_project_windows(project)
            outbox.extend(USER_TOPIC, storj.project_outbox(project, key))
            self.context.store("storj_project").put(partition, key, entry)


class NodeStage(Stage):
    name, dataset = "node", "storj"
    marks_table = "storj_node"
    topics = ["storj.nodes", "storj.payments", "storj.receipts"]
    downstream = [OPERATOR_TOPIC]

    async def apply(self, partition, topic, groups, outbox) -> None:
        table = topic.split(".", 1)[1]
        store = self.context.store("storj_node")
        for key, rows in groups.items():
            entry = store.get(partition, key) or Entry(storj.new_node())
            node = entry.state
            storj.apply_node_rows(node, table, rows, seen_ids(self.context, self.name, partition, key, entry))
            if table != "receipts":  # whole summaries, duplicates or not (see ProjectStage)
                outbox.extend(OPERATOR_TOPIC, storj.node_outbox(node, key))
            store.put(partition, key, entry)


class AccountStage(Stage):
    name, dataset = "account", "storj"
    marks_table = "storj_account"
    topics = ["storj.users"]
    downstream = [USER_TOPIC, OPERATOR_TOPIC]

    async def apply(self, partition, topic, groups, outbox) -> None:
        store = self.context.store("storj_account")
        for key, rows in groups.items():
            entry = store.get(partition, key) or Entry(storj.new_account())
            account = entry.state
            storj.apply_account_rows(account, rows, seen_ids(self.context, self.name, partition, key, entry))
            if account.row is not None:  # whole records, duplicates or not (see ProjectStage)
                to_users, to_operators = storj.account_outbox(account, key)
                outbox.extend(USER_TOPIC, to_users)
                outbox.extend(OPERATOR_TOPIC, to_operators)
            store.put(partition, key, entry)  # after the ids beside it (store.Beside)


class OperatorStage(ReadsRecords):
    name, dataset = "operator", "storj"
    marks_table = "storj_operator"
    topics = [OPERATOR_TOPIC]
    downstream = [USER_TOPIC]
    records = storj.ToOperator

    async def apply(self, partition, topic, groups, outbox) -> None:
        store = self.context.store("storj_operator")
        for email, records in groups.items():
            entry = store.get(partition, email) or Entry(storj.new_operator())
            operator = entry.state
            nodes = storj.OperatorNodes(self.context.beside("storj_operator", partition, entry), email)
            storj.apply_operator_records(operator, email, records, nodes)
            had_snapshot = entry.snapshot
            features = storj.operator_features(operator)
            entry.version = next_version(entry.version)
            if features is not None or had_snapshot:
                self._snapshot(email, entry, features)
            entry.snapshot = features is not None
            summary = storj.operator_summary(operator, email, entry.version)
            for user in operator.users:
                outbox.add(USER_TOPIC, user, summary)
            store.put(partition, email, entry)

    snapshot_store = "storj_operator"

    def write_snapshot(self, email: str, entry: Entry[storj.OperatorState]) -> None:
        if entry.snapshot:
            self._snapshot(email, entry, storj.operator_features(entry.state))

    def _snapshot(self, email: str, entry: Entry[storj.OperatorState], features: dict | None) -> None:
        watermark = storj.operator_watermark(entry.state)
        self.context.snapshot("operator", email, entry.version, features,
                              storj.operator_events(entry.state), format_ts(watermark) if watermark else None)


class UserStage(ReadsRecords):
    name, dataset = "user", "storj"
    marks_table = "storj_user"
    topics = [USER_TOPIC]
    records = storj.ToUser

    async def apply(self, partition, topic, groups, outbox) -> None:
        store = self.context.store("storj_user")
        for user, records in groups.items():
            entry = store.get(partition, user) or Entry(storj.new_user())
            storj.apply_user_records(entry.state, records)
            entry.version = next_version(entry.version)
            self.write_snapshot(user, entry)
            store.put(partition, user, entry)

    snapshot_store = "storj_user"

    def write_snapshot(self, user: str, entry: Entry[storj.UserState]) -> None:
        watermark = storj.user_watermark(entry.state)
        self.context.snapshot("user", user, entry.version, storj.user_features(entry.state),
                              storj.user_events(entry.state), format_ts(watermark) if watermark else None)


STAGES = (ProjectStage, NodeStage, AccountStage, OperatorStage, UserStage)
STATE_TABLES = ("storj_project", "storj_node", "storj_account", "storj_operator", "storj_user")
# each table's state type; the operator and user stages keep a snapshot version beside theirs (`ver`), the
# operator stage also whether it has a snapshot (`snap`)
CODECS = {
    "storj_project": StructCodec(storj.ProjectState),
    "storj_node": StructCodec(storj.NodeState),
    "storj_account": StructCodec(storj.AccountState),
    "storj_operator": StructCodec(storj.OperatorState, version=True, snapshot=True),
    "storj_user": StructCodec(storj.UserState, version=True),
}
INTERNAL_TOPICS = (USER_TOPIC, OPERATOR_TOPIC)
