"""Owed records (stream.logic.owed): delta records survive crashes exactly once.

A model of the runtime without Kafka: a sender folds input rows into deltas,
writes its state (a "changelog" that may lose its unacknowledged tail in a
crash), and sends each delta only after the state write carrying it is
durable; delivery is ordered and may lose a suffix in a crash. Offsets are
committed only once everything before them is delivered. Whatever the batch
sizes, commit points and crash points, the receiver ends with every row
counted exactly once.
"""
from __future__ import annotations

import copy
import itertools

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.logic import keyvalue, owed


class Holder:
    """What keeps a key's owed records (the runtime's store.Entry); `seen`, `seq`: a sender's state."""

    def __init__(self, seen: int = 0, seq: int = 0):
        self.seen, self.seq = seen, seq
        self.owed: list | None = None


def test_settle_keeps_own_undelivered_drops_own_delivered_and_returns_foreign():
    state = Holder()
    owed.remember(state, ["old", 7], [["t", "u1", {"seq": 1}]])
    owed.remember(state, ["me", 1], [["t", "u1", {"seq": 2}]])
    owed.remember(state, ["me", 2], [["t", "u2", {"seq": 3}]])
    again = owed.settle(state, "me", delivered_upto=1)
    assert again == [["t", "u1", {"seq": 1}]]
    assert state.owed == [[["me", 2], [["t", "u2", {"seq": 3}]]]]
    assert owed.settle(state, "me", delivered_upto=2) == []
    assert not owed.owes(state) and state.owed is None


def test_remember_nothing_leaves_state_untouched():
    state = Holder()
    owed.remember(state, ["me", 1], [])
    assert state.owed is None


class Model:
    """One sender key, one receiver key, a log of rows; crashes lose what was not durable or delivered."""

    def __init__(self, rows):
        self.rows = rows
        self.clock = itertools.count(1)  # the wall-clock floor of sequence numbers
        self.incarnations = itertools.count()
        self.changelog: list[Holder] = []  # durable state writes
        self.pending_writes: list[tuple[Holder, list]] = []  # (state, records sent once it is durable)
        self.sent: list[dict] = []  # handed to the producer, not yet delivered
        self.delivered: list[dict] = []
        self.committed = 0
        self.receiver = {"seq": 0, "total": 0, "rows": 0}
        self._restart()

    def _restart(self):
        self.incarnation = f"i{next(self.incarnations)}"
        self.n = 0
        self.delivered_upto = 0
        self.tags_in_flight: list[tuple[int, int]] = []  # (tag number, index in delivered+sent order)
        self.state = copy.deepcopy(self.changelog[-1]) if self.changelog else Holder()
        self.position = self.committed

    def process(self, size: int):
        batch = self.rows[self.position:self.position + size]
        if not batch:
            return
        self._deliver_durable()
        self.delivered_upto = self.n if not self.pending_writes and not self.sent else self.delivered_upto
        messages = owed.settle(self.state, self.incarnation, self.delivered_upto)
        new = [v for i, v in enumerate(batch, start=self.position) if i >= self.state.seen]
        if new:
            self.state.seen = self.position + len(batch)
            self.state.seq = max(self.state.seq + 1, next(self.clock))
            messages.append(["t", "r", {"seq": self.state.seq, "delta": sum(new), "rows": len(new)}])
        if messages:
            self.n += 1
            owed.remember(self.state, [self.incarnation, self.n], messages)
            self.pending_writes.append((copy.deepcopy(self.state), [m[2] for m in messages]))
        self.position += len(batch)

    def _deliver_durable(self):
        for state, records in self.pending_writes:
            self.changelog.append(state)
            self.sent.extend(records)
        self.pending_writes = []

    def commit(self):
        """Flush everything (state writes, then the records they release), then commit the offset."""
        self._deliver_durable()
        self.delivered.extend(self.sent)
        self.sent = []
        self.committed = self.position

    def crash(self, durable_writes: int, delivered_records: int):
        """Keep a prefix of the pending state writes and a prefix of the records already released."""
        for state, records in self.pending_writes[:durable_writes]:
            self.changelog.append(state)
            self.sent.extend(records)
        self.pending_writes = []
        self.delivered.extend(self.sent[:delivered_records])
        self.sent = []
        self._restart()

    def receive(self):
        for record in self.delivered:
            if record["seq"] > self.receiver["seq"]:
                self.receiver["seq"] = record["seq"]
                self.receiver["total"] += record["delta"]
                self.receiver["rows"] += record["rows"]
        self.delivered = []


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.integers(1, 100), min_size=1, max_size=60),
       steps=st.lists(st.tuples(st.sampled_from(["batch", "batch", "commit", "crash"]), st.integers(1, 8),
                                st.integers(0, 8)), max_size=40))
def test_deltas_are_counted_exactly_once_whatever_the_crashes(rows, steps):
    model = Model(rows)
    for action, a, b in steps:
        if action == "batch":
            model.process(a)
        elif action == "commit":
            model.commit()
        else:
            model.crash(durable_writes=a % (len(model.pending_writes) + 1), delivered_records=b)
        model.receive()
    # the rest of the input (redelivered from the committed offset after a crash), then a commit
    model.process(len(rows))
    model.commit()
    model.receive()
    assert model.receiver["rows"] == len(rows)
    assert model.receiver["total"] == sum(rows)


def test_large_owed_records_wait_beside_the_state_and_leave_with_their_delivery():
    store = keyvalue.DictStore()
    spill = owed.Spill(store, "device:7")
    state = Holder()
    big = [["t", "u1", {"acts": ["x" * 100] * 400}]]  # ~40 KB: past INLINE_BYTES
    owed.remember(state, ["me", 1], big, spill)
    owed.remember(state, ["me", 2], [["t", "u1", {"seq": 2}]], spill)
    assert len(orjson.dumps(state.owed)) < 200 and len(store.data) == 1  # the state keeps the tag alone
    assert owed.settle(state, "me", delivered_upto=1, spill=spill) == []
    assert store.data == {}  # delivered: the entry is gone
    owed.remember(state, ["me", 3], big, spill)
    assert owed.settle(state, "next worker", delivered_upto=0, spill=spill) == [["t", "u1", {"seq": 2}], *big]
    assert store.data == {} and not owed.owes(state)
