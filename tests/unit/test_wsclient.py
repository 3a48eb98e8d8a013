"""The bench's lean WebSocket client against the websockets library's server (the gateway's)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import ServerConnection, serve

from pitstop.bench.wsclient import Closed, HandshakeError, connect_kiosk


async def test_handshake_messages_of_every_length_fragments_ping_and_close() -> None:
    pongs: list[float] = []

    async def handler(ws: ServerConnection) -> None:
        hello = await ws.recv()  # a masked client frame: the server refuses unmasked ones
        await ws.send(f"echo {hello}")
        for size in (10, 125, 126, 65535, 65536, 300_000):
            await ws.send("x" * size)

        async def parts() -> AsyncIterator[str]:
            for part in ("frag", "ment", "ed"):
                yield part

        await ws.send(parts())  # one message in three frames
        pongs.append(await (await ws.ping()))  # answered by the client
        await ws.send("after the ping")
        await ws.close(4008, "client too slow")

    async with serve(handler, "127.0.0.1", 0, max_size=2**20) as server:
        port = server.sockets[0].getsockname()[1]
        kiosk = await asyncio.wait_for(connect_kiosk("127.0.0.1", port), 10)
        kiosk.send(b'{"type":"auth"}')
        assert await asyncio.wait_for(kiosk.recv(), 10) == b'echo {"type":"auth"}'
        for size in (10, 125, 126, 65535, 65536, 300_000):
            assert len(await asyncio.wait_for(kiosk.recv(), 10)) == size
        received: list[bytes] = []
        kiosk.listen(received.append)
        assert await asyncio.wait_for(kiosk.closed, 10) == 4008
        assert received == [b"fragmented", b"after the ping"]
        assert len(pongs) == 1
        with pytest.raises(Closed):
            await kiosk.recv()


async def test_a_server_that_does_not_upgrade_is_refused() -> None:
    async def not_websocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_websocket, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with pytest.raises(HandshakeError, match="not upgraded"):
        await asyncio.wait_for(connect_kiosk("127.0.0.1", port), 10)
    server.close()
