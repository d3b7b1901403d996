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
from reflowpy.network.formats._limits import MAX_INDEX, check_value
from reflowpy.network.formats._util import (
    EdgeBuffer,
    build_graph,
    document_properties,
    join_capacity,
    remember_case,
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
    processes: dict[str, _Process] = {}
    connections: list[_Connection] = []
    inports: dict[str, _Exported] = {}
    outports: dict[str, _Exported] = {}
    groups: list[_Group] = []


def _check_index(index: int | None, fmt: str, where: str) -> None:
    if index is not None and not 0 <= index <= MAX_INDEX:
        raise GraphFormatError(f"port index {index} is out of range (0 to {MAX_INDEX})",
                               format=fmt, where=where)


def from_dict(data: Any, fmt: str = "noflo", *, consume: bool = False) -> Graph:
    """Build a :class:`Graph` from a parsed NoFlo JSON document.

    ``consume`` (for readers that parsed ``data`` themselves) empties ``data`` once it is
    converted, so the parsed document and the graph are not both in memory."""
    return build_graph(data, _Doc, fmt, consume, _read_body)


def _read_body(doc: _Doc, graph: Graph, fmt: str, at: list[str]) -> None:
    add_iip = graph.add_iip
    edges = EdgeBuffer(graph)
    add_edge = edges.add
    for node_id, proc in doc.processes.items():
        at[0] = f"processes.{node_id}"
        meta = proc.metadata
        if meta is not None:
            check_value(meta, fmt, f"processes.{node_id}.metadata")
        graph.add_node(node_id, proc.component, meta)
    for i, conn in enumerate(doc.connections):
        where = at[0] = f"connections[{i}]"
        tgt, src = conn.tgt, conn.src
        if conn.metadata is not None:
            check_value(conn.metadata, fmt, f"{where}.metadata")
        if tgt.index is not None:
            _check_index(tgt.index, fmt, f"{where}.tgt.index")
        if src is None:
            remember_case(graph, tgt.port)
            if conn.data is msgspec.UNSET:
                raise GraphFormatError("a connection needs 'src' (an edge) or 'data' (an IIP)",
                                       format=fmt, where=where)
            if conn.data is not None:
                check_value(conn.data, fmt, f"{where}.data")
            add_iip(conn.data, tgt.process, tgt.port, index=tgt.index, metadata=conn.metadata)
            continue
        if src.index is not None:
            _check_index(src.index, fmt, f"{where}.src.index")
        remember_case(graph, src.port, tgt.port)
        meta, cap = split_capacity(conn.metadata)
        add_edge(src.process, src.port, tgt.process, tgt.port, src.index, tgt.index, meta, cap)
    edges.flush()
    for table, add in (("inports", graph.add_inport), ("outports", graph.add_outport)):
        exports: dict[str, _Exported] = getattr(doc, table)
        for public, exp in exports.items():
            where = at[0] = f"{table}.{public}"
            meta = exp.metadata
            if meta is not None:
                check_value(meta, fmt, f"{where}.metadata")
            _check_index(exp.index, fmt, f"{where}.index")
            remember_case(graph, public, exp.port)
            add(public, exp.process, exp.port, index=exp.index, metadata=meta)
    for i, group in enumerate(doc.groups):
        at[0] = f"groups[{i}]"
        meta = group.metadata
        if meta is not None:
            check_value(meta, fmt, f"groups[{i}].metadata")
        graph.add_group(group.name, group.nodes, meta)


def _end(node: str, port: str, index: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"process": node, "port": port}
    if index is not None:
        out["index"] = index
    return out


def to_dict(graph: Graph) -> dict[str, Any]:
    """The graph as a NoFlo JSON document (plain dicts and lists)."""
    props = document_properties(graph)
    spell = graph.spelled
    connections: list[dict[str, Any]] = []
    for edge in graph.edges:
        conn: dict[str, Any] = {
            "src": _end(edge.src.node, spell(edge.src.port), edge.src.index),
            "tgt": _end(edge.tgt.node, spell(edge.tgt.port), edge.tgt.index),
        }
        meta = join_capacity(edge.metadata, edge.capacity)
        if meta:
            conn["metadata"] = meta
        connections.append(conn)
    for iip in graph.iips:
        item: dict[str, Any] = {"data": iip.data,
                                "tgt": _end(iip.tgt.node, spell(iip.tgt.port), iip.tgt.index)}
        if iip.metadata:
            item["metadata"] = dict(iip.metadata)
        connections.append(item)

    def exported(table: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for public, exp in table.items():
            entry = _end(exp.node, spell(exp.port), exp.index)
            if exp.metadata:
                entry["metadata"] = dict(exp.metadata)
            out[spell(public)] = entry
        return out

    doc = {
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
    for key, value in graph.extra.items():
        doc.setdefault(key, value)
    return doc
