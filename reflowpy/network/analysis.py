"""Graph analysis with networkx: validation, cycles, stages, reachability, layout.

Everything here reads a :class:`~reflowpy.Graph` and leaves it unchanged, except
:func:`layout`, which writes ``metadata.x``/``metadata.y`` in one undoable
transaction. Functions take the graph (and, for validation, an optional
:class:`~reflowpy.Registry` to check components, ports and port types against).

The directed "flow" graph used throughout has one vertex per node and an arc per
connection (parallel connections collapse into one arc); IIPs and exported ports
are not vertices. All functions are linear or near-linear in nodes + connections,
except :func:`cycles`, which enumerates simple cycles (bounded by ``limit``).
"""

from __future__ import annotations

import difflib
import itertools
import operator
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
import networkx as nx

from reflowpy.errors import (
    ComponentNotFound,
    ConfigError,
    GraphCycleError,
    GraphError,
    MissingEnvironment,
    PortTypeError,
)
from reflowpy.network import porttypes
from reflowpy.network.graph import Graph
from reflowpy.network.runner import resolve_config
from reflowpy.network.supervision import Policy

if TYPE_CHECKING:
    from reflowpy.network.actor import Port
    from reflowpy.network.registry import Registry

__all__ = [
    "Problem",
    "ValidationReport",
    "connected_components",
    "crossings",
    "cycles",
    "layout",
    "orphans",
    "reachable_from",
    "stages",
    "to_networkx",
    "topological_order",
    "unknown_fields",
    "unreachable",
    "validate",
]


class Problem(msgspec.Struct, frozen=True):
    """One finding of :func:`validate`.

    ``kind`` is one of ``dangling_edge``, ``dangling_iip``, ``dangling_export``,
    ``dangling_group_member``, ``unknown_component``, ``unknown_port``,
    ``unconnected_port``, ``type_mismatch``, ``bad_port_type``, ``orphan``,
    ``bad_policy``, ``bad_config``, ``missing_env`` (a warning), ``bad_placement``,
    ``unknown_field`` (a warning: a top-level field no graph format defines).
    ``severity`` is ``"error"`` (the graph cannot run as written) or ``"warning"``.
    """

    kind: str
    message: str
    node: str | None = None
    port: str | None = None
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.severity}: [{self.kind}] {self.message}"


