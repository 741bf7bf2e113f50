"""A third dataset that exists only here, registered at test time, goes through the engine's own pieces.

toy: one table of clicks (`clicks-{day}.csv` files), one stage counting each user's clicks. Its rules are
none of storj's or ucn's, so an engine that still picked rules by dataset name fails here: user ids are
compared in lower case (storj lowers other columns than `user`, ucn none), an event's id is `click:{n}`
(storj hashes the row, ucn writes `clicks:{id}`), rows of one instant go newest click first (storj and
ucn keep read order or sort by id), and a file's name is not its table's (storj wants `{region}_{file}`,
ucn `{table}`).
"""
from __future__ import annotations

import asyncio
import csv
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

import datasets
from contract.dataset import Dataset
from contract.rows import BadRow, normalise
from contract.tables import TableSpec, by_name, table, table_spec
from contract.wire import encode_rows
from stream.feature_table import INT, META, STR, list_of
from stream.runtime.keyed import KeyedStage
from stream.runtime.stages import Outbox
from stream.runtime.store import Entry

CLICKS = table_spec("toy", "clicks", "user", "at", ints=("n",), texts=("user", "page"))


def click_id(spec: TableSpec, values: dict) -> str:
    if values.get("n") is None:
        raise BadRow("missing n")
    return f"click:{values['n']}"


def newest_click_first(spec: TableSpec, row) -> tuple:
    return (-(row.values.get("n") or 0),)


def table_of_file(tables, stem: str) -> TableSpec | None:
    return tables["clicks"] if stem.startswith("clicks-") else None


# ------------------------------------------------------------------ the pure logic and its stage


class Counter(msgspec.Struct):
    """A user's clicks: the event ids counted, the pages seen and the newest click's time."""

    seen: list[str] = []
    pages: list[str] = []
    last: Any = None


def new_counter() -> Counter:
    return Counter()


def count(state: Counter, rows) -> None:
    """Apply normalised click rows to a user's state, each event id once."""
    for row in rows:
        if row.eid in state.seen:
            continue
        state.seen.append(row.eid)
        if row.values["page"] not in state.pages:
            state.pages = sorted([*state.pages, row.values["page"]])
        state.last = max(state.last or row.values["at"], row.values["at"])


def features(state: Counter) -> dict:
    return {"clicks": len(state.seen), "pages": state.pages}


class CountStage(KeyedStage):
    """The keyed runner gets or makes each user's entry, moves its snapshot version and puts it back."""

    name, dataset = "counter", "toy"
    topics = ["toy.clicks"]
    state_table, state_type = "toy_counter", Counter
    versioned = True

    def apply_key(self, partition, topic, user, entry, rows, outbox: Outbox) -> None:
        count(entry.state, rows)
        self.write_snapshot(user, entry)

    def write_snapshot(self, user: str, entry: Entry[Counter]) -> None:
        self.context.snapshot("user", user, entry.version, features(entry.state), len(entry.state.seen),
                              entry.state.last)


# ------------------------------------------------------------------ its batch computation (no engine code)


def compute(folder: str) -> dict:
    """Every user's features from the CSV files themselves."""
    clicks: dict = defaultdict(dict)
    for path in sorted(Path(folder).glob("clicks-*.csv")):
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                try:
                    datetime.fromisoformat(row["at"])
                except ValueError:
                    continue
                clicks[row["user"].strip().lower()][int(row["n"])] = row["page"]
    return {"user": {user: {"clicks": len(pages), "pages": sorted(set(pages.values()))}
                     for user, pages in clicks.items()}}


DATASET = Dataset(
    name="toy", tables=by_name(CLICKS), event_id=click_id, tie_break=newest_click_first,
    is_id_column=lambda column: column == "user", table_of_file=table_of_file,
    stages=(CountStage,), state_tables=("toy_counter",), internal_topics=(),
    snapshot_entities=("user",), final_stage="counter", compute=compute,
    columns={"user": (("clicks", INT), ("pages", list_of(STR)), ("_meta", META))}, id_kind=STR,
)
# A worker process that knows the toy: registers it, then runs the command line (fsp.demo.start_worker).
WORKER = [sys.executable, "-c", "import datasets, tests.test_toy_dataset as toy; datasets.register(toy.DATASET); "
          "from fsp.cli import main; main()"]

