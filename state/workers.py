"""Which workers are running, in Redis, for ``pitstop replay --activate``.

Each running worker refreshes ``{ns}:worker:{host}:{pid}`` every :data:`HEARTBEAT_S` with an expiry of
:data:`HEARTBEAT_TTL_S`, so a worker stopped or killed is gone from Redis a few seconds later. (The
broker cannot tell: the embedded broker keeps a member in DescribeGroups after it left its group.)
An activation holds ``{ns}:activating`` while it swaps the namespace; a worker starting meanwhile
waits for it to end, then reads the new ledger generation.
"""

from __future__ import annotations

import os
import socket

import orjson
import redis.asyncio as aioredis

HEARTBEAT_S = 1.0
HEARTBEAT_TTL_S = 5
ACTIVATION_TTL_S = 600  # an activation that died holds nothing for longer


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def beat(redis: aioredis.Redis, namespace: str, info: dict[str, str]) -> None:
    await redis.set(f"{namespace}:worker:{worker_id()}", orjson.dumps(info), ex=HEARTBEAT_TTL_S)


async def running(redis: aioredis.Redis, namespace: str) -> list[str]:
    """The ids of the workers that beat within the last :data:`HEARTBEAT_TTL_S` seconds."""
    prefix = f"{namespace}:worker:"
    keys = [k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)]
    return sorted((k.decode() if isinstance(k, bytes) else k)[len(prefix) :] for k in keys)


async def hold_activation(redis: aioredis.Redis, namespace: str, name: str) -> bool:
    """Take the activation lock; False when another activation holds it."""
    return bool(await redis.set(f"{namespace}:activating", name, nx=True, ex=ACTIVATION_TTL_S))


async def release_activation(redis: aioredis.Redis, namespace: str) -> None:
    await redis.delete(f"{namespace}:activating")


async def activation(redis: aioredis.Redis, namespace: str) -> str | None:
    """The name of the activation under way, if any."""
    value = await redis.get(f"{namespace}:activating")
    return value.decode() if isinstance(value, bytes) else value
