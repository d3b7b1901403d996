"""Multi-graph workspaces: a folder of graphs run as one, and graphs used as components.

Two layouts users bring:

* **Reflow workspaces**: ``*.graph.json`` files anywhere under a folder, each naming
  the graphs it needs (``graph_dependencies``) and the edges into it from them
  (``external_connections``: ``targetGraph``'s ``fromProcess.fromPort`` feeds this
  graph's ``toProcess.toPort``). :func:`compose` joins them into one graph whose node
  ids are ``GRAPH/NODE`` and whose exported ports are ``GRAPH.PORT``.
* **NoFlo projects**: a ``graphs/`` folder whose ``.fbp``/``.json`` files are
  components named after the file (``graphs/Split.fbp`` is component ``Split``) and
  are used as subgraphs by the others. :func:`register_graphs` registers them;
  :func:`compose` of such a folder returns its ``main`` graph (or its only one).

Everything wrong (a missing dependency, a connection to a node that does not exist,
two graphs with one name) is a :class:`~reflowpy.GraphError` naming the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reflowpy.errors import GraphError
from reflowpy.network.graph import Graph

__all__ = ["compose", "graph_files", "register_graphs"]

_SUFFIXES = (".json", ".fbp", ".yaml", ".yml")


def graph_files(folder: str | Path) -> list[Path]:
    """The graph files directly in ``folder``, sorted (``*.json``, ``*.fbp``, YAML)."""
    root = Path(folder)
    if not root.is_dir():
        raise GraphError(f"{str(folder)!r} is not a folder of graphs")
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES
                  and p.name != "package.json")


def _component_name(path: Path) -> str:
    name = path.name
    for suffix in (".graph.json", *_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def register_graphs(registry: Any, folder: str | Path) -> list[str]:
    """Register every graph file in ``folder`` as a subgraph component named after the
    file (``Split.fbp`` -> ``Split``); returns the names. A name the registry already has
    is replaced, as a project's own graphs override a library's."""
    from reflowpy.network import formats

    names = []
    for path in graph_files(folder):
        graph = formats.load(path)
        name = _component_name(path)
        registry.register(name, graph, replace=True)
        names.append(name)
    return names


def _reflow_graphs(root: Path) -> dict[str, tuple[Path, Graph]]:
    from reflowpy.network import formats

    found: dict[str, tuple[Path, Graph]] = {}
    for path in sorted(root.rglob("*.graph.json")):
        graph = formats.load(path)
        name = graph.name or _component_name(path)
        if name in found:
            raise GraphError(f"workspace {str(root)!r}: two graphs are named {name!r}:"
                             f" {found[name][0]} and {path}")
        found[name] = (path, graph)
    return found


def compose(folder: str | Path, registry: Any = None) -> Graph:
    """The graph a workspace folder runs as (see the module docstring)."""
    root = Path(folder)
    graphs = _reflow_graphs(root)
    if graphs:
        return _compose_reflow(root, graphs)
    search = root / "graphs" if (root / "graphs").is_dir() else root
    files = graph_files(search)
    if not files:
        raise GraphError(f"{str(folder)!r} holds no graph files (*.graph.json, *.fbp,"
                         " *.json, *.yaml)")
    if registry is not None:
        register_graphs(registry, search)
    mains = [p for p in files if _component_name(p).lower() == "main"]
    if len(mains) == 1 or len(files) == 1:
        from reflowpy.network import formats

        return formats.load((mains or files)[0])
    raise GraphError(f"{str(folder)!r} holds {len(files)} graphs and none is called main:"
                     f" run one of {', '.join(p.name for p in files)} with --graphs"
                     f" {search}")


def _compose_reflow(root: Path, graphs: dict[str, tuple[Path, Graph]]) -> Graph:
    out = Graph(root.name or "workspace", properties={"workspace": sorted(graphs)})
    for name, (path, graph) in graphs.items():
        for dep in graph.extra.get("graph_dependencies") or ():
            dep_name = dep.get("graphName") if isinstance(dep, dict) else None
            if dep_name and dep_name not in graphs and dep.get("required", True):
                raise GraphError(f"{path}: needs graph {dep_name!r}, which is not in the"
                                 f" workspace {str(root)!r} (it has {sorted(graphs)})")
        for node in graph.nodes.values():
            out.add_node(f"{name}/{node.id}", node.component, node.metadata)
        for edge in graph.edges:
            out.add_edge(f"{name}/{edge.src.node}", edge.src.port, f"{name}/{edge.tgt.node}",
                         edge.tgt.port, src_index=edge.src.index, tgt_index=edge.tgt.index,
                         metadata=edge.metadata, capacity=edge.capacity)
        for iip in graph.iips:
            out.add_iip(iip.data, f"{name}/{iip.tgt.node}", iip.tgt.port,
                        index=iip.tgt.index, metadata=iip.metadata)
        out.port_case.update(graph.port_case)
    fed: set[tuple[str, str]] = set()
    for name, (path, graph) in graphs.items():
        for i, conn in enumerate(graph.extra.get("external_connections") or ()):
            where = f"{path}: external_connections[{i}]"
            if not isinstance(conn, dict):
                raise GraphError(f"{where}: expected an object")
            source = conn.get("targetGraph")
            if source not in graphs:
                raise GraphError(f"{where}: targetGraph {source!r} is not in the workspace"
                                 f" (it has {sorted(graphs)})")
            try:
                src_node, tgt_node = str(conn["fromProcess"]), str(conn["toProcess"])
                src_port, tgt_port = str(conn["fromPort"]), str(conn["toPort"])
            except KeyError as exc:
                raise GraphError(f"{where}: missing field {exc}") from None
            other = graphs[source][1]
            # Reflow's examples write both directions under one name: the process ids
            # say which graph is which (this -> targetGraph, or targetGraph -> this).
            if src_node in graph.nodes and tgt_node in other.nodes:
                src, tgt = f"{name}/{src_node}", f"{source}/{tgt_node}"
            elif src_node in other.nodes and tgt_node in graph.nodes:
                src, tgt = f"{source}/{src_node}", f"{name}/{tgt_node}"
            else:
                raise GraphError(f"{where}: fromProcess {src_node!r} and toProcess"
                                 f" {tgt_node!r} are not in graphs {name!r} and {source!r}")
            try:
                out.add_edge(src, src_port, tgt, tgt_port,
                             metadata={"connectionId": conn.get("connectionId", "")})
            except GraphError as exc:
                raise GraphError(f"{where}: {exc}") from None
            fed.add((tgt, out.port_name(tgt_port)))
    for name, (_, graph) in graphs.items():
        for public, exp in graph.inports.items():
            if (f"{name}/{exp.node}", exp.port) not in fed:
                out.add_inport(f"{name}.{public}", f"{name}/{exp.node}", exp.port,
                               index=exp.index, metadata=exp.metadata)
        for public, exp in graph.outports.items():
            out.add_outport(f"{name}.{public}", f"{name}/{exp.node}", exp.port,
                            index=exp.index, metadata=exp.metadata)
    out.clear_history()
    return out
