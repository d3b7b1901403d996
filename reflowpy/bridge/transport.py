"""Transports: how bridge frames travel, behind one small interface (as httpx's).

A :class:`Connection` moves whole frames (``bytes``) both ways; a :class:`Transport`
opens connections to one address. The session above never knows which one it has:

* :class:`WebSocketTransport` (``ws://`` / ``wss://``, trio-websocket): peers on other
  machines, and ``reflowpy serve``'s ``/bridge`` endpoint;
* :class:`StreamTransport` (``unix:/path`` or ``tcp://host:port``): length-prefixed
  frames over a byte stream, for local partition workers;
* :func:`memory_pair`: an in-process pair for tests, which can be cut at will.

Every implementation raises :class:`LinkClosed` from ``send``/``receive`` once the
connection is gone, whatever the cause (peer closed, reset, cut); the session treats
them all as "link down" and resumes on a new connection.
"""

from __future__ import annotations

import contextlib
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import trio
import trio_websocket

from reflowpy.bridge.frames import MAX_FRAME
from reflowpy.errors import BridgeError, BridgeProtocolError

__all__ = [
    "Connection",
    "LinkClosed",
    "MemoryConnection",
    "MemoryTransport",
    "StreamConnection",
    "StreamTransport",
    "Transport",
    "WebSocketConnection",
    "WebSocketTransport",
    "memory_pair",
    "serve_stream",
    "serve_websocket",
    "transport_for",
]

_LENGTH = struct.Struct(">I")


class LinkClosed(BridgeError):
    """The connection is gone (closed, reset or cut); the session reconnects."""


class Connection(Protocol):
    """One live connection carrying whole frames."""

    description: str

    async def send(self, frame: bytes) -> None:
        """Send one frame; raises :class:`LinkClosed` if the connection is gone."""
        ...

    async def receive(self) -> bytes:
        """The next frame; raises :class:`LinkClosed` when the connection ends."""
        ...

    async def aclose(self) -> None:
        """Close (idempotent)."""
        ...


class Transport(Protocol):
    """Opens connections to one address."""

    address: str

    def connect(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        """``async with transport.connect() as conn``; raises OSError/LinkClosed."""
        ...


# -- in memory ----------------------------------------------------------------------------


class MemoryConnection:
    """One end of :func:`memory_pair`. ``cut()`` kills both ends at once."""

    def __init__(self, send: trio.MemorySendChannel[bytes],
                 receive: trio.MemoryReceiveChannel[bytes], description: str) -> None:
        self._send = send
        self._receive = receive
        self.description = description
        self.other: MemoryConnection | None = None
        self.sent_frames = 0

    async def send(self, frame: bytes) -> None:
        try:
            await self._send.send(frame)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise LinkClosed(f"{self.description}: closed") from None
        self.sent_frames += 1

    async def receive(self) -> bytes:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError, trio.BrokenResourceError):
            raise LinkClosed(f"{self.description}: closed") from None

    def cut(self) -> None:
        for end in (self, self.other):
            if end is not None:
                end._send.close()
                end._receive.close()

    async def aclose(self) -> None:
        self.cut()


class MemoryTransport:
    """Connections to an in-process handler (a :class:`~reflowpy.bridge.host.Host`'s
    ``handle``), run in ``nursery``; ``connections`` keeps every dialer end, so a test
    can ``cut()`` the live one at any moment."""

    def __init__(self, handler: Callable[[Connection], Awaitable[None]],
                 nursery: trio.Nursery, address: str = "memory:host") -> None:
        self.handler = handler
        self.nursery = nursery
        self.address = address
        self.connections: list[MemoryConnection] = []

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Connection]:
        mine, theirs = memory_pair()
        self.connections.append(mine)

        async def serve() -> None:
            try:
                await self.handler(theirs)
            finally:
                theirs.cut()  # as a socket server closes the connection after its handler

        self.nursery.start_soon(serve)
        try:
            yield mine
        finally:
            mine.cut()


def memory_pair(buffer: int = 64) -> tuple[MemoryConnection, MemoryConnection]:
    """Two connected in-memory ends (``buffer`` frames in flight each way)."""
    a_send, b_recv = trio.open_memory_channel[bytes](buffer)
    b_send, a_recv = trio.open_memory_channel[bytes](buffer)
    a = MemoryConnection(a_send, a_recv, "memory:a")
    b = MemoryConnection(b_send, b_recv, "memory:b")
    a.other, b.other = b, a
    return a, b


# -- byte streams (Unix sockets, TCP) -----------------------------------------------------


