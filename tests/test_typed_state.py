"""Typed storj states and records (datasets.storj.logic's msgspec Structs) and their records in the state store
(stream.runtime.store.StructCodec): the JSON keys are the changelog's of the dict layout, a record written
by the dict layout decodes into the typed state and the runtime's fields beside it, and no runtime field is
a field of the logic's types."""
from __future__ import annotations

import asyncio

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datasets.storj import logic as storj
from datasets.storj.stages import CODECS
from stream.logic.dedup import DedupState
from stream.runtime import state_backends
from stream.runtime.driver import RecordPath
from stream.runtime.store import Entry, StructCodec

RUNTIME_KEYS = {"_p", "_b", "_x", "ver", "snap"}  # the store's (_p, _b, _x) and the stages' (ver, snap)

# Every key the dict layout wrote, per state (some only once needed: da, dd, expired, dups; dn is the
# layout before that and only read)
DEDUP_KEYS = {"di", "da", "dd", "expired", "dups"}
TODAY_KEYS = {
    storj.ProjectState: {"row", "seq", "announced", "up", "down", "up_m", "down_m", "first", "last", "st_ts",
                         "st_sum", "sess", "sess_n", "sess_us", "late", "events", *DEDUP_KEYS},
    storj.NodeState: {"row", "seq", "owners", "paid", "events", *DEDUP_KEYS},
    storj.AccountState: {"row", "seq", "emails", "events", *DEDUP_KEYS},
    storj.OperatorState: {"nodes", "wallets", "never_contacted", "disqualified", "suspended", "free_disk",
                          "piece_count", "paid", "events", "wm", "users", "user_seq"},
    storj.UserState: {"account", "account_seq", "projects", "project_seq", "ops"},
}
PROJECT_ROW_KEYS = {"ts", "user_id", "usage_limit", "bandwidth_limit"}
NODE_ROW_KEYS = {"ts", "email_hash", "wallet", "last_contact_success", "disqualified", "suspended", "free_disk",
                 "piece_count"}
ACCOUNT_ROW_KEYS = {"ts", "email_hash"}
PROJECT_SUMMARY_KEYS = {"k", "id", "seq", "owner", "created", "usage_limit", "bandwidth_limit", "up", "down", "up_m",
                        "down_m", "first", "last", "st_ts", "st_sum", "over_months", "over_storage", "sess_n",
                        "sess_us", "events"}
NODE_SUMMARY_KEYS = {"k", "id", "seq", "owner", "ts", "wallet", "never_contacted", "disqualified", "suspended",
                     "free_disk", "piece_count", "paid", "events"}
RETRACTION_KEYS = {"k", "id", "seq", "owner"}
ACCOUNT_KEYS = {"k", "seq", "email_hash", "created_at", "events"}
LINK_KEYS = {"k", "user", "seq", "email"}
OPERATOR_SUMMARY_KEYS = {"k", "email_hash", "seq", "nodes", "paid_by_month", "paid_total"}

# --------------------------------------------------------------------------- strategies

i64 = st.integers(-(2**63), 2**63 - 1)
count = st.integers(0, 2**40)
ts = st.integers(0, 2**62)
text = st.text(max_size=8)
maybe_text = st.none() | text
months = st.dictionaries(text, i64, max_size=4)
floats = st.floats(allow_nan=False, allow_infinity=False)
scalar = st.none() | st.booleans() | i64 | floats | text


dedup_fields = st.fixed_dictionaries({
    "inline_ids": st.lists(st.tuples(st.integers(0, 40_000), st.lists(text, max_size=3)), max_size=3),
    "ids_aside_up_to": st.none() | st.integers(0, 40_000),
    "days_aside": st.lists(st.integers(0, 40_000), max_size=3),
    "expired_rows": count,
    "duplicate_rows": count,
    "legacy_newest_day": st.just(msgspec.UNSET) | st.none()
    | st.tuples(st.integers(0, 40_000), st.none() | st.lists(text, max_size=2)),
    "events": count,
})

usage_window = st.none() | st.fixed_dictionaries({
    "p": st.lists(st.lists(ts, min_size=2, max_size=2), max_size=3), "w": st.none() | ts, "f": st.none() | ts,
    "l": count})

