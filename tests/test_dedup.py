"""De-duplication ids kept outside a key's state (stream.logic.dedup): exact, and no bucket grows with history."""
from __future__ import annotations

import msgspec
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
@given(rows=rows_strategy, cuts=st.lists(st.integers(0, 120), max_size=8), cap=st.integers(1, 5),
       inline=st.integers(0, 8), reread=st.lists(st.sampled_from(["same", "json", "json without the count"]),
                                                 min_size=9, max_size=9))
def test_day_buckets_keep_exactly_the_first_row_of_each_id(rows, cuts, cap, inline, reread):
    """Whatever the batching, however small a bucket part and however few ids stay in the state, and whether
    the state between batches is the same object, its record read again, or a record written before the
    state kept its count of inline ids: each id's first row, and only it, is new."""
    original = dedup.MAX_BUCKET_IDS, dedup.INLINE_IDS
    dedup.MAX_BUCKET_IDS, dedup.INLINE_IDS = cap, inline
    try:
        store, state, new = keyvalue.DictStore(), dedup.DedupState(), []
        # an id's rows share a time here, as storj content ids do (the time is part of the content)
        times = {}
        rows = [row(times.setdefault(eid, ts), f"{eid:016x}") for ts, eid in rows]
        bounds = sorted({0, len(rows), *(c for c in cuts if c <= len(rows))})
        for (lo, hi), how in zip(zip(bounds, bounds[1:]), reread):
            if how != "same":
                state = msgspec.json.decode(msgspec.json.encode(state), type=dedup.DedupState)
                if how == "json without the count":
                    state.inline_count = None
            new += dedup.DayBucketedIds(store, "project:p1").first_seen(state, rows[lo:hi])
            days = [day for day, _ in state.inline_ids]
            assert days == sorted(set(days)), "the state's days: oldest first, once each"
            assert state.ids_aside_up_to is None or all(day > state.ids_aside_up_to for day in days)
            assert state.inline_count == sum(len(ids) for _, ids in state.inline_ids)
        firsts, seen = [], set()
        for r in rows:
            if r.eid not in seen:
                seen.add(r.eid)
                firsts.append(r)
        assert new == firsts
        assert state.duplicate_rows == len(rows) - len(firsts)
        assert all(len(v["ids"]) <= cap for v in store.data.values())
        assert sum(len(ids) for _, ids in state.inline_ids) <= inline
    finally:
        dedup.MAX_BUCKET_IDS, dedup.INLINE_IDS = original


def test_a_day_with_many_rows_goes_on_in_parts_under_the_size_bound():
    store, state = keyvalue.DictStore(), dedup.DedupState()
    seen = dedup.DayBucketedIds(store, "project:p1")
    rows = [row(5 * DAY_US + i, f"{i:016x}") for i in range(10_000)]
    for lo in range(0, len(rows), 2_500):
        assert seen.first_seen(state, rows[lo:lo + 2_500]) == rows[lo:lo + 2_500]
    assert seen.first_seen(state, rows[::7]) == []
    # 10,000 ids in parts of 2,000, beside
    assert len(store.data) == 5 and state.ids_aside_up_to == 5 and state.inline_ids == []
    assert largest_value(store) < 40_000


def test_entities_never_share_a_bucket():
    store, state_a, state_b = keyvalue.DictStore(), dedup.DedupState(), dedup.DedupState()
    a = dedup.DayBucketedIds(store, "project:x|d1")
    b = dedup.DayBucketedIds(store, "project:x")
    assert a.first_seen(state_a, [row(DAY_US, "e")]) != []
    assert b.first_seen(state_b, [row(DAY_US, "e")]) != []


