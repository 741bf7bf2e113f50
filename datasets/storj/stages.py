"""The storj stages: projects, nodes, accounts -> operators -> users (see datasets.storj.logic)."""
from __future__ import annotations

import os
from functools import lru_cache

from contract.timeutil import format_ts
from stream.logic.dedup import DAY_US, DayBucketedIds
from stream.runtime.context import StageContext
from stream.runtime.sink import next_version
from stream.runtime.stages import Outbox, Stage

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


def seen_ids(context: StageContext, stage: str, partition: int, key: str, state: dict) -> DayBucketedIds:
    """The ids the key applied (stream.logic.dedup), beside its state."""
    return DayBucketedIds(context.beside(STORE[stage], partition, state), f"{stage}:{key}", dedup_horizon_us())


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
            state = store.get(partition, key) or storj.new_project()
            storj.apply_project_rows(state, table, rows, seen_ids(self.context, self.name, partition, key, state))
            # summaries are whole: send one even when every row was a duplicate, since a redelivered
            # batch may be one whose state was written but whose records were lost in a crash
            outbox.extend(USER_TOPIC, storj.project_outbox(state, key))
            store.put(partition, key, state)

    run_end_store = "storj_project"

    def end_run_for(self, partition, key, state, outbox, again=False) -> None:
        if again and state.get("sess"):  # summaries sent at the first completion may be lost: whole ones again
            outbox.extend(USER_TOPIC, storj.project_outbox(state, key))
            self.context.store("storj_project").put(partition, key, state)
        elif state.get("sess") and state["sess"].get("p"):
            storj.close_project_windows(state)
            outbox.extend(USER_TOPIC, storj.project_outbox(state, key))
            self.context.store("storj_project").put(partition, key, state)


class NodeStage(Stage):
    name, dataset = "node", "storj"
    marks_table = "storj_node"
    topics = ["storj.nodes", "storj.payments", "storj.receipts"]
    downstream = [OPERATOR_TOPIC]

    async def apply(self, partition, topic, groups, outbox) -> None:
        table = topic.split(".", 1)[1]
        store = self.context.store("storj_node")
        for key, rows in groups.items():
            state = store.get(partition, key) or storj.new_node()
            storj.apply_node_rows(state, table, rows, seen_ids(self.context, self.name, partition, key, state))
            if table != "receipts":  # whole summaries, duplicates or not (see ProjectStage)
                outbox.extend(OPERATOR_TOPIC, storj.node_outbox(state, key))
            store.put(partition, key, state)


class AccountStage(Stage):
    name, dataset = "account", "storj"
    marks_table = "storj_account"
    topics = ["storj.users"]
    downstream = [USER_TOPIC, OPERATOR_TOPIC]

    async def apply(self, partition, topic, groups, outbox) -> None:
        store = self.context.store("storj_account")
        for key, rows in groups.items():
            state = store.get(partition, key) or storj.new_account()
            storj.apply_account_rows(state, rows, seen_ids(self.context, self.name, partition, key, state))
            if state["row"] is not None:  # whole records, duplicates or not (see ProjectStage)
                to_users, to_operators = storj.account_outbox(state, key)
                outbox.extend(USER_TOPIC, to_users)
                outbox.extend(OPERATOR_TOPIC, to_operators)
            store.put(partition, key, state)  # after the ids beside it (store.Beside)


class OperatorStage(Stage):
    name, dataset = "operator", "storj"
    marks_table = "storj_operator"
    topics = [OPERATOR_TOPIC]
    downstream = [USER_TOPIC]

    async def apply(self, partition, topic, groups, outbox) -> None:
        store = self.context.store("storj_operator")
        for email, records in groups.items():
            state = store.get(partition, email) or storj.new_operator()
            nodes = storj.OperatorNodes(self.context.beside("storj_operator", partition, state), email)
            storj.apply_operator_records(state, email, records, nodes)
            had_snapshot = state.get("snap", False)
            features = storj.operator_features(state)
            state["ver"] = next_version(state["ver"])
            if features is not None or had_snapshot:
                self._snapshot(email, state, features)
            state["snap"] = features is not None
            summary = storj.operator_summary(state, email)
            for user in state["users"]:
                outbox.add(USER_TOPIC, user, summary)
            store.put(partition, email, state)

    snapshot_store = "storj_operator"

    def write_snapshot(self, email: str, state: dict) -> None:
        if state.get("snap"):
            self._snapshot(email, state, storj.operator_features(state))

    def _snapshot(self, email: str, state: dict, features: dict | None) -> None:
        watermark = storj.operator_watermark(state)
        self.context.snapshot("operator", email, state["ver"], features, storj.operator_events(state),
                              format_ts(watermark) if watermark else None)


class UserStage(Stage):
    name, dataset = "user", "storj"
    marks_table = "storj_user"
    topics = [USER_TOPIC]

    async def apply(self, partition, topic, groups, outbox) -> None:
        store = self.context.store("storj_user")
        for user, records in groups.items():
            state = store.get(partition, user) or storj.new_user()
            storj.apply_user_records(state, records)
            state["ver"] = next_version(state["ver"])
            self.write_snapshot(user, state)
            store.put(partition, user, state)

    snapshot_store = "storj_user"

    def write_snapshot(self, user: str, state: dict) -> None:
        times = [t for p in state["projects"].values() for t in (p["last"], p["st_ts"]) if t is not None]
        self.context.snapshot("user", user, state["ver"], storj.user_features(state),
                              storj.user_events(state), format_ts(max(times)) if times else None)


STAGES = (ProjectStage, NodeStage, AccountStage, OperatorStage, UserStage)
STATE_TABLES = ("storj_project", "storj_node", "storj_account", "storj_operator", "storj_user")
INTERNAL_TOPICS = (USER_TOPIC, OPERATOR_TOPIC)
