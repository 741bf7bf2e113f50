"""The ucn stages: devices (key devid) -> users (key user id), see stream.logic.ucn."""
from __future__ import annotations

import time

from contract.timeutil import format_ts
from stream.logic import owed, ucn
from stream.runtime.sink import next_version
from stream.runtime.stages import Outbox, Stage

USER_TOPIC = "ucn.internal.user"
SESSIONS_TOPIC = "ucn.sessions"
DEVICE_TOPICS = ["ucn.devices", "ucn.user_devices", "ucn.devicetraffic", "ucn.deviceapptraffic", "ucn.httpreqs",
                 "ucn.httpreqs2", "ucn.dnsreqs", "ucn.locations"]


class DeviceStage(Stage):
    name, dataset = "device", "ucn"
    marks_table = "ucn_device"
    topics = DEVICE_TOPICS
    downstream = [USER_TOPIC]

    def expected_marks(self) -> int:
        return len(self.topics)

    async def apply(self, partition, topic, groups, outbox: Outbox) -> None:
        """Contributions are deltas: they are owed (stream.logic.owed) until delivered."""
        table = topic.split(".", 1)[1]
        store = self.runtime.store("ucn_device")
        relay = self.runtime.relay
        delivered_upto = relay.delivered_upto
        for key, rows in groups.items():
            state = store.get(partition, key) or ucn.new_device()
            messages = owed.settle(state, relay.incarnation, delivered_upto)  # an earlier worker's, maybe lost
            before = state["events"]
            ucn.apply_device_rows(state, table, rows)
            if state["events"] != before:
                for user, record in ucn.device_outbox(state, key):
                    record["src"] = table  # the user's input channel: this device's rows of this table
                    messages.append([USER_TOPIC, user, record])
            self.runtime.owe(state, messages, outbox)
            if messages or state["events"] != before:
                store.put(partition, key, state)

    run_end_store = "ucn_device"

    async def before_run_end(self, partition) -> None:
        await self.runtime.relay.delivered()

    def end_run_for(self, partition, key, state, outbox, again=False) -> None:
        """Drop delivered contributions from the state: a device may not be touched again for a long time."""
        if not owed.owes(state):
            return
        relay = self.runtime.relay
        messages = owed.settle(state, relay.incarnation, relay.delivered_upto)
        self.runtime.owe(state, messages, outbox)
        self.runtime.store("ucn_device").put(partition, key, state)


class UserStage(Stage):
    name, dataset = "user", "ucn"
    marks_table = "ucn_user"
    topics = ["ucn.users", USER_TOPIC]

    def __init__(self, runtime):
        super().__init__(runtime)
        self._generation = None
        self._consuming_since: dict[int, float] = {}

    def expected_marks(self) -> int:
        return 1 + self.runtime.partitions  # its users partition and every device partition

    def consuming_since(self, partition: int) -> float:
        """When this worker began consuming the partition (its first batch since the last rebalance):
        input channels' silence counts from then on (see ucn.apply_user_records)."""
        generation = self.runtime.app.consumer_generation_id
        if generation != self._generation:
            self._generation, self._consuming_since = generation, {}
        return self._consuming_since.setdefault(partition, time.time())

    async def apply(self, partition, topic, groups, outbox) -> None:
        store = self.runtime.store("ucn_user")
        delivered_upto = self.runtime.relay.delivered_upto
        since = self.consuming_since(partition)
        for user, items in groups.items():
            state = store.get(partition, user) or ucn.new_user(user)
            if topic == USER_TOPIC:
                closed = ucn.apply_user_records(state, items, active_since_s=since)
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
        again = owed.settle(state, relay.incarnation, delivered_upto)
        if again:  # an earlier worker's sessions, maybe lost; the Redis list skips those it has
            sink.sessions("ucn", user, [record for _, _, record in again])
        if closed:
            sink.sessions("ucn", user, closed)
        messages = again + [[SESSIONS_TOPIC, user, record] for record in closed]
        self.runtime.owe(state, messages, outbox)
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
TABLES = ["ucn_device", "ucn_user"]
INTERNAL_TOPICS = [USER_TOPIC, SESSIONS_TOPIC]
