"""Follow mode's table cursors (replay.follow_cursor), without a database: polls are simulated over a
list of committed rows, with the condition each cursor asks for."""
from __future__ import annotations

import datetime as dt
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from replay.follow_cursor import HOLE_GRACE_S, IdCursor, SeenCursor, TimeCursor, choose, from_state


def _matches(cursor, value) -> bool:
    """What the cursor's SQL condition selects, for one row's cursor column."""
    if isinstance(cursor, IdCursor):
        if cursor.upto is None or value is None:
            return True
        return value > cursor.upto or any(lo <= value <= hi for lo, hi, _ in cursor.holes)
    if isinstance(cursor, TimeCursor):
        return cursor.since is None or value is None or value >= cursor.since
    return True


def _poll(cursor, table: list[tuple], now: float):
    """(identities kept, cursor after): `table` holds (cursor column value, identity) rows."""
    scan = cursor.scan()
    kept = [identity for value, identity in table if _matches(cursor, value) and scan.keep(value, identity)]
    scan.complete = True
    return kept, cursor.after(scan, now)


def _round_trip(cursor):
    return from_state(json.loads(json.dumps(cursor.to_state())))


def test_an_id_committed_after_a_greater_one_is_found_by_its_hole():
    table = [(i, f"t:{i}") for i in range(1, 11)]
    kept, cursor = _poll(IdCursor(), table, now=0)
    assert len(kept) == 10 and cursor.upto == 10 and cursor.holes == ()
    table += [(12, "t:12"), (13, "t:13")]  # 11's transaction has not committed yet
    kept, cursor = _poll(cursor, table, now=1)
    assert kept == ["t:12", "t:13"] and cursor.holes == ((11, 11, 1),)
    where, params = cursor.where()
    assert "BETWEEN :lo0 AND :hi0" in where and (params["lo0"], params["hi0"]) == (11, 11)
    table.append((11, "t:11"))
    kept, cursor = _poll(_round_trip(cursor), table, now=2)
    assert kept == ["t:11"] and cursor.holes == () and cursor.upto == 13
    assert _poll(cursor, table, now=3)[0] == []


def test_a_hole_is_given_up_after_the_grace():
    kept, cursor = _poll(IdCursor(), [(1, "a"), (5, "b")], now=0)
    assert cursor.holes == ((2, 4, 0),)
    assert _poll(cursor, [(1, "a"), (5, "b")], now=HOLE_GRACE_S - 1)[1].holes == ((2, 4, 0),)
    kept, cursor = _poll(cursor, [(1, "a"), (5, "b"), (3, "c")], now=HOLE_GRACE_S - 0.5)
    assert kept == ["c"] and cursor.holes == ((2, 2, 0), (4, 4, 0))
    assert _poll(cursor, [], now=HOLE_GRACE_S + 1)[1].holes == ()


def test_rows_without_a_cursor_value_are_counted_and_each_goes_once():
    table = [(1, "a"), (None, "bad:1")]
    kept, cursor = _poll(IdCursor(), table, now=0)
    assert kept == ["a", "bad:1"] and cursor.nulls == 1
    table.append((None, "bad:2"))
    kept, cursor = _poll(cursor, table, now=1)
    assert kept == ["bad:2"] and cursor.nulls == 2
    assert _poll(cursor, table, now=2)[0] == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 60), st.integers(0, 6)), min_size=1, max_size=60, unique_by=lambda t: t[0]))
def test_every_id_is_published_once_whatever_order_transactions_commit_in(commits):
    """`commits`: (id, poll before which it is committed); ids are unique. Nothing expires (grace is long).
    The history (poll 0) has the smallest id: ids below the first read's are not looked for."""
    first = min(commits)[0]
    commits = [(i, 0 if i == first else at) for i, at in commits]
    table: list[tuple] = []
    cursor, published = IdCursor(), []
    for poll in range(8):
        table += [(i, f"t:{i}") for i, at in commits if at == poll]
        kept, cursor = _poll(cursor, table, now=poll)
        published += kept
        cursor = _round_trip(cursor)
    assert sorted(published) == sorted(f"t:{i}" for i, _ in commits)


def test_the_same_id_twice_goes_twice_in_one_read_and_never_again():
    table = [(1, "t:1"), (1, "t:1"), (2, "t:2")]
    kept, cursor = _poll(IdCursor(), table, now=0)
    assert kept == ["t:1", "t:1", "t:2"]  # the stream counts the first (SPEC §5)
    table.append((1, "t:1"))
    assert _poll(cursor, table, now=1)[0] == []


T0 = dt.datetime(2021, 4, 20, 17)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), min_size=1, max_size=40))
def test_rows_in_event_time_order_are_published_once_even_at_the_same_instant(hours_and_gaps):
    """Rows are committed in event-time order, several at one instant, across polls."""
    table, cursor, published, hour = [], TimeCursor("interval_start"), [], 0
    for n, (step, polls_between) in enumerate(hours_and_gaps):
        hour += step
        table.append((T0 + dt.timedelta(hours=hour), f"row{n}"))
        for _ in range(polls_between):
            kept, cursor = _poll(cursor, table, now=n)
            published += kept
            cursor = _round_trip(cursor)
    published += _poll(cursor, table, now=99)[0]
    assert sorted(published) == sorted(identity for _, identity in table)


def test_a_time_cursor_keeps_the_ids_of_its_instant_only():
    table = [(T0, "a"), (T0 + dt.timedelta(hours=1), "b")]
    kept, cursor = _poll(TimeCursor("ts"), table, now=0)
    assert cursor.since == T0 + dt.timedelta(hours=1) and cursor.at_since == {"b"}
    table.append((T0 + dt.timedelta(hours=1), "c"))  # the same instant, committed later
    kept, cursor = _poll(cursor, table, now=1)
    assert kept == ["c"] and cursor.at_since == {"b", "c"}
    assert _round_trip(cursor) == cursor
    table.append((T0, "late"))  # older than what was published: not read (documented limit)
    assert _poll(cursor, table, now=2)[0] == []
    where, params = cursor.where()
    assert where == '"ts" >= :since OR "ts" IS NULL' and params == {"since": T0 + dt.timedelta(hours=1)}


def test_a_table_without_id_or_time_is_read_whole_and_new_links_go_once():
    table = [(None, "user_devices:1:2")]
    kept, cursor = _poll(SeenCursor(), table, now=0)
    table.append((None, "user_devices:1:3"))
    kept, cursor = _poll(_round_trip(cursor), table, now=1)
    assert kept == ["user_devices:1:3"] and cursor.where() == ("", {})


def test_the_cursor_a_table_gets():
    assert isinstance(choose(True, "ts"), IdCursor)
    assert isinstance(choose(False, "created_at"), TimeCursor)
    assert isinstance(choose(False, None), SeenCursor)
