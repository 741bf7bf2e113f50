"""Tests of datasets.storj.logic: hand-computed cases, and random storj row sets
against the batch reference (datasets.storj.batch.compute_storj).

No broker, no Redis. Rows are built with ``contract.rows.normalise`` (the
stream's own front door). A small in-process harness plays the runtime
(datasets/storj/stages.py): source rows are routed by table to per-key
states (projects/bbr/bst by project_id, nodes/payments/receipts by node id,
users by id); the records those states send are collected per destination
key and delivered to operator and user states (operators send their summary
to every linked user), until nothing is left; then ``user_features`` and
``operator_features`` are rendered. Every state and every record makes a JSON
round trip as its type (the changelog and the internal topics).
"""
from __future__ import annotations

import csv
import random
import tempfile
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import tables
from contract.rows import normalise
from datasets.storj import logic as storj
from datasets.storj.batch import compute_storj
from stream.logic import dedup, keyvalue
from tests.expected import EMPTY_STORJ_USER, typed

PROJECT_TABLES = ("projects", "bbr", "bst")
NODE_TABLES = ("nodes", "payments", "receipts")


# --------------------------------------------------------------------------- rows


def row(table: str, **raw):
    """(table, normalised row) as the stream builds it from a raw dict."""
    return table, normalise(tables.table("storj", table), raw)


def user(uid, email, created, password="pw"):
    return row("users", id=uid, email_hash=email, password_hash=password, created_at=created)


def project(pid, uid, created, usage=None, bandwidth=None):
    return row("projects", created_at=created, project_id=pid, user_id=uid, usage_limit=usage,
               bandwidth_limit=bandwidth)


def bbr(pid, ts, action, settled, inline=0):
    return row("bbr", interval_start=ts, action=action, inline=inline, settled=settled, project_id=pid)


def bst(pid, ts, remote, inline=0):
    return row("bst", interval_start=ts, inline=inline, remote=remote, project_id=pid)


def node(nid, email, created, wallet=None, last_contact="2021-04-01 10:00:00", disqualified=None,
         suspended=None, free_disk=None, piece_count=None):
    return row("nodes", id=nid, wallet=wallet, email_hash=email, created_at=created,
               last_contact_success=last_contact, disqualified=disqualified, suspended=suspended,
               free_disk=free_disk, piece_count=piece_count)


def payment(nid, period, amount):
    return row("payments", period=period, node_id=nid, amount=amount)


def receipt(nid, period, amount, code="r"):
    return row("receipts", period=period, node_id=nid, amount=amount, receipt=code)


def json_round_trip(value, as_type=None):
    """`value` through its JSON, decoded as `as_type` (default: its own type)."""
    return msgspec.json.decode(msgspec.json.encode(value), type=as_type or type(value))


def kind(record) -> str:
    """A record's kind: its "k" in JSON."""
    return record.__struct_config__.tag


# --------------------------------------------------------------------------- the harness


