"""Persistence across restarts, bearer-token auth, and graceful shutdown."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import trio
from trio_websocket import HandshakeError, open_websocket_url

from tests.server._proc import served_process
from tests.server.conftest import start_server
from tests.server.test_rest import GRAPH


async def _wait_output(client: httpx.AsyncClient, ex: str, after: int) -> list[object]:
    r = await client.get(f"/executions/{ex}/outputs/y", params={"wait": 10, "after": after})
    return r.json()["values"]  # type: ignore[no-any-return]


async def test_graphs_and_restart_always_executions_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with trio.open_nursery() as nursery:
        served = await start_server(nursery, data)
        async with served.client() as c:
            assert (await c.post("/graphs", json={"graph": GRAPH, "id": "kept"})
                    ).status_code == 201
            always = (await c.post("/executions", json={
                "graph_id": "kept", "policy": {"restart": "always"}})).json()["id"]
            never = (await c.post("/executions", json={"graph_id": "kept"})).json()["id"]
            stopped = (await c.post("/executions", json={
                "graph_id": "kept", "policy": {"restart": "always"}})).json()["id"]
            await c.post(f"/executions/{stopped}/stop")
        served.shutdown.set()
    async with trio.open_nursery() as nursery:
        served = await start_server(nursery, data)
        async with served.client() as c:
            assert (await c.get("/graphs/kept")).json()["graph"]["processes"]["d"]
            status = (await c.get(f"/executions/{always}")).json()
            assert status["status"] in ("running", "idle") and status["restarts"] >= 1
            # ended executions stay listed, and are not run again
            assert (await c.get(f"/executions/{never}")).json()["status"] == "interrupted"
            assert (await c.get(f"/executions/{stopped}")).json()["status"] == "stopped"
            await c.post(f"/executions/{always}/inputs/x", json={"value": 7})
            assert await _wait_output(c, always, 0) == [14]
        served.shutdown.set()


async def test_crashed_server_resumes_restart_always_executions(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    async with served_process("--data-dir", data) as served:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.port}") as c:
            ex = (await c.post("/executions", json={
                "graph": GRAPH, "policy": {"restart": "always"}})).json()["id"]
        served.process.send_signal(signal.SIGKILL)
        await served.process.wait()
        served.killed = True
    async with (served_process("--data-dir", data) as served,
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.port}") as c):
        assert (await c.get(f"/executions/{ex}")).json()["status"] in ("running", "idle")
        await c.post(f"/executions/{ex}/inputs/x", json={"value": 1})
        assert await _wait_output(c, ex, 0) == [2]


async def test_token_protects_http_and_websockets(nursery: trio.Nursery,
                                                  tmp_path: Path) -> None:
    served = await start_server(nursery, tmp_path / "d", token="sekrit")
    async with httpx.AsyncClient(base_url=served.url) as anon:
        r = await anon.get("/health")
        assert r.status_code == 401 and "sekrit" not in r.text
        assert r.headers["www-authenticate"] == "Bearer"
        r = await anon.get("/health", headers={"authorization": "Bearer wrong"})
        assert r.status_code == 401
        assert (await anon.get("/health", headers={"authorization": "Bearer sekrit"})
                ).status_code == 200
    try:
        async with open_websocket_url(f"{served.ws_url}/ws"):
            raise AssertionError("the /ws handshake was accepted without a token")
    except HandshakeError:
        pass
    async with open_websocket_url(f"{served.ws_url}/ws", extra_headers=[
            (b"authorization", b"Bearer sekrit")]) as ws:
        await ws.send_message("{}")
        assert "Missing" in await ws.get_message()
    served.shutdown.set()
