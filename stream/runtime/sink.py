"""Feature snapshots into Redis: one hash per entity, written atomically, versions only grow.

A server-side script compares the stored `_meta.version` with the new one and
writes every field and `_meta` in one step only when the new version is
greater: a reader never sees half an update, and a stale writer (after a
rebalance) cannot go back in time.

Each write says when it happened (`_meta.written_at`) and keeps `updated_at`,
when a feature last changed: `_meta` holds a digest of the features, and a
write whose digest equals the stored one writes `_meta` alone (and keeps its
`updated_at`). The same script keeps the entity in its freshness set, scored by
`updated_at` (contract.keys.freshness_key), and with a TTL (FEATURE_TTL)
renews the hash's expiry at every write. A digest made by the writer costs
~1 us of its CPU; comparing the stored fields inside the script instead cost
Redis ~4 us more per snapshot (python -m bench.sink), and Redis is the one
process all workers share.

Writes are queued and sent in one round trip per flush. Commands are packed
by hiredis (redis-py packs each argument in Python: that was ~50 us of client
CPU per snapshot, a quarter of the worker's time on a replay), and each run of
snapshots or of session lists goes through one script call, so a flush reads
a handful of replies rather than one per entity.
"""
from __future__ import annotations

import logging
import time
import uuid
from contextvars import ContextVar
from datetime import datetime, timezone
from hashlib import blake2b
from itertools import chain
from typing import Callable

import orjson
import redis.asyncio as aioredis
from hiredis import pack_command
from redis.exceptions import ResponseError

import datasets
from contract import keys
from stream.logic.sequence import next_seq

log = logging.getLogger(__name__)

# ARGV[1], ARGV[2]: the time of the call (ISO, epoch seconds). Per snapshot, KEYS: its feature hash,
# entity set, freshness set, then `extra` keys whose expiry follows the snapshot's (a ucn user's session
# list); ARGV: version, entity id, 'set' or 'del', TTL in ms (0: none), extra, digest of the features,
# _meta without its closing brace, n, then n field/value arguments. A snapshot is written whole, and
# only when its version is newer than the stored one; when its digest equals the stored one the
# features are the stored ones: only _meta is written, and updated_at stays.
_WRITE = """
local function follow_ttl(key, ttl)
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) else redis.call('PERSIST', key) end
end
local now, now_s = ARGV[1], ARGV[2]
local a, k = 3, 1
local written = 0
while k <= #KEYS do
  local fkey, ekey, zkey = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local version, id, mode, ttl = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  local extra, digest, head, n = tonumber(ARGV[a + 4]), ARGV[a + 5], ARGV[a + 6], tonumber(ARGV[a + 7])
  local first = a + 8
  a = first + n
  local stale, updated = false, nil
  local current = redis.call('HGET', fkey, '_meta')
  if current then
    local ok, meta = pcall(cjson.decode, current)
    if ok then
      stale = meta['version'] ~= nil and tonumber(meta['version']) >= tonumber(version)
      if meta['digest'] == digest and type(meta['updated_at']) == 'string' then updated = meta['updated_at'] end
    end
  end
  if not stale then
    if mode == 'del' then
      redis.call('DEL', fkey)
      redis.call('SREM', ekey, id)
      redis.call('ZREM', zkey, id)
    else
      redis.call('SADD', ekey, id)  -- first: a failed call leaves no version to skip the retry
      local meta
      if updated then
        meta = head .. ',"updated_at":"' .. updated .. '","written_at":"' .. now .. '"}'
        redis.call('HSET', fkey, '_meta', meta)
      else
        redis.call('ZADD', zkey, now_s, id)
        meta = head .. ',"updated_at":"' .. now .. '","written_at":"' .. now .. '"}'
        redis.call('HSET', fkey, '_meta', meta, unpack(ARGV, first, a - 1))
      end
      follow_ttl(fkey, ttl)
      for e = k + 3, k + 2 + extra do follow_ttl(KEYS[e], ttl) end
    end
    written = written + 1
  end
  k = k + 3 + extra
end
return written
"""

