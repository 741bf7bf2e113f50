"""No input stops the pipeline: every record is applied or dead-lettered with a reason (no broker here).

The corpus below holds the messages that used to kill the worker on every restart; the fuzz test
sends arbitrary bytes and JSON shapes through decode -> normalise -> apply -> the next stages.
"""
from __future__ import annotations

import asyncio
import json
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datasets
from contract import tables
from datasets.storj import logic as storj
from stream.logic.sessions import pending_in_state
from stream.runtime import store as store_module
from stream.runtime.driver import RecordPath

INT64_MAX = 2**63 - 1
GOOD_DNS = {"id": 1, "devid": 7, "ts": "2015-11-02T10:00:00", "query": "a.com", "user_req": True}


def run(coro):
    return asyncio.run(coro)


def _feed(path: RecordPath, topic: str, values: list, key: bytes = b"7") -> None:
    messages = [(key, v if isinstance(v, bytes) else json.dumps(v).encode()) for v in values]
    run(path.feed(topic, messages))


def _ucn_user_with_device() -> RecordPath:
    path = RecordPath()
    _feed(path, "ucn.users", [{"id": 1, "username": "u1", "country": "uk"}], key=b"1")
    _feed(path, "ucn.devices", [{"id": 7, "platform": "ios", "shared": False}])
    _feed(path, "ucn.user_devices", [{"user_id": 1, "device_id": 7}])
    return path


def _reasons(path: RecordPath, dataset: str) -> list[str]:
    return [letter["reason"] for letter in path.dead_letters(dataset)]


# The messages that killed the worker (each next to a good row: the good one must still count).
POISON = {
    "time before year 1 in UTC": {**GOOD_DNS, "id": 2, "ts": "0001-01-01T00:00:00+01:00"},
    "time past year 9999 in UTC": {**GOOD_DNS, "id": 2, "ts": "9999-12-31T23:30-01:00"},
    "naive time on the calendar's first day": {**GOOD_DNS, "id": 2, "ts": "0001-01-01T00:00:00"},
    "an integer read from 1e300": {**GOOD_DNS, "id": 1e300},
    "a 30-digit integer": {**GOOD_DNS, "id": "1" * 30},
    "an integer past 64 bits": {**GOOD_DNS, "id": 2**64 - 1},
    "an id that is an object": {**GOOD_DNS, "id": {"x": 1}},
    "a device id that is an object": {**GOOD_DNS, "devid": {"x": 7}},
    "a query that is an object": {**GOOD_DNS, "id": 2, "query": {"a": 1}},
    "a query that is a list": {**GOOD_DNS, "id": 2, "query": ["a.com"]},
    "a time that is a number": {**GOOD_DNS, "id": 2, "ts": 1446458400},
    "a boolean that is an object": {**GOOD_DNS, "id": 2, "user_req": {"t": 1}},
}


@pytest.mark.parametrize("case", sorted(POISON))
def test_a_poison_row_is_a_dead_letter_and_the_good_row_beside_it_counts(case):
    path = _ucn_user_with_device()
    _feed(path, "ucn.dnsreqs", [[GOOD_DNS, POISON[case]]])
    letters = path.dead_letters("ucn")
    assert len(letters) == 1 and letters[0]["reason"], letters
    assert letters[0]["origin"]["topic"] == "ucn.dnsreqs"
    state = path.state("ucn_device", "7").state
    assert state.events == 3  # devices row, link, the good dns row


def test_deeply_nested_and_oversized_values_are_dead_letters():
    path = _ucn_user_with_device()
    deep = b'{"id": 3, "devid": 7, "ts": "2015-11-02T10:00:00", "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    big = json.dumps({**GOOD_DNS, "id": 4, "query": "x" * 700_000}).encode()
    _feed(path, "ucn.dnsreqs", [deep, big, GOOD_DNS])
    assert len(path.dead_letters("ucn")) == 2
    assert path.state("ucn_device", "7").state.events == 3


