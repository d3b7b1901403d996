"""Transports: how bridge frames travel, behind one small interface (as httpx's).

A :class:`Connection` moves whole frames (``bytes``) both ways; a :class:`Transport`
opens connections to one address. The session above never knows which one it has:

* :class:`~reflowpy.bridge.websocket.WebSocketTransport` (``ws://`` / ``wss://``, in
  :mod:`reflowpy.bridge.websocket`): peers on other machines, and ``reflowpy serve``'s
  ``/bridge`` endpoint;
* :class:`StreamTransport` (``unix:/path`` or ``tcp://host:port``): length-prefixed
  frames over a byte stream, for local partition workers;
* :func:`memory_pair`: an in-process pair for tests, which can be cut at will.

Every implementation raises :class:`LinkClosed` from ``send``/``receive`` once the
connection is gone, whatever the cause (peer closed, reset, cut); the session treats
them all as "link down" and resumes on a new connection.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

import trio

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
    "memory_pair",
    "serve_stream",
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

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        """Send ``frames`` in order, in as few writes as the transport allows (the
        session's writer sends each round's frames this way)."""
        ...

    # Optional: ``send_frames_nowait(frames) -> bool`` sends without waiting (from a
    # task that must not block: the one that produced the message) and returns True
    # when bytes are left for ``send_frames([])``. Transports over a plain socket
    # (Unix, TCP, ws://) have it; the session writes from its writer task otherwise.

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
        self._pending: deque[bytes] = deque()  # in order, ahead of anything sent later
        self._busy = False

    async def send(self, frame: bytes) -> None:
        await self.send_frames((frame,))

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        self._pending.extend(frames)
        if self._busy:  # a send under way sends them
            return
        self._busy = True
        try:
            while self._pending:
                try:
                    await self._send.send(self._pending[0])
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    raise LinkClosed(f"{self.description}: closed") from None
                self._pending.popleft()
                self.sent_frames += 1
        finally:
            self._busy = False

    def send_frames_nowait(self, frames: Sequence[bytes]) -> bool:
        """As a socket's: what the channel takes now; True when some are left for
        ``send_frames([])``."""
        if self._busy:
            self._pending.extend(frames)
            return False
        for i, frame in enumerate(frames):
            if self._pending:
                self._pending.extend(frames[i:])
                return True
            try:
                self._send.send_nowait(frame)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                self._pending.extend(frames[i:])
                return True
            self.sent_frames += 1
        return False

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


_CHUNK = 65536
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class _Pipe:
    """Reads and writes the byte stream under one connection.

    On a plain socket (a ``trio.SocketStream``) it calls ``os.read``/``os.write`` on
    the descriptor and waits with ``wait_readable``/``wait_writable`` only when the
    socket is not ready: trio's stream methods add a scheduling round trip after every
    successful call, and a bridge round trip makes four of them. A read that got less
    than it asked for drained the socket, so the next read waits first instead of
    failing with ``EAGAIN`` (a system call and an exception per frame on a quiet
    link). A pipe still yields after 16 calls in a row that did not have to wait, and
    checks for cancellation on every call, so a peer that floods cannot starve the
    other tasks. Other streams (TLS) go through their own ``receive_some``/``send_all``.

    The descriptor is looked up once; :meth:`close` forgets it before the stream is
    closed (so a later call fails with ``EBADF`` instead of reaching a descriptor the
    process reused).

    Writes come from the session's writer and, rarely, from its reader (answers to a
    ping or a close); a write while another is under way is queued and sent by that
    one, so no lock (and no lock's checkpoint) is needed.
    """

    __slots__ = ("_drained", "_fd", "_out", "_socket", "_streak", "_stream", "_writing",
                 "broken")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._fd = -1 if self._socket is None else self._socket.fileno()
        self._drained = False
        self._out = bytearray()
        self._writing = False
        self._streak = 0
        self.broken = False

    def close(self) -> None:
        """Forget the descriptor (call before closing the stream)."""
        self._fd = -1

    async def _ready(self) -> None:
        self._streak += 1
        if self._streak >= 16:
            self._streak = 0
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()

    async def read(self, description: str) -> bytes | bytearray:
        """The next bytes (at least one); raises :class:`LinkClosed` at the end."""
        try:
            sock = self._socket
            if sock is None:
                chunk = await self._stream.receive_some(_CHUNK)
            else:
                waited = self._drained
                if waited:  # the last read emptied the socket: wait for more
                    self._streak = 0
                    await trio.lowlevel.wait_readable(sock)
                while True:
                    try:
                        chunk = os.read(self._fd, _CHUNK)
                        break
                    except BlockingIOError:
                        self._streak = 0
                        waited = True
                        await trio.lowlevel.wait_readable(sock)
                self._drained = len(chunk) < _CHUNK
                if not waited:  # (a wait was the checkpoint)
                    await self._ready()
        except _STREAM_ERRORS as exc:
            raise LinkClosed(f"{description}: {exc or type(exc).__name__}") from None
        if not chunk:
            raise LinkClosed(f"{description}: connection closed by the peer")
        return chunk

    async def _send_all(self, data: bytes) -> None:
        sock = self._socket
        if sock is None:
            await self._stream.send_all(data)
            return
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view):]
            except BlockingIOError:
                self._streak = 0
                await trio.lowlevel.wait_writable(sock)
        await self._ready()

    def write_nowait(self, data: bytes) -> bool:
        """Send what the socket takes of ``data`` now, without waiting; returns True
        when bytes are left over (queued here, in order): then someone must call
        :meth:`write` (``b""`` will do) soon, which sends them first. A broken stream
        also returns True: that :meth:`write` raises :class:`LinkClosed`. Behind a
        write under way, ``data`` is queued for it (False: it sends them)."""
        if self._writing:
            self._out += data
            return False
        sock = self._socket
        if self._out or self.broken or sock is None:
            self._out += data
            return True
        try:
            sent = os.write(self._fd, data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.broken = True
            return True
        if sent < len(data):
            self._out += memoryview(data)[sent:]
            return True
        return False

    async def write(self, data: bytes, description: str) -> None:
        """Send ``data`` (or queue it behind a write under way); bytes left by
        :meth:`write_nowait` go first."""
        if self.broken:
            raise LinkClosed(f"{description}: closed")
        if self._writing:
            self._out += data
            return
        if self._out:
            self._out += data
            data = bytes(self._out)
            self._out.clear()
        self._writing = True
        try:
            await self._send_all(data)
            while self._out:
                data = bytes(self._out)
                self._out.clear()
                await self._send_all(data)
        except _STREAM_ERRORS as exc:
            self.broken = True
            raise LinkClosed(f"{description}: {exc or type(exc).__name__}") from None
        except BaseException:  # cancelled mid-write: the stream is unusable
            self.broken = True
            raise
        finally:
            self._writing = False


class StreamConnection:
    """Length-prefixed frames over a trio byte stream; checks the size before buffering."""

    def __init__(self, stream: trio.abc.Stream, description: str,
                 max_frame: int = MAX_FRAME) -> None:
        self._stream = stream
        self.description = description
        self._max = max_frame
        self._buf = bytearray()
        self._pipe = _Pipe(stream)

    async def send(self, frame: bytes) -> None:
        await self._pipe.write(_LENGTH.pack(len(frame)) + frame, self.description)

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        await self._pipe.write(self._join(frames), self.description)

    def send_frames_nowait(self, frames: Sequence[bytes]) -> bool:
        """Send ``frames`` without waiting, as far as the socket takes them; True when
        some are left for :meth:`send_frames` (``[]`` will do) to finish."""
        return self._pipe.write_nowait(self._join(frames))

    @staticmethod
    def _join(frames: Sequence[bytes]) -> bytes:
        pack = _LENGTH.pack
        if len(frames) == 1:
            return pack(len(frames[0])) + frames[0]
        return b"".join([b for f in frames for b in (pack(len(f)), f)])

    def _size(self, buf: bytes | bytearray) -> int:
        """The length of the frame whose prefix starts ``buf`` (checked)."""
        size: int = _LENGTH.unpack_from(buf)[0]
        if size > self._max + 1:
            raise BridgeProtocolError(f"{self.description}: frame length {size} exceeds"
                                      f" the limit of {self._max}")
        return size

    async def receive(self) -> bytes:
        buf = self._buf
        while True:
            if len(buf) >= 4:
                size = self._size(buf)
                if len(buf) >= 4 + size:
                    frame = bytes(buf[4:4 + size])
                    del buf[:4 + size]
                    return frame
            chunk = await self._pipe.read(self.description)
            # one whole frame in one read (an exchange): no copy into the buffer
            if not buf and len(chunk) >= 4 and len(chunk) == 4 + self._size(chunk):
                return bytes(chunk[4:])
            buf += chunk

    async def aclose(self) -> None:
        self._pipe.close()
        with contextlib.suppress(*_STREAM_ERRORS):
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
