"""De-duplication ids kept outside a key's state (stream.logic.dedup): exact, and no bucket grows with history."""
from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.rows import Row
from stream.logic import dedup, keyvalue
from stream.logic.dedup import DAY_US


def row(ts, eid, key="p1"):
    return Row(key, ts, eid, {})


def largest_value(store: keyvalue.DictStore) -> int:
    return max((len(orjson.dumps(v)) for v in store.data.values()), default=0)


rows_strategy = st.lists(
    st.tuples(st.one_of(st.none(), st.integers(0, 40 * DAY_US)), st.integers(0, 60)), max_size=120)


@settings(max_examples=300, deadline=None)
@given(rows=rows_strategy, cuts=st.lists(st.integers(0, 120), max_size=8), cap=st.integers(1, 5))
def test_day_buckets_keep_exactly_the_first_row_of_each_id(rows, cuts, cap):
    """Whatever the batching and however small a bucket part: each id's first row, and only it, is new."""
    original = dedup.MAX_BUCKET_IDS
    dedup.MAX_BUCKET_IDS = cap
    try:
        store, state, new = keyvalue.DictStore(), {}, []
        # an id's rows share a time here, as storj content ids do (the time is part of the content)
        times = {}
        rows = [row(times.setdefault(eid, ts), f"{eid:016x}") for ts, eid in rows]
        bounds = sorted({0, len(rows), *(c for c in cuts if c <= len(rows))})
        for lo, hi in zip(bounds, bounds[1:]):
            new += dedup.DayBucketedIds(store, "project:p1").first_seen(state, rows[lo:hi])
        firsts, seen = [], set()
        for r in rows:
            if r.eid not in seen:
                seen.add(r.eid)
                firsts.append(r)
        assert new == firsts
        assert state.get("dups", 0) == len(rows) - len(firsts)
        assert all(len(v["ids"]) <= cap for v in store.data.values())
    finally:
        dedup.MAX_BUCKET_IDS = original


def test_a_day_with_many_rows_goes_on_in_parts_under_the_size_bound():
    store, state = keyvalue.DictStore(), {}
    seen = dedup.DayBucketedIds(store, "project:p1")
    rows = [row(5 * DAY_US + i, f"{i:016x}") for i in range(10_000)]
    for lo in range(0, len(rows), 2_500):
        assert seen.first_seen(state, rows[lo:lo + 2_500]) == rows[lo:lo + 2_500]
    assert seen.first_seen(state, rows[::7]) == []
    assert len(store.data) == 5 and state["dn"] == [5, None]  # 10,000 ids in parts of 2,000, beside the state
    assert largest_value(store) < 40_000


def test_entities_never_share_a_bucket():
    store, state_a, state_b = keyvalue.DictStore(), {}, {}
    a = dedup.DayBucketedIds(store, "project:x|d1")
    b = dedup.DayBucketedIds(store, "project:x")
    assert a.first_seen(state_a, [row(DAY_US, "e")]) != []
    assert b.first_seen(state_b, [row(DAY_US, "e")]) != []


def test_a_horizon_forgets_old_days_and_counts_rows_older_than_it():
    store, state = keyvalue.DictStore(), {}
    seen = dedup.DayBucketedIds(store, "project:p1", horizon_us=3 * DAY_US)
    for day in range(100):
        assert seen.first_seen(state, [row(day * DAY_US, f"{day:016x}")]) != []
    assert state["dd"] == [96, 97, 98] and state["dn"][0] == 99  # the newest day's ids stay in the state
    assert len(store.data) == 3  # buckets of the other days kept, the older ones deleted
    assert seen.first_seen(state, [row(50 * DAY_US, f"{50:016x}")]) == []  # older than the horizon
    assert state["expired"] == 1
    assert seen.first_seen(state, [row(97 * DAY_US, f"{97:016x}")]) == []  # a duplicate inside it
    assert state["dups"] == 1


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.integers(0, 50_000), max_size=300), cuts=st.lists(st.integers(0, 300), max_size=6))
def test_integer_blocks_keep_exactly_the_first_of_each_id(ids, cuts):
    store = keyvalue.DictStore()
    seen = dedup.BlockedIntIds(store, "42")
    bounds = sorted({0, len(ids), *(c for c in cuts if c <= len(ids))})
    flags = []
    for lo, hi in zip(bounds, bounds[1:]):
        flags += seen.first_seen("dnsreqs", ids[lo:hi])
    expected, known = [], set()
    for value in ids:
        expected.append(value not in known)
        known.add(value)
    assert flags == expected
    assert dedup.BlockedIntIds(store, "42").first_seen("httpreqs", ids[:1]) == [True] * len(ids[:1])


@pytest.mark.parametrize("stride", [1, 2, 3, 17])
def test_interleaved_ids_stay_small_records(stride):
    """A device whose ids interleave with other devices' (every `stride`-th id) over 100,000 events."""
    store = keyvalue.DictStore()
    seen = dedup.BlockedIntIds(store, "7")
    ids = list(range(0, 100_000 * stride, stride))
    for lo in range(0, len(ids), 2_500):
        assert all(seen.first_seen("dnsreqs", ids[lo:lo + 2_500]))
    assert not any(seen.first_seen("dnsreqs", ids[::101]))
    assert largest_value(store) < 16_000
