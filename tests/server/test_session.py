"""Browser-friendly authentication: a session cookie and single-use tickets for SSE
and WebSockets, never the token in a URL. And the token stays out of what the server
spawns."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import HandshakeError, open_websocket_url

from tests.server._proc import served_process
from tests.server.conftest import Served, start_server
from tests.server.test_fbp import Fbp
from tests.server.test_rest import GRAPH

TOKEN = "s3ss10n-t0ken"


@pytest.fixture
async def guarded(nursery: trio.Nursery, tmp_path: Path) -> Served:
    return await start_server(nursery, tmp_path / "d", token=TOKEN)


async def _first_value(c: httpx.AsyncClient, url: str) -> str:
    async with c.stream("GET", url) as resp:
        assert resp.status_code == 200, await resp.aread()
        async for line in resp.aiter_lines():
            if line.startswith("data:"):
                return line
    raise AssertionError("stream ended without data")


async def test_session_cookie_authenticates_sse(guarded: Served) -> None:
    async with guarded.client() as owner:
        ex = (await owner.post("/executions", json={"graph": GRAPH,
                                                    "inputs": {"x": [4]}})).json()["id"]
    url = f"/executions/{ex}/outputs/y?stream=true"
    async with httpx.AsyncClient(base_url=guarded.url, timeout=10) as browser:
        assert (await browser.get(url)).status_code == 401
        # only a request that proves the token gets a session
        assert (await browser.post("/auth/session")).status_code == 401
        r = await browser.post("/auth/session",
                               headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert TOKEN not in r.headers["set-cookie"] and TOKEN not in r.text
        # the browser now streams with the cookie alone
        assert await _first_value(browser, url) == "data: 8"
        # a cross-site page cannot ride on the cookie to change state
        r = await browser.post(f"/executions/{ex}/inputs/x", json={"value": 1},
                               headers={"origin": "http://evil.example"})
        assert r.status_code == 403
        assert (await browser.delete("/auth/session")).status_code == 204
        browser.cookies.clear()
        assert (await browser.get(url)).status_code == 401
    async with httpx.AsyncClient(base_url=guarded.url, cookies={
            "reflowpy_session": "forged"}) as forger:
        assert (await forger.get("/health")).status_code == 401


async def test_tickets_are_single_use_and_short_lived(guarded: Served) -> None:
    async with guarded.client() as owner:
        ex = (await owner.post("/executions", json={"graph": GRAPH,
                                                    "inputs": {"x": [5]}})).json()["id"]
        r = await owner.post("/auth/ticket")
        assert r.status_code == 201
        ticket, ttl = r.json()["ticket"], r.json()["expires_in"]
        assert 0 < ttl <= 60 and TOKEN not in ticket
    url = f"/executions/{ex}/outputs/y?stream=true&ticket={ticket}"
    async with httpx.AsyncClient(base_url=guarded.url, timeout=10) as page:
        assert await _first_value(page, url) == "data: 10"
        assert (await page.get(url)).status_code == 401  # used up
    # a ticket opens one WebSocket too (FBP clients get authorized by it)
    async with guarded.client() as owner:
        ticket = (await owner.post("/auth/ticket")).json()["ticket"]
    async with open_websocket_url(f"{guarded.ws_url}/ws?ticket={ticket}") as ws:
        await ws.send_message("{}")
        assert "Missing" in await ws.get_message()
    with pytest.raises(HandshakeError):
        async with open_websocket_url(f"{guarded.ws_url}/ws?ticket={ticket}"):
            pass
    async with guarded.client() as owner:
        ticket = (await owner.post("/auth/ticket")).json()["ticket"]
    async with open_websocket_url(f"{guarded.ws_url}/?ticket={ticket}",
                                  subprotocols=["noflo"]) as ws:
        fbp = Fbp(ws)
        await fbp.send("runtime", "getruntime")
        assert "protocol:graph" in (await fbp.expect("runtime", "runtime"))["capabilities"]


async def test_expired_tickets_and_sessions_are_refused(guarded: Served) -> None:
    sessions = guarded.state.sessions
    sessions.ticket_ttl = 0.0
    sessions.session_ttl = 0.0
    async with guarded.client() as owner:
        ticket = (await owner.post("/auth/ticket")).json()["ticket"]
        header = (await owner.post("/auth/session")).headers["set-cookie"]
        cookie = header.split(";")[0].split("=", 1)[1]
    async with httpx.AsyncClient(base_url=guarded.url) as late:
        assert (await late.get(f"/health?ticket={ticket}")).status_code == 401
        assert (await late.get("/health", cookies={"reflowpy_session": cookie})
                ).status_code == 401


async def test_session_endpoints_without_a_token(server: Served) -> None:
    async with server.client() as c:
        assert (await c.post("/auth/ticket")).status_code == 409


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


async def test_the_token_is_not_in_anything_the_server_spawns(tmp_path: Path) -> None:
    token = "envtoken-" + os.urandom(8).hex()
    script = ("def process(inputs, config, state):\n"
              "    return {'out': inputs['in']}\n")
    graph = {"processes": {"s": {"component": "script/python", "metadata": {
        "source": script, "sandbox": "process"}}},
        "connections": [], "inports": {"x": {"process": "s", "port": "in"}},
        "outports": {"y": {"process": "s", "port": "out"}}}
    async with served_process("--data-dir", str(tmp_path / "data"), token=token) as served:
        headers = {"authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.port}",
                                     headers=headers, timeout=30) as c:
            r = await c.post("/executions", json={"graph": graph})
            assert r.status_code == 201, r.text
            ex = r.json()["id"]
            await c.post(f"/executions/{ex}/inputs/x", json={"value": 3})
            values = (await c.get(f"/executions/{ex}/outputs/y",
                                  params={"wait": 20})).json()["values"]
            assert values == [3]
            spawned = _descendants(served.process.pid)
            assert spawned, "the script worker should be a child of the server"
            # the server's own initial environment keeps it (readable by its uid only,
            # unlike the world-readable cmdline); its children inherit nothing
            checks = [(served.process.pid, "cmdline")] + [
                (pid, name) for pid in spawned for name in ("cmdline", "environ")]
            for pid, name in checks:
                try:
                    data = Path(f"/proc/{pid}/{name}").read_bytes()
                except OSError:
                    continue
                assert token.encode() not in data, (pid, name)
            await c.post(f"/executions/{ex}/stop")
