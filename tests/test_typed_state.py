"""Typed storj and ucn states and records (datasets.{storj,ucn}.logic's msgspec Structs) and their records in the
state store (stream.runtime.store.StructCodec): the JSON keys are the changelog's of the dict layout, a record
written by the dict layout decodes into the typed state and the runtime's fields beside it (owed records
included), and no runtime field is a field of the logic's types."""
from __future__ import annotations

import asyncio

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import wire
from contract.timeutil import MAX_TS_US, MIN_TS_US
from datasets.storj import logic as storj
from datasets.storj import stages as storj_stages
from datasets.ucn import logic as ucn
from datasets.ucn import stages as ucn_stages
from stream.logic.dedup import DedupState
from stream.logic.sessions import SessionWindow, pending_in_state
from stream.runtime import state_backends
from stream.runtime.driver import RecordPath
from stream.runtime.records import TypedRecords
from stream.runtime.store import Entry, StructCodec

# the store's (_p, _b, _x, owed) and the stages' (ver, snap)
RUNTIME_KEYS = {"_p", "_b", "_x", "ver", "snap", "owed"}

# Every key the dict layout wrote, per state (some only once needed: da, dd, expired, dups; dn is the
# layout before that and only read)
DEDUP_KEYS = {"di", "da", "dd", "expired", "dups", "dc"}
TODAY_KEYS = {
    storj.ProjectState: {"row", "seq", "announced", "up", "down", "up_m", "down_m", "first", "last", "st_ts",
                         "st_sum", "sess", "sess_n", "sess_us", "late", "events", *DEDUP_KEYS},
    storj.NodeState: {"row", "seq", "owners", "paid", "events", *DEDUP_KEYS},
    storj.AccountState: {"row", "seq", "emails", "events", *DEDUP_KEYS},
    storj.OperatorState: {"nodes", "wallets", "never_contacted", "disqualified", "suspended", "free_disk",
                          "piece_count", "paid", "events", "wm", "users", "user_seq", "in", "na"},
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
ts = st.integers(MIN_TS_US, MAX_TS_US - 1)  # the event times input can carry (others are bad rows)
text = st.text(max_size=8)
maybe_text = st.none() | text
months = st.dictionaries(text, i64, max_size=4)
floats = st.floats(allow_nan=False, allow_infinity=False)
scalar = st.none() | st.booleans() | i64 | floats | text

CODECS = {stage.state_table: stage.state_codec for stage in storj_stages.STAGES}  # each table's codec


dedup_fields = st.fixed_dictionaries({
    "inline_ids": st.lists(st.tuples(st.integers(0, 40_000), st.lists(text, max_size=3)), max_size=3),
    "ids_aside_up_to": st.none() | st.integers(0, 40_000),
    "days_aside": st.lists(st.integers(0, 40_000), max_size=3),
    "expired_rows": count,
    "duplicate_rows": count,
    "legacy_newest_day": st.just(msgspec.UNSET) | st.none()
    | st.tuples(st.integers(0, 40_000), st.none() | st.lists(text, max_size=2)),
    "inline_count": st.none() | count,
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

node_summaries = st.one_of(
    st.builds(storj.NodeSummary, text, count, maybe_text, ts=ts, wallet=maybe_text, never_contacted=st.booleans(),
              disqualified=st.booleans(), suspended=st.booleans(), free_disk=st.none() | i64,
              piece_count=st.none() | i64, monthly_paid=months, events=count),
    st.builds(storj.NodeSummary, text, count, maybe_text))  # a summary, a retraction

operators = st.builds(
    storj.OperatorState, node_count=count, wallet_nodes=st.dictionaries(text, count, max_size=3),
    never_contacted_nodes=count, disqualified_nodes=count, suspended_nodes=count, free_disk_bytes=i64,
    piece_count=i64, paid_by_month=st.dictionaries(text, st.tuples(i64, count), max_size=3), events=count,
    watermark=st.none() | ts, users=st.lists(text, max_size=3), user_link_seq=st.dictionaries(text, count, max_size=3),
    inline_nodes=st.dictionaries(text, st.tuples(count, st.none() | node_summaries), max_size=2),
    nodes_aside=st.none() | count)

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
    node_summaries, account_summaries, st.builds(storj.AccountLink, text, count, maybe_text), operator_summaries)

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


@settings(max_examples=600, deadline=None)
@given(state=st.one_of(STATES, st.deferred(lambda: UCN_STATES)))
def test_a_typed_state_survives_its_json_and_the_json_has_todays_keys(state):
    value = msgspec.json.encode(state)
    assert msgspec.json.decode(value, type=type(state)) == state
    layout = assert_todays_ucn_layout if type(state) in UCN_TABLE_OF else assert_today_layout
    layout(state, orjson.loads(value))


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


# =========================================================================== ucn

UCN_CODECS = {stage.state_table: stage.state_codec for stage in ucn_stages.STAGES}
DEVICE_KEYS = {"dev", "owners", "told", "pend", "held", "fwd", "unowned_events", "late_links", "dups", "events",
               "seq"}  # always there; "held_parts" and "held_first" only while parts are held beside the state
USER_KEYS = {"id", "user", "devices", "seq", "tr", "dns", "http", "svc", "zb", "ieh", "ief", "sess_n", "sess_us",
             "sdh", "last_session", "locs", "win", "events", "wm"}
CONTRIBUTION_KEYS = {"n", "wm", "first", "tr", "hb", "svc", "dns", "http", "acts", "acz", "locs"}
ZONE_BIN_SIZES = {"bwd": 24, "bwe": 24, "bws": 84, "ewd": 24, "ewe": 24}
DEVICE_RECORD_KEYS = {"k", "user", "device", "seq", "platform", "shared"}  # and "ev" with a contribution

ids = st.integers(0, 2**40) | st.text(max_size=4)
hist = st.lists(count, min_size=ucn.BINS, max_size=ucn.BINS)
traffic = st.builds(ucn.Traffic, count, i64, i64, i64, i64, st.none() | ts, st.none() | ts)
activity = st.lists(st.tuples(ts, st.sampled_from([ucn.DNS, ucn.HTTP]), st.integers(0, 2**40), maybe_text).map(list),
                    max_size=3)
encoded_activity = st.none() | st.fixed_dictionaries(
    {"w": st.just(4), "v": st.lists(maybe_text, max_size=3), "f": st.lists(i64, max_size=8)})
locations = st.lists(st.tuples(ts, ts, text), max_size=3)
contributions = st.builds(
    ucn.Contribution, count, watermark=st.none() | ts, first_row_at=st.none() | ts, traffic=st.none() | traffic,
    hour_bytes=st.dictionaries(st.integers(0, 2**50).map(str), i64, max_size=3),
    service_bytes=st.dictionaries(text, i64, max_size=3), dns_rows=count, http_rows=count, activity=activity,
    activity_encoded=encoded_activity, locations=locations)
devices = st.builds(
    ucn.DeviceState, device_row=st.none() | st.builds(ucn.DeviceRow, maybe_text, st.booleans()),
    owners=st.lists(ids, max_size=3), told_owners=st.lists(ids, max_size=3), pending=st.none() | contributions,
    held_rows=count, forwarded_rows=count, unowned_events=count, late_links=count, duplicate_rows=count,
    events=count, seq=count, held_parts=st.integers(0, 5), held_first_at=st.none() | ts)
zone_bins = st.builds(ucn.ZoneBins, *(st.lists(count, min_size=n, max_size=n) for n in ZONE_BIN_SIZES.values()))


def _window_state(events: list[tuple[int, int]], late: int) -> dict:
    """A user's window as the logic writes it: `events` (offset in s, device) added to an empty window."""
    window = SessionWindow(ucn.SESSION_GAP_US, lateness_us=ucn.LATENESS_US, min_events=ucn.SESSION_MIN_EVENTS,
                           auto_watermark=False)
    for n, (offset, device) in enumerate(events):
        window.add(1_446_458_400_000_000 + offset * 1_000_000, (ucn.DNS, n), [device, f"d{n % 3}.org"])
    window.late_events = late
    return orjson.loads(orjson.dumps(window.to_state()))


windows = st.none() | st.builds(_window_state, st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 9)),
                                                        max_size=6), count)
