"""Revoked access tokens, by token id (the JWT ``jti``), in Redis.

``{ns}:revoked:{token id}`` exists until the token would have expired anyway (then nothing is left to
refuse); each revocation is also published on ``{ns}:revocations`` so gateways close the connections
that token opened at once.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis


def channel(namespace: str) -> str:
    return f"{namespace}:revocations"


async def revoke(redis: aioredis.Redis, namespace: str, token_id: str, expires_at: int) -> bool:
    """Refuse the token from now on; False if it has expired already (nothing to do)."""
    left = int(expires_at - time.time())
    if left <= 0:
        return False
    await redis.set(f"{namespace}:revoked:{token_id}", expires_at, ex=left)
    await redis.publish(channel(namespace), token_id)
    return True


async def is_revoked(redis: aioredis.Redis, namespace: str, token_id: str) -> bool:
    return bool(await redis.exists(f"{namespace}:revoked:{token_id}"))
