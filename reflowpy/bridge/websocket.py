"""The bridge's WebSocket transport: RFC 6455 framing of its own over a trio stream.

Peers on other machines dial ``ws://host:port/bridge`` (``wss://`` with TLS). One
bridge frame is one binary WebSocket message. wsproto (h11) checks the HTTP upgrade;
after it, the frames are written and parsed here, because the bridge's frames are
small and many: wsproto spends some 40-80 us of Python per message and trio-websocket
adds a reader task and a memory channel (two more task switches) on top, which was
most of a loopback round trip (``python -m benchmarks bridge --only transport``).

The connection has no task of its own: the session's reader task parses what arrives
(:meth:`WebSocketConnection.receive`) and its writer task writes
(:meth:`WebSocketConnection.send_frames`, a round's frames in one ``send_all``).
Clients mask every frame with a fresh key from ``os.urandom`` (drawn 4 KiB at a time:
one system call per 1024 frames, not one per frame), servers never do, and
each side refuses frames masked the wrong way (RFC 6455 5.1); pings are answered.

Limits: a message larger than ``max_frame`` (+ the codec's flag byte) is refused as
soon as a frame header announces it, before its payload is buffered (close code 1009,
:class:`~reflowpy.BridgeProtocolError`); the HTTP upgrade is at most 16 KiB and must
finish within ``handshake_timeout``; text messages, reserved bits and malformed
control frames close the connection (1003/1002). The socket has ``TCP_NODELAY``
(trio's default for TCP streams), so small frames are not held back by Nagle.

``reflowpy serve``'s ``/bridge`` (:mod:`reflowpy.bridge.endpoint`) speaks the same
protocol through Hypercorn; :func:`serve_websocket` is the bare listener of a
standalone peer (``python -m reflowpy.bridge.worker --listen ws://...``).
"""

from __future__ import annotations

import contextlib
import os
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import trio
import wsproto
import wsproto.events as wse
from wsproto.utilities import RemoteProtocolError

from reflowpy.bridge.frames import MAX_FRAME
from reflowpy.bridge.transport import Connection, LinkClosed, _Pipe
from reflowpy.errors import BridgeError, BridgeProtocolError

__all__ = ["WebSocketConnection", "WebSocketServer", "WebSocketTransport", "serve_websocket"]