users = st.builds(
    ucn.UserState, user_id=st.none() | ids, users_row=st.none() | st.builds(ucn.UsersRow, maybe_text, maybe_text),
    devices=st.dictionaries(st.integers(0, 99).map(str), st.builds(ucn.DeviceInfo, maybe_text, st.booleans()),
                            max_size=3),
    device_seq=st.dictionaries(st.integers(0, 99).map(str), count, max_size=3), traffic=traffic, dns_rows=count,
    http_rows=count, service_bytes=st.dictionaries(text, i64, max_size=3),
    zone_bins=st.sampled_from([[ucn.LONDON, ucn.PARIS], [ucn.LONDON], [ucn.PARIS]]).flatmap(
        lambda zones: st.fixed_dictionaries({zone: zone_bins for zone in zones})),
    inter_event_hist=hist, last_final_event_at=st.none() | ts, sessions=count, session_us=count,
    session_duration_hist=hist, last_session=st.none() | st.fixed_dictionaries(
        {"user": ids, "start": text, "duration_s": floats, "devices": st.lists(ids, max_size=2)}),
    locations=locations, window=windows, events=count, watermark=st.none() | ts)
device_records = st.builds(ucn.DeviceRecord, ids, ids, count, maybe_text, st.booleans(),
                           st.none() | contributions)
