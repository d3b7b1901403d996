"""The outgoing queue of one WebSocket client, bounded in messages and in bytes.

Every WebSocket endpoint of the server (FBP, Reflow ``/ws``) writes to its client
through an :class:`Outbox`: producers (replies, broadcasts, network events) call
:meth:`Outbox.push`, which never blocks, and one writer task per connection sends
what is queued. Two rules keep memory bounded without stalling the runtime:

* the connection's own reader calls :meth:`Outbox.wait_room` before it reads the next
  frame, so a client that sends without reading its replies is simply not read any
  more — TCP backpressure then stops it, and every message it did get to send was
  processed and answered (nothing accepted is lost);
* what can still overflow the queue is what others cause (broadcasts, events). Then
  the client is dropped: its queue is discarded, and the writer sends one last error
  saying why and closes the socket with code 1008 and the same reason.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import msgspec
import trio

__all__ = ["Outbox"]

_JSON = msgspec.json.Encoder()


class Outbox:
    """At most ``max_messages`` messages and ``max_bytes`` bytes queued for a client
    (or one message of any size for a client that has nothing else pending)."""

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._queue: deque[bytes] = deque()
        self._bytes = 0
        self._readable = trio.Event()
        self._room = trio.Event()
        self._room.set()
        #: Why the client was dropped (``None`` while it is served).
        self.dropped: str | None = None

    @property
    def paused(self) -> bool:
        """Whether the client's reader waits for room (its input is not read)."""
        return not self._room.is_set()

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting to be written to this client."""
        return self._bytes

    def push(self, message: Any) -> None:
        """Queue ``message`` (JSON-encoded here); drops the client if it is over a limit."""
        if self.dropped is not None:
            return
        data = _JSON.encode(message)
        # One message larger than the limit still goes to a client that is caught up.
        if self._bytes and (len(self._queue) >= self.max_messages
                            or self._bytes + len(data) > self.max_bytes):
            self.drop(f"dropped: the client did not read its messages ({len(self._queue)}"
                      f" messages, {self._bytes} bytes queued; limits {self.max_messages},"
                      f" {self.max_bytes} bytes)")
            return
        self._queue.append(data)
        self._bytes += len(data)
        if self._room.is_set() and (self._bytes * 2 > self.max_bytes
                                    or len(self._queue) * 2 > self.max_messages):
            self._room = trio.Event()
        self._readable.set()

    def drop(self, reason: str) -> None:
        """Stop serving this client: discard its queue; the writer tells it why."""
        if self.dropped is None:
            self.dropped = reason
            self._queue.clear()
            self._bytes = 0
            self._readable.set()
            self._room.set()

    async def wait_room(self) -> None:
        """Return once the queue is at most half full (or the client was dropped)."""
        await self._room.wait()

    async def next_batch(self) -> list[bytes] | None:
        """Everything queued (waiting until there is something), or ``None`` once the
        client was dropped. Call :meth:`written` for each item once it is sent."""
        while not self._queue and self.dropped is None:
            self._readable = trio.Event()
            await self._readable.wait()
        if self.dropped is not None:
            return None
        batch = list(self._queue)
        self._queue.clear()
        return batch

    def written(self, size: int) -> None:
        """``size`` bytes of a batch reached the socket."""
        if self.dropped is not None:
            return
        self._bytes -= size
        if not self._room.is_set() and self._bytes * 2 <= self.max_bytes \
                and len(self._queue) * 2 <= self.max_messages:
            self._room.set()
