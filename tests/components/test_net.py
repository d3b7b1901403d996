"""net/*: against real local servers started by the tests (no mocks of httpx)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import trio

import reflowpy as rf
from tests.components.helpers import REGISTRY, config_error, run_node


class _Handler(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}
    release = threading.Event()

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any, ctype: str = "application/json") -> None:
        data = json.dumps(body).encode() if ctype == "application/json" else body.encode()
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        hits = self.hits
        hits[self.path] = hits.get(self.path, 0) + 1
        if self.path.startswith("/ok"):
            self._reply(200, {"path": self.path, "ua": self.headers.get("x-test")})
        elif self.path == "/flaky":
            self._reply(503 if hits[self.path] < 3 else 200, {"n": hits[self.path]})
        elif self.path == "/missing":
            self._reply(404, "nope", "text/plain")
        elif self.path == "/slow":
            self.release.wait(10)
            self._reply(200, {})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"null")
        self._reply(201, {"echo": body})


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.hits = {}
    _Handler.release = threading.Event()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    _Handler.release.set()
    srv.shutdown()
    srv.server_close()


async def test_http_request_get_post_and_relative_urls(server: str) -> None:
    r = await run_node("net/HttpRequest", {"url": server, "headers": {"x-test": "rf"}},
                       inputs={"in": ["/ok/1", {"url": "/ok/2", "params": {"q": "v"}},
                                      {"url": "/echo", "method": "POST", "json": {"a": [1]}}]})
    bodies = [resp["body"] for resp in r["response"]]
    assert bodies[0] == {"path": "/ok/1", "ua": "rf"}
    assert bodies[1]["path"] == "/ok/2?q=v"
    assert r["response"][2]["status"] == 201 and bodies[2] == {"echo": {"a": [1]}}


async def test_http_request_retries_with_backoff(server: str) -> None:
    r = await run_node("net/HttpRequest", {"url": server, "retries": 3, "backoff": 0.01},
                       inputs={"in": ["/flaky"]})
    assert r["response"][0]["status"] == 200 and r["response"][0]["attempts"] == 3


async def test_http_request_status_and_error_ports(server: str) -> None:
    r = await run_node("net/HttpRequest", {"url": server, "timeout": 0.2, "retries": 1,
                                           "backoff": 0.01},
                       inputs={"in": ["/missing", "/slow", 42]})
    assert r["status"][0]["status"] == 404 and r["status"][0]["body"] == "nope"
    assert [e["type"] for e in r["error"]] == ["ReadTimeout", "TypeError"]
    assert r["error"][0]["attempts"] == 2
    r = await run_node("net/HttpRequest", {"url": server}, inputs={"in": ["/missing"]},
                       outports=["response"])
    assert [d.value for d in r.dead] == ["/missing"]  # nowhere to report: dead-lettered
    r = await run_node("net/HttpRequest", {"retries": 0},
                       inputs={"in": ["http://127.0.0.1:9/unreachable"]})
    assert r["error"][0]["type"] == "ConnectError"
    with config_error("node 'n'.*'method'"):
        await run_node("net/HttpRequest", {"method": "FETCH"}, inputs={"in": ["x"]})


async def test_http_server_answers_from_the_graph() -> None:
    g = rf.Graph("srv")
    g.add_node("http", "net/HttpServer", {"port": 0, "timeout": 5})
    g.add_node("answer", "transform/Map", {"expression":
        "{'id': id, 'status': 200 if path != '/teapot' else 418,"
        " 'body': {'you_sent': json, 'path': path, 'q': query}}"})
    g.add_edge("http", "request", "answer", "in")
    g.add_edge("answer", "out", "http", "response")
    g.add_outport("listening", "http", "listening")
    async with rf.Network(g, REGISTRY) as net:
        info = await net.outputs("listening").receive()
        async with httpx.AsyncClient(base_url=info["url"]) as client:
            resp = await client.post("/items?x=1", json={"a": 1})
            assert resp.status_code == 200
            assert resp.json() == {"you_sent": {"a": 1}, "path": "/items", "q": {"x": "1"}}
            resp = await client.get("/teapot")  # same keep-alive connection
            assert resp.status_code == 418


async def test_http_server_times_out_without_answer() -> None:
    g = rf.Graph("srv")
    g.add_node("http", "net/HttpServer", {"timeout": 0.2, "max_body": 10})
    g.add_node("sink", "core/Drop")
    g.add_edge("http", "request", "sink", "in")
    g.add_outport("listening", "http", "listening")
    async with rf.Network(g, REGISTRY) as net:
        info = await net.outputs("listening").receive()
        async with httpx.AsyncClient(base_url=info["url"]) as client:
            assert (await client.get("/")).status_code == 504
            assert (await client.post("/", content=b"x" * 100)).status_code == 413


async def test_websocket_source_and_sink() -> None:
    from trio_websocket import WebSocketRequest, serve_websocket

    received: list[Any] = []
    got_all = trio.Event()

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        if request.path == "/feed":
            for i in range(3):
                await ws.send_message(json.dumps({"i": i}))
            await ws.aclose()
        else:
            while len(received) < 2:
                received.append(await ws.get_message())
            got_all.set()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        url = f"ws://127.0.0.1:{server.port}"
        g = rf.Graph("ws")
        g.add_node("src", "net/WebSocketSource", {"url": url + "/feed", "json": True,
                                                   "reconnect": False})
        g.add_node("sink", "net/WebSocketSink", {"url": url + "/sink"})
        g.add_outport("out", "src", "out")
        g.add_inport("in", "sink", "in")
        async with rf.Network(g, REGISTRY) as net:
            got = [await net.outputs("out").receive() for _ in range(3)]
            assert got == [{"i": 0}, {"i": 1}, {"i": 2}]
            await net.send("in", "hello")
            await net.send("in", {"k": 1})
            with trio.fail_after(10):
                await got_all.wait()
        assert received == ["hello", '{"k": 1}']
        nursery.cancel_scope.cancel()
    with config_error("node 'n'.*'url'"):
        await run_node("net/WebSocketSink", {"url": "http://x"}, inputs={"in": [1]})
