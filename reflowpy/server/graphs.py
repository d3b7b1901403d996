"""Graph documents in and out of the server: parse an upload, write the stored form.

Uploads come in every format the graph layer reads (Reflow JSON, NoFlo/fbp-graph
JSON, the ``.fbp`` DSL, YAML); the server stores and returns graphs as NoFlo/fbp-graph
JSON, the form FBP clients and fbp-spec fixtures use. Parsing goes through the graph
layer (``Graph.loads``) when it provides it; the JSON forms are also read here
directly so the server works with the kernel alone.
"""

from __future__ import annotations

from typing import Any

import msgspec

from reflowpy.errors import GraphFormatError
from reflowpy.network.graph import Graph

__all__ = ["dump_graph", "graph_text", "load_graph", "media_format"]

#: Content types that name a graph format.
_MEDIA = {
    "application/json": "json",
    "text/x-fbp": "fbp",
    "text/vnd.fbp": "fbp",
    "application/x-fbp": "fbp",
    "application/yaml": "yaml",
    "application/x-yaml": "yaml",
    "text/yaml": "yaml",
    "text/x-yaml": "yaml",
}


def media_format(content_type: str) -> str | None:
    """The graph format a ``Content-Type`` names, if any."""
    return _MEDIA.get(content_type.split(";")[0].strip().lower())


def load_graph(source: dict[str, Any] | str | bytes, format: str | None = None,
               *, name: str | None = None) -> Graph:
    """A :class:`Graph` from a JSON document (mapping) or a text in ``format``.

    Raises :class:`~reflowpy.GraphFormatError` naming the format and what is wrong.
    """
    loads = getattr(Graph, "loads", None)
    if isinstance(source, bytes):
        source = source.decode("utf-8", errors="replace")
    if isinstance(source, str):
        fmt = (format or "").lower() or None
        if fmt in (None, "json", "reflow", "noflo") and source.lstrip().startswith("{"):
            try:
                doc = msgspec.json.decode(source)
            except msgspec.DecodeError as exc:
                raise GraphFormatError(str(exc), format="json") from None
            return load_graph(doc, format, name=name)
        if loads is None:
            raise GraphFormatError(
                f"format {fmt or 'unknown'!r} needs the graph layer's Graph.loads; send the"
                " graph as JSON", format=fmt or "")
        graph: Graph = loads(source, format=fmt)
    else:
        if not isinstance(source, dict):
            raise GraphFormatError("expected a JSON object", format="json")
        if loads is not None:
            graph = loads(msgspec.json.encode(source).decode(), format="json")
        else:
            graph = _from_json(source)
    if name:
        graph.name = name
    return graph


def _ep(value: Any, where: str) -> tuple[str, str, int | None]:
    if not isinstance(value, dict):
        raise GraphFormatError("expected an object with node and port", format="json",
                               where=where)
    node = value.get("process", value.get("nodeId", value.get("node")))
    port = value.get("port", value.get("portId"))
    index = value.get("index")
    if not isinstance(node, str) or not isinstance(port, str):
        raise GraphFormatError("expected string process/nodeId and port/portId",
                               format="json", where=where)
    if index is not None and not isinstance(index, int):
        raise GraphFormatError("index must be an integer", format="json", where=where)
    return node, port, index


def _from_json(doc: dict[str, Any]) -> Graph:
    """NoFlo (``src``/``tgt``) or Reflow (``from``/``to``) JSON -> Graph."""
    props = doc.get("properties") or {}
    if not isinstance(props, dict):
        raise GraphFormatError("properties must be an object", format="json",
                               where="properties")
    graph = Graph(str(props.get("name", doc.get("name", "")) or ""),
                  case_sensitive=bool(doc.get("caseSensitive", False)), properties=props)
    processes = doc.get("processes") or {}
    if not isinstance(processes, dict):
        raise GraphFormatError("processes must be an object", format="json",
                               where="processes")
    for node_id, proc in processes.items():
        if not isinstance(proc, dict) or not isinstance(proc.get("component"), str):
            raise GraphFormatError("a process needs a string component", format="json",
                                   where=f"processes.{node_id}")
        meta = proc.get("metadata") or {}
        graph.add_node(node_id, proc["component"], meta if isinstance(meta, dict) else {})
    conns = doc.get("connections") or []
    if not isinstance(conns, list):
        raise GraphFormatError("connections must be a list", format="json",
                               where="connections")
    for i, conn in enumerate(conns):
        where = f"connections[{i}]"
        if not isinstance(conn, dict):
            raise GraphFormatError("expected an object", format="json", where=where)
        tgt = conn.get("tgt", conn.get("to"))
        meta = conn.get("metadata") or {}
        meta = meta if isinstance(meta, dict) else {}
        tnode, tport, tindex = _ep(tgt, where + ".tgt")
        if "data" in conn:
            graph.add_iip(conn["data"], tnode, tport, index=tindex, metadata=meta)
            continue
        snode, sport, sindex = _ep(conn.get("src", conn.get("from")), where + ".src")
        graph.add_edge(snode, sport, tnode, tport, src_index=sindex, tgt_index=tindex,
                       metadata=meta)
    for key, add in (("inports", graph.add_inport), ("outports", graph.add_outport)):
        table = doc.get(key) or {}
        if not isinstance(table, dict):
            raise GraphFormatError(f"{key} must be an object", format="json", where=key)
        for public, exp in table.items():
            node, port, index = _ep(exp, f"{key}.{public}")
            meta = exp.get("metadata") or {}
            add(public, node, port, index=index, metadata=meta if isinstance(meta, dict) else {})
    return graph


def _endpoint(node: str, port: str, index: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"process": node, "port": port}
    if index is not None:
        out["index"] = index
    return out


def dump_graph(graph: Graph) -> dict[str, Any]:
    """The NoFlo/fbp-graph JSON document of ``graph``."""
    props = dict(graph.properties)
    if graph.name:
        props["name"] = graph.name
    connections: list[dict[str, Any]] = []
    for edge in graph.edges:
        conn: dict[str, Any] = {
            "src": _endpoint(edge.src.node, edge.src.port, edge.src.index),
            "tgt": _endpoint(edge.tgt.node, edge.tgt.port, edge.tgt.index),
        }
        if edge.metadata:
            conn["metadata"] = edge.metadata
        connections.append(conn)
    for iip in graph.iips:
        conn = {"data": iip.data, "tgt": _endpoint(iip.tgt.node, iip.tgt.port, iip.tgt.index)}
        if iip.metadata:
            conn["metadata"] = iip.metadata
        connections.append(conn)

    def exported(table: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for public, exp in table.items():
            item = _endpoint(exp.node, exp.port, exp.index)
            if exp.metadata:
                item["metadata"] = exp.metadata
            out[public] = item
        return out

    doc: dict[str, Any] = {
        "caseSensitive": graph.case_sensitive,
        "properties": props,
        "inports": exported(graph.inports),
        "outports": exported(graph.outports),
        "groups": [{"name": g.name, "nodes": list(g.nodes), "metadata": g.metadata}
                   for g in graph.groups],
        "processes": {n.id: {"component": n.component, "metadata": n.metadata}
                      for n in graph.nodes.values()},
        "connections": connections,
    }
    return msgspec.to_builtins(doc)  # type: ignore[no-any-return]


def graph_text(graph: Graph) -> str:
    """``dump_graph`` as compact JSON text (the stored form)."""
    return msgspec.json.encode(dump_graph(graph)).decode()
