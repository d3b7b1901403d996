"""Reflow's server surface, so Reflow clients keep working against reflowpy.

REST (Reflow's ``ApiResponse`` envelope: ``{"success", "data" | "error", "timestamp"}``):

* ``POST /workflows`` with a ``WorkflowExecutionRequest`` (``graph_json`` in Reflow's
  graph JSON, ``input``, ``metadata.execution_id`` / ``workflow_id``) starts the graph
  as a batch execution: ``input`` keys that name exported in-ports are sent there,
  and the execution completes when the network is idle;
* ``GET /workflows/{id}``: Reflow's ``ExecutionState`` (``status`` ``Running``,
  ``Completed``, ``Failed``, ``Cancelled``; ``result`` with the exported out-ports'
  values once it is over);
* ``POST /workflows/{id}/cancel``;
* ``metadata.webhook_url`` (with ``webhook_headers``): the final ``ExecutionState``
  is POSTed there, in the ``ApiResponse`` envelope, once the execution is over.

Reflow executions are stored like every other (their workflow id with them), so
``GET /workflows/{id}`` answers after a restart too. ``GET /health`` answers in the
envelope as well (see :mod:`reflowpy.server.rest`). Not provided: Reflow's Zeal
endpoints (``/zeal/convert``, ``/zeal/workflows``) and ``/register-api-tools``.

WebSocket ``/ws`` (JSON text frames with a ``type``): ``start_workflow`` ->
``workflow_started`` (the starting connection is subscribed at once, so it misses
nothing); ``subscribe_workflow`` -> ``subscription_ack``; ``cancel_workflow`` ->
``workflow_cancelled``. Subscribers receive ``network_event`` (the kernel's
``NetworkEvent`` JSON, Reflow's shape) and ``workflow_event`` (Reflow's
``EngineEvent`` fields at the top level: ``event_type`` ``Started``, then
``Completed``/``Failed``/``Cancelled`` only when the network really finished). Bad
input gets ``{"type": "error", "success": false, "error": ...}``.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import time
import uuid
from typing import Any

import httpx
import msgspec
import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from reflowpy.errors import GraphError, ReflowError
from reflowpy.network.network import Network
from reflowpy.server.app import ServerState
from reflowpy.server.executions import Execution
from reflowpy.server.graphs import graph_text, load_graph
from reflowpy.server.jsonio import decode_json
from reflowpy.server.outbox import Outbox
from reflowpy.server.rest import HttpError, parse_json, read_body, validate_graph
from reflowpy.server.schemas import ExecutionPolicy

__all__ = ["ExecutionMetadata", "WorkflowExecutionRequest", "routes"]

_ENCODE = msgspec.json.Encoder()
_log = logging.getLogger("reflowpy.server.reflow")


class ExecutionMetadata(msgspec.Struct):
    """Reflow's ``ExecutionMetadata``."""

    execution_id: str = ""
    workflow_id: str = ""
    source: str = ""
    webhook_url: str | None = None
    webhook_headers: dict[str, str] | None = None
    trace_webhook_url: str | None = None
    enable_tracing: bool | None = None


class WorkflowExecutionRequest(msgspec.Struct):
    """Reflow's ``WorkflowExecutionRequest``."""

    graph_json: dict[str, Any]
    input: Any = None
    metadata: ExecutionMetadata = msgspec.field(default_factory=ExecutionMetadata)


def _ms() -> int:
    return int(time.time() * 1000)


def _envelope(data: Any = None, error: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"success": error is None, "timestamp": _ms()}
    if error is None:
        out["data"] = data
    else:
        out["error"] = error
    return out


def _status(ex: Execution) -> str:
    if not ex.done.is_set():
        return "Running"
    if ex.user_stopped or ex.status == "stopped":
        return "Cancelled"
    return "Failed" if ex.status in ("failed", "interrupted") else "Completed"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat()


def _results(ex: Execution) -> dict[str, Any]:
    return {port: msgspec.to_builtins(buf.read(0, 1_000_000)[0])
            for port, buf in ex.outputs.items()}


def _state(ex: Execution, workflow_id: str) -> dict[str, Any]:
    result = None
    if ex.done.is_set():
        result = {
            "success": ex.status != "failed" and not ex.user_stopped,
            "execution_id": ex.id,
            "start_time": _iso(ex.created),
            "end_time": _iso(ex.ended),
            "results": _results(ex),
            "errors": [ex.error] if ex.error else None,
            "trace_session_id": None,
        }
    return {"id": ex.id, "workflow_id": workflow_id, "status": _status(ex), "result": result}


def _engine_event(ex: Execution, workflow_id: str, event_type: Any, data: Any = None
                  ) -> dict[str, Any]:
    """A ``workflow_event``: Reflow's ``EngineEvent`` fields at the top level (as
    Reflow sends them), and the same event under ``event`` for older clients."""
    event = {"workflow_id": workflow_id, "execution_id": ex.id, "event_type": event_type,
             "timestamp": _ms(), "data": data if data is not None else {}}
    return {"type": "workflow_event", **event, "event": event}