# KEYS: session lists. ARGV: the cap, then per list: its TTL in ms (0: none), n, then n session records
# (JSON), oldest first.
_SESSIONS = """
local cap = tonumber(ARGV[1])
local a = 2
for k = 1, #KEYS do
  local ttl, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 1
  local newest = nil
  local head = redis.call('LINDEX', KEYS[k], 0)
  if head then
    local ok, session = pcall(cjson.decode, head)
    if ok then newest = session['start'] end
  end
  for i = a + 1, a + n do
    local session = cjson.decode(ARGV[i])
    if newest == nil or session['start'] > newest then
      redis.call('LPUSH', KEYS[k], ARGV[i])
      newest = session['start']
    end
  end
  a = a + 1 + n
  redis.call('LTRIM', KEYS[k], 0, cap - 1)
  if ttl > 0 then redis.call('PEXPIRE', KEYS[k], ttl) end
end
return 1
"""
# Sessions close in start order, so a record not newer than the list's head is one the list has
# already (a redelivery, or one sent again after a crash): skipping it keeps the list exact.

ENTITIES_PER_CALL = 200  # a script blocks Redis while it runs: ~200 entities keep that to a few ms

_SNAPSHOT, _SESSIONS_KIND = "snapshot", "sessions"  # queued writes that go through a script


def next_version(previous: int) -> int:
    """Grows per entity and survives a restart from an older changelog state."""
    return next_seq(previous)


def iso_of(epoch_s: float) -> str:
    """Naive UTC ISO-8601, as the wire format writes times."""
    return datetime.fromtimestamp(epoch_s, timezone.utc).replace(tzinfo=None).isoformat()


def now_iso() -> str:
    return iso_of(time.time())


# When the input being applied reached Kafka (epoch ms; stream.runtime.stages sets it per batch):
# snapshots queued meanwhile carry it, for the event-to-snapshot latency (`on_written`).
ARRIVED_MS: ContextVar[int | None] = ContextVar("arrived_ms", default=None)


def features_digest(names, values: list[bytes]) -> str:
    """Names and encoded values of a snapshot's features: equal digests, equal features (128 bits)."""
    return blake2b("\0".join(names).encode() + b"\1" + b"\0".join(values), digest_size=16).hexdigest()