class StreamConnection:
    """Length-prefixed frames over a trio byte stream; checks the size before buffering."""

    def __init__(self, stream: trio.abc.Stream, description: str,
                 max_frame: int = MAX_FRAME) -> None:
        self._stream = stream
        self.description = description
        self._max = max_frame
        self._buf = bytearray()
        self._send_lock = trio.Lock()

    async def send(self, frame: bytes) -> None:
        async with self._send_lock:
            try:
                await self._stream.send_all(_LENGTH.pack(len(frame)) + frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise LinkClosed(f"{self.description}: {exc or type(exc).__name__}"
                                 ) from None

    async def receive(self) -> bytes:
        buf = self._buf
        while True:
            if len(buf) >= 4:
                (size,) = _LENGTH.unpack_from(buf)
                if size > self._max + 1:
                    raise BridgeProtocolError(
                        f"{self.description}: frame length {size} exceeds the limit of"
                        f" {self._max}")
                if len(buf) >= 4 + size:
                    frame = bytes(buf[4:4 + size])
                    del buf[:4 + size]
                    return frame
            try:
                chunk = await self._stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise LinkClosed(f"{self.description}: {exc or type(exc).__name__}"
                                 ) from None
            if not chunk:
                raise LinkClosed(f"{self.description}: closed by the peer")
            buf += chunk

    async def aclose(self) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self._stream.aclose()


class StreamTransport:
    """``unix:/path/to/socket`` or ``tcp://host:port``."""

    def __init__(self, address: str, max_frame: int = MAX_FRAME) -> None:
        self.address = address
        self.max_frame = max_frame

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Connection]:
        stream: trio.abc.Stream
        if self.address.startswith("unix:"):
            stream = await trio.open_unix_socket(self.address[5:])
        elif self.address.startswith("tcp://"):
            host, _, port = self.address[6:].rpartition(":")
            stream = await trio.open_tcp_stream(host, int(port))
        else:
            raise BridgeError(f"not a stream address: {self.address!r}")
        conn = StreamConnection(stream, self.address, self.max_frame)
        try:
            yield conn
        finally:
            await conn.aclose()


async def serve_stream(
    listeners: list[trio.SocketListener],
    handler: Callable[[Connection], Awaitable[None]],
    *,
    max_frame: int = MAX_FRAME,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections on ``listeners`` and run ``handler`` on each (a task each)."""

    async def handle(stream: trio.SocketStream) -> None:
        conn = StreamConnection(stream, "stream peer", max_frame)
        try:
            await handler(conn)
        finally:
            await conn.aclose()

    task_status.started()
    await trio.serve_listeners(handle, listeners)


# -- WebSocket ---------------------------------------------------------------------------


class WebSocketConnection:
    """Binary WebSocket messages, one frame each (trio-websocket)."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, description: str) -> None:
        self._ws = ws
        self.description = description

    async def send(self, frame: bytes) -> None:
        try:
            await self._ws.send_message(frame)
        except (trio_websocket.ConnectionClosed, trio.BrokenResourceError, OSError):
            raise LinkClosed(f"{self.description}: closed") from None

    async def receive(self) -> bytes:
        try:
            message = await self._ws.get_message()
        except (trio_websocket.ConnectionClosed, trio.BrokenResourceError, OSError):
            raise LinkClosed(f"{self.description}: closed") from None
        if isinstance(message, str):
            raise BridgeProtocolError(f"{self.description}: text message; bridge frames are"
                                      " binary")
        return message

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.aclose()


class WebSocketTransport:
    """``ws://host:port/bridge`` or ``wss://`` (then ``ssl_context`` or the system CAs)."""

    def __init__(self, address: str, *, ssl_context: ssl.SSLContext | None = None,
                 max_frame: int = MAX_FRAME, connect_timeout: float = 10.0) -> None:
        self.address = address
        self.ssl_context = ssl_context
        self.max_frame = max_frame
        self.connect_timeout = connect_timeout

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Connection]:
        try:
            async with trio_websocket.open_websocket_url(
                    self.address, self.ssl_context, max_message_size=self.max_frame + 16,
                    connect_timeout=self.connect_timeout, disconnect_timeout=2,
                    message_queue_size=4) as ws:
                yield WebSocketConnection(ws, self.address)
        except (trio_websocket.HandshakeError, trio_websocket.ConnectionClosed) as exc:
            raise LinkClosed(f"{self.address}: {exc}") from None


async def serve_websocket(
    handler: Callable[[Connection], Awaitable[None]], host: str, port: int, *,
    ssl_context: ssl.SSLContext | None = None, max_frame: int = MAX_FRAME,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A bare WebSocket bridge listener (``reflowpy serve`` mounts ``/bridge`` instead)."""

    async def on_request(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        conn = WebSocketConnection(ws, f"ws peer {ws.remote}")
        try:
            await handler(conn)
        finally:
            await conn.aclose()

    await trio_websocket.serve_websocket(
        on_request, host, port, ssl_context, max_message_size=max_frame + 16,
        message_queue_size=4, task_status=task_status)


def transport_for(address: str, *, ssl_context: ssl.SSLContext | None = None) -> Transport:
    """The transport an address names (``ws://``, ``wss://``, ``unix:``, ``tcp://``)."""
    if address.startswith(("ws://", "wss://")):
        return WebSocketTransport(address, ssl_context=ssl_context)
    if address.startswith(("unix:", "tcp://")):
        return StreamTransport(address)
    raise BridgeError(f"unknown bridge address {address!r}: expected ws://, wss://, unix: or"
                      " tcp://")