class Harness:
    """Plays the runtime's five storj stages in-process.

    ``pending`` holds the records on their way to the operator and user
    stages: ``(stage, key, record, redelivered)``.
    """

    def __init__(self):
        self.projects: dict[str, storj.ProjectState] = {}
        self.nodes: dict[str, storj.NodeState] = {}
        self.accounts: dict[str, storj.AccountState] = {}
        self.operators: dict[str, storj.OperatorState] = {}
        self.operator_versions: dict[str, int] = {}  # the runtime keeps them beside each operator's state
        self.users: dict[str, storj.UserState] = {}
        self.pending: list[tuple[str, str, storj.Record, bool]] = []
        self.log: list[tuple[str, str, storj.Record]] = []  # every record delivered, in delivery order
        self.seen = keyvalue.DictStore()  # every key's applied ids (the runtime keeps them beside each state)
        self.operator_nodes = keyvalue.DictStore()  # every operator's nodes (beside its state in the runtime)

    def seen_ids(self, stage: str, key: str) -> dedup.DayBucketedIds:
        return dedup.DayBucketedIds(self.seen, f"{stage}:{key}")

    # ------------------------------------------------------------ source stages

    def send(self, *items):
        """Each item is one message batch: a (table, row) pair or a list of pairs of one table."""
        for item in items:
            batch = item if isinstance(item, list) else [item]
            table = batch[0][0]
            assert all(t == table for t, _ in batch)
            self.source(table, [r for _, r in batch])
        return self

    def source(self, table: str, rows) -> None:
        """One batch of a source topic: grouped by key, order within a key kept."""
        groups = defaultdict(list)
        for r in rows:
            groups[r.key].append(r)
        for key, group in groups.items():
            if table in PROJECT_TABLES:
                state = self.projects.get(key) or storj.new_project()
                before = state.events
                storj.apply_project_rows(state, table, group, self.seen_ids("project", key))
                if state.events != before:
                    self._queue("user", storj.project_outbox(state, key))
                self.projects[key] = json_round_trip(state)
            elif table in NODE_TABLES:
                state = self.nodes.get(key) or storj.new_node()
                before = state.events
                storj.apply_node_rows(state, table, group, self.seen_ids("node", key))
                if state.events != before and table != "receipts":
                    self._queue("operator", storj.node_outbox(state, key))
                self.nodes[key] = json_round_trip(state)
            else:
                assert table == "users"
                state = self.accounts.get(key) or storj.new_account()
                if storj.apply_account_rows(state, group, self.seen_ids("account", key)):
                    to_users, to_operators = storj.account_outbox(state, key)
                    self._queue("user", to_users)
                    self._queue("operator", to_operators)
                self.accounts[key] = json_round_trip(state)

    def _queue(self, stage: str, pairs) -> None:
        for key, record in pairs:
            self.pending.append((stage, key, json_round_trip(record, storj.Record), False))

    # ------------------------------------------------------------ downstream stages

    def operator_batch(self, email: str, records) -> None:
        state = self.operators.get(email) or storj.new_operator()
        storj.apply_operator_records(state, email, [json_round_trip(r, storj.ToOperator) for r in records],
                                     storj.OperatorNodes(self.operator_nodes, email, state))
        version = self.operator_versions[email] = self.operator_versions.get(email, 0) + 1  # the runtime's
        summary = storj.operator_summary(state, email, version)  # next_version: grows with every batch
        for linked in state.users:
            self.pending.append(("user", linked, json_round_trip(summary, storj.Record), False))
        self.operators[email] = json_round_trip(state)
        self.log.extend(("operator", email, r) for r in records)

    def user_batch(self, uid: str, records) -> None:
        state = self.users.get(uid) or storj.new_user()
        storj.apply_user_records(state, [json_round_trip(r, storj.ToUser) for r in records])
        self.users[uid] = json_round_trip(state)
        self.log.extend(("user", uid, r) for r in records)

    def deliver(self, select=None, rng: random.Random | None = None, rounds: int | None = None):
        """Deliver pending records (those ``select(stage, key, record)`` accepts) until none
        is left. Without rng: everything pending, one batch per destination key, in order.
        With rng: a random part of it per round, shuffled, cut into random batches, and
        sometimes delivered twice (at-least-once). ``rounds`` bounds the number of rounds."""
        done = 0
        while rounds is None or done < rounds:
            chosen = [i for i, (stage, key, record, _) in enumerate(self.pending)
                      if select is None or select(stage, key, record)]
            if not chosen:
                return self
            done += 1
            if rng is not None:
                rng.shuffle(chosen)
                chosen = chosen[:rng.randint(1, len(chosen))]
            taken = set(chosen)
            items = [self.pending[i] for i in chosen]
            self.pending = [item for i, item in enumerate(self.pending) if i not in taken]
            if rng is not None:
                for stage, key, record, again in items:
                    if not again and rng.random() < 0.1:
                        self.pending.append((stage, key, record, True))
            groups: dict[tuple[str, str], list] = defaultdict(list)
            for stage, key, record, _ in items:
                groups[stage, key].append(record)
            for (stage, key), records in groups.items():
                batches = [records]
                if rng is not None and len(records) > 1:
                    cuts = sorted(rng.sample(range(1, len(records)), rng.randint(0, len(records) - 1)))
                    batches = [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)])]
                for batch in batches:
                    (self.operator_batch if stage == "operator" else self.user_batch)(key, batch)
        return self

    def end(self, rng: random.Random | None = None):
        """The end mark of a replay: close every usage window, then deliver everything."""
        for key, state in list(self.projects.items()):
            if storj.has_open_usage_sessions(state):
                storj.close_project_windows(state)
                self._queue("user", storj.project_outbox(state, key))
                self.projects[key] = json_round_trip(state)
        return self.deliver(rng=rng)

    # ------------------------------------------------------------ output

    def user_features(self) -> dict:
        return {uid: storj.user_features(state) for uid, state in sorted(self.users.items())}

    def operator_features(self) -> dict:
        out = {}
        for email, state in sorted(self.operators.items()):
            features = storj.operator_features(state)
            if features is not None:
                out[email] = features
        return out

    def user(self, uid: str) -> dict:
        return storj.user_features(self.users[uid])


def run(*items, rng=None) -> Harness:
    """Send every item (one batch each), delivering after each, then end the run."""
    h = Harness()
    for item in items:
        h.send(item)
        h.deliver(rng=rng)
    return h.end(rng=rng)


EMPTY_USER = EMPTY_STORJ_USER


def assert_snapshot(features: dict, **fields):
    """The whole user snapshot equals a user with no data, updated with fields."""
    expected = {**EMPTY_USER, **fields}
    assert typed(features) == typed(expected)
    for name in ("upload_bytes_by_month", "download_bytes_by_month", "operator_paid_by_month"):
        assert list(features[name]) == sorted(features[name])


def assert_fields(features: dict, **fields):
    assert typed({name: features[name] for name in fields}) == typed(fields)


def operator(nodes=0, wallets=(), never=0, disqualified=0, suspended=0, free_disk=0, pieces=0,
             paid=None, total=0.0, users=()):
    return {"nodes": nodes, "wallets": list(wallets), "never_contacted_nodes": never,
            "disqualified_nodes": disqualified, "suspended_nodes": suspended, "free_disk_bytes": free_disk,
            "piece_count": pieces, "paid_by_month": paid or {}, "paid_total": total, "users": list(users)}


# --------------------------------------------------------------------------- projects and users


