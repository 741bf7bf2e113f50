"""Records a key owes downstream, kept in the key's own state until they are known delivered.

Stages whose records are deltas (a ucn device's contribution of one batch, a
user's closed sessions) cannot be re-derived from their state after a crash:
once the state says "forwarded", a redelivered input batch is all duplicates
and produces nothing. So the records go into the state first (the transactional
outbox pattern), under a tag `[incarnation, n]` of the worker that made them:

* the runtime sends them only after the state write carrying them is
  acknowledged, so records never exist without the state that made them;
* a later touch of the key drops what this incarnation knows delivered, and
  sends again whatever a previous incarnation (a crashed or revoked worker)
  may not have delivered; receivers ignore a record whose sequence number they
  have seen, so a record that did arrive before is harmless.

A key whose input batch was committed had its records delivered first (the
runtime drains them before every offset commit); one whose batch was not is
touched again by the redelivery. Nothing here knows Kafka.
"""
from __future__ import annotations

FIELD = "owed"


def remember(state: dict, tag: list, messages: list) -> None:
    """Keep `messages` ([topic, receiver key, record], ...) in the state until delivered."""
    if messages:
        state.setdefault(FIELD, []).append([tag, [list(message) for message in messages]])


def settle(state: dict, incarnation: str, delivered_upto: int) -> list[list]:
    """Drop what this incarnation knows delivered; return what an earlier one may not have delivered.

    The returned messages leave the state: the caller sends them again and
    remembers them under a new tag of its own.
    """
    entries = state.get(FIELD)
    if not entries:
        return []
    keep, again = [], []
    for tag, messages in entries:
        if tag[0] != incarnation:
            again.extend(messages)
        elif tag[1] > delivered_upto:
            keep.append([tag, messages])
    if keep:
        state[FIELD] = keep
    else:
        state.pop(FIELD, None)
    return again


def owes(state: dict) -> bool:
    return bool(state.get(FIELD))
