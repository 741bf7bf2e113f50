"""The ucn stages: devices (key devid) -> users (key user id), see datasets.ucn.logic.

Their states are typed (datasets.ucn.logic's `DeviceState`, `UserState`: each stage's `state_type`),
handed out by the store as `store.Entry`s, which also hold what the stages owe (stream.logic.owed); the
records the device stage sends the user stage are typed too (`DeviceRecord`, read by `TypedRecords`)."""
from __future__ import annotations

import time

from contract.timeutil import format_ts
from stream.logic import owed
from stream.logic.dedup import BlockedIntIds
from stream.logic.progress import PartitionProgress
from stream.logic.source_clock import SourceClock
from stream.runtime.context import StageContext
from stream.runtime.keyed import KeyedStage
from stream.runtime.stages import Outbox
from stream.runtime.store import Entry

from . import logic as ucn

USER_TOPIC = "ucn.internal.user"
SESSIONS_TOPIC = "ucn.sessions"


def owed_spill(stage: KeyedStage, partition: int, key: str, entry: Entry) -> owed.Spill:
    """Large owed records (stream.logic.owed), beside the key's state."""
    return owed.Spill(stage.beside(partition, entry), f"{stage.name}:{key}")


DEVICE_TOPICS = ["ucn.devices", "ucn.user_devices", "ucn.devicetraffic", "ucn.deviceapptraffic", "ucn.httpreqs",
                 "ucn.httpreqs2", "ucn.dnsreqs", "ucn.locations"]


class DeviceStage(KeyedStage):
    name, dataset = "device", "ucn"
    state_table, state_type = "ucn_device", ucn.DeviceState
    topics = DEVICE_TOPICS
    downstream = [USER_TOPIC]
    aligned_topics = [f"ucn.{table}" for table in ucn.SESSION_SOURCES]  # the users' session clock

    def __init__(self, context: StageContext):
        super().__init__(context)
        self._progress = PartitionProgress()
        self._generation = None
        self._now_s = 0.0  # when the batch being applied began

    def new_state(self, key: str) -> ucn.DeviceState:
        return ucn.new_device()

    async def apply(self, partition, topic, groups, outbox: Outbox) -> None:
        """Contributions are deltas: they are owed (stream.logic.owed) until delivered. After them, every
        user partition hears how far this table's partition has come (a progress mark), so that users
        close sessions no row of any device can still reach (stream.logic.source_clock)."""
        self._now_s = now_s = time.time()
        self._start_partition(partition, outbox, now_s)
        await super().apply(partition, topic, groups, outbox)
        self._retell(outbox, now_s)

    def apply_key(self, partition, topic, key, entry, rows, outbox) -> None:
        state = entry.state
        messages, spill = self._settle(partition, key, entry)
        before = state.events
        beside = self.beside(partition, entry)
        ucn.apply_device_rows(state, topic.split(".", 1)[1], rows, BlockedIntIds(beside, key))
        held = ucn.HeldParts(beside, f"{self.name}:{key}")
        if state.events != before:
            for user, record in ucn.device_outbox(state, key, held):
                messages.append([USER_TOPIC, user, record])
        self.context.owe(entry, messages, outbox, spill)
        held.spill(state)  # before the runner's put: what it wrote beside the state goes after it (store.Beside)

    def after_put(self, partition, key, entry) -> None:
        self._progress.holding(partition, key, ucn.oldest_held(entry.state), self._now_s)

    def _settle(self, partition: int, key: str, entry: Entry[ucn.DeviceState]):
        """What the device still owes from an earlier worker (maybe lost), to send again, and its spill."""
        context = self.context
        spill = owed_spill(self, partition, key, entry)
        return owed.settle(entry, context.incarnation, context.delivered_upto, spill), spill

    def _retell(self, outbox: Outbox, now_s: float) -> None:
        for table, partition, ts_us in self._progress.retell(now_s):
            outbox.note_progress(USER_TOPIC, table, partition, ts_us, self._progress.replaying(partition))

    def applied_up_to(self, partition: int, topic: str, ts_us: int, outbox: Outbox) -> None:
        table = topic.split(".", 1)[1]
        if table in ucn.SESSION_SOURCES:
            told = self._progress.to_tell(table, partition, ts_us, time.time())
            if told is not None:
                outbox.note_progress(USER_TOPIC, table, partition, told, self._progress.replaying(partition))

    def on_progress(self, partition: int, topic: str, mark: dict, outbox: Outbox) -> None:
        """The replay's progress mark: this partition of the table has every row of the run up to its time
        (and, for a reference table, every row). Sessions may close that far, and a device still unlinked
        once both reference tables are through will not be linked by this run (stream.logic.progress)."""
        run, ts_us = mark.get("run"), mark.get("ts")
        if not isinstance(run, str):
            return
        now_s = time.time()
        self._start_partition(partition, outbox, now_s)
        self._progress.replayed(topic.split(".", 1)[1], partition, ts_us if isinstance(ts_us, int) else None, run)
        self._retell(outbox, now_s)

    def _start_partition(self, partition: int, outbox: Outbox, now_s: float) -> None:
        """After a rebalance or restart, before anything of a partition goes on: what its devices still owe
        from an earlier worker is sent again ahead of any progress mark (else a user could close the
        sessions it belongs to first), and its devices that hold rows are told to the progress (once per
        partition and rebalance)."""
        if self.context.generation != self._generation:
            self._generation = self.context.generation
            self._progress.restart()
        if self._progress.knows(partition):
            return
        store = self.context.store(self.state_table)
        for key, entry in store.items_in_partition(partition):
            if owed.owes(entry):
                messages, spill = self._settle(partition, key, entry)
                self.context.owe(entry, messages, outbox, spill)
                store.put(partition, key, entry)
            self._progress.holding(partition, key, ucn.oldest_held(entry.state), now_s)
        self._progress.known(partition)

    async def before_run_end(self, partition) -> None:
        self._progress.run_ended(partition)  # from now on a live feed: its marks say so
        await self.context.delivered()

    def end_key(self, partition, key, entry, outbox, again) -> bool:
        """Drop delivered contributions from the state: a device may not be touched again for a long time."""
        if not owed.owes(entry):
            return False
        messages, spill = self._settle(partition, key, entry)
        self.context.owe(entry, messages, outbox, spill)
        return True