FILES = {
    "clicks-2024-01-01.csv": ["user,at,page,n", "User1,2024-01-01T10:00:00,home,1", "user2,2024-01-01T10:00:00,home,2",
                              "USER1,2024-01-01T10:00:00,cart,3", "user1,2024-01-01T11:00:00,home,4"],
    "clicks-2024-01-02.csv": ["user,at,page,n", "user2,2024-01-02T09:00:00,cart,5",
                              "user1,2024-01-01T11:00:00,home,4",  # published twice: one event
                              "user3,not a time,home,6"],  # a bad row
    "notes.csv": ["no,table,here"],
}
EXPECTED = {"user1": {"clicks": 3, "pages": ["cart", "home"]}, "user2": {"clicks": 2, "pages": ["cart", "home"]}}


@pytest.fixture
def toy():
    datasets.register(DATASET)
    yield DATASET
    datasets.unregister("toy")


@pytest.fixture
def folder(tmp_path) -> str:
    for name, lines in FILES.items():
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    return str(tmp_path)


def test_the_registry_knows_the_toy_only_while_it_is_registered(toy):
    assert datasets.names()[-1] == "toy" and datasets.get("toy") is toy
    datasets.unregister("toy")
    assert "toy" not in datasets.names()
    with pytest.raises(KeyError, match="unknown dataset 'toy'"):
        datasets.get("toy")
    datasets.register(toy)


def test_a_row_is_normalised_by_the_toy_s_rules_and_counted_by_its_logic(toy):
    rows = [normalise(table("toy", "clicks"), raw) for raw in (
        {"user": " User1 ", "at": "2024-01-01 10:00", "page": "Home", "n": "7"},
        {"user": "user1", "at": "2024-01-01T10:00:00", "page": "Home", "n": 7.0},  # the same click
        {"user": "USER1", "at": "2024-01-01T10:05:00", "page": "Cart", "n": 8})]
    assert [(row.key, row.ts, row.eid) for row in rows] == [
        ("user1", 1704103200000000, "click:7"), ("user1", 1704103200000000, "click:7"),
        ("user1", 1704103500000000, "click:8")]
    assert rows[0].values["page"] == "Home"  # not an id column: kept as it is
    state = new_counter()
    count(state, rows)
    assert features(state) == {"clicks": 2, "pages": ["Cart", "Home"]}
    with pytest.raises(BadRow, match="missing n"):
        normalise(table("toy", "clicks"), {"user": "u", "at": "2024-01-01", "page": "x"})


def test_replay_finds_the_toy_s_files_and_orders_one_instant_newest_click_first(toy, folder):
    from replay.job import read_source
    from replay.sources.csv_folder import discover, unknown_files

    assert [(path.name, spec.name) for path, spec in discover(Path(folder), "toy")] == [
        ("clicks-2024-01-01.csv", "clicks"), ("clicks-2024-01-02.csv", "clicks")]
    assert unknown_files(folder, "toy") == ["notes.csv"]
    ordered, bad = read_source("toy", folder)
    assert [item.row.values["n"] for item in ordered] == [3, 2, 1, 4, 4, 5]  # 10:00 newest first, then by time
    assert [(item.origin, item.reason) for item in bad] == [
        ("clicks-2024-01-02.csv:4", "unparsable time 'not a time' in at")]


def _snapshots(path) -> dict[str, dict]:
    """The snapshots the worker's sink has queued, by Redis key: {feature: value}."""
    out = {}
    for kind, key_list, args, _ in path.runtime.sink._pending:
        if kind == "snapshot" and args[2] == "set":
            fields = args[8:]
            out[key_list[0]] = {fields[i]: orjson.loads(fields[i + 1]) for i in range(0, len(fields), 2)}
    return out


