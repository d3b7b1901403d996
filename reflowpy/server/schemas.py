"""Request and response types of the REST API, and the OpenAPI document built from them.

Every JSON body the server accepts is decoded with ``msgspec`` into one of the
structs below (so a wrong type or a missing field is refused with a 422 naming the
field), and every JSON body it returns is one of them. :func:`openapi` builds
``/openapi.json`` from the same structs, so the document and the validation can
never disagree.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from reflowpy.network.supervision import DeadLetter

#: Every status an execution can show (``Execution.live_status``), for filters naming one.
STATUSES = frozenset({"starting", "running", "idle", "stopping", "interrupted", "finished",
                      "stopped", "failed"})

__all__ = [
    "ComponentOut",
    "DeadLetterOut",
    "ErrorOut",
    "ExecutionCreate",
    "ExecutionCreated",
    "ExecutionOut",
    "ExecutionPolicy",
    "GraphOut",
    "GraphSummary",
    "GraphUpload",
    "Health",
    "OutputsOut",
    "PacketIn",
    "PortOut",
    "Resent",
    "StopRequest",
    "openapi",
]


class ErrorOut(msgspec.Struct, omit_defaults=True):
    """Every error response: a short machine-readable ``error``, a human ``detail``, and
    for graph validation failures the full ``report``."""

    error: str
    detail: str = ""
    report: Any = None


class Health(msgspec.Struct, omit_defaults=True):
    """``GET /health``: Reflow's ``ApiResponse`` envelope (``success``, ``data`` or
    ``error``, ``timestamp`` in ms) with reflowpy's own fields beside it, so Reflow
    clients and reflowpy clients read the same answer. ``503`` while draining."""

    success: bool
    timestamp: int
    status: Literal["ok", "draining"]
    version: str
    uptime: float
    executions: int
    data: str | None = None
    error: str | None = None


class PortOut(msgspec.Struct):
    """A component port as listed by ``GET /components``."""

    name: str
    type: str = "any"
    description: str = ""
    required: bool = True
    addressable: bool = False


class ComponentOut(msgspec.Struct):
    """A registered component: name, description, ports."""

    name: str
    description: str = ""
    icon: str = ""
    subgraph: bool = False
    inports: list[PortOut] = msgspec.field(default_factory=list)
    outports: list[PortOut] = msgspec.field(default_factory=list)


class GraphUpload(msgspec.Struct, forbid_unknown_fields=True):
    """Wrapper form of a graph upload: ``graph`` is a JSON graph document (Reflow or
    NoFlo JSON) or the text of any format the graph layer reads (``.fbp``, YAML,
    JSON), with ``format`` naming it when it cannot be detected.

    A request body that is itself a JSON graph (has ``processes``) is accepted as
    well, as is a raw ``.fbp``/YAML body with a matching ``Content-Type``.
    """

    graph: dict[str, Any] | str
    format: str | None = None
    id: str | None = None
    name: str | None = None


class GraphSummary(msgspec.Struct):
    """A stored graph in a listing."""

    id: str
    name: str
    nodes: int
    edges: int
    created: float
    updated: float


class GraphOut(msgspec.Struct):
    """A stored graph: its summary and the graph as NoFlo/fbp-graph JSON."""

    id: str
    name: str
    created: float
    updated: float
    graph: dict[str, Any]


class ExecutionPolicy(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """How an execution is hosted.

    ``restart``: ``"always"`` starts the execution again when the server restarts
    (and after it fails); ``"never"`` leaves it stopped. ``until``: ``"stopped"``
    keeps the network running until it is stopped (a service); ``"idle"`` stops it,
    drained, the first time it is idle after its inputs were delivered (a batch
    job). ``capacity``: default in-port queue size. ``output_buffer``: how many
    values per exported out-port the server keeps for readers (oldest dropped and
    counted beyond that).
    """

    restart: Literal["never", "always"] = "never"
    until: Literal["stopped", "idle"] = "stopped"
    capacity: int = msgspec.field(default=64)
    output_buffer: int = 10_000

    def __post_init__(self) -> None:
        if not 1 <= self.capacity <= 1_000_000:
            raise ValueError("policy.capacity must be between 1 and 1000000")
        if not 1 <= self.output_buffer <= 10_000_000:
            raise ValueError("policy.output_buffer must be between 1 and 10000000")


class ExecutionCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /executions``: run a stored graph (``graph_id``) or an inline one
    (``graph`` + optional ``format``). ``inputs`` maps exported in-ports to a list of
    values sent in order once the network runs."""

    graph: dict[str, Any] | str | None = None
    graph_id: str | None = None
    format: str | None = None
    inputs: dict[str, list[Any]] = msgspec.field(default_factory=dict)
    policy: ExecutionPolicy = msgspec.field(default_factory=ExecutionPolicy)


