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
* ``POST /zeal/convert`` with a Zeal workflow: ``{reflow_graph, required_actors,
  conversion_metadata}`` (see :mod:`reflowpy.server.zeal`); ``POST /zeal/workflows``
  with ``{workflow, input}``: converts and starts it (execution id
  ``zeal_exec_<uuid>``, workflow id the Zeal id), ``input`` going to the exported
  in-ports it names and into the metadata of server-request nodes;
* ``POST /register-api-tools``: registers the API tools of the operator's service
  registry file (``api_tools``, JSON or YAML; see :mod:`reflowpy.server.api_tools`)
  as components and answers ``{registered_actors, message}``; with no file
  configured it registers none, as Reflow does without its registry file;
* ``metadata.webhook_url`` (with ``webhook_headers``): once the execution is over, its
  final ``WorkflowEvent`` (``workflow_id``, ``execution_id``, ``event_type``
  ``Completed`` / ``{"Failed": {"error"}}`` / ``Cancelled``, ``timestamp``, ``data``
  with the results) is POSTed there with Reflow's ``X-Reflow-Event-Type``,
  ``X-Reflow-Execution-ID`` and ``X-Reflow-Workflow-ID`` headers;
  ``metadata.trace_webhook_url`` with ``enable_tracing`` gets Reflow's trace events
  (``Started``, then the final one, ``source: "reflow_server"``). Delivery is real,
  retried a bounded number of times, survives a server restart (a pending webhook is
  recorded with the execution and sent after the restart), and goes only where
  :class:`~reflowpy.server.webhooks.WebhookPolicy` allows: public addresses unless
  the operator allows more (``--webhook-allow``); a refused URL is ``403`` when the
  workflow is posted.

Reflow executions are stored like every other (their workflow id with them), so
``GET /workflows/{id}`` answers after a restart too. ``GET /health`` answers in the
envelope as well (see :mod:`reflowpy.server.rest`).

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

import msgspec
import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from reflowpy.errors import GraphError, ReflowError
from reflowpy.network.network import Network
from reflowpy.server.executions import Execution
from reflowpy.server.graphs import graph_text, load_graph
from reflowpy.server.jsonio import decode_json
from reflowpy.server.outbox import Outbox
from reflowpy.server.policy import CapabilityRefused
from reflowpy.server.rest import HttpError, parse_json, read_body, validate_graph
from reflowpy.server.schemas import ExecutionPolicy
from reflowpy.server.state import ServerState
from reflowpy.server.webhooks import check_headers, deliver
from reflowpy.server.zeal import ZealError, ZealWorkflow, convert, inject_request, required_actors

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
        stats = ex.net.statistics().nodes
        nodes = len(stats)
        failed = sum(1 for s in stats.values() if s.failures)
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
                    on_network: Any = None, graph: Any = None) -> Execution:
        if graph is None:
            try:
                graph = load_graph(request.graph_json, "json")
            except GraphError as exc:
                raise HttpError(422, "invalid_graph", str(exc)) from None
        ex_id = request.metadata.execution_id or uuid.uuid4().hex
        net = validate_graph(graph, self.state, name=ex_id,
                             capacity=ExecutionPolicy().capacity)
        hooks = await self._check_hooks(request.metadata)
        inputs: dict[str, list[Any]] = {}
        if isinstance(request.input, dict):
            for key, value in request.input.items():
                if graph.port_name(key) in graph.inports:
                    inputs[key] = [value]
        if ex_id in self.state.executions.executions:
            raise HttpError(409, "conflict", f"execution {ex_id!r} already exists")
        meta: dict[str, Any] = {"workflow_id": request.metadata.workflow_id or ex_id,
                                **hooks}
        if request.metadata.source:
            meta["source"] = request.metadata.source
        try:
            ex = await self.state.executions.start(
                graph, graph_text=graph_text(graph), inputs=inputs,
                policy=ExecutionPolicy(until="idle"), execution_id=ex_id,
                on_network=on_network, meta=meta, network=net)
        except (ReflowError, ValueError) as exc:
            raise HttpError(422, "cannot_start", str(exc)) from None
        if hooks:
            self.state.nursery.start_soon(self.notify, ex, True)
        return ex

    async def _check_hooks(self, metadata: ExecutionMetadata) -> dict[str, Any]:
        """The webhook fields to record with the execution, after checking them
        against the server's webhook policy (403) and header rules (422)."""
        out: dict[str, Any] = {}
        urls = []
        if metadata.webhook_url:
            try:
                headers = check_headers(metadata.webhook_headers)
            except ValueError as exc:
                raise HttpError(422, "invalid_request", str(exc)) from None
            out.update(webhook_url=metadata.webhook_url, webhook_headers=headers,
                       webhook_pending=True)
            urls.append(("webhook_url", metadata.webhook_url))
        if metadata.enable_tracing and metadata.trace_webhook_url:
            out["trace_webhook_url"] = metadata.trace_webhook_url
            urls.append(("trace_webhook_url", metadata.trace_webhook_url))
        for what, url in urls:
            try:
                await self.state.webhooks.resolve(url, what=what)
            except CapabilityRefused as exc:
                raise HttpError(403, "capability_refused", str(exc)) from None
            except OSError as exc:  # DNS may recover before delivery: retried then
                _log.warning("%s %r does not resolve yet (%s); delivery will retry",
                             what, url, exc)
        return out

    async def notify(self, ex: Execution, started: bool) -> None:
        """Send the execution's trace events (``started``: also the ``Started`` one)
        and, once it is over, its final event to ``webhook_url``; record that the
        webhook is no longer pending (so a restart does not send it again)."""
        workflow_id = self.workflow_of(ex) or ex.id
        trace_url = ex.meta.get("trace_webhook_url")
        if started and isinstance(trace_url, str):
            await self._trace(trace_url, ex, workflow_id, "Started", {})
        await ex.done.wait()
        event = _webhook_event(ex, workflow_id)
        url = ex.meta.get("webhook_url")
        if isinstance(url, str) and ex.meta.get("webhook_pending"):
            name = next(iter(event["event_type"])) if isinstance(event["event_type"], dict) \
                else str(event["event_type"])
            headers = {**ex.meta.get("webhook_headers", {}), "X-Reflow-Event-Type": name,
                       "X-Reflow-Execution-ID": ex.id, "X-Reflow-Workflow-ID": workflow_id}
            delivered = await deliver(
                url, _ENCODE.encode(event), headers, policy=self.state.webhooks,
                attempts=self.state.webhook_attempts, backoff=self.state.webhook_backoff,
                what=f"webhook of execution {ex.id}")
            ex.meta.update(webhook_pending=False, webhook_delivered=delivered)
            self.state.storage.set_execution_meta(ex.id, ex.meta)
        if started and isinstance(trace_url, str):
            await self._trace(trace_url, ex, workflow_id, event["event_type"], event["data"])

    async def _trace(self, url: str, ex: Execution, workflow_id: str, event_type: Any,
                     data: Any) -> None:
        name = next(iter(event_type)) if isinstance(event_type, dict) else str(event_type)
        body = {"execution_id": ex.id, "workflow_id": workflow_id, "event_type": name,
                "timestamp": _ms(), "data": data, "source": "reflow_server"}
        await deliver(url, _ENCODE.encode(body), {}, policy=self.state.webhooks,
                      attempts=self.state.webhook_attempts,
                      backoff=self.state.webhook_backoff,
                      what=f"trace event of execution {ex.id}")