class UserStage(KeyedStage):
    name, dataset = "user", "ucn"
    state_table, state_type = "ucn_user", ucn.UserState
    topics = ["ucn.users", USER_TOPIC]
    record_type = ucn.DeviceRecord
    versioned = True

    def __init__(self, context: StageContext):
        super().__init__(context)
        self._generation = None
        self._consuming_since: dict[int, float] = {}
        self._clocks: dict[int, SourceClock] = {}  # user partition -> how far the device partitions came
        self._event_time: int | None = None  # of the batch being applied
        self._delivered_upto = 0

    def new_state(self, key: str) -> ucn.UserState:
        return ucn.new_user(key)

    def _new_generation(self) -> None:
        """After a rebalance, silence counts again from when this worker consumes each partition. What it
        heard of the device partitions' progress stays: a user partition's marks only ever grow, and one
        it reads again from an earlier offset repeats records whose sequence numbers its users have."""
        generation = self.context.generation
        if generation != self._generation:
            self._generation, self._consuming_since = generation, {}

    def consuming_since(self, partition: int) -> float:
        """When this worker began consuming the partition (its first batch since the last rebalance):
        sources' silence counts from then on (stream.logic.source_clock)."""
        self._new_generation()
        return self._consuming_since.setdefault(partition, time.time())

    def clock(self, partition: int) -> SourceClock:
        clock = self._clocks.get(partition)
        if clock is None:
            sources = [(table, p) for table in ucn.SESSION_SOURCES for p in range(self.context.partitions)]
            clock = self._clocks[partition] = SourceClock(sources)
        return clock

    def on_progress(self, partition: int, topic: str, mark: dict, outbox: Outbox) -> None:
        """Only what came through this partition counts for its users: the mark follows the records the
        device stage sent here, not those it sent to other partitions."""
        table, source, ts_us = mark.get("table"), mark.get("partition"), mark.get("ts")
        run = mark.get("run")
        if isinstance(table, str) and isinstance(source, int) and isinstance(ts_us, int):
            self.consuming_since(partition)
            self.clock(partition).hear(table, source, ts_us, time.time(), run if isinstance(run, str) else None)

    async def apply(self, partition, topic, groups, outbox) -> None:
        self._delivered_upto = self.context.delivered_upto
        self._event_time = self.clock(partition).event_time(time.time(), self.consuming_since(partition))
        await super().apply(partition, topic, groups, outbox)

    def apply_key(self, partition, topic, user, entry, items, outbox) -> None:
        if topic == USER_TOPIC:
            closed = ucn.apply_user_records(entry.state, items, self._event_time)
        else:
            ucn.apply_user_rows(entry.state, items)
            closed = []
        self._publish(partition, user, entry, closed, outbox, self._delivered_upto)

    async def before_run_end(self, partition) -> None:
        self.clock(partition).run_ended()  # what comes next is a live feed

    def end_key(self, partition, user, entry, outbox, again) -> bool:
        closed = ucn.close_at_run_end(entry.state, again)
        if closed is None and not owed.owes(entry):  # owed: sessions sent before and maybe lost
            return False
        self._publish(partition, user, entry, closed or [], outbox, self.context.delivered_upto)
        return True

    def _publish(self, partition: int, user: str, entry: Entry[ucn.UserState], closed: list[dict], outbox: Outbox,
                 delivered_upto: int) -> None:
        """The snapshot is whole; closed sessions are deltas, owed until delivered (stream.logic.owed)."""
        context = self.context
        if entry.state.users_row is None:
            return  # a snapshot exists for every users row; data of others waits in the state
        spill = owed_spill(self, partition, user, entry)
        again = owed.settle(entry, context.incarnation, delivered_upto, spill)
        if again:  # an earlier worker's sessions, maybe lost; the Redis list skips those it has
            context.sessions(user, [record for _, _, record in again])
        if closed:
            context.sessions(user, closed)
        messages = again + [[SESSIONS_TOPIC, user, record] for record in closed]
        self.context.owe(entry, messages, outbox, spill)
        self.write_snapshot(user, entry)  # its version moved with the change (KeyedStage.versioned)

    def write_snapshot(self, user: str, entry: Entry[ucn.UserState]) -> None:
        state = entry.state
        if state.users_row is None:
            return  # a snapshot exists for every users row
        watermark = ucn.user_watermark(state)
        self.context.snapshot("user", user, entry.version, ucn.user_features(state),
                              ucn.user_events(state), format_ts(watermark) if watermark is not None else None,
                              late_events=ucn.user_late_events(state))


STAGES = (DeviceStage, UserStage)
STATE_TABLES = tuple(stage.state_table for stage in STAGES)
INTERNAL_TOPICS = (USER_TOPIC, SESSIONS_TOPIC)
