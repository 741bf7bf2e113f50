"""The ucn stages: devices (key devid) -> users (key user id), see stream.logic.ucn."""
from __future__ import annotations

import time

from contract.timeutil import format_ts
from stream.logic import owed, ucn
from stream.logic.dedup import BlockedIntIds
from stream.logic.progress import PartitionProgress
from stream.runtime.sink import next_version
from stream.runtime.stages import Outbox, Stage

SEEN_STORE = "ucn_seen"  # the ids each device applied, per table (stream.logic.dedup)
OWED_STORE = "ucn_owed"  # large owed records (stream.logic.owed) and held rows (ucn.HeldParts), beside a state
USER_TOPIC = "ucn.internal.user"
SESSIONS_TOPIC = "ucn.sessions"


def owed_spill(runtime, partition: int, stage: str, key: str) -> owed.Spill:
    return owed.Spill(runtime.store(OWED_STORE).view(partition), f"{stage}:{key}")


DEVICE_TOPICS = ["ucn.devices", "ucn.user_devices", "ucn.devicetraffic", "ucn.deviceapptraffic", "ucn.httpreqs",
                 "ucn.httpreqs2", "ucn.dnsreqs", "ucn.locations"]


class DeviceStage(Stage):
    name, dataset = "device", "ucn"
    marks_table = "ucn_device"
    topics = DEVICE_TOPICS
    downstream = [USER_TOPIC]

    def expected_marks(self) -> int:
        return len(self.topics)

    def __init__(self, runtime):
        super().__init__(runtime)
        self._progress = PartitionProgress()
        self._generation = None

    async def apply(self, partition, topic, groups, outbox: Outbox) -> None:
        """Contributions are deltas: they are owed (stream.logic.owed) until delivered. After them, every
        user partition hears how far this table's partition has come (a progress mark): a device that
        sends nothing then holds no user's event time back (stream.logic.channel_clock)."""
        table = topic.split(".", 1)[1]
        store = self.runtime.store("ucn_device")
        relay = self.runtime.relay
        delivered_upto = relay.delivered_upto
        now_s = time.time()
        self._know_holding_devices(partition, now_s)
        for key, rows in groups.items():
            state = store.get(partition, key) or ucn.new_device()
            spill = owed_spill(self.runtime, partition, self.name, key)
            messages = owed.settle(state, relay.incarnation, delivered_upto, spill)  # an earlier worker's, maybe lost
            before = state["events"]
            ucn.apply_device_rows(state, table, rows, BlockedIntIds(self.runtime.store(SEEN_STORE).view(partition), key))
            held = ucn.HeldParts(self.runtime.store(OWED_STORE).view(partition), f"{self.name}:{key}")
            if state["events"] != before:
                for user, record in ucn.device_outbox(state, key, held):
                    record["src"] = table  # the user's input channel: this device's rows of this table,
                    record["sp"] = partition  # in this partition
                    messages.append([USER_TOPIC, user, record])
            self.runtime.owe(state, messages, outbox, spill)
            held.spill(state)
            if messages or state["events"] != before:
                store.put(partition, key, state)
            self._progress.holding(partition, key, ucn.oldest_held(state), now_s)
        for table_told, partition_told, ts_us in self._progress.retell(now_s):
            outbox.note_progress(USER_TOPIC, table_told, partition_told, ts_us)

    def applied_up_to(self, partition: int, topic: str, ts_us: int, outbox: Outbox) -> None:
        table = topic.split(".", 1)[1]
        if table in ucn.CHANNEL_SOURCES:
            told = self._progress.to_tell(table, partition, ts_us, time.time())
            if told is not None:
                outbox.note_progress(USER_TOPIC, table, partition, told)

    def _know_holding_devices(self, partition: int, now_s: float) -> None:
        """After a rebalance, before a partition's first batch: its devices that hold rows, from their state
        (once per partition and rebalance)."""
        if self.runtime.app.consumer_generation_id != self._generation:
            self._generation = self.runtime.app.consumer_generation_id
            self._progress.restart()
        if self._progress.knows(partition):
            return
        for key, state in self.runtime.store("ucn_device").items_in_partition(partition):
            self._progress.holding(partition, key, ucn.oldest_held(state), now_s)
        self._progress.known(partition)

    run_end_store = "ucn_device"

    async def before_run_end(self, partition) -> None:
        await self.runtime.relay.delivered()

    def end_run_for(self, partition, key, state, outbox, again=False) -> None:
        """Drop delivered contributions from the state: a device may not be touched again for a long time."""
        if not owed.owes(state):
            return
        relay = self.runtime.relay
        spill = owed_spill(self.runtime, partition, self.name, key)
        messages = owed.settle(state, relay.incarnation, relay.delivered_upto, spill)
        self.runtime.owe(state, messages, outbox, spill)
        self.runtime.store("ucn_device").put(partition, key, state)


