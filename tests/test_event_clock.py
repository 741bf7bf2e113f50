"""A ucn user partition's event time (stream.logic.source_clock) and the progress marks that move it
(stream.logic.progress)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.logic.progress import PartitionProgress
from stream.logic.source_clock import SourceClock

SOURCES = [("dnsreqs", 0), ("dnsreqs", 1), ("locations", 0), ("locations", 1)]


def test_every_source_must_have_spoken():
    clock = SourceClock(SOURCES, idle_s=30.0)
    clock.hear("dnsreqs", 0, 500, now_s=1.0, run="r")
    clock.hear("dnsreqs", 1, 300, now_s=1.0, run="r")
    clock.hear("locations", 0, 900, now_s=1.0, run="r")
    assert clock.event_time(now_s=2.0, consuming_since_s=0.0) is None
    clock.hear("locations", 1, 400, now_s=2.0, run="r")
    assert clock.event_time(now_s=2.0, consuming_since_s=0.0) == 300
    clock.hear("dnsreqs", 1, 200, now_s=3.0, run="r")  # an older word changes nothing
    assert clock.event_time(now_s=3.0, consuming_since_s=0.0) == 300


def test_a_replay_never_stops_waiting_however_long_a_source_is_silent():
    clock = SourceClock(SOURCES, idle_s=30.0)
    for table, partition in SOURCES[:3]:
        clock.hear(table, partition, 1_000, now_s=0.0, run="r")
    assert clock.event_time(now_s=1_000.0, consuming_since_s=0.0) is None  # locations/1 said nothing yet
    clock.hear("locations", 1, 2_000, now_s=1_000.0, run="r")
    assert clock.event_time(now_s=5_000.0, consuming_since_s=0.0) == 1_000


def test_a_live_source_silent_for_idle_s_stops_holding_counting_from_when_consuming_began():
    clock = SourceClock(SOURCES, idle_s=30.0)
    clock.hear("dnsreqs", 0, 500, now_s=100.0)
    clock.hear("dnsreqs", 1, 700, now_s=125.0)
    assert clock.event_time(now_s=110.0, consuming_since_s=100.0) is None  # two sources never spoke, 10 s in
    assert clock.event_time(now_s=131.0, consuming_since_s=100.0) == 700  # dnsreqs/0 silent for 31 s
    clock.hear("dnsreqs", 0, 800, now_s=131.0)
    assert clock.event_time(now_s=140.0, consuming_since_s=100.0) == 700
    assert clock.event_time(now_s=160.0, consuming_since_s=100.0) == 800  # dnsreqs/1 silent for 35 s
    assert clock.event_time(now_s=160.0, consuming_since_s=159.0) is None  # a worker that just began waits


def test_after_the_run_ends_its_sources_are_a_live_feed():
    clock = SourceClock(SOURCES[:1], idle_s=30.0)
    clock.hear("dnsreqs", 0, 500, now_s=0.0, run="r")
    clock.run_ended()
    assert clock.event_time(now_s=10.0, consuming_since_s=0.0) == 500
    assert clock.event_time(now_s=40.0, consuming_since_s=0.0) is None  # idle: holds nothing, knows nothing


def test_live_marks_stop_before_a_held_row_for_the_grace_then_move_on():
    progress = PartitionProgress(grace_s=5.0)
    progress.known(0)
    progress.holding(0, "d1", 1_000, now_s=0.0)
    assert progress.to_tell("dnsreqs", 0, 5_000, now_s=1.0) == 999
    assert progress.to_tell("dnsreqs", 0, 6_000, now_s=2.0) is None  # nothing new to say
    assert progress.to_tell("dnsreqs", 0, 7_000, now_s=6.0) == 7_000  # d1 never linked: an unknown device
    progress.holding(1, "d9", 7_200, now_s=6.0)  # held in another partition: that partition's business
    assert progress.to_tell("dnsreqs", 0, 7_500, now_s=6.0) == 7_500
    assert progress.to_tell("dnsreqs", 1, 7_500, now_s=6.0) == 7_199
    progress.holding(1, "d9", None, now_s=6.5)
    assert progress.retell(now_s=6.5) == [("dnsreqs", 1, 7_500)]
    progress.holding(0, "d1", 1_000, now_s=7.0)
    assert progress.to_tell("dnsreqs", 0, 8_000, now_s=7.0) == 8_000  # and it stays one
    progress.holding(0, "d2", 7_500, now_s=7.0)
    progress.holding(0, "d2", None, now_s=7.5)  # linked: its rows went out
    assert progress.to_tell("dnsreqs", 0, 9_000, now_s=8.0) == 9_000


def test_in_a_replay_a_held_row_stops_marks_until_both_reference_tables_are_through():
    progress = PartitionProgress(grace_s=5.0)
    progress.known(0)
    progress.replayed("dnsreqs", 0, 100, "r")
    progress.holding(0, "d1", 1_000, now_s=0.0)
    assert progress.to_tell("dnsreqs", 0, 5_000, now_s=1_000.0) == 999  # no grace while the replay runs
    progress.replayed("devices", 0, 6_000, "r")
    assert progress.retell(now_s=1_000.0) == []  # user_devices may still link it
    progress.replayed("user_devices", 0, 6_000, "r")
    assert progress.retell(now_s=1_000.0) == [("dnsreqs", 0, 5_000)]  # d1 will not be linked by this run
    assert progress.replaying(0) == "r"
    progress.run_ended(0)
    assert progress.replaying(0) is None


def test_a_replay_mark_moves_a_partition_that_has_no_rows():
    progress = PartitionProgress()
    progress.known(2)
    progress.replayed("locations", 2, 4_000, "r")
    assert progress.retell(now_s=0.0) == [("locations", 2, 4_000)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["hold", "release", "batch"]), st.sampled_from(["a", "b", "c"]),
                          st.integers(0, 1_000), st.floats(0, 2)), max_size=60))
def test_progress_never_passes_a_row_held_within_the_grace_and_never_goes_back(steps):
    progress, now, held, told, reached = PartitionProgress(grace_s=5.0), 0.0, {}, [], None
    progress.known(0)
    for action, device, ts, pause in steps:
        now += pause
        if action == "hold":
            progress.holding(0, device, ts, now)
            oldest, since = held.get(device, (ts, now))
            held[device] = (min(oldest, ts), since)
        elif action == "release":
            progress.holding(0, device, None, now)
            held.pop(device, None)
        else:
            said = progress.to_tell("dnsreqs", 0, ts, now)
            reached = ts if reached is None else max(reached, ts)
            if said is not None:
                young = [oldest for oldest, since in held.values() if now - since < 5.0]
                assert all(said < oldest for oldest in young)
                assert said <= reached
                assert not told or said > told[-1]
                told.append(said)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SOURCES), st.integers(0, 1_000), st.floats(0, 20)), max_size=40))
def test_in_a_replay_the_event_time_never_passes_a_source(words):
    """Whatever the order and pauses: the event time is at most what each source said (or None)."""
    clock, now, said = SourceClock(SOURCES, idle_s=5.0), 0.0, {}
    for source, ts, pause in words:
        now += pause
        clock.hear(*source, ts, now, run="r")
        said[source] = max(ts, said.get(source, ts))
        event_time = clock.event_time(now, 0.0)
        if len(said) < len(SOURCES):
            assert event_time is None
        else:
            assert event_time == min(said.values())
