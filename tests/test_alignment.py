"""Event-time alignment of the partitions that feed one clock (stream.runtime.alignment), without a broker."""
from __future__ import annotations

import math
from typing import NamedTuple

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.runtime.alignment import EventTimeAligner


class Rec(NamedTuple):
    offset: int
    ts: int | None


ALLOWANCE = 10


def aligner(max_wait_s: float = math.inf) -> EventTimeAligner:
    return EventTimeAligner(lambda r: r.ts, allowance_us=ALLOWANCE, max_wait_s=max_wait_s)


@st.composite
def partitions_and_fetches(draw):
    """Each partition: records in offset order with non-decreasing event times; then an order of fetches."""
    count = draw(st.integers(1, 4))
    logs = {}
    for p in range(count):
        steps = draw(st.lists(st.integers(0, 8), max_size=25))
        ts, records = draw(st.integers(0, 30)), []
        for offset, step in enumerate(steps):
            ts += step
            records.append(Rec(offset, ts))
        logs[p] = records
    sizes = draw(st.lists(st.integers(1, 6), min_size=60, max_size=60))
    order = draw(st.lists(st.integers(0, count - 1), min_size=60, max_size=60))
    return logs, list(zip(order, sizes))


def run(logs, fetches, check_bound: bool):
    """Offer fetches in the given order (then whatever is left), releasing after each; return what came out."""
    a = aligner()
    fetched = {p: 0 for p in logs}
    released: dict = {p: [] for p in logs}
    out = []

    def caught_up(p):
        return fetched[p] == len(logs[p]) and p not in a.held

    def release():
        for p, records in a.release(list(logs), caught_up, now_s=0.0):
            for record in records:
                if check_bound:  # never ahead of another partition's next record by more than the allowance
                    for q in logs:
                        pending = logs[q][len(released[q]):]
                        if q != p and pending:
                            assert record.ts <= pending[0].ts + ALLOWANCE, (p, record, q, pending[0])
                released[p].append(record)
                out.append((p, record))

    schedule = list(fetches) + [(p, len(logs[p])) for p in logs]
    for p, size in schedule:
        if p in a.held:  # the consumer pauses a partition while records of it are held
            release()
            continue
        chunk = logs[p][fetched[p]: fetched[p] + size]
        fetched[p] += len(chunk)
        a.offer(p, chunk)
        release()
    while a.held or any(fetched[p] < len(logs[p]) for p in logs):
        release()
        for p in logs:  # what is left, once its partition has nothing held (the consumer resumed it)
            if fetched[p] < len(logs[p]) and p not in a.held:
                a.offer(p, logs[p][fetched[p]:])
                fetched[p] = len(logs[p])
                release()
    return released, out, a


@given(partitions_and_fetches())
@settings(max_examples=300, deadline=None)
def test_every_record_comes_out_once_in_offset_order_and_within_the_allowance(case):
    logs, fetches = case
    released, _, a = run(logs, fetches, check_bound=True)
    assert released == logs
    assert a.waits == 0


def test_a_partition_far_ahead_waits_for_the_slow_one():
    a = aligner()
    a.offer("fast", [Rec(i, 100 * i) for i in range(10)])
    a.offer("slow", [Rec(0, 0), Rec(1, 5)])
    out = a.release(["fast", "slow"], caught_up=lambda p: False, now_s=0.0)
    assert [(p, [r.offset for r in rs]) for p, rs in out] == [("fast", [0]), ("slow", [0, 1])]
    assert set(a.held) == {"fast"}  # the rest waits: "slow" has more on the broker
    a.offer("slow", [Rec(2, 500)])
    out = a.release(["fast", "slow"], caught_up=lambda p: False, now_s=0.0)
    assert [r.offset for p, rs in out if p == "fast" for r in rs] == [1, 2, 3, 4, 5]


def test_a_caught_up_partition_holds_nobody_back():
    a = aligner()
    a.offer("fast", [Rec(i, 100 * i) for i in range(10)])
    out = a.release(["fast", "idle"], caught_up=lambda p: p == "idle", now_s=0.0)
    assert [len(rs) for _, rs in out] == [10] and not a.held


def test_a_partition_whose_records_never_come_is_waited_for_max_wait_s():
    a = aligner(max_wait_s=2.0)
    a.offer("fast", [Rec(0, 0), Rec(1, 1_000)])
    assert a.release(["fast", "stuck"], caught_up=lambda p: False, now_s=10.0) == []
    assert a.release(["fast", "stuck"], caught_up=lambda p: False, now_s=11.0) == []
    out = a.release(["fast", "stuck"], caught_up=lambda p: False, now_s=12.5)
    assert [r.offset for _, rs in out for r in rs] == [0, 1] and a.waits == 1


def test_records_without_an_event_time_are_never_held_and_duplicates_are_ignored():
    a = aligner()
    a.offer("live", [Rec(0, None), Rec(1, None)])
    a.offer("live", [Rec(1, None), Rec(2, None)])  # fetched again: offset 1 already offered
    out = a.release(["live", "other"], caught_up=lambda p: False, now_s=0.0)
    assert [r.offset for _, rs in out for r in rs] == [0, 1, 2]


def test_a_rebalance_forgets_what_is_held():
    a = aligner()
    a.offer("p", [Rec(5, 100)])
    a.release(["p", "q"], caught_up=lambda p: False, now_s=0.0)
    a.clear()
    assert not a.held
    a.offer("p", [Rec(5, 100)])  # read again from the commit: offered again
    assert "p" in a.held