class ValidationReport(msgspec.Struct):
    """What :func:`validate` found. ``ok`` is true when there is no error (warnings
    may remain); ``str(report)`` is a readable summary, one problem per line."""

    graph: str = ""
    problems: list[Problem] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem of severity ``error``."""
        return not any(p.severity == "error" for p in self.problems)

    @property
    def errors(self) -> list[Problem]:
        """The problems of severity ``error``."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """The problems of severity ``warning``."""
        return [p for p in self.problems if p.severity == "warning"]

    def __str__(self) -> str:
        name = f"graph {self.graph!r}" if self.graph else "graph"
        if not self.problems:
            return f"{name}: ok"
        head = (f"{name}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


# -- the flow graph -------------------------------------------------------------------------


def to_networkx(graph: Graph) -> nx.DiGraph:
    """A ``networkx.DiGraph``: one vertex per node (with ``component``), one arc per
    connected node pair (with the list of ``edges``)."""
    g = nx.DiGraph()
    g.add_nodes_from((n.id, {"component": n.component}) for n in graph.nodes.values())
    for edge in graph.edges:
        u, v = edge.src.node, edge.tgt.node
        if u in graph.nodes and v in graph.nodes:
            if g.has_edge(u, v):
                g[u][v]["edges"].append(edge)
            else:
                g.add_edge(u, v, edges=[edge])
    return g


def _adjacency(graph: Graph) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    pred: dict[str, list[str]] = {n: [] for n in graph.nodes}
    seen: set[tuple[str, str]] = set()
    for edge in graph.edges:
        u, v = edge.src.node, edge.tgt.node
        if u in succ and v in succ and (u, v) not in seen:
            seen.add((u, v))
            succ[u].append(v)
            pred[v].append(u)
    return succ, pred


# -- validation -----------------------------------------------------------------------------


_PortTables = tuple[dict[str, "Port"], dict[str, "Port"]]


def _ports(registry: Registry | None, component: str) -> _PortTables | None:
    if registry is None:
        return None
    try:
        info = registry.describe(component)
    except ComponentNotFound:
        return None
    return ({p.name.lower(): p for p in info.inports}, {p.name.lower(): p for p in info.outports})


_SRC_NODE = operator.attrgetter("src.node")
_TGT_NODE = operator.attrgetter("tgt.node")


def validate(graph: Graph, registry: Registry | None = None) -> ValidationReport:
    """Check a graph and report every problem found (never raises for graph content).

    Always: connections, IIPs, exported ports and group members that name missing
    nodes (``dangling_*``), and nodes with no connection and no exported port
    (``orphan``, a warning). With a ``registry``: unknown components, ports a
    component does not declare, required in-ports with no connection, IIP or
    exported port (``unconnected_port``, a warning, since a node may be fed later by
    live editing), and out-port -> in-port type mismatches under
    :func:`reflowpy.network.porttypes.compatible`.
    """
    problems: list[Problem] = []
    add = problems.append
    add_all = problems.extend
    nodes = graph.nodes
    # The node names the connections use, gathered by C-level passes (a loaded graph
    # may have millions of edges); each edge is looked at only if one is missing.
    connected = set(map(_SRC_NODE, graph.edges))
    connected.update(map(_TGT_NODE, graph.edges))
    if connected.difference(nodes):  # (set - dict: C lookups with the cached hashes)
        for edge in graph.edges:
            for end, side in ((edge.src, "source"), (edge.tgt, "target")):
                if end.node not in nodes:
                    add(Problem("dangling_edge", f"connection {edge.src} -> {edge.tgt}:"
                                f" {side} node {end.node!r} does not exist", end.node,
                                end.port))
    for iip in graph.iips:
        if iip.tgt.node not in nodes:
            add(Problem("dangling_iip", f"initial packet for {iip.tgt}: node"
                        f" {iip.tgt.node!r} does not exist", iip.tgt.node, iip.tgt.port))
    for kind, table in (("inport", graph.inports), ("outport", graph.outports)):
        for public, exp in table.items():
            if exp.node not in nodes:
                add(Problem("dangling_export", f"exported {kind} {public!r} -> {exp.node}."
                            f"{exp.port}: node {exp.node!r} does not exist", exp.node, exp.port))
    for group in graph.groups:
        for member in group.nodes:
            if member not in nodes:
                add(Problem("dangling_group_member", f"group {group.name!r}: node {member!r}"
                            " does not exist", member, severity="warning"))

    exported_nodes = {p.node for p in graph.inports.values()} | {
        p.node for p in graph.outports.values()}
    lonely = nodes.keys() - connected - exported_nodes  # a C-level pass; reported in
    if lonely:  # node order
        for node_id in [n for n in nodes if n in lonely]:
            add(Problem("orphan", f"node {node_id!r} has no connection and no exported port",
                        node_id, severity="warning"))

    add_all(unknown_fields(graph))
    _validate_metadata(graph, add)
    if registry is not None:
        _validate_components(graph, registry, add)
    return ValidationReport(graph.name, problems)


#: Top-level fields a graph document may have: NoFlo's and Reflow's (workspace included).
GRAPH_FIELDS = ("processes", "connections", "inports", "outports", "groups", "properties",
                "caseSensitive", "graph_dependencies", "external_connections",
                "provided_interfaces", "required_interfaces")


def unknown_fields(graph: Graph) -> list[Problem]:
    """An ``unknown_field`` warning for each top-level field of the graph's file that is
    no graph field (kept in :attr:`~reflowpy.Graph.extra` for a round trip, ignored by
    a run), with the field it was probably meant to be: ``proceses:`` in a YAML file
    would otherwise run as an empty graph without a word."""
    found = []
    for key in graph.extra:
        if key in GRAPH_FIELDS:
            continue
        close = difflib.get_close_matches(key, GRAPH_FIELDS, n=1, cutoff=0.7)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        found.append(Problem("unknown_field", f"top-level field {key!r} is not a graph field"
                             f" (kept, but a run ignores it){hint}", severity="warning"))
    return found


#: The location of a node with neither ``partition`` nor ``remote`` in its metadata.
LOCAL = "local"


def location_of(metadata: Mapping[str, Any], *, node: str = "", graph: str = "") -> str:
    """The location a node's metadata asks for (``local``, ``partition:N``, ``remote:X``);
    a :class:`~reflowpy.GraphError` naming the node if the keys are malformed. The
    bridge layer places nodes by it; :func:`validate` reports what it refuses."""
    partition = metadata.get("partition")
    remote = metadata.get("remote")
    where = f"graph {graph!r} node {node!r}" if graph else f"node {node!r}"
    if partition is not None and remote is not None:
        raise GraphError(f"{where}: metadata has both 'partition' and 'remote'; pick one")
    if partition is not None:
        if not isinstance(partition, str) or not partition or partition == LOCAL:
            raise GraphError(f"{where}: metadata 'partition' must be a non-empty name other"
                             f" than {LOCAL!r}, got {partition!r}")
        return f"partition:{partition}"
    if remote is not None:
        if not isinstance(remote, str) or not remote:
            raise GraphError(f"{where}: metadata 'remote' must be a ws:// URL or a peer"
                             f" name, got {remote!r}")
        return f"remote:{remote}"
    return LOCAL


#: The node metadata keys :func:`_validate_metadata` checks (what ``resolve_config``,
#: ``Policy.from_config`` and :func:`location_of` read).
_CHECKED_KEYS = frozenset({"env_vars", "policy", "partition", "remote"})


def _validate_metadata(graph: Graph, add: Any) -> None:
    """What the network and the placement refuse in node metadata, found before a run:
    a malformed ``policy``, ``env_vars``, ``partition`` or ``remote``, and exported
    ports on nodes placed elsewhere. A variable ``env_vars`` requires but this
    environment lacks is a warning: the graph may run where it is set."""
    located: dict[str, str] = {}
    # Only these keys can make a problem or a place other than LOCAL; a loaded graph's
    # nodes mostly have none of them (often no metadata at all), so only the nodes
    # with one are looked at.
    keys = _CHECKED_KEYS
    for node in [n for n in graph.nodes.values()
                 if n.metadata and not keys.isdisjoint(n.metadata)]:
        meta = node.metadata
        try:
            resolve_config(node.id, meta)
        except MissingEnvironment as exc:
            add(Problem("missing_env", str(exc), node.id, severity="warning"))
        except ConfigError as exc:
            add(Problem("bad_config", str(exc), node.id))
        if "policy" in meta:
            try:
                Policy.from_config(meta["policy"], node=node.id)
            except ConfigError as exc:
                add(Problem("bad_policy", str(exc), node.id))
        try:
            located[node.id] = location_of(meta, node=node.id, graph=graph.name)
        except GraphError as exc:
            add(Problem("bad_placement", str(exc), node.id))
    for table in (graph.inports, graph.outports):
        for public, exp in table.items():
            where = located.get(exp.node, LOCAL)
            if where != LOCAL:
                add(Problem("bad_placement", exported_elsewhere(graph, public, exp.node, where),
                            exp.node, exp.port))


def exported_elsewhere(graph: Graph, public: str, node: str, where: str) -> str:
    """Why the graph's exported port ``public`` cannot be on ``node``, placed ``where``."""
    return (f"graph {graph.name!r}: exported port {public!r} is on node {node!r}, placed"
            f" on {where!r}; export ports from nodes of this process (connect the remote"
            " node to a local one)")


