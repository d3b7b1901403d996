"""HTTP routes of the observability layer, for ``reflowpy serve`` (Starlette/ASGI).

* ``GET /metrics``: Prometheus text exposition (:mod:`reflowpy.observe.metrics`);
* ``GET /ui/``: the live page (assets shipped in ``reflowpy/observe/static``, no CDN);
  ``GET /ui/api/networks[/{name}]`` its JSON; ``GET /ui/events?network=NAME`` the same
  picture pushed over Server-Sent Events at every monitor tick;
* ``POST /events``: ingest event batches from other processes (:mod:`.ingest`);
* ``GET /traces``, ``/traces/{id}``, ``/traces/{id}/events``, ``/traces/{id}/failures``,
  ``/traces/{id}/lineage/{msg}``: the trace store over REST (the CLI's questions).

Authentication is the server's middleware (bearer token on every route). The page
reads the token from its URL fragment (``/ui/#token=...``, never sent to the server in
a URL) and sends it as a header, also for its event stream (fetch, not EventSource).
Store queries run in worker threads, never on the trio thread.
"""

from __future__ import annotations

import importlib.resources
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import trio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from reflowpy.errors import ReflowError
from reflowpy.observe import query
from reflowpy.observe.backends import open_store
from reflowpy.observe.collector import Collector
from reflowpy.observe.flowtrace import FbpTraces
from reflowpy.observe.ingest import IngestError, Ingestor
from reflowpy.observe.live import Monitor, PacketTap, peer_rows
from reflowpy.observe.metrics import CONTENT_TYPE, render
from reflowpy.observe.store import TraceStore, TraceStoreError

if TYPE_CHECKING:
    from reflowpy.network.network import Network

__all__ = ["Observability", "install"]

_log = logging.getLogger("reflowpy.observe")
_ENC = msgspec.json.Encoder(enc_hook=repr)
_STATIC = {"index.html": "text/html; charset=utf-8", "ui.js": "text/javascript; charset=utf-8",
           "ui.css": "text/css; charset=utf-8"}


def _json(value: Any, status: int = 200) -> Response:
    return Response(_ENC.encode(value), status_code=status, media_type="application/json")


def _error(status: int, error: str, detail: str) -> Response:
    return _json({"error": error, "detail": detail}, status)


