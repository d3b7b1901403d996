"""Server-Sent Events: live network events and exported-port values over plain HTTP.

``GET /executions/{id}/events`` streams every :mod:`network event
<reflowpy.network.events>` of an execution as ``event: <_type>`` / ``data: <JSON>``
records; ``GET /executions/{id}/outputs/{port}?stream=true`` streams the values of an
exported out-port with their cursor as the SSE ``id`` (so a client reconnecting with
``Last-Event-ID`` resumes where it stopped).

Each subscriber has its own bounded buffer; a subscriber that reads too slowly
loses events, never slows the network, and is told how many it lost with an
``event: dropped`` record. A comment line is sent every ``heartbeat`` seconds so
proxies keep the connection open; a client that goes away ends its stream (Starlette
cancels the generator on ``http.disconnect``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import trio
from starlette.responses import StreamingResponse

from reflowpy.network import events as ev
from reflowpy.server.executions import Execution

__all__ = ["event_stream", "output_stream", "sse_response"]

_ENCODE = msgspec.json.Encoder()
#: Most events sent in one chunk.
_BATCH = 512


def _record(data: bytes, event: str | None = None, id: int | None = None) -> bytes:
    head = b""
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    if id is not None:
        head += b"id: " + str(id).encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


def sse_response(body: AsyncIterator[bytes]) -> StreamingResponse:
    """A ``text/event-stream`` response that is never buffered by proxies."""
    return StreamingResponse(body, media_type="text/event-stream", headers={
        "cache-control": "no-cache", "x-accel-buffering": "no"})


async def event_stream(ex: Execution, buffer: int, heartbeat: float = 15.0
                       ) -> AsyncIterator[bytes]:
    """Every network event of ``ex`` (following restarts) until the execution is over."""
    seq = 0
    yield b": reflowpy events of execution " + ex.id.encode() + b"\n\n"
    while not ex.done.is_set():
        net = ex.net
        if net is None or net.state in ("stopping", "stopped"):
            changed = ex.network_changed
            with trio.move_on_after(heartbeat):
                while not (changed.is_set() or ex.done.is_set()):
                    await _either(changed, ex.done)
            if ex.net is net:
                yield b": keep-alive\n\n"
                if net is not None and net.state == "stopped":
                    await _either(ex.network_changed, ex.done)
            continue
        reported = 0
        with net.events(buffer) as sub:
            while True:
                event = await _next_event(sub, heartbeat)
                if event is _END:
                    break
                if event is None:
                    yield b": keep-alive\n\n"
                    continue
                # Batch whatever is already buffered into one chunk: one ASGI send per
                # batch instead of per event, never waiting to fill a batch.
                chunk: list[bytes] = []
                while True:
                    if sub.dropped > reported:
                        chunk.append(_record(_ENCODE.encode({"dropped": sub.dropped - reported}),
                                             "dropped"))
                        reported = sub.dropped
                    seq += 1
                    chunk.append(_record(_ENCODE.encode(event), type(event).__name__, seq))
                    if len(chunk) >= _BATCH or isinstance(event, ev.NetworkShutdown):
                        break
                    try:
                        event = sub.get_nowait()
                    except trio.WouldBlock:
                        break
                yield b"".join(chunk)
                if isinstance(event, ev.NetworkShutdown):
                    sub.close()
                    break
    yield _record(_ENCODE.encode({"id": ex.id, "status": ex.status, "error": ex.error}),
                  "end")


_END = object()


async def _next_event(sub: ev.EventSubscription, timeout: float) -> Any:
    """The next event, ``None`` after ``timeout`` seconds without one, or ``_END`` once
    the subscription is closed. Cancel-safe (unlike cancelling the subscription's async
    iterator, which would finalize it)."""
    try:
        return sub.get_nowait()
    except trio.WouldBlock:
        pass
    if sub.closed:
        return _END
    with trio.move_on_after(timeout):
        await sub.wait()
    try:
        return sub.get_nowait()
    except trio.WouldBlock:
        return _END if sub.closed else None


async def _either(a: trio.Event, b: trio.Event) -> None:
    async with trio.open_nursery() as nursery:
        async def wait(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(wait, a)
        nursery.start_soon(wait, b)


async def output_stream(ex: Execution, port: str, after: int, heartbeat: float = 15.0
                        ) -> AsyncIterator[bytes]:
    """The values of exported out-port ``port`` from cursor ``after`` on, until the
    execution is over."""
    buf = ex.buffer(port)
    cursor = after
    while True:
        values, nxt = buf.read(cursor, 1000)
        if values:
            first = nxt - len(values)
            if first > cursor:
                yield _record(_ENCODE.encode({"dropped": first - cursor}), "dropped")
            for i, value in enumerate(values):
                yield _record(_ENCODE.encode(value), "value", first + i)
            cursor = nxt
            continue
        if buf.closed and ex.done.is_set():
            yield _record(_ENCODE.encode({"status": ex.status}), "end")
            return
        with trio.move_on_after(heartbeat) as scope:
            await buf.wait(cursor)
        if scope.cancelled_caught:
            yield b": keep-alive\n\n"
