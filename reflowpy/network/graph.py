"""The FBP graph model: nodes, connections, IIPs, exported ports, groups, properties.

A :class:`Graph` is plain data plus mutations. Every mutation validates first and
changes second, so a refused operation never leaves a half-applied change, and then
emits one :class:`GraphEvent` (Reflow's event names) to every subscriber. A running
:class:`~reflowpy.Network` subscribes to its graph to follow live edits; the FBP
protocol and the server edit graphs through the same methods.

Subscribers are plain callables invoked synchronously, in order, after the change is
applied; with no subscriber an event is not even built, so an unobserved graph
never blocks and never grows.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import msgspec

from reflowpy.errors import (
    DuplicateNode,
    DuplicatePort,
    EdgeNotFound,
    IIPNotFound,
    NodeNotFound,
    PortNotFound,
)

__all__ = [
    "IIP",
    "Edge",
    "Endpoint",
    "ExportedPort",
    "Graph",
    "GraphEvent",
    "Group",
    "Node",
]


class Endpoint(msgspec.Struct, frozen=True):
    """One side of a connection: a node's port, optionally an index of an addressable port."""

    node: str
    port: str
    index: int | None = None

    def __str__(self) -> str:
        idx = "" if self.index is None else f"[{self.index}]"
        return f"{self.node}.{self.port}{idx}"


class Node(msgspec.Struct):
    """A process in the graph: an instance of ``component`` with its own ``metadata``."""

    id: str
    component: str
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class Edge(msgspec.Struct):
    """A connection from an out-port to an in-port.

    ``capacity`` bounds the queue of the target in-port (see the kernel's ports);
    ``None`` means the port's or the network's default.
    """

    src: Endpoint
    tgt: Endpoint
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    capacity: int | None = None


class IIP(msgspec.Struct):
    """An initial information packet: ``data`` delivered to ``tgt`` when the network starts."""

    data: Any
    tgt: Endpoint
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class ExportedPort(msgspec.Struct):
    """A graph-level port: a public name (the key in ``Graph.inports``/``outports``) for a
    node's port."""

    node: str
    port: str
    index: int | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class Group(msgspec.Struct):
    """A named set of nodes (visual grouping in editors; no runtime meaning)."""

    name: str
    nodes: list[str] = msgspec.field(default_factory=list)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class GraphEvent(msgspec.Struct, frozen=True):
    """One change to a graph.

    ``type`` is Reflow's event name (``AddNode``, ``RemoveNode``, ``RenameNode``,
    ``ChangeNode``, ``AddConnection``, ``RemoveConnection``, ``ChangeConnection``,
    ``AddInitial``, ``RemoveInitial``, ``AddInport``, ``RemoveInport``, ``RenameInport``,
    ``ChangeInport``, the same for ``Outport`` and ``Group``, ``ChangeProperties``,
    ``StartTransaction``, ``EndTransaction``). ``before`` and ``after`` hold deep copies
    of the affected item (``Node``, ``Edge``, ``IIP``, ``ExportedPort``, ``Group``, a
    name, or a properties mapping) before and after the change; ``None`` where the item
    did not exist.
    """

    type: str
    before: Any = None
    after: Any = None
    graph: str = ""


GraphListener = Callable[[GraphEvent], None]


