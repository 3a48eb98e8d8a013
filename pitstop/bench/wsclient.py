"""A lean WebSocket client for the bench's kiosks (RFC 6455, what a kiosk page needs and nothing more).

The bench's kiosks run on the machine they measure. With the websockets library's client, 1,000 of them
took half a core at 1,000 events/s (about 60 µs per message received: its frame parser, a queue and a
task switch per message), more than the worker. This client parses frames straight from
``data_received`` and hands each text message to a callback, so a message costs a few microseconds.
What it does: the opening handshake (its ``Sec-WebSocket-Accept`` checked), unmasked server frames
(fragments joined), masked client text frames, a pong for each ping, and the closing handshake. What it
does not: extensions (it offers none), and sending large or fragmented messages.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections import deque
from collections.abc import Callable
from typing import cast

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


class HandshakeError(ConnectionError):
    pass


class Closed(ConnectionError):
    """The connection ended (``code`` from the server's close frame, or 1006 when it just dropped)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"connection closed ({code})")
        self.code = code


class KioskSocket(asyncio.Protocol):
    """One client connection. ``recv()`` while setting up; then ``listen(callback)`` for the rest."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.key = base64.b64encode(os.urandom(16))
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self.key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()
        self._upgraded = False
        self._fragments: list[bytes] = []
        self._queue: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._callback: Callable[[bytes], None] | None = None

    # --- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._upgraded and not self._handshake():
            return
        self._frames()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(HandshakeError(f"connection lost during the handshake: {exc!r}"))
        if not self.closed.done():
            self.closed.set_result(1006)
        self._wake()

    # --- sending -----------------------------------------------------------------------------------

    def send(self, payload: bytes, opcode: int = TEXT) -> None:
        """One masked frame (client frames must be masked)."""
        assert self.transport is not None
        n = len(payload)
        if n < 126:
            header = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        if n:
            repeated = (mask * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
        self.transport.write(header + mask + payload)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # --- receiving ---------------------------------------------------------------------------------

    async def recv(self) -> bytes:
        """The next message (while setting up); raises Closed once the connection has ended."""
        while not self._queue:
            if self.closed.done():
                raise Closed(self.closed.result())
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._queue.popleft()

    def listen(self, callback: Callable[[bytes], None]) -> None:
        """From now on each message goes to ``callback`` (the ones already received first)."""
        self._callback = callback
        while self._queue:
            callback(self._queue.popleft())

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _handshake(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > 16384:
                self._fail(HandshakeError("no end to the handshake response"))
            return False
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
        accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest()).decode()
        if not head[0].startswith("HTTP/1.1 101"):
            self._fail(HandshakeError(f"not upgraded: {head[0]!r}"))
            return False
        if headers.get("sec-websocket-accept") != accept:
            self._fail(HandshakeError("wrong Sec-WebSocket-Accept"))
            return False
        self._upgraded = True
        self.opened.set_result(None)
        return True

    def _frames(self) -> None:
        buffer = self._buffer
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            if second & 0x80:
                self._fail(ConnectionError("the server masked a frame"))
                return
            length, start = second & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + length:
                return
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            opcode = first & 0x0F
            if opcode in (TEXT, BINARY, CONTINUATION):
                self._fragments.append(payload)
                if first & 0x80:  # FIN: the message is whole
                    message = self._fragments[0] if len(self._fragments) == 1 else b"".join(self._fragments)
                    self._fragments = []
                    if self._callback is not None:
                        self._callback(message)
                    else:
                        self._queue.append(message)
                        self._wake()
            elif opcode == PING:
                self.send(payload, PONG)
            elif opcode == CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                if not self.closed.done():
                    self.closed.set_result(code)
                self.send(payload[:2], CLOSE)
                assert self.transport is not None
                self.transport.close()
                self._wake()
                return

    def _fail(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        self.abort()


async def connect_kiosk(
    host: str, port: int, *, path: str = "/ws", local_addr: tuple[str, int] | None = None
) -> KioskSocket:
    """Open a connection and complete the opening handshake (the caller bounds the time)."""
    loop = asyncio.get_running_loop()
    _, socket = await loop.create_connection(lambda: KioskSocket(host, port, path), host, port, local_addr=local_addr)
    await socket.opened
    return socket
