"""Kafka's default partition of a key, computed once per key.

The worker sends to the same users and operators batch after batch; the
producer's own partitioner runs murmur2 in pure Python for every record
(~3 % of the worker's time on a replay). Same function as the Java client,
aiokafka and librdkafka's `murmur2_random`, so a key lands where any other
producer would put it.
"""
from __future__ import annotations

import struct
from functools import lru_cache

_M = 0x5BD1E995  # murmur2's mixing constant
_MASK = 0xFFFFFFFF


@lru_cache(maxsize=64)
def _words(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}I")


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), as aiokafka's, which reads the
    key byte by byte: this reads its 4-byte words in one call (~3x faster on a 36-byte id)."""
    length = len(data)
    h = 0x9747B28C ^ length
    for k in _words(length >> 2).unpack_from(data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    tail = length & 3
    if tail:
        base = length - tail
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h = ((h ^ data[base]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


class KeyPartitioner:
    def __init__(self, partitions: int, max_keys: int = 200_000):
        self.partitions = partitions
        self.max_keys = max_keys
        self._cache: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        partition = self._cache.get(key)
        if partition is None:
            if len(self._cache) >= self.max_keys:  # bounded: a long-lived worker sees ever new keys
                self._cache.clear()
            partition = self._cache[key] = (murmur2(key) & 0x7FFFFFFF) % self.partitions
        return partition