def _validate_components(graph: Graph, registry: Registry, add: Any) -> None:
    specs: dict[str, tuple[dict[str, Port], dict[str, Port]]] = {}
    unknown: dict[str, str] = {}  # component -> why (with the names it is close to)
    for node in graph.nodes.values():
        ports = _ports(registry, node.component)
        if ports is None:
            if node.component not in unknown:
                try:
                    registry.get(node.component)
                    unknown[node.component] = f"no component {node.component!r}"
                except ComponentNotFound as exc:
                    unknown[node.component] = str(exc)
            add(Problem("unknown_component", f"node {node.id!r}: {unknown[node.component]}",
                        node.id))
        else:
            specs[node.id] = ports
            cycle = registry.subgraph_cycle(node.component)
            if cycle is not None:
                add(Problem("recursive_subgraph", f"node {node.id!r}: subgraph {cycle[0]!r}"
                            f" contains itself ({' -> '.join(cycle)})", node.id))

    def port_of(node_id: str, port: str, out: bool, what: str) -> Port | None:
        if node_id not in specs:
            return None
        table = specs[node_id][1 if out else 0]
        spec = table.get(port.lower())
        if spec is None:
            direction = "out-port" if out else "in-port"
            known = ", ".join(sorted(table)) or "none"
            add(Problem("unknown_port", f"{what}: component {graph.nodes[node_id].component!r}"
                        f" of node {node_id!r} has no {direction} {port!r} (known: {known})",
                        node_id, port))
        return spec

    def ptype(spec: Port, node_id: str, what: str) -> porttypes.PortType | None:
        try:
            return porttypes.parse(spec.type)
        except PortTypeError as exc:
            add(Problem("bad_port_type", f"{what}: {exc}", node_id, spec.name))
            return None

    fed: set[tuple[str, str]] = set()
    for edge in graph.edges:
        what = f"connection {edge.src} -> {edge.tgt}"
        src = port_of(edge.src.node, edge.src.port, True, what)
        tgt = port_of(edge.tgt.node, edge.tgt.port, False, what)
        fed.add((edge.tgt.node, edge.tgt.port.lower()))
        if src is not None and tgt is not None:
            a = ptype(src, edge.src.node, what)
            b = ptype(tgt, edge.tgt.node, what)
            if a is not None and b is not None and not porttypes.compatible(a, b):
                add(Problem("type_mismatch", f"{what}: out-port type {a} does not fit in-port"
                            f" type {b}", edge.tgt.node, edge.tgt.port))
    for iip in graph.iips:
        port_of(iip.tgt.node, iip.tgt.port, False, f"initial packet for {iip.tgt}")
        fed.add((iip.tgt.node, iip.tgt.port.lower()))
    for public, exp in graph.inports.items():
        port_of(exp.node, exp.port, False, f"exported inport {public!r}")
        fed.add((exp.node, exp.port.lower()))
    for public, exp in graph.outports.items():
        port_of(exp.node, exp.port, True, f"exported outport {public!r}")
    for node_id, (inports, _outports) in specs.items():
        for name, spec in inports.items():
            if spec.required and (node_id, name) not in fed:
                add(Problem("unconnected_port", f"node {node_id!r}: required in-port {name!r}"
                            " has no connection, IIP or exported port", node_id, name,
                            severity="warning"))