def test_the_counting_stage_runs_in_the_worker_s_record_path(toy):
    from stream.runtime.driver import RecordPath

    path = RecordPath(datasets=("toy",))
    assert [type(stage) for stage in path.runner.by_topic.values()] == [CountStage]
    messages = [(b"user1", encode_rows([{"user": "User1", "at": "2024-01-01T10:00:00", "page": "home", "n": 1},
                                        {"user": "user1", "at": "2024-01-01T10:00:00", "page": "home", "n": 1}])),
                (b"user1", encode_rows([{"user": "USER1", "at": "2024-01-01T11:00:00", "page": "cart", "n": 3}])),
                (b"user2", encode_rows([{"user": "user2", "at": "yesterday", "page": "home", "n": 2}]))]
    asyncio.run(path.feed("toy.clicks", messages))
    assert _snapshots(path) == {"fuzz:feat:toy:user:user1": {"clicks": 2, "pages": ["cart", "home"]}}
    entry = path.state("toy_counter", "user1")
    assert entry.state.seen == ["click:1", "click:3"]
    assert [letter["reason"] for letter in path.dead_letters("toy")] == ["unparsable time 'yesterday' in at"]
    assert path.events("toy") == 3 and path.rerouted() == 0
    version = entry.version
    asyncio.run(path.feed("toy.clicks", messages[:1]))  # duplicates: nothing new, still a new snapshot version
    assert path.state("toy_counter", "user1").version > version > 0


@pytest.mark.integration
def test_a_toy_replay_reaches_redis_through_a_real_worker(toy, folder, pipeline_factory):
    """Broker, worker process (which registers the toy itself), replay --wait, verify and an export."""
    from stream.client import features_frame, get_features

    pipeline = pipeline_factory("toy", partitions=2, launcher=WORKER)
    summary = pipeline.replay("toy", folder)
    assert (summary.published, summary.duplicates, summary.bad_rows) == (5, 1, 1)
    assert summary.ignored_files == ["notes.csv"]
    mismatches, counts = pipeline.verify("toy", folder)
    assert mismatches == [] and counts == {"user": 2}
    r = pipeline.redis()
    assert {user: {k: v for k, v in get_features(r, "toy", "user", user, pipeline.prefix).items() if k != "_meta"}
            for user in EXPECTED} == EXPECTED
    assert get_features(r, "toy", "user", "user1", pipeline.prefix)["_meta"]["events"] == 3
    frame = features_frame(r, "toy", "user", pipeline.prefix)
    assert list(frame.columns) == ["id", "clicks", "pages", "_meta"] and sorted(frame["id"]) == ["user1", "user2"]


class SessionCountStage(CountStage):
    """The same stage, with a run's end that changes users with a click after 10:30 and no other."""

    def end_key(self, partition, user, entry, outbox, again) -> bool:
        if entry.state.last is None or entry.state.last < "2024-01-01T10:30":
            return False
        entry.state.pages = [*entry.state.pages, "closed"]
        self.write_snapshot(user, entry)
        return True


def test_the_keyed_runner_derives_the_stores_it_walks_and_keeps_an_unchanged_key_as_it_was(toy):
    from stream.runtime.driver import RecordPath

    assert (CountStage.marks_table, CountStage.snapshot_store, CountStage.run_end_store) == (
        "toy_counter", "toy_counter", None)
    assert SessionCountStage.run_end_store == "toy_counter"  # it has an end_key: the run's end visits its keys
    path = RecordPath(datasets=("toy",))
    asyncio.run(path.feed("toy.clicks", [
        (b"user1", encode_rows([{"user": "user1", "at": "2024-01-01T11:00:00", "page": "home", "n": 1}])),
        (b"user2", encode_rows([{"user": "user2", "at": "2024-01-01T10:00:00", "page": "home", "n": 2}]))]))
    stage = SessionCountStage(path.runner.by_topic["toy.clicks"].context)
    before = {user: path.state("toy_counter", user).version for user in ("user1", "user2")}
    for user in before:
        partition = path.partition_of(user.encode())
        stage.end_run_for(partition, user, path.runtime.store("toy_counter").get(partition, user), Outbox())
    one, two = path.state("toy_counter", "user1"), path.state("toy_counter", "user2")
    assert one.state.pages == ["home", "closed"] and one.version > before["user1"]
    assert two.state.pages == ["home"] and two.version == before["user2"]  # not changed: not a new version