def test_project_moving_from_a_to_b_takes_all_its_usage():
    h = Harness().send(
        user("ua", "ea", "2021-01-01"),
        user("ub", "eb", "2021-01-02 23:59:59"),
        project("p1", "ua", "2021-01-05", usage=100, bandwidth=1000),
        bbr("p1", "2021-02-01 10:00:00", 1, 10),
        bbr("p1", "2021-02-01 11:00:00", 2, 2000),
        bst("p1", "2021-02-02", 50),
    ).deliver()
    assert_snapshot(
        h.user("ua"), email_hash="ea", created_at="2021-01-01", projects=1,
        project_created_dates=["2021-01-05"], bandwidth_limit_bytes=1000, usage_limit_bytes=100,
        uploads=1, downloads=1, upload_bytes_by_month={"2021-02": 10},
        download_bytes_by_month={"2021-02": 2000},
        first_activity_at="2021-02-01T10:00:00", last_activity_at="2021-02-01T11:00:00",
        storage_bytes=50, storage_updated_at="2021-02-02T00:00:00",
        over_bandwidth_months=["2021-02"],  # 2,000 > 1,000
        usage_sessions_count=1, usage_sessions_seconds=3600.0,  # still open, already counted
    )
    assert_snapshot(h.user("ub"), email_hash="eb", created_at="2021-01-02")

    h.send(
        project("p1", "ub", "2021-03-01", usage=40, bandwidth=5000),  # newer row: moves to ub
        bbr("p1", "2021-02-01 12:00:00", 1, 5),                       # usage after the move
    ).deliver().end()
    assert_snapshot(h.user("ua"), email_hash="ea", created_at="2021-01-01")  # projects 0
    assert_snapshot(
        h.user("ub"), email_hash="eb", created_at="2021-01-02", projects=1,
        project_created_dates=["2021-03-01"], bandwidth_limit_bytes=5000, usage_limit_bytes=40,
        uploads=2, downloads=1, upload_bytes_by_month={"2021-02": 15},
        download_bytes_by_month={"2021-02": 2000},
        first_activity_at="2021-02-01T10:00:00", last_activity_at="2021-02-01T12:00:00",
        storage_bytes=50, storage_updated_at="2021-02-02T00:00:00",
        over_bandwidth_months=[],      # 2,000 is within the current limit 5,000
        over_storage_limit=True,       # 50 > 40, the current usage limit
        usage_sessions_count=1, usage_sessions_seconds=7200.0,
    )

    h.send(project("p1", "ua", "2021-04-01", usage=40, bandwidth=5000)).deliver().end()  # and back
    assert_snapshot(h.user("ub"), email_hash="eb", created_at="2021-01-02")
    assert h.user("ua")["projects"] == 1 and h.user("ua")["uploads"] == 2
    assert h.user("ua")["project_created_dates"] == ["2021-04-01"]


def test_usage_before_its_project_is_held_then_joined():
    h = Harness().send(
        bbr("p9", "2021-02-01 10:00:00", 1, 7),
        bst("p9", "2021-02-03", 9),
        [bbr("p9", "2021-02-01 10:30:00", 2, 3), bbr("p9", "2021-02-01 10:30:00", 3, 1000)],
    ).deliver()
    assert h.users == {} and h.pending == []  # held: counts nowhere, no user yet
    h.send(project("P9", "UC", "2021-01-01T08:00:00")).deliver().end()
    assert sorted(h.users) == ["uc"]
    assert_snapshot(
        h.user("uc"), projects=1, project_created_dates=["2021-01-01"],
        uploads=1, downloads=1,  # action 3 is neither, but counts for activity and sessions
        upload_bytes_by_month={"2021-02": 7}, download_bytes_by_month={"2021-02": 3},
        first_activity_at="2021-02-01T10:00:00", last_activity_at="2021-02-01T10:30:00",
        storage_bytes=9, storage_updated_at="2021-02-03T00:00:00",
        usage_sessions_count=1, usage_sessions_seconds=1800.0,
    )


def test_payments_before_their_node_are_held_then_joined():
    h = Harness().send(
        payment("n9", "2021-03-01", 500000),
        payment("n9", "2021-04-02 10:00:00", 1),
        receipt("n9", "2021-03-01", 10**12),
        user("ua", "e9", "2021-01-01"),
    ).deliver()
    assert h.operator_features() == {}
    assert_fields(h.user("ua"), operator_nodes=0, operator_paid_total=0.0)
    h.send(node("n9", "E9", "2021-01-01", wallet="0xAB")).deliver().end()
    assert typed(h.operator_features()) == typed({"e9": operator(
        nodes=1, wallets=["0xab"], paid={"2021-03": 0.5, "2021-04": 0.000001}, total=0.500001, users=["ua"])})
    assert_fields(h.user("ua"), operator_nodes=1, operator_paid_by_month={"2021-03": 0.5, "2021-04": 0.000001},
                  operator_paid_total=0.500001)


def test_superseded_project_row_arriving_after_the_newer_one_is_ignored_but_its_user_exists():
    h = run(
        project("p1", "ub", "2021-03-01", usage=7, bandwidth=70),
        bbr("p1", "2021-03-02 00:00:00", 1, 5),
        project("p1", "ua", "2021-01-01", usage=1, bandwidth=1),  # older: loses
        user("ua", "new", "2021-02-01"),
        user("ua", "old", "2021-01-01"),                          # older: loses
    )
    assert sorted(h.users) == ["ua", "ub"]
    assert_snapshot(h.user("ua"), email_hash="new", created_at="2021-02-01")  # exists, projects 0
    assert_snapshot(
        h.user("ub"), projects=1, project_created_dates=["2021-03-01"], bandwidth_limit_bytes=70,
        usage_limit_bytes=7, uploads=1, upload_bytes_by_month={"2021-03": 5},
        first_activity_at="2021-03-02T00:00:00", last_activity_at="2021-03-02T00:00:00",
    )