# -- structure ---------------------------------------------------------------------------------


def cycles(graph: Graph, *, limit: int | None = None) -> list[list[str]]:
    """All simple cycles as lists of node ids (each starting at its smallest id), sorted.

    The number of simple cycles can grow exponentially; ``limit`` stops after that many.
    """
    if _kahn(graph)[1]:
        return []  # acyclic: skip building the networkx graph
    found = nx.simple_cycles(to_networkx(graph))
    if limit is not None:
        found = itertools.islice(found, limit)
    out = []
    for cycle in found:
        i = cycle.index(min(cycle))
        out.append(cycle[i:] + cycle[:i])
    return sorted(out, key=lambda c: (len(c), c))


def _kahn(graph: Graph) -> tuple[list[str], bool, dict[str, int]]:
    """Kahn's algorithm: (order found, whether it covers every node, in-degrees left)."""
    succ, pred = _adjacency(graph)
    indeg = {n: len(p) for n, p in pred.items()}
    order = [n for n in graph.nodes if indeg[n] == 0]
    i = 0
    while i < len(order):
        n = order[i]
        i += 1
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                order.append(m)
    return order, len(order) == len(graph.nodes), indeg


def topological_order(graph: Graph) -> list[str]:
    """Node ids so that every connection goes forward; raises :class:`GraphCycleError`
    (with one cycle) when the graph has a cycle."""
    order, complete, indeg = _kahn(graph)
    if not complete:
        cycle = [u for u, _v in nx.find_cycle(to_networkx(graph).subgraph(
            [n for n in graph.nodes if indeg[n] > 0]))]
        where = f"graph {graph.name!r}" if graph.name else "graph"
        raise GraphCycleError(f"{where} has a cycle: {' -> '.join([*cycle, cycle[0]])};"
                              " use stages() for cyclic graphs", cycle)
    return order


