"""Expired snapshots leave the entity set and the freshness set (FEATURE_TTL).

Redis expires a snapshot hash by itself (the write script renews its TTL at
every write), but not the members that name it in `entities:` and
`freshness:`. A sweeper in the worker removes them, a bounded number per tick,
rather than the write script on every write: writes stay as cheap as they are,
and a dataset that nobody writes any more (exactly when its entities expire)
is swept all the same. The candidates are the members whose `updated_at` is
older than the TTL (ZRANGEBYSCORE on the freshness set); a script removes
those whose hash is gone, checking and removing in one step, so that an
entity written again meanwhile stays. A candidate whose hash is still there
was written since with unchanged features (which renews the TTL but not
`updated_at`); the sweep steps past it and starts over once it reaches the
end. Until it is swept an expired id can still be listed by an SSCAN of the
entity set; readers of one entity or of the stalest ones never see it (its
hash is gone).
"""
from __future__ import annotations

import time

import datasets as registry
from contract import keys

SWEEP_EVERY_S = 5.0
SWEEP_BATCH = 500  # candidates per entity kind and tick: one ZRANGEBYSCORE and one script call of this size

# KEYS[1], KEYS[2]: the freshness set and the entity set; KEYS[2 + i]: the feature hash of ARGV[i].
_FORGET = """
local gone = 0
for i = 1, #ARGV do
  if redis.call('EXISTS', KEYS[i + 2]) == 0 then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('SREM', KEYS[2], ARGV[i])
    gone = gone + 1
  end
end
return gone
"""


class ExpirySweeper:
    def __init__(self, redis, prefix: str, ttl_s: dict[str, float], datasets, batch: int = SWEEP_BATCH):
        """`redis`: an asyncio client; `ttl_s`: per dataset (those without one are never swept)."""
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.batch = batch
        self.kinds = [(dataset, entity) for dataset in datasets if dataset in ttl_s
                      for entity in registry.get(dataset).snapshot_entities]
        self._offsets = {kind: 0 for kind in self.kinds}  # candidates stepped past (still there) this pass
        self._forget = redis.register_script(_FORGET)

    async def sweep(self, now: float | None = None) -> int:
        """One tick: look at up to `batch` candidates of each entity kind; return how many were removed."""
        now = time.time() if now is None else now
        removed = 0
        for dataset, entity in self.kinds:
            fresh = keys.freshness_key(self.prefix, dataset, entity)
            offset = self._offsets[(dataset, entity)]
            ids = await self.redis.zrangebyscore(fresh, "-inf", f"({now - self.ttl_s[dataset]:.6f}",
                                                 start=offset, num=self.batch)
            gone = 0
            if ids:
                hashes = [keys.feature_key(self.prefix, dataset, entity, i.decode()) for i in ids]
                gone = await self._forget(keys=[fresh, keys.entities_key(self.prefix, dataset, entity), *hashes],
                                          args=ids)
            removed += gone
            self._offsets[(dataset, entity)] = offset + len(ids) - gone if len(ids) == self.batch else 0
        return removed
