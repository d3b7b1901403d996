"""net/*: HTTP client and server, WebSocket client source and sink.

HttpRequest uses httpx's async client (which runs on trio), with per-request
timeouts and retries with exponential backoff on transport errors and on
retryable statuses. HttpServer is a small HTTP/1.1 server (h11 on trio sockets):
each request becomes a packet on ``request`` and waits for the packet with the same
``id`` on ``response`` — so the answer is computed by the graph. WebSocket sources
and sinks use trio-websocket.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

import h11
import httpx
import trio

import reflowpy as rf
from reflowpy.components._common import Config, report, report_in_loop
from reflowpy.components.expression import _to_str

__all__ = ["HttpRequest", "HttpServer", "WebSocketSink", "WebSocketSource"]

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def _encode_body(value: Any) -> tuple[bytes, str]:
    """Bytes and a content type for a body value."""
    if value is None:
        return b"", "text/plain; charset=utf-8"
    if isinstance(value, bytes):
        return value, "application/octet-stream"
    if isinstance(value, str):
        return value.encode(), "text/plain; charset=utf-8"
    return (json.dumps(rf.thaw(value), default=_to_str).encode(),
            "application/json")


def _decode_body(content: bytes, content_type: str, mode: str) -> Any:
    if mode == "bytes":
        return content
    text = content.decode("utf-8", errors="replace")
    if mode == "json" or (mode == "auto" and "json" in content_type):
        try:
            return json.loads(text) if text else None
        except ValueError:
            if mode == "json":
                raise
    return text


class HttpRequest(rf.Actor):
    """Make an HTTP request per packet and send the response on.

    A packet is a URL string or an object ``{url, method, headers, params, json,
    body}``; missing fields come from config (``url``, ``method`` default GET,
    ``headers``, ``params``). A relative ``url`` in the packet is joined to the
    configured ``url``. Config also: ``timeout`` (seconds, default 30), ``retries``
    (default 2), ``backoff`` (seconds, default 0.2, doubled per retry),
    ``retry_status`` (default ``[429, 502, 503, 504]``), ``response`` (``auto``:
    JSON if the server says so, else text; or ``json``, ``text``, ``bytes``).

    Out-ports: ``response`` — ``{status, headers, body, url, request}`` for 1xx-3xx;
    ``status`` — the same for 4xx/5xx (falls back to ``error`` if not connected);
    ``error`` — transport failures and timeouts once retries are used up.
    """

    description = "Makes HTTP requests (httpx), with timeouts and retries with backoff"
    icon = "cloud-download"
    inports = [rf.Port("in", description="URL string or request object")]
    outports = [
        rf.Port("response", type="object", description="Successful responses"),
        rf.Port("status", type="object", required=False, description="4xx/5xx responses"),
        rf.Port("error", type="object", required=False, description="Failed requests"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.url = cfg.get("url", "str", None)
        self.method = cfg.get("method", "str", "GET").upper()
        if self.method not in _METHODS:
            raise cfg.error("method", f"must be one of {', '.join(_METHODS)}, got {self.method!r}")
        self.headers = cfg.get("headers", "dict", {})
        self.params = cfg.get("params", "dict", {})
        self.timeout = cfg.get("timeout", "number", 30.0, minimum=0.001)
        self.retries = cfg.get("retries", "int", 2, minimum=0)
        self.backoff = cfg.get("backoff", "number", 0.2, minimum=0)
        self.retry_status = set(cfg.get("retry_status", "list", [429, 502, 503, 504]))
        self.mode = cfg.get("response", "str", "auto", choices=("auto", "json", "text", "bytes"))
        self.client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=True)

    async def teardown(self, ctx: rf.ActorContext) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            with trio.CancelScope(shield=True):
                await client.aclose()

    def _request(self, value: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {"url": value} if isinstance(value, str) else (
            dict(value) if isinstance(value, Mapping) else {})
        if not spec and value is not None:
            raise TypeError(f"a request must be a URL string or an object, got"
                            f" {type(value).__name__}")
        url = spec.get("url")
        if url is None:
            url = self.url
        elif self.url is not None and not urllib.parse.urlsplit(str(url)).scheme:
            url = urllib.parse.urljoin(self.url, str(url))
        if not url:
            raise ValueError("no url: set config 'url' or send one in the packet")
        method = str(spec.get("method", self.method)).upper()
        if method not in _METHODS:
            raise ValueError(f"unsupported method {method!r}")
        req: dict[str, Any] = {
            "method": method,
            "url": str(url),
            "headers": {**self.headers, **dict(spec.get("headers") or {})},
            "params": {**self.params, **dict(spec.get("params") or {})},
        }
        if "json" in spec:
            req["json"] = rf.thaw(spec["json"])
        elif "body" in spec:
            content, ctype = _encode_body(spec["body"])
            req["content"] = content
            req["headers"].setdefault("content-type", ctype)
        return req

    async def process(self, ctx: rf.ActorContext) -> None:
        value = ctx.inputs["in"]
        try:
            req = self._request(value)
        except (TypeError, ValueError) as exc:
            await report(ctx, exc, value)
            return
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = await self.client.request(**req)
            except httpx.HTTPError as exc:
                if attempt <= self.retries:
                    await trio.sleep(self.backoff * 2 ** (attempt - 1))
                    continue
                await report(ctx, exc, value, attempts=attempt, url=req["url"])
                return
            if resp.status_code in self.retry_status and attempt <= self.retries:
                await trio.sleep(self.backoff * 2 ** (attempt - 1))
                continue
            break
        try:
            body = _decode_body(resp.content, resp.headers.get("content-type", ""), self.mode)
        except ValueError as exc:
            await report(ctx, exc, value, status=resp.status_code)
            return
        out = {
            "status": resp.status_code,
            "headers": dict(resp.headers),
            "body": body,
            "url": str(resp.url),
            "request": value,
            "attempts": attempt,
        }
        if resp.status_code < 400:
            await ctx.send("response", out)
        elif ctx.connected("status"):
            await ctx.send("status", out)
        else:
            await report(ctx, rf.ActorError(
                f"node {ctx.node_id!r}: HTTP {resp.status_code} from {req['url']}",
                node=ctx.node_id, port="in"), value, status=resp.status_code, response=out)


class HttpServer(rf.Actor):
    """An HTTP server whose requests flow into the graph and whose answers flow back.

    Each request goes to ``request`` as ``{id, method, path, query, headers, body,
    json}`` (``json`` is the parsed body, or ``null``). The graph answers by sending
    ``{id, status, headers, body}`` to ``response`` (``body`` may be text, bytes, or a
    value sent as JSON; ``status`` defaults to 200). Requests without an answer
    within ``timeout`` seconds (default 30) get 504.

    Config: ``host`` (default 127.0.0.1), ``port`` (default 0: any free port),
    ``timeout``, ``max_body`` (bytes, default 1 MiB; larger requests get 413).
    When listening it sends ``{host, port, url}`` on ``listening``.
    """

    description = "HTTP server: requests into the graph, answers from the response port"
    icon = "server"
    inports = [rf.Port("response", type="object", required=False,
                       description="{id, status, headers, body} answering a request")]
    outports = [
        rf.Port("request", type="object", description="Incoming requests"),
        rf.Port("listening", type="object", required=False, description="{host, port, url}"),
        rf.Port("error", type="object", required=False, description="Responses for unknown ids"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.host = cfg.get("host", "str", "127.0.0.1")
        self.port = cfg.get("port", "int", 0, minimum=0, maximum=65535)
        self.timeout = cfg.get("timeout", "number", 30.0, minimum=0.001)
        self.max_body = cfg.get("max_body", "int", 1 << 20, minimum=0)
        self.pending: dict[str, tuple[trio.Event, list[Any]]] = {}
        self.next_id = 0

    async def run(self, ctx: rf.ActorContext) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, lambda s: self._serve(ctx, s), listeners)
            if ctx.connected("listening"):
                await ctx.send("listening", {"host": self.host, "port": port,
                                             "url": f"http://{self.host}:{port}"})
            try:
                while True:
                    _, answer = await ctx.receive("response")
                    key = str(answer.get("id")) if isinstance(answer, Mapping) else None
                    slot = self.pending.get(key) if key is not None else None
                    if slot is None:
                        await report_in_loop(ctx, KeyError(
                            f"node {ctx.node_id!r}: response for unknown or expired request"
                            f" id {key!r}"), answer)
                        continue
                    slot[1].append(answer)
                    slot[0].set()
            finally:
                nursery.cancel_scope.cancel()

    async def _serve(self, ctx: rf.ActorContext, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read_request(conn, stream)
                if request is None:
                    return
                status, headers, body = await self._answer(ctx, request)
                data = conn.send(h11.Response(status_code=status, headers=[
                    *headers, ("content-length", str(len(body)))]))
                data = (data or b"") + (conn.send(h11.Data(data=body)) or b"")
                data += conn.send(h11.EndOfMessage()) or b""
                await stream.send_all(data)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                    return  # e.g. a body we refused to read: close rather than resync
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await stream.aclose()

    async def _read_request(self, conn: h11.Connection, stream: trio.SocketStream
                            ) -> dict[str, Any] | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                if not data and head is None:
                    return None
                continue
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.max_body:
                    return {"too_large": True}
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
        assert head is not None
        target = head.target.decode()
        parts = urllib.parse.urlsplit(target)
        return {
            "method": head.method.decode(),
            "path": parts.path,
            "query": dict(urllib.parse.parse_qsl(parts.query)),
            "headers": {k.decode(): v.decode() for k, v in head.headers},
            "body": bytes(body),
        }

    async def _answer(self, ctx: rf.ActorContext, request: dict[str, Any]
                      ) -> tuple[int, list[tuple[str, str]], bytes]:
        if request.get("too_large"):
            return 413, [("content-type", "text/plain"), ("connection", "close")], \
                b"request body too large\n"
        self.next_id += 1
        rid = str(self.next_id)
        raw: bytes = request.pop("body")
        text = raw.decode("utf-8", errors="replace")
        request.update(id=rid, body=text, json=None)
        if "json" in request["headers"].get("content-type", "") or text[:1] in ("{", "["):
            with contextlib.suppress(ValueError):
                request["json"] = json.loads(text)
        event = trio.Event()
        slot: list[Any] = []
        self.pending[rid] = (event, slot)
        try:
            await ctx.send("request", request)
            with trio.move_on_after(self.timeout):
                await event.wait()
        finally:
            del self.pending[rid]
        if not slot:
            return 504, [("content-type", "text/plain")], b"no response from the graph in time\n"
        answer = slot[0]
        status = answer.get("status", 200)
        body, ctype = _encode_body(answer.get("body"))
        headers = {"content-type": ctype, **{str(k).lower(): str(v) for k, v in
                                             dict(answer.get("headers") or {}).items()}}
        if not isinstance(status, int) or not 100 <= status <= 599:
            status, body = 500, f"bad status in graph response: {status!r}\n".encode()
        return status, list(headers.items()), body


class WebSocketSource(rf.Actor):
    """Connect to a WebSocket URL and send every message received into the graph.

    Config: ``url`` (required, ``ws://`` or ``wss://``), ``json`` (parse text
    messages as JSON; default ``false``), ``reconnect`` (reconnect after a drop,
    with backoff; default ``true``), ``max_retries`` (failed connects in a row before
    giving up; default 5), ``backoff`` (seconds, default 0.5). Connection failures
    go to ``error``.
    """

    description = "WebSocket client: messages from a server into the graph"
    icon = "plug"
    inports = [rf.Port("stop", type="bang", required=False, description="Close the connection")]
    outports = [
        rf.Port("out", description="Received messages"),
        rf.Port("error", type="object", required=False, description="Connection errors"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.url = cfg.get("url", "str")
        if not self.url.startswith(("ws://", "wss://")):
            raise cfg.error("url", f"must start with ws:// or wss://, got {self.url!r}")
        self.json = cfg.get("json", "bool", False)
        self.reconnect = cfg.get("reconnect", "bool", True)
        self.max_retries = cfg.get("max_retries", "int", 5, minimum=0)
        self.backoff = cfg.get("backoff", "number", 0.5, minimum=0)

    async def run(self, ctx: rf.ActorContext) -> None:
        from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

        failures = 0
        async with trio.open_nursery() as nursery:

            async def watch_stop() -> None:
                await ctx.receive("stop")
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_stop)
            while True:
                try:
                    async with open_websocket_url(self.url) as ws:
                        failures = 0
                        while True:
                            message = await ws.get_message()
                            if self.json and isinstance(message, str):
                                try:
                                    message = json.loads(message)
                                except ValueError as exc:
                                    await report_in_loop(ctx, exc, message)
                                    continue
                            await ctx.send("out", message)
                except (OSError, HandshakeError, ConnectionClosed) as exc:
                    failures += isinstance(exc, (OSError, HandshakeError))
                    if not self.reconnect or failures > self.max_retries:
                        nursery.cancel_scope.cancel()
                        await report_in_loop(ctx, ConnectionError(
                            f"node {ctx.node_id!r}: websocket {self.url}: {exc}"), self.url)
                        return
                    await trio.sleep(self.backoff * 2 ** max(failures - 1, 0))


class WebSocketSink(rf.Actor):
    """Send every packet on ``in`` to a WebSocket server (text as-is, bytes as binary,
    other values as JSON).

    Config: ``url`` (required). The connection opens when the network starts and
    closes when it stops; a failed connection is a start error.
    """

    description = "WebSocket client: packets from the graph to a server"
    icon = "plug"
    inports = [rf.Port("in", description="Messages to send")]
    outports = ()

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.url = cfg.get("url", "str")
        if not self.url.startswith(("ws://", "wss://")):
            raise cfg.error("url", f"must start with ws:// or wss://, got {self.url!r}")

    async def run(self, ctx: rf.ActorContext) -> None:
        from trio_websocket import open_websocket_url

        async with open_websocket_url(self.url) as ws:
            while True:
                _, value = await ctx.receive("in")
                if not isinstance(value, (str, bytes)):
                    value = json.dumps(rf.thaw(value), default=_to_str)
                await ws.send_message(value)