@pytest.mark.parametrize("one_batch", [False, True])
@pytest.mark.parametrize("b_last", [True, False])
def test_equal_event_times_the_later_arrival_wins(one_batch, b_last):
    first, second = ("a", "b") if b_last else ("b", "a")
    limits = {"a": 1, "b": 2}
    groups = [
        [project("p1", f"u{x}", "2021-01-01", usage=limits[x], bandwidth=limits[x]) for x in (first, second)],
        [user("u1", f"e{x}", "2021-01-01 00:00:00") for x in (first, second)],
        [node("n1", f"e{x}", "2021-01-01", free_disk=limits[x]) for x in (first, second)],
    ]
    items = groups if one_batch else [item for group in groups for item in group]
    h = run(*items)
    winner, loser = f"u{second}", f"u{first}"
    assert_fields(h.user(winner), projects=1, bandwidth_limit_bytes=limits[second],
                  usage_limit_bytes=limits[second])
    assert_fields(h.user(loser), projects=0)
    assert_fields(h.user("u1"), email_hash=f"e{second}", created_at="2021-01-01", operator_nodes=1)
    assert typed(h.operator_features()) == typed({f"e{second}": operator(
        nodes=1, free_disk=limits[second], users=["u1"])})


def test_duplicate_rows_count_once():
    h = Harness().send(
        [bbr("p1", "2021-02-01 10:00:00", 1, 100), bbr("P1", "2021-02-01T10:00", 1, "100.0")],  # held
        project("p1", "ua", "2021-01-01", bandwidth=150),
        [project(" P1 ", "UA", "2021-01-01 00:00", bandwidth="150")],
        bbr("p1", "2021-02-01 10:00:00", 1, 100),
        [bbr("p1", "2021-02-01 10:20:00", 2, 100), bbr("p1", "2021-02-01 10:20:00", 2, 100)],
        bbr("p1", "2021-02-01 10:20:00", 2, 100),  # a third download of 100 would be over 150
        bst("p1", "2021-02-02", 30), bst("p1", "2021-02-02T00:00:00", 30),
        node("n1", "e1", "2021-01-01"),
        payment("n1", "2021-03-01", 1000000), payment("N1", "2021-03-01T00:00:00", "1e6"),
        user("ua", "e1", "2021-01-01"), user("UA", "E1", "2021-01-01"),
    ).deliver().end()
    assert_snapshot(
        h.user("ua"), email_hash="e1", created_at="2021-01-01", projects=1,
        project_created_dates=["2021-01-01"], bandwidth_limit_bytes=150, uploads=1, downloads=1,
        upload_bytes_by_month={"2021-02": 100}, download_bytes_by_month={"2021-02": 100},
        first_activity_at="2021-02-01T10:00:00", last_activity_at="2021-02-01T10:20:00",
        storage_bytes=30, storage_updated_at="2021-02-02T00:00:00",
        usage_sessions_count=1, usage_sessions_seconds=1200.0,
        operator_nodes=1, operator_paid_by_month={"2021-03": 1.0}, operator_paid_total=1.0,
    )
    assert h.projects["p1"].events == 4  # project row, 2 bbr rows (one held), 1 bst row
    assert h.nodes["n1"].events == 2


# --------------------------------------------------------------------------- operators and the link


def test_user_email_change_moves_the_operator_values_and_the_users_lists():
    h = run(
        node("n1", "e1", "2021-01-01", free_disk=10),
        payment("n1", "2021-03-01", 2000000),
        node("n2", "e2", "2021-01-01", free_disk=20),
        node("n3", "e2", "2021-01-01", free_disk=30),
        payment("n2", "2021-04-01", 3000000),
        user("ua", "e1", "2021-01-01"),
        user("ub", "e1", "2021-01-01"),
    )
    e1 = dict(operator_nodes=1, operator_paid_by_month={"2021-03": 2.0}, operator_paid_total=2.0)
    e2 = dict(operator_nodes=2, operator_paid_by_month={"2021-04": 3.0}, operator_paid_total=3.0)
    assert_fields(h.user("ua"), email_hash="e1", **e1)
    assert [h.operator_features()[e]["users"] for e in ("e1", "e2")] == [["ua", "ub"], []]

    h.send(user("ua", "e2", "2021-02-01")).deliver().end()
    assert_fields(h.user("ua"), email_hash="e2", created_at="2021-02-01", **e2)
    assert_fields(h.user("ub"), email_hash="e1", **e1)
    assert [h.operator_features()[e]["users"] for e in ("e1", "e2")] == [["ub"], ["ua"]]

    h.send(user("ua", "E1", "2021-03-01")).deliver().end()  # back, upper-cased
    assert_fields(h.user("ua"), email_hash="e1", created_at="2021-03-01", **e1)
    assert [h.operator_features()[e]["users"] for e in ("e1", "e2")] == [["ua", "ub"], []]

    h.send(node("n1", "e1", "2021-01-02", free_disk=10), payment("n1", "2021-03-02", 1)).deliver().end()
    assert_fields(h.user("ua"), operator_paid_total=2.000001)  # followed while linked again

    h.send(user("ua", None, "2021-04-01")).deliver().end()  # no email: no operator
    assert_snapshot(h.user("ua"), created_at="2021-04-01")
    assert h.operator_features()["e1"]["users"] == ["ub"]
    assert typed(h.operator_features()["e1"]) == typed(operator(
        nodes=1, free_disk=10, paid={"2021-03": 2.000001}, total=2.000001, users=["ub"]))


