"""Zeal workflows -> graphs: what Reflow's server does for ``/zeal/convert`` and
``/zeal/workflows``.

Zeal is Reflow's visual editor; it sends a workflow of one or more graphs whose nodes
carry a ``template_id`` (``tpl_http_request``, ...; reflowpy registers Reflow's
templates under those names), ports with a direction and a data type, property
definitions and values, positions and groups. :func:`convert` turns the main graph
(the one marked ``is_main``, else the first) into a :class:`~reflowpy.Graph` the way
Reflow's converter does:

* a node's component is its ``template_id`` (else its ``node_type``); its metadata
  holds the property defaults (``properties[key].defaultValue``) overridden by
  ``property_values``, and the editor's layout under ``zeal`` (position, title, icon,
  ports, ...), so actor config and layout do not collide;
* every port is exported as a graph in- or out-port named by the port id, typed by
  its ``data_type`` (``number`` is ``float``, ``array`` is ``array<any>``). Where two
  nodes have a port of the same id Reflow keeps only the last; reflowpy keeps the
  first under the bare id and names the others ``NODE.PORT``, so no port is lost;
* Zeal's input widgets (``tpl_text_input``, ``tpl_number_input``,
  ``tpl_range_input``) are not nodes: each connection out of one becomes an IIP with
  the widget's value (a range value clamped to its ``min``/``max``);
* a node with no incoming connection and non-empty ``property_values`` gets those
  values as an IIP on its first in-port;
* groups and the workflow's id, name, description and author (graph properties)
  are kept.

Structural problems (no graph, a connection naming an unknown node) are
:class:`ZealError` with the path of the offending field.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from reflowpy.errors import GraphError, ReflowError
from reflowpy.network.graph import Graph

__all__ = ["ZealError", "ZealWorkflow", "convert", "required_actors"]

#: Zeal's input widgets: their value becomes an IIP instead of a node.
INPUT_TEMPLATES = frozenset({"tpl_text_input", "tpl_number_input", "tpl_range_input"})
#: Components that take a request from their config (``/zeal/workflows`` input goes
#: into their metadata, as Reflow's engine does).
SERVER_REQUEST_COMPONENTS = frozenset({"tpl_server_request", "ServerRequestActor"})

_DATA_TYPES = {"string": "string", "number": "float", "float": "float",
               "integer": "integer", "boolean": "boolean", "object": "object",
               "bytes": "bytes", "stream": "stream", "array": "array<any>"}


class ZealError(ReflowError):
    """A Zeal workflow that cannot be converted; ``where`` is the offending field."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where


class ZealPosition(msgspec.Struct):
    """A node's place on the canvas."""

    x: float = 0.0
    y: float = 0.0


class ZealPort(msgspec.Struct):
    """A node port: ``port_type`` is ``input`` or ``output``."""

    id: str
    port_type: str
    label: str = ""
    data_type: str | None = None
    required: bool = False
    multiple: bool = False


class ZealNode(msgspec.Struct):
    """A node of a Zeal graph."""

    id: str
    node_type: str = ""
    template_id: str | None = None
    title: str = ""
    subtitle: str | None = None
    icon: str = ""
    variant: str = ""
    shape: str = ""
    size: str | None = None
    ports: list[ZealPort] = []
    properties: dict[str, Any] = {}
    property_values: dict[str, Any] | None = None
    required_env_vars: list[str] | None = None
    position: ZealPosition = msgspec.field(default_factory=ZealPosition)


class ZealEndpoint(msgspec.Struct):
    """One end of a connection."""

    node_id: str
    port_id: str


class ZealConnection(msgspec.Struct):
    """An edge between two node ports."""

    from_: ZealEndpoint = msgspec.field(name="from")
    to: ZealEndpoint = msgspec.field(name="to")
    id: str = ""
    metadata: dict[str, Any] | None = None


class ZealGroup(msgspec.Struct):
    """A named set of nodes."""

    id: str
    nodes: list[str] = []
    name: str = ""
    metadata: dict[str, Any] | None = None


class ZealGraph(msgspec.Struct):
    """One graph of a workflow."""

    id: str = ""
    name: str = ""
    namespace: str = ""
    is_main: bool = False
    nodes: list[ZealNode] = []
    connections: list[ZealConnection] = []
    groups: list[ZealGroup] = []


class ZealMetadata(msgspec.Struct):
    """Workflow metadata."""

    version: str = ""
    author: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    tags: list[str] | None = None


class ZealWorkflow(msgspec.Struct):
    """A Zeal workflow, as Zeal sends it."""

    id: str
    name: str
    graphs: list[ZealGraph]
    description: str = ""
    metadata: ZealMetadata = msgspec.field(default_factory=ZealMetadata)


def _component(node: ZealNode) -> str:
    return node.template_id or node.node_type


