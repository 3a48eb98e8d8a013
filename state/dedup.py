"""Event ids already scored, so a redelivered event earns nothing twice.

Marked only *after* the event's awards are on the ledger: a crash in between re-scores the event,
which yields the same award ids, and the league applies each award id at most once. The marks expire
(default 8 days, beyond any allowed lateness); a copy arriving later still cannot double any score.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as aioredis


class SeenEvents:
    def __init__(self, redis: aioredis.Redis, namespace: str = "pitstop", ttl_s: int = 8 * 24 * 3600) -> None:
        self.redis = redis
        self.prefix = f"{namespace}:seen:"
        self.ttl_s = ttl_s

    async def seen(self, event_ids: Iterable[str]) -> frozenset[str]:
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return frozenset()
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id in ids:
                pipe.exists(self.prefix + event_id)
            found = await pipe.execute()
        return frozenset(i for i, hit in zip(ids, found, strict=True) if hit)

    async def mark(self, event_ids: Iterable[str]) -> None:
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id in ids:
                pipe.set(self.prefix + event_id, b"1", ex=self.ttl_s)
            await pipe.execute()
