"""A fix for a race in Hypercorn's trio TCP server, applied by :func:`reflowpy.serve`.

Hypercorn (0.18, trio worker) closes a connection in ``TCPServer._close`` with
``send_eof()`` without taking the ``send_lock`` its senders hold. trio's conflict
detector stays armed across ``send_eof``'s checkpoint, so a frame sent at that moment
(a WebSocket peer answering a close while the server closes its side) raises
``trio.BusyResourceError``, which ``protocol_send`` does not catch: the error escapes
the connection's task group and takes the whole server down. Seen about one run in
five on a loaded machine with a bridge peer closing its ``/bridge`` link.

The fix makes ``_close`` take the send lock first (unless the closing task already
holds it), so the end of stream and a frame never overlap. It is applied once, before
the first server starts; ``tests/server/test_hypercorn_fix.py`` shows the race with
the unpatched method, so a Hypercorn that fixes it upstream is noticed.
"""

from __future__ import annotations

from typing import Any

import trio

__all__ = ["apply_hypercorn_fix"]

_applied = False


def apply_hypercorn_fix() -> None:
    """Make Hypercorn's trio ``TCPServer._close`` wait for its send lock (idempotent)."""
    global _applied
    if _applied:
        return
    from hypercorn.trio.tcp_server import TCPServer

    original = TCPServer._close

    async def _close(self: Any) -> None:
        lock = self.send_lock
        if lock.statistics().owner is trio.lowlevel.current_task():
            await original(self)
            return
        async with lock:
            await original(self)

    _close.__wrapped__ = original  # type: ignore[attr-defined]
    TCPServer._close = _close  # type: ignore[method-assign]
    _applied = True