projects = st.builds(
    lambda d, **kw: storj.ProjectState(**d, **kw), dedup_fields,
    row=st.none() | st.builds(storj.ProjectRow, ts, maybe_text, st.none() | i64, st.none() | i64),
    seq=count, announced_users=st.lists(text, max_size=3), uploads=count, downloads=count,
    monthly_upload_bytes=months, monthly_download_bytes=months, first_usage_at=st.none() | ts,
    last_usage_at=st.none() | ts, storage_at=st.none() | ts, storage_bytes=i64, usage_window=usage_window,
    usage_sessions=count, usage_session_us=count, late_usage_rows=count)

nodes = st.builds(
    lambda d, **kw: storj.NodeState(**d, **kw), dedup_fields,
    row=st.none() | st.builds(storj.NodeRow, ts, maybe_text, maybe_text, scalar, scalar, scalar,
                              st.none() | i64, st.none() | i64),
    seq=count, past_emails=st.lists(text, max_size=3), monthly_paid=months)

accounts = st.builds(
    lambda d, **kw: storj.AccountState(**d, **kw), dedup_fields,
    row=st.none() | st.builds(storj.AccountRow, ts, maybe_text), seq=count, linked_emails=st.lists(text, max_size=3))

operators = st.builds(
    storj.OperatorState, node_count=count, wallet_nodes=st.dictionaries(text, count, max_size=3),
    never_contacted_nodes=count, disqualified_nodes=count, suspended_nodes=count, free_disk_bytes=i64,
    piece_count=i64, paid_by_month=st.dictionaries(text, st.tuples(i64, count), max_size=3), events=count,
    watermark=st.none() | ts, users=st.lists(text, max_size=3), user_link_seq=st.dictionaries(text, count, max_size=3))

project_summaries = st.builds(
    storj.ProjectSummary, text, count, maybe_text, created=text, usage_limit=st.none() | i64,
    bandwidth_limit=st.none() | i64, uploads=count, downloads=count, monthly_upload_bytes=months,
    monthly_download_bytes=months, first_usage_at=st.none() | ts, last_usage_at=st.none() | ts,
    storage_at=st.none() | ts, storage_bytes=i64, months_over_bandwidth=st.lists(text, max_size=2),
    over_storage_limit=st.booleans(), usage_sessions=count, usage_session_us=count, events=count)
account_summaries = st.builds(storj.AccountSummary, count, maybe_text, text, count)
operator_summaries = st.builds(storj.OperatorSummary, text, count, count, st.dictionaries(text, floats, max_size=3),
                               floats)

users = st.builds(
    storj.UserState, account=st.none() | account_summaries, account_seq=count,
    projects=st.dictionaries(text, project_summaries, max_size=3), project_seq=st.dictionaries(text, count, max_size=3),
    operators=st.dictionaries(text, operator_summaries, max_size=2))

records = st.one_of(
    project_summaries, st.builds(storj.ProjectSummary, text, count, maybe_text),  # a summary, a retraction
    st.builds(storj.NodeSummary, text, count, maybe_text, ts=ts, wallet=maybe_text, never_contacted=st.booleans(),
              disqualified=st.booleans(), suspended=st.booleans(), free_disk=st.none() | i64,
              piece_count=st.none() | i64, monthly_paid=months, events=count),
    st.builds(storj.NodeSummary, text, count, maybe_text),
    account_summaries, st.builds(storj.AccountLink, text, count, maybe_text), operator_summaries)

STATES = st.one_of(projects, nodes, accounts, operators, users)
TABLE_OF = {storj.ProjectState: "storj_project", storj.NodeState: "storj_node", storj.AccountState: "storj_account",
            storj.OperatorState: "storj_operator", storj.UserState: "storj_user"}

# --------------------------------------------------------------------------- round trips


def _record_keys(record: dict) -> set:
    return {"project": PROJECT_SUMMARY_KEYS if "up" in record else RETRACTION_KEYS,
            "node": NODE_SUMMARY_KEYS if "never_contacted" in record else RETRACTION_KEYS,
            "account": ACCOUNT_KEYS, "link": LINK_KEYS, "operator": OPERATOR_SUMMARY_KEYS}[record["k"]]


