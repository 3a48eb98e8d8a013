"""Event ids already scored, so a redelivered event earns nothing twice.

Marked only *after* the event's awards are on the ledger: a crash in between re-scores the event,
which yields the same award ids, and the league applies each award id at most once. The marks expire
(default 8 days, beyond any allowed lateness); a copy arriving later still cannot double any score.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as aioredis

# One script call per batch for each (a pipeline of one command per id cost ~6 µs per id in redis-py's
# command packing and reply parsing; one call with the ids as arguments costs a fraction of that).
# ARGV: the key prefix, then the event ids; returns the ids that have a mark.
SEEN_LUA = """
local found = {}
for i = 2, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. ARGV[i]) == 1 then table.insert(found, ARGV[i]) end
end
return found
"""
# ARGV: the key prefix, the TTL in seconds, then the event ids.
MARK_LUA = """
for i = 3, #ARGV do redis.call('SET', ARGV[1] .. ARGV[i], '1', 'EX', ARGV[2]) end
return #ARGV - 2
"""
CHUNK = 5000  # ids per call: bounded work per script (Redis runs one script at a time)


class SeenEvents:
    def __init__(self, redis: aioredis.Redis, namespace: str = "pitstop", ttl_s: int = 8 * 24 * 3600) -> None:
        self.redis = redis
        self.prefix = f"{namespace}:seen:"
        self.ttl_s = ttl_s
        self._seen = redis.register_script(SEEN_LUA)
        self._mark = redis.register_script(MARK_LUA)

    async def seen(self, event_ids: Iterable[str]) -> frozenset[str]:
        ids = list(dict.fromkeys(event_ids))
        found: set[str] = set()
        for i in range(0, len(ids), CHUNK):
            hits = await self._seen(args=[self.prefix, *ids[i : i + CHUNK]])
            found.update(h.decode() if isinstance(h, bytes) else str(h) for h in hits)
        return frozenset(found)

    async def mark(self, event_ids: Iterable[str]) -> None:
        ids = list(dict.fromkeys(event_ids))
        for i in range(0, len(ids), CHUNK):
            await self._mark(args=[self.prefix, self.ttl_s, *ids[i : i + CHUNK]])
