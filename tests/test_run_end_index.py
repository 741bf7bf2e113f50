"""The keys the end of a run visits (stream.logic.run_end_index, and its use by the storj project stage):
never fewer than the end may change, and for a replay on a fresh worker only those."""
from __future__ import annotations

import asyncio

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import tables, wire
from datasets.storj import stages as storj_stages
from stream.logic.run_end_index import RunEndIndex
from stream.runtime.driver import RecordPath

writes = st.lists(st.tuples(st.sampled_from("abcdefgh"), st.booleans()), max_size=40)


@settings(max_examples=200, deadline=None)
@given(before=writes, left=st.sets(st.sampled_from("abcdefgh")), after=writes, cap=st.integers(1, 10))
def test_the_keys_to_visit_are_never_fewer_than_those_the_end_may_change(before, left, after, cap):
    """Model: a key may change at the end once a write said so, until a visit leaves it done."""
    index = RunEndIndex(max_keys=cap)
    index.follow(1)
    index.first_look(0, has_state=False)
    may_change: set[str] = set()
    for key, flag in before:
        index.written(0, key, flag)
        may_change |= {key} if flag else set()
    visit = index.to_visit(0)
    assert visit is None or set(visit) >= may_change
    if visit is not None:
        assert visit == sorted(may_change)  # a fresh partition: exactly those, nothing else read
    may_change = set(left)  # what the end left open
    index.visited(1, 0, left)
    for key, flag in after:
        index.written(0, key, flag)
        may_change |= {key} if flag else set()
    visit = index.to_visit(0)
    assert visit is None or set(visit) >= may_change
    assert visit is not None or len(may_change) > cap or len(left) > cap or len(before) > cap


def test_a_partition_that_held_state_at_first_look_is_walked_whole_until_a_walk_rebuilds_it():
    index = RunEndIndex()
    index.follow(1)
    index.first_look(3, has_state=True)  # e.g. a restarted worker: states it never saw written
    index.written(3, "p1", True)
    assert index.to_visit(3) is None
    index.visited(1, 3, {"p9"})
    assert index.to_visit(3) == ["p9"]
    index.follow(2)  # partitions moved: nothing known any more
    assert not index.looked_at(3) and index.to_visit(3) is None


def project_rows(project: str, hours: list[int]) -> bytes:
    return orjson.dumps([{"project_id": project, "interval_start": f"2021-01-01T{hour:02d}:00:00", "action": 1,
                          "settled": 10} for hour in hours])


def end_run(path: RecordPath, run: str) -> None:
    for topic in tables.topics("storj"):
        for partition in range(path.runtime.partitions):
            asyncio.run(path.feed(topic, [(None, wire.encode_mark(run, f"replay:{topic}:{partition}"))], partition))


def test_the_end_of_a_storj_run_visits_only_the_projects_left_with_open_sessions(monkeypatch):
    path = RecordPath(partitions=1)
    checked: list[tuple[bool, bool]] = []  # (again, whether the project has usage)
    real = storj_stages.ProjectStage.run_end_changes
    monkeypatch.setattr(storj_stages.ProjectStage, "run_end_changes",
                        lambda self, entry, again: checked.append((again, bool(entry.state.usage_window)))
                        or real(self, entry, again))
    for project in ("quiet", "busy"):
        asyncio.run(path.feed("storj.projects", [(project.encode(), orjson.dumps(
            {"project_id": project, "user_id": "u1", "created_at": "2020-12-01T00:00:00"}))]))
    asyncio.run(path.feed("storj.bbr", [(b"busy", project_rows("busy", [0, 1]))]))
    checked.clear()
    end_run(path, "r1")
    busy = path.state("storj_project", "busy").state
    assert busy.usage_sessions == 1 and not storj_stages.storj.has_open_usage_sessions(busy)
    # "busy": is it to be closed, then is it left open; "quiet" (no usage) is not read at all
    assert checked == [(False, True), (False, True)]