def assert_today_layout(state, decoded: dict) -> None:
    """`decoded` (a state's JSON read as a dict) has the keys of the dict layout, nested records included."""
    kind = type(state)
    dn = {"dn"} if isinstance(state, DedupState) and state.legacy_newest_day is not msgspec.UNSET else set()
    assert set(decoded) == TODAY_KEYS[kind] | dn
    row_keys = {storj.ProjectState: PROJECT_ROW_KEYS, storj.NodeState: NODE_ROW_KEYS,
                storj.AccountState: ACCOUNT_ROW_KEYS}.get(kind)
    if row_keys is not None and decoded["row"] is not None:
        assert set(decoded["row"]) == row_keys
    if kind is storj.UserState:
        nested = [*decoded["projects"].values(), *decoded["ops"].values(), *filter(None, [decoded["account"]])]
        for record in nested:
            assert set(record) == _record_keys(record)


@settings(max_examples=300, deadline=None)
@given(state=STATES)
def test_a_typed_state_survives_its_json_and_the_json_has_todays_keys(state):
    value = msgspec.json.encode(state)
    assert msgspec.json.decode(value, type=type(state)) == state
    assert_today_layout(state, orjson.loads(value))


@settings(max_examples=300, deadline=None)
@given(state=STATES, partition=st.integers(0, 63), writes=count, version=count, snapshot=st.booleans(),
       log=st.none() | st.fixed_dictionaries({"b": count, "t": text, "e": st.dictionaries(
           text, st.none() | st.fixed_dictionaries({"seq": count, "ids": st.lists(text, max_size=2)}), max_size=3)}))
def test_a_stored_entry_is_one_record_of_todays_keys_and_decodes_whole(state, partition, writes, version, snapshot,
                                                                        log):
    codec = CODECS[TABLE_OF[type(state)]]
    entry = Entry(state, partition, writes, log, version if codec.version else 0, snapshot and codec.snapshot)
    value = codec.encode(entry)
    back = codec.decode(value)
    assert back.state == state
    assert (back.partition, back.writes, back.log, back.version, back.snapshot) == (
        entry.partition, entry.writes, entry.log, entry.version, entry.snapshot)
    decoded = orjson.loads(value)  # the dict layout reads it as ever
    runtime = {"_p", "_b"} | ({"_x"} if log is not None else set()) | ({"ver"} if codec.version else set()) | (
        {"snap"} if codec.snapshot else set())
    assert set(decoded) & RUNTIME_KEYS == runtime
    assert (decoded["_p"], decoded["_b"], decoded.get("_x")) == (partition, writes, log)
    assert_today_layout(state, {k: v for k, v in decoded.items() if k not in RUNTIME_KEYS})


@settings(max_examples=300, deadline=None)
@given(record=records)
def test_a_record_between_stages_survives_its_json_with_its_kind_in_k(record):
    value = msgspec.json.encode(record)
    assert msgspec.json.decode(value, type=storj.Record) == record
    decoded = orjson.loads(value)
    assert decoded["k"] == record.__struct_config__.tag and set(decoded) == _record_keys(decoded)


# --------------------------------------------------------------------------- records of the dict layout

