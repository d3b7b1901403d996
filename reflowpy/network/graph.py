"""The FBP graph model: nodes, connections, IIPs, exported ports, groups, properties.

A :class:`Graph` is plain data plus mutations. Every mutation validates first and
changes second, so a refused operation never leaves a half-applied change, and then
emits one :class:`GraphEvent` (Reflow's event names) per elementary change to every
subscriber. A running :class:`~reflowpy.Network` subscribes to its graph to follow
live edits; the FBP protocol and the server edit graphs through the same methods.

Subscribers are plain callables invoked synchronously, in order, after the change is
applied; with no subscriber an event is not even built, so an unobserved graph
never blocks and never grows (the undo history is bounded by ``max_history``).

**Undo/redo.** Each public mutation is one undoable step; ``with
graph.transaction("name"):`` groups several into one step, announced by
``StartTransaction``/``EndTransaction`` events. :meth:`Graph.undo` applies the
inverse changes in reverse order and emits their events (``RemoveNode`` for an
undone ``AddNode``, ...), so anything that follows the events stays consistent. A
transaction whose block raises is rolled back the same way before the exception
propagates: a transaction applies entirely or not at all.

Stored items are replaced, never mutated in place (``set_node_metadata`` stores a new
:class:`Node`), so the history can keep references instead of copies.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import operator
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import msgspec

from reflowpy.errors import (
    DuplicateGroup,
    DuplicateNode,
    DuplicatePort,
    EdgeNotFound,
    GraphError,
    GroupNotFound,
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

_log = logging.getLogger("reflowpy.graph")


class Endpoint(msgspec.Struct, frozen=True, gc=False):
    """One side of a connection: a node's port, optionally an index of an addressable port.

    Not tracked by the garbage collector (it holds only strings and an integer, so it
    can be in no cycle): 16 bytes less each, and a million edges add nothing to scan."""

    node: str
    port: str
    index: int | None = None

    def __str__(self) -> str:
        idx = "" if self.index is None else f"[{self.index}]"
        return f"{self.node}.{self.port}{idx}"


class Node(msgspec.Struct, gc=False):
    """A process in the graph: an instance of ``component`` with its own ``metadata``.

    Not tracked by the garbage collector, like :class:`Edge` (see there)."""

    id: str
    component: str
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class Edge(msgspec.Struct, gc=False):
    """A connection from an out-port to an in-port.

    ``capacity`` bounds the queue of the target in-port (see the kernel's ports);
    ``None`` means the port's or the network's default. In files it is stored as
    ``metadata.capacity`` (neither Reflow nor NoFlo has a field for it).

    Not tracked by the garbage collector (``gc=False``): a loaded graph's millions of
    edges and nodes are never walked by a collection, and each is 16 bytes smaller.
    Metadata is file data (JSON values), so it cannot lead back to its edge; a
    metadata value that did (an object holding the edge) would make a cycle the
    collector cannot free, a leak, not an error.
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
    node's port. ``metadata["type"]`` holds its port type, if declared."""

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

    ``type`` is Reflow's event name. ``before``/``after`` hold deep copies of the
    affected item before and after the change, ``None`` where it did not exist:

    ====================================  ==========================================
    ``AddNode`` / ``RemoveNode``          ``after`` / ``before`` = :class:`Node`
    ``RenameNode``                        ``before`` = old id, ``after`` = new id
    ``ChangeNode``                        ``before``/``after`` = :class:`Node`
    ``Add/Remove/ChangeConnection``       :class:`Edge`
    ``AddInitial`` / ``RemoveInitial``    :class:`IIP`
    ``Add/Remove/ChangeInport``           ``(public name, ExportedPort)``
    ``RenameInport``                      old / new public name (same for ``Outport``)
    ``Add/Remove/ChangeGroup``            :class:`Group`
    ``RenameGroup``                       old / new group name
    ``ChangeProperties``                  properties mapping
    ``StartTransaction``/``EndTransaction``  ``after`` = transaction name
    ====================================  ==========================================
    """

    type: str
    before: Any = None
    after: Any = None
    graph: str = ""


GraphListener = Callable[[GraphEvent], None]

# The inverse of each elementary change type (before/after are swapped too).
_INVERSE = {
    "AddNode": "RemoveNode",
    "RemoveNode": "AddNode",
    "RenameNode": "RenameNode",
    "ChangeNode": "ChangeNode",
    "AddConnection": "RemoveConnection",
    "RemoveConnection": "AddConnection",
    "ChangeConnection": "ChangeConnection",
    "AddInitial": "RemoveInitial",
    "RemoveInitial": "AddInitial",
    "AddInport": "RemoveInport",
    "RemoveInport": "AddInport",
    "RenameInport": "RenameInport",
    "ChangeInport": "ChangeInport",
    "AddOutport": "RemoveOutport",
    "RemoveOutport": "AddOutport",
    "RenameOutport": "RenameOutport",
    "ChangeOutport": "ChangeOutport",
    "AddGroup": "RemoveGroup",
    "RemoveGroup": "AddGroup",
    "RenameGroup": "RenameGroup",
    "ChangeGroup": "ChangeGroup",
    "ChangeProperties": "ChangeProperties",
}


class _Change(msgspec.Struct, frozen=True):
    """One elementary change as recorded in the history; ``pos`` is a list position."""

    type: str
    before: Any
    after: Any
    pos: int | None = None

    def inverse(self) -> _Change:
        return _Change(_INVERSE[self.type], self.after, self.before, self.pos)


class _Step:
    """One undoable step: the changes of one public operation or one transaction."""

    __slots__ = ("changes", "explicit", "name")

    def __init__(self, name: str, explicit: bool) -> None:
        self.name = name
        self.explicit = explicit
        self.changes: list[_Change] = []


EdgeKey = tuple[Endpoint, Endpoint]
_ID = operator.attrgetter("id")
_SRC = operator.attrgetter("src")
_TGT = operator.attrgetter("tgt")


class _EdgeIndex:
    """The connections by their two ends, for :meth:`Graph.add_edge`'s "already there?"
    and :meth:`Graph.find_edge`: ``src -> Edge`` while one connection leaves that port
    (most do), ``src -> {tgt: Edge}`` from the second one on. No ``(src, tgt)`` tuple
    per edge: a third less memory per connection than a dict keyed by pairs, and a
    fresh index is built in one C-level pass when no port fans out."""

    __slots__ = ("_by_src", "_len")

    def __init__(self, edges: Iterable[Edge] = ()) -> None:
        self._by_src: dict[Endpoint, Edge | dict[Endpoint, Edge]] = {}
        self._len = 0
        edges = edges if isinstance(edges, list) else list(edges)
        by_src = dict(zip(map(_SRC, edges), edges, strict=True))
        if len(by_src) == len(edges):  # no port fans out: that is the index
            self._by_src, self._len = cast("dict[Endpoint, Edge | dict[Endpoint, Edge]]",
                                           by_src), len(edges)
            return
        del by_src
        for edge in edges:
            self.setdefault(edge)

    def get(self, src: Endpoint, tgt: Endpoint) -> Edge | None:
        """The stored connection ``src -> tgt``, or ``None``."""
        hit = self._by_src.get(src)
        if hit is None:
            return None
        if type(hit) is dict:
            return hit.get(tgt)
        return hit if hit.tgt == tgt else None  # type: ignore[union-attr,return-value]

    def setdefault(self, edge: Edge) -> Edge:
        """Store ``edge`` unless a connection between its ends is stored; the stored one."""
        by_src, src = self._by_src, edge.src
        hit = by_src.get(src)
        if hit is None:
            by_src[src] = edge
        elif type(hit) is dict:
            stored = hit.setdefault(edge.tgt, edge)
            if stored is not edge:
                return stored
        elif hit.tgt == edge.tgt:  # type: ignore[union-attr]
            return hit  # type: ignore[return-value]
        else:
            by_src[src] = {hit.tgt: hit, edge.tgt: edge}  # type: ignore[union-attr,dict-item]
        self._len += 1
        return edge

    def replace(self, edge: Edge) -> Edge:
        """Store ``edge`` in place of the stored connection between its ends; the old one
        (KeyError if there is none)."""
        by_src, src = self._by_src, edge.src
        hit = by_src[src]
        if type(hit) is dict:
            old = hit[edge.tgt]
            hit[edge.tgt] = edge
            return old
        if hit.tgt != edge.tgt:  # type: ignore[union-attr]
            raise KeyError((src, edge.tgt))
        by_src[src] = edge
        return hit  # type: ignore[return-value]

    def pop(self, src: Endpoint, tgt: Endpoint) -> Edge:
        """Remove and return the connection ``src -> tgt`` (KeyError if there is none)."""
        by_src = self._by_src
        hit = by_src[src]
        if type(hit) is dict:
            edge = hit.pop(tgt)
            if len(hit) == 1:
                (by_src[src],) = hit.values()
        elif hit.tgt == tgt:  # type: ignore[union-attr]
            edge = by_src.pop(src)  # type: ignore[assignment]
        else:
            raise KeyError((src, tgt))
        self._len -= 1
        return edge

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[EdgeKey]:
        """The ``(src, tgt)`` pairs stored (for checks and tests)."""
        for src, hit in self._by_src.items():
            if type(hit) is dict:
                for tgt in hit:
                    yield src, tgt
            else:
                yield src, hit.tgt  # type: ignore[union-attr]


def _merge(current: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` updated with ``update``; a ``None`` value deletes that key."""
    merged = dict(current)
    for key, value in update.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


class Graph:
    """An in-memory FBP graph.

    >>> g = Graph("demo")
    >>> _ = g.add_node("a", "core/Repeat"); _ = g.add_node("b", "core/Output")
    >>> _ = g.add_edge("a", "out", "b", "in")
    >>> _ = g.add_iip("hello", "a", "in")
    >>> g.undo(); len(g.iips)
    True
    0
    """

    def __init__(
        self,
        name: str = "",
        *,
        case_sensitive: bool = False,
        properties: Mapping[str, Any] | None = None,
        max_history: int = 100,
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
        #: Top-level fields of the file this library does not interpret (Reflow's
        #: workspace fields ``graph_dependencies``, ``external_connections``,
        #: ``provided_interfaces``, ``required_interfaces``, or a newer tool's), kept so a
        #: round trip through reflowpy loses nothing. Part of equality.
        self.extra: dict[str, Any] = {}
        #: For a case-insensitive graph: folded port name -> the spelling its file used
        #: (``"output"`` -> ``"Output"``), so writers give the names back as read. Only
        #: presentation: lookups always use the folded name; not part of equality.
        self.port_case: dict[str, str] = {}
        # The connections by their ends; ``None`` until first needed after a reader
        # stored edges it vouched are distinct (see :meth:`_extend`): loading a graph
        # to validate or run it never builds it.
        self._index: _EdgeIndex | None = _EdgeIndex()
        self._listeners: list[GraphListener] = []
        self._validators: list[Callable[[str, Any, Any], None]] = []
        self._undo: deque[_Step] = deque(maxlen=max(0, max_history))
        self._redo: list[_Step] = []
        self._step: _Step | None = None
        self._depth = 0
        self._recording = True

    # -- subscription -------------------------------------------------------------

    def subscribe(self, listener: GraphListener) -> Callable[[], None]:
        """Call ``listener(event)`` after every change; returns a function that unsubscribes.

        A listener that raises is logged (``reflowpy.graph``) and does not stop the
        change or the delivery to other listeners: the change is already applied.
        """
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def add_validator(self, check: Callable[[str, Any, Any], None]) -> Callable[[], None]:
        """Call ``check(change_type, before, after)`` before each change is applied.

        If it raises, the change is refused: the graph is unchanged and the error
        propagates from the mutation (a running Network uses this so an edit it cannot
        apply fails before the graph changes). Returns a function that removes it.
        """
        self._validators.append(check)

        def remove() -> None:
            if check in self._validators:
                self._validators.remove(check)

        return remove

    def _emit(self, type: str, before: Any = None, after: Any = None) -> None:
        if not self._listeners:
            return
        event = GraphEvent(type, copy.deepcopy(before), copy.deepcopy(after), self.name)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                _log.exception("%s: listener %r failed on %s", self._where(), listener, type)

    # -- helpers --------------------------------------------------------------------

    @property
    def _edge_index(self) -> _EdgeIndex:
        index = self._index
        if index is None:
            index = self._index = _EdgeIndex(self.edges)
        return index

    def _where(self) -> str:
        return f"graph {self.name!r}" if self.name else "graph"

    def node(self, node_id: str) -> Node:
        """The node with ``node_id``; raises :class:`NodeNotFound`."""
        try:
            return self.nodes[node_id]
        except KeyError:
            raise NodeNotFound(f"{self._where()}: no node {node_id!r}") from None

    def port_name(self, port: str) -> str:
        """A port name as stored: lower-cased unless the graph is case sensitive; one
        string object per name (interned), so a million edges share a few of them."""
        return sys.intern(port if self.case_sensitive else port.lower())

    def spelled(self, port: str) -> str:
        """A stored port name as its file spelled it (see :attr:`port_case`)."""
        return self.port_case.get(port, port)

    def edges_of(self, node_id: str) -> Iterator[Edge]:
        """Every connection into or out of ``node_id``."""
        return (e for e in self.edges if e.src.node == node_id or e.tgt.node == node_id)

    def group(self, name: str) -> Group:
        """The group called ``name``; raises :class:`GroupNotFound`."""
        for group in self.groups:
            if group.name == name:
                return group
        raise GroupNotFound(f"{self._where()}: no group {name!r}")

    # -- the elementary changes -------------------------------------------------------
    #
    # ``_apply`` performs one already-validated change, records it in the current step
    # and emits its event. Undo, redo and rollback replay changes through it too.

    def _apply(self, change: _Change) -> _Change:
        kind, before, after = change.type, change.before, change.after
        for check in self._validators:
            check(kind, before, after)
        pos = change.pos
        if kind == "AddNode":
            self.nodes[after.id] = after
        elif kind == "RemoveNode":
            del self.nodes[before.id]
        elif kind == "ChangeNode":
            self.nodes[after.id] = after
        elif kind == "RenameNode":
            self._rename_node_refs(before, after)
        elif kind == "AddConnection":
            if self._edge_index.setdefault(after) is not after:  # pragma: no cover
                raise GraphError(f"{self._where()}: connection {after.src} -> {after.tgt}"
                                 " is stored already")  # the callers checked it
            pos = len(self.edges) if pos is None else min(pos, len(self.edges))
            self.edges.insert(pos, after)
        elif kind == "RemoveConnection":
            stored = self._edge_index.pop(before.src, before.tgt)
            pos = next(i for i, e in enumerate(self.edges) if e is stored)
            del self.edges[pos]
        elif kind == "ChangeConnection":
            stored = self._edge_index.replace(after)
            pos = next(i for i, e in enumerate(self.edges) if e is stored)
            self.edges[pos] = after
        elif kind == "AddInitial":
            pos = len(self.iips) if pos is None else min(pos, len(self.iips))
            self.iips.insert(pos, after)
        elif kind == "RemoveInitial":
            if pos is None or pos >= len(self.iips) or self.iips[pos] is not before:
                pos = next(i for i, p in enumerate(self.iips) if p is before or p == before)
            del self.iips[pos]
        elif kind in ("AddInport", "AddOutport", "ChangeInport", "ChangeOutport"):
            table = self.inports if "Inport" in kind else self.outports
            table[after[0]] = after[1]
        elif kind in ("RemoveInport", "RemoveOutport"):
            table = self.inports if "Inport" in kind else self.outports
            del table[before[0]]
        elif kind in ("RenameInport", "RenameOutport"):
            table = self.inports if "Inport" in kind else self.outports
            table[after] = table.pop(before)
        elif kind == "AddGroup":
            pos = len(self.groups) if pos is None else min(pos, len(self.groups))
            self.groups.insert(pos, after)
        elif kind == "RemoveGroup":
            pos = next(i for i, g in enumerate(self.groups) if g.name == before.name)
            del self.groups[pos]
        elif kind == "ChangeGroup":
            pos = next(i for i, g in enumerate(self.groups) if g.name == after.name)
            self.groups[pos] = after
        elif kind == "RenameGroup":
            pos = next(i for i, g in enumerate(self.groups) if g.name == before)
            old = self.groups[pos]
            self.groups[pos] = Group(after, list(old.nodes), dict(old.metadata))
        elif kind == "ChangeProperties":
            self.properties = dict(after)
        else:  # pragma: no cover - _INVERSE and the callers agree on the names
            raise GraphError(f"{self._where()}: unknown change {kind!r}")
        applied = _Change(kind, before, after, pos)
        if self._step is not None and self._recording:
            self._step.changes.append(applied)
        self._emit(kind, before, after)
        return applied

    def _building(self) -> bool:
        """Whether a reader is filling this graph (``_recording`` off, nobody subscribed,
        no open step): then the hot adders store their item directly, skipping the step
        and event machinery that would record and announce nothing anyway."""
        return not self._recording and not self._listeners and self._step is None

    def _rename_node_refs(self, old: str, new: str) -> None:
        self.nodes = {
            (new if k == old else k): (Node(new, n.component, n.metadata) if k == old else n)
            for k, n in self.nodes.items()
        }

        def ep(e: Endpoint) -> Endpoint:
            return Endpoint(new, e.port, e.index) if e.node == old else e

        index = self._index
        for i, edge in enumerate(self.edges):
            if edge.src.node == old or edge.tgt.node == old:
                renamed = Edge(ep(edge.src), ep(edge.tgt), edge.metadata, edge.capacity)
                if index is not None:  # (no other key names ``new``: no clash)
                    index.pop(edge.src, edge.tgt)
                    index.setdefault(renamed)
                self.edges[i] = renamed
        for i, iip in enumerate(self.iips):
            if iip.tgt.node == old:
                self.iips[i] = IIP(iip.data, ep(iip.tgt), iip.metadata)
        for table in (self.inports, self.outports):
            for public, exported in table.items():
                if exported.node == old:
                    table[public] = ExportedPort(
                        new, exported.port, exported.index, exported.metadata
                    )
        for i, group in enumerate(self.groups):
            if old in group.nodes:
                nodes = [new if n == old else n for n in group.nodes]
                self.groups[i] = Group(group.name, nodes, group.metadata)

    @contextlib.contextmanager
    def _operation(self, name: str) -> Iterator[None]:
        """Make the changes inside one undoable step (joining an open transaction)."""
        if self._step is not None:
            yield
            return
        step = _Step(name, explicit=False)
        self._step = step
        try:
            yield
        finally:
            self._step = None
            if step.changes and self._recording:
                self._push(step)

    def _push(self, step: _Step) -> None:
        if self._undo.maxlen:
            self._undo.append(step)
        self._redo.clear()

    # -- transactions and history ---------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, name: str = "") -> Iterator[Graph]:
        """Group the mutations in the block into one undoable step.

        Emits ``StartTransaction`` and ``EndTransaction`` (``after`` = ``name``).
        If the block raises, every change made in it is undone (with events) before
        the exception propagates. A nested transaction joins the outer one.
        """
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        if self._step is not None:  # pragma: no cover - only reachable from internals
            raise GraphError(f"{self._where()}: transaction started inside an operation")
        step = _Step(name, explicit=True)
        self._step = step
        self._depth = 1
        self._emit("StartTransaction", None, name)
        try:
            yield self
        except BaseException:
            self._step = None
            for change in reversed(step.changes):
                self._apply(change.inverse())
            raise
        finally:
            self._depth = 0
            self._step = None
            self._emit("EndTransaction", None, name)
        if step.changes and self._recording:
            self._push(step)

    @property
    def can_undo(self) -> bool:
        """Whether :meth:`undo` has a step to undo."""
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        """Whether :meth:`redo` has a step to redo."""
        return bool(self._redo)

    def history(self) -> list[str]:
        """Names of the undoable steps, oldest first (implicit steps are named after
        their method, e.g. ``add_node``)."""
        return [step.name for step in self._undo]

    def _replay(self, step: _Step, changes: Iterable[_Change]) -> None:
        if step.explicit:
            self._emit("StartTransaction", None, step.name)
        recording, self._recording = self._recording, False
        try:
            for change in changes:
                self._apply(change)
        finally:
            self._recording = recording
            if step.explicit:
                self._emit("EndTransaction", None, step.name)

    def undo(self) -> bool:
        """Undo the last step (emitting the inverse events); False if there is none."""
        if self._step is not None:
            raise GraphError(f"{self._where()}: cannot undo inside a transaction")
        if not self._undo:
            return False
        step = self._undo.pop()
        self._replay(step, [c.inverse() for c in reversed(step.changes)])
        self._redo.append(step)
        return True

    def redo(self) -> bool:
        """Redo the last undone step; False if there is none."""
        if self._step is not None:
            raise GraphError(f"{self._where()}: cannot redo inside a transaction")
        if not self._redo:
            return False
        step = self._redo.pop()
        self._replay(step, step.changes)
        if self._undo.maxlen:
            self._undo.append(step)
        return True

    def clear_history(self) -> None:
        """Forget every undo and redo step."""
        self._undo.clear()
        self._redo.clear()

    # -- nodes --------------------------------------------------------------------------

    def add_node(
        self, node_id: str, component: str, metadata: Mapping[str, Any] | None = None
    ) -> Node:
        """Add a process; raises :class:`DuplicateNode` if the id is taken."""
        if not node_id or not isinstance(node_id, str):
            raise NodeNotFound(f"{self._where()}: a node id must be a non-empty string")
        if node_id in self.nodes:
            raise DuplicateNode(
                f"{self._where()}: node {node_id!r} already exists"
                f" (component {self.nodes[node_id].component!r}); pick another id"
            )
        node = Node(node_id, component, dict(metadata or {}))
        if self._building():
            self.nodes[node_id] = node
            return node
        with self._operation("add_node"):
            self._apply(_Change("AddNode", None, node))
        return node

    def remove_node(self, node_id: str) -> None:
        """Remove a node with its connections, IIPs, exported ports and group membership."""
        node = self.node(node_id)
        with self._operation("remove_node"):
            for edge in [e for e in self.edges if node_id in (e.src.node, e.tgt.node)]:
                self._apply(_Change("RemoveConnection", edge, None))
            for iip in [i for i in self.iips if i.tgt.node == node_id]:
                self._apply(_Change("RemoveInitial", iip, None))
            for kind in ("Inport", "Outport"):
                table = self._table(kind)
                for public, exp in [(n, p) for n, p in table.items() if p.node == node_id]:
                    self._apply(_Change(f"Remove{kind}", (public, exp), None))
            for group in list(self.groups):
                if node_id in group.nodes:
                    nodes = [n for n in group.nodes if n != node_id]
                    self._apply(
                        _Change("ChangeGroup", group, Group(group.name, nodes, group.metadata))
                    )
            self._apply(_Change("RemoveNode", node, None))

    def rename_node(self, old_id: str, new_id: str) -> None:
        """Give a node a new id; its connections, IIPs, exported ports and groups follow."""
        self.node(old_id)
        if not new_id or not isinstance(new_id, str):
            raise NodeNotFound(f"{self._where()}: a node id must be a non-empty string")
        if new_id == old_id:
            return
        if new_id in self.nodes:
            raise DuplicateNode(
                f"{self._where()}: cannot rename node {old_id!r} to {new_id!r}: that id exists"
            )
        with self._operation("rename_node"):
            self._apply(_Change("RenameNode", old_id, new_id))

    def set_node_metadata(self, node_id: str, metadata: Mapping[str, Any]) -> Node:
        """Merge ``metadata`` into the node's metadata; a ``None`` value deletes the key."""
        node = self.node(node_id)
        changed = Node(node.id, node.component, _merge(node.metadata, metadata))
        if changed != node:
            with self._operation("set_node_metadata"):
                self._apply(_Change("ChangeNode", node, changed))
        return changed

    def set_node_component(self, node_id: str, component: str) -> Node:
        """Make the node an instance of another component (a ``ChangeNode`` event)."""
        node = self.node(node_id)
        changed = Node(node.id, component, dict(node.metadata))
        if changed != node:
            with self._operation("set_node_component"):
                self._apply(_Change("ChangeNode", node, changed))
        return changed

    # -- edges ----------------------------------------------------------------------------

    def _check_index(self, index: int | None, what: str) -> None:
        if index is not None and (not isinstance(index, int) or index < 0):
            raise PortNotFound(
                f"{self._where()}: {what}: a port index must be an integer >= 0, got {index!r}"
            )

    def _check_capacity(self, capacity: Any, src: Endpoint, tgt: Endpoint) -> None:
        """Refuse an edge capacity that is not ``None`` or an integer >= 1 (bools too)."""
        if capacity is not None and (
            not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1
        ):
            raise ValueError(
                f"{self._where()}: capacity of {src} -> {tgt} must be an integer >= 1,"
                f" got {capacity!r}"
            )

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
        # The endpoints hold the stored nodes' own id strings, not the caller's copies.
        src_node = self.node(src_node).id
        tgt_node = self.node(tgt_node).id
        src = Endpoint(src_node, self.port_name(src_port), src_index)
        tgt = Endpoint(tgt_node, self.port_name(tgt_port), tgt_index)
        if src_index is not None or tgt_index is not None:  # the text only when needed
            self._check_index(src_index, f"connection {src} -> {tgt}")
            self._check_index(tgt_index, f"connection {src} -> {tgt}")
        if not src.port or not tgt.port:
            raise PortNotFound(
                f"{self._where()}: connection {src} -> {tgt}: port names must be non-empty"
            )
        meta = dict(metadata or {})
        if capacity is None and "capacity" in meta:  # files keep capacity in metadata
            capacity = meta.pop("capacity")
        self._check_capacity(capacity, src, tgt)
        existing = self._edge_index.get(src, tgt)
        if existing is not None:
            return existing
        edge = Edge(src, tgt, meta, capacity)
        if self._building():
            self._edge_index.setdefault(edge)
            self.edges.append(edge)
            return edge
        with self._operation("add_edge"):
            self._apply(_Change("AddConnection", None, edge))
        return edge

    def _extend(self, nodes: Iterable[Node] = (), edges: Iterable[Edge] = (), *,
                checked: bool = False, distinct: bool = False) -> None:
        """The readers' bulk path: store nodes, then edges, built by the reader, with
        :meth:`add_node`'s and :meth:`add_edge`'s checks (non-empty unique ids, both
        ends existing, non-empty ports; a repeated edge is kept once) but none of their
        per-call work. Only while building (see :meth:`_building`); the caller has
        folded port names, checked indices and capacities, and gives each item its own
        metadata dict. A million edges cost about a second instead of several.

        ``checked``: the caller vouches that the nodes' ids are non-empty strings, new
        and distinct, and that every edge's ends name stored nodes and non-empty ports;
        only repeated edges are dropped then, and a fresh graph is filled by C-level
        passes (no Python per item). ``distinct`` (with ``checked``, into a graph with no
        edges yet): the caller vouches that no two of the edges have the same ends, so
        none is looked at; the edge index is then built only when first needed."""
        if not self._building():
            raise GraphError(f"{self._where()}: _extend is only for readers building a graph")
        table, out = self.nodes, self.edges
        if checked:
            nodes = nodes if isinstance(nodes, list) else list(nodes)
            table.update(zip(map(_ID, nodes), nodes, strict=True))
            edges = edges if isinstance(edges, list) else list(edges)
            if not out:
                if not distinct:  # one C-level pass finds out (the usual answer: none)
                    distinct = len(set(zip(map(_SRC, edges), map(_TGT, edges),
                                           strict=True))) == len(edges)
                if distinct:
                    out.extend(edges)
                    self._index = None  # built from ``edges`` when first needed
                    return
            keep, add = self._edge_index.setdefault, out.append
            for edge in edges:
                if keep(edge) is edge:
                    add(edge)
            return
        for node in nodes:
            node_id = node.id
            if not node_id or type(node_id) is not str:
                raise NodeNotFound(f"{self._where()}: a node id must be a non-empty string")
            if node_id in table:
                self.add_node(node_id, node.component)  # raises DuplicateNode
            table[node_id] = node
        index = None  # not built for no edges
        for edge in edges:
            if index is None:
                index = self._edge_index
            src, tgt = edge.src, edge.tgt
            if src.node not in table or tgt.node not in table:
                self.node(src.node)
                self.node(tgt.node)  # one of them raises NodeNotFound
            if not src.port or not tgt.port:
                raise PortNotFound(f"{self._where()}: connection {src} -> {tgt}: port names"
                                   " must be non-empty")
            if index.setdefault(edge) is edge:
                out.append(edge)

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
        edge = self._edge_index.get(src, tgt)
        if edge is None:
            missing = [n for n in (src_node, tgt_node) if n not in self.nodes]
            hint = f" (no node {missing[0]!r})" if missing else ""
            raise EdgeNotFound(f"{self._where()}: no connection {src} -> {tgt}{hint}")
        return edge

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
        with self._operation("remove_edge"):
            self._apply(_Change("RemoveConnection", edge, None))

    def set_edge_metadata(
        self,
        src_node: str,
        src_port: str,
        tgt_node: str,
        tgt_port: str,
        metadata: Mapping[str, Any],
        *,
        src_index: int | None = None,
        tgt_index: int | None = None,
    ) -> Edge:
        """Merge ``metadata`` into a connection's metadata; ``None`` deletes a key.

        The key ``capacity`` sets (or, with ``None``, clears) the edge's queue capacity.
        """
        edge = self.find_edge(src_node, src_port, tgt_node, tgt_port,
                              src_index=src_index, tgt_index=tgt_index)
        update = dict(metadata)
        capacity = update.pop("capacity", edge.capacity)
        self._check_capacity(capacity, edge.src, edge.tgt)
        changed = Edge(edge.src, edge.tgt, _merge(edge.metadata, update), capacity)
        if changed != edge:
            with self._operation("set_edge_metadata"):
                self._apply(_Change("ChangeConnection", edge, changed))
        return changed

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
        tgt = Endpoint(node_id, self.port_name(port), index)
        if index is not None:
            self._check_index(index, f"initial packet for {tgt}")
        if not tgt.port:
            raise PortNotFound(f"{self._where()}: initial packet for node {node_id!r}:"
                               " the port name must be non-empty")
        iip = IIP(data, tgt, dict(metadata or {}))
        if self._building():
            self.iips.append(iip)
            return iip
        with self._operation("add_iip"):
            self._apply(_Change("AddInitial", None, iip))
        return iip

    def remove_iip(self, node_id: str, port: str, *, index: int | None = None) -> None:
        """Remove every IIP addressed to ``node_id.port[index]``; raises :class:`IIPNotFound`."""
        tgt = Endpoint(node_id, self.port_name(port), index)
        found = [i for i in self.iips if i.tgt == tgt]
        if not found:
            raise IIPNotFound(f"{self._where()}: no initial packet for {tgt}")
        with self._operation("remove_iip"):
            for iip in found:
                self._apply(_Change("RemoveInitial", iip, None))

    # -- exported ports ------------------------------------------------------------------------

    def _table(self, kind: str) -> dict[str, ExportedPort]:
        return self.inports if kind == "Inport" else self.outports

    def _exported(self, kind: str, public: str) -> tuple[str, ExportedPort]:
        public = self.port_name(public)
        table = self._table(kind)
        if public not in table:
            known = ", ".join(sorted(table)) or "none"
            raise PortNotFound(
                f"{self._where()}: no exported {kind.lower()} {public!r} (known: {known})"
            )
        return public, table[public]

    def _add_exported(
        self,
        kind: str,
        public: str,
        node_id: str,
        port: str,
        index: int | None,
        metadata: Mapping[str, Any] | None,
    ) -> ExportedPort:
        self.node(node_id)
        public = self.port_name(public)
        if not public:
            raise PortNotFound(f"{self._where()}: an exported port name must be non-empty")
        table = self._table(kind)
        if public in table:
            raise DuplicatePort(
                f"{self._where()}: exported {kind.lower()} {public!r} already exists"
                f" (-> {table[public].node}.{table[public].port}); remove or rename it first"
            )
        self._check_index(index, f"exported {kind.lower()} {public!r}")
        exported = ExportedPort(node_id, self.port_name(port), index, dict(metadata or {}))
        with self._operation(f"add_{kind.lower()}"):
            self._apply(_Change(f"Add{kind}", None, (public, exported)))
        return exported

    def _remove_exported(self, kind: str, public: str) -> None:
        public, exported = self._exported(kind, public)
        with self._operation(f"remove_{kind.lower()}"):
            self._apply(_Change(f"Remove{kind}", (public, exported), None))

    def _rename_exported(self, kind: str, old: str, new: str) -> None:
        old, _ = self._exported(kind, old)
        new = self.port_name(new)
        if not new:
            raise PortNotFound(f"{self._where()}: an exported port name must be non-empty")
        if new == old:
            return
        if new in self._table(kind):
            raise DuplicatePort(
                f"{self._where()}: cannot rename exported {kind.lower()} {old!r} to {new!r}:"
                " that name exists"
            )
        with self._operation(f"rename_{kind.lower()}"):
            self._apply(_Change(f"Rename{kind}", old, new))

    def _set_exported_metadata(
        self, kind: str, public: str, metadata: Mapping[str, Any]
    ) -> ExportedPort:
        public, exported = self._exported(kind, public)
        changed = ExportedPort(exported.node, exported.port, exported.index,
                               _merge(exported.metadata, metadata))
        if changed != exported:
            with self._operation(f"set_{kind.lower()}_metadata"):
                self._apply(_Change(f"Change{kind}", (public, exported), (public, changed)))
        return changed

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
        return self._add_exported("Inport", public, node_id, port, index, metadata)

    def remove_inport(self, public: str) -> None:
        """Remove the exported in-port ``public``; raises :class:`PortNotFound`."""
        self._remove_exported("Inport", public)

    def rename_inport(self, old: str, new: str) -> None:
        """Rename the exported in-port ``old`` to ``new``."""
        self._rename_exported("Inport", old, new)

    def set_inport_metadata(self, public: str, metadata: Mapping[str, Any]) -> ExportedPort:
        """Merge ``metadata`` into an exported in-port's metadata; ``None`` deletes a key."""
        return self._set_exported_metadata("Inport", public, metadata)

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
        return self._add_exported("Outport", public, node_id, port, index, metadata)

    def remove_outport(self, public: str) -> None:
        """Remove the exported out-port ``public``; raises :class:`PortNotFound`."""
        self._remove_exported("Outport", public)

    def rename_outport(self, old: str, new: str) -> None:
        """Rename the exported out-port ``old`` to ``new``."""
        self._rename_exported("Outport", old, new)

    def set_outport_metadata(self, public: str, metadata: Mapping[str, Any]) -> ExportedPort:
        """Merge ``metadata`` into an exported out-port's metadata; ``None`` deletes a key."""
        return self._set_exported_metadata("Outport", public, metadata)

    # -- groups ---------------------------------------------------------------------------

    def add_group(
        self,
        name: str,
        nodes: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> Group:
        """Add a group of existing nodes; raises :class:`DuplicateGroup`/:class:`NodeNotFound`."""
        if not name or not isinstance(name, str):
            raise GroupNotFound(f"{self._where()}: a group name must be a non-empty string")
        if any(g.name == name for g in self.groups):
            raise DuplicateGroup(f"{self._where()}: group {name!r} already exists")
        members = list(dict.fromkeys(nodes))
        for node_id in members:
            if node_id not in self.nodes:
                raise NodeNotFound(
                    f"{self._where()}: group {name!r}: no node {node_id!r} to add to it"
                )
        group = Group(name, members, dict(metadata or {}))
        with self._operation("add_group"):
            self._apply(_Change("AddGroup", None, group))
        return group

    def remove_group(self, name: str) -> None:
        """Remove a group (its nodes stay); raises :class:`GroupNotFound`."""
        group = self.group(name)
        with self._operation("remove_group"):
            self._apply(_Change("RemoveGroup", group, None))

    def rename_group(self, old: str, new: str) -> None:
        """Rename a group."""
        self.group(old)
        if not new or not isinstance(new, str):
            raise GroupNotFound(f"{self._where()}: a group name must be a non-empty string")
        if new == old:
            return
        if any(g.name == new for g in self.groups):
            raise DuplicateGroup(
                f"{self._where()}: cannot rename group {old!r} to {new!r}: that name exists"
            )
        with self._operation("rename_group"):
            self._apply(_Change("RenameGroup", old, new))

    def set_group_metadata(self, name: str, metadata: Mapping[str, Any]) -> Group:
        """Merge ``metadata`` into a group's metadata; ``None`` deletes a key."""
        group = self.group(name)
        changed = Group(group.name, list(group.nodes), _merge(group.metadata, metadata))
        if changed != group:
            with self._operation("set_group_metadata"):
                self._apply(_Change("ChangeGroup", group, changed))
        return changed

    def add_to_group(self, name: str, node_id: str) -> Group:
        """Add an existing node to a group (no change if it is a member already)."""
        group = self.group(name)
        self.node(node_id)
        if node_id in group.nodes:
            return group
        changed = Group(group.name, [*group.nodes, node_id], dict(group.metadata))
        with self._operation("add_to_group"):
            self._apply(_Change("ChangeGroup", group, changed))
        return changed

    def remove_from_group(self, name: str, node_id: str) -> Group:
        """Take a node out of a group; raises :class:`NodeNotFound` if it is no member."""
        group = self.group(name)
        if node_id not in group.nodes:
            raise NodeNotFound(f"{self._where()}: group {name!r} has no node {node_id!r}")
        changed = Group(group.name, [n for n in group.nodes if n != node_id],
                        dict(group.metadata))
        with self._operation("remove_from_group"):
            self._apply(_Change("ChangeGroup", group, changed))
        return changed

    # -- properties -------------------------------------------------------------------------

    def set_properties(self, properties: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``properties`` into the graph's properties; a ``None`` value deletes a key."""
        changed = _merge(self.properties, properties)
        if changed != self.properties:
            with self._operation("set_properties"):
                self._apply(_Change("ChangeProperties", dict(self.properties), changed))
        return dict(self.properties)

    # -- copies, equality, files ---------------------------------------------------------

    def copy(self, name: str | None = None) -> Graph:
        """A deep copy without subscribers or history."""
        other = Graph(
            self.name if name is None else name,
            case_sensitive=self.case_sensitive,
            properties=copy.deepcopy(self.properties),
            max_history=self._undo.maxlen or 0,
        )
        other.nodes = copy.deepcopy(self.nodes)
        other.edges = copy.deepcopy(self.edges)
        other._index = None  # built when first needed
        other.iips = copy.deepcopy(self.iips)
        other.inports = copy.deepcopy(self.inports)
        other.outports = copy.deepcopy(self.outports)
        other.groups = copy.deepcopy(self.groups)
        other.extra = copy.deepcopy(self.extra)
        other.port_case = dict(self.port_case)
        return other

    def __eq__(self, other: object) -> bool:
        """Structural equality: same name, flags, properties, nodes, connections (in any
        order), IIPs (in order), exported ports and groups."""
        if not isinstance(other, Graph):
            return NotImplemented
        return (
            self.name == other.name
            and self.case_sensitive == other.case_sensitive
            and self.properties == other.properties
            and self.nodes == other.nodes
            and {(e.src, e.tgt): e for e in self.edges}
            == {(e.src, e.tgt): e for e in other.edges}
            and self.iips == other.iips
            and self.inports == other.inports
            and self.outports == other.outports
            and {g.name: g for g in self.groups} == {g.name: g for g in other.groups}
            and self.extra == other.extra
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def diff(self, other: Graph) -> list[str]:
        """Human-readable differences to ``other`` (empty when equal); for tests and tools."""
        out: list[str] = []
        for attr in ("name", "case_sensitive", "properties", "nodes", "iips", "inports",
                     "outports", "extra"):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            if mine != theirs:
                out.append(f"{attr}: {mine!r} != {theirs!r}")
        mine_e = {(e.src, e.tgt): e for e in self.edges}
        theirs_e = {(e.src, e.tgt): e for e in other.edges}
        for key in mine_e.keys() | theirs_e.keys():
            if mine_e.get(key) != theirs_e.get(key):
                out.append(f"edge {key[0]} -> {key[1]}: {mine_e.get(key)!r} != "
                           f"{theirs_e.get(key)!r}")
        if {g.name: g for g in self.groups} != {g.name: g for g in other.groups}:
            out.append(f"groups: {self.groups!r} != {other.groups!r}")
        return out

    @classmethod
    def loads(cls, text: str | bytes, format: str | None = None) -> Graph:
        """Read a graph from text in ``format`` ("reflow", "noflo", "fbp", "yaml"), or
        detect the format. Raises :class:`~reflowpy.GraphFormatError`."""
        from reflowpy.network import formats

        return formats.loads(text, format)

    @classmethod
    def load(cls, path: str | Path, format: str | None = None) -> Graph:
        """Read a graph file; the format is detected from the content unless given."""
        from reflowpy.network import formats

        return formats.load(path, format)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], format: str | None = None) -> Graph:
        """Build a graph from a parsed Reflow or NoFlo JSON document (detected if not given)."""
        from reflowpy.network import formats

        return formats.from_dict(data, format)

    def to_dict(self, format: str = "reflow") -> dict[str, Any]:
        """The graph as a Reflow (default) or NoFlo JSON document."""
        from reflowpy.network import formats

        return formats.to_dict(self, format)

    def dumps(self, format: str = "reflow") -> str:
        """The graph as text: "reflow" or "noflo" JSON, "fbp" DSL, or "yaml"."""
        from reflowpy.network import formats

        return formats.dumps(self, format)

    def save(self, path: str | Path, format: str | None = None) -> None:
        """Write the graph to ``path``; the format follows the extension (.json -> reflow,
        .fbp, .yaml/.yml) unless given."""
        from reflowpy.network import formats

        formats.save(self, path, format)

    def __repr__(self) -> str:
        return (
            f"<Graph {self.name!r} nodes={len(self.nodes)} edges={len(self.edges)}"
            f" iips={len(self.iips)}>"
        )
