"""Fixtures: a real server on an ephemeral loopback port, in the test's trio run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from reflowpy.server.serve import serve
from tests.server.testkit import test_registry


@dataclass
class Served:
    host: str
    port: int
    token: str | None
    shutdown: trio.Event
    data_dir: Path
    #: The server's ServerState (in-process servers only), for white-box assertions.
    state: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def client(self, **kw: object) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10,
                                 **kw)  # type: ignore[arg-type]


async def start_server(nursery: trio.Nursery, data_dir: Path, token: str | None = None,
                       **limits: object) -> Served:
    shutdown = trio.Event()
    states: list[Any] = []
    host, port = await nursery.start(
        lambda task_status: serve(host="127.0.0.1", port=0, data_dir=data_dir, token=token,
                                  registry=test_registry(), shutdown=shutdown,
                                  announce=False, task_status=task_status,
                                  on_state=states.append, **limits))
    return Served(host, port, token, shutdown, data_dir, states[0])


@pytest.fixture
async def server(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Served]:
    served = await start_server(nursery, tmp_path / "data")
    yield served
    served.shutdown.set()


@pytest.fixture
async def client(server: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with server.client() as c:
        yield c