def test_a_horizon_forgets_old_days_and_counts_rows_older_than_it():
    store, state = keyvalue.DictStore(), dedup.DedupState()
    seen = dedup.DayBucketedIds(store, "project:p1", horizon_us=3 * DAY_US)
    for day in range(100):
        rows = [row(day * DAY_US + i, f"{day:08x}{i:08x}") for i in range(100)]  # 100 ids a day: 2-3 days inline
        assert seen.first_seen(state, rows) == rows
    assert [day for day, _ in state.inline_ids] == [98, 99] and state.ids_aside_up_to == 97
    assert state.days_aside == [96, 97]  # buckets of the days inside the horizon kept, the older ones deleted
    assert set(store.data) == {"d96|project:p1", "d97|project:p1"}
    assert seen.first_seen(state, [row(50 * DAY_US, f"{50:08x}{0:08x}")]) == []  # older than the horizon
    assert state.expired_rows == 1
    assert seen.first_seen(state, [row(97 * DAY_US, f"{97:08x}{5:08x}")]) == []  # a duplicate, beside the state
    assert seen.first_seen(state, [row(99 * DAY_US, f"{99:08x}{5:08x}")]) == []  # a duplicate, in the state
    assert state.duplicate_rows == 2


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 4 * DAY_US), st.integers(0, 40)), max_size=60),
       cuts=st.lists(st.integers(0, 60), max_size=12), inline=st.integers(0, 30), in_time_order=st.booleans())
def test_the_shortcut_for_a_batch_on_the_newest_day_leaves_what_the_general_path_leaves(rows, cuts, inline,
                                                                                        in_time_order):
    """Batches mostly on one day (the shortcut's case) and some across days or on older ones: the new rows,
    the state and the buckets beside it are the same with and without the shortcut."""
    times: dict = {}
    rows = [row(times.setdefault(eid, ts), f"{eid:016x}") for ts, eid in rows]
    if in_time_order:  # as a replay's are: most batches fall on the key's newest day
        rows.sort(key=lambda r: r.ts)
    bounds = sorted({0, len(rows), *(c for c in cuts if c <= len(rows))})

    def replay() -> tuple:
        store, state, new = keyvalue.DictStore(), dedup.DedupState(), []
        for lo, hi in zip(bounds, bounds[1:]):
            new += dedup.DayBucketedIds(store, "project:p1").first_seen(state, rows[lo:hi])
        return new, msgspec.json.encode(state), store.data

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dedup, "INLINE_IDS", inline)
        with_shortcut = replay()
        patch.setattr(dedup, "_first_seen_in_newest_day", lambda state, rows: None)
        assert with_shortcut == replay()


def test_a_key_with_few_rows_writes_nothing_beside_its_state():
    store, state = keyvalue.DictStore(), dedup.DedupState()
    seen = dedup.DayBucketedIds(store, "node:n1")
    rows = [row(day * DAY_US, f"{day:016x}") for day in range(0, 2_000, 10)]  # 200 rows over 200 days
    for lo in range(0, len(rows), 7):
        assert seen.first_seen(state, rows[lo:lo + 7]) == rows[lo:lo + 7]
    assert store.data == {} and state.ids_aside_up_to is None
    assert seen.first_seen(state, rows[::3]) == []


def test_a_long_history_keeps_the_state_small_and_moves_each_day_out_once():
    """200,000 rows of one key, 2,000 a round over 100 rows a day: the state stays under ~6 KB, and each day
    is written beside it once."""
    store, state = keyvalue.DictStore(), dedup.DedupState()
    seen = dedup.DayBucketedIds(store, "project:p1")
    writes = []
    store.put = lambda key, value, put=store.put: (writes.append(key), put(key, value))[1]
    rows = [row((i // 100) * DAY_US + i, f"{i:016x}") for i in range(200_000)]
    for lo in range(0, len(rows), 2_000):
        assert seen.first_seen(state, rows[lo:lo + 2_000]) == rows[lo:lo + 2_000]
        assert len(msgspec.json.encode(state)) < 6_000
    assert len(writes) == len(set(writes)) == len(store.data) >= 1_990
    assert seen.first_seen(state, rows[::997]) == []


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


def test_a_record_with_a_wrong_count_of_inline_ids_still_applies_each_id_once():
    """A count no write of ours made (a record edited or of another version) never fails a batch: the days
    move aside until none is left inline, and the count is true again."""
    store, state = keyvalue.DictStore(), dedup.DedupState(inline_ids=[(1, ["a"])], inline_count=10_000)
    seen = dedup.DayBucketedIds(store, "project:p1")
    assert [r.eid for r in seen.first_seen(state, [row(2 * DAY_US, "b"), row(DAY_US, "a")])] == ["b"]
    assert state.inline_count == sum(len(ids) for _, ids in state.inline_ids)
    assert [r.eid for r in seen.first_seen(state, [row(2 * DAY_US, "b"), row(3 * DAY_US, "c")])] == ["c"]