DICT_LAYOUT = {
    "storj_project": {
        "row": {"ts": 1_600_000_000_000_000, "user_id": "u1", "usage_limit": 100, "bandwidth_limit": None},
        "seq": 7, "announced": ["u0", "u1"], "up": 5, "down": 2, "up_m": {"2021-02": 50}, "down_m": {"2021-02": 9},
        "first": 1_612_000_000_000_000, "last": 1_612_100_000_000_000, "st_ts": None, "st_sum": 0,
        "sess": {"p": [[1_612_000_000_000_000, 1_612_100_000_000_000]], "w": 1_612_100_000_000_000, "f": None,
                 "l": 0},
        "sess_n": 1, "sess_us": 60_000_000, "late": 0, "di": [[18659, ["aa", "bb"]]], "events": 8, "dups": 1,
        "_x": {"b": 3, "t": "old-worker:1", "e": {"d18000|project:p1": {"ids": ["cc"], "parts": 1}}},
        "_p": 1, "_b": 4},  # the log of its last write (its 4th)
    "storj_node": {
        "row": {"ts": 1_600_000_000_000_000, "email_hash": "e1", "wallet": "0xab", "last_contact_success": 17,
                "disqualified": None, "suspended": "2021-03-01", "free_disk": 5, "piece_count": None},
        "seq": 3, "owners": ["e1"], "paid": {"2021-03": 1_500_000}, "dn": [18700, None], "events": 2, "_p": 0,
        "_b": 2},
    "storj_account": {
        "row": {"ts": 1_600_000_000_000_000, "email_hash": None}, "seq": 4, "emails": ["e1"],
        "di": [[18500, ["dd"]]], "da": 18400, "dd": [18400], "expired": 2, "events": 1, "_p": 3, "_b": 1},
    "storj_operator": {
        "nodes": 1, "wallets": {"0xab": 1}, "never_contacted": 0, "disqualified": 0, "suspended": 1,
        "free_disk": 5, "piece_count": 0, "paid": {"2021-03": [1_500_000, 1]}, "events": 2,
        "wm": 1_600_000_000_000_000, "users": ["u1"], "user_seq": {"u1": 4}, "ver": 1_700_000_000_000_000,
        "snap": True,
        "_x": {"b": 5, "t": "old-worker:1", "e": {"2:n1|e1": {"seq": 3, "node": None}}}, "_p": 2, "_b": 6},
    "storj_user": {
        "account": {"k": "account", "seq": 4, "email_hash": "e1", "created_at": "2020-09-13", "events": 1},
        "account_seq": 4,
        "projects": {"p1": {"k": "project", "id": "p1", "seq": 7, "owner": "u1", "created": "2020-09-13",
                            "usage_limit": 100, "bandwidth_limit": None, "up": 5, "down": 2, "up_m": {"2021-02": 50},
                            "down_m": {"2021-02": 9}, "first": 1_612_000_000_000_000,
                            "last": 1_612_100_000_000_000, "st_ts": None, "st_sum": 0, "over_months": [],
                            "over_storage": False, "sess_n": 1, "sess_us": 60_000_000, "events": 8}},
        "project_seq": {"p1": 7, "p0": 9},
        "ops": {"e1": {"k": "operator", "email_hash": "e1", "seq": 1_700_000_000_000_000, "nodes": 1,
                       "paid_by_month": {"2021-03": 1.5}, "paid_total": 1.5}},
        "ver": 1_700_000_000_000_123, "_p": 1, "_b": 9},
}


def test_records_of_the_dict_layout_decode_into_the_typed_state_and_the_runtime_fields():
    entries = {table: CODECS[table].decode(orjson.dumps(record)) for table, record in DICT_LAYOUT.items()}
    project = entries["storj_project"]
    assert project.state == storj.ProjectState(
        row=storj.ProjectRow(1_600_000_000_000_000, "u1", 100, None), seq=7, announced_users=["u0", "u1"],
        uploads=5, downloads=2, monthly_upload_bytes={"2021-02": 50}, monthly_download_bytes={"2021-02": 9},
        first_usage_at=1_612_000_000_000_000, last_usage_at=1_612_100_000_000_000, storage_at=None, storage_bytes=0,
        usage_window=DICT_LAYOUT["storj_project"]["sess"], usage_sessions=1, usage_session_us=60_000_000,
        late_usage_rows=0, inline_ids=[(18659, ["aa", "bb"])], events=8, duplicate_rows=1)
    assert (project.partition, project.writes, project.log) == (1, 4, DICT_LAYOUT["storj_project"]["_x"])
    node = entries["storj_node"].state
    assert node.row == storj.NodeRow(1_600_000_000_000_000, "e1", "0xab", 17, None, "2021-03-01", 5, None)
    assert (node.seq, node.past_emails, node.monthly_paid, node.events) == (3, ["e1"], {"2021-03": 1_500_000}, 2)
    assert node.legacy_newest_day == (18700, None) and node.inline_ids == []
    account = entries["storj_account"]
    assert account.state == storj.AccountState(
        row=storj.AccountRow(1_600_000_000_000_000, None), seq=4, linked_emails=["e1"],
        inline_ids=[(18500, ["dd"])], ids_aside_up_to=18400, days_aside=[18400], expired_rows=2, events=1)
    assert (account.partition, account.writes, account.log) == (3, 1, None)
    operator = entries["storj_operator"]
    assert operator.state == storj.OperatorState(
        node_count=1, wallet_nodes={"0xab": 1}, suspended_nodes=1, free_disk_bytes=5,
        paid_by_month={"2021-03": (1_500_000, 1)}, events=2, watermark=1_600_000_000_000_000, users=["u1"],
        user_link_seq={"u1": 4})
    assert (operator.version, operator.snapshot, operator.partition, operator.writes) == (
        1_700_000_000_000_000, True, 2, 6)
    assert operator.log == DICT_LAYOUT["storj_operator"]["_x"]
    user = entries["storj_user"]
    assert user.state.account == storj.AccountSummary(4, "e1", "2020-09-13", 1)
    assert user.state.projects["p1"].uploads == 5 and not user.state.projects["p1"].retracts
    assert user.state.project_seq == {"p1": 7, "p0": 9}
    assert user.state.operators["e1"] == storj.OperatorSummary("e1", 1_700_000_000_000_000, 1, {"2021-03": 1.5}, 1.5)
    assert (user.version, user.snapshot, user.partition, user.writes) == (1_700_000_000_000_123, False, 1, 9)
    assert storj.user_features(user.state)["uploads"] == 5
    for table, entry in entries.items():  # written again: the same keys, the same values
        again = orjson.loads(CODECS[table].encode(entry))
        expected = {k: v for k, v in DICT_LAYOUT[table].items() if k != "dn"}  # the earlier layout's, dropped
        assert {k: again[k] for k in expected} == expected, table