def test_operator_summary_before_the_account_record_that_names_its_email():
    h = Harness().send(
        node("n1", "e1", "2021-01-01", wallet="w"), payment("n1", "2021-03-01", 1500000),
        node("n2", "e2", "2021-01-01"), payment("n2", "2021-05-01", 7),
    ).deliver()
    h.send(user("ua", "e1", "2021-01-01"))
    not_account = lambda stage, key, record: kind(record) != "account"  # noqa: E731
    h.deliver(select=not_account)
    assert [kind(r) for _, _, r, _ in h.pending] == ["account"]
    assert [kind(r) for stage, key, r in h.log if key == "ua"] == ["operator"]
    assert_snapshot(h.user("ua"))  # no account yet: no email, no operator values
    h.deliver().end()
    assert_snapshot(h.user("ua"), email_hash="e1", created_at="2021-01-01", operator_nodes=1,
                    operator_paid_by_month={"2021-03": 1.5}, operator_paid_total=1.5)

    h.send(user("ua", "e2", "2021-02-01"))  # again for an email change: the new summary first
    h.deliver(select=not_account)
    assert_fields(h.user("ua"), email_hash="e1", operator_nodes=1)
    h.deliver().end()
    assert_snapshot(h.user("ua"), email_hash="e2", created_at="2021-02-01", operator_nodes=1,
                    operator_paid_by_month={"2021-05": 0.000007}, operator_paid_total=0.000007)


def test_node_moving_to_another_email_takes_its_payments():
    h = run(
        node("n1", "e1", "2021-01-01", wallet="w1", free_disk=100, piece_count=5,
             last_contact="1970-01-01 00:00:00", disqualified="2021-03-01"),
        payment("n1", "2021-03-01", 1500000),
        payment("n1", "2021-04-10 12:00:00", 250000),
        node("n2", "e1", "2021-01-01", wallet="w2", free_disk=1, suspended="x", last_contact=None),
        user("ua", "e1", "2021-01-01"),
        user("ub", "e2", "2021-01-01"),
    )
    assert typed(h.operator_features()) == typed({"e1": operator(
        nodes=2, wallets=["w1", "w2"], never=2, disqualified=1, suspended=1, free_disk=101, pieces=5,
        paid={"2021-03": 1.5, "2021-04": 0.25}, total=1.75, users=["ua"])})

    h.send(node("n1", "e2", "2021-02-01", wallet="w1", free_disk=100, piece_count=5),
           payment("n1", "2021-05-01", 1)).deliver().end()
    paid = {"2021-03": 1.5, "2021-04": 0.25, "2021-05": 0.000001}
    assert typed(h.operator_features()) == typed({
        "e1": operator(nodes=1, wallets=["w2"], never=1, suspended=1, free_disk=1, users=["ua"]),
        "e2": operator(nodes=1, wallets=["w1"], free_disk=100, pieces=5, paid=paid, total=1.750001,
                       users=["ub"]),
    })
    assert_fields(h.user("ua"), operator_nodes=1, operator_paid_by_month={}, operator_paid_total=0.0)
    assert_fields(h.user("ub"), operator_nodes=1, operator_paid_by_month=paid, operator_paid_total=1.750001)

    h.send(node("n2", None, "2021-02-01", wallet="w2")).deliver().end()  # e1 has no node left
    assert sorted(h.operator_features()) == ["e2"]
    assert_fields(h.user("ua"), operator_nodes=0, operator_paid_by_month={}, operator_paid_total=0.0)


# --------------------------------------------------------------------------- storage, limits, sessions


def test_storage_is_the_sum_at_the_latest_interval():
    h = run(
        project("s1", "u1", "2021-01-01", usage=250),
        project("s2", "u1", "2021-01-01", usage=5),  # no bst rows: 0, does not move the time
        bst("s1", "2021-04-01", 999),
        [bst("s1", "2021-04-02", 100, inline=1), bst("s1", "2021-04-02", 200, inline=2)],
        bst("s1", "2021-04-02", None, inline=3),
        bst("s1", "2021-04-01 23:00:00", 5000, inline=9),  # older, arriving later: not the latest
    )
    assert_fields(h.user("u1"), storage_bytes=300, storage_updated_at="2021-04-02T00:00:00",
                  over_storage_limit=True, usage_limit_bytes=255)  # 300 > 250
    h.send(bst("s1", "2021-04-03 06:00:00", 10)).deliver().end()
    assert_fields(h.user("u1"), storage_bytes=10, storage_updated_at="2021-04-03T06:00:00",
                  over_storage_limit=False)
    h.send(bst("s2", "2021-04-03", 6)).deliver().end()  # 6 > 5
    assert_fields(h.user("u1"), storage_bytes=16, storage_updated_at="2021-04-03T06:00:00",
                  over_storage_limit=True)


