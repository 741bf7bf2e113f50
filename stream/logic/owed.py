"""Records a key owes downstream, kept in the key's own state until they are known delivered.

Stages whose records are deltas (a ucn device's contribution of one batch, a
user's closed sessions) cannot be re-derived from their state after a crash:
once the state says "forwarded", a redelivered input batch is all duplicates
and produces nothing. So the records go into the state first (the transactional
outbox pattern), under a tag `[incarnation, n]` of the worker that made them.
They are the runtime's, not the logic's: the functions here take what holds
a key's owed list (`Owes`: the store's `Entry`, written under the key "owed"
of the key's record):

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

from functools import partial
from typing import Protocol

import msgspec
import orjson

from contract.wire import struct_json

from .keyvalue import KeyValue

INLINE_BYTES = 16 * 1024
_json = partial(orjson.dumps, default=struct_json)  # records may be typed (msgspec Structs)


class Owes(Protocol):
    """What holds a key's owed records: [[tag, messages or the number of entries beside], ...], or None."""

    owed: list | None


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
                self._put(tag, number, chunk)
                chunk, size, number = [], 0, number + 1
            chunk.append(message)
            size += message_size
        self._put(tag, number, chunk)
        return number + 1

    def _put(self, tag: list, number: int, chunk: list) -> None:
        """An entry beside the state holds plain JSON values: typed records go in as their JSON's."""
        self.store.put(self._name(tag, number), {"m": msgspec.to_builtins(chunk)})

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


def remember(holder: Owes, tag: list, messages: list, spill: Spill | None = None) -> None:
    """Keep `messages` ([topic, receiver key, record], ...) with the key's state until delivered: in its
    owed list, or beside the state when there is a `spill` and they would take the records owed in the
    list past INLINE_BYTES (the list then keeps the tag and the number of entries they fill)."""
    if not messages:
        return
    kept: list | int = [list(message) for message in messages]  # or the number of entries beside
    if spill is not None:
        sizes = [len(_json(message)) for message in messages]
        inline = [entry for entry in holder.owed or () if not isinstance(entry[1], int)]
        if sum(sizes) + (len(_json(inline)) if inline else 0) > INLINE_BYTES:
            kept = spill.put(tag, [list(message) for message in messages], sizes)
    if holder.owed is None:
        holder.owed = []
    holder.owed.append([tag, kept])


def settle(holder: Owes, incarnation: str, delivered_upto: int, spill: Spill | None = None) -> list[list]:
    """Drop what this incarnation knows delivered; return what an earlier one may not have delivered.

    The returned messages leave the owed list: the caller sends them again and
    remembers them under a new tag of its own.
    """
    entries = holder.owed
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
    holder.owed = keep or None
    return again


def owes(holder: Owes) -> bool:
    return bool(holder.owed)