def stages(graph: Graph) -> list[list[str]]:
    """Pipeline stages: stage 0 holds nodes with no upstream node, stage k nodes whose
    longest upstream path has k steps. Nodes on a common cycle share a stage."""
    order, complete, _indeg = _kahn(graph)
    if complete:  # a DAG: longest-path levels directly
        _succ, pred = _adjacency(graph)
        level: dict[str, int] = {}
        for n in order:
            level[n] = max((level[p] + 1 for p in pred[n]), default=0)
        rows: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
        for node_id in graph.nodes:
            rows[level[node_id]].append(node_id)
        return rows
    g = to_networkx(graph)
    cond = nx.condensation(g)
    members = cond.graph["mapping"]
    clevel: dict[int, int] = {}
    for c in nx.topological_sort(cond):
        clevel[c] = max((clevel[p] + 1 for p in cond.predecessors(c)), default=0)
    out: list[list[str]] = [[] for _ in range(max(clevel.values(), default=-1) + 1)]
    for node_id in graph.nodes:
        out[clevel[members[node_id]]].append(node_id)
    return out


def orphans(graph: Graph) -> list[str]:
    """Nodes with no connection and no exported port (IIPs alone do not connect a node)."""
    connected = {e.src.node for e in graph.edges} | {e.tgt.node for e in graph.edges}
    connected |= {p.node for p in graph.inports.values()}
    connected |= {p.node for p in graph.outports.values()}
    return [n for n in graph.nodes if n not in connected]


def _entry_points(graph: Graph) -> set[str]:
    _succ, pred = _adjacency(graph)
    entries = {n for n, p in pred.items() if not p}
    entries |= {p.node for p in graph.inports.values() if p.node in graph.nodes}
    entries |= {i.tgt.node for i in graph.iips if i.tgt.node in graph.nodes}
    return entries


def _reach(graph: Graph, starts: Iterable[str]) -> set[str]:
    succ, _pred = _adjacency(graph)
    seen = {s for s in starts if s in succ}
    stack = list(seen)
    while stack:
        for m in succ[stack.pop()]:
            if m not in seen:
                seen.add(m)
                stack.append(m)
    return seen


def unreachable(graph: Graph, sources: Iterable[str] | None = None) -> list[str]:
    """Nodes no message can reach from ``sources`` — by default the entry points:
    exported in-ports, IIP targets and nodes without upstream connections (sources
    that generate messages themselves). With the default, what remains are nodes fed
    only from cycles that nothing enters."""
    starts = _entry_points(graph) if sources is None else set(sources)
    for s in starts:
        graph.node(s)
    seen = _reach(graph, starts)
    return [n for n in graph.nodes if n not in seen]


def reachable_from(graph: Graph, node_id: str) -> Graph:
    """The subgraph downstream of ``node_id`` (itself included): those nodes, the
    connections among them, their IIPs, exported ports and groups (trimmed)."""
    graph.node(node_id)
    keep = _reach(graph, [node_id])
    sub = Graph(graph.name, case_sensitive=graph.case_sensitive,
                properties=dict(graph.properties))
    sub._recording = False
    for n in graph.nodes.values():
        if n.id in keep:
            sub.add_node(n.id, n.component, n.metadata)
    for e in graph.edges:
        if e.src.node in keep and e.tgt.node in keep:
            sub.add_edge(e.src.node, e.src.port, e.tgt.node, e.tgt.port, src_index=e.src.index,
                         tgt_index=e.tgt.index, metadata=e.metadata, capacity=e.capacity)
    for i in graph.iips:
        if i.tgt.node in keep:
            sub.add_iip(i.data, i.tgt.node, i.tgt.port, index=i.tgt.index, metadata=i.metadata)
    for public, p in graph.inports.items():
        if p.node in keep:
            sub.add_inport(public, p.node, p.port, index=p.index, metadata=p.metadata)
    for public, p in graph.outports.items():
        if p.node in keep:
            sub.add_outport(public, p.node, p.port, index=p.index, metadata=p.metadata)
    for g in graph.groups:
        members = [n for n in g.nodes if n in keep]
        if members:
            sub.add_group(g.name, members, g.metadata)
    sub._recording = True
    return sub


