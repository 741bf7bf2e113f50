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

Owed records of one batch can be large (a replay message carries thousands of
one device's rows; an end of run closes many sessions at once). Past
INLINE_BYTES they are kept beside the state, in an entry of their own
(`Spill`), and the state keeps only their tag: the key's record stays small,
and the entry is deleted once the records are delivered.
"""
from __future__ import annotations

import orjson

from .keyvalue import KeyValue

FIELD = "owed"
INLINE_BYTES = 16 * 1024


class Spill:
    """One key's owed records kept beside its state: per tag, entries of about INLINE_BYTES each."""

    def __init__(self, store: KeyValue, entity: str):
        self.store, self.entity = store, entity

    def _name(self, tag: list, number: int) -> str:
        return f"o{tag[0]}.{tag[1]}.{number}|{self.entity}"

    def put(self, tag: list, messages: list, sizes: list[int]) -> int:
        """Store the messages in entries of about INLINE_BYTES; return how many."""
        chunk: list = []
        size = number = 0
        for message, message_size in zip(messages, sizes):
            if chunk and size + message_size > INLINE_BYTES:
                self.store.put(self._name(tag, number), {"m": chunk})
                chunk, size, number = [], 0, number + 1
            chunk.append(message)
            size += message_size
        self.store.put(self._name(tag, number), {"m": chunk})
        return number + 1

    def take(self, tag: list, entries: int) -> list:
        messages: list = []
        for number in range(entries):
            entry = self.store.get(self._name(tag, number))
            self.store.delete(self._name(tag, number))
            messages += entry["m"] if entry else []
        return messages

    def drop(self, tag: list, entries: int) -> None:
        for number in range(entries):
            self.store.delete(self._name(tag, number))


def remember(state: dict, tag: list, messages: list, spill: Spill | None = None) -> None:
    """Keep `messages` ([topic, receiver key, record], ...) with the state until delivered: in it, or
    beside it when there is a `spill` and they would take the records owed in the state past
    INLINE_BYTES (the state then keeps the tag and the number of entries they fill)."""
    if not messages:
        return
    kept: list | int = [list(message) for message in messages]  # or the number of entries beside
    if spill is not None:
        sizes = [len(orjson.dumps(message)) for message in messages]
        inline = [entry for entry in state.get(FIELD, ()) if not isinstance(entry[1], int)]
        if sum(sizes) + (len(orjson.dumps(inline)) if inline else 0) > INLINE_BYTES:
            kept = spill.put(tag, [list(message) for message in messages], sizes)
    state.setdefault(FIELD, []).append([tag, kept])


def settle(state: dict, incarnation: str, delivered_upto: int, spill: Spill | None = None) -> list[list]:
    """Drop what this incarnation knows delivered; return what an earlier one may not have delivered.

    The returned messages leave the state: the caller sends them again and
    remembers them under a new tag of its own.
    """
    entries = state.get(FIELD)
    if not entries:
        return []
    keep: list = []
    again: list = []
    for tag, messages in entries:
        beside = spill if isinstance(messages, int) else None  # messages: the number of entries beside
        if isinstance(messages, int) and beside is None:
            raise ValueError("owed records beside a state need the Spill that keeps them")
        if tag[0] != incarnation:
            again.extend(beside.take(tag, messages) if beside is not None else messages)
        elif tag[1] > delivered_upto:
            keep.append([tag, messages])
        elif beside is not None:
            beside.drop(tag, messages)
    if keep:
        state[FIELD] = keep
    else:
        state.pop(FIELD, None)
    return again


def owes(state: dict) -> bool:
    return bool(state.get(FIELD))