def test_over_limits_with_null_limits_are_never_over():
    h = run(
        project("b1", "u1", "2021-01-01"),                           # no limits at all
        project("b2", "u1", "2021-01-01", usage=500, bandwidth=1000),
        bbr("b1", "2021-03-01 00:00:00", 2, 10**15),
        bst("b1", "2021-03-01", 10**12),
        bbr("b2", "2021-03-03 00:00:00", 2, 600),
        bbr("b2", "2021-03-20 00:00:00", 2, 400),                     # March: 1,000, not over
        bbr("b2", "2021-04-01 00:00:00", 2, 1001),                    # April: 1,001 > 1,000
        bbr("b2", "2021-04-02 00:00:00", 1, 10**9),                   # uploads never count as over
        bst("b2", "2021-03-01", 500),                                 # 500, not > 500
    )
    assert_fields(h.user("u1"), over_bandwidth_months=["2021-04"], over_storage_limit=False, tier="free",
                  bandwidth_limit_bytes=1000, usage_limit_bytes=500, storage_bytes=10**12 + 500,
                  download_bytes_by_month={"2021-03": 10**15 + 1000, "2021-04": 1001})
    h.send(project("b2", "u1", "2021-02-01", usage=499, bandwidth=999),  # the current limits count
           project("b1", "u1", "2021-02-01", bandwidth=10**16)).deliver().end()  # 10**15 is within
    assert_fields(h.user("u1"), over_bandwidth_months=["2021-03", "2021-04"], over_storage_limit=True,
                  tier="paid", bandwidth_limit_bytes=10**16 + 999, usage_limit_bytes=499)
    h.send(project("b2", "u1", "2021-03-01")).deliver().end()  # limits gone again: never over
    assert_fields(h.user("u1"), over_bandwidth_months=[], over_storage_limit=False,
                  bandwidth_limit_bytes=10**16, usage_limit_bytes=0, tier="paid")


SESSION_ROWS = [
    bbr("s1", "2021-04-20 10:00:00", 1, 1),
    bbr("s1", "2021-04-20 10:00:00", 2, 1),          # same instant: one point
    bbr("s1", "2021-04-20 12:00:00", 1, 1),          # gap 7,200 s: same session
    bbr("s1", "2021-04-20 14:00:01", 1, 1),          # gap 7,201 s: a new session
    bbr("s1", "2021-04-20 14:30:01", 1, 1),
    bbr("s1", "2021-04-20 20:00:00", 1, 1),          # a single instant: not kept
    bbr("s1", "2021-04-20 20:00:00", 2, 1),
    bbr("s1", "2021-04-21 10:00:00", 1, 1),          # the day after: closes the earlier ones
    bbr("s1", "2021-04-21 10:00:30", 1, 1),
    bbr("s2", "2021-05-01 00:00:00", 1, 1),
    bbr("s2", "2021-05-01 00:00:00.999999", 1, 1),   # < 1 s: not kept
    bbr("s2", "2021-05-02 00:00:00", 1, 1),
    bbr("s2", "2021-05-02 00:00:01", 1, 1),          # exactly 1 s: kept
]


@pytest.mark.parametrize("batching", ["one", "each", "pairs"])
def test_usage_sessions_at_the_gap_edge(batching):
    if batching == "one":
        items = [[r for r in SESSION_ROWS]]
    elif batching == "each":
        items = list(SESSION_ROWS)
    else:
        items = [SESSION_ROWS[i:i + 2] for i in range(0, len(SESSION_ROWS), 2)]
    h = Harness().send(project("s1", "u1", "2021-01-01"), project("s2", "u1", "2021-01-01"), *items)
    h.deliver()
    # s1: 7,200 + 1,800 + 30 s; s2: 1 s
    expected = dict(usage_sessions_count=4, usage_sessions_seconds=9031.0)
    assert_fields(h.user("u1"), **expected)  # before the end mark: open sessions count already
    h.end()
    assert_fields(h.user("u1"), **expected, uploads=11, downloads=2,
                  first_activity_at="2021-04-20T10:00:00", last_activity_at="2021-05-02T00:00:01")
    assert not any(storj.has_open_usage_sessions(s) for s in h.projects.values())
    assert h.projects["s1"].late_usage_rows == 0


def test_single_instant_project_keeps_no_session():
    h = run(project("p", "u", "2021-01-01"),
            [bbr("p", "2021-04-20 10:00:00", 1, 1), bbr("p", "2021-04-20 10:00:00", 2, 1)])
    assert_fields(h.user("u"), usage_sessions_count=0, usage_sessions_seconds=0.0, uploads=1, downloads=1)


# --------------------------------------------------------------------------- redelivery


def rich_run() -> Harness:
    return run(
        user("ua", "e1", "2021-01-01"), user("ub", "e2", "2021-01-01"),
        node("n1", "e1", "2021-01-01", wallet="w1", free_disk=5), payment("n1", "2021-03-01", 1000),
        node("n2", "e2", "2021-01-01", wallet="w2"), payment("n2", "2021-04-01", 2000),
        project("p1", "ua", "2021-01-01", usage=1, bandwidth=10),
        bbr("p1", "2021-03-01 00:00:00", 2, 11), bst("p1", "2021-03-01", 2),
        project("p2", "ub", "2021-01-01"), bbr("p2", "2021-03-01 00:00:00", 1, 5),
        bbr("p2", "2021-03-01 01:00:00", 1, 5),
        project("p1", "ub", "2021-02-01", usage=1, bandwidth=10),   # p1 moves to ub
        user("ua", "e2", "2021-02-01"),                             # ua's email changes
        node("n1", "e2", "2021-02-01", wallet="w1", free_disk=5),   # n1 moves
        node("n2", "e3", "2021-02-01", wallet="w2"),                # n2 moves away
    )


