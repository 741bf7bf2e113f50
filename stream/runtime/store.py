"""Keyed state in a changelog-backed Faust table, one write per key per batch.

Values live in the table as plain dicts; the changelog record is the dict as
JSON (orjson), sent to the partition the key came from, so that recovery puts
it back on the worker that owns that partition.
"""
from __future__ import annotations

import orjson

PARTITION_FIELD = "_p"


class StateStore:
    def __init__(self, table):
        self.table = table

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
        self.table.send_changelog(partition, raw, orjson.dumps(state), key_serializer="raw", value_serializer="raw")

    def items_in_partition(self, partition: int):
        for raw in list(self.table.data.keys()):
            key = raw.decode() if isinstance(raw, (bytes, bytearray)) else str(raw)
            if key.startswith("__"):  # bookkeeping (end-of-run marks), not an entity
                continue
            state = self.get(key)
            if state is not None and state.get(PARTITION_FIELD) == partition:
                yield key, state
