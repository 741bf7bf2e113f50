"""Durations as the command line and the settings take them (no broker, no Redis)."""
from __future__ import annotations

import pytest

from fsp.config import parse_duration


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("15m", 900), ("1.5h", 5400), ("30d", 2_592_000),
                                           (" 2H ", 7200)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-1h", "1w", "h", "inf", "nan", "1e400"])
def test_what_is_no_duration(text):
    with pytest.raises(ValueError, match="is no duration"):
        parse_duration(text)
    assert parse_duration("0", zero=True) == 0
