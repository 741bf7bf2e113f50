"""What a stage may reach besides its pure logic: the narrow side of the runtime.

A stage (stream.runtime.stages.Stage) folds rows into state and says what to
send; everything else -- the producer, offsets, dead letters, units of work,
end-of-run marks -- belongs to the runner and the worker's Runtime. So a stage
gets a `StageContext` bound to its dataset, not the Runtime: its stores and
the entries beside a state, the records it owes (stream.logic.owed), the
snapshots and session lists it writes to Redis, and where delivery and the
consumer group stand.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream.logic import owed
    from stream.runtime.stages import Outbox
    from stream.runtime.store import Beside, StateStore
    from stream.runtime.worker import Runtime


class StageContext:
    __slots__ = ("_runtime", "dataset", "partitions")

    def __init__(self, runtime: Runtime, dataset: str):
        self._runtime = runtime
        self.dataset = dataset
        self.partitions: int = runtime.partitions  # of every topic and state table

    # state

    def store(self, table: str) -> StateStore:
        """A keyed-state table of the worker (one of the dataset's `state_tables`)."""
        return self._runtime.store(table)

    def beside(self, table: str, partition: int, state: Any) -> Beside:
        """The entries kept beside a key's `state` in `table` (stream.runtime.store.Beside)."""
        return self._runtime.beside(table, partition, state)

    # records that wait for their state write (stream.logic.owed, stream.runtime.relay)

    def owe(self, entry: owed.Owes, messages: list, outbox: Outbox, spill: owed.Spill | None = None) -> None:
        """Keep delta records with the key's state (in its `entry`, what the store handed out: its `owed`);
        they are sent once its write is delivered."""
        self._runtime.owe(entry, messages, outbox, spill)

    @property
    def incarnation(self) -> str:
        """This worker process: the owed records it tags are its own."""
        return self._runtime.relay.incarnation

    @property
    def delivered_upto(self) -> int:
        """Every owed record this process tagged up to this number is delivered."""
        return self._runtime.relay.delivered_upto

    async def delivered(self) -> None:
        """Wait until every record owed so far is delivered."""
        await self._runtime.relay.delivered()

    @property
    def generation(self) -> int:
        """The consumer group generation: it changes when partitions move."""
        return self._runtime.app.consumer_generation_id

    # Redis

    def snapshot(self, entity: str, entity_id: str, version: int, features: dict | None, events: int,
                 watermark: str | None, **extra: Any) -> None:
        """Queue an entity's snapshot (None features: the entity is gone) for Redis (stream.runtime.sink)."""
        self._runtime.sink.snapshot(self.dataset, entity, entity_id, version, features, events, watermark, **extra)

    def sessions(self, entity_id: str, records: list[dict]) -> None:
        """Queue closed sessions for an entity's session list in Redis."""
        self._runtime.sink.sessions(self.dataset, entity_id, records)
