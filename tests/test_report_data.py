"""What the report plots, from snapshots (datasets/*/report_data.py, stream.report_data): pure, no Redis, no
matplotlib."""
from __future__ import annotations

from datetime import date

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from datasets.storj.report_data import StorjData
from datasets.ucn.report_data import UcnData, bin_labels, hist_cdf, local_date, per_day_of_kind, week_grid
from stream.report_data import ecdf


def test_the_week_grid_puts_monday_midnight_first_and_sunday_night_last():
    grid = week_grid(range(84))
    assert grid.shape == (7, 12) and grid[0, 0] == 0 and grid[0, 4] == 4  # Monday 08:00-10:00
    assert grid[5, 0] == 60 and grid[6, 11] == 83  # Saturday 00:00, Sunday 22:00-24:00


def test_weekday_and_weekend_hours_compare_per_day_of_their_kind():
    grid = per_day_of_kind([10] * 24, [4] * 24)
    assert grid.shape == (2, 24) and grid[0, 0] == 2 and grid[1, 23] == 2  # 10 over 5 days, 4 over 2


def test_bin_labels_follow_the_spec_edges_and_the_last_bin_is_open():
    labels = bin_labels()
    assert len(labels) == 11 and labels[0] == "0–1 ms" and labels[6] == "1 min–10 min" and labels[-1] == "≥ 7 d"


def test_the_histogram_cdf_is_the_share_below_each_upper_edge():
    edges, fractions = hist_cdf([1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2])
    assert edges[0] == 0.001 and edges[-1] == 604_800 and len(fractions) == 10
    assert fractions[0] == 0.25 and fractions[4] == 0.5 and fractions[-1] == 0.5  # half sit in the open bin
    assert not hist_cdf([0] * 11)[1].any()  # no sessions: no division by zero


@given(st.lists(st.floats(0, 1e7, allow_nan=False), min_size=1, max_size=50))
def test_the_empirical_cdf_rises_to_one(values):
    x, y = ecdf(values)
    assert list(x) == sorted(values) and y[-1] == 1 and (np.diff(y) > 0).all()


def test_a_session_counts_on_the_local_date_of_its_user():
    assert local_date("2015-11-10T23:30:00", "fr") == date(2015, 11, 11)  # 00:30 in Paris
    assert local_date("2015-11-10T23:30:00", "uk") == date(2015, 11, 10)
    assert local_date("2015-07-10T23:30:00", None) == date(2015, 7, 11)  # London summer time


def _session(start: str, duration: float) -> dict:
    return {"start": start, "duration_s": duration}


def test_ucn_sums_every_user_and_says_whose_session_list_is_cut():
    data = UcnData()
    data.add_user({"country": "uk", "bytes_by_hour_weekday": [1] * 24, "bytes_by_hour_weekend": [2] * 24,
                   "bytes_by_week_slot": [3] * 84, "inter_event_hist": [1] * 11, "session_duration_hist": [0] * 11,
                   "sessions_count": 3, "user_events_by_hour_weekday": [5] * 24},
                  [_session("2015-11-12T10:00:00", 60.0), _session("2015-11-10T10:00:00", 30.0)])
    data.add_user({"country": "fr", "bytes_by_hour_weekday": None, "sessions_count": 1, "inter_event_hist": [2] * 11},
                  [_session("2015-11-10T23:30:00", 5.0)])  # null vectors add nothing
    data.add_user({}, [])  # a user with no data at all
    assert data.users == 3 and data.countries == {"uk": 1, "fr": 1, "unknown": 1}
    assert data.bytes_hours[0].tolist() == [1] * 24 and data.bytes_hours[1].tolist() == [2] * 24
    assert data.events_hours[0, 0] == 5 and data.events_hours[1].sum() == 0
    assert data.inter_event.tolist() == [3] * 11 and data.bytes_week.sum() == 3 * 84
    assert data.sessions_count == 4 and data.sessions_listed == 3 and data.users_cut == 1
    dates, counts = data.days()
    assert dates == [date(2015, 11, 10), date(2015, 11, 11), date(2015, 11, 12)]
    assert counts.tolist() == [1, 1, 1]  # the Paris user's session is on the 11th, local time
    assert UcnData().days()[0] == []


def test_storj_sums_by_tier_and_month_with_months_missing_in_some_users():
    data = StorjData()
    data.add_user({"tier": "free", "upload_bytes_by_month": {"2021-03": 5}, "download_bytes_by_month": {},
                   "storage_bytes": 7, "over_bandwidth_months": ["2021-04"], "over_storage_limit": True,
                   "operator_nodes": 2, "operator_paid_total": 1.5})
    data.add_user({"tier": "paid", "upload_bytes_by_month": {"2021-01": 1, "2021-03": 2},
                   "download_bytes_by_month": {"2021-03": 4}, "storage_bytes": None,
                   "over_bandwidth_months": ["2021-03"], "operator_nodes": 0})
    data.add_user({"tier": None})  # no tier: free (SPEC: a user with no projects)
    assert data.users == {"free": 2, "paid": 1}
    assert data.months() == ["2021-01", "2021-03", "2021-04"]
    assert data.monthly("upload")["free"].tolist() == [0, 5, 0]
    assert data.monthly("upload")["paid"].tolist() == [1, 2, 0]
    assert data.monthly("download")["paid"].tolist() == [0, 4, 0]
    assert data.free_over_bandwidth == {"2021-04": 1} and data.free_over_storage == 1  # paid users not counted
    assert data.storage == {"free": [7, 0], "paid": [0]}
    assert data.operators == [(1.5, 12, "free")]  # bandwidth 5 + storage 7