@pytest.mark.parametrize("inline", [0, 1, 100])
def test_where_an_operators_nodes_are_kept_changes_no_feature(inline, monkeypatch):
    """An operator's first INLINE_NODES nodes in its state, the others beside it: the same features,
    whatever the limit, and again after its records are redelivered in reverse order."""
    expected = rich_run()
    monkeypatch.setattr(storj, "INLINE_NODES", inline)
    h = rich_run()
    for _ in range(2):
        assert typed(h.user_features()) == typed(expected.user_features())
        assert typed(h.operator_features()) == typed(expected.operator_features())
        for stage, key, record in reversed(list(h.log)):
            (h.operator_batch if stage == "operator" else h.user_batch)(key, [record])
        h.deliver()
    most = max(len(state.inline_nodes) for state in h.operators.values())
    aside = sum(state.nodes_aside or 0 for state in h.operators.values())
    assert most == min(inline, 2) and aside == len(h.operator_nodes.data)  # e2 has had both nodes
    assert aside > 0 if inline < 2 else aside == 0


def test_an_operator_state_from_before_nodes_were_kept_in_it_goes_on_exact(monkeypatch):
    """A record written when every node was beside the state (no count of them): its nodes are found
    there, and nodes it meets now go into the state."""
    first = [user("ua", "e1", "2021-01-01"), node("n1", "e1", "2021-01-01", wallet="w1", free_disk=5),
             payment("n1", "2021-03-01", 1000)]
    then = [node("n2", "e1", "2021-01-02", wallet="w2"), node("n1", "e2", "2021-02-01", wallet="w1", free_disk=5),
            node("n3", "e2", "2021-02-02", wallet="w3"), payment("n2", "2021-04-01", 2000)]
    expected = run(*first, *then)
    monkeypatch.setattr(storj, "INLINE_NODES", 0)
    h = Harness()
    for item in first:
        h.send(item)
        h.deliver()
    for state in h.operators.values():
        assert not state.inline_nodes and state.nodes_aside == 1
        state.nodes_aside = None  # as such a record decodes
    monkeypatch.setattr(storj, "INLINE_NODES", 4)
    for item in then:
        h.send(item)
        h.deliver()
    h.end()
    assert typed(h.operator_features()) == typed(expected.operator_features())
    assert typed(h.user_features()) == typed(expected.user_features())
    assert set(h.operators["e2"].inline_nodes) == {"n1", "n3"} and set(h.operators["e1"].inline_nodes) == {"n2"}


def test_redelivered_and_reordered_records_change_nothing():
    h = rich_run()
    users, operators = h.user_features(), h.operator_features()
    assert users["ub"]["projects"] == 2 and users["ua"]["operator_nodes"] == 1  # a non-trivial run
    log = list(h.log)
    assert {kind(r) for _, _, r in log} == {"project", "account", "operator", "node", "link"}

    for replayed in (log, log, list(reversed(log))):  # twice as sent, then in reverse order
        for stage, key, record in replayed:
            (h.operator_batch if stage == "operator" else h.user_batch)(key, [record])
        h.deliver()
        assert typed(h.user_features()) == typed(users)
        assert typed(h.operator_features()) == typed(operators)

    fresh = Harness()  # the whole log in reverse order into fresh downstream states
    for stage, key, record in reversed(log):
        if stage == "operator":
            state = fresh.operators.get(key) or storj.new_operator()
            storj.apply_operator_records(state, key, [record], storj.OperatorNodes(fresh.operator_nodes, key, state))
            fresh.operators[key] = state
        else:
            fresh.user_batch(key, [record])
    assert typed(fresh.user_features()) == typed(users)
    assert typed(fresh.operator_features()) == typed(operators)


# --------------------------------------------------------------------------- against the batch reference

COLUMNS = {
    "users": ("users_a", ["id", "email_hash", "password_hash", "created_at"]),
    "projects": ("projects", ["created_at", "project_id", "user_id", "usage_limit", "bandwidth_limit"]),
    "bbr": ("bbr", ["interval_start", "action", "inline", "settled", "project_id"]),
    "bst": ("bst", ["interval_start", "inline", "remote", "project_id"]),
    "nodes": ("nodes_a", ["id", "wallet", "email_hash", "created_at", "last_contact_success",
                          "disqualified", "suspended", "free_disk", "piece_count"]),
    "payments": ("node_payments", ["period", "node_id", "amount"]),
    "receipts": ("node_payments_receipt", ["period", "node_id", "amount", "receipt"]),
}
STEM_TABLE = {stem: name for name, (stem, _) in COLUMNS.items()}

s = st.sampled_from
CREATED = st.builds(lambda day, at: day + at, s(["2021-01-01", "2021-01-02", "2021-01-03"]),
                    s(["", " 00:00:00", "T00:00", " 12:00:00", "T13:00:00+01:00"]))
