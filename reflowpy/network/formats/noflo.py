"""NoFlo / fbp-graph JSON: ``processes``, ``connections`` with ``src``/``tgt``.

The format of the npm packages ``fbp`` (``schema/graph.json``) and ``fbp-graph``::

    {"caseSensitive": false, "properties": {"name": ...},
     "processes": {"id": {"component": "...", "metadata": {...}}},
     "connections": [{"src": {"process", "port", "index"?}, "tgt": {...}, "metadata"},
                     {"data": ..., "tgt": {...}}],
     "inports": {"public": {"process", "port", "metadata"}}, "outports": {...},
     "groups": [{"name", "nodes", "metadata"}]}

The graph name is ``properties.name``. A connection's queue capacity, which NoFlo
has no field for, is kept as ``metadata.capacity``; an exported port's index (a
reflowpy extension) as ``index``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from reflowpy.errors import GraphFormatError
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


class _End(msgspec.Struct):
    process: str
    port: str
    index: int | None = None


class _Connection(msgspec.Struct):
    tgt: _End
    src: _End | None = None
    data: Any = msgspec.UNSET
    metadata: dict[str, Any] | None = None


class _Process(msgspec.Struct):
    component: str
    metadata: dict[str, Any] | None = None


class _Exported(msgspec.Struct):
    process: str
    port: str
    index: int | None = None
    metadata: dict[str, Any] | None = None


class _Group(msgspec.Struct):
    name: str
    nodes: list[str] = []
    metadata: dict[str, Any] | None = None


class _Doc(msgspec.Struct, rename={"case_sensitive": "caseSensitive"}):
    case_sensitive: bool = False
    properties: dict[str, Any] = {}
    processes: dict[str, Any] = {}
    connections: list[_Connection] = []
    inports: dict[str, Any] = {}
    outports: dict[str, Any] = {}
    groups: list[_Group] = []


def from_dict(data: Any, fmt: str = "noflo") -> Graph:
    """Build a :class:`Graph` from a parsed NoFlo JSON document."""
    doc, graph = read_document(data, _Doc, fmt)
    graph._recording = False
    for node_id, raw in doc.processes.items():
        proc = convert(raw, _Process, fmt, f"processes.{node_id}")
        with building(fmt, f"processes.{node_id}"):
            graph.add_node(node_id, proc.component, proc.metadata)
    for i, conn in enumerate(doc.connections):
        with building(fmt, f"connections[{i}]"):
            if conn.src is None:
                if conn.data is msgspec.UNSET:
                    raise GraphFormatError(
                        "a connection needs 'src' (an edge) or 'data' (an IIP)",
                        format=fmt, where=f"connections[{i}]",
                    )
                graph.add_iip(conn.data, conn.tgt.process, conn.tgt.port,
                              index=conn.tgt.index, metadata=conn.metadata)
            else:
                meta, cap = split_capacity(conn.metadata)
                graph.add_edge(conn.src.process, conn.src.port, conn.tgt.process,
                               conn.tgt.port, src_index=conn.src.index,
                               tgt_index=conn.tgt.index, metadata=meta, capacity=cap)
    for table, add in (("inports", graph.add_inport), ("outports", graph.add_outport)):
        for public, raw in getattr(doc, table).items():
            exp = convert(raw, _Exported, fmt, f"{table}.{public}")
            with building(fmt, f"{table}.{public}"):
                add(public, exp.process, exp.port, index=exp.index, metadata=exp.metadata)
    for i, group in enumerate(doc.groups):
        with building(fmt, f"groups[{i}]"):
            graph.add_group(group.name, group.nodes, group.metadata)
    graph._recording = True
    return graph


def _end(node: str, port: str, index: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"process": node, "port": port}
    if index is not None:
        out["index"] = index
    return out


def to_dict(graph: Graph) -> dict[str, Any]:
    """The graph as a NoFlo JSON document (plain dicts and lists)."""
    props = document_properties(graph)
    connections: list[dict[str, Any]] = []
    for edge in graph.edges:
        conn: dict[str, Any] = {
            "src": _end(edge.src.node, edge.src.port, edge.src.index),
            "tgt": _end(edge.tgt.node, edge.tgt.port, edge.tgt.index),
        }
        meta = join_capacity(edge.metadata, edge.capacity)
        if meta:
            conn["metadata"] = meta
        connections.append(conn)
    for iip in graph.iips:
        item: dict[str, Any] = {"data": iip.data,
                                "tgt": _end(iip.tgt.node, iip.tgt.port, iip.tgt.index)}
        if iip.metadata:
            item["metadata"] = dict(iip.metadata)
        connections.append(item)

    def exported(table: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for public, exp in table.items():
            entry = _end(exp.node, exp.port, exp.index)
            if exp.metadata:
                entry["metadata"] = dict(exp.metadata)
            out[public] = entry
        return out

    return {
        "caseSensitive": graph.case_sensitive,
        "properties": props,
        "inports": exported(graph.inports),
        "outports": exported(graph.outports),
        "groups": [
            {"name": g.name, "nodes": list(g.nodes), "metadata": dict(g.metadata)}
            for g in graph.groups
        ],
        "processes": {
            n.id: {"component": n.component, "metadata": dict(n.metadata)}
            for n in graph.nodes.values()
        },
        "connections": connections,
    }
