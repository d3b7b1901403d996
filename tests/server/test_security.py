"""The server as an attacker meets it: foreign origins, DNS rebinding, no token,
connection floods, slow clients, deep JSON — each with real clients on real sockets.

On main (before this branch) every attack here succeeded: a text/plain POST from
``http://evil.example`` wrote a file (201), a foreign-Origin WebSocket got full FBP
capabilities, ``Host: rebind.evil.example`` got 200, unauthenticated FBP clients saw
every broadcast and 1,000 of them locked the authorised client out, a deep JSON body
was a 500.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from reflowpy.server.auth import load_token
from reflowpy.server.fbp import FbpRuntime
from reflowpy.server.serve import InsecureBind, serve
from tests.server.conftest import Served, start_server
from tests.server.test_fbp import Fbp

EVIL = "http://evil.example"


def _writefile_graph(path: Path) -> dict[str, Any]:
    return {"processes": {"w": {"component": "io/WriteFile",
                                "metadata": {"path": str(path)}}},
            "connections": [{"data": "owned", "tgt": {"process": "w", "port": "in"}}]}


async def _raw_request(port: int, request: bytes) -> bytes:
    """Send ``request`` as is and return the status line + headers of the answer."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        data = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                data += chunk
    return data


def _ws_handshake(path: str, host: str, origin: str | None = None,
                  extra: str = "") -> bytes:
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


# -- Origin --------------------------------------------------------------------------


async def test_cross_site_simple_post_is_refused_and_writes_nothing(server: Served) -> None:
    target = server.data_dir / "workspace" / "pwned.txt"
    body = json.dumps({"graph": _writefile_graph(target), "policy": {"until": "idle"}})
    async with httpx.AsyncClient(base_url=server.url) as c:
        # what a form/fetch from another site sends without a preflight
        r = await c.post("/executions", content=body, headers={
            "origin": EVIL, "content-type": "text/plain"})
        assert r.status_code == 403 and r.json()["error"] == "bad_origin"
        assert EVIL in r.json()["detail"]
        assert not target.exists()
        r = await c.post("/executions", content=body, headers={"origin": "null"})
        assert r.status_code == 403
        # the same page served by this server (same origin) may post
        r = await c.post("/executions", content=body, headers={
            "origin": server.url, "content-type": "application/json"})
        assert r.status_code == 201, r.text
        # a GET from a foreign origin is answered but carries no CORS header
        r = await c.get("/health", headers={"origin": EVIL})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


async def test_allow_origin_lets_that_origin_in(nursery: trio.Nursery, tmp_path: Path) -> None:
    served = await start_server(nursery, tmp_path / "d", allow_origins=["https://app.flowhub.io"])
    async with httpx.AsyncClient(base_url=served.url) as c:
        r = await c.post("/graphs", json={"graph": {"processes": {}}, "id": "x"},
                         headers={"origin": "https://app.flowhub.io"})
        assert r.status_code == 201
        r = await c.post("/graphs", json={"graph": {"processes": {}}, "id": "y"},
                         headers={"origin": "https://app.flowhub.io.evil.example"})
        assert r.status_code == 403
    async with open_websocket_url(f"{served.ws_url}/", subprotocols=["noflo"],
                                  extra_headers=[(b"origin", b"https://app.flowhub.io")]) as ws:
        fbp = Fbp(ws)
        await fbp.send("runtime", "getruntime")
        await fbp.expect("runtime", "runtime")
    served.shutdown.set()


@pytest.mark.parametrize("path", ["/", "/fbp", "/ws"])
async def test_foreign_origin_websocket_is_refused(server: Served, path: str) -> None:
    with pytest.raises(HandshakeError) as info:
        async with open_websocket_url(f"{server.ws_url}{path}", subprotocols=["noflo"],
                                      extra_headers=[(b"origin", EVIL.encode())]):
            pass
    assert getattr(info.value, "status_code", 403) == 403
    # without Origin (not a browser) and from the same origin it is accepted
    async with open_websocket_url(f"{server.ws_url}{path}", subprotocols=["noflo"],
                                  extra_headers=[(b"origin", server.url.encode())]):
        pass


# -- Host (DNS rebinding) --------------------------------------------------------------


@pytest.mark.parametrize("host", ["rebind.evil.example", "rebind.evil.example:3569",
                                  "localhost.evil.example", "127.0.0.1.nip.io"])