_CHUNK = 65536
_TOO_BIG = 1009  # RFC 6455: message too big
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class _Refused(Exception):
    """A peer broke the WebSocket protocol: close with ``code`` (RFC 6455 section 7.4)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


_XOR = [bytes(b ^ k for b in range(256)) for k in range(256)]
#: Below this many bytes, masking XORs two integers (a few operations in all); above
#: it, four byte-translations are faster (the integers' cost grows faster).
_SMALL_MASK = 512


def _mask(key: bytes | bytearray, data: bytes | bytearray) -> bytes | bytearray:
    """``data`` XOR the 4-byte ``key`` repeated (RFC 6455 5.3), at C level."""
    n = len(data)
    if n < _SMALL_MASK:
        pad = (key * ((n >> 2) + 1))[:n]
        return (int.from_bytes(data, "little") ^ int.from_bytes(pad, "little")
                ).to_bytes(n, "little")
    out = bytearray(data)
    for i in range(4):
        out[i::4] = out[i::4].translate(_XOR[key[i]])
    return out


def _frame(opcode: int, payload: bytes, masked: bool) -> bytes:
    """One whole (unfragmented) frame: header, then the payload (masked by a client,
    with a fresh unpredictable key: RFC 6455 5.3)."""
    size = len(payload)
    bit = 0x80 if masked else 0
    if size < 126:
        head = bytes((0x80 | opcode, bit | size))
    elif size < 65536:
        head = _HEAD16.pack(0x80 | opcode, bit | 126, size)
    else:
        head = _HEAD64.pack(0x80 | opcode, bit | 127, size)
    if not masked:
        return head + payload
    key = _keys.next()
    return b"".join((head, key, _mask(key, payload)))


_HEAD16 = struct.Struct(">BBH")
_HEAD64 = struct.Struct(">BBQ")
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")


class _Keys:
    """Fresh unpredictable masking keys (RFC 6455 5.3), from ``os.urandom`` in bulk."""

    __slots__ = ("_pool", "_pos")

    def __init__(self) -> None:
        self._pool = b""
        self._pos = 0

    def next(self) -> bytes:
        pos = self._pos
        if pos + 4 > len(self._pool):
            self._pool, pos = os.urandom(4096), 0
        self._pos = pos + 4
        return self._pool[pos:pos + 4]


_keys = _Keys()
# a forked child draws its own keys, never the parent's
os.register_at_fork(after_in_child=lambda: setattr(_keys, "_pool", b""))


class _FrameReader:
    """Parses WebSocket frames from a byte stream into whole messages.

    ``next()`` returns ``(opcode, payload)`` for each complete data message
    (fragments joined) and each control frame, or None until more bytes arrive. A
    message is refused (:class:`_Refused`, 1009) as soon as a frame header announces
    more than ``limit`` bytes in all, before its payload is buffered; reserved bits,
    unknown opcodes, fragmented or long control frames and a wrong masking bit are
    refused with 1002.
    """

    def __init__(self, *, masked: bool, limit: int) -> None:
        self._masked = masked
        self._bit = 0x80 if masked else 0
        self._limit = limit
        #: What arrived and was not parsed yet, from ``_pos`` on: the bytes of the
        #: last read themselves while they hold whole frames, a bytearray once a frame
        #: spans reads.
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._opcode = 0  # of the fragmented message under way
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes | bytearray) -> None:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):  # all parsed: parse the new bytes where they are
            self._buf, self._pos = data, 0
        elif type(buf) is bytearray:
            if pos:
                del buf[:pos]
                self._pos = 0
            buf += data
        else:
            rest = bytearray(memoryview(buf)[pos:])
            rest += data
            self._buf, self._pos = rest, 0

    def next(self) -> tuple[int, bytes] | None:
        while True:
            buf, pos = self._buf, self._pos
            avail = len(buf) - pos
            if avail < 2:
                return None
            b0, b1 = buf[pos], buf[pos + 1]
            size, head = b1 & 0x7F, 2
            if size == 126:
                if avail < 4:
                    return None
                (size,) = _U16.unpack_from(buf, pos + 2)
                head = 4
            elif size == 127:
                if avail < 10:
                    return None
                (size,) = _U64.unpack_from(buf, pos + 2)
                head = 10
            # a whole binary message, masked as it should be, within the limit: nothing
            # else to check
            if b0 != 0x82 or b1 & 0x80 != self._bit or self._opcode or size > self._limit:
                self._check(b0, b1, b0 & 0x0F, size)
            start = pos + head + (4 if self._masked else 0)
            end = start + size
            if len(buf) < end:
                return None
            payload = (_mask(buf[start - 4:start], buf[start:end]) if self._masked
                       else buf[start:end])
            if type(payload) is not bytes:
                payload = bytes(payload)
            self._pos = end
            if b0 == 0x82:
                return 2, payload
            opcode = b0 & 0x0F
            if opcode >= 8:
                return opcode, payload
            if opcode:
                self._opcode = opcode
            if b0 & 0x80:  # FIN
                opcode, self._opcode = self._opcode, 0
                if self._parts:
                    self._parts.append(payload)
                    payload = b"".join(self._parts)
                    self._parts, self._size = [], 0
                return opcode, payload
            self._parts.append(payload)
            self._size += size

    def _check(self, b0: int, b1: int, opcode: int, size: int) -> None:
        if b0 & 0x70:
            raise _Refused(1002, "reserved bits set (no extension was negotiated)")
        if bool(b1 & 0x80) != self._masked:
            raise _Refused(1002, "client frames must be masked and server frames not"
                                 " (RFC 6455 5.1)")
        if opcode >= 8:
            if opcode not in (8, 9, 10):
                raise _Refused(1002, f"unknown control opcode 0x{opcode:x}")
            if not b0 & 0x80 or size > 125:
                raise _Refused(1002, "control frames must be whole and at most 125 bytes")
            return
        if opcode == 0 and not self._opcode:
            raise _Refused(1002, "continuation frame without a message")
        if opcode and self._opcode:
            raise _Refused(1002, "new message inside a fragmented one")
        if opcode not in (0, 1, 2):
            raise _Refused(1002, f"unknown data opcode 0x{opcode:x}")
        if self._size + size > self._limit:
            raise _Refused(_TOO_BIG, f"message of {self._size + size} bytes exceeds the"
                                     f" limit of {self._limit - 1}")


class WebSocketConnection:
    """Binary WebSocket messages over ``stream`` (after the HTTP upgrade), one bridge
    frame each (see the module docstring). ``client``: this end dialed, so it masks
    what it sends and expects unmasked frames; ``pending`` are bytes that arrived
    with the upgrade."""

    def __init__(self, stream: trio.abc.Stream, description: str, *, client: bool,
                 max_frame: int = MAX_FRAME, pending: bytes = b"") -> None:
        self._stream = stream
        self.description = description
        self._client = client
        self._reader = _FrameReader(masked=not client, limit=max_frame + 1)
        self._reader.feed(pending)
        self._pipe = _Pipe(stream)
        self._closed = False

    async def send(self, frame: bytes) -> None:
        """Send one frame; raises :class:`LinkClosed` if the connection is gone."""
        await self.send_frames((frame,))

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        """Send ``frames`` in order, one binary message each, in one write."""
        if self._closed:
            raise LinkClosed(f"{self.description}: closed")
        await self._pipe.write(self._join(frames), self.description)

    def send_frames_nowait(self, frames: Sequence[bytes]) -> bool:
        """Send ``frames`` without waiting, as far as the socket takes them; True when
        some are left for :meth:`send_frames` (``[]`` will do) to finish (or the
        connection is closed: that call raises)."""
        if self._closed:
            return True
        return self._pipe.write_nowait(self._join(frames))

    def _join(self, frames: Sequence[bytes]) -> bytes:
        if len(frames) == 1:
            return _frame(0x2, frames[0], self._client)
        client = self._client
        return b"".join([_frame(0x2, frame, client) for frame in frames])

    async def receive(self) -> bytes:
        """The next frame; raises :class:`LinkClosed` when the connection ends, and
        :class:`~reflowpy.BridgeProtocolError` for a text or oversized message or a
        broken WebSocket frame (after closing with the matching code)."""
        reader = self._reader
        while True:
            try:
                message = reader.next()
            except _Refused as exc:
                await self._close(exc.code, str(exc))
                raise BridgeProtocolError(f"{self.description}: {exc}") from None
            if message is not None:
                opcode, payload = message
                if opcode == 0x2:
                    return payload
                if opcode == 0x1:
                    await self._close(1003, "bridge frames are binary")
                    raise BridgeProtocolError(f"{self.description}: text message; bridge"
                                              " frames are binary")
                if opcode == 0x9:  # ping: answer with the same payload
                    await self._control(0xA, payload)
                elif opcode == 0x8:
                    code = _U16.unpack(payload[:2])[0] if len(payload) >= 2 else 1005
                    await self._close(1000 if code == 1005 else code, "")
                    raise LinkClosed(f"{self.description}: closed by the peer ({code})")
                continue  # a pong
            if self._closed:
                raise LinkClosed(f"{self.description}: closed")
            try:
                reader.feed(await self._pipe.read(self.description))
            except LinkClosed:
                self._closed = True
                raise

    async def _control(self, opcode: int, payload: bytes) -> None:
        with contextlib.suppress(LinkClosed):
            await self._pipe.write(_frame(opcode, payload, self._client), self.description)

    async def _close(self, code: int, reason: str) -> None:
        """Send a close frame (once) and stop sending."""
        if self._closed:
            return
        self._closed = True
        with trio.move_on_after(1):
            await self._control(0x8, _U16.pack(code) + reason.encode()[:120])

    async def aclose(self) -> None:
        """Close (idempotent): a close frame if the link still works, then the socket."""
        with trio.move_on_after(0.5):
            await self._close(1000, "")
        self._pipe.close()
        with contextlib.suppress(*_STREAM_ERRORS):
            await self._stream.aclose()


_MAX_HEAD = 16384  # an HTTP upgrade request or response larger than this is refused


async def _read_head(stream: trio.abc.Stream, what: str) -> tuple[bytes, bytes]:
    """The HTTP head of the upgrade (up to its blank line) and the bytes after it."""
    buf = bytearray()
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            return bytes(buf[:end + 4]), bytes(buf[end + 4:])
        if len(buf) > _MAX_HEAD:
            raise LinkClosed(f"{what}: WebSocket handshake larger than {_MAX_HEAD} bytes")
        try:
            chunk = await stream.receive_some(_CHUNK)
        except _STREAM_ERRORS as exc:
            raise LinkClosed(f"{what}: {exc or type(exc).__name__}") from None
        if not chunk:
            raise LinkClosed(f"{what}: closed during the WebSocket handshake")
        buf += chunk


def _handshake_event(ws: wsproto.WSConnection, head: bytes, what: str) -> wse.Event:
    try:
        ws.receive_data(head)
        for event in ws.events():
            return event
    except RemoteProtocolError as exc:
        raise LinkClosed(f"{what}: bad WebSocket handshake: {exc}") from None
    raise LinkClosed(f"{what}: incomplete WebSocket handshake")


class WebSocketTransport:
    """``ws://host:port/bridge`` or ``wss://`` (then ``ssl_context`` or the system CAs)."""

    def __init__(self, address: str, *, ssl_context: ssl.SSLContext | None = None,
                 max_frame: int = MAX_FRAME, connect_timeout: float = 10.0) -> None:
        url = urlsplit(address)
        if url.scheme not in ("ws", "wss") or not url.hostname:
            raise BridgeError(f"not a WebSocket address: {address!r} (ws://host:port/path"
                              " or wss://...)")
        self.address = address
        self.ssl_context = ssl_context
        self.max_frame = max_frame
        self.connect_timeout = connect_timeout
        self._secure = url.scheme == "wss"
        self._host = url.hostname
        self._port = url.port or (443 if self._secure else 80)
        self._target = (url.path or "/") + (f"?{url.query}" if url.query else "")

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Connection]:
        conn = await self._open()
        try:
            yield conn
        finally:
            await conn.aclose()

    async def _open(self) -> WebSocketConnection:
        stream: trio.abc.Stream | None = None
        try:
            with trio.fail_after(self.connect_timeout):
                stream = await trio.open_tcp_stream(self._host, self._port)
                if self._secure:
                    context = self.ssl_context or ssl.create_default_context()
                    stream = trio.SSLStream(stream, context, server_hostname=self._host,
                                            https_compatible=True)
                    await stream.do_handshake()
                ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
                host = self._host if ":" not in self._host else f"[{self._host}]"
                await stream.send_all(ws.send(wse.Request(
                    host=f"{host}:{self._port}", target=self._target)))
                head, pending = await _read_head(stream, self.address)
                answer = _handshake_event(ws, head, self.address)
        except trio.TooSlowError:
            await _close_quietly(stream)
            raise LinkClosed(f"{self.address}: no WebSocket connection within"
                             f" {self.connect_timeout} s") from None
        except (LinkClosed, OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            await _close_quietly(stream)
            raise LinkClosed(f"{self.address}: {type(exc).__name__}: {exc}") from None
        if not isinstance(answer, wse.AcceptConnection):
            await _close_quietly(stream)
            code = getattr(answer, "status_code", "?")
            raise LinkClosed(f"{self.address}: the server refused the WebSocket upgrade"
                             f" (HTTP {code})")
        return WebSocketConnection(stream, self.address, client=True,
                                   max_frame=self.max_frame, pending=pending)


async def _close_quietly(stream: trio.abc.Stream | None) -> None:
    if stream is not None:
        with contextlib.suppress(*_STREAM_ERRORS, ssl.SSLError):
            await trio.aclose_forcefully(stream)


class WebSocketServer:
    """What :func:`serve_websocket` reports once it listens: its listeners and port."""

    def __init__(self, listeners: list[trio.SocketListener]) -> None:
        self.listeners = listeners
        self.port: int = listeners[0].socket.getsockname()[1]


async def serve_websocket(
    handler: Callable[[Connection], Awaitable[None]], host: str, port: int, *,
    ssl_context: ssl.SSLContext | None = None, max_frame: int = MAX_FRAME,
    handshake_timeout: float = 10.0, max_connections: int = 1000,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A bare WebSocket bridge listener on ``host:port`` (any path); reports a
    :class:`WebSocketServer` through ``task_status``.

    Only bridge peers are served: an upgrade request carrying ``Origin`` comes from a
    browser page (browsers always send it on WebSocket handshakes, peers never do)
    and is refused with 403, so a web page cannot reach the bridge through the
    user's browser, whatever the token. Beyond ``max_connections`` connections at
    once a new one is closed before its handshake is read."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    live = 0

    async def handle(raw: trio.SocketStream) -> None:
        nonlocal live
        stream: trio.abc.Stream = raw
        if live >= max_connections:
            await _close_quietly(stream)
            return
        live += 1
        try:
            await serve_one(raw)
        finally:
            live -= 1

    async def serve_one(raw: trio.SocketStream) -> None:
        stream: trio.abc.Stream = raw
        peer = raw.socket.getpeername()
        what = f"ws peer {peer[0]}:{peer[1]}"
        try:
            with trio.fail_after(handshake_timeout):
                if ssl_context is not None:
                    stream = trio.SSLStream(raw, ssl_context, server_side=True,
                                            https_compatible=True)
                    await stream.do_handshake()
                ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
                head, pending = await _read_head(stream, what)
                request = _handshake_event(ws, head, what)
                if not isinstance(request, wse.Request):
                    raise LinkClosed(f"{what}: expected an upgrade request")
                if any(name.lower() == b"origin" for name, _ in request.extra_headers):
                    await stream.send_all(ws.send(wse.RejectConnection(status_code=403)))
                    raise LinkClosed(f"{what}: a browser (Origin header); bridge peers only")
                await stream.send_all(ws.send(wse.AcceptConnection()))
        except (trio.TooSlowError, LinkClosed, *_STREAM_ERRORS, ssl.SSLError):
            await _close_quietly(stream)
            return
        conn = WebSocketConnection(stream, what, client=False, max_frame=max_frame,
                                   pending=pending)
        try:
            await handler(conn)
        finally:
            await conn.aclose()

    task_status.started(WebSocketServer(listeners))
    await trio.serve_listeners(handle, listeners)
