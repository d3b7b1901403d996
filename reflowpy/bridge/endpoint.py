"""The ``/bridge`` WebSocket endpoint of ``reflowpy serve``: a Host behind Starlette.

Peers dial ``ws://server/bridge``; each connection is handed to the server's one
:class:`~reflowpy.bridge.host.Host` (created on first use, running its deployments in
the server's nursery). The HELLO challenge authenticates the peer with the server's
token (``--token`` / ``REFLOWPY_TOKEN``; none configured: the empty token, loopback
only), so the token never crosses the wire. ``ServerState.bridge_allow`` (if set) is
the allow-list of components peers may place here.

Through Hypercorn and Starlette every bridge frame is one ASGI message (1.5-2x the
round trip of the bridge's own WebSocket listener, ``python -m benchmarks bridge``).
:func:`serve_port` (``reflowpy serve --bridge-listen HOST:PORT``) runs that listener
on a port of its own, in front of the same Host: same token challenge, same
allow-list, TLS with its own cert/key, and browsers refused (a request with
``Origin``), as the guard refuses cross-site ones on ``/bridge``. A session may move
between the two (both reach the same deployments).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Sequence
from typing import Any

import trio
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from reflowpy.bridge.frames import MAX_FRAME
from reflowpy.bridge.host import Host
from reflowpy.bridge.transport import LinkClosed
from reflowpy.bridge.websocket import WebSocketServer, serve_websocket
from reflowpy.errors import BridgeError, BridgeProtocolError

__all__ = ["StarletteConnection", "parse_listen", "routes", "serve_port"]


class StarletteConnection:
    """A bridge :class:`~reflowpy.bridge.transport.Connection` over a Starlette WebSocket."""

    def __init__(self, ws: WebSocket, max_frame: int = MAX_FRAME) -> None:
        self._ws = ws
        self._max = max_frame
        client = ws.client
        self.description = f"bridge peer {client.host}:{client.port}" if client else "peer"

    async def send(self, frame: bytes) -> None:
        try:
            await self._ws.send_bytes(frame)
        except (WebSocketDisconnect, RuntimeError, OSError):
            raise LinkClosed(f"{self.description}: closed") from None

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        for frame in frames:  # ASGI has no way to send several messages at once
            await self.send(frame)

    async def receive(self) -> bytes:
        try:
            message = await self._ws.receive()
        except (WebSocketDisconnect, RuntimeError, OSError):
            raise LinkClosed(f"{self.description}: closed") from None
        if message["type"] == "websocket.disconnect":
            raise LinkClosed(f"{self.description}: closed")
        data = message.get("bytes")
        if data is None:
            raise BridgeProtocolError(f"{self.description}: text message; bridge frames are"
                                      " binary")
        if len(data) > self._max + 1:
            raise BridgeProtocolError(f"{self.description}: frame of {len(data)} bytes"
                                      f" exceeds the limit of {self._max}")
        return bytes(data)

    async def aclose(self) -> None:
        with contextlib.suppress(RuntimeError, OSError):
            await self._ws.close()


def _host(state: Any) -> Host:
    host: Host | None = getattr(state, "bridge_host", None)
    if host is None:
        host = Host(state.registry, state.nursery, local_id="server",
                    token=state.token or "", allow=getattr(state, "bridge_allow", None))
        state.bridge_host = host
    return host


def routes(state: Any) -> list[BaseRoute]:
    """The ``/bridge`` route for the server app (``state`` is its ServerState)."""

    async def bridge_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        conn = StarletteConnection(websocket)
        try:
            await _host(state).handle(conn)
        finally:
            await conn.aclose()

    return [WebSocketRoute("/bridge", bridge_endpoint)]


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``; port 0: any free port) of ``--bridge-listen``."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise BridgeError(f"--bridge-listen {listen!r}: expected HOST:PORT, e.g."
                          " 127.0.0.1:3570 (port 0: any free port)")
    return host, int(port)


async def serve_port(state: Any, host: str, port: int, *,
                     ssl_context: ssl.SSLContext | None = None, max_frame: int = MAX_FRAME,
                     task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED
                     ) -> None:
    """The bridge's own WebSocket listener on ``host:port`` for the server's Host (see
    the module docstring); reports the :class:`WebSocketServer` once it listens."""
    await serve_websocket(_host(state).handle, host, port, ssl_context=ssl_context,
                          max_frame=max_frame,
                          max_connections=getattr(state, "max_connections", 1000),
                          task_status=task_status)