BBR_BASE = datetime(2021, 3, 31, 20, 0, 0)
ROWS = {
    "users": st.tuples(s(["u1", "u2", "U2", "u3"]), s(["e1", "E1", "e2", "e3", ""]), s(["pw", "PW"]),
                       CREATED),
    "projects": st.tuples(CREATED, s(["p1", "p2", "P2", "p3"]), s(["u1", "u2", "u3", "u4", ""]),
                          s(["50", "300", "", "0"]), s(["500", "1000", "", "0", "60000000000"])),
    # bbr: (hour step, extra second, separator, action, settled, project); made into text later
    "bbr": st.tuples(st.integers(0, 12), s([0, 0, 1]), s([" ", "T"]), s(["2", "1", "2", "3", ""]),
                     s(["700", "400", "0", ""]), s(["p1", "p2", "P2", "p3", "p4"])),
    "bst": st.tuples(st.builds(lambda d, t: d + t, s(["2021-04-01", "2021-04-02"]), s(["", " 00:00:00", " 06:00"])),
                     s(["0", "1"]), s(["200", "40", "0", ""]), s(["p1", "p2", "p3", "p4"])),
    "nodes": st.tuples(s(["n1", "N1", "n2", "n3"]), s(["", "w1", "W2"]), s(["e1", "e2", "E2", "e4", ""]),
                       CREATED, s(["", "2021-04-01 10:00:00", "1970-01-01 00:00:00", "2070-01-01", "never"]),
                       s(["", "2021-03-01"]), s(["", "x"]), s(["", "0", "100"]), s(["", "7"])),
    "payments": st.tuples(s(["2021-03-01", "2021-03-15 00:00:00", "2021-04-01"]), s(["n1", "n2", "n3", "n4"]),
                          s(["1234567", "100000", "1", ""])),
    "receipts": st.tuples(s(["2021-03-01", "2021-04-01"]), s(["n1", "n2"]), s(["1", "5"]), s(["r1", "R1"])),
}


def bbr_cells(hours, extra, sep, action, settled, pid):
    ts = BBR_BASE + timedelta(hours=hours, seconds=extra)
    return [ts.isoformat(sep), action, "0", settled, pid]


@st.composite
def storj_tables(draw):
    """{table: list of cell lists}, with random exact duplicates; bbr rows in time order."""
    out = {}
    for name, strategy in ROWS.items():
        rows = draw(st.lists(strategy, min_size=int(name in ("users", "projects", "bbr", "nodes")),
                             max_size=8 if name != "bbr" else 16))
        for at, source in draw(st.lists(st.tuples(st.integers(0, 99), st.integers(0, 99)), max_size=3)):
            if rows:
                rows.insert(at % (len(rows) + 1), rows[source % len(rows)])
        if name == "bbr":
            rows.sort(key=lambda r: (r[0], r[1]))  # stable: ties stay in drawn order
            rows = [bbr_cells(*r) for r in rows]
        out[name] = [list(r) for r in rows]
    return out


def write_folder(folder: Path, data: dict, cuts: dict) -> None:
    """Write each table as ap_ and eu_ files (cut at cuts[table]), bbr whole in bucket_data/."""
    for name, rows in data.items():
        stem, columns = COLUMNS[name]
        if name == "bbr":
            parts = {f"bucket_data/us_{stem}.csv": rows}
        else:
            cut = cuts[name] % (len(rows) + 1)
            parts = {f"ap_{stem}.csv": rows[:cut], f"eu_{stem}.csv": rows[cut:]}
        for relative, part in parts.items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["", *columns])
                for number, cells in enumerate(part):
                    writer.writerow([number, *cells])


def read_folder(folder: Path) -> list[tuple[str, object]]:
    """(table, row) in the reference's file order: sorted relative path, then line."""
    items = []
    for path in sorted(folder.rglob("*.csv"), key=lambda p: p.relative_to(folder).as_posix()):
        table = STEM_TABLE[path.stem.partition("_")[2]]
        with path.open(newline="", encoding="utf-8") as handle:
            lines = list(csv.reader(handle))
        header = lines[0]
        assert header[0] == ""
        for cells in lines[1:]:
            items.append(row(table, **dict(zip(header[1:], cells[1:]))))
    return items


def run_in_file_order(items) -> Harness:
    h = Harness()
    for table, r in items:
        h.source(table, [r])
        h.deliver()
    return h.end()


def run_in_random_batches(items, rng: random.Random) -> Harness:
    """Rows of one (table, key) stay in file order, cut into random batches; batches of
    different keys and tables interleave at random; internal records are delivered late,
    partly, shuffled and sometimes twice."""
    queues: dict[tuple[str, str], list] = defaultdict(list)
    for table, r in items:
        queues[table, r.key].append(r)
    chunks: dict[tuple[str, str], list] = {}
    for name, rows in queues.items():
        cuts = sorted(rng.sample(range(1, len(rows)), rng.randint(0, len(rows) - 1))) if len(rows) > 1 else []
        chunks[name] = [rows[a:b] for a, b in zip([0, *cuts], [*cuts, len(rows)])]
    h = Harness()
    while chunks:
        name = rng.choice(sorted(chunks))
        h.source(name[0], chunks[name].pop(0))
        if not chunks[name]:
            del chunks[name]
        if rng.random() < 0.5:
            h.deliver(rng=rng, rounds=rng.randint(1, 3))
    return h.end(rng=rng)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=storj_tables(), cuts=st.fixed_dictionaries({name: st.integers(0, 99) for name in COLUMNS}),
       seed=st.integers(0, 2**32 - 1))
def test_random_row_sets_match_the_batch_reference(data, cuts, seed):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_folder(folder, data, cuts)
        expected = compute_storj(folder)
        items = read_folder(folder)
    want_users, want_operators = typed(expected["user"]), typed(expected["operator"])

    h = run_in_file_order(items)
    assert typed(h.user_features()) == want_users
    assert typed(h.operator_features()) == want_operators
    assert h.pending == []

    h = run_in_random_batches(items, random.Random(seed))
    assert typed(h.user_features()) == want_users
    assert typed(h.operator_features()) == want_operators
    assert all(state.late_usage_rows == 0 for state in h.projects.values())
