"""Kafka's default partition of a key, computed once per key.

The worker sends to the same users and operators batch after batch; the
producer's own partitioner runs murmur2 in pure Python for every record
(~3 % of the worker's time on a replay). Same function as the Java client,
aiokafka and librdkafka's `murmur2_random`, so a key lands where any other
producer would put it. A key seen for the first time (every source row's key
is checked against the partition it came from) is hashed in native code: the
word-by-word Python version was still ~3 % of the worker's main thread on a
storj replay, where most keys are seen once or twice.
"""
from __future__ import annotations

KAFKA_SEED = 0x9747B28C  # the seed Kafka's murmur2 starts from

try:
    from murmurhash2 import murmurhash2
except ImportError:  # a platform without its wheel: aiokafka's pure-Python one, the same values, ~40x slower
    from aiokafka.partitioner import murmur2
else:
    def murmur2(data: bytes) -> int:
        """Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`, as aiokafka's and kafka-python's):
        MurmurHash2 with Kafka's seed, in native code (0.11 us on a 36-byte id; aiokafka's pure Python, 4-5)."""
        return murmurhash2(data, KAFKA_SEED)


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