def connected_components(graph: Graph) -> list[list[str]]:
    """Weakly connected components as node-id lists, largest first (ties: first node)."""
    index = {n: i for i, n in enumerate(graph.nodes)}
    comps = [sorted(c, key=index.__getitem__)
             for c in nx.weakly_connected_components(to_networkx(graph))]
    return sorted(comps, key=lambda c: (-len(c), index[c[0]]))


# -- layout ---------------------------------------------------------------------------------


def _layers(graph: Graph) -> dict[str, int]:
    """Longest-path layering after removing the back edges of a depth-first search."""
    succ, _pred = _adjacency(graph)
    state: dict[str, int] = {}  # 1 = on stack, 2 = done
    forward: dict[str, list[str]] = defaultdict(list)
    for root in graph.nodes:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        while stack:
            node, it = stack[-1]
            for m in it:
                if state.get(m) == 1:
                    continue  # back edge: ignored for layering
                forward[node].append(m)
                if m not in state:
                    state[m] = 1
                    stack.append((m, iter(succ[m])))
                    break
            else:
                state[node] = 2
                stack.pop()
    indeg: dict[str, int] = dict.fromkeys(graph.nodes, 0)
    for vs in forward.values():
        for v in vs:
            indeg[v] += 1
    layer = dict.fromkeys(graph.nodes, 0)
    ready = [n for n in graph.nodes if indeg[n] == 0]
    while ready:
        u = ready.pop()
        for v in forward.get(u, ()):
            layer[v] = max(layer[v], layer[u] + 1)
            indeg[v] -= 1
            if indeg[v] == 0:
                ready.append(v)
    return layer


def layout(
    graph: Graph, *, dx: float = 200.0, dy: float = 100.0, sweeps: int = 4,
    write: bool = True,
) -> dict[str, tuple[float, float]]:
    """A layered left-to-right layout: layers by longest path (back edges of cycles
    ignored), order within layers by barycentric crossing reduction (``sweeps``
    down-and-up passes). Returns ``{node: (x, y)}`` and, with ``write``, stores them as
    ``metadata.x``/``metadata.y`` in one transaction named ``"layout"``."""
    layer = _layers(graph)
    succ, pred = _adjacency(graph)
    count = max(layer.values(), default=-1) + 1
    rows: list[list[str]] = [[] for _ in range(count)]
    for n in graph.nodes:
        rows[layer[n]].append(n)
    pos: dict[str, float] = {}
    for row in rows:
        for i, n in enumerate(row):
            pos[n] = float(i)

    def reorder(row: list[str], neighbours: dict[str, list[str]]) -> list[str]:
        def key(n: str) -> float:
            ns = neighbours[n]
            return sum(pos[m] for m in ns) / len(ns) if ns else pos[n]

        ordered = sorted(row, key=key)
        for i, n in enumerate(ordered):
            pos[n] = float(i)
        return ordered

    for _ in range(sweeps):
        for k in range(1, count):
            rows[k] = reorder(rows[k], pred)
        for k in range(count - 2, -1, -1):
            rows[k] = reorder(rows[k], succ)
    coords = {n: (layer[n] * dx, pos[n] * dy) for n in graph.nodes}
    if write:
        with graph.transaction("layout"):
            for n, (x, y) in coords.items():
                graph.set_node_metadata(n, {"x": x, "y": y})
    return coords


def crossings(graph: Graph, coords: dict[str, tuple[float, float]]) -> int:
    """Number of crossing connection pairs between adjacent layers of a layout (for
    tests and benchmarks of :func:`layout`)."""
    by_layer: dict[float, list[tuple[float, float]]] = defaultdict(list)
    for u, v in {(e.src.node, e.tgt.node) for e in graph.edges}:
        (xu, yu), (xv, yv) = coords[u], coords[v]
        if xv > xu:
            by_layer[xu].append((yu, yv))
    total = 0
    for pairs in by_layer.values():
        pairs.sort()
        for i, (a1, b1) in enumerate(pairs):
            for a2, b2 in pairs[i + 1:]:
                if a2 > a1 and b2 < b1:
                    total += 1
    return total
