"""Pure logic of the freshness metrics and durations (no broker, no Redis)."""
from __future__ import annotations

from collections import namedtuple

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.utils import floatToGoString

from common.config import parse_duration
from stream.runtime.metrics import BulkHistogram, ConsumerLag

BOUNDS = (0.01, 0.1, 1, 10)


@given(st.lists(st.one_of(st.sampled_from(BOUNDS), st.floats(0, 100, allow_nan=False)), max_size=50))
def test_a_bulk_histogram_counts_each_value_in_every_bucket_at_or_above_it(values):
    """Prometheus' `le`: a value equal to a bound is in that bound's bucket."""
    histogram = BulkHistogram("h", "doc", ("dataset",), BOUNDS)
    histogram.observe_many(("storj",), values[: len(values) // 2])
    histogram.observe_many(("storj",), values[len(values) // 2:])
    family = next(histogram.collect())
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name == "h_bucket"}
    assert buckets == {**{floatToGoString(b): sum(v <= b for v in values) for b in BOUNDS}, "+Inf": len(values)}
    assert [s.value for s in family.samples if s.name == "h_sum"] == [pytest.approx(sum(values))]


TP = namedtuple("TP", "topic partition")


def _lag_samples(lag: ConsumerLag, now: float) -> dict:
    return {(s.name, *s.labels.values()): s.value for family in lag.collect(now) for s in family.samples}


def test_consumer_lag_in_event_time_is_against_the_topics_newest_and_zero_once_caught_up():
    lag = ConsumerLag()
    lag.position("storj.bbr", 0, next_offset=10, highwater=15)
    lag.position("storj.bbr", 1, next_offset=7, highwater=7)
    lag.event_time("storj.bbr", 0, 100_000_000)
    lag.event_time("storj.bbr", 1, 160_000_000)
    lag.event_time("storj.bbr", 1, 150_000_000)  # never goes back
    samples = _lag_samples(lag, now=1_000.0)
    assert samples[("fsp_consumer_lag_records", "storj.bbr", "0")] == 5
    assert samples[("fsp_consumer_event_time_seconds", "storj.bbr", "1")] == 160
    assert samples[("fsp_consumer_lag_seconds", "storj.bbr", "0", "newest")] == 60
    assert samples[("fsp_consumer_lag_seconds", "storj.bbr", "0", "wall_clock")] == 900
    assert samples[("fsp_consumer_lag_seconds", "storj.bbr", "1", "newest")] == 0  # nothing unread
    lag.forget([TP("storj.bbr", 0)])
    assert not any(key[1:3] == ("storj.bbr", "0") for key in _lag_samples(lag, now=1_000.0))


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("15m", 900), ("1.5h", 5400), ("30d", 2_592_000),
                                           (" 2H ", 7200)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-1h", "1w", "h", "inf", "nan", "1e400"])
def test_what_is_no_duration(text):
    with pytest.raises(ValueError, match="is no duration"):
        parse_duration(text)
    assert parse_duration("0", zero=True) == 0


def test_the_lag_a_heartbeat_carries_sums_unread_records_and_takes_the_worst_event_time():
    lag = ConsumerLag()
    assert lag.summary() == {"records": 0, "event_time_s": 0}
    lag.position("ucn.dnsreqs", 0, next_offset=10, highwater=15)
    lag.position("ucn.dnsreqs", 1, next_offset=7, highwater=7)
    lag.position("ucn.users", 0, next_offset=1, highwater=4)
    lag.event_time("ucn.dnsreqs", 0, 100_000_000)
    lag.event_time("ucn.dnsreqs", 1, 400_000_000)  # caught up: ahead, but nothing unread
    assert lag.summary() == {"records": 8, "event_time_s": 300.0}
