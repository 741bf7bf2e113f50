"""End-of-run marks: when has a stage partition seen the end of every upstream?

The replay sends an `end` mark to every partition of every source topic. A
stage partition is complete for a run once it has a mark from each of its
upstream origins; it then closes its windows and sends its own mark on to
every partition downstream. Kafka keeps order within a partition, so a mark
arrives after everything its origin sent before it. The marks seen are kept
in the stage's changelog-backed state (a plain dict), so a worker that dies
between two marks of one run resumes counting where it stopped.
"""
from __future__ import annotations


def record_mark(state: dict, run: str, origin: str, expected: int) -> bool:
    """Record a mark in `state` (run -> sorted origins); True exactly once: when the run becomes complete."""
    origins = state.setdefault(run, [])
    if origin in origins or len(origins) >= expected:
        return False
    origins.append(origin)
    origins.sort()
    return len(origins) == expected


def run_complete(state: dict, run: str, expected: int) -> bool:
    """Has the run every mark it waits for? (True again for a mark redelivered after completion.)"""
    return len(state.get(run, ())) >= expected
