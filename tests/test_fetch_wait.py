"""The worker's fetch wait and group session timeout settings: defaults, a clear error when mistyped."""
from __future__ import annotations

import pytest

from stream.runtime.consumer import FETCH_MAX_WAIT_ENV, FETCH_MAX_WAIT_MS, fetch_max_wait_ms


def test_default_and_override(monkeypatch):
    monkeypatch.delenv(FETCH_MAX_WAIT_ENV, raising=False)
    assert fetch_max_wait_ms() == FETCH_MAX_WAIT_MS
    monkeypatch.setenv(FETCH_MAX_WAIT_ENV, "500")
    assert fetch_max_wait_ms() == 500


@pytest.mark.parametrize("raw", ["abc", "1.5", "-1", "600000"])
def test_a_bad_value_stops_with_the_variable_named(monkeypatch, raw):
    monkeypatch.setenv(FETCH_MAX_WAIT_ENV, raw)
    with pytest.raises(SystemExit, match=FETCH_MAX_WAIT_ENV):
        fetch_max_wait_ms()


def test_the_group_session_timeout_defaults_to_10_s_and_can_be_shortened(monkeypatch):
    from stream.runtime.worker import SESSION_TIMEOUT_ENV, group_session_timeout_s

    monkeypatch.delenv(SESSION_TIMEOUT_ENV, raising=False)
    assert group_session_timeout_s() == 10
    monkeypatch.setenv(SESSION_TIMEOUT_ENV, "4")
    assert group_session_timeout_s() == 4


@pytest.mark.parametrize("raw", ["soon", "2", "301"])
def test_a_bad_group_session_timeout_stops_with_the_variable_named(monkeypatch, raw):
    from stream.runtime.worker import SESSION_TIMEOUT_ENV, group_session_timeout_s

    monkeypatch.setenv(SESSION_TIMEOUT_ENV, raw)
    with pytest.raises(SystemExit, match=SESSION_TIMEOUT_ENV):
        group_session_timeout_s()