class UserStage(Stage):
    name, dataset = "user", "ucn"
    marks_table = "ucn_user"
    topics = ["ucn.users", USER_TOPIC]

    def __init__(self, runtime):
        super().__init__(runtime)
        self._generation = None
        self._consuming_since: dict[int, float] = {}
        self._progress: dict[int, dict] = {}  # user partition -> (table, device partition) -> event time

    def _new_generation(self) -> None:
        """After a rebalance, silence counts again from when this worker consumes each partition. What it
        heard of the device partitions' progress stays: a user partition's marks only ever grow, and one
        it reads again from an earlier offset repeats records whose sequence numbers its users have
        (forgetting it left users whose device tables had no rows since waiting for nothing)."""
        generation = self.runtime.app.consumer_generation_id
        if generation != self._generation:
            self._generation, self._consuming_since = generation, {}

    def expected_marks(self) -> int:
        return 1 + self.runtime.partitions  # its users partition and every device partition

    def consuming_since(self, partition: int) -> float:
        """When this worker began consuming the partition (its first batch since the last rebalance):
        input channels' silence counts from then on (see ucn.apply_user_records)."""
        self._new_generation()
        return self._consuming_since.setdefault(partition, time.time())

    def on_progress(self, partition: int, mark: dict) -> None:
        """Only what came through this partition counts for its users: the mark follows the records the
        device stage sent here, not those it sent to other partitions."""
        self._new_generation()
        progress = self._progress.setdefault(partition, {})
        source, ts_us = (mark.get("table"), mark.get("partition")), mark.get("ts")
        if isinstance(ts_us, int) and (source not in progress or ts_us > progress[source]):
            progress[source] = ts_us

    async def apply(self, partition, topic, groups, outbox) -> None:
        store = self.runtime.store("ucn_user")
        delivered_upto = self.runtime.relay.delivered_upto
        since = self.consuming_since(partition)
        for user, items in groups.items():
            state = store.get(partition, user) or ucn.new_user(user)
            if topic == USER_TOPIC:
                closed = ucn.apply_user_records(state, items, active_since_s=since,
                                                progress=self._progress.get(partition))
            else:
                ucn.apply_user_rows(state, items)
                closed = []
            self._publish(partition, user, state, closed, outbox, delivered_upto)
            store.put(partition, user, state)

    run_end_store = "ucn_user"

    def end_run_for(self, partition, user, state, outbox, again=False) -> None:
        closed = ucn.close_at_run_end(state, again)
        if closed is not None or owed.owes(state):  # owed: sessions sent before and maybe lost
            self._publish(partition, user, state, closed or [], outbox, self.runtime.relay.delivered_upto)
            self.runtime.store("ucn_user").put(partition, user, state)

    def _publish(self, partition: int, user: str, state: dict, closed: list[dict], outbox: Outbox,
                 delivered_upto: int) -> None:
        """The snapshot is whole; closed sessions are deltas, owed until delivered (stream.logic.owed)."""
        sink, relay = self.runtime.sink, self.runtime.relay
        if state.get("user") is None:
            return  # a snapshot exists for every users row; data of others waits in the state
        spill = owed_spill(self.runtime, partition, self.name, user)
        again = owed.settle(state, relay.incarnation, delivered_upto, spill)
        if again:  # an earlier worker's sessions, maybe lost; the Redis list skips those it has
            sink.sessions("ucn", user, [record for _, _, record in again])
        if closed:
            sink.sessions("ucn", user, closed)
        messages = again + [[SESSIONS_TOPIC, user, record] for record in closed]
        self.runtime.owe(state, messages, outbox, spill)
        state["ver"] = next_version(state.get("ver", 0))
        self.write_snapshot(user, state)

    snapshot_store = "ucn_user"

    def write_snapshot(self, user: str, state: dict) -> None:
        if state.get("user") is None:
            return  # a snapshot exists for every users row
        watermark = ucn.user_watermark(state)
        self.runtime.sink.snapshot("ucn", "user", user, state["ver"], ucn.user_features(state),
                                   ucn.user_events(state), format_ts(watermark) if watermark is not None else None,
                                   late_events=ucn.user_late_events(state))


STAGES = [DeviceStage, UserStage]
TABLES = ["ucn_device", "ucn_user", SEEN_STORE, OWED_STORE]

INTERNAL_TOPICS = [USER_TOPIC, SESSIONS_TOPIC]
