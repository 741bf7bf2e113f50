"""The part of a state store the pure logic may use for what it keeps beside a key's state.

Why: what grows with a key's history (applied ids, an operator's nodes, large
owed records) must not live inside the key's one value, which is rewritten
at every update and must stay under the broker's record limit. The logic
names its own entries and reads and writes them through this interface: the
runtime's changelog-backed store seen from the key's partition
(`stream.runtime.store.Beside`), or a dict in tests.
"""
from __future__ import annotations

from typing import Protocol


class KeyValue(Protocol):
    def get(self, key: str) -> dict | None: ...

    def put(self, key: str, value: dict) -> None: ...

    def delete(self, key: str) -> None: ...


class DictStore:
    """A `KeyValue` over a plain dict (tests, batch tools)."""

    def __init__(self, data: dict | None = None):
        self.data = {} if data is None else data

    def get(self, key: str) -> dict | None:
        return self.data.get(key)

    def put(self, key: str, value: dict) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)