UCN_STATES = st.one_of(devices, users)
UCN_TABLE_OF = {ucn.DeviceState: "ucn_device", ucn.UserState: "ucn_user"}


def assert_todays_ucn_layout(state, decoded: dict) -> None:
    """`decoded` (a ucn state's JSON read as a dict) has the keys and shapes of the dict layout."""
    if isinstance(state, ucn.DeviceState):
        optional = {"held_parts"} if state.held_parts else set()
        optional |= {"held_first"} if state.held_first_at is not None else set()
        assert set(decoded) == DEVICE_KEYS | optional
        assert decoded["dev"] is None or set(decoded["dev"]) == {"platform", "shared"}
        if decoded["pend"] is not None:
            assert_todays_contribution(decoded["pend"])
        return
    assert set(decoded) == USER_KEYS
    assert len(decoded["tr"]) == 7 and all(len(info) == 2 for info in decoded["devices"].values())
    for bins in decoded["zb"].values():
        assert {key: len(values) for key, values in bins.items()} == ZONE_BIN_SIZES
    assert decoded["user"] is None or set(decoded["user"]) == {"username", "country"}
    assert all(len(loc) == 3 for loc in decoded["locs"])


def assert_todays_contribution(decoded: dict) -> None:
    """A contribution's keys are there only when they hold something (`n` always)."""
    assert "n" in decoded and set(decoded) <= CONTRIBUTION_KEYS
    assert all(decoded[key] is not None for key in ("wm", "first", "tr", "acz") if key in decoded)
    assert all(decoded[key] != 0 for key in ("dns", "http") if key in decoded)
    assert all(len(decoded[key]) for key in ("hb", "svc", "acts", "locs") if key in decoded)
    assert "tr" not in decoded or len(decoded["tr"]) == 7


owed_messages = st.lists(st.tuples(st.sampled_from(["ucn.internal.user", "ucn.sessions"]), st.integers(0, 99).map(str),
                                   device_records | st.fixed_dictionaries({"user": ids, "events": count})).map(list),
                         min_size=1, max_size=3)
owed_lists = st.none() | st.lists(st.tuples(st.tuples(text, count).map(list), owed_messages | st.integers(1, 4))
                                  .map(list), min_size=1, max_size=3)


@settings(max_examples=300, deadline=None)
@given(state=UCN_STATES, partition=st.integers(0, 63), writes=count, version=count, owed=owed_lists,
       log=st.none() | st.fixed_dictionaries({"b": count, "t": text, "e": st.dictionaries(
           text, st.none() | st.fixed_dictionaries({"r": st.lists(st.tuples(count, count).map(list), max_size=2)}),
           max_size=3)}))
def test_a_stored_ucn_entry_is_one_record_of_todays_keys_owed_records_included(state, partition, writes, version, owed,
                                                                              log):
    codec = UCN_CODECS[UCN_TABLE_OF[type(state)]]
    entry = Entry(state, partition, writes, log, version if codec.version else 0, owed=owed)
    value = codec.encode(entry)
    back = codec.decode(value)
    assert back.state == state
    owed_json = orjson.loads(msgspec.json.encode(owed))  # typed records owed come back as their JSON
    assert (back.partition, back.writes, back.log, back.version, back.owed) == (
        partition, writes, log, entry.version, owed_json)
    decoded = orjson.loads(value)  # the dict layout reads it as ever
    runtime = {"_p", "_b"} | ({"_x"} if log is not None else set()) | ({"owed"} if owed else set()) | (
        {"ver"} if codec.version else set())  # a user's snapshot version
    assert set(decoded) & RUNTIME_KEYS == runtime
    assert (decoded["_p"], decoded["_b"], decoded.get("_x"), decoded.get("owed")) == (partition, writes, log, owed_json)
    assert_todays_ucn_layout(state, {k: v for k, v in decoded.items() if k not in RUNTIME_KEYS})


