"""Pitstop's Redis clients (state.connection) wait for a slow reply instead of abandoning it.

redis-py 8 reads every reply under a 5 s deadline by default; a script that runs longer (the league's
apply script over a large gap, a rebuild) would be abandoned and retried whole, again and again.
"""

from __future__ import annotations

import socket

import pytest

from pitstop.services import Service
from state.connection import client_options, connect, pooled

# Busy for the given milliseconds, then return them: longer than redis-py 8's default reply deadline.
SLOW_SCRIPT = """
local function ms() local t = redis.call('TIME') return t[1] * 1000 + math.floor(t[2] / 1000) end
local until_ms = ms() + tonumber(ARGV[1])
while ms() < until_ms do end
return ARGV[1]
"""


async def test_a_reply_slower_than_five_seconds_is_waited_for(redis_server: Service) -> None:
    client = connect(redis_server.url)
    try:
        assert await client.eval(SLOW_SCRIPT, 0, 5500) == b"5500"
    finally:
        await client.aclose()


async def test_the_gateways_pooled_client_has_the_same_options(redis_server: Service) -> None:
    client = pooled(redis_server.url, max_connections=2, wait_s=1)
    try:
        assert await client.ping()
        kwargs = client.connection_pool.connection_kwargs
        assert {k: kwargs[k] for k in client_options()} == client_options()
    finally:
        await client.aclose()


def test_dead_peers_are_found_by_keepalive_and_connecting_has_a_deadline() -> None:
    options = client_options()
    assert options["socket_timeout"] is None
    assert options["socket_keepalive"] is True
    assert options["socket_connect_timeout"] == pytest.approx(5.0)
    if hasattr(socket, "TCP_KEEPIDLE"):
        assert options["socket_keepalive_options"][socket.TCP_KEEPIDLE] == 10
