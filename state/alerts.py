"""The alert sinks in Redis: the live alert list managers see, and the notification queue.

:data:`APPLY_LUA` takes a batch read from ``sla-alerts`` and, for each alert id not applied before
(``SET NX``), in one atomic step: adds it to the active list (a near breach or breach) or removes the
alert it clears, keeps it in the recent list, publishes it for the gateway, and queues its
notification deliveries. An alert read twice (produced twice, or read again after a crash) changes
nothing the second time.

Keys under ``ns``: ``{ns}:sla:applied:{alert id}`` (kept ``ttl`` s), ``{ns}:sla:active`` (HASH alert id
-> JSON), ``{ns}:sla:recent`` (LIST, newest first, 500), channel ``{ns}:sla-alerts``; the queue keys are
described in :mod:`state.notify`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from agents.sla import Alert
from state.notify import ENQUEUE_FUNCTION

RECENT_ALERTS = 500

APPLY_LUA = (
    ENQUEUE_FUNCTION
    + """
local ns, now, ttl, recent = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local batch = cjson.decode(ARGV[5])
local quiet = ARGV[6] == 'quiet'  -- a rebuild: managers have seen these already
local applied = {}
for _, item in ipairs(batch) do
  local a = item.alert
  if redis.call('SET', ns .. ':sla:applied:' .. a.alert_id, now, 'NX', 'EX', ttl) then
    table.insert(applied, a.alert_id)
    local body = cjson.encode(a)
    if a.type == 'sla.clear' then
      redis.call('HDEL', ns .. ':sla:active', a.clears)
    elseif not a.closed then
      redis.call('HSET', ns .. ':sla:active', a.alert_id, body)
    end
    redis.call('LPUSH', ns .. ':sla:recent', body)
    redis.call('LTRIM', ns .. ':sla:recent', 0, recent - 1)
    if not quiet then redis.call('PUBLISH', ns .. ':sla-alerts', body) end
    for _, d in ipairs(item.deliveries) do enqueue(ns, now, d) end
  end
end
return applied
"""
)


class AlertBoard:
    def __init__(self, redis: aioredis.Redis, namespace: str, ttl_s: int) -> None:
        self.redis = redis
        self.ns = namespace
        self.ttl_s = ttl_s
        self._apply = redis.register_script(APPLY_LUA)

    async def apply(
        self, items: Sequence[tuple[Alert, Sequence[dict[str, Any]]]], now_ms: int, *, quiet: bool = False
    ) -> set[str]:
        """Apply alerts with their deliveries; returns the ids of those that were new (applied now).
        ``quiet`` (a rebuild) publishes nothing."""
        if not items:
            return set()
        payload = orjson.dumps([{"alert": a.data, "deliveries": list(d)} for a, d in items])
        mode = "quiet" if quiet else "live"
        found = await self._apply(args=[self.ns, now_ms, self.ttl_s, RECENT_ALERTS, payload, mode])
        return {i.decode() if isinstance(i, bytes) else str(i) for i in found}

    async def active(self) -> list[dict[str, Any]]:
        """The open near-breach and breach alerts, soonest deadline first."""
        found = await self.redis.hvals(f"{self.ns}:sla:active")
        return sorted((orjson.loads(v) for v in found), key=lambda a: (a["deadline_ms"], a["alert_id"]))

    async def recent(self, count: int = 100) -> list[dict[str, Any]]:
        return [orjson.loads(v) for v in await self.redis.lrange(f"{self.ns}:sla:recent", 0, count - 1)]