@settings(max_examples=300, deadline=None)
@given(records=st.lists(device_records, min_size=1, max_size=3))
def test_a_device_record_survives_its_json_and_the_user_stage_reads_it_as_its_type(records):
    reader = TypedRecords(ucn.DeviceRecord, "ucn device record")
    for record in records:
        value = msgspec.json.encode(record)
        assert reader.decode(value) == ("rows", [record])
        decoded = orjson.loads(value)
        assert decoded["k"] == "device"
        assert set(decoded) == DEVICE_RECORD_KEYS | ({"ev"} if record.contribution is not None else set())
        if record.contribution is not None:
            assert_todays_contribution(decoded["ev"])
    assert reader.decode(wire.encode_rows(records)) == ("rows", records)  # what the runtime sends: one or a list


# --------------------------------------------------------------------------- ucn records of the dict layout

T0 = 1_446_458_400_000_000  # 2015-11-02T10:00:00
S = 1_000_000
OLD_SESSION = {"user": 1, "start": "2015-11-01T09:00:00", "end": "2015-11-01T09:05:00", "duration_s": 300.0,
               "events": 3, "dns_events": 3, "http_events": 0, "devices": [8], "platforms": ["ios"],
               "top_domains": [["x.org", 3]], "locations": []}
HELD_PART = {"n": 2, "wm": T0 + 2 * S, "dns": 2, "first": T0 + S,
             "acts": [[T0 + S, "dnsreqs", 11, "a.org"], [T0 + 2 * S, "dnsreqs", 12, "b.org"]]}
UCN_DICT_LAYOUT = {
    "ucn_device": {  # device 7: a devices row, no owner yet; 2 rows in a part beside, 2 in its state
        "dev": {"platform": "ios", "shared": False}, "owners": [], "told": [],
        "pend": {"n": 2, "wm": T0 + 4 * S, "dns": 1, "first": T0 + 3 * S,
                 "tr": [1, 100, 10, 3, 1, T0 + 4 * S, T0 + 4 * S], "hb": {str(T0): 110},
                 "acts": [[T0 + 3 * S, "dnsreqs", 13, "c.org"]], "locs": [[T0, T0 + 3_600 * S, "home"]]},
        "held": 4, "fwd": 0, "unowned_events": 0, "late_links": 0, "dups": 1, "events": 5, "seq": 100,
        "held_parts": 1, "held_first": T0 + S,
        # an earlier worker's: a record it may not have delivered, and the held part it logged and maybe lost
        "owed": [[["old-worker", 4], [["ucn.internal.user", "9", {
            "k": "device", "user": 9, "device": 7, "seq": 99, "platform": "ios", "shared": False}]]]],
        "_x": {"b": 5, "t": "old-worker:1", "e": {"h0|device:7": {"part": HELD_PART}}}, "_p": 3, "_b": 6},
    "ucn_user": {  # user 1 in Paris: device 8's session is open, a session closed before is owed
        "id": 1, "user": {"username": "u1", "country": "fr"}, "devices": {"8": ["android", False]},
        "seq": {"8": 50}, "tr": [2, 5, 6, 7, 8, T0 - 10 * S, T0 - 5 * S], "dns": 5, "http": 0, "svc": {"https": 11},
        "zb": {"P": {"bwd": [0] * 10 + [11] + [0] * 13, "bwe": [0] * 24, "bws": [0] * 84, "ewd": [0] * 24,
                     "ewe": [0] * 24}},
        "ieh": [0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0], "ief": T0 - 86_400 * S, "sess_n": 1, "sess_us": 300 * S,
        "sdh": [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], "last_session": OLD_SESSION,
        "locs": [[T0 - 60 * S, T0 + 60 * S, "work"]], "win": _window_state([(0, 8), (60, 8)], 1), "events": 10,
        "wm": T0 + 60 * S, "ver": 1_700_000_000_000_000,
        "owed": [[["old-worker", 7], [["ucn.sessions", "1", OLD_SESSION]]]], "_p": 1, "_b": 2},
}


