"""Which keys of a partition the end of a run may change, kept as the keys are written.

The end of a replay closes what is still open (a storj project's usage
sessions). Found by walking every key of the partition, that reads and
decodes the whole table from disk to change a few keys. A stage that says
which states the end would change (`run_end_changes`) notes those keys as it
writes them, and the end visits only them.

The notes are a hint that may say too much, never too little:

* a key is noted when a written state may change at the end, and forgotten
  only by a visit of the end of a run (a write that a failed batch takes back
  may leave a key noted: it is visited for nothing);
* a partition's notes are known only when they were started on a partition
  with no state (a worker's first look at it) or rebuilt by a walk of every
  key; after a restart or a rebalance, or past MAX_KEYS, the end walks every
  key again, and that walk starts them anew.

Pure: the runtime asks and tells; nothing here knows Kafka or a store.
"""
from __future__ import annotations

MAX_KEYS = 100_000  # per partition; past it, memory stays bounded and the end walks every key


class RunEndIndex:
    """Per partition, the keys to visit at the end of a run, or None when not known (walk them all)."""

    def __init__(self, max_keys: int = MAX_KEYS):
        self.max_keys = max_keys
        self._keys: dict[int, set[str] | None] = {}  # partition -> keys, None: not known
        self._generation: object = None

    def follow(self, generation: object) -> None:
        """Partitions moved (a new consumer generation): what was known of any may be wrong now."""
        if generation != self._generation:
            self._generation = generation
            self._keys.clear()

    def looked_at(self, partition: int) -> bool:
        return partition in self._keys

    def first_look(self, partition: int, has_state: bool) -> None:
        """The first write to `partition` since it came: its notes start empty when it holds no state."""
        self._keys[partition] = None if has_state else set()

    def written(self, partition: int, key: str, may_change_at_end: bool) -> None:
        keys = self._keys.get(partition)
        if keys is None or not may_change_at_end:
            return
        keys.add(key)
        if len(keys) > self.max_keys:
            self._keys[partition] = None

    def to_visit(self, partition: int) -> list[str] | None:
        """The keys the end of a run visits (in order), or None: every key of the partition."""
        keys = self._keys.get(partition)
        return None if keys is None else sorted(keys)

    def visited(self, generation: object, partition: int, left: set[str]) -> None:
        """After the end of a run, which visited every key it noted, or every key of the partition: `left`,
        those it may still change (a unit of work that failed) are all the notes there are. Nothing is
        learnt when partitions moved meanwhile."""
        if generation == self._generation:
            self._keys[partition] = set(left) if len(left) <= self.max_keys else None