async def test_dns_rebinding_host_is_refused(server: Served, host: str) -> None:
    raw = f"GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    assert _status(await _raw_request(server.port, raw)) == 421
    raw = _ws_handshake("/", host)
    assert _status(await _raw_request(server.port, raw)) in (403, 421)
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.post("/graphs", json={"graph": {"processes": {}}}, headers={"host": host})
        assert r.status_code == 421 and r.json()["error"] == "bad_host"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
async def test_local_names_and_ip_literals_are_served(server: Served, host: str) -> None:
    raw = f"GET /health HTTP/1.1\r\nHost: {host}:{server.port}\r\nConnection: close\r\n\r\n"
    assert _status(await _raw_request(server.port, raw.encode())) == 200


async def test_allow_host_serves_that_name(nursery: trio.Nursery, tmp_path: Path) -> None:
    served = await start_server(nursery, tmp_path / "d", allow_hosts=["flows.internal",
                                                                      ".corp.example"])
    for host, status in (("flows.internal", 200), ("a.corp.example", 200),
                         ("corp.example", 200), ("evilcorp.example", 421)):
        raw = f"GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        assert _status(await _raw_request(served.port, raw)) == status, host
    served.shutdown.set()


# -- CORS --------------------------------------------------------------------------------


async def test_cors_is_off_by_default_and_on_by_flag(nursery: trio.Nursery,
                                                     tmp_path: Path) -> None:
    origin = "https://dash.example"
    preflight = {"origin": origin, "access-control-request-method": "POST",
                 "access-control-request-headers": "authorization, content-type"}
    off = await start_server(nursery, tmp_path / "a", allow_origins=[origin])
    async with httpx.AsyncClient(base_url=off.url) as c:
        r = await c.options("/executions", headers=preflight)
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
        r = await c.get("/health", headers={"origin": origin})
        assert "access-control-allow-origin" not in r.headers
    on = await start_server(nursery, tmp_path / "b", allow_origins=[origin], cors=True)
    async with httpx.AsyncClient(base_url=on.url) as c:
        r = await c.options("/executions", headers=preflight)
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == origin
        assert "authorization" in r.headers["access-control-allow-headers"]
        r = await c.get("/health", headers={"origin": origin})
        assert r.headers["access-control-allow-origin"] == origin
        r = await c.get("/health", headers={"origin": EVIL})
        assert "access-control-allow-origin" not in r.headers
        r = await c.options("/executions", headers={**preflight, "origin": EVIL})
        assert r.status_code == 403
    off.shutdown.set()
    on.shutdown.set()


# -- routes added later inherit the protection ---------------------------------------------


async def test_extra_routes_inherit_origin_host_and_auth(nursery: trio.Nursery,
                                                         tmp_path: Path) -> None:
    async def extra(request: Request) -> PlainTextResponse:
        return PlainTextResponse("extra")

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    served = await start_server(nursery, tmp_path / "d", token="tok", extra_routes=[
        Route("/extra", extra, methods=["GET", "POST"]), WebSocketRoute("/extra-ws", echo)])
    async with httpx.AsyncClient(base_url=served.url) as c:
        assert (await c.get("/extra")).status_code == 401
        auth = {"authorization": "Bearer tok"}
        assert (await c.get("/extra", headers=auth)).text == "extra"
        assert (await c.post("/extra", headers={**auth, "origin": EVIL})).status_code == 403
        assert (await c.get("/extra", headers={**auth, "host": "x.evil.example"})
                ).status_code == 421
    with pytest.raises(HandshakeError):
        async with open_websocket_url(f"{served.ws_url}/extra-ws"):
            pass
    with pytest.raises(HandshakeError):
        async with open_websocket_url(f"{served.ws_url}/extra-ws", extra_headers=[
                (b"authorization", b"Bearer tok"), (b"origin", EVIL.encode())]):
            pass
    async with open_websocket_url(f"{served.ws_url}/extra-ws", extra_headers=[
            (b"authorization", b"Bearer tok")]) as ws:
        assert await ws.get_message() == "hello"
    served.shutdown.set()


# -- unauthenticated FBP clients ---------------------------------------------------------


