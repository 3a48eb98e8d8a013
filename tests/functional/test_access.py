"""Access control through a real gateway and Redis: the authorization matrix (every token kind x every
resource, allowed exactly where the table says), and abuse (bad origin, no token, expired, revoked,
another centre, another technician, oversize, flood, a token expiring while connected), each refused
with its close code while a well-behaved kiosk keeps getting its board."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from config.directory import load_directory
from config.settings import DEFAULT_DIRECTORY
from dashboards.gateway import Gateway
from dashboards.tokens import issue_token, verify_token
from pitstop.services import Service
from state.league import League, LedgerRecord
from state.revocations import revoke
from tests.conftest import seconds
from tests.functional.conftest import award, running_gateway

SECRET = "access-test-secret-0123456789abcdefghij"
DIRECTORY = load_directory(DEFAULT_DIRECTORY)

# C01: west, MH.  C05: north, HR.  S0001: a technician at C01.  The table is written out by hand.
TOKENS = {
    "kiosk C01": ("kiosk", "C01"),
    "technician S0001": ("technician", "S0001"),
    "manager west": ("manager", "west"),
    "manager C05": ("manager", "C05"),
}
RESOURCES = [
    "board:centre:C01:all",
    "board:centre:C01:technician",
    "board:centre:C05:all",
    "board:region:west:all",
    "board:region:north:all",
    "board:state:MH:all",
    "board:state:HR:all",
    "board:nation:all:all",
    "awards:S0001",
    "awards:S0002",
    "alerts:west",
    "alerts:C01",
    "alerts:north",
    "alerts:C05",
]
ALLOWED = {
    "kiosk C01": {
        "board:centre:C01:all",
        "board:centre:C01:technician",
        "board:region:west:all",
        "board:state:MH:all",
        "board:nation:all:all",
    },
    "technician S0001": {"board:centre:C01:all", "board:centre:C01:technician", "awards:S0001"},
    "manager west": {
        "board:centre:C01:all",
        "board:centre:C01:technician",
        "board:region:west:all",
        "alerts:west",
        "alerts:C01",
    },
    "manager C05": {"board:centre:C05:all", "alerts:C05"},
}
REPLY = {"board": "snapshot", "alerts": "alerts", "awards": "subscribed"}


@pytest.fixture
async def gateway(redis_server: Service, namespace: str) -> AsyncIterator[Gateway]:
    async with running_gateway(
        redis_server.url, namespace, SECRET, allowed_origins=("https://screens.example.com",)
    ) as gw:
        yield gw


async def _login(gw: Gateway, token: str) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{gw.port}/ws")
    await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
    return ws


async def _drain(ws: ClientConnection, quiet_s: float = 0.2) -> list[dict[str, Any]]:
    got = []
    while True:
        try:
            got.append(orjson.loads(await asyncio.wait_for(ws.recv(), quiet_s)))
        except TimeoutError:
            return got


async def _closed_with(ws: ClientConnection) -> tuple[int | None, str]:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), seconds(10))
    frame = info.value.rcvd
    return (frame.code, frame.reason) if frame else (None, "")


@pytest.mark.parametrize("who", list(TOKENS))
async def test_authorization_matrix(gateway: Gateway, who: str) -> None:
    """Each token kind asks for each resource: granted exactly where ALLOWED says, refused (4403) elsewhere."""
    kind, subject = TOKENS[who]
    token = issue_token(SECRET, kind, subject)
    outcomes = {}
    for resource in RESOURCES:
        ws = await _login(gateway, token)
        await _drain(ws)
        await ws.send(orjson.dumps({"type": "subscribe", "resource": resource}).decode())
        try:
            reply = orjson.loads(await asyncio.wait_for(ws.recv(), seconds(5)))
            outcomes[resource] = reply["type"] == REPLY[resource.split(":")[0]]
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4403, (resource, closed.rcvd)
            assert closed.rcvd.reason == f"not allowed: {resource}"
            outcomes[resource] = False
        await ws.close()
    assert {r for r, ok in outcomes.items() if ok} == ALLOWED[who]


async def test_a_granted_board_view_is_served_and_moves_with_its_board(gateway: Gateway, namespace: str) -> None:
    """A kiosk switched to its region's technician board gets that board's snapshot and then its deltas."""
    league = League(gateway.redis, namespace)
    ws = await _login(gateway, issue_token(SECRET, "kiosk", "C01"))
    await _drain(ws)
    await ws.send('{"type": "subscribe", "resource": "board:region:west:technician"}')
    snapshot = orjson.loads(await asyncio.wait_for(ws.recv(), seconds(5)))
    assert snapshot["type"] == "snapshot" and snapshot["scope"] == {"kind": "region", "id": "west", "name": "west"}
    assert snapshot["role"] == "technician"
    current = snapshot["season"]
    await league.apply([LedgerRecord(0, 0, replace(award(1, "S0002", 30, season=current), award_id="x1"))])
    delta = await _next(ws, "delta")
    assert delta["board"] == f"lg:{current}:region:west:technician"
    assert [e["staff_id"] for e in delta["entries"]] == ["S0002"]
    await ws.close()


async def _next(ws: ClientConnection, kind: str) -> dict[str, Any]:
    deadline = time.monotonic() + seconds(5)
    while time.monotonic() < deadline:
        message: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), seconds(5)))
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind}")


async def test_abuse_is_refused_with_its_close_code_and_others_are_unaffected(gateway: Gateway, namespace: str) -> None:
    league = League(gateway.redis, namespace)
    watcher = await _login(gateway, issue_token(SECRET, "kiosk", "C01"))
    first = await _drain(watcher)
    season = next(m for m in first if m["type"] == "snapshot")["season"]
    base = f"ws://127.0.0.1:{gateway.port}/ws"

    # bad origin: refused at the handshake; an allowed origin is let in
    with pytest.raises(InvalidStatus) as refused:
        await connect(base, origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    allowed = await connect(base, origin="https://screens.example.com")  # type: ignore[arg-type]
    await allowed.close()

    cases: list[tuple[str, Any, int, str]] = [
        ("no token", {"type": "auth"}, 4401, "token must be a non-empty string"),
        (
            "expired",
            {"type": "auth", "token": issue_token(SECRET, "kiosk", "C01", ttl_s=5, now=time.time() - 60)},
            4401,
            "token expired",
        ),
    ]
    for name, first_message, code, reason in cases:
        ws = await connect(base)
        await ws.send(orjson.dumps(first_message).decode())
        assert await _closed_with(ws) == (code, reason), name

    # revoked: refused at auth, and the connection it had open is closed at once
    token = issue_token(SECRET, "technician", "S0001")
    live = await _login(gateway, token)
    await _drain(live)
    claims = verify_token(SECRET, token)
    assert await revoke(gateway.redis, namespace, claims.token_id, claims.expires_at)
    assert await _closed_with(live) == (4401, "token revoked")
    again = await _login(gateway, token)
    assert await _closed_with(again) == (4401, "token revoked")

    # another centre, another technician: 4403
    kiosk = await _login(gateway, issue_token(SECRET, "kiosk", "C01"))
    await _drain(kiosk)
    await kiosk.send('{"type": "subscribe", "resource": "board:centre:C05:all"}')
    assert await _closed_with(kiosk) == (4403, "not allowed: board:centre:C05:all")
    tech = await _login(gateway, issue_token(SECRET, "technician", "S0001"))
    await _drain(tech)
    await tech.send('{"type": "subscribe", "resource": "awards:S0002"}')
    assert await _closed_with(tech) == (4403, "not allowed: awards:S0002")
    odd = await _login(gateway, issue_token(SECRET, "kiosk", "C01"))
    await _drain(odd)
    await odd.send('{"type": "subscribe", "resource": "board:galaxy:all:all"}')
    assert (await _closed_with(odd))[0] == 4400

    # oversize and flood
    big = await _login(gateway, issue_token(SECRET, "kiosk", "C01"))
    await _drain(big)
    await big.send("x" * 10_000)
    assert (await _closed_with(big))[0] == 1009
    flood = await _login(gateway, issue_token(SECRET, "kiosk", "C01"))
    await _drain(flood)
    for _ in range(50):
        await flood.send('{"type": "pong"}')
    assert await _closed_with(flood) == (4429, "too many messages")

    # a token that expires while connected is cut when it does
    short = await _login(gateway, issue_token(SECRET, "kiosk", "C01", ttl_s=2))
    await _drain(short)
    assert await _closed_with(short) == (4401, "token expired")

    # through all of it, the watcher kept its connection and still gets its board's changes
    await league.apply([LedgerRecord(0, 0, replace(award(7, "S0001", 15, season=season), award_id="w7"))])
    delta = await _next(watcher, "delta")
    assert [e["staff_id"] for e in delta["entries"]] == ["S0001"]
    await watcher.close()