class Graph:
    """An in-memory FBP graph.

    >>> g = Graph("demo")
    >>> _ = g.add_node("a", "core/Repeat"); _ = g.add_node("b", "core/Output")
    >>> _ = g.add_edge("a", "out", "b", "in")
    >>> g.add_iip("hello", "a", "in")
    """

    def __init__(
        self,
        name: str = "",
        *,
        case_sensitive: bool = False,
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.case_sensitive = case_sensitive
        self.properties: dict[str, Any] = dict(properties or {})
        self.nodes: dict[str, Node] = {}
        self.edges: list[Edge] = []
        self.iips: list[IIP] = []
        self.inports: dict[str, ExportedPort] = {}
        self.outports: dict[str, ExportedPort] = {}
        self.groups: list[Group] = []
        self._listeners: list[GraphListener] = []

    # -- subscription -------------------------------------------------------------

    def subscribe(self, listener: GraphListener) -> Callable[[], None]:
        """Call ``listener(event)`` after every mutation; returns a function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, type: str, before: Any = None, after: Any = None) -> None:
        if not self._listeners:
            return
        event = GraphEvent(type, copy.deepcopy(before), copy.deepcopy(after), self.name)
        for listener in list(self._listeners):
            listener(event)

    # -- helpers --------------------------------------------------------------------

    def _where(self) -> str:
        return f"graph {self.name!r}" if self.name else "graph"

    def node(self, node_id: str) -> Node:
        """The node with ``node_id``; raises :class:`NodeNotFound`."""
        try:
            return self.nodes[node_id]
        except KeyError:
            raise NodeNotFound(f"{self._where()}: no node {node_id!r}") from None

    def port_name(self, port: str) -> str:
        """A port name as stored: lower-cased unless the graph is case sensitive."""
        return port if self.case_sensitive else port.lower()

    def edges_of(self, node_id: str) -> Iterator[Edge]:
        """Every connection into or out of ``node_id``."""
        return (e for e in self.edges if e.src.node == node_id or e.tgt.node == node_id)

    # -- nodes --------------------------------------------------------------------------

    def add_node(
        self, node_id: str, component: str, metadata: Mapping[str, Any] | None = None
    ) -> Node:
        """Add a process; raises :class:`DuplicateNode` if the id is taken."""
        if not node_id:
            raise NodeNotFound(f"{self._where()}: a node id must be a non-empty string")
        if node_id in self.nodes:
            raise DuplicateNode(f"{self._where()}: node {node_id!r} already exists")
        node = Node(node_id, component, dict(metadata or {}))
        self.nodes[node_id] = node
        self._emit("AddNode", None, node)
        return node

    def remove_node(self, node_id: str) -> None:
        """Remove a node with its connections, IIPs, exported ports and group membership."""
        node = self.node(node_id)
        for edge in [e for e in self.edges if e.src.node == node_id or e.tgt.node == node_id]:
            self.remove_edge(edge.src.node, edge.src.port, edge.tgt.node, edge.tgt.port,
                             src_index=edge.src.index, tgt_index=edge.tgt.index)
        for iip in [i for i in self.iips if i.tgt.node == node_id]:
            self.remove_iip(node_id, iip.tgt.port, index=iip.tgt.index)
        for name in [n for n, p in self.inports.items() if p.node == node_id]:
            self.remove_inport(name)
        for name in [n for n, p in self.outports.items() if p.node == node_id]:
            self.remove_outport(name)
        for group in self.groups:
            if node_id in group.nodes:
                before = copy.deepcopy(group)
                group.nodes.remove(node_id)
                self._emit("ChangeGroup", before, group)
        del self.nodes[node_id]
        self._emit("RemoveNode", node, None)

    # -- edges ----------------------------------------------------------------------------

    def add_edge(
        self,
        src_node: str,
        src_port: str,
        tgt_node: str,
        tgt_port: str,
        *,
        src_index: int | None = None,
        tgt_index: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        capacity: int | None = None,
    ) -> Edge:
        """Connect ``src_node.src_port`` to ``tgt_node.tgt_port``.

        Both nodes must exist. Adding a connection that already exists returns the
        existing one unchanged (as NoFlo does).
        """
        self.node(src_node)
        self.node(tgt_node)
        if capacity is not None and capacity < 1:
            raise ValueError(
                f"{self._where()}: capacity of {src_node}.{src_port} -> {tgt_node}.{tgt_port}"
                f" must be >= 1, got {capacity}"
            )
        src = Endpoint(src_node, self.port_name(src_port), src_index)
        tgt = Endpoint(tgt_node, self.port_name(tgt_port), tgt_index)
        for edge in self.edges:
            if edge.src == src and edge.tgt == tgt:
                return edge
        edge = Edge(src, tgt, dict(metadata or {}), capacity)
        self.edges.append(edge)
        self._emit("AddConnection", None, edge)
        return edge

    def find_edge(
        self,
        src_node: str,
        src_port: str,
        tgt_node: str,
        tgt_port: str,
        *,
        src_index: int | None = None,
        tgt_index: int | None = None,
    ) -> Edge:
        """The connection between two endpoints; raises :class:`EdgeNotFound`."""
        src = Endpoint(src_node, self.port_name(src_port), src_index)
        tgt = Endpoint(tgt_node, self.port_name(tgt_port), tgt_index)
        for edge in self.edges:
            if edge.src == src and edge.tgt == tgt:
                return edge
        raise EdgeNotFound(f"{self._where()}: no connection {src} -> {tgt}")

    def remove_edge(
        self,
        src_node: str,
        src_port: str,
        tgt_node: str,
        tgt_port: str,
        *,
        src_index: int | None = None,
        tgt_index: int | None = None,
    ) -> None:
        """Remove one connection; raises :class:`EdgeNotFound`."""
        edge = self.find_edge(src_node, src_port, tgt_node, tgt_port,
                              src_index=src_index, tgt_index=tgt_index)
        self.edges.remove(edge)
        self._emit("RemoveConnection", edge, None)

    # -- IIPs -------------------------------------------------------------------------------

    def add_iip(
        self,
        data: Any,
        node_id: str,
        port: str,
        *,
        index: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> IIP:
        """Add an initial packet delivered to ``node_id.port`` when the network starts."""
        self.node(node_id)
        iip = IIP(data, Endpoint(node_id, self.port_name(port), index), dict(metadata or {}))
        self.iips.append(iip)
        self._emit("AddInitial", None, iip)
        return iip

    def remove_iip(self, node_id: str, port: str, *, index: int | None = None) -> None:
        """Remove every IIP addressed to ``node_id.port[index]``; raises :class:`IIPNotFound`."""
        tgt = Endpoint(node_id, self.port_name(port), index)
        found = [i for i in self.iips if i.tgt == tgt]
        if not found:
            raise IIPNotFound(f"{self._where()}: no initial packet for {tgt}")
        for iip in found:
            self.iips.remove(iip)
            self._emit("RemoveInitial", iip, None)

    # -- exported ports ------------------------------------------------------------------------

    def _add_exported(
        self,
        kind: str,
        table: dict[str, ExportedPort],
        public: str,
        node_id: str,
        port: str,
        index: int | None,
        metadata: Mapping[str, Any] | None,
    ) -> ExportedPort:
        self.node(node_id)
        public = self.port_name(public)
        if public in table:
            raise DuplicatePort(f"{self._where()}: {kind} {public!r} already exists")
        exported = ExportedPort(node_id, self.port_name(port), index, dict(metadata or {}))
        table[public] = exported
        self._emit(f"Add{kind.capitalize()}", None, (public, exported))
        return exported

    def _remove_exported(self, kind: str, table: dict[str, ExportedPort], public: str) -> None:
        public = self.port_name(public)
        if public not in table:
            raise PortNotFound(f"{self._where()}: no {kind} {public!r}")
        exported = table.pop(public)
        self._emit(f"Remove{kind.capitalize()}", (public, exported), None)

    def add_inport(
        self,
        public: str,
        node_id: str,
        port: str,
        *,
        index: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ExportedPort:
        """Export ``node_id.port`` as the graph in-port ``public``."""
        return self._add_exported("inport", self.inports, public, node_id, port, index, metadata)

    def remove_inport(self, public: str) -> None:
        """Remove the exported in-port ``public``; raises :class:`PortNotFound`."""
        self._remove_exported("inport", self.inports, public)

    def add_outport(
        self,
        public: str,
        node_id: str,
        port: str,
        *,
        index: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ExportedPort:
        """Export ``node_id.port`` as the graph out-port ``public``."""
        return self._add_exported("outport", self.outports, public, node_id, port, index,
                                  metadata)

    def remove_outport(self, public: str) -> None:
        """Remove the exported out-port ``public``; raises :class:`PortNotFound`."""
        self._remove_exported("outport", self.outports, public)

    def __repr__(self) -> str:
        return (
            f"<Graph {self.name!r} nodes={len(self.nodes)} edges={len(self.edges)}"
            f" iips={len(self.iips)}>"
        )
