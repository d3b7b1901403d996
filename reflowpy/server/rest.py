"""reflowpy's own REST API: health, components, graphs, executions, dead letters.

Bodies are JSON decoded straight into the :mod:`~reflowpy.server.schemas` structs
(``400`` for malformed JSON, ``413`` above the body limit, ``422`` naming the field
for a wrong shape, and ``422`` with the validation report for a graph that does not
validate). Every response body is one of those structs too, and ``/openapi.json``
documents them. Graph uploads accept every format the graph layer reads; stored
graphs come back as NoFlo/fbp-graph JSON.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import reflowpy
from reflowpy.errors import GraphError, GraphValidationError, NetworkError, ReflowError
from reflowpy.network import analysis
from reflowpy.network.graph import Graph
from reflowpy.network.network import Network
from reflowpy.server.executions import Execution
from reflowpy.server.graphs import graph_text, load_graph, media_format
from reflowpy.server.jsonio import (
    DEFAULT_MAX_DEPTH,
    JsonDuplicateKey,
    JsonTooDeep,
    decode_json,
)
from reflowpy.server.policy import CapabilityRefused
from reflowpy.server.schemas import (
    STATUSES,
    ComponentOut,
    ErrorOut,
    ExecutionCreate,
    ExecutionCreated,
    ExecutionOut,
    GraphOut,
    GraphSummary,
    GraphUpload,
    Health,
    OutputsOut,
    PacketIn,
    PortOut,
    Resent,
    StopRequest,
    openapi,
)
from reflowpy.server.sse import event_stream, output_stream, sse_response
from reflowpy.server.state import ServerState

__all__ = ["HttpError", "json_response", "parse_json", "read_body", "routes",
           "validate_graph"]

T = TypeVar("T")
_ENCODE = msgspec.json.Encoder()


class HttpError(Exception):
    """An error response: status code and an :class:`ErrorOut` body."""

    def __init__(self, status: int, error: str, detail: str = "", report: Any = None) -> None:
        super().__init__(detail or error)
        self.status = status
        self.body = ErrorOut(error, detail, report)


def json_response(value: Any, status: int = 200) -> Response:
    """``value`` (a struct or builtins) as a JSON response."""
    return Response(_ENCODE.encode(value), status_code=status, media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes with 413."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HttpError(413, "payload_too_large", f"the body may have at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, "payload_too_large", f"the body may have at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """JSON ``body``: 400 for malformed JSON, for nesting deeper than ``max_depth`` and
    for a key written twice in one object (``duplicate_key``, naming both places)."""
    try:
        return decode_json(body, max_depth, "the request body")
    except msgspec.DecodeError as exc:
        raise HttpError(400, "malformed_json", str(exc)) from None
    except JsonTooDeep as exc:
        raise HttpError(400, "too_deep", str(exc)) from None
    except JsonDuplicateKey as exc:
        raise HttpError(400, "duplicate_key", str(exc)) from None


def decode(body: bytes, type: type[T], *, allow_empty: bool = False,
           max_depth: int = DEFAULT_MAX_DEPTH) -> T:
    """JSON ``body`` as ``type``: 400 for malformed or too deep JSON, 422 for a wrong
    shape."""
    if not body.strip():
        if allow_empty:
            return msgspec.convert({}, type)
        raise HttpError(400, "empty_body", "this request needs a JSON body")
    raw = parse_json(body, max_depth)
    try:
        return msgspec.convert(raw, type)
    except (msgspec.ValidationError, ValueError) as exc:
        raise HttpError(422, "invalid_request", str(exc)) from None


def validate_graph(graph: Graph, state: ServerState, *, name: str = "",
                   capacity: int | None = None) -> Network:
    """Refuse a graph the server's policy excludes (403 naming node and rule), or whose
    components or ports do not exist (422 with the report).

    Runs the graph layer's validator against the server's registry (its errors are the
    report; warnings such as unconnected in-ports are allowed, since a graph may be fed
    later), then builds (without starting) a network, which checks what the validator
    cannot (component configuration, port types declared strictly). That network
    (named ``name``, with ``capacity``) is returned: the execution runs it.
    """
    try:
        state.policy.check_graph(graph, state.registry)
    except CapabilityRefused as exc:
        raise HttpError(403, "capability_refused", str(exc)) from None
    report = analysis.validate(graph, state.registry)
    problems: list[Any] = msgspec.to_builtins(report.errors, str_keys=True)
    net: Network | None = None
    if not problems:
        try:
            net = Network(graph, state.registry, name=name or None) if capacity is None \
                else Network(graph, state.registry, name=name or None, capacity=capacity)
        except (ReflowError, ValueError) as exc:
            problems.append(str(exc))
    if problems or net is None:
        first = problems[0]
        detail = first["message"] if isinstance(first, dict) else first
        raise HttpError(422, "invalid_graph",
                        f"graph {graph.name!r} does not validate: {detail}", problems)
    return net


def _summary(record: Any) -> GraphSummary:
    doc = msgspec.json.decode(record.body)
    return GraphSummary(record.id, record.name, len(doc.get("processes", {})),
                        sum(1 for c in doc.get("connections", []) if "src" in c),
                        record.created, record.updated)


def _execution_out(ex: Execution) -> ExecutionOut:
    return ExecutionOut(
        id=ex.id, graph_id=ex.graph_id, status=ex.live_status(), policy=ex.policy,
        created=ex.created, uptime=ex.uptime, restarts=ex.restarts, counters=ex.counters(),
        dead_letters=len(ex.net.dead_letters()) if ex.net is not None else 0,
        inports=sorted(ex.graph.inports), outports=sorted(ex.graph.outports), error=ex.error)


def routes(state: ServerState) -> list[BaseRoute]:
    """The REST routes of ``state``'s server."""

    def endpoint(fn: Callable[[Request], Awaitable[Response]]) -> Callable[
            [Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            try:
                return await fn(request)
            except HttpError as exc:
                return json_response(exc.body, exc.status)
        wrapped.__name__ = fn.__name__
        return wrapped

    def execution(request: Request) -> Execution:
        ex_id = request.path_params["id"]
        try:
            return state.executions.get(ex_id)
        except KeyError:
            raise HttpError(404, "not_found", f"no execution {ex_id!r}") from None

    async def parse_graph_upload(request: Request, graph_id: str | None) -> tuple[Graph, str]:
        body = await read_body(request, state.max_body)
        fmt = request.query_params.get("format") or media_format(
            request.headers.get("content-type", "application/json"))
        name: str | None = None
        source: Any = body
        if fmt == "json" or (fmt is None and body.lstrip().startswith(b"{")):
            # a JSON graph document, or the {"graph": ..., "format": ...} wrapper
            raw = parse_json(body, state.max_depth) if body.strip() else None
            if not isinstance(raw, dict):
                raise HttpError(422, "invalid_request",
                                "expected a JSON graph document or {\"graph\": ...}")
            source = raw
            if "graph" in raw and "processes" not in raw:
                try:
                    upload = msgspec.convert(raw, GraphUpload)
                except msgspec.ValidationError as exc:
                    raise HttpError(422, "invalid_request", str(exc)) from None
                source, fmt = upload.graph, upload.format
                graph_id = graph_id or upload.id
                name = upload.name
        try:
            graph = load_graph(source, fmt)
        except GraphValidationError as exc:
            raise HttpError(422, "invalid_graph", str(exc), exc.report or str(exc)) from None
        except GraphError as exc:
            raise HttpError(422, "invalid_graph", str(exc), [str(exc)]) from None
        if name:
            graph.name = name
        validate_graph(graph, state)
        return graph, graph_id or str(graph.properties.get("id") or "") or uuid.uuid4().hex

    @endpoint
    async def health(request: Request) -> Response:
        draining = state.executions.draining
        running = sum(1 for ex in state.executions.executions.values()
                      if not ex.done.is_set())
        return json_response(Health(
            success=not draining, timestamp=int(time.time() * 1000),
            status="draining" if draining else "ok", version=reflowpy.__version__,
            uptime=time.monotonic() - state.started, executions=running,
            data=None if draining else "Server is healthy",
            error="Server is draining" if draining else None), 503 if draining else 200)

    @endpoint
    async def openapi_json(request: Request) -> Response:
        return json_response(openapi(reflowpy.__version__))

    @endpoint
    async def components(request: Request) -> Response:
        out = []
        for name in state.registry.names(aliases=True):
            info = state.registry.describe(name)
            out.append(ComponentOut(
                name, info.description, info.icon, info.subgraph,
                [PortOut(p.name, p.type, p.description, p.required, p.addressable)
                 for p in info.inports],
                [PortOut(p.name, p.type, p.description, p.required, p.addressable)
                 for p in info.outports]))
        return json_response(out)

    @endpoint
    async def list_graphs(request: Request) -> Response:
        return json_response([_summary(r) for r in state.storage.list_graphs()])

    def graph_out(record: Any) -> GraphOut:
        return GraphOut(record.id, record.name, record.created, record.updated,
                        msgspec.json.decode(record.body))

    @endpoint
    async def create_graph(request: Request) -> Response:
        graph, graph_id = await parse_graph_upload(request, None)
        if state.storage.get_graph(graph_id) is not None:
            raise HttpError(409, "conflict", f"graph {graph_id!r} exists; PUT /graphs/"
                            f"{graph_id} replaces it")
        record = state.storage.put_graph(graph_id, graph.name or graph_id, graph_text(graph))
        return json_response(graph_out(record), 201)

    @endpoint
    async def get_graph(request: Request) -> Response:
        record = state.storage.get_graph(request.path_params["id"])
        if record is None:
            raise HttpError(404, "not_found", f"no graph {request.path_params['id']!r}")
        return json_response(graph_out(record))

    @endpoint
    async def put_graph(request: Request) -> Response:
        graph_id = request.path_params["id"]
        graph, _ = await parse_graph_upload(request, graph_id)
        record = state.storage.put_graph(graph_id, graph.name or graph_id, graph_text(graph))
        state.graph_replaced(graph_id)
        return json_response(graph_out(record))

    @endpoint
    async def delete_graph(request: Request) -> Response:
        if not state.storage.delete_graph(request.path_params["id"]):
            raise HttpError(404, "not_found", f"no graph {request.path_params['id']!r}")
        state.graph_replaced(request.path_params["id"])
        return Response(status_code=204)

    @endpoint
    async def list_executions(request: Request) -> Response:
        limit = int(query_number(request, "limit", 100, 1, 1000))
        after = request.query_params.get("after") or None
        status = request.query_params.get("status") or None
        if status is not None and status not in STATUSES:
            raise HttpError(422, "invalid_request", f"query 'status' must be one of "
                            f"{', '.join(sorted(STATUSES))}, not {status!r}")
        page, cursor = state.executions.page(after=after, limit=limit, status=status)
        response = json_response([_execution_out(ex) for ex in page])
        if cursor is not None:
            query = f"after={cursor}&limit={limit}" + (f"&status={status}" if status else "")
            response.headers["link"] = f'</executions?{query}>; rel="next"'
            response.headers["x-next-cursor"] = cursor
        return response

    @endpoint
    async def delete_execution(request: Request) -> Response:
        await state.executions.delete(execution(request))
        return Response(status_code=204)

    @endpoint
    async def create_execution(request: Request) -> Response:
        req = decode(await read_body(request, state.max_body), ExecutionCreate,
                     max_depth=state.max_depth)
        if (req.graph is None) == (req.graph_id is None):
            raise HttpError(422, "invalid_request", "give exactly one of graph and graph_id")
        if req.graph_id is not None:
            record = state.storage.get_graph(req.graph_id)
            if record is None:
                raise HttpError(404, "not_found", f"no graph {req.graph_id!r}")
            text = record.body
            graph = load_graph(text, "noflo")
        else:
            assert req.graph is not None
            try:
                graph = load_graph(req.graph, req.format)
            except GraphError as exc:
                raise HttpError(422, "invalid_graph", str(exc), [str(exc)]) from None
            text = graph_text(graph)
        ex_id = uuid.uuid4().hex
        net = validate_graph(graph, state, name=ex_id, capacity=req.policy.capacity)
        try:
            ex = await state.executions.start(graph, graph_id=req.graph_id, graph_text=text,
                                              inputs=req.inputs, policy=req.policy,
                                              execution_id=ex_id, network=net)
        except (ReflowError, ValueError) as exc:
            raise HttpError(422, "cannot_start", str(exc)) from None
        return json_response(ExecutionCreated(ex.id, ex.live_status(), f"/executions/{ex.id}"),
                             201)

    @endpoint
    async def get_execution(request: Request) -> Response:
        return json_response(_execution_out(execution(request)))

    @endpoint
    async def send_inputs(request: Request) -> Response:
        ex = execution(request)
        port = request.path_params["port"]
        packet = decode(await read_body(request, state.max_body), PacketIn,
                        max_depth=state.max_depth)
        if ex.graph.port_name(port) not in ex.graph.inports:
            raise HttpError(404, "not_found", f"execution {ex.id!r} has no exported in-port"
                            f" {port!r}; in-ports: {sorted(ex.graph.inports)}")
        values = list(packet.values or [])
        if packet.value is not msgspec.UNSET:
            values.insert(0, packet.value)
        if not values:
            raise HttpError(422, "invalid_request", "send 'value' or a non-empty 'values'")
        try:
            await state.executions.accept(ex, port, values)
        except NetworkError as exc:
            raise HttpError(409, "not_running", str(exc)) from None
        except ReflowError as exc:
            raise HttpError(422, "invalid_value", str(exc)) from None
        return json_response(_execution_out(ex), 202)

    def query_number(request: Request, name: str, default: float, lo: float,
                     hi: float) -> float:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise HttpError(422, "invalid_request", f"query {name!r} must be a number") from None
        if not (lo <= value <= hi) or math.isnan(value):
            raise HttpError(422, "invalid_request", f"query {name!r} must be in [{lo}, {hi}]")
        return value

    @endpoint
    async def read_outputs(request: Request) -> Response:
        ex = execution(request)
        port = request.path_params["port"]
        try:
            buf = ex.buffer(port)
        except KeyError:
            raise HttpError(404, "not_found", f"execution {ex.id!r} has no exported out-port"
                            f" {port!r}; out-ports: {sorted(ex.graph.outports)}") from None
        after = int(query_number(request, "after", 0, 0, 2**62))
        last_id = request.headers.get("last-event-id")
        if last_id is not None and last_id.isdigit():
            after = int(last_id) + 1
        if request.query_params.get("stream", "").lower() in ("1", "true", "yes"):
            return sse_response(output_stream(ex, port, after))
        wait = query_number(request, "wait", 0, 0, 60)
        limit = int(query_number(request, "limit", 1000, 1, 10000))
        if wait > 0 and buf.end <= after:
            with trio.move_on_after(wait):
                await buf.wait(after)
        values, nxt = buf.read(after, limit)
        return json_response(OutputsOut(buf.port, values, nxt, buf.dropped))

    @endpoint
    async def stop_execution(request: Request) -> Response:
        ex = execution(request)
        req = decode(await read_body(request, state.max_body), StopRequest, allow_empty=True)
        mode = request.query_params.get("mode", req.mode)
        if mode not in ("drain", "force"):
            raise HttpError(422, "invalid_request", "mode must be drain or force")
        ex.user_stopped = True
        await ex.stop(mode, timeout=state.stop_timeout)
        return json_response(_execution_out(ex))

    @endpoint
    async def events(request: Request) -> Response:
        ex = execution(request)
        return sse_response(event_stream(ex, state.event_buffer))

    def letters_of(ex: Execution) -> Network:
        if ex.net is None:
            raise HttpError(409, "not_running", f"execution {ex.id!r} has no network")
        return ex.net

    @endpoint
    async def dead_letters(request: Request) -> Response:
        net = letters_of(execution(request))
        return json_response(net.dead_letters())

    def letter_id(request: Request) -> int:
        raw = request.path_params["letter"]
        if not raw.isdigit():
            raise HttpError(422, "invalid_request", "a dead letter id is an integer")
        return int(raw)

    @endpoint
    async def resend_letter(request: Request) -> Response:
        net = letters_of(execution(request))
        lid = letter_id(request)
        try:
            await net.resend(lid)
        except KeyError:
            raise HttpError(404, "not_found", f"no dead letter {lid}") from None
        except ReflowError as exc:
            raise HttpError(409, "cannot_resend", str(exc)) from None
        return json_response(Resent(lid, True))

    @endpoint
    async def delete_letter(request: Request) -> Response:
        net = letters_of(execution(request))
        lid = letter_id(request)
        try:
            net.discard(lid)
        except KeyError:
            raise HttpError(404, "not_found", f"no dead letter {lid}") from None
        return Response(status_code=204)

    return [
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/components", components, methods=["GET"]),
        Route("/graphs", list_graphs, methods=["GET"]),
        Route("/graphs", create_graph, methods=["POST"]),
        Route("/graphs/{id}", get_graph, methods=["GET"]),
        Route("/graphs/{id}", put_graph, methods=["PUT"]),
        Route("/graphs/{id}", delete_graph, methods=["DELETE"]),
        Route("/executions", list_executions, methods=["GET"]),
        Route("/executions", create_execution, methods=["POST"]),
        Route("/executions/{id}", get_execution, methods=["GET"]),
        Route("/executions/{id}", delete_execution, methods=["DELETE"]),
        Route("/executions/{id}/inputs/{port}", send_inputs, methods=["POST"]),
        Route("/executions/{id}/outputs/{port}", read_outputs, methods=["GET"]),
        Route("/executions/{id}/stop", stop_execution, methods=["POST"]),
        Route("/executions/{id}/events", events, methods=["GET"]),
        Route("/executions/{id}/dead-letters", dead_letters, methods=["GET"]),
        Route("/executions/{id}/dead-letters/{letter}", delete_letter, methods=["DELETE"]),
        Route("/executions/{id}/dead-letters/{letter}/resend", resend_letter,
              methods=["POST"]),
    ]