class ExecutionCreated(msgspec.Struct):
    """The id of a new execution and where to find it."""

    id: str
    status: str
    href: str


class ExecutionOut(msgspec.Struct):
    """``GET /executions/{id}``: status, counters and uptime of an execution.

    ``status`` is one of ``starting``, ``running``, ``idle``, ``stopping``,
    ``stopped``, ``finished`` (stopped after ``until: idle``), ``failed``.
    """

    id: str
    graph_id: str | None
    status: str
    policy: ExecutionPolicy
    created: float
    uptime: float
    restarts: int
    counters: dict[str, Any]
    dead_letters: int
    inports: list[str]
    outports: list[str]
    error: str = ""


class PacketIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /executions/{id}/inputs/{port}``: one ``value`` or several ``values``."""

    value: Any = msgspec.UNSET
    values: list[Any] | None = None


class OutputsOut(msgspec.Struct):
    """Values read from an exported out-port; ``next`` is the cursor for the next read,
    ``dropped`` how many older values were evicted before they were read."""

    port: str
    values: list[Any]
    next: int
    dropped: int


class StopRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /executions/{id}/stop``: ``drain`` lets in-flight messages finish,
    ``force`` cancels at once."""

    mode: Literal["drain", "force"] = "drain"


#: A dead letter as the REST API returns it: the kernel's own struct, one definition.
DeadLetterOut = DeadLetter


class Resent(msgspec.Struct):
    """Result of re-sending a dead letter."""

    id: int
    resent: bool


_JSON = "application/json"


def _body(name: str, description: str = "") -> dict[str, Any]:
    return {
        "required": True,
        "description": description,
        "content": {_JSON: {"schema": {"$ref": f"#/components/schemas/{name}"}}},
    }


def _resp(name: str | None, description: str, *, media: str = _JSON) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if name is not None:
        out["content"] = {media: {"schema": {"$ref": f"#/components/schemas/{name}"}}}
    return out


def _list_resp(name: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            _JSON: {
                "schema": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}}
            }
        },
    }


def _param(name: str, where: str = "path", schema: dict[str, Any] | None = None,
           required: bool | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path" if required is None else required,
        "schema": schema or {"type": "string"},
    }


_ERRORS = {
    "400": _resp("ErrorOut", "malformed JSON, or nested deeper than the server accepts"),
    "401": _resp("ErrorOut", "missing or wrong bearer token"),
    "403": _resp("ErrorOut", "a foreign Origin, or a capability the server does not grant"),
    "421": _resp("ErrorOut", "a Host that is not a name of this server (DNS rebinding)"),
    "404": _resp("ErrorOut", "no such resource"),
    "422": _resp("ErrorOut", "the request body or a parameter is invalid"),
}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    merged = dict(_ERRORS)
    merged.update(responses)
    return {"summary": summary, "responses": merged, **extra}