def _final_event(ex: Execution, workflow_id: str) -> dict[str, Any]:
    duration = int(((ex.ended or time.time()) - ex.created) * 1000)
    if ex.status == "failed":
        return _engine_event(ex, workflow_id, {"Failed": {
            "error": ex.error, "duration_ms": duration}})
    if ex.user_stopped:
        return _engine_event(ex, workflow_id, "Cancelled")
    nodes = 0
    failed = 0
    if ex.net is not None:
        stats = ex.net.statistics().get("nodes", {})
        nodes = len(stats)
        failed = sum(1 for s in stats.values() if isinstance(s, dict) and s.get("failures"))
    return _engine_event(ex, workflow_id, {"Completed": {
        "duration_ms": duration, "nodes_executed": nodes, "nodes_failed": failed}},
        {"results": _results(ex)})


class _Workflows:
    """Reflow-facing bookkeeping: workflow ids of executions started here."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def workflow_of(self, ex: Execution) -> str | None:
        """The Reflow workflow id of an execution started here (stored with it, so it
        survives a restart); ``None`` for executions of the other APIs."""
        value = ex.meta.get("workflow_id")
        return value if isinstance(value, str) else None

    def lookup(self, execution_id: object) -> Execution | None:
        """The Reflow execution ``execution_id``, if there is one."""
        if not isinstance(execution_id, str):
            return None
        ex = self.state.executions.executions.get(execution_id)
        return ex if ex is not None and self.workflow_of(ex) is not None else None

    async def start(self, request: WorkflowExecutionRequest,
                    on_network: Any = None) -> Execution:
        try:
            graph = load_graph(request.graph_json, "json")
        except GraphError as exc:
            raise HttpError(422, "invalid_graph", str(exc)) from None
        validate_graph(graph, self.state)
        inputs: dict[str, list[Any]] = {}
        if isinstance(request.input, dict):
            for key, value in request.input.items():
                if graph.port_name(key) in graph.inports:
                    inputs[key] = [value]
        ex_id = request.metadata.execution_id or uuid.uuid4().hex
        if ex_id in self.state.executions.executions:
            raise HttpError(409, "conflict", f"execution {ex_id!r} already exists")
        meta: dict[str, Any] = {"workflow_id": request.metadata.workflow_id or ex_id}
        if request.metadata.webhook_url:
            meta["webhook_url"] = request.metadata.webhook_url
            meta["webhook_headers"] = dict(request.metadata.webhook_headers or {})
        try:
            ex = await self.state.executions.start(
                graph, graph_text=graph_text(graph), inputs=inputs,
                policy=ExecutionPolicy(until="idle"), execution_id=ex_id,
                on_network=on_network, meta=meta)
        except (ReflowError, ValueError) as exc:
            raise HttpError(422, "cannot_start", str(exc)) from None
        if "webhook_url" in meta:
            self.state.nursery.start_soon(self._webhook, ex)
        return ex

    async def _webhook(self, ex: Execution) -> None:
        """POST the final ``ExecutionState`` to the request's ``webhook_url`` (with its
        ``webhook_headers``) once the execution is over; a failure is logged."""
        await ex.done.wait()
        url = str(ex.meta["webhook_url"])
        body = _ENCODE.encode(_envelope(_state(ex, self.workflow_of(ex) or ex.id)))
        headers = {"content-type": "application/json", **ex.meta.get("webhook_headers", {})}
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.post(url, content=body, headers=headers)
            if response.status_code >= 400:
                _log.warning("webhook for execution %s: %s answered %d", ex.id, url,
                             response.status_code)
        except httpx.HTTPError as exc:
            _log.warning("webhook for execution %s: %s failed: %s", ex.id, url, exc)


def routes(state: ServerState) -> list[BaseRoute]:
    """The ``/workflows`` and ``/ws`` routes."""
    workflows = _Workflows(state)

    def reply(data: Any = None, error: str | None = None, status: int = 200) -> Response:
        return Response(_ENCODE.encode(_envelope(data, error)), status_code=status,
                        media_type="application/json")

    async def start_workflow(request: Request) -> Response:
        try:
            body = await read_body(request, state.max_body)
            raw = parse_json(body, state.max_depth)
            try:
                req = msgspec.convert(raw, WorkflowExecutionRequest)
            except msgspec.ValidationError as exc:
                raise HttpError(422, "invalid_request", f"Invalid request: {exc}") from None
            ex = await workflows.start(req)
        except HttpError as exc:
            return reply(error=exc.body.detail or exc.body.error, status=exc.status)
        return reply({"execution_id": ex.id, "status": "started",
                      "message": "Workflow started in background"})

    def lookup(request: Request) -> Execution | None:
        return workflows.lookup(request.path_params["id"])

    async def get_workflow(request: Request) -> Response:
        ex = lookup(request)
        if ex is None:
            return reply(error=f"Execution not found: {request.path_params['id']}", status=404)
        return reply(_state(ex, workflows.workflow_of(ex) or ex.id))

    async def cancel_workflow(request: Request) -> Response:
        ex = lookup(request)
        if ex is None:
            return reply(error=f"Execution not found: {request.path_params['id']}", status=404)
        ex.user_stopped = True
        await ex.stop("force")
        return reply({"execution_id": ex.id, "status": "cancelled"})

    async def ws(websocket: WebSocket) -> None:
        await _WsConnection(state, workflows, websocket).run()

    return [
        Route("/workflows", start_workflow, methods=["POST"]),
        Route("/workflows/{id}", get_workflow, methods=["GET"]),
        Route("/workflows/{id}/cancel", cancel_workflow, methods=["POST"]),
        WebSocketRoute("/ws", ws),
    ]


class _WsConnection:
    """One Reflow ``/ws`` client: its subscriptions and bounded outgoing queue."""

    def __init__(self, state: ServerState, workflows: _Workflows, websocket: WebSocket) -> None:
        self.state = state
        self.workflows = workflows
        self.websocket = websocket
        self.outbox = Outbox(state.client_queue, state.client_queue_bytes)
        self.push = self.outbox.push
        self.subscribed: set[str] = set()
        self.nursery: trio.Nursery | None = None

    async def run(self) -> None:
        if self.state.reflow_connections >= self.state.max_connections:
            await self.websocket.close(code=1013)
            return
        await self.websocket.accept()
        self.state.reflow_connections += 1
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self._writer, nursery.cancel_scope)
                await self._reader()
                nursery.cancel_scope.cancel()
        finally:
            self.state.reflow_connections -= 1

    async def _writer(self, scope: trio.CancelScope) -> None:
        outbox = self.outbox
        try:
            while True:
                batch = await outbox.next_batch()
                if batch is None:
                    break
                for data in batch:
                    await self.websocket.send_text(data.decode())
                    outbox.written(len(data))
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass
        if outbox.dropped is not None:
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await self.websocket.send_text(_ENCODE.encode(
                    {"type": "error", "success": False, "error": outbox.dropped}).decode())
                await self.websocket.close(code=1008, reason=outbox.dropped[:120])
        scope.cancel()

    async def _reader(self) -> None:
        while True:
            await self.outbox.wait_room()
            if self.outbox.dropped is not None:
                return
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                self.push({"type": "error", "success": False,
                           "error": "binary frames are not supported"})
                continue
            await self.handle(text)

    async def handle(self, text: str) -> None:
        try:
            msg = decode_json(text, self.state.max_depth, "the message")
        except msgspec.DecodeError as exc:
            self.push({"type": "error", "success": False, "error": f"Invalid JSON: {exc}"})
            return
        except ValueError as exc:
            self.push({"type": "error", "success": False, "error": str(exc)})
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            self.push({"type": "error", "success": False, "error": "Missing message type"})
            return
        kind = msg["type"]
        if kind == "start_workflow":
            await self._start(msg.get("data"))
        elif kind in ("subscribe_workflow", "cancel_workflow"):
            ex_id = msg.get("execution_id")
            ex = self.workflows.lookup(ex_id)
            if ex is None:
                self.push({"type": "error", "success": False,
                           "error": f"Execution {ex_id} not found or not ready"})
                return
            if kind == "subscribe_workflow":
                self.push({"type": "subscription_ack", "success": True, "execution_id": ex.id})
                self._subscribe(ex, None)
            else:
                ex.user_stopped = True
                await ex.stop("force")
                self.push({"type": "workflow_cancelled", "success": True,
                           "execution_id": ex.id})
        else:
            self.push({"type": "error", "success": False,
                       "error": f"Unknown message type: {kind}"})

    async def _start(self, data: Any) -> None:
        try:
            req = msgspec.convert(data, WorkflowExecutionRequest)
        except msgspec.ValidationError as exc:
            self.push({"type": "error", "success": False, "error": f"Invalid request: {exc}"})
            return
        holder: dict[str, Any] = {}

        def subscribe_early(net: Network) -> None:
            holder["events"] = net.events(self.state.event_buffer)

        try:
            ex = await self.workflows.start(req, on_network=subscribe_early)
        except HttpError as exc:
            self.push({"type": "workflow_error", "success": False,
                       "error": exc.body.detail or exc.body.error})
            return
        self.push({"type": "workflow_started", "success": True, "execution_id": ex.id})
        self._subscribe(ex, holder.get("events"))

    def _subscribe(self, ex: Execution, events: Any) -> None:
        if ex.id in self.subscribed or self.nursery is None:
            if events is not None:
                events.close()
            return
        self.subscribed.add(ex.id)
        self.nursery.start_soon(self._forward, ex, events)

    async def _forward(self, ex: Execution, events: Any) -> None:
        workflow_id = self.workflows.workflow_of(ex) or ex.id
        self.push(_engine_event(ex, workflow_id, "Started"))
        if events is None and ex.net is not None and not ex.done.is_set():
            events = ex.net.events(self.state.event_buffer)
        if events is not None:
            with events:
                async for event in events:
                    self.push({"type": "network_event", "execution_id": ex.id,
                               "event": msgspec.to_builtins(event), "timestamp": _ms()})
                    if type(event).__name__ == "NetworkIdle":
                        self.push(_engine_event(ex, workflow_id, "NetworkIdle"))
        await ex.done.wait()
        self.push(_final_event(ex, workflow_id))
