"""Keyed state in a changelog-backed Faust table, one write per key per batch.

Values live in the table as plain dicts; the changelog record is the dict as
JSON (orjson), sent to the partition the key came from, so that recovery puts
it back on the worker that owns that partition.

The record goes through `send` (the runtime's producer queue), not Faust's
`send_changelog`: that one parks it in Faust's producer buffer, which the
flush before an offset commit may give up on after 0.1 s, so an input offset
could be committed while its state write was still unsent; a crash then lost
the write for good.
"""
from __future__ import annotations

import orjson

PARTITION_FIELD = "_p"


class StateStore:
    def __init__(self, table, send):
        self.table = table
        self.topic = table.changelog_topic.get_topic_name()
        self._send = send  # send(topic, key, value, partition)

    def get(self, key: str):
        data = self.table.data
        raw = key.encode()
        value = data.get(raw)
        if isinstance(value, (bytes, bytearray)):  # recovered from the changelog
            value = orjson.loads(value)
            data[raw] = value
        return value

    def put(self, partition: int, key: str, state: dict) -> None:
        state[PARTITION_FIELD] = partition
        raw = key.encode()
        self.table.data[raw] = state
        self._send(self.topic, key, orjson.dumps(state), partition)

    def items_in_partition(self, partition: int):
        for raw in list(self.table.data.keys()):
            key = raw.decode() if isinstance(raw, (bytes, bytearray)) else str(raw)
            if key.startswith("__"):  # bookkeeping (end-of-run marks), not an entity
                continue
            state = self.get(key)
            if state is not None and state.get(PARTITION_FIELD) == partition:
                yield key, state