def test_ucn_records_of_the_dict_layout_decode_into_the_typed_state_and_the_runtime_fields():
    entries = {table: UCN_CODECS[table].decode(orjson.dumps(record)) for table, record in UCN_DICT_LAYOUT.items()}
    device = entries["ucn_device"]
    layout = UCN_DICT_LAYOUT["ucn_device"]
    assert device.state == ucn.DeviceState(
        device_row=ucn.DeviceRow("ios", False), owners=[], told_owners=[], held_rows=4, forwarded_rows=0,
        unowned_events=0, late_links=0, duplicate_rows=1, events=5, seq=100, held_parts=1, held_first_at=T0 + S,
        pending=ucn.Contribution(2, watermark=T0 + 4 * S, first_row_at=T0 + 3 * S, dns_rows=1,
                                 traffic=ucn.Traffic(1, 100, 10, 3, 1, T0 + 4 * S, T0 + 4 * S),
                                 hour_bytes={str(T0): 110}, activity=[[T0 + 3 * S, "dnsreqs", 13, "c.org"]],
                                 locations=[(T0, T0 + 3_600 * S, "home")]))
    assert (device.partition, device.writes, device.log, device.owed) == (3, 6, layout["_x"], layout["owed"])
    assert ucn.oldest_held(device.state) == T0 + S
    user = entries["ucn_user"]
    state = user.state
    assert (state.user_id, state.users_row, state.devices, state.device_seq) == (
        1, ucn.UsersRow("u1", "fr"), {"8": ucn.DeviceInfo("android", False)}, {"8": 50})
    assert state.traffic == ucn.Traffic(2, 5, 6, 7, 8, T0 - 10 * S, T0 - 5 * S)
    assert list(state.zone_bins) == ["P"] and state.zone_bins["P"].bytes_weekday[10] == 11
    assert (state.inter_event_hist, state.last_final_event_at, state.sessions, state.session_us) == (
        [0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0], T0 - 86_400 * S, 1, 300 * S)
    assert state.last_session == OLD_SESSION and state.locations == [(T0 - 60 * S, T0 + 60 * S, "work")]
    assert pending_in_state(state.window) == 2 and ucn.user_late_events(state) == 1
    assert (user.version, user.owed, user.writes) == (1_700_000_000_000_000, UCN_DICT_LAYOUT["ucn_user"]["owed"], 2)
    features = ucn.user_features(state)
    assert (features["country"], features["bytes_in"], features["dns_requests"], features["sessions_count"]) == (
        "fr", 5, 5, 1)
    assert features["open_session"]["events"] == 2
    for table, entry in entries.items():  # written again: the same keys, the same values
        assert orjson.loads(UCN_CODECS[table].encode(entry)) == UCN_DICT_LAYOUT[table], table


def test_a_ucn_user_record_of_the_dict_layout_without_a_version_reads_as_version_0():
    """The dict layout wrote `ver` from a user's first snapshot on (there is none before its users row); the
    keyed runner numbers every change of a user, so its records always have one now."""
    codec = UCN_CODECS["ucn_user"]
    record = orjson.loads(codec.encode(Entry(ucn.new_user(3), 1, 0)))
    assert record["ver"] == 0 and record["id"] == 3
    del record["ver"]
    assert codec.decode(orjson.dumps(record)).version == 0


@pytest.mark.parametrize("kind", [state_backends.MEMORY, state_backends.ROCKSDB])
def test_a_store_recovered_from_ucn_dict_layout_records_goes_on_from_them(kind, tmp_path):
    """Device 7 (rows held back, a part of them beside its state in an earlier writer's log, a record owed by an
    earlier worker) and user 1 (an open session, a closed one owed) as the dict layout left them: the link of
    device 7 to user 1 releases every held row to the user, and what the earlier worker owed goes out again."""
    path = RecordPath(partitions=4, store_kind=kind, state_dir=str(tmp_path / "state"))
    for table, key in (("ucn_device", b"7"), ("ucn_user", b"1")):
        record = {**UCN_DICT_LAYOUT[table], "_p": path.partition_of(key)}
        path.runtime.store(table).data.put_in(record["_p"], key, orjson.dumps(record))
    link = {"user_id": 1, "device_id": 7}
    asyncio.run(path.feed("ucn.user_devices", [(b"7", orjson.dumps(link))]))
    assert path.dead_letters("ucn") == []
    device = path.state("ucn_device", "7")
    assert (device.state.owners, device.state.told_owners, device.state.held_rows, device.state.forwarded_rows) == (
        [1], [1], 0, 4)
    assert (device.state.pending, device.state.held_parts, device.state.held_first_at, device.writes) == (
        None, 0, None, 8)  # written when the partition started (what it owed, sent again), then by the link
    store = path.runtime.store("ucn_device")
    assert store.data.get_in(device.partition, b"__h0|device:7") is None  # the part went to the user
    sent = [(topic, key, orjson.loads(value)) for topic, key, value, _ in path.app.producer.sent if value]
    again = [value for topic, key, value in sent if topic == "ucn.internal.user" and key == b"9"]
    assert again == [UCN_DICT_LAYOUT["ucn_device"]["owed"][0][1][0][2]]  # the earlier worker's record, once more
    assert [value for topic, key, value in sent if topic == "ucn.sessions" and key == b"1"] == [OLD_SESSION]
    user = path.state("ucn_user", "1")
    state = user.state
    assert (state.dns_rows, state.events, state.traffic.bytes_in) == (8, 14, 105)
    assert state.devices == {"8": ucn.DeviceInfo("android", False), "7": ucn.DeviceInfo("ios", False)}
    assert pending_in_state(state.window) == 5 and state.sessions == 1
    assert state.locations == [(T0 - 60 * S, T0 + 60 * S, "work"), (T0, T0 + 3_600 * S, "home")]
    assert user.version > 1_700_000_000_000_000 and user.writes == 3
    assert [tag[0] for tag, _ in user.owed or []] != ["old-worker"]  # sent again under this worker's tag
    features = ucn.user_features(state)
    assert features["bytes_by_hour_weekday"][11] == 110  # 10:00 UTC is 11:00 in Paris
    assert features["open_session"] == {"start": "2015-11-02T10:00:00", "last_event_at": "2015-11-02T10:01:00",
                                        "events": 5}


