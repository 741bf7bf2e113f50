"""What `fsp bench` measures besides rates: the worker's state size, Redis snapshot size, group membership.

The state is read back from the changelog topics rather than asked of the
worker: the changelog is what a restarted or added worker has to recover, so
its compacted size (the last value of every key) is the state that counts.
"""
from __future__ import annotations

import asyncio
import os
import time

APP_ID = "usage-features"  # the worker's Faust app id (stream.runtime.worker.build_app), its group id too
BOOKKEEPING_PREFIX = "__"  # state keys that are no entity (end-of-run marks)


def changelog_topic(table: str, app_id: str = APP_ID) -> str:
    return f"{app_id}-{table}-changelog"


def _true_ends(consumer, bootstrap: str, tps: list) -> dict:
    from stream.runtime.consumer import true_end_offsets

    return true_end_offsets(bootstrap, consumer.end_offsets(tps))


def read_changelogs(bootstrap: str, tables, app_id: str = APP_ID, settle: float = 0.5,
                    written: dict | None = None) -> dict[str, dict]:
    """The latest value of every key of each table's changelog (compaction semantics), read to the true end.

    The end is read again after `settle` seconds until it stops moving: the last state writes of a run may
    still be in the worker's producer when Redis already shows the run finished. `written`, when given,
    gets per table every record's count, bytes and the largest record (what the broker had to take)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False,
                             auto_offset_reset="earliest", max_poll_records=10_000,
                             fetch_max_bytes=64 * 1024 * 1024)
    latest: dict[str, dict[bytes, bytes]] = {table: {} for table in tables}
    try:
        by_topic = {changelog_topic(table, app_id): table for table in tables}
        existing = consumer.topics()
        tps = [TopicPartition(topic, p) for topic in by_topic if topic in existing
               for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return latest
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends: dict = {}
        while True:
            fresh = _true_ends(consumer, bootstrap, tps)
            if fresh == ends:
                break
            ends = fresh
            deadline = time.monotonic() + 300
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise TimeoutError("changelogs not read to their end in 300 s")
                for tp, records in consumer.poll(timeout_ms=500).items():
                    table = by_topic[tp.topic]
                    values = latest[table]
                    if written is not None:
                        _count_written(written, table, records)
                    for record in records:
                        if record.value is None:  # a tombstone deletes the key
                            values.pop(record.key, None)
                        else:
                            values[record.key] = record.value
            time.sleep(settle)
    finally:
        consumer.close()
    return latest


def _count_written(written: dict, table: str, records) -> None:
    stats = written.setdefault(table, {"records": 0, "bytes": 0, "largest": 0, "largest_key": None})
    for record in records:
        size = len(record.value or b"") + len(record.key or b"")
        stats["records"] += 1
        stats["bytes"] += size
        if size > stats["largest"]:
            stats["largest"], stats["largest_key"] = size, (record.key or b"")[:80].decode("utf-8", "replace")


def changelog_writes(bootstrap: str, dataset: str, app_id: str = APP_ID) -> dict:
    """Per table of the dataset: records written to its changelog, their bytes and the largest one."""
    import datasets

    written: dict = {}
    read_changelogs(bootstrap, datasets.get(dataset).state_tables, app_id, written=written)
    return written


def state_sizes(bootstrap: str, dataset: str, app_id: str = APP_ID) -> dict:
    """Per table: entity keys, bytes of their latest values, mean bytes per key; and state bytes per user."""
    import datasets

    tables = datasets.get(dataset).state_tables
    latest = read_changelogs(bootstrap, tables, app_id)
    per_table = {}
    for table, values in latest.items():
        entity_values = [v for k, v in values.items() if not (k or b"").startswith(BOOKKEEPING_PREFIX.encode())]
        total = sum(len(v) for v in entity_values)
        per_table[table] = {"keys": len(entity_values), "value_bytes": total,
                            "mean_bytes_per_key": total / len(entity_values) if entity_values else 0.0}
    users = per_table.get(f"{dataset}_user", {}).get("keys", 0)
    total = sum(t["value_bytes"] for t in per_table.values())
    return {"tables": per_table, "users": users, "state_bytes": total,
            "state_bytes_per_user": total / users if users else None}


def redis_bytes_per_user(redis_url: str, prefix: str, dataset: str, sample: int = 1000) -> dict:
    """Mean Redis memory of a user's snapshot hash (and session list, where the dataset keeps one),
    from MEMORY USAGE on a random sample of users; and the snapshot's field and value bytes, since
    MEMORY USAGE counts whole allocator size classes."""
    import redis as redis_lib

    from contract import keys

    r = redis_lib.Redis.from_url(redis_url)
    users = r.scard(keys.entities_key(prefix, dataset, "user"))
    ids = [m.decode() for m in r.srandmember(keys.entities_key(prefix, dataset, "user"), sample) or []]
    if not ids:
        return {"users": users, "sampled": 0}
    pipe = r.pipeline(transaction=False)
    for user in ids:
        pipe.memory_usage(keys.feature_key(prefix, dataset, "user", user), samples=0)
        pipe.memory_usage(keys.sessions_key(prefix, dataset, user), samples=0)
        pipe.hgetall(keys.feature_key(prefix, dataset, "user", user))
    usage = pipe.execute()
    snapshot, sessions, hashes = usage[0::3], usage[1::3], usage[2::3]
    mean_snapshot = sum(u or 0 for u in snapshot) / len(ids)
    mean_sessions = sum(u or 0 for u in sessions) / len(ids)
    payload = sum(len(k) + len(v) for h in hashes for k, v in h.items()) / len(ids)
    return {"users": users, "sampled": len(ids), "snapshot_bytes_per_user": mean_snapshot,
            "snapshot_payload_bytes_per_user": payload, "sessions_bytes_per_user": mean_sessions,
            "bytes_per_user": mean_snapshot + mean_sessions}


async def _describe_group(bootstrap: str, group: str) -> tuple[str, int]:
    # aiokafka's admin, not kafka-python's: the latter rejects the authorized operations Tansu reports
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    for response in responses:
        for _error, group_id, state, _ptype, _protocol, members in response.groups:
            if group_id == group:
                return state, len(members)
    return "Unknown", 0


def wait_group_settled(bootstrap: str, members: int, group: str = APP_ID, timeout: float = 120,
                       alive=None) -> float:
    """Block until the group is Stable with `members` members (the rebalance after a join is done);
    return the seconds it took. Tansu does not report member assignments, so the split itself is
    seen afterwards in each worker's CPU time."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        state, count = asyncio.run(_describe_group(bootstrap, group))
        if state == "Stable" and count == members:
            return time.monotonic() - t0
        if alive is not None and not alive():
            raise RuntimeError("a stream worker stopped while its group rebalanced")
        time.sleep(0.2)
    raise TimeoutError(f"group {group} not Stable with {members} members after {timeout}s")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux)."""
    return _stat_cpu(f"/proc/{pid}/stat")


def main_thread_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process's main thread so far (Linux): a worker's event loop, where
    its stages run, apart from Faust's consumer thread and RocksDB's."""
    return _stat_cpu(f"/proc/{pid}/task/{pid}/stat")


def _stat_cpu(path: str) -> float | None:
    try:
        with open(path) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
