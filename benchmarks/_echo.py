"""Bare echo servers for the bridge benchmark's transport baselines (a child process).

    python -m benchmarks._echo KIND      # KIND: tcp, wsproto, trio-websocket, bridge-ws

Prints ``LISTENING <port>`` and echoes every message back until killed. ``tcp`` echoes
length-prefixed frames over a trio SocketStream (TCP_NODELAY is trio's default);
``wsproto`` drives wsproto directly over a trio stream; ``trio-websocket`` uses
trio-websocket's server; ``bridge-ws`` the bridge's own WebSocket transport. They tell
how much of a bridge round trip the transport alone costs.
"""

from __future__ import annotations

import struct
import sys

import trio
import trio_websocket
import wsproto
import wsproto.events as wse

_LENGTH = struct.Struct(">I")


async def _tcp(stream: trio.SocketStream) -> None:
    buf = bytearray()
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return
        buf += chunk
        out = bytearray()
        while len(buf) >= 4:
            (size,) = _LENGTH.unpack_from(buf)
            if len(buf) < 4 + size:
                break
            out += buf[:4 + size]
            del buf[:4 + size]
        if out:
            await stream.send_all(out)


async def _wsproto(stream: trio.SocketStream) -> None:
    ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return
        ws.receive_data(chunk)
        out = b""
        for event in ws.events():
            if isinstance(event, wse.Request):
                out += ws.send(wse.AcceptConnection())
            elif isinstance(event, wse.BytesMessage):
                out += ws.send(wse.Message(data=event.data))
            elif isinstance(event, wse.CloseConnection):
                out += ws.send(event.response())
        if out:
            await stream.send_all(out)


async def _trio_websocket(request: trio_websocket.WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except trio_websocket.ConnectionClosed:
        pass


async def _bridge_ws(conn: object) -> None:
    from reflowpy.bridge.transport import LinkClosed

    try:
        while True:
            await conn.send(await conn.receive())  # type: ignore[attr-defined]
    except LinkClosed:
        pass


async def _main(kind: str) -> None:
    async with trio.open_nursery() as nursery:
        if kind == "trio-websocket":
            server = await nursery.start(trio_websocket.serve_websocket, _trio_websocket,
                                         "127.0.0.1", 0, None)
            port = server.port
        elif kind == "bridge-ws":
            from reflowpy.bridge.websocket import serve_websocket

            server = await nursery.start(serve_websocket, _bridge_ws, "127.0.0.1", 0)
            port = server.port
        else:
            handler = _tcp if kind == "tcp" else _wsproto
            listeners = await nursery.start(trio.serve_tcp, handler, 0)
            port = listeners[0].socket.getsockname()[1]
        print(f"LISTENING {port}", flush=True)


if __name__ == "__main__":
    trio.run(_main, sys.argv[1])
