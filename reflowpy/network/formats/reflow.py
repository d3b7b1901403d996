"""Reflow graph JSON (offbit-ai/reflow ``GraphExport``; also its Python SDK offbit-reflow).

::

    {"caseSensitive": false, "properties": {"name": "..."},
     "processes": {"id": {"id": "id", "component": "...", "metadata": {...}}},
     "connections": [{"from": End, "to": End, "metadata": {...}, "data": null},
                     {"from": <empty End>, "to": End, "data": 42}],          # an IIP
     "inports": {"public": End}, "outports": {...},
     "groups": [{"id": "...", "nodes": [...], "metadata": {...}}]}

    End = {"nodeId", "portId", "portName", "index", "expose", "data", "metadata",
           "portType": {"type": "integer"} | {"type": "array", "value": {...}} | ...}

A connection whose ``from`` is missing or has an empty ``nodeId`` is an IIP. In
exported ports ``portId`` is the public name and ``portName`` the node's port; their
``portType`` is kept as ``metadata["type"]`` in our syntax (see
:mod:`reflowpy.network.porttypes`). Typed connection endpoints keep their types as
edge ``metadata["fromType"]``/``["toType"]``; a connection's capacity as
``metadata.capacity``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from reflowpy.errors import GraphFormatError, PortTypeError
from reflowpy.network import porttypes
from reflowpy.network.formats._util import (
    building,
    convert,
    document_properties,
    join_capacity,
    read_document,
    split_capacity,
)
from reflowpy.network.graph import Graph

__all__ = ["from_dict", "to_dict"]


class _End(msgspec.Struct, rename="camel"):
    node_id: str = ""
    port_id: str = ""
    port_name: str = ""
    index: int | None = None
    expose: bool = False
    data: Any = None
    metadata: dict[str, Any] | None = None
    port_type: Any = None

    @property
    def port(self) -> str:
        return self.port_name or self.port_id


class _Connection(msgspec.Struct):
    to: _End
    from_: _End | None = msgspec.field(default=None, name="from")
    metadata: dict[str, Any] | None = None
    data: Any = None


class _Process(msgspec.Struct):
    component: str
    id: str = ""
    metadata: dict[str, Any] | None = None


class _Group(msgspec.Struct):
    id: str
    nodes: list[str] = []
    metadata: dict[str, Any] | None = None


class _Doc(msgspec.Struct, rename="camel"):
    case_sensitive: bool = False
    properties: dict[str, Any] = {}
    processes: dict[str, Any] = {}
    connections: list[_Connection] = []
    inports: dict[str, Any] = {}
    outports: dict[str, Any] = {}
    groups: list[_Group] = []


def _type_str(data: Any, fmt: str, where: str) -> str:
    try:
        return str(porttypes.from_reflow(data, where))
    except PortTypeError as exc:
        raise GraphFormatError(str(exc), format=fmt, where=where) from None


def from_dict(data: Any, fmt: str = "reflow") -> Graph:
    """Build a :class:`Graph` from a parsed Reflow graph document."""
    doc, graph = read_document(data, _Doc, fmt)
    graph._recording = False
    for key, raw in doc.processes.items():
        proc = convert(raw, _Process, fmt, f"processes.{key}")
        with building(fmt, f"processes.{key}"):
            if proc.id and proc.id != key:
                raise GraphFormatError(
                    f"process key {key!r} and its id {proc.id!r} differ", format=fmt,
                    where=f"processes.{key}.id",
                )
            graph.add_node(key, proc.component, proc.metadata)
    for i, conn in enumerate(doc.connections):
        where = f"connections[{i}]"
        with building(fmt, where):
            if conn.from_ is None or not conn.from_.node_id:
                value = conn.data if conn.data is not None else conn.to.data
                graph.add_iip(value, conn.to.node_id, conn.to.port, index=conn.to.index,
                              metadata=conn.metadata)
                continue
            meta, cap = split_capacity(conn.metadata)
            for side, end in (("fromType", conn.from_), ("toType", conn.to)):
                ptype = _type_str(end.port_type, fmt, f"{where}.{side[:-4]}.portType")
                if ptype != "any":
                    meta[side] = ptype
            graph.add_edge(conn.from_.node_id, conn.from_.port, conn.to.node_id, conn.to.port,
                           src_index=conn.from_.index, tgt_index=conn.to.index,
                           metadata=meta, capacity=cap)
    for table, add in (("inports", graph.add_inport), ("outports", graph.add_outport)):
        for public, raw in getattr(doc, table).items():
            where = f"{table}.{public}"
            end = convert(raw, _End, fmt, where)
            with building(fmt, where):
                meta = dict(end.metadata or {})
                ptype = _type_str(end.port_type, fmt, f"{where}.portType")
                if ptype != "any":
                    meta["type"] = ptype
                port = end.port_name or end.port_id
                add(public, end.node_id, port, index=end.index, metadata=meta)
    for i, group in enumerate(doc.groups):
        with building(fmt, f"groups[{i}]"):
            graph.add_group(group.id, group.nodes, group.metadata)
    graph._recording = True
    return graph


def _pop_type(meta: dict[str, Any], key: str) -> dict[str, Any]:
    """Move a valid, non-any port type out of ``meta[key]`` into Reflow's tagged form."""
    value = meta.get(key)
    if isinstance(value, str):
        try:
            parsed = porttypes.parse(value)
        except PortTypeError:
            return {"type": "any"}
        if parsed.kind != "any" and str(parsed) == value:
            del meta[key]
            return porttypes.to_reflow(parsed)
    return {"type": "any"}


def _end(node: str, port_id: str, port_name: str, index: int | None,
         port_type: dict[str, Any] | None = None,
         metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "portName": port_name,
        "portId": port_id,
        "nodeId": node,
        "index": index,
        "expose": False,
        "data": None,
        "metadata": metadata or None,
        "portType": port_type or {"type": "any"},
    }


def to_dict(graph: Graph) -> dict[str, Any]:
    """The graph as a Reflow graph document (plain dicts and lists)."""
    props = document_properties(graph)
    connections: list[dict[str, Any]] = []
    for edge in graph.edges:
        meta = join_capacity(edge.metadata, edge.capacity)
        from_type = _pop_type(meta, "fromType")
        to_type = _pop_type(meta, "toType")
        connections.append({
            "from": _end(edge.src.node, edge.src.port, edge.src.port, edge.src.index,
                         from_type),
            "to": _end(edge.tgt.node, edge.tgt.port, edge.tgt.port, edge.tgt.index, to_type),
            "metadata": meta or None,
            "data": None,
        })
    for iip in graph.iips:
        connections.append({
            "from": _end("", "", "", None),
            "to": _end(iip.tgt.node, iip.tgt.port, iip.tgt.port, iip.tgt.index),
            "metadata": dict(iip.metadata) or None,
            "data": iip.data,
        })

    def exported(table: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for public, exp in table.items():
            meta = dict(exp.metadata)
            ptype = _pop_type(meta, "type")
            out[public] = _end(exp.node, public, exp.port, exp.index, ptype, meta)
        return out

    return {
        "caseSensitive": graph.case_sensitive,
        "properties": props,
        "inports": exported(graph.inports),
        "outports": exported(graph.outports),
        "groups": [
            {"id": g.name, "nodes": list(g.nodes), "metadata": dict(g.metadata)}
            for g in graph.groups
        ],
        "processes": {
            n.id: {"id": n.id, "component": n.component, "metadata": dict(n.metadata)}
            for n in graph.nodes.values()
        },
        "connections": connections,
    }
