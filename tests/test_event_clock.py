"""A ucn user's event time (stream.logic.channel_clock) and the progress marks that move it (stream.logic.progress)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.logic import channel_clock
from stream.logic.progress import PartitionProgress

IDLE = 30.0


def test_a_channel_that_has_not_started_holds_until_its_partition_moves():
    channels = {"7:dnsreqs": [100, 0.0, 1], "8:dnsreqs": [5, 0.0, 2], "8:httpreqs": [None, 0.0, 2]}
    assert channel_clock.event_time(channels, 1.0, 0.0, IDLE) is None
    assert channel_clock.event_time(channels, 1.0, 0.0, IDLE, {("httpreqs", 2): 40}) == 5
    assert channel_clock.event_time(channels, 1.0, 0.0, IDLE, {("httpreqs", 2): 40, ("dnsreqs", 2): 60}) == 40
    assert channel_clock.event_time(channels, 1.0, 0.0, IDLE, {("httpreqs", 2): 500, ("dnsreqs", 2): 500}) == 100


def test_a_device_that_delivered_nothing_does_not_follow_its_partitions():
    """Just linked: the user may have other devices yet to be linked, whose held rows are older."""
    channels = {"7:dnsreqs": [100, 0.0, 1], "8:dnsreqs": [None, 0.0, 2]}
    assert channel_clock.event_time(channels, 1.0, 0.0, IDLE, {("dnsreqs", 2): 40}) is None


def test_a_quiet_channel_follows_its_partition():
    """A device that sends nothing on a table holds nobody back while the table's partition moves."""
    channels = {"7:dnsreqs": [1_000, 0.0, 1], "7:locations": [10, 0.0, 1]}
    assert channel_clock.event_time(channels, 1.0, 0.0, IDLE) == 10
    assert channel_clock.event_time(channels, 1.0, 0.0, IDLE, {("locations", 1): 900}) == 900
    assert channel_clock.event_time(channels, 1.0, 0.0, IDLE, {("locations", 0): 900}) == 10  # another partition


def test_an_alias_follows_the_name_the_table_is_published_under():
    channels = {"7:httpreqs": [None, 0.0, 3], "7:dnsreqs": [1_000, 0.0, 3]}
    assert channel_clock.event_time(channels, 1.0, 0.0, IDLE, {("httpreqs2", 3): 77}) == 77
    assert channel_clock.event_time(channels, 1.0, 0.0, IDLE, {("httpreqs2", 3): 77, ("httpreqs", 3): 5}) == 5


def test_idle_channels_are_forgotten_counting_from_when_consuming_began():
    channels = {"7:dnsreqs": [None, 0.0, 1], "8:dnsreqs": [50, 120.0, 1]}
    assert channel_clock.event_time(channels, 110.0, 100.0, IDLE) is None  # 10 s since this worker began
    assert channel_clock.event_time(channels, 131.0, 100.0, IDLE) == 50
    assert "7:dnsreqs" not in channels


def test_channels_written_before_they_said_their_partition_still_count():
    assert channel_clock.event_time({"7:dnsreqs": [60, 0.0]}, 1.0, 0.0, IDLE, {("dnsreqs", 0): 99}) == 60


def test_progress_stops_before_a_held_row_for_the_grace_then_moves_on():
    progress = PartitionProgress(grace_s=5.0)
    progress.known(0)
    progress.holding(0, "d1", 1_000, now_s=0.0)
    assert progress.to_tell("dnsreqs", 0, 5_000, now_s=1.0) == 999
    assert progress.to_tell("dnsreqs", 0, 6_000, now_s=2.0) is None  # nothing new to say
    assert progress.to_tell("dnsreqs", 0, 7_000, now_s=6.0) == 7_000  # d1 never linked: an unknown device
    progress.holding(1, "d9", 7_200, now_s=6.0)  # a device held in another partition stops this one's too
    assert progress.to_tell("dnsreqs", 0, 7_500, now_s=6.0) == 7_199
    progress.holding(1, "d9", None, now_s=6.5)
    assert progress.retell(now_s=6.5) == [("dnsreqs", 0, 7_500)]
    progress.holding(0, "d1", 1_000, now_s=7.0)
    assert progress.to_tell("dnsreqs", 0, 8_000, now_s=7.0) == 8_000  # and it stays one
    progress.holding(0, "d2", 7_500, now_s=7.0)
    progress.holding(0, "d2", None, now_s=7.5)  # linked: its rows went out
    assert progress.to_tell("dnsreqs", 0, 9_000, now_s=8.0) == 9_000


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
