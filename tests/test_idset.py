"""Tests of stream.logic.idset.IdRanges: hand cases and a Python set as brute force."""

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.logic.idset import IdRanges


def canonical_ranges(ids):
    """The unique [[lo, hi], ...] of a set of ints, computed on its own."""
    out = []
    for value in sorted(set(ids)):
        if out and out[-1][1] + 1 == value:
            out[-1][1] = value
        else:
            out.append([value, value])
    return out


def test_increasing_ids_stay_one_range():
    ids = IdRanges()
    assert all(ids.add(i) for i in range(1, 1001))
    assert ids.to_state() == [[1, 1000]]
    assert len(ids) == 1000


def test_duplicate_is_refused_and_changes_nothing():
    ids = IdRanges.from_state([[1, 3], [7, 9]])
    assert ids.add(2) is False
    assert ids.add(7) is False
    assert ids.add(9) is False
    assert ids.to_state() == [[1, 3], [7, 9]]


def test_filling_a_hole_merges_two_ranges():
    ids = IdRanges.from_state([[1, 3], [5, 9]])
    assert ids.add(4) is True
    assert ids.to_state() == [[1, 9]]


def test_extend_left_right_and_insert_between():
    ids = IdRanges.from_state([[10, 12], [20, 22]])
    assert ids.add(9)  # extends the first range down
    assert ids.add(23)  # extends the last range up
    assert ids.add(19)  # extends the second range down
    assert ids.add(15)  # a new range in the middle
    assert ids.add(-5)  # a new range in front
    assert ids.to_state() == [[-5, -5], [9, 12], [15, 15], [19, 23]]
    assert 11 in ids and 15 in ids and 14 not in ids and 24 not in ids and -4 not in ids


def test_empty_state_forms():
    for state in (None, []):
        ids = IdRanges.from_state(state)
        assert ids.to_state() == []
        assert 0 not in ids
        assert ids.add(0) is True
        assert ids.add(0) is False


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(min_value=-50, max_value=50) | st.integers(min_value=-10**12, max_value=10**12),
             max_size=200),
    st.lists(st.integers(min_value=0, max_value=199), max_size=5),
)
def test_matches_a_python_set(values, round_trip_at):
    ids, reference = IdRanges(), set()
    for position, value in enumerate(values):
        if position in round_trip_at:  # the changelog's JSON round trip in the middle
            ids = IdRanges.from_state(orjson.loads(orjson.dumps(ids.to_state())))
        assert ids.add(value) is (value not in reference)
        reference.add(value)
    assert ids.to_state() == canonical_ranges(reference)
    assert len(ids) == len(reference)
    for value in values[:20]:
        assert value in ids
        assert value + 10**13 not in ids


@given(st.lists(st.integers(min_value=0, max_value=1000), max_size=100))
def test_mostly_increasing_ids_stay_small(values):
    ids = IdRanges()
    for value in sorted(values):
        ids.add(value)
    assert ids.ranges == len(canonical_ranges(values))