async def test_unauthenticated_fbp_client_receives_nothing_but_the_auth_error(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    served = await start_server(nursery, tmp_path / "d", token="t0k")
    async with (open_websocket_url(f"{served.ws_url}/", subprotocols=["noflo"]) as anon_ws,
                open_websocket_url(f"{served.ws_url}/fbp", subprotocols=["noflo"]) as ws):
        anon = Fbp(anon_ws)
        await anon.send("runtime", "getruntime")
        first = json.loads(await anon_ws.get_message())
        assert first["command"] == "error" and "unauthorized" in first["payload"]["message"]
        await anon.send("graph", "clear", {"id": "x"}, )
        assert "unauthorized" in (await anon.expect("graph", "error"))["message"]
        wrong = Fbp(anon_ws, secret="guess")
        await wrong.send("component", "list")
        assert "unauthorized" in (await wrong.expect("component", "error"))["message"]
        # an authorised client edits, runs and sends secret data ...
        owner = Fbp(ws, secret="t0k")
        await owner.send("graph", "clear", {"id": "g", "main": True, "name": "g"})
        await owner.expect("graph", "clear")
        await owner.send("graph", "addnode", {"id": "a", "component": "core/Repeat",
                                              "graph": "g"})
        await owner.send("graph", "addinport", {"public": "in", "node": "a", "port": "in",
                                                "graph": "g"})
        await owner.send("graph", "addoutport", {"public": "out", "node": "a", "port": "out",
                                                 "graph": "g"})
        await owner.send("graph", "addinitial", {"src": {"data": "iip-secret"},
                                                 "tgt": {"node": "a", "port": "in"},
                                                 "graph": "g"})
        await owner.send("network", "start", {"graph": "g"})
        await owner.expect("network", "started")
        await owner.send("runtime", "packet", {"graph": "g", "port": "in", "event": "data",
                                               "payload": "packet-secret"})
        assert await owner.expect_packet("out") in ("iip-secret", "packet-secret")
        await owner.send("network", "stop", {"graph": "g"})
        await owner.expect("network", "stopped")
        # ... and the anonymous one saw none of it: its next message is its own error
        await anon.send("runtime", "getruntime")
        raw = await anon_ws.get_message()
        assert "secret" not in raw.replace("runtime secret", "")
        assert json.loads(raw)["command"] == "error"
    served.shutdown.set()


async def test_anonymous_flood_cannot_lock_out_the_authorised_client(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    served = await start_server(nursery, tmp_path / "d", token="t0k",
                                max_unauthenticated=40, max_per_peer=30)
    refused = accepted = 0
    async with trio.open_nursery() as holders:
        stop = trio.Event()
        ready = trio.Semaphore(0)

        async def hold() -> None:
            nonlocal refused, accepted
            try:
                async with open_websocket_url(f"{served.ws_url}/", subprotocols=["noflo"]):
                    accepted += 1
                    ready.release()
                    await stop.wait()
            except HandshakeError:
                refused += 1
                ready.release()

        attempts = 200
        for _ in range(attempts):
            holders.start_soon(hold)
        for _ in range(attempts):
            await ready.acquire()
        assert accepted == 30 and refused == attempts - 30  # per-peer cap
        # the client with the token still gets in and is served
        async with open_websocket_url(f"{served.ws_url}/", subprotocols=["noflo"],
                                      extra_headers=[(b"authorization", b"Bearer t0k")]) as ws:
            fbp = Fbp(ws)
            await fbp.send("runtime", "getruntime")
            assert "protocol:graph" in (await fbp.expect("runtime", "runtime"))["capabilities"]
        async with httpx.AsyncClient(base_url=served.url) as c:
            assert (await c.get("/health", headers={"authorization": "Bearer t0k"})
                    ).status_code == 200
        stop.set()
    served.shutdown.set()


async def test_a_client_that_never_authenticates_is_closed(nursery: trio.Nursery,
                                                           tmp_path: Path) -> None:
    served = await start_server(nursery, tmp_path / "d", token="t0k", auth_timeout=0.3)
    async with open_websocket_url(f"{served.ws_url}/", subprotocols=["noflo"]) as ws:
        with trio.fail_after(10):
            error = json.loads(await ws.get_message())
            assert "no valid secret" in error["payload"]["message"]
            with pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
        assert info.value.reason.code == 1008
    served.shutdown.set()


# -- slow clients, bounded memory, and the packet ledger ---------------------------------------


async def _fbp_graph(fbp: Fbp, gid: str, out: bool = True) -> None:
    await fbp.send("graph", "clear", {"id": gid, "name": gid})
    await fbp.expect("graph", "clear")
    await fbp.send("graph", "addnode", {"id": "a", "component": "core/Repeat", "graph": gid})
    await fbp.send("graph", "addinport", {"public": "in", "node": "a", "port": "in",
                                          "graph": gid})
    if out:
        await fbp.send("graph", "addoutport", {"public": "out", "node": "a", "port": "out",
                                               "graph": gid})
        await fbp.expect("graph", "addoutport")
    else:
        await fbp.expect("graph", "addinport")


async def _wait_for(condition: Callable[[], bool], what: str) -> None:
    with trio.fail_after(20):
        while not condition():
            await trio.sleep(0.005)  # polls server state; no ordering depends on it


async def test_slow_readers_are_dropped_with_the_reason_and_memory_stays_bounded(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    limit = 1024 * 1024
    served = await start_server(nursery, tmp_path / "d", client_queue_bytes=limit)
    runtime = _fbp_runtime(served)
    peak = 0
    async with trio.open_nursery() as inner:
        lazies = []
        for _ in range(8):
            lazies.append(await inner.start(_open_lazy, served))
        async with open_websocket_url(f"{served.ws_url}/", subprotocols=["noflo"],
                                      max_message_size=64 * 1024 * 1024) as ws:
            editor = Fbp(ws)
            await _fbp_graph(editor, "big")
            blob = "x" * (1024 * 1024)
            for i in range(40):
                await editor.send("graph", "changenode", {"id": "a", "graph": "big",
                                                          "metadata": {"blob": blob, "i": i}})
                await editor.expect("graph", "changenode")
                peak = max(peak, runtime.statistics()["queued_bytes"])
        # 9 clients (8 lazy + the editor) never hold more than their limit each
        assert peak <= 9 * limit
        for lazy in lazies:
            messages, code, reason = await _drain(lazy)
            assert code == 1008 and "did not read" in reason
            assert "did not read" in json.loads(messages[-1])["payload"]["message"]
        inner.cancel_scope.cancel()
    served.shutdown.set()


async def _open_lazy(served: Served, task_status: trio.TaskStatus[Any]) -> None:
    async with open_websocket_url(f"{served.ws_url}/", subprotocols=["noflo"],
                                  message_queue_size=0,
                                  max_message_size=64 * 1024 * 1024) as ws:
        task_status.started(ws)
        await trio.sleep_forever()


async def _drain(ws: Any) -> tuple[list[str], int, str]:
    messages: list[str] = []
    with trio.fail_after(20):
        try:
            while True:
                messages.append(await ws.get_message())
        except ConnectionClosed as exc:
            return messages, exc.reason.code, exc.reason.reason or ""


def _state(served: Served) -> Any:
    assert served.state is not None
    return served.state


def _fbp_runtime(served: Served) -> FbpRuntime:
    """The server's FBP runtime: it listens for REST's graph replacements."""
    runtimes = [listener.__self__ for listener in _state(served).on_graph_replaced
                if isinstance(getattr(listener, "__self__", None), FbpRuntime)]
    assert len(runtimes) == 1
    return runtimes[0]


async def test_every_packet_a_non_reading_client_sent_reaches_the_graph(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    served = await start_server(nursery, tmp_path / "d", client_queue=256,
                                client_queue_bytes=64 * 1024)
    runtime = _fbp_runtime(served)
    total = 5000
    async with open_websocket_url(f"{served.ws_url}/", subprotocols=["noflo"],
                                  message_queue_size=0) as ws:
        fbp = Fbp(ws)
        await _fbp_graph(fbp, "ledger", out=False)
        await fbp.send("network", "start", {"graph": "ledger"})
        await fbp.expect("network", "started")
        sent = 0
        pad = "x" * 4000  # big enough that the acks overfill the sockets' buffers

        async def flood() -> None:
            nonlocal sent
            for i in range(total):
                await fbp.send("runtime", "packet", {"graph": "ledger", "port": "in",
                                                     "event": "data", "payload": [i, pad]})
                sent += 1

        async with trio.open_nursery() as inner:
            inner.start_soon(flood)
            # the server stops reading this client instead of dropping its packets
            await _wait_for(lambda: runtime.statistics()["paused"] == 1, "paused")
            assert sent < total
            acks = 0
            while acks < total:
                msg = json.loads(await ws.get_message())
                assert msg["command"] == "packetsent", msg
                assert msg["payload"]["payload"] == [acks, pad]
                acks += 1
        net = runtime.graphs["ledger"].execution.net
        received = net.statistics()["nodes"]["a"]["inports"]["in"].total
        assert received == total == acks
    served.shutdown.set()


# -- deep JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
async def test_deeply_nested_json_is_a_400_and_an_fbp_error(server: Served,
                                                            depth: int) -> None:
    deep = "[" * depth + "]" * depth
    async with httpx.AsyncClient(base_url=server.url) as c:
        for path in ("/executions", "/graphs", "/workflows"):
            body = '{"graph": {"processes": {}}, "inputs": {"x": [' + deep + "]}}"
            if path == "/workflows":
                body = '{"graph_json": {"processes": {}}, "input": ' + deep + "}"
            r = await c.post(path, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 400, (path, r.status_code, r.text[:200])
            assert "deeper" in r.text
    async with open_websocket_url(f"{server.ws_url}/", subprotocols=["noflo"]) as ws:
        await ws.send_message('{"protocol": "graph", "command": "addnode", "payload": '
                              + deep + "}")
        error = json.loads(await ws.get_message())
        assert error["command"] == "error" and "deeper" in error["payload"]["message"]
        fbp = Fbp(ws)
        await fbp.send("runtime", "getruntime")
        await fbp.expect("runtime", "runtime")
    async with open_websocket_url(f"{server.ws_url}/ws") as ws:
        await ws.send_message('{"type": "start_workflow", "data": ' + deep + "}")
        error = json.loads(await ws.get_message())
        assert error["type"] == "error" and error["success"] is False
        assert "deeper" in error["error"]


# -- binding, tokens, files ----------------------------------------------------------------


async def test_non_loopback_bind_without_token_is_refused_in_process() -> None:
    with pytest.raises(InsecureBind) as info:
        await serve(host="0.0.0.0", port=0, announce=False)
    assert "--insecure" in str(info.value) and "REFLOWPY_TOKEN" in str(info.value)


def test_token_comes_from_env_or_file_and_argv_warns(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    env = {"REFLOWPY_TOKEN": "from-env", "OTHER": "1"}
    assert load_token(argv_token=None, token_file=None, environ=env) == "from-env"
    assert "REFLOWPY_TOKEN" not in env  # children never inherit it
    path = tmp_path / "token"
    path.write_text("from-file\n")
    path.chmod(0o600)
    assert load_token(argv_token="argv", token_file=str(path), environ={}) == "from-file"
    path.chmod(0o644)
    with caplog.at_level("WARNING"):
        load_token(argv_token=None, token_file=str(path), environ={})
    assert "chmod 600" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert load_token(argv_token="argv", token_file=None, environ={}) == "argv"
    assert "/proc" in caplog.text and "argv" not in caplog.text.replace("argv is", "")
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    from reflowpy.server.auth import TokenError

    with pytest.raises(TokenError, match="empty"):
        load_token(argv_token=None, token_file=str(empty), environ={})
    with pytest.raises(TokenError, match="cannot read"):
        load_token(argv_token=None, token_file=str(tmp_path / "missing"), environ={})


async def test_data_dir_is_0700_and_the_store_files_0600(server: Served) -> None:
    async with server.client() as c:
        assert (await c.post("/graphs", json={"graph": {"processes": {}}, "id": "p"})
                ).status_code == 201
    assert stat.S_IMODE(os.stat(server.data_dir).st_mode) == 0o700
    files = sorted(p.name for p in server.data_dir.iterdir() if p.is_file())
    assert {"reflowpy.db", "reflowpy.db-wal", "reflowpy.db-shm"} <= set(files), files
    for name in files:
        assert stat.S_IMODE(os.stat(server.data_dir / name).st_mode) == 0o600, name
    assert stat.S_IMODE(os.stat(server.data_dir / "workspace").st_mode) == 0o700


async def test_existing_world_readable_store_is_tightened(nursery: trio.Nursery,
                                                          tmp_path: Path) -> None:
    data = tmp_path / "old"
    data.mkdir(mode=0o755)
    (data / "reflowpy.db").touch(mode=0o644)
    os.chmod(data, 0o755)
    os.chmod(data / "reflowpy.db", 0o644)
    served = await start_server(nursery, data)
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(data / "reflowpy.db").st_mode) == 0o600
    served.shutdown.set()