def test_a_wrong_type_in_a_text_column_cannot_win_the_users_row():
    """`"country": ["fr"]` was accepted as the earliest users row and binned hours in London time."""
    path = RecordPath()
    _feed(path, "ucn.users", [{"id": 1, "username": "u1", "country": ["fr"]},
                              {"id": 1, "username": "u1", "country": "fr"}], key=b"1")
    assert _reasons(path, "ucn") == ["wrong type in country: list where text is expected"]
    assert path.state("ucn_user", "1").state.users_row.country == "fr"


def test_a_wallet_given_as_an_object_is_a_dead_letter_at_the_source():
    """It used to pass the nodes stage and kill the operator stage one hop later."""
    path = RecordPath()
    node = {"id": "n1", "email_hash": "e1", "wallet": {"a": 1}, "created_at": "2021-01-01T00:00:00"}
    _feed(path, "storj.nodes", [node, {**node, "wallet": "0xabc"}], key=b"n1")
    assert _reasons(path, "storj") == ["wrong type in wallet: dict where text is expected"]
    operator = path.state("storj_operator", "e1")
    beside = path.runtime.beside("storj_operator", path.partition_of(b"e1"), operator)
    _, node_summary = storj.OperatorNodes(beside, "e1", operator.state).get("n1")
    assert node_summary is not None and node_summary.wallet == "0xabc"


def test_a_sum_past_64_bits_dead_letters_the_row_that_would_pass_it():
    """Each byte count is within 64 bits; their sum is checked where it is encoded (state and snapshot):
    the row that would carry it past 2**64 - 1 is a dead letter, and the sum stays exact."""
    path = _ucn_user_with_device()
    rows = [{"id": i, "devid": 7, "ts": f"2015-11-02T10:00:0{i}", "bytes_in": INT64_MAX} for i in range(1, 4)]
    _feed(path, "ucn.devicetraffic", [rows])
    letters = path.dead_letters("ucn")
    assert len(letters) == 1 and letters[0]["error_type"] == "TypeError", letters
    assert "64-bit" in letters[0]["reason"] and letters[0]["cause"] == "apply_error"
    assert path.state("ucn_user", "1").state.traffic.bytes_in == 2 * INT64_MAX


def test_a_row_that_would_grow_a_state_past_the_record_limit_is_a_dead_letter(monkeypatch):
    monkeypatch.setattr(store_module, "MAX_STATE_BYTES", 2_000)
    path = RecordPath()
    rows = [{"project_id": "p1", "interval_start": f"{y}-{m:02d}-01T00:00:00", "action": 1, "settled": 5}
            for y in range(2001, 2021) for m in range(1, 13)]  # a project's per-month maps grow by 240 months
    _feed(path, "storj.bbr", [rows], key=b"p1")
    letters = path.dead_letters("storj")
    assert letters and all("over the 2,000-byte limit" in letter["reason"] for letter in letters)
    state = path.state("storj_project", "p1").state
    assert state.events + len(letters) == 240


def test_a_dead_letter_always_fits_the_broker_limit():
    path = RecordPath()
    huge = b'{"project_id": "p", "interval_start": "never", "pad": "' + b"x" * 950_000 + b'"}'
    junk = b"\xff" * 990_000
    _feed(path, "storj.bbr", [huge, junk], key=b"p")
    letters = path.dead_letters("storj")
    assert len(letters) == 2
    assert max(path.dead_letter_sizes()) < 1_000_000
    assert all(letter["truncated"] and len(letter["original_sha256"]) == 64 for letter in letters)
    by_size = {letter["original_bytes"]: letter for letter in letters}
    assert sorted(by_size) == [len(huge), len(junk)]
    assert by_size[len(junk)]["original"] is None and by_size[len(junk)]["original_b64"]


# --------------------------------------------------------------------------- fuzz

