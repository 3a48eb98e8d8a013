"""Chaos G6: one kiosk that never reads, among 50 that measure their latency.

Runs its own redis-server and a gateway process (``pitstop gateway``); a driver applies awards to one
centre's board through the league's Lua script at a steady rate and notes when each board version was
applied; 50 kiosk clients record, for every delta, the time from the apply to its arrival. Phase A runs
without the stalled client, phase B with a raw-socket kiosk that authenticates and then never reads
(a 4 KiB receive buffer). Reported: p50/p99 per phase, how long until the gateway cut the stalled client,
and the gateway's RSS at the end of each phase.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import redis.asyncio as aioredis
from websockets.asyncio.client import connect

from agents.scoring import Award
from config.directory import load_directory
from config.settings import DEFAULT_DIRECTORY
from dashboards.tokens import issue_token
from pitstop.services import free_port, rss_mb, start_redis
from state.league import League, LedgerRecord, board_key

SECRET = "stalled-kiosk-scenario-secret-0123456789"
CENTRE = "C01"


@dataclass
class Phase:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    rss_mb: float = 0.0

    def summary(self) -> dict[str, Any]:
        values = np.array(self.latencies_ms) if self.latencies_ms else np.array([0.0])
        return {
            "deltas": len(self.latencies_ms),
            "p50_ms": round(float(np.percentile(values, 50)), 1),
            "p99_ms": round(float(np.percentile(values, 99)), 1),
            "max_ms": round(float(values.max()), 1),
            "gateway_rss_mb": round(self.rss_mb, 1),
        }


def _masked_text_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    header = bytes([0x81])
    length = len(payload)
    header += bytes([0x80 | length]) if length < 126 else bytes([0x80 | 126]) + struct.pack("!H", length)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def open_stalled_kiosk(port: int, token: str) -> socket.socket:
    """A WebSocket client by hand: handshake, send auth, then never read again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1024)
    assert response.startswith(b"HTTP/1.1 101"), response[:80]
    sock.sendall(_masked_text_frame(orjson.dumps({"type": "auth", "token": token})))
    return sock


def _gateway_kiosks(port: int) -> int:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    for line in text.splitlines():
        if line.startswith('pitstop_ws_clients{kind="kiosk"}'):
            return int(float(line.split()[-1]))
    return 0


async def _run(clients: int, rate: float, phase_s: float) -> dict[str, Any]:
    directory = load_directory(DEFAULT_DIRECTORY)
    staff = sorted(s.id for s in directory.staff.values() if s.centre_id == CENTRE)
    redis_service = start_redis(appendonly=False)
    port = free_port()
    env = {
        **os.environ,
        "PITSTOP_REDIS_URL": redis_service.url,
        "PITSTOP_GATEWAY_PORT": str(port),
        "PITSTOP_TOKEN_SECRET": SECRET,
        "PITSTOP_REDIS_NAMESPACE": "g6",
    }
    gateway = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        [sys.executable, "-m", "pitstop", "gateway"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    redis = aioredis.from_url(redis_service.url)
    league = League(redis, "g6")
    applied_at: dict[int, float] = {}
    season = datetime.now(UTC).astimezone(directory.centres[CENTRE].timezone).strftime("%Y-%m")
    board = board_key(season, "centre", CENTRE)
    phase = Phase("A")
    stop = asyncio.Event()
    try:
        assert gateway.stdout is not None
        while b"GATEWAY_PORT=" not in gateway.stdout.readline():
            pass
        token = issue_token(SECRET, "kiosk", CENTRE)

        async def kiosk() -> None:
            async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
                await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
                while not stop.is_set():
                    try:
                        message = orjson.loads(await asyncio.wait_for(ws.recv(), 1.0))
                    except TimeoutError:
                        continue
                    if message["type"] == "delta" and message["seq"] in applied_at:
                        phase.latencies_ms.append((time.monotonic() - applied_at[message["seq"]]) * 1000)

        async def drive() -> None:
            n = 0
            while not stop.is_set():
                person = staff[n % len(staff)]
                award = Award(
                    f"g6-{n}",
                    f"e{n}",
                    "recognition.given",
                    "recognition.spot",
                    1,
                    person,
                    "technician",
                    CENTRE,
                    "west",
                    "MH",
                    season,
                    5,
                    "2026-11-23T10:00:00+05:30",
                    {},
                    (),
                    "G6",
                )
                await league.apply([LedgerRecord(0, n, award)])
                version, _ = await league.board(board, limit=1)
                applied_at[version] = time.monotonic()
                n += 1
                await asyncio.sleep(1 / rate)

        tasks = [asyncio.create_task(kiosk()) for _ in range(clients)]
        tasks.append(asyncio.create_task(drive()))
        await asyncio.sleep(phase_s)
        phase.rss_mb = rss_mb(gateway.pid)
        result_a = phase.summary()

        phase = Phase("B")
        stalled = open_stalled_kiosk(port, token)
        stalled_at = time.monotonic()
        cut_after = None
        while time.monotonic() - stalled_at < max(phase_s, 60):
            await asyncio.sleep(0.5)
            if cut_after is None and time.monotonic() - stalled_at > 2 and _gateway_kiosks(port) <= clients:
                cut_after = round(time.monotonic() - stalled_at, 1)
            if cut_after is not None and time.monotonic() - stalled_at >= phase_s:
                break
        phase.rss_mb = rss_mb(gateway.pid)
        result_b = phase.summary()
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        stalled.close()
        return {
            "scenario": "G6",
            "kiosks": clients,
            "changes_per_s": rate,
            "without_stalled": result_a,
            "with_stalled": result_b,
            "p99_shift_ms": round(result_b["p99_ms"] - result_a["p99_ms"], 1),
            "stalled_cut_after_s": cut_after,
        }
    finally:
        await redis.aclose()
        gateway.terminate()
        gateway.wait(10)
        redis_service.stop()


def main(*, as_json: bool, clients: int = 50, rate: float = 20.0, phase_s: float = 30.0) -> int:
    result = asyncio.run(_run(clients, rate, phase_s))
    ok = (
        result["stalled_cut_after_s"] is not None
        and result["stalled_cut_after_s"] <= 30
        and result["p99_shift_ms"] < 100
    )
    if as_json:
        print(orjson.dumps(result).decode())
    else:
        print("| phase | deltas | p50 ms | p99 ms | max ms | gateway RSS MB |")
        print("|---|---|---|---|---|---|")
        for name, key in (("50 kiosks", "without_stalled"), ("50 kiosks + 1 stalled", "with_stalled")):
            r = result[key]
            print(f"| {name} | {r['deltas']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['gateway_rss_mb']} |")
        print(f"stalled kiosk cut after {result['stalled_cut_after_s']} s; p99 moved {result['p99_shift_ms']} ms")
        print(f"verdict: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1
