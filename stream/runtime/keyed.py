"""The keyed runner: a stage whose work is one key of one state table at a time.

Every stage of the datasets folds each key's items into that key's state in
one table, and the steps around the fold are always the same: get the key's
state or make a new one, give the change a new snapshot version, apply, put
the state back (the store tags it with its partition and writes its
changelog record). `KeyedStage` owns those steps; a stage declares its table,
its state type and how items apply (`apply_key`), and, if the end of a run
closes something, what it does to one key (`end_key`).

The table's codec follows from the state type (`state_codec`, which the
worker gives the table): the store hands out `Entry`s, whose `state` is the
logic's and whose other fields (`version`, `owed` ...) are the runtime's.
"""
from __future__ import annotations

from typing import Any

from stream.logic.run_end_index import RunEndIndex
from stream.runtime.context import StageContext
from stream.runtime.records import TypedRecords
from stream.runtime.sink import next_version
from stream.runtime.stages import Outbox, Stage
from stream.runtime.store import Entry, StructCodec


class KeyedStage(Stage):
    """Subclasses set `state_table` and `state_type` and implement `apply_key`.

    `versioned`: each change of a key is a new snapshot (Entry.version moves before `apply_key`, which
    writes the snapshot). `end_key`: what the end of a run closes. `record_type`: the internal topics it
    reads carry typed records (a msgspec Struct, or a union of them tagged apart), decoded straight into
    it. `new_state` when a new key's state is not the type's defaults."""

    state_table: str  # the table of each key's state; also where the stage keeps its end-of-run marks
    state_type: Any  # a msgspec Struct
    versioned = False
    tracks_snapshot = False  # whether the stage notes that a key has a snapshot in Redis (Entry.snapshot)
    record_type: Any = None
    state_codec: StructCodec  # made from the above: how the table's states make records

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        table = getattr(cls, "state_table", None)
        if table is None:  # an abstract stage between KeyedStage and the concrete ones
            return
        if getattr(cls, "state_type", None) is None:
            raise TypeError(f"{cls.__name__}: a keyed stage declares its state_type")
        # the stores the runner's other walks visit follow from what the stage does
        cls.marks_table = table
        cls.run_end_store = table if cls.end_key is not KeyedStage.end_key else None
        cls.snapshot_store = table if cls.write_snapshot is not Stage.write_snapshot else None
        cls.state_codec = StructCodec(cls.state_type, version=cls.versioned, snapshot=cls.tracks_snapshot)

    def __init__(self, context: StageContext):
        super().__init__(context)
        self._records = TypedRecords(self.record_type, f"{self.dataset} record") if self.record_type else None
        # `notes_run_end_keys`: the keys whose state `run_end_changes` says the end of a run may change
        self._run_end_index = RunEndIndex() if self.notes_run_end_keys else None

    def decode(self, topic: str, value: bytes):
        """Records of another stage straight into `record_type`; source rows as every source's."""
        if self._records is not None and not self.is_source(topic):
            return self._records.decode(value)
        return super().decode(topic, value)

    def new_state(self, key: str) -> Any:
        """The state of a key seen for the first time."""
        return self.state_type()

    def beside(self, partition: int, entry: Entry):
        """The entries kept beside the key's state in the stage's table (stream.runtime.store.Beside)."""
        return self.context.beside(self.state_table, partition, entry)

    def apply_key(self, partition: int, topic: str, key: str, entry, items: list, outbox: Outbox) -> None:
        """Fold one key's items of a batch into `entry` (what the table holds for the key) and queue what to
        send or write; the runner puts the entry back after."""
        raise NotImplementedError

    def after_put(self, partition: int, key: str, entry) -> None:
        """Called once the key's state is written (a write past the record limit raises first), so that what
        the stage keeps in memory about its keys follows only states that were written."""

    def end_key(self, partition: int, key: str, entry, outbox: Outbox, again: bool) -> bool:
        """What the end of a run does to one key (see Stage.end_run_for); True when it changed the entry."""
        return False

    def run_end_changes(self, entry, again: bool) -> bool:
        """Whether `end_key` may change this entry (see Stage.run_end_changes)."""
        return True

    async def apply(self, partition: int, topic: str, groups: dict[str, list], outbox: Outbox) -> None:
        store = self.context.store(self.state_table)
        index = self._run_end_index
        if index is not None:
            index.follow(self.context.generation)
            if not index.looked_at(partition):  # before this batch writes: whether the partition holds state
                index.first_look(partition, next(store.items_in_partition(partition), None) is not None)
        for key, items in groups.items():
            entry = store.get(partition, key) or Entry(self.new_state(key))
            if self.versioned:
                entry.version = next_version(entry.version)
            self.apply_key(partition, topic, key, entry, items, outbox)
            store.put(partition, key, entry)
            if index is not None:
                index.written(partition, key, self.run_end_changes(entry, False))
            self.after_put(partition, key, entry)

    def run_end_keys(self, partition: int) -> list[str] | None:
        index = self._run_end_index
        if index is None:
            return None
        index.follow(self.context.generation)
        return index.to_visit(partition)

    def run_end_visited(self, partition: int, left: set[str]) -> None:
        if self._run_end_index is not None:
            self._run_end_index.visited(self.context.generation, partition, left)

    def end_run_for(self, partition: int, key: str, entry, outbox: Outbox, again: bool = False) -> None:
        version = entry.version if self.versioned else None
        if version is not None:
            entry.version = next_version(version)
        if self.end_key(partition, key, entry, outbox, again):
            self.context.store(self.state_table).put(partition, key, entry)
        elif version is not None:
            entry.version = version  # unchanged: the entry stays what the table holds
