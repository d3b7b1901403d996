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
    building,
    convert,
    document_properties,
    join_capacity,
    read_document,
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
    processes: dict[str, Any] = {}
    connections: list[_Connection] = []
    inports: dict[str, Any] = {}
    outports: dict[str, Any] = {}
    groups: list[_Group] = []


def _check_index(index: int | None, fmt: str, where: str) -> None:
    if index is not None and not 0 <= index <= MAX_INDEX:
        raise GraphFormatError(f"port index {index} is out of range (0 to {MAX_INDEX})",
                               format=fmt, where=where)


def from_dict(data: Any, fmt: str = "noflo") -> Graph:
    """Build a :class:`Graph` from a parsed NoFlo JSON document."""
    doc, graph = read_document(data, _Doc, fmt)
    graph._recording = False
    for node_id, raw in doc.processes.items():
        proc = convert(raw, _Process, fmt, f"processes.{node_id}")
        with building(fmt, f"processes.{node_id}"):
            meta = check_value(proc.metadata, fmt, f"processes.{node_id}.metadata")
            graph.add_node(node_id, proc.component, meta)
    for i, conn in enumerate(doc.connections):
        where = f"connections[{i}]"
        with building(fmt, where):
            check_value(conn.metadata, fmt, f"{where}.metadata")
            _check_index(conn.tgt.index, fmt, f"{where}.tgt.index")
            remember_case(graph, conn.tgt.port)
            if conn.src is None:
                if conn.data is msgspec.UNSET:
                    raise GraphFormatError(
                        "a connection needs 'src' (an edge) or 'data' (an IIP)",
                        format=fmt, where=where,
                    )
                check_value(conn.data, fmt, f"{where}.data")
                graph.add_iip(conn.data, conn.tgt.process, conn.tgt.port,
                              index=conn.tgt.index, metadata=conn.metadata)
            else:
                _check_index(conn.src.index, fmt, f"{where}.src.index")
                remember_case(graph, conn.src.port)
                meta, cap = split_capacity(conn.metadata)
                graph.add_edge(conn.src.process, conn.src.port, conn.tgt.process,
                               conn.tgt.port, src_index=conn.src.index,
                               tgt_index=conn.tgt.index, metadata=meta, capacity=cap)
    for table, add in (("inports", graph.add_inport), ("outports", graph.add_outport)):
        for public, raw in getattr(doc, table).items():
            where = f"{table}.{public}"
            exp = convert(raw, _Exported, fmt, where)
            with building(fmt, where):
                meta = check_value(exp.metadata, fmt, f"{where}.metadata")
                _check_index(exp.index, fmt, f"{where}.index")
                remember_case(graph, public, exp.port)
                add(public, exp.process, exp.port, index=exp.index, metadata=meta)
    for i, group in enumerate(doc.groups):
        with building(fmt, f"groups[{i}]"):
            graph.add_group(group.name, group.nodes,
                            check_value(group.metadata, fmt, f"groups[{i}].metadata"))
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
