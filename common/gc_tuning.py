"""Garbage-collector thresholds for the long-running processes (worker, replay).

Both hold a large, long-lived heap (keyed state; a replay's sorted rows) and
allocate many short-lived objects per event. With CPython's defaults
(700, 10, 10) the objects of the batch in hand are alive at most young
collections, get promoted, and keep triggering full collections that walk the
whole heap: a quarter of the worker's CPU on a storj scale-1 replay. Fewer
young collections let a batch's objects die before they are looked at; full
collections still run (after 100 middle ones, and CPython's own 25 % growth
rule), so cyclic garbage is still reclaimed.
"""
from __future__ import annotations

import gc

THRESHOLDS = (20_000, 50, 100)


def tune_gc() -> None:
    gc.set_threshold(*THRESHOLDS)
