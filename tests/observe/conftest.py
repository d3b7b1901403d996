"""Fixtures for the observability tests: a real server on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.server.conftest import Served, start_server

DOUBLER = {
    "properties": {"name": "doubler"},
    "processes": {"d": {"component": "test/Double"}, "r": {"component": "core/Repeat"}},
    "connections": [{"src": {"process": "d", "port": "out"},
                     "tgt": {"process": "r", "port": "in"}}],
    "inports": {"x": {"process": "d", "port": "in"}},
    "outports": {"y": {"process": "r", "port": "out"}},
}


@pytest.fixture
async def served(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Served]:
    s = await start_server(nursery, tmp_path / "data")
    yield s
    s.shutdown.set()


async def start_doubler(client: httpx.AsyncClient) -> str:
    r = await client.post("/executions", json={"graph": DOUBLER})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def feed(client: httpx.AsyncClient, ex: str, values: list[Any], total: int) -> None:
    """Send ``values`` and wait (long-poll) until ``total`` outputs have left."""
    r = await client.post(f"/executions/{ex}/inputs/x", json={"values": values})
    assert r.status_code in (200, 202), r.text
    got = 0
    while got < total:
        r = await client.get(f"/executions/{ex}/outputs/y", params={"after": 0, "wait": 5})
        got = len(r.json()["values"])
