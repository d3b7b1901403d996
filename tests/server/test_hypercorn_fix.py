"""The Hypercorn close race (reflowpy/server/hypercorn_fix.py), reproduced exactly:
one task closes a connection (``send_eof`` checkpoints inside trio's send-conflict
detector) while another sends a frame. trio runs the two in either order (only the
close-first order races), so each case runs 40 times: unpatched, at least one race
escapes (all 40 missing it has odds of 2**-40); patched, none. Unpatched, the
frame's ``send_all`` raises ``BusyResourceError`` out of ``protocol_send``; patched,
the two are serialised by the send lock: a late frame sees a closed stream, which
Hypercorn handles."""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.events import Closed, RawData
from hypercorn.trio.tcp_server import TCPServer

from reflowpy.server.hypercorn_fix import apply_hypercorn_fix


class _Protocol:
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def handle(self, event: Any) -> None:
        self.events.append(event)


async def _race(close: Any) -> _Protocol:
    a, b = trio.socket.socketpair()
    server: Any = object.__new__(TCPServer)
    server.stream = trio.SocketStream(a)
    server.send_lock = trio.Lock()
    server.protocol = _Protocol()
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(close, server)
                nursery.start_soon(server.protocol_send, RawData(data=b"frame"))
    finally:
        b.close()
    return server.protocol


async def test_unpatched_close_races_a_send() -> None:
    original = getattr(TCPServer._close, "__wrapped__", TCPServer._close)
    escaped = 0
    for _ in range(40):
        try:
            await _race(original)
        except ExceptionGroup as group:
            assert group.subgroup(trio.BusyResourceError) is not None, group
            escaped += 1
    assert escaped > 0


async def test_patched_close_serialises_with_a_send() -> None:
    apply_hypercorn_fix()
    for _ in range(40):
        protocol = await _race(TCPServer._close)  # raises if the race escapes
        # The frame either went out before the close or found the stream closed
        # (then Hypercorn's protocol hears Closed); nothing else happens.
        assert [type(e) for e in protocol.events] in ([], [Closed])