def test_a_malformed_device_record_is_a_dead_letter_with_its_reason_and_the_good_one_beside_it_counts():
    path = RecordPath(partitions=2)
    asyncio.run(path.feed("ucn.users", [(b"1", orjson.dumps({"id": 1, "username": "u1", "country": "uk"}))]))
    good = ucn.DeviceRecord(1, 7, 5, "ios", False, ucn.Contribution(1, watermark=T0, dns_rows=1))
    bad = {**msgspec.to_builtins(good), "seq": "five"}
    other_kind = {**msgspec.to_builtins(good), "k": "project"}
    messages = [orjson.dumps(bad), b"\xff not json", orjson.dumps(other_kind), msgspec.json.encode(good),
                wire.encode_progress("dnsreqs", 0, T0)]
    partition = path.partition_of(b"1")
    asyncio.run(path.feed("ucn.internal.user", [(b"1", value) for value in messages], partition))
    reasons = [letter["reason"] for letter in path.dead_letters("ucn")]
    assert len(reasons) == 3 and reasons[0].startswith("not a ucn record: Expected `int`, got `str`")
    assert reasons[1].startswith("not JSON") and "Invalid value 'project'" in reasons[2]
    assert path.state("ucn_user", "1").state.dns_rows == 1  # the good record, applied


def test_the_ucn_logics_types_carry_no_runtime_field():
    types = _structs_of(ucn)
    assert {ucn.DeviceState, ucn.UserState, ucn.Contribution, ucn.DeviceRecord, ucn.Traffic, ucn.ZoneBins,
            ucn.DeviceRow, ucn.UsersRow, ucn.DeviceInfo} <= set(types)
    for kind in types:
        fields = msgspec.structs.fields(kind)
        names = {f.name for f in fields} | {f.encode_name for f in fields}
        assert not names & (RUNTIME_KEYS | {"partition", "writes", "log", "version", "snapshot"}), kind
    new = {"ucn_device": ucn.new_device(), "ucn_user": ucn.new_user("1")}
    for table, codec in UCN_CODECS.items():  # the store keeps them instead
        assert isinstance(codec, StructCodec) and codec.state_type is type(new[table]), table
        assert not set(orjson.loads(msgspec.json.encode(new[table]))) & RUNTIME_KEYS


@settings(max_examples=300, deadline=None)
@given(state=projects, again=st.booleans())
def test_the_end_of_a_run_skips_only_projects_it_would_leave_as_they_are(state, again):
    """`run_end_changes` False (the walk skips the key) only where `end_key` changes nothing and sends
    nothing."""
    stage = storj_stages.ProjectStage.__new__(storj_stages.ProjectStage)  # end_key needs no context
    entry = Entry(state)
    before = msgspec.json.encode(state)
    outbox = storj_stages.Outbox()
    changed = stage.end_key(0, "p1", entry, outbox, again)
    if not stage.run_end_changes(Entry(msgspec.json.decode(before, type=storj.ProjectState)), again):
        assert not changed and not outbox.by_topic and msgspec.json.encode(state) == before