_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                     st.floats(allow_nan=False), st.text(max_size=12),
                     st.sampled_from(["2015-11-02T10:00:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59",
                                      "2021-04-01", "1", "true", "", " ", "NaN", "1e300", "-0"]))
_JSON = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                     max_leaves=8)
SOURCE_TOPICS = [topic for dataset in datasets.names() for topic in tables.topics(dataset)]
INTERNAL_TOPICS = storj_internal = ["storj.internal.user", "storj.internal.operator", "ucn.internal.user"]


@st.composite
def _row(draw, topic):
    spec = tables.table_of_topic(topic)
    columns = sorted(spec.int_cols | spec.bool_cols | spec.text_cols | spec.scalar_cols | {spec.key}
                     | ({spec.time} if spec.time else set()))
    row = {column: draw(_JSON) for column in draw(st.lists(st.sampled_from(columns), unique=True))}
    row.update(draw(st.dictionaries(st.text(max_size=6), _JSON, max_size=2)))
    return row


@st.composite
def _message(draw):
    topic = draw(st.sampled_from(SOURCE_TOPICS + INTERNAL_TOPICS))
    kind = draw(st.sampled_from(["bytes", "json", "row", "rows"]))
    if kind == "bytes":
        value = draw(st.binary(max_size=40))
    elif kind == "json":
        value = json.dumps(draw(_JSON)).encode()
    elif ".internal." in topic:
        value = json.dumps(draw(st.dictionaries(st.sampled_from(["k", "seq", "id", "user", "device", "ev", "up",
                                                                 "owner", "email", "email_hash", "src"]),
                                                _JSON, max_size=6))).encode()
    elif kind == "row":
        value = json.dumps(draw(_row(topic))).encode()
    else:
        value = json.dumps(draw(st.lists(_row(topic), max_size=3))).encode()
    key = draw(st.one_of(st.none(), st.binary(max_size=6), st.sampled_from([b"1", b"7", b"p1", b"n1"])))
    return topic, key, value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_message(), min_size=1, max_size=6))
def test_fuzz_no_message_escapes_every_row_counts_or_is_a_dead_letter(messages):
    path = _ucn_user_with_device()
    for topic, key, value in messages:
        dataset = topic.split(".", 1)[0]
        letters_before = len(path.dead_letters(dataset))
        events_before, rerouted_before = path.events(dataset), path.rerouted()
        run(path.feed(topic, [(key, value)]))  # must not raise
        letters = path.dead_letters(dataset)[letters_before:]
        assert all(letter["reason"] and letter["origin"] for letter in letters)
        if ".internal." in topic:
            continue  # stage records: applied, skipped as stale, or a dead letter
        try:
            decoded = orjson.loads(value)  # as the worker reads it
        except orjson.JSONDecodeError:
            decoded = None
        if isinstance(decoded, dict) and "__mark__" in decoded:
            continue
        rows = decoded if isinstance(decoded, list) else [decoded] if isinstance(decoded, dict) else None
        from_source = [letter for letter in letters if letter["origin"]["topic"] == topic]
        if rows is None:
            assert len(from_source) == 1  # not JSON, or not rows: one dead letter for the message
            continue
        counted = path.events(dataset) - events_before
        rerouted = path.rerouted() - rerouted_before
        bad_rows = sum(1 for letter in from_source if letter["cause"] == "bad_row")
        assert counted + rerouted + bad_rows == len(rows)
    assert max(path.dead_letter_sizes(), default=0) < 1_000_000