@pytest.mark.parametrize("kind", [state_backends.MEMORY, state_backends.ROCKSDB])
def test_a_store_recovered_from_dict_layout_records_goes_on_from_them(kind, tmp_path):
    """Records of the dict layout in the store (as recovery leaves them): the next batch applies on top of
    them, and the entries another writer logged (`_x`) are written again beside the state first."""
    path = RecordPath(partitions=4, store_kind=kind, state_dir=str(tmp_path / "state"))
    store = path.runtime.store("storj_project")
    record = {**DICT_LAYOUT["storj_project"], "_p": path.partition_of(b"p1")}
    store.data.put_in(record["_p"], b"p1", orjson.dumps(record))
    row = {"project_id": "p1", "interval_start": "2021-02-01T12:00:00", "action": 1, "settled": 7}
    asyncio.run(path.feed("storj.bbr", [(b"p1", orjson.dumps(row))]))
    entry = path.state("storj_project", "p1")
    assert (entry.state.uploads, entry.state.monthly_upload_bytes, entry.state.events) == (6, {"2021-02": 57}, 9)
    assert entry.writes == 5 and entry.log is None  # the old log's entry is safe now, written again
    assert store.data.get_in(record["_p"], b"__d18000|project:p1") == b'{"ids":["cc"],"parts":1}'
    assert path.state("storj_user", "u1").state.projects["p1"].uploads == 6


# --------------------------------------------------------------------------- what the logic's types hold


def _structs_of(module) -> list[type]:
    return [value for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, msgspec.Struct) and value is not msgspec.Struct]


def test_the_logics_types_carry_no_runtime_field():
    types = _structs_of(storj)
    assert {storj.ProjectState, storj.NodeState, storj.AccountState, storj.OperatorState, storj.UserState,
            storj.ProjectSummary, storj.NodeSummary, storj.AccountSummary, storj.AccountLink,
            storj.OperatorSummary} <= set(types)
    for kind in types:
        fields = msgspec.structs.fields(kind)
        names = {f.name for f in fields} | {f.encode_name for f in fields}
        assert not names & (RUNTIME_KEYS | {"partition", "writes", "log", "version", "snapshot"}), kind
    for table, codec in CODECS.items():  # the store keeps them instead
        assert isinstance(codec, StructCodec) and codec.state_type in types, table
        state = codec.state_type()
        assert not set(orjson.loads(msgspec.json.encode(state))) & RUNTIME_KEYS


def test_a_state_record_the_type_cannot_read_is_skipped_by_a_walk_and_dead_letters_its_keys_rows():
    """An unreadable record in a typed table (a state of another layout) stops neither a run's end nor the
    rows of other keys: the walk skips it, the key's rows go to the dead-letter topic with the reason."""
    path = RecordPath(partitions=4)
    store = path.runtime.store("storj_project")
    bad, good = b"p-bad", b"p-good"
    part = path.partition_of(bad)
    store.data.put_in(part, bad, orjson.dumps({"up": "many", "_p": part}))  # a count that is no number
    row = {"interval_start": "2021-02-01T12:00:00", "action": 1, "settled": 7}
    messages = [(key, orjson.dumps({"project_id": key.decode(), **row})) for key in (bad, good)]
    asyncio.run(path.feed("storj.bbr", messages))
    assert path.state("storj_project", "p-good").state.uploads == 1
    assert [key for p in range(4) for key, _ in store.items_in_partition(p)] == ["p-good"]
    letters = path.dead_letters("storj")
    assert len(letters) == 1 and letters[0]["cause"] == "apply_error" and "p-bad" in letters[0]["original"]