class Observability:
    """The monitor, trace store and ingest of one server, and their routes."""

    def __init__(self, networks: Callable[[], Mapping[str, Network]], *,
                 store: str | Path | None = None, interval: float = 0.25,
                 max_body: int = 16 * 1024 * 1024,
                 peers: Callable[[], list[dict[str, Any]]] | None = None,
                 retention: Mapping[str, Any] | None = None, record_sample: int = 0) -> None:
        self.monitor = Monitor(networks, interval, peers)
        self._store_spec = store
        self._retention = dict(retention or {})
        #: Executions recorded by :meth:`record_execution`: 1 in ``record_sample``
        #: messages (1: every message; 0: not recorded).
        self.record_sample = record_sample
        self._store: TraceStore | None = None
        self._ingestor: Ingestor | None = None
        self.max_body = max_body
        #: FBP ``trace:*`` backing (set by :func:`install` for a server).
        self.fbp: FbpTraces | None = None

    @property
    def store(self) -> TraceStore:
        """The trace store (opened on first use)."""
        if self._store is None:
            self._store = open_store(self._store_spec if self._store_spec is not None
                                     else ":memory:", **self._retention)
        return self._store

    @asynccontextmanager
    async def record_execution(self, execution_id: str, net: Network) -> AsyncIterator[None]:
        """Record ``net`` into the store while the block runs (``record_sample``); a
        store that fails is logged and the execution goes on (its trace is marked)."""
        if self.record_sample <= 0:
            yield
            return
        try:
            store = self.store
        except TraceStoreError as exc:
            _log.warning("execution %s is not recorded: %s", execution_id, exc)
            yield
            return
        collector = Collector(store, sample=self.record_sample)
        try:
            async with collector.record(net, execution_id=execution_id, source="server"):
                yield
        except TraceStoreError as exc:
            _log.warning("execution %s: its trace recording failed: %s", execution_id, exc)

    @property
    def ingestor(self) -> Ingestor:
        """Ingest of posted events into :attr:`store`."""
        if self._ingestor is None:
            self._ingestor = Ingestor(self.store)
        return self._ingestor

    async def close(self) -> None:
        """Finish ingested executions and close the store."""
        if self._ingestor is not None:
            await self._ingestor.close()
        if self._store is not None:
            self._store.close()

    def _extra(self) -> list[tuple[str, str, float]]:
        ing = self._ingestor
        return [("reflowpy_ingested_events", "Events accepted by POST /events",
                 float(ing.accepted if ing else 0))]

    # -- handlers ------------------------------------------------------------------------

    async def metrics(self, request: Request) -> Response:
        self.monitor.tick()
        return Response(render(self.monitor, self._extra), media_type=CONTENT_TYPE)

    async def static(self, request: Request) -> Response:
        name = request.path_params.get("name") or "index.html"
        kind = _STATIC.get(name)
        if kind is None:
            return _error(404, "not_found", f"no file {name!r} under /ui/")
        data = importlib.resources.files("reflowpy.observe").joinpath("static", name).read_bytes()
        return Response(data, media_type=kind, headers={
            "cache-control": "no-cache", "x-content-type-options": "nosniff",
            "content-security-policy": "default-src 'self'; img-src 'self' data:;"
                                       " style-src 'self'; script-src 'self'"})

    async def ui_redirect(self, request: Request) -> Response:
        return Response(status_code=308, headers={"location": "/ui/"})

    async def networks(self, request: Request) -> Response:
        return _json(self.monitor.names())

    async def network(self, request: Request) -> Response:
        view = self.monitor.view(request.path_params["name"])
        if view is None:
            return _error(404, "not_found", f"no running network {request.path_params['name']!r}")
        return _json(view)

    async def events(self, request: Request) -> Response:
        name = request.query_params.get("network")
        tap_node = request.query_params.get("tapNode") or None
        tap_edge = request.query_params.get("tapEdge") or None
        edge = None
        if tap_edge is not None:
            edge = _parse_edge(tap_edge)
            if edge is None:
                return _error(422, "invalid_request", f"tapEdge {tap_edge!r}: expected"
                              " SRC.PORT->TGT.PORT")
        if (tap_node or edge) and not name:
            return _error(422, "invalid_request", "a packet tap needs ?network=NAME")

        async def body() -> AsyncIterator[bytes]:
            with self.monitor.watching():
                async for chunk in self._stream(name, tap_node, edge):
                    yield chunk

        return StreamingResponse(body(), media_type="text/event-stream", headers={
            "cache-control": "no-cache", "x-accel-buffering": "no"})

    async def _stream(self, name: str | None, tap_node: str | None,
                      edge: tuple[str, str, str, str] | None) -> AsyncIterator[bytes]:
        yield b": reflowpy live view\n\n"
        tap: PacketTap | None = None
        try:
            while True:
                if name:
                    view = self.monitor.view(name)
                    data = _ENC.encode(view) if view is not None else b"null"
                    yield b"event: view\ndata: " + data + b"\n\n"
                    net = self.monitor.networks().get(name)
                    if (tap_node or edge) and net is not None:
                        if tap is None or tap.net is not net:
                            if tap is not None:
                                tap.close()
                            tap = PacketTap(net, node=tap_node, edge=edge)
                        tap.poll()
                        yield b"event: packets\ndata: " + _ENC.encode(tap.as_json()) + b"\n\n"
                else:
                    yield b"event: networks\ndata: " + _ENC.encode(self.monitor.names()) + b"\n\n"
                with trio.move_on_after(max(self.monitor.interval * 4, 1.0)):
                    await self.monitor.changed()
        finally:
            if tap is not None:
                tap.close()

    async def post_events(self, request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return _error(413, "payload_too_large", f"at most {self.max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                return _error(413, "payload_too_large", f"at most {self.max_body} bytes")
            chunks.append(chunk)
        try:
            batch = self.ingestor.decode(b"".join(chunks))
            result = await self.ingestor.ingest(batch)
            if request.query_params.get("sync") in ("1", "true"):
                await self.ingestor.sync()
        except IngestError as exc:
            return _error(422, "invalid_events", str(exc))
        return _json(result, 202)

    async def _q(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Response:
        try:
            return _json(await trio.to_thread.run_sync(lambda: fn(*args, **kw)))
        except TraceStoreError as exc:
            return _error(404, "not_found", str(exc))
        except ReflowError as exc:
            return _error(422, "invalid_request", str(exc))

    async def traces(self, request: Request) -> Response:
        return await self._q(lambda: [
            {k: v for k, v in msgspec.to_builtins(r).items() if k != "graph_json"}
            for r in self.store.executions(_int(request, "limit", 50))])

    async def trace(self, request: Request) -> Response:
        return await self._q(self.store.execution, request.path_params["id"])

    async def trace_events(self, request: Request) -> Response:
        kinds = request.query_params.getlist("kind") or None
        return await self._q(
            self.store.events, request.path_params["id"], kinds=kinds,
            node=request.query_params.get("node"), after_seq=_int(request, "after", 0),
            limit=min(_int(request, "limit", 1000), 100_000))

    async def trace_failures(self, request: Request) -> Response:
        return await self._q(query.failures, self.store, request.path_params["id"])

    async def trace_lineage(self, request: Request) -> Response:
        def run() -> dict[str, Any]:
            hops, roots = query.lineage(self.store, request.path_params["id"],
                                        int(request.path_params["msg"]))
            return {"hops": hops, "inputs": roots}

        return await self._q(run)

    def routes(self) -> list[BaseRoute]:
        """The Starlette routes (see the module docstring)."""
        return [
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/ui", self.ui_redirect, methods=["GET"]),
            Route("/ui/", self.static, methods=["GET"]),
            Route("/ui/api/networks", self.networks, methods=["GET"]),
            Route("/ui/api/networks/{name}", self.network, methods=["GET"]),
            Route("/ui/events", self.events, methods=["GET"]),
            Route("/ui/{name}", self.static, methods=["GET"]),
            Route("/events", self.post_events, methods=["POST"]),
            Route("/traces", self.traces, methods=["GET"]),
            Route("/traces/{id}", self.trace, methods=["GET"]),
            Route("/traces/{id}/events", self.trace_events, methods=["GET"]),
            Route("/traces/{id}/failures", self.trace_failures, methods=["GET"]),
            Route("/traces/{id}/lineage/{msg:int}", self.trace_lineage, methods=["GET"]),
        ]


def _int(request: Request, name: str, default: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        return max(0, int(text))
    except ValueError:
        raise ReflowError(f"query parameter {name!r} must be an integer, got {text!r}"
                          ) from None


def _env_int(name: str, default: int) -> int:
    import os

    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ReflowError(f"${name} must be an integer, got {text!r}") from None
    if value < 0:
        raise ReflowError(f"${name} must be >= 0, got {value}")
    return value


def _parse_edge(text: str) -> tuple[str, str, str, str] | None:
    src, arrow, tgt = text.partition("->")
    snode, _, sport = src.rpartition(".")
    tnode, _, tport = tgt.rpartition(".")
    if not arrow or not (snode and sport and tnode and tport):
        return None
    return snode, sport, tnode, tport


def install(state: Any) -> list[BaseRoute]:
    """Set up observability for a server (``state`` is its ``ServerState``): a monitor
    ticking in the server's nursery over every hosted network (while a page watches),
    the trace store in the data dir (``traces.sqlite``; ``$REFLOWPY_TRACE_STORE`` may name
    another file or a ``postgresql://`` URL), and the routes to add to the app.

    Every execution the server runs is recorded into the store under its id, 1 in
    ``$REFLOWPY_TRACE_SAMPLE`` messages (default 100: about 5 % of the throughput; 1
    records every message, 0 nothing; failures and dead letters are recorded either
    way). Retention: executions older than the server's ``retention_seconds`` and,
    oldest first, beyond ``$REFLOWPY_TRACE_MAX_EVENTS`` events (default 2,000,000; 0:
    no limit)."""
    import os

    spec: str | Path | None = os.environ.get("REFLOWPY_TRACE_STORE") or None
    path = getattr(state.storage, "path", None)
    if spec is None and path is not None:
        spec = Path(path).parent / "traces.sqlite"

    def networks() -> dict[str, Network]:
        return {ex.id: ex.net for ex in state.executions.executions.values()
                if ex.net is not None}

    def peers() -> list[dict[str, Any]]:
        host = getattr(state, "bridge_host", None)
        if host is None:
            return []
        return peer_rows({d["location"]: d["bridge"] for d in host.statistics()})

    sample = _env_int("REFLOWPY_TRACE_SAMPLE", 100)
    retention = {"max_events": _env_int("REFLOWPY_TRACE_MAX_EVENTS", 2_000_000) or None,
                 "max_age": float(state.executions.retention_seconds)}
    obs = Observability(networks, store=spec, max_body=state.max_body, peers=peers,
                        retention=retention, record_sample=sample)

    def recorder(ex: Any, net: Network) -> Any:
        run_id = ex.id if not ex.restarts else f"{ex.id}-restart{ex.restarts}"
        return obs.record_execution(run_id, net)

    state.executions.recorder = recorder
    obs.fbp = FbpTraces(lambda: obs.store, state.nursery, limit=state.trace_limit)
    state.observe = obs
    state.nursery.start_soon(obs.monitor.run)
    return obs.routes()
