"""A real HTTP server for tests that receive requests from the server under test
(webhooks, API tools): records every request, answers with scripted statuses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import h11
import trio


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers request *n* with ``statuses[n]`` (the last one from then on) and the
    JSON ``reply``; ``requests`` holds what arrived; ``arrived`` is set on each."""

    statuses: list[int] = field(default_factory=lambda: [204])
    reply: Any = None
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    changed: trio.Event = field(default_factory=trio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_for(self, count: int, timeout: float = 20) -> list[Received]:
        with trio.fail_after(timeout):
            while len(self.requests) < count:
                await self.changed.wait()
        return self.requests

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                break
            elif isinstance(event, h11.ConnectionClosed):
                return
        n = len(self.requests)
        self.requests.append(Received(
            request.method.decode(), request.target.decode(),
            {k.decode().lower(): v.decode() for k, v in request.headers}, body))
        status = self.statuses[min(n, len(self.statuses) - 1)]
        payload = b"" if status == 204 else json.dumps(self.reply).encode()
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=[
            ("content-type", "application/json"), ("content-length", str(len(payload))),
            ("connection", "close")])) or b"")
        if payload:
            await stream.send_all(conn.send(h11.Data(data=payload)) or b"")
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        await stream.aclose()
        self.changed.set()
        self.changed = trio.Event()


@asynccontextmanager
async def receiving(**kw: Any) -> AsyncIterator[Receiver]:
    receiver = Receiver(**kw)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, receiver.handle, 0,
                                                host="127.0.0.1"))
        receiver.port = listeners[0].socket.getsockname()[1]
        yield receiver
        nursery.cancel_scope.cancel()