def _input_value(node: ZealNode) -> Any:
    """The value of an input widget (Reflow's rules per template)."""
    values = node.property_values or {}
    template = _component(node)
    if template == "tpl_text_input":
        return values.get("defaultValue", "")
    value = values.get("value", values.get("defaultValue")) \
        if template == "tpl_range_input" else values.get("defaultValue")
    number = float(value) if isinstance(value, int | float) and not isinstance(
        value, bool) and math.isfinite(value) else 0.0
    if template == "tpl_range_input":
        lo, hi = node.properties.get("min", 0.0), node.properties.get("max", 1.0)
        lo = float(lo) if isinstance(lo, int | float) else 0.0
        hi = float(hi) if isinstance(hi, int | float) else 1.0
        number = min(max(number, lo), hi) if lo <= hi else number
    return number


def _main(workflow: ZealWorkflow) -> tuple[int, ZealGraph]:
    for i, graph in enumerate(workflow.graphs):
        if graph.is_main:
            return i, graph
    if not workflow.graphs:
        raise ZealError("No graphs found in Zeal workflow", "graphs")
    return 0, workflow.graphs[0]


def convert(workflow: ZealWorkflow) -> Graph:
    """The main graph of ``workflow`` as a :class:`~reflowpy.Graph` (see the module
    docstring); raises :class:`ZealError` naming the offending field."""
    index, main = _main(workflow)
    at = f"graphs[{index}]"
    properties: dict[str, Any] = {"workflow_id": workflow.id, "workflow_name": workflow.name,
                                  "description": workflow.description}
    if workflow.metadata.author is not None:
        properties["author"] = workflow.metadata.author
    graph = Graph(main.name or workflow.name, properties={"name": main.name or workflow.name,
                                                          **properties})
    inputs = {n.id: n for n in main.nodes if _component(n) in INPUT_TEMPLATES}
    taken_in: set[str] = set()
    taken_out: set[str] = set()
    try:
        for i, node in enumerate(main.nodes):
            where = f"{at}.nodes[{i}]"
            if node.id in inputs:
                continue
            if not _component(node):
                raise ZealError("a node needs a template_id or a node_type", where)
            metadata: dict[str, Any] = {"zeal": {
                "x": node.position.x, "y": node.position.y, "title": node.title,
                "subtitle": node.subtitle, "icon": node.icon, "variant": node.variant,
                "shape": node.shape, "size": node.size,
                "ports": msgspec.to_builtins(node.ports),
                "required_env_vars": node.required_env_vars}}
            for key, definition in node.properties.items():
                if isinstance(definition, dict) and "defaultValue" in definition:
                    metadata[key] = definition["defaultValue"]
            metadata.update(node.property_values or {})
            graph.add_node(node.id, _component(node), metadata)
            for port in node.ports:
                ptype = _DATA_TYPES.get(port.data_type or "", "any")
                meta = {"type": ptype} if ptype != "any" else None
                if port.port_type == "input":
                    public = port.id if port.id not in taken_in else f"{node.id}.{port.id}"
                    taken_in.add(public)
                    graph.add_inport(public, node.id, port.id, metadata=meta)
                elif port.port_type == "output":
                    public = port.id if port.id not in taken_out else f"{node.id}.{port.id}"
                    taken_out.add(public)
                    graph.add_outport(public, node.id, port.id, metadata=meta)
        fed: set[str] = set()
        for i, conn in enumerate(main.connections):
            where = f"{at}.connections[{i}]"
            src, tgt = conn.from_, conn.to
            if tgt.node_id in inputs:
                continue
            if src.node_id in inputs:
                graph.add_iip(_input_value(inputs[src.node_id]), tgt.node_id, tgt.port_id)
                continue
            for end, side in ((src, "from"), (tgt, "to")):
                if end.node_id not in graph.nodes:
                    raise ZealError(f"unknown node {end.node_id!r}", f"{where}.{side}.node_id")
            graph.add_edge(src.node_id, src.port_id, tgt.node_id, tgt.port_id,
                           metadata=conn.metadata)
            fed.add(tgt.node_id)
        for node in main.nodes:
            if node.id in inputs or node.id in fed or not node.property_values:
                continue
            first = next((p for p in node.ports if p.port_type == "input"), None)
            if first is not None:
                graph.add_iip(dict(node.property_values), node.id, first.id)
        for group in main.groups:
            members = [n for n in group.nodes if n in graph.nodes]
            graph.add_group(group.id, members, {**(group.metadata or {}),
                                                **({"name": group.name} if group.name else {})})
    except GraphError as exc:
        raise ZealError(str(exc), at) from None
    return graph


def required_actors(workflow: ZealWorkflow) -> list[str]:
    """The ``template_id`` of every node of every graph (Reflow's ``required_actors``)."""
    return [n.template_id for g in workflow.graphs for n in g.nodes if n.template_id]


def inject_request(graph: Graph, payload: Any) -> None:
    """Merge an object ``payload`` into the metadata of the graph's server-request
    nodes (they read the request from their config, as in Reflow)."""
    if not isinstance(payload, dict):
        return
    for node in list(graph.nodes.values()):
        if node.component in SERVER_REQUEST_COMPONENTS:
            graph.set_node_metadata(node.id, {**node.metadata, **payload})
