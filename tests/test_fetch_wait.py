"""The worker's fetch wait setting: a default for the embedded broker, a clear error when mistyped."""
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
