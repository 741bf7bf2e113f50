"""The worker's and the replay's collector thresholds: young collections rarer, full ones still on."""
from __future__ import annotations

import gc

from common.gc_tuning import THRESHOLDS, tune_gc


def test_tune_gc_sets_the_thresholds_and_keeps_the_collector_enabled():
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == THRESHOLDS
        assert gc.isenabled()
        assert THRESHOLDS[0] > 700 and THRESHOLDS[2] > 0  # rarer young collections than the default; full ones on
    finally:
        gc.set_threshold(*before)


def test_cyclic_garbage_is_still_reclaimed_with_the_tuned_thresholds():
    before = gc.get_threshold()
    try:
        tune_gc()

        class Node:
            pass

        import weakref
        first = Node()
        first.other = Node()
        first.other.other = first  # a cycle: reference counting alone never frees it
        ref = weakref.ref(first)
        del first
        kept = [[] for _ in range(THRESHOLDS[0] * 2)]  # enough new containers for a young collection to run
        assert ref() is None, "no automatic collection freed the cycle"
        del kept
    finally:
        gc.set_threshold(*before)
