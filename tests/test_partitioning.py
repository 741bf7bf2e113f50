"""The worker's cached key partitioner agrees with Kafka's default partitioner."""
from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.runtime.partitioning import KeyPartitioner, murmur2


@settings(max_examples=300)
@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=50), st.integers(1, 64))
def test_same_partition_as_the_default_partitioner_warm_or_cold(keys, partitions):
    partition_of = KeyPartitioner(partitions, max_keys=7)  # small: the cache is cleared along the way
    default = DefaultPartitioner()
    every = list(range(partitions))
    for key in keys + keys:  # the second pass hits the cache
        assert partition_of(key) == default(key, every, every)


@settings(max_examples=1_000)
@given(st.binary(max_size=200))
def test_murmur2_equals_aiokafkas(key):
    """Every length matters: 0-3 trailing bytes follow the words."""
    assert murmur2(key) == aiokafka_murmur2(key)


def test_murmur2_of_known_keys():
    """The Java client's values, as librdkafka's unit test lists them (rdmurmur2.c)."""
    assert [murmur2(key) for key in (b"kafka", b"giberish123456789", b"")] == [0xD067CF64, 0x8F552B0C, 0x106E08D9]


def test_the_cache_stays_bounded():
    partition_of = KeyPartitioner(4, max_keys=100)
    for n in range(1_000):
        partition_of(f"user-{n}".encode())
    assert len(partition_of._cache) <= 100


def test_the_end_of_run_marks_a_stage_waits_for_follow_from_the_declared_graph():
    """One per source topic, and one from every partition of every stage sending to an internal topic read."""
    from datasets.storj import stages as storj_stages
    from datasets.ucn import stages as ucn_stages
    from stream.runtime.stages import expected_marks

    stages = [*storj_stages.STAGES, *ucn_stages.STAGES]  # both datasets in one worker: names repeat
    marks = {(stage.dataset, stage.name): n for stage, n in expected_marks(stages, 4).items()}
    assert marks == {("storj", "project"): 3, ("storj", "node"): 3, ("storj", "account"): 1,
                     ("storj", "operator"): 2 * 4, ("storj", "user"): 3 * 4,
                     ("ucn", "device"): 8, ("ucn", "user"): 1 + 4}


def test_without_the_native_hash_the_partitioner_falls_back_to_aiokafkas(monkeypatch):
    """A platform without murmurhash2's wheel still starts, with the same partitions."""
    import importlib
    import sys

    from stream.runtime import partitioning

    monkeypatch.setitem(sys.modules, "murmurhash2", None)  # `import murmurhash2` raises ImportError
    try:
        fallback = importlib.reload(partitioning)
        assert fallback.murmur2 is aiokafka_murmur2
        assert fallback.KeyPartitioner(16)(b"kafka") == (0xD067CF64 & 0x7FFFFFFF) % 16
    finally:
        monkeypatch.undo()
        native = importlib.reload(partitioning)
    assert native.murmur2 is not aiokafka_murmur2 and native.murmur2(b"kafka") == 0xD067CF64