def openapi(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the REST API, built from the structs above."""
    types = (
        ErrorOut, Health, ComponentOut, GraphUpload, GraphSummary, GraphOut,
        ExecutionCreate, ExecutionCreated, ExecutionOut, ExecutionPolicy, PacketIn,
        OutputsOut, StopRequest, DeadLetter, Resent,
    )
    _, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    ex_id = _param("id")
    port = _param("port")
    paths: dict[str, Any] = {
        "/health": {"get": _op("Liveness and version", {"200": _resp("Health", "ok")})},
        "/components": {
            "get": _op("Registered components with their ports",
                       {"200": _list_resp("ComponentOut", "components")})
        },
        "/graphs": {
            "get": _op("Stored graphs", {"200": _list_resp("GraphSummary", "graphs")}),
            "post": _op(
                "Store a graph (any format the graph layer reads)",
                {"201": _resp("GraphOut", "stored")},
                requestBody=_body("GraphUpload", "a GraphUpload, or a JSON graph document"),
            ),
        },
        "/graphs/{id}": {
            "parameters": [ex_id],
            "get": _op("A stored graph", {"200": _resp("GraphOut", "the graph")}),
            "put": _op("Replace a stored graph", {"200": _resp("GraphOut", "stored")},
                       requestBody=_body("GraphUpload")),
            "delete": _op("Delete a stored graph", {"204": _resp(None, "deleted")}),
        },
        "/executions": {
            "parameters": [
                _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000},
                       False),
                _param("after", "query", {"type": "string"}, False),
                _param("status", "query", {"type": "string", "enum": sorted(STATUSES)}, False),
            ],
            "get": _op("Executions, oldest first, a page at a time (a Link header with"
                       " rel=next names the next page)",
                       {"200": _list_resp("ExecutionOut", "executions")}),
            "post": _op("Start an execution", {"201": _resp("ExecutionCreated", "started")},
                        requestBody=_body("ExecutionCreate")),
        },
        "/executions/{id}": {
            "parameters": [ex_id],
            "get": _op("Status, counters and uptime", {"200": _resp("ExecutionOut", "status")}),
            "delete": _op("Stop (forced) and forget an execution, its journal and outputs",
                          {"204": _resp(None, "deleted")}),
        },
        "/executions/{id}/inputs/{port}": {
            "parameters": [ex_id, port],
            "post": _op("Send values to an exported in-port",
                        {"202": _resp("ExecutionOut", "accepted")},
                        requestBody=_body("PacketIn")),
        },
        "/executions/{id}/outputs/{port}": {
            "parameters": [
                ex_id, port,
                _param("after", "query", {"type": "integer", "minimum": 0}, False),
                _param("wait", "query", {"type": "number", "minimum": 0, "maximum": 60}, False),
                _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 10000},
                       False),
                _param("stream", "query", {"type": "boolean"}, False),
            ],
            "get": _op(
                "Read values from an exported out-port (long-poll with wait=, or stream=true"
                " for Server-Sent Events)",
                {"200": _resp("OutputsOut", "values")},
            ),
        },
        "/executions/{id}/stop": {
            "parameters": [ex_id],
            "post": _op("Stop an execution (drain or force)",
                        {"200": _resp("ExecutionOut", "stopped")},
                        requestBody={**_body("StopRequest"), "required": False}),
        },
        "/executions/{id}/events": {
            "parameters": [ex_id],
            "get": _op("Network events as Server-Sent Events",
                       {"200": {"description": "text/event-stream of NetworkEvent JSON",
                                "content": {"text/event-stream": {"schema": {"type": "string"}}}}}),
        },
        "/executions/{id}/dead-letters": {
            "parameters": [ex_id],
            "get": _op("Dead letters", {"200": _list_resp("DeadLetter", "letters")}),
        },
        "/executions/{id}/dead-letters/{letter}": {
            "parameters": [ex_id, _param("letter", schema={"type": "integer"})],
            "delete": _op("Discard a dead letter", {"204": _resp(None, "deleted")}),
        },
        "/executions/{id}/dead-letters/{letter}/resend": {
            "parameters": [ex_id, _param("letter", schema={"type": "integer"})],
            "post": _op("Re-send a dead letter to its node", {"200": _resp("Resent", "resent")}),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "reflowpy server",
            "version": version,
            "description": "Graphs, executions, components and dead letters of a reflowpy"
            " server. The FBP Network Protocol is served over WebSocket at / and /fbp"
            " (subprotocol noflo); Reflow's /workflows and /ws are served too.",
        },
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
        "paths": paths,
    }
