"""The notification delivery queue in Redis, shared by every worker.

- ``{ns}:notify:jobs`` -- HASH delivery id -> delivery JSON (channel, address, subject, text, data);
- ``{ns}:notify:queue`` -- ZSET delivery id -> when it may be tried next (ms);
- ``{ns}:notify:tries`` -- HASH delivery id -> tries so far;
- ``{ns}:notify:sent:{id}`` -- set once delivered (kept ``ttl`` s): never queued or sent again;
- ``{ns}:notify:rate:{channel}:{recipient}:{window}`` -- deliveries in a rate-limit window.

:meth:`NotifyQueue.claim` leases due deliveries atomically (moves them ``lease`` ms into the future),
so two workers never send one delivery at once; a worker that dies mid-send leaves the lease to run
out and another sends it (receivers get an idempotency key for that case, agents.notify).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

CLAIM_LUA = """
local ns, now, lease, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ids = redis.call('ZRANGEBYSCORE', ns .. ':notify:queue', '-inf', now, 'LIMIT', 0, limit)
local out = {}
for _, id in ipairs(ids) do
  local job = redis.call('HGET', ns .. ':notify:jobs', id)
  if job and redis.call('EXISTS', ns .. ':notify:sent:' .. id) == 0 then
    redis.call('ZADD', ns .. ':notify:queue', now + lease, id)
    local tries = redis.call('HINCRBY', ns .. ':notify:tries', id, 1)
    table.insert(out, {id, job, tries})
  else
    redis.call('ZREM', ns .. ':notify:queue', id)
    redis.call('HDEL', ns .. ':notify:jobs', id)
    redis.call('HDEL', ns .. ':notify:tries', id)
  end
end
return out
"""

# Queue one delivery unless it was queued or sent before (by id): shared by ENQUEUE_LUA and state.alerts.
ENQUEUE_FUNCTION = """
local function enqueue(ns, now, d)
  if redis.call('EXISTS', ns .. ':notify:sent:' .. d.id) == 0 and
     redis.call('HSETNX', ns .. ':notify:jobs', d.id, cjson.encode(d)) == 1 then
    redis.call('ZADD', ns .. ':notify:queue', now, d.id)
    return 1
  end
  return 0
end
"""

ENQUEUE_LUA = (
    ENQUEUE_FUNCTION
    + """
local ns, now = ARGV[1], tonumber(ARGV[2])
local added = 0
for _, d in ipairs(cjson.decode(ARGV[3])) do added = added + enqueue(ns, now, d) end
return added
"""
)

RATE_LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    id: str
    job: dict[str, Any]
    tries: int  # including this one


class NotifyQueue:
    def __init__(self, redis: aioredis.Redis, namespace: str, ttl_s: int) -> None:
        self.redis = redis
        self.ns = namespace
        self.ttl_s = ttl_s
        self._claim = redis.register_script(CLAIM_LUA)
        self._rate = redis.register_script(RATE_LUA)
        self._enqueue = redis.register_script(ENQUEUE_LUA)

    async def enqueue(self, deliveries: Sequence[dict[str, Any]], now_ms: int) -> int:
        """Queue deliveries not queued or sent before (by id); returns how many were new."""
        if not deliveries:
            return 0
        return int(await self._enqueue(args=[self.ns, now_ms, orjson.dumps(list(deliveries))]))

    async def claim(self, now_ms: int, *, lease_ms: int, limit: int) -> list[Claimed]:
        found = await self._claim(args=[self.ns, now_ms, lease_ms, limit])
        return [Claimed(i.decode(), orjson.loads(job), int(tries)) for i, job, tries in found]

    async def done(self, delivery_id: str) -> None:
        """Delivered (or dead-lettered): never again."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(f"{self.ns}:notify:sent:{delivery_id}", 1, ex=self.ttl_s)
            pipe.zrem(f"{self.ns}:notify:queue", delivery_id)
            pipe.hdel(f"{self.ns}:notify:jobs", delivery_id)
            pipe.hdel(f"{self.ns}:notify:tries", delivery_id)
            await pipe.execute()

    async def later(self, delivery_id: str, at_ms: int, *, refund: bool = False) -> None:
        """Try again at ``at_ms``; ``refund``: this claim was not a try (rate-limited)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(f"{self.ns}:notify:queue", {delivery_id: at_ms})
            if refund:
                pipe.hincrby(f"{self.ns}:notify:tries", delivery_id, -1)
            await pipe.execute()

    async def count(self, key: str, window_ms: int) -> int:
        """Deliveries so far in a rate-limit window (this one included)."""
        return int(await self._rate(keys=[f"{self.ns}:notify:rate:{key}"], args=[window_ms]))

    async def pending(self) -> int:
        return int(await self.redis.zcard(f"{self.ns}:notify:queue"))

    async def sent(self, delivery_ids: Sequence[str]) -> list[bool]:
        if not delivery_ids:
            return []
        found = await self.redis.mget([f"{self.ns}:notify:sent:{i}" for i in delivery_ids])
        return [v is not None for v in found]
