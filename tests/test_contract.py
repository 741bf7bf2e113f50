"""The contract in code: time parsing, row normalisation, event ids, wire format, marks, comparison."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import tables, wire
from contract.rows import BadRow, normalise
from contract.timeutil import BadTime, format_ts, parse_ts, parse_ts_canonical
from stream.logic.marks import record_mark, run_complete
from verify.compare import compare

BBR = tables.table("storj", "bbr")


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)))
def test_time_round_trips_through_iso_exactly(dt):
    text = dt.isoformat()
    ts = parse_ts(text)
    assert format_ts(ts) == text
    assert parse_ts_canonical(text) == (ts, text)
    assert parse_ts(dt.isoformat(sep=" ") + "Z") == ts
    assert parse_ts(dt.isoformat() + "+02:00") == ts - 2 * 3600 * 1_000_000


@pytest.mark.parametrize("bad", ["not-a-date", "2021-13-45 10:00:00", "20210420", "2021-04-20 17", "", None, 5])
def test_unparsable_times_are_refused(bad):
    with pytest.raises(BadTime):
        parse_ts(bad)


def test_microsecond_edges_are_integers():
    a, b = parse_ts("2015-11-10T10:00:00"), parse_ts("2015-11-10T10:10:00.000001")
    assert b - a == 600_000_001


def test_storj_row_is_lower_cased_typed_and_hashed():
    row = normalise(BBR, {"interval_start": "2021-04-20 17:00:00", "action": "2", "inline": "0",
                          "settled": "1.5e3", "project_id": " AB12 "})
    assert row.key == "ab12" and row.values["settled"] == 1500 and row.values["action"] == 2
    assert row.values["interval_start"] == "2021-04-20T17:00:00"
    same = normalise(BBR, {"interval_start": "2021-04-20T17:00:00Z", "action": 2, "inline": 0, "settled": 1500,
                           "project_id": "ab12"})
    assert same.eid == row.eid  # duplicates are judged on the normalised row
    other = normalise(BBR, {**same.values, "settled": 1501})
    assert other.eid != row.eid


@pytest.mark.parametrize("table, raw, eid", [
    ("bbr", {"interval_start": "2021-04-20 17:00:00", "action": "2", "inline": "0", "settled": "1.5e3",
             "project_id": " AB12 "}, "d418946973841d38"),
    ("nodes", {"id": "N1", "created_at": "2020-01-01 00:00:00", "email_hash": None, "note": 'Grüße "x"',
               "ratio": 1.25, "flag": True, "Unnamed: 0": 3}, "544c5a824ed3e958"),
    ("users", {"id": "u9", "created_at": "2019-05-06T07:08:09.123456Z", "email_hash": "ABC"}, "dc9eace96ad66626"),
])
def test_content_ids_stay_what_states_and_changelogs_already_hold(table, raw, eid):
    """A storj event id is the hash of its table and normalised values; ids already kept in states must be
    given again to the same rows by any later version."""
    import hashlib

    import orjson

    row = normalise(tables.table("storj", table), raw)
    assert row.eid == eid
    payload = orjson.dumps([table, row.values], option=orjson.OPT_SORT_KEYS)
    assert hashlib.blake2b(payload, digest_size=8).hexdigest() == eid


@pytest.mark.parametrize("raw, reason", [
    ({"interval_start": "2021-04-20 17:00:00", "action": "x", "project_id": "a"}, "wrong type in action"),
    ({"interval_start": "2021-04-20 17:00:00", "action": "1.5", "project_id": "a"}, "wrong type in action"),
    ({"interval_start": "2021-04-20 17:00:00", "action": 1, "project_id": " "}, "missing key"),
    ({"interval_start": "never", "action": 1, "project_id": "a"}, "unparsable time"),
    ({"action": 1, "project_id": "a"}, "missing time"),
])
def test_bad_rows_say_why(raw, reason):
    with pytest.raises(BadRow, match=reason):
        normalise(BBR, raw)


def test_ucn_ids_are_table_and_id_and_httpreqs2_is_httpreqs():
    spec = tables.table("ucn", "httpreqs2")
    assert spec.name == "httpreqs" and spec.topic == "ucn.httpreqs"
    row = normalise(spec, {"id": "7", "devid": "3", "ts": "2015-11-10 10:12:38.772903", "user_url": "t"})
    assert row.eid == "httpreqs:7" and row.key == "3" and row.values["user_url"] is True
    link = normalise(tables.table("ucn", "user_devices"), {"user_id": 1, "device_id": 3})
    assert link.eid == "user_devices:1:3"


def test_wire_decodes_rows_arrays_and_marks_and_refuses_the_rest():
    assert wire.decode(b'{"a": 1}') == ("rows", [{"a": 1}])
    assert wire.decode(b'[{"a": 1}, {"a": 2}]') == ("rows", [{"a": 1}, {"a": 2}])
    kind, mark = wire.decode(wire.encode_mark("r1", "replay:storj.bbr:0"))
    assert kind == "mark" and mark["run"] == "r1"
    for bad in (b"not json", b"42", b'"text"'):
        with pytest.raises(wire.BadMessage):
            wire.decode(bad)


@settings(max_examples=50)
@given(st.permutations(list(range(6))), st.integers(min_value=0, max_value=3))
def test_mark_tracker_completes_once_whatever_the_order(order, repeats):
    state: dict = {}
    origins = [f"o{i}" for i in order] + [f"o{i}" for i in order[:repeats]]
    completions = [record_mark(state, "run", origin, 6) for origin in origins]
    assert completions.count(True) == 1
    assert completions.index(True) == 5  # on the last distinct origin
    assert run_complete(state, "run", 6)  # a mark redelivered later still sees the run complete


def test_a_run_is_not_complete_before_its_last_mark():
    state: dict = {}
    record_mark(state, "run", "a", 2)
    assert not run_complete(state, "run", 2) and not run_complete(state, "other", 2)


def test_compare_is_exact_about_types_and_reports_missing_snapshots():
    expected = {"user": {"a": {"n": 1, "m": {"x": 1}}, "b": {"n": 0}}}
    actual = {"user": {"a": {"n": 1.0, "m": {"x": 1}, "_meta": {"version": 3}}, "c": {"n": 0}}}
    found = {(m.entity_id, m.field) for m in compare(expected, actual)}
    assert found == {("a", "n"), ("b", "<snapshot>"), ("c", "<snapshot>")}
    assert compare(expected, {"user": {"a": {"n": 1, "m": {"x": 1}}, "b": {"n": 0}}}) == []


def test_a_day_has_24_hours_of_microseconds():
    start = parse_ts("2015-10-25T00:00:00")
    assert parse_ts((datetime(2015, 10, 25) + timedelta(days=1)).isoformat()) - start == 86_400_000_000


def test_a_zone_needs_a_time_and_blank_text_is_text():
    with pytest.raises(BadTime):
        parse_ts("2021-01-01+01:00")
    nodes = tables.table("storj", "nodes")
    row = normalise(nodes, {"id": " N1 ", "created_at": "2021-01-01", "disqualified": " ", "email_hash": " "})
    assert row.key == "n1" and row.values["disqualified"] == " " and row.values["email_hash"] is None


_CELLS = st.one_of(st.none(), st.integers(-5, 5), st.sampled_from(["", " A ", "7", "x", "2021-01-01T00:00:00",
                                                                   "2021-01-01 00:00:00.5", "2021-13-01", "no"]))


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["bbr", "users", "nodes"]), st.dictionaries(
    st.sampled_from(["project_id", "id", "node_id", "interval_start", "created_at", "action", "Email_Hash",
                     "Unnamed: 0", "settled", "note"]), _CELLS, max_size=7)), max_size=30), st.randoms())
def test_normalise_is_a_pure_function_whatever_its_caches_hold(rows, rnd):
    """Per-shape plans and parsed times are cached (and the time cache is cleared when full): a row gives
    the same result, or the same error, cold, warm and after the caches were cleared."""
    import contract.rows as rows_module

    def outcome(table, raw):
        try:
            return normalise(tables.table("storj", table), dict(raw))
        except BadRow as exc:
            return str(exc)

    def cold_outcome(table, raw):
        rows_module._PLANS.clear()
        rows_module._TIMES.clear()
        return outcome(table, raw)

    cold = [cold_outcome(t, r) for t, r in rows]
    saved = rows_module._TIMES_MAX
    rows_module._TIMES_MAX = 2  # cleared over and over below
    try:
        order = list(range(len(rows)))
        rnd.shuffle(order)
        warm = {i: outcome(*rows[i]) for i in order}
    finally:
        rows_module._TIMES_MAX = saved
    assert [warm[i] for i in range(len(rows))] == cold


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from("abc"), st.text(max_size=40), max_size=3), min_size=1, max_size=40),
       st.integers(min_value=20, max_value=400))
def test_records_of_one_key_are_split_into_messages_within_the_limit_in_order(rows, limit):
    values = wire.encode_rows_within(rows, limit)
    decoded = []
    for value in values:
        kind, items = wire.decode(value)
        assert kind == "rows"
        assert len(value) <= limit or len(items) == 1  # only a single record may stand alone over it
        decoded.extend(items)
    assert decoded == rows


def test_unknown_topics_are_the_dataset_looking_ones_no_stage_reads():
    from stream.runtime.unknown_topics import unknown_topics

    names = ["storj.bbr", "storj.unknown_table", "ucn.dnsreqs", "ucn.typo", "other.bbr", "usage-features-x-changelog"]
    assert unknown_topics(names, ["storj"], ["storj.bbr"]) == ["storj.unknown_table"]
    assert unknown_topics(names, ["storj", "ucn"], ["storj.bbr", "ucn.dnsreqs"]) == ["storj.unknown_table", "ucn.typo"]
