"""Feature snapshots into Redis: one hash per entity, written atomically, versions only grow.

A server-side script compares the stored `_meta.version` with the new one and
writes every field and `_meta` in one step only when the new version is
greater: a reader never sees half an update, and a stale writer (after a
rebalance) cannot go back in time. One pipeline per batch.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

import orjson
import redis.asyncio as aioredis

from contract import keys
from stream.logic.sequence import next_seq

log = logging.getLogger(__name__)

_WRITE = """
local current = redis.call('HGET', KEYS[1], '_meta')
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and meta['version'] and tonumber(meta['version']) >= tonumber(ARGV[1]) then return 0 end
end
if ARGV[3] == 'del' then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
  return 1
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('SADD', KEYS[2], ARGV[2])
return 1
"""

_SESSIONS = """
local newest = nil
local head = redis.call('LINDEX', KEYS[1], 0)
if head then
  local ok, session = pcall(cjson.decode, head)
  if ok then newest = session['start'] end
end
for i = 2, #ARGV do
  local session = cjson.decode(ARGV[i])
  if newest == nil or session['start'] > newest then
    redis.call('LPUSH', KEYS[1], ARGV[i])
    newest = session['start']
  end
end
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[1]) - 1)
return 1
"""
# Sessions close in start order, so a record not newer than the list's head is one the list has
# already (a redelivery, or one sent again after a crash): skipping it keeps the list exact.


def next_version(previous: int) -> int:
    """Grows per entity and survives a restart from an older changelog state."""
    return next_seq(previous)


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat()


class SnapshotSink:
    def __init__(self, redis_url: str, prefix: str, sessions_cap: int = 100):
        self.redis = aioredis.Redis.from_url(redis_url)
        self.prefix = prefix
        self.sessions_cap = sessions_cap
        self._write = self.redis.register_script(_WRITE)
        self._sessions = self.redis.register_script(_SESSIONS)
        self._pending: list = []

    def snapshot(self, dataset: str, entity: str, entity_id, version: int, features: dict | None,
                 events: int = 0, watermark: str | None = None, **meta) -> None:
        """Queue a snapshot (features None deletes the entity's snapshot)."""
        fkey = keys.feature_key(self.prefix, dataset, entity, entity_id)
        ekey = keys.entities_key(self.prefix, dataset, entity)
        meta = orjson.dumps({"version": version, "updated_at": now_iso(), "events": events, "watermark": watermark,
                             **meta})
        if features is None:
            self._pending.append((self._write, [fkey, ekey], [version, str(entity_id), "del"]))
            return
        args = [version, str(entity_id), "set", "_meta", meta]
        for field, value in features.items():
            args.append(field)
            args.append(orjson.dumps(value))
        self._pending.append((self._write, [fkey, ekey], args))

    def sessions(self, dataset: str, entity_id, records: list[dict]) -> None:
        if records:
            args = [self.sessions_cap] + [orjson.dumps(r) for r in records]
            self._pending.append((self._sessions, [keys.sessions_key(self.prefix, dataset, entity_id)], args))

    def status(self, dataset: str, field: str, value) -> None:
        key = keys.status_key(self.prefix, dataset)
        self._pending.append(("hset", key, (field, orjson.dumps(value))))

    def count(self, dataset: str, field: str, amount: int = 1) -> None:
        """Add to a counter of the dataset's status hash (summed over every worker)."""
        self._pending.append(("hincrby", keys.status_key(self.prefix, dataset), (field, amount)))

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Write everything queued in one pipeline; keep it queued if Redis is away."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for script, key_list, args in pending:
                    if script == "hset":
                        pipe.hset(key_list, args[0], args[1])
                    elif script == "hincrby":
                        pipe.hincrby(key_list, args[0], args[1])
                    else:
                        await script(keys=key_list, args=args, client=pipe)
                await pipe.execute()
        except Exception:
            self._pending = pending + self._pending
            raise

    async def close(self) -> None:
        await self.redis.aclose()