def test_many_records_for_one_key_in_a_batch_go_out_as_messages_within_the_limit(monkeypatch):
    """30 devices of one user speak in one batch: their contributions for that user were one message,
    which grows with the devices and could pass the broker's limit."""
    from contract import wire

    monkeypatch.setattr(wire, "MAX_VALUE_BYTES", 2_000)
    path = RecordPath()
    _feed(path, "ucn.users", [{"id": 1, "username": "u1", "country": "uk"}], key=b"1")
    devices = range(100, 130)
    run(path.feed("ucn.devices", [(str(d).encode(), json.dumps({"id": d, "shared": False}).encode())
                                  for d in devices]))
    run(path.feed("ucn.user_devices", [(str(d).encode(), json.dumps({"user_id": 1, "device_id": d}).encode())
                                       for d in devices]))
    run(path.feed("ucn.dnsreqs", [(str(d).encode(), json.dumps(
        [{"id": d * 10 + i, "devid": d, "ts": f"2015-11-02T10:00:0{i}", "query": "q" * 40} for i in range(5)]
    ).encode()) for d in devices]))
    to_user = [value for topic, _, value, _ in path.app.producer.sent if topic == "ucn.internal.user"]
    assert len(to_user) > 3 and max(len(value) for value in to_user) <= 2_000
    assert path.state("ucn_user", "1").state.dns_rows == 150
    assert path.dead_letters("ucn") == []


def test_a_key_that_fails_at_the_end_of_a_run_is_a_dead_letter_and_the_run_ends_for_the_others(monkeypatch):
    from contract import wire
    from datasets.ucn import logic as ucn

    path = RecordPath()
    for user, device in ((1, 7), (2, 8)):
        _feed(path, "ucn.users", [{"id": user, "username": f"u{user}", "country": "uk"}], key=str(user).encode())
        _feed(path, "ucn.devices", [{"id": device, "platform": "ios", "shared": False}], key=str(device).encode())
        _feed(path, "ucn.user_devices", [{"user_id": user, "device_id": device}], key=str(device).encode())
        _feed(path, "ucn.dnsreqs", [[{"id": device * 10 + i, "devid": device, "ts": f"2015-11-02T10:0{i}:00"}
                                     for i in range(3)]], key=str(device).encode())
    real_close = ucn.close_at_run_end

    def close_failing_for_user_2(state, again=False):
        if state.user_id == 2:
            raise ValueError("closing failed")
        return real_close(state, again)

    monkeypatch.setattr(ucn, "close_at_run_end", close_failing_for_user_2)
    for topic in ["ucn.users"] + [t for t in tables.topics("ucn") if t != "ucn.users"]:
        for partition in range(path.runtime.partitions):
            run(path.feed(topic, [(None, wire.encode_mark("r1", f"replay:{topic}:{partition}"))], partition))
    one, two = path.state("ucn_user", "1").state, path.state("ucn_user", "2").state
    assert one.sessions == 1 and pending_in_state(one.window) == 0
    assert two.sessions == 0 and pending_in_state(two.window) == 3  # its session, taken back whole
    letters = path.dead_letters("ucn")
    assert len(letters) == 1 and "failed to end run r1 for key 2" in letters[0]["reason"]
    finished = {args[0] for kind, _, args, _ in path.runtime.sink._pending if kind == "HSET"}  # run status fields
    assert {f"r1:user:{p}" for p in range(path.runtime.partitions)} <= finished


def test_writes_to_a_redis_that_is_away_are_retried_with_a_backoff_not_at_every_batch():
    path = RecordPath()  # its sink points at a port where nothing listens
    runtime = path.runtime
    _feed(path, "ucn.users", [{"id": 1, "username": "u1", "country": "uk"}], key=b"1")

    def errors() -> int:
        return int(sum(s.value for m in runtime.metrics.redis_errors.collect() for s in m.samples
                       if s.name.endswith("_total")))

    run(runtime.flush_sink())
    run(runtime.flush_sink())  # within the backoff: not tried
    assert errors() == 1 and runtime.sink.pending > 0
    runtime._redis_retry_at = 0.0  # the backoff is over
    run(runtime.flush_sink())
    assert errors() == 2 and runtime._redis_retry_at - time.monotonic() > 0.5  # it doubled
