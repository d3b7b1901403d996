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
    processes: dict[str, _Process] = {}
    connections: list[_Connection] = []
    inports: dict[str, _End] = {}
    outports: dict[str, _End] = {}
    groups: list[_Group] = []


def _end_extras(end: _End, public: str | None = None) -> dict[str, Any]:
    """The fields of a Reflow port end that the graph model has no place for, when set:
    kept under ``metadata["reflow"]`` so writing Reflow again gives them back."""
    out: dict[str, Any] = {}
    if end.expose:
        out["expose"] = True
    if public is None:
        if end.data is not None:
            out["data"] = end.data
        if end.metadata is not None:
            out["metadata"] = end.metadata
    if end.port_id and end.port_name and end.port_id != (public or end.port_name):
        out["portId"] = end.port_id
    return out


def _type_str(data: Any, fmt: str, where: str) -> str:
    if data is None or (type(data) is dict and len(data) == 1 and data.get("type") == "any"):
        return "any"
    try:
        return str(porttypes.from_reflow(data, where))
    except PortTypeError as exc:
        raise GraphFormatError(str(exc), format=fmt, where=where) from None


def _check(value: Any, fmt: str, where: str) -> Any:
    return value if value is None else check_value(value, fmt, where)


def from_dict(data: Any, fmt: str = "reflow", *, consume: bool = False) -> Graph:
    """Build a :class:`Graph` from a parsed Reflow graph document.

    ``consume`` (for readers that parsed ``data`` themselves) empties ``data`` once it is
    converted, so the parsed document and the graph are not both in memory."""
    return build_graph(data, _Doc, fmt, consume, _read_body)


def _read_body(doc: _Doc, graph: Graph, fmt: str, at: list[str]) -> None:
    for key, proc in doc.processes.items():
        at[0] = f"processes.{key}"
        if proc.id and proc.id != key:
            raise GraphFormatError(f"process key {key!r} and its id {proc.id!r} differ",
                                   format=fmt, where=f"processes.{key}.id")
        graph.add_node(key, proc.component,
                       _check(proc.metadata, fmt, f"processes.{key}.metadata"))
    edges = EdgeBuffer(graph)
    for i, conn in enumerate(doc.connections):
        where = at[0] = f"connections[{i}]"
        to, src = conn.to, conn.from_
        if conn.metadata is not None:
            check_value(conn.metadata, fmt, f"{where}.metadata")
        if conn.data is not None:
            check_value(conn.data, fmt, f"{where}.data")
        if to.data is not None:
            check_value(to.data, fmt, f"{where}.to.data")
        if to.index is not None:
            _check_index(to.index, fmt, f"{where}.to.index")
        if src is None or not src.node_id:
            remember_case(graph, to.port)
            value = conn.data if conn.data is not None else to.data
            graph.add_iip(value, to.node_id, to.port, index=to.index, metadata=conn.metadata)
            continue
        if src.data is not None or src.metadata is not None or to.metadata is not None:
            _check(src.data, fmt, f"{where}.from.data")
            _check(src.metadata, fmt, f"{where}.from.metadata")
            _check(to.metadata, fmt, f"{where}.to.metadata")
        if src.index is not None:
            _check_index(src.index, fmt, f"{where}.from.index")
        remember_case(graph, src.port, to.port)
        meta, cap = split_capacity(conn.metadata)
        ptype = _type_str(src.port_type, fmt, f"{where}.from.portType")
        if ptype != "any":
            meta["fromType"] = ptype
        ptype = _type_str(to.port_type, fmt, f"{where}.to.portType")
        if ptype != "any":
            meta["toType"] = ptype
        if src.expose or to.expose or src.data is not None or src.metadata is not None \
                or to.metadata is not None or src.port_id != src.port_name \
                or to.port_id != to.port_name:
            extras = {side: x for side, x in (("from", _end_extras(src)),
                                              ("to", _end_extras(to))) if x}
            if extras:
                meta["reflow"] = extras
        edges.add(src.node_id, src.port, to.node_id, to.port, src.index, to.index, meta, cap)
    edges.flush()
    for table, add in (("inports", graph.add_inport), ("outports", graph.add_outport)):
        ends: dict[str, _End] = getattr(doc, table)
        for public, end in ends.items():
            where = at[0] = f"{table}.{public}"
            meta = dict(_check(end.metadata, fmt, f"{where}.metadata") or {})
            _check(end.data, fmt, f"{where}.data")
            _check_index(end.index, fmt, f"{where}.index")
            ptype = _type_str(end.port_type, fmt, f"{where}.portType")
            if ptype != "any":
                meta["type"] = ptype
            extras = _end_extras(end, public)
            if end.data is not None:
                extras["data"] = end.data
            if extras:
                meta["reflow"] = extras
            port = end.port_name or end.port_id
            remember_case(graph, public, port)
            add(public, end.node_id, port, index=end.index, metadata=meta)
    for i, group in enumerate(doc.groups):
        at[0] = f"groups[{i}]"
        graph.add_group(group.id, group.nodes,
                        _check(group.metadata, fmt, f"groups[{i}].metadata"))


