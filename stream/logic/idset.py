"""A compact set of integer ids, stored as sorted disjoint ranges.

Why: every ucn device remembers the ids it has applied per table so that a
redelivered or duplicated row counts once (SPEC §5: "a second row with an id
already seen in that table is a duplicate"). The state is written to the
changelog after every batch, so it has to stay small. Ids of one table mostly
arrive increasing (often consecutive), so the set kept as ranges
``[[lo, hi], ...]`` (both ends inclusive) is a handful of pairs instead of one
entry per row.

Invariants of the state: ranges are sorted, ``lo <= hi``, and two neighbours
are neither overlapping nor adjacent (``hi + 1 < next lo``), so one set has
exactly one state.
"""
from __future__ import annotations

from bisect import bisect_right


class IdRanges:
    """Set of ints with ``add`` (True when new) and a JSON-able range state."""

    __slots__ = ("_lo", "_hi")

    def __init__(self) -> None:
        self._lo: list[int] = []
        self._hi: list[int] = []

    @classmethod
    def from_state(cls, state) -> IdRanges:
        """Restore from ``to_state()`` (or its JSON round trip); None or [] is empty."""
        ids = cls()
        for lo, hi in state or ():
            ids._lo.append(int(lo))
            ids._hi.append(int(hi))
        return ids

    def to_state(self) -> list[list[int]]:
        return [[lo, hi] for lo, hi in zip(self._lo, self._hi)]

    def __contains__(self, value: int) -> bool:
        i = bisect_right(self._lo, value) - 1
        return i >= 0 and value <= self._hi[i]

    def __len__(self) -> int:
        """Number of ids in the set (not of ranges)."""
        return sum(hi - lo + 1 for lo, hi in zip(self._lo, self._hi))

    @property
    def ranges(self) -> int:
        return len(self._lo)

    def add(self, value: int) -> bool:
        """Add one id; False when it was already present."""
        lo, hi = self._lo, self._hi
        # Fast path: ids arriving in increasing order.
        if not lo or value > hi[-1] + 1:
            lo.append(value)
            hi.append(value)
            return True
        if value == hi[-1] + 1:
            hi[-1] = value
            return True
        i = bisect_right(lo, value) - 1  # the last range starting at or before value
        if i >= 0 and value <= hi[i]:
            return False
        joins_left = i >= 0 and hi[i] + 1 == value
        joins_right = i + 1 < len(lo) and lo[i + 1] - 1 == value
        if joins_left and joins_right:  # fills the hole between two ranges
            hi[i] = hi[i + 1]
            del lo[i + 1], hi[i + 1]
        elif joins_left:
            hi[i] = value
        elif joins_right:
            lo[i + 1] = value
        else:
            lo.insert(i + 1, value)
            hi.insert(i + 1, value)
        return True