class SnapshotSink:
    def __init__(self, redis_url: str, prefix: str, sessions_cap: int = 100, ttl_s: dict[str, float] | None = None,
                 on_written: Callable[[float, list[tuple[str, int]]], None] | None = None):
        """`ttl_s`: per dataset, seconds a snapshot (and a ucn user's session list) lives after its last
        write; `on_written(when, arrivals)`: after each flush, the epoch seconds it was acknowledged and,
        for each snapshot it wrote whose input had an arrival (ARRIVED_MS), (dataset, that arrival)."""
        self.redis = aioredis.Redis.from_url(redis_url)
        self.prefix = prefix
        self.sessions_cap = sessions_cap
        self.ttl_ms = {dataset: int(round(seconds * 1000)) for dataset, seconds in (ttl_s or {}).items()}
        self.on_written = on_written
        self.clock = time.time  # when a write happens (updated_at, written_at): tests set their own
        self._write = self.redis.register_script(_WRITE)  # sha and source; sent by `commands`
        self._sessions = self.redis.register_script(_SESSIONS)
        self._pending: list = []  # (kind, keys, args, (dataset, arrival) or None) in the order queued
        self._kinds: dict[tuple[str, str], tuple] = {}  # (dataset, entity) -> what its snapshots share
        self.writer = uuid.uuid4().hex[:12]
        self._marker = ("HSETNX", keys.writers_key(prefix), self.writer, 1)  # sent first in every flush
        self._marked = False  # this writer's mark was seen in Redis once
        self.lost_data = False  # set when the mark went missing: Redis restarted empty or was flushed

    def snapshot(self, dataset: str, entity: str, entity_id, version: int, features: dict | None,
                 events: int = 0, watermark: str | None = None, **meta) -> None:
        """Queue a snapshot (features None deletes the entity's snapshot)."""
        entity_id = str(entity_id)
        kind = self._kinds.get((dataset, entity)) or self._kind(dataset, entity)
        entities, freshness, session_list, ttl = kind
        key_list = (keys.feature_key(self.prefix, dataset, entity, entity_id), entities, freshness)
        if features is None:
            self._pending.append((_SNAPSHOT, key_list, (version, entity_id, "del", 0, 0, "", "", 0), None))
            return
        if session_list:
            key_list += (keys.sessions_key(self.prefix, dataset, entity_id),)
        values = [orjson.dumps(value) for value in features.values()]
        digest = features_digest(features, values)
        head = orjson.dumps({"version": version, "events": events, "watermark": watermark, **meta, "digest": digest})
        args = [version, entity_id, "set", ttl, len(key_list) - 3, digest, head[:-1], 2 * len(values)]
        for field, value in zip(features, values):
            args.append(field)
            args.append(value)
        arrived = ARRIVED_MS.get()
        self._pending.append((_SNAPSHOT, key_list, args, None if arrived is None else (dataset, arrived)))

    def _kind(self, dataset: str, entity: str) -> tuple:
        """What every snapshot of an entity kind shares: its entity set, its freshness set, whether it has a
        session list, its TTL in ms."""
        kind = (keys.entities_key(self.prefix, dataset, entity), keys.freshness_key(self.prefix, dataset, entity),
                entity in datasets.get(dataset).session_lists, self.ttl_ms.get(dataset, 0))
        self._kinds[(dataset, entity)] = kind
        return kind

    def sessions(self, dataset: str, entity_id, records: list[dict]) -> None:
        if records:
            args = [self.ttl_ms.get(dataset, 0), len(records)] + [orjson.dumps(r) for r in records]
            self._pending.append((_SESSIONS_KIND, (keys.sessions_key(self.prefix, dataset, entity_id),), args, None))

    def status(self, dataset: str, field: str, value) -> None:
        key = keys.status_key(self.prefix, dataset)
        self._pending.append(("HSET", (key,), (field, orjson.dumps(value)), None))

    def count(self, dataset: str, field: str, amount: int = 1) -> None:
        """Add to a counter of the dataset's status hash (summed over every worker)."""
        self._pending.append(("HINCRBY", (keys.status_key(self.prefix, dataset),), (field, amount), None))

    @property
    def pending(self) -> int:
        return len(self._pending)

    def rollback(self, pending: int) -> None:
        """Forget what was queued since there were `pending` writes (a unit of work that failed)."""
        del self._pending[pending:]

    def commands(self, pending: list) -> list[tuple]:
        """The queued writes as commands: the scripts loaded first (a restarted Redis has none), runs of
        snapshots and of session lists folded into script calls, plain commands where they stand (a
        status queued after some snapshots lands after them)."""
        now = self.clock()
        scripts = {_SNAPSHOT: (self._write, (iso_of(now), f"{now:.6f}")),
                   _SESSIONS_KIND: (self._sessions, (self.sessions_cap,))}
        commands = [("SCRIPT", "LOAD", script.script) for script, _ in scripts.values()]
        runs: dict[str, list] = {kind: [] for kind in scripts}

        def close_runs() -> None:
            for kind, (script, leading_args) in scripts.items():
                run = runs[kind]
                for start in range(0, len(run), ENTITIES_PER_CALL):
                    chunk = run[start:start + ENTITIES_PER_CALL]
                    chunk_keys = list(chain.from_iterable([key_list for key_list, _ in chunk]))
                    commands.append(("EVALSHA", script.sha, len(chunk_keys), *chunk_keys, *leading_args,
                                     *chain.from_iterable([args for _, args in chunk])))  # flat, in C
                run.clear()

        for kind, key_list, args, _ in pending:
            if kind in runs:
                runs[kind].append((key_list, args))
            else:
                close_runs()
                commands.append((kind, *key_list, *args))
        close_runs()
        return commands

    async def flush(self) -> None:
        """Write everything queued in one round trip; keep it queued if Redis is away."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        try:
            self._note_mark(await self._execute([self._marker, *self.commands(pending)]))
        except Exception:
            self._pending = pending + self._pending
            raise
        if self.on_written is not None:
            self.on_written(self.clock(), [arrived for *_, arrived in pending if arrived is not None])

    async def check(self) -> None:
        """Does Redis still hold what this writer wrote? (sets `lost_data`; flushes check it too)"""
        self._note_mark(await self._execute([self._marker]))

    def _note_mark(self, newly_set) -> None:
        if newly_set and self._marked:
            self.lost_data = True
        self._marked = True

    async def _execute(self, commands: list[tuple]):
        """Send `commands` in one write; return the first one's reply."""
        pool = self.redis.connection_pool
        connection = await pool.get_connection()
        errors, replies = [], []
        try:
            await connection.send_packed_command(b"".join(pack_command(c) for c in commands), check_health=False)
            for _ in commands:  # every reply, errors included, so that the connection stays in step
                try:
                    replies.append(await connection.read_response())
                except ResponseError as exc:
                    errors.append(exc)
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)
        if errors:
            raise errors[0]
        return replies[0] if replies else None

    async def close(self) -> None:
        await self.redis.aclose()
