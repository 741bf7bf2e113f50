"""End-of-run marks: when has a stage partition seen the end of every upstream?

The replay sends an `end` mark to every partition of every source topic. A
stage partition is complete for a run once it has a mark from each of its
upstream origins; it then closes its windows and sends its own mark on to
every partition downstream. Kafka keeps order within a partition, so a mark
arrives after everything its origin sent before it.
"""
from __future__ import annotations


class MarkTracker:
    def __init__(self, expected: int):
        self.expected = expected
        self._seen: dict[tuple[str, int], set[str]] = {}
        self._done: set[tuple[str, int]] = set()

    def add(self, run: str, partition: int, origin: str) -> bool:
        """Record a mark; True exactly once, when the partition becomes complete for the run."""
        key = (run, partition)
        if key in self._done:
            return False
        origins = self._seen.setdefault(key, set())
        origins.add(origin)
        if len(origins) < self.expected:
            return False
        self._done.add(key)
        del self._seen[key]
        return True