def _check_index(index: int | None, fmt: str, where: str) -> None:
    if index is not None and not 0 <= index <= MAX_INDEX:
        raise GraphFormatError(f"port index {index} is out of range (0 to {MAX_INDEX})",
                               format=fmt, where=where)


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
         metadata: dict[str, Any] | None = None,
         extras: dict[str, Any] | None = None) -> dict[str, Any]:
    end = {
        "portName": port_name,
        "portId": port_id,
        "nodeId": node,
        "index": index,
        "expose": False,
        "data": None,
        "metadata": metadata or None,
        "portType": port_type or {"type": "any"},
    }
    if extras:
        end.update(extras)
    return end


_END_EXTRAS = frozenset({"expose", "data", "metadata", "portId"})  # see _end_extras


def _is_end_extras(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and value.keys() <= _END_EXTRAS


def _pop_extras(meta: dict[str, Any], sides: bool = False) -> dict[str, Any]:
    """The Reflow fields the reader kept in ``metadata["reflow"]`` (taken out of
    ``meta``). Only what :func:`_end_extras` makes counts (for a connection, ``sides``:
    those of its ``from``/``to`` ends); anything else there is the user's own metadata
    and is written as it is (``{"reflow": {}}`` was lost on a round trip)."""
    value = meta.get("reflow")
    if sides:
        ok = (isinstance(value, dict) and bool(value)
              and all(k in ("from", "to") and _is_end_extras(v) for k, v in value.items()))
    else:
        ok = _is_end_extras(value)
    if not ok:
        return {}
    del meta["reflow"]
    return dict(value)  # type: ignore[arg-type]


def to_dict(graph: Graph) -> dict[str, Any]:
    """The graph as a Reflow graph document (plain dicts and lists)."""
    props = document_properties(graph)
    spell = graph.spelled
    connections: list[dict[str, Any]] = []
    for edge in graph.edges:
        meta = join_capacity(edge.metadata, edge.capacity)
        from_type = _pop_type(meta, "fromType")
        to_type = _pop_type(meta, "toType")
        extras = _pop_extras(meta, sides=True)
        sport, tport = spell(edge.src.port), spell(edge.tgt.port)
        connections.append({
            "from": _end(edge.src.node, sport, sport, edge.src.index, from_type,
                         extras=extras.get("from")),
            "to": _end(edge.tgt.node, tport, tport, edge.tgt.index, to_type,
                       extras=extras.get("to")),
            "metadata": meta or None,
            "data": None,
        })
    for iip in graph.iips:
        tport = spell(iip.tgt.port)
        connections.append({
            "from": _end("", "", "", None),
            "to": _end(iip.tgt.node, tport, tport, iip.tgt.index),
            "metadata": dict(iip.metadata) or None,
            "data": iip.data,
        })

    def exported(table: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for public, exp in table.items():
            meta = dict(exp.metadata)
            ptype = _pop_type(meta, "type")
            extras = _pop_extras(meta)
            name = spell(public)
            out[name] = _end(exp.node, name, spell(exp.port), exp.index, ptype, meta, extras)
        return out

    doc = {
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
    for key, value in graph.extra.items():
        doc.setdefault(key, value)
    return doc
