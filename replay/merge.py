"""Event-time order of a replay: reference tables first, then events by time.

Ties: as the dataset says (Dataset.tie_break), e.g. storj keeps file then row
order (so "the one published later wins" means the later file, then the
later row); ucn breaks them by (table, id). A stable sort keeps read order
among what the tie-break leaves equal.
"""
from __future__ import annotations

import heapq
from typing import Iterator

import datasets


def event_key(item):
    """What rows are ordered by: bad records first, then reference rows, then events by time."""
    row = getattr(item, "row", None)
    if row is None:  # a bad record: no time to order it by; it only goes to the dead letters
        return (-1, 0, "", 0)
    if row.ts is None:
        return (0, 0, "", 0)
    spec = item.spec
    return (1, row.ts, *datasets.get(spec.dataset).tie_break(spec, row))


def in_event_order(items: list) -> list:
    """Stable sort: equal keys keep their read order."""
    return sorted(items, key=event_key)


def merge_streams(streams) -> "Iterator":
    """Merge per-table streams, each already in (time, id) order, lazily (a k-way merge)."""
    return heapq.merge(*streams, key=event_key)