def _webhook_event(ex: Execution, workflow_id: str) -> dict[str, Any]:
    """Reflow's final ``WorkflowEvent`` of an execution (the webhook body)."""
    status = _status(ex)
    event_type: Any = status
    if status == "Failed":
        event_type = {"Failed": {"error": ex.error or "failed"}}
    return {"workflow_id": workflow_id, "execution_id": ex.id, "event_type": event_type,
            "timestamp": _ms(), "data": _results(ex)}


def routes(state: ServerState) -> list[BaseRoute]:
    """The ``/workflows``, ``/zeal/*``, ``/register-api-tools`` and ``/ws`` routes."""
    workflows = _Workflows(state)
    for ex in list(state.executions.executions.values()):  # pending across a restart
        if ex.meta.get("webhook_pending") and workflows.workflow_of(ex) is not None:
            state.nursery.start_soon(workflows.notify, ex, False)

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

    async def zeal_body(request: Request) -> Any:
        body = await read_body(request, state.max_body)
        return parse_json(body, state.max_depth)

    def zeal_workflow(raw: Any, where: str = "") -> ZealWorkflow:
        try:
            return msgspec.convert(raw, ZealWorkflow)
        except msgspec.ValidationError as exc:
            raise HttpError(400, "invalid_request",
                            f"Invalid Zeal workflow{where}: {exc}") from None

    async def zeal_convert(request: Request) -> Response:
        try:
            workflow = zeal_workflow(await zeal_body(request))
            try:
                graph = convert(workflow)
            except ZealError as exc:
                raise HttpError(400, "invalid_request", str(exc)) from None
        except HttpError as exc:
            return reply(error=exc.body.detail or exc.body.error, status=exc.status)
        return reply({
            "reflow_graph": msgspec.to_builtins(graph.to_dict("reflow")),
            "required_actors": required_actors(workflow),
            "conversion_metadata": {
                "source_workflow_id": workflow.id,
                "source_workflow_name": workflow.name,
                "node_count": sum(len(g.nodes) for g in workflow.graphs),
                "connection_count": sum(len(g.connections) for g in workflow.graphs)}})

    async def zeal_execute(request: Request) -> Response:
        try:
            raw = await zeal_body(request)
            if not isinstance(raw, dict) or "workflow" not in raw:
                raise HttpError(400, "invalid_request",
                                "the body must be {\"workflow\": <Zeal workflow>, \"input\": ...}")
            workflow = zeal_workflow(raw["workflow"], " at $.workflow")
            try:
                graph = convert(workflow)
            except ZealError as exc:
                raise HttpError(400, "invalid_request", str(exc)) from None
            inject_request(graph, raw.get("input"))
            req = WorkflowExecutionRequest(
                graph_json={}, input=raw.get("input"), metadata=ExecutionMetadata(
                    execution_id=f"zeal_exec_{uuid.uuid4()}", workflow_id=workflow.id,
                    source="zeal_integration", enable_tracing=True))
            ex = await workflows.start(req, graph=graph)
        except HttpError as exc:
            return reply(error=exc.body.detail or exc.body.error, status=exc.status)
        return reply({"execution_id": ex.id, "status": "started",
                      "message": "Zeal workflow converted and started"})

    async def register_api_tools(request: Request) -> Response:
        from reflowpy.server.api_tools import register_api_tools as register

        try:
            names = register(state)
        except ReflowError as exc:
            return reply(error=f"Failed to register API tools: {exc}", status=500)
        return reply({"registered_actors": len(names),
                      "message": f"Registered {len(names)} API tool actors"})

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
        Route("/zeal/convert", zeal_convert, methods=["POST"]),
        Route("/zeal/workflows", zeal_execute, methods=["POST"]),
        Route("/register-api-tools", register_api_tools, methods=["POST"]),
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
