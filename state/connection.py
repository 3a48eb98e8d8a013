"""How Pitstop's processes open their Redis clients: no deadline per reply, a dead peer found by TCP.

redis-py 8 gives every client a 5 s ``socket_timeout`` by default (it had none up to 7.x), and applies
it to each reply it reads: an ``asyncio.timeout`` per reply, so a pipeline of 50 commands arms and
cancels 50 timers. Measured here (``docs/benchmarks.md``, fourth session): a 50-command pipeline cost
the client 711 µs of CPU with redis-py 8.1 and 425 µs with 7.4 (the worker, whose calls are mostly one
script each, changed within the runs' spread). A deadline per reply is also the wrong one for this
project: the league's apply script over a large gap, or a rebuild, can run past 5 s, and a read
abandoned then is retried whole, again and again.

So the clients read without a deadline, as they did before redis-py 8, and a connection whose peer
is gone (a host that vanished without a reset) is found by TCP keepalive instead: probed after
``KEEPALIVE_IDLE_S`` of silence, given up after ``KEEPALIVE_PROBES`` unanswered probes, then the call
fails with ``ConnectionError`` and the caller's retry (``Scorer._retry``) reconnects. A Redis that is
merely slow is waited for. Connecting keeps a deadline (``CONNECT_TIMEOUT_S``).
"""

from __future__ import annotations

import socket
from typing import Any

import redis.asyncio as aioredis

CONNECT_TIMEOUT_S = 5.0
KEEPALIVE_IDLE_S = 10  # silence before the first probe
KEEPALIVE_INTERVAL_S = 5  # between probes
KEEPALIVE_PROBES = 3  # unanswered probes before the connection is given up: ~25 s after the peer went


def client_options() -> dict[str, Any]:
    """The keyword arguments every Pitstop Redis client (or connection pool) is made with."""
    keepalive: dict[int, int] = {}
    # Linux names; elsewhere the system's keepalive defaults apply.
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
    ):
        if hasattr(socket, name):
            keepalive[getattr(socket, name)] = value
    return {
        "socket_timeout": None,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_keepalive": True,
        "socket_keepalive_options": keepalive,
    }


def connect(url: str) -> aioredis.Redis:
    """An asyncio client for ``url`` (``redis://host:port/db``)."""
    return aioredis.from_url(url, **client_options())


def pooled(url: str, *, max_connections: int, wait_s: float) -> aioredis.Redis:
    """An asyncio client whose callers wait up to ``wait_s`` for one of ``max_connections`` connections
    when all are in use, instead of failing (the gateway, when every kiosk reconnects at once)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=wait_s, **client_options()
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: closing it closes the connections
