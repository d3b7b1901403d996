"""Map files: run a foreign graph (NoFlo, Reflow) on reflowpy's components without Python.

A map renames components and their ports, and can turn the IIPs a NoFlo graph sends
to a configuration port into node config. It is YAML (or JSON)::

    components:
      Output: core/Output                  # a plain rename; ports keep their names
      strings/SplitStr:
        component: transform/FlatMap
        metadata: {expression: "split(x, '\\n')"}  # node config defaults (node wins)
        override: {interval: 0.5}          # node config the map sets (map wins)
        inports:
          IN: in                           # rename a port
          DELIMITER: {config: delimiter}   # IIPs on DELIMITER become config 'delimiter'
        outports: {OUT: out}

:func:`apply` returns a new graph and checks the result against a registry: a
component or port that does not exist is refused with the closest names ("did you
mean ...?"), so a typo in the map is found before anything runs.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import msgspec

from reflowpy.errors import ComponentNotFound, GraphFormatError, PortNotFound, ReflowError
from reflowpy.network.graph import Graph

__all__ = ["ComponentMap", "Map", "apply", "load", "suggest"]


class _ConfigPort(msgspec.Struct, forbid_unknown_fields=True):
    config: str


class ComponentMap(msgspec.Struct, forbid_unknown_fields=True):
    """How one foreign component becomes a reflowpy one."""

    component: str
    metadata: dict[str, Any] = {}
    override: dict[str, Any] = {}
    inports: dict[str, str | _ConfigPort] = {}
    outports: dict[str, str] = {}


class Map(msgspec.Struct, forbid_unknown_fields=True):
    """A whole map file: foreign component name -> :class:`ComponentMap` (or a name)."""

    components: dict[str, str | ComponentMap] = {}

    def rule(self, component: str) -> ComponentMap | None:
        """The rule for ``component`` (an exact name, else the same name ignoring case)."""
        found = self.components.get(component)
        if found is None:
            folded = component.lower()
            found = next((v for k, v in self.components.items() if k.lower() == folded),
                         None)
        if isinstance(found, str):
            return ComponentMap(found)
        return found


def load(path: str | Path) -> Map:
    """Read a map file (YAML or JSON); a bad one raises GraphFormatError naming the field."""
    from reflowpy.network.formats import yaml as yamlfmt
    from reflowpy.network.formats._limits import read_limited
    from reflowpy.network.formats._util import convert

    try:
        with open(path, "rb") as file:
            text = read_limited(file, "map")
    except OSError as exc:
        raise GraphFormatError(f"cannot read map {str(path)!r}: {exc.strerror}",
                               format="map") from None
    except GraphFormatError as exc:
        raise GraphFormatError(exc.detail, format="map", where=str(path)) from None
    try:
        data = yamlfmt.load_data(text)
    except GraphFormatError as exc:
        raise GraphFormatError(exc.detail, format="map",
                               where=f"{path}, {exc.where}" if exc.where else str(path)
                               ) from None
    if data is None:
        return Map()
    try:
        return convert(data, Map, "map")
    except GraphFormatError as exc:
        raise GraphFormatError(exc.detail, format="map", where=f"{path}, {exc.where}"
                               ) from None


def suggest(name: str, known: list[str], n: int = 3) -> str:
    """``"; did you mean 'a', 'b'?"`` for the names of ``known`` closest to ``name``."""
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.5)
    tail = name.rsplit("/", 1)[-1].lower()
    for k in known:  # same last part under another package: strings/SplitStr ~ text/Split
        if len(close) < n and k.rsplit("/", 1)[-1].lower() == tail and k.lower() not in close:
            close.append(k.lower())
    if not close:
        return ""
    return "; did you mean " + ", ".join(repr(by_lower[c]) for c in close) + "?"


def _port_map(graph: Graph, table: dict[str, Any]) -> dict[str, Any]:
    return {graph.port_name(k): v for k, v in table.items()}


def apply(graph: Graph, mapping: Map, registry: Any = None) -> Graph:
    """A copy of ``graph`` with components and ports renamed by ``mapping``; with a
    ``registry``, every component and port of the result is checked to exist."""
    rules = {n.id: mapping.rule(n.component) for n in graph.nodes.values()}
    out = Graph(graph.name, case_sensitive=graph.case_sensitive,
                properties=dict(graph.properties))
    out.extra = dict(graph.extra)
    out.port_case = dict(graph.port_case)
    config: dict[str, dict[str, Any]] = {}

    def inport(node: str, port: str) -> str | _ConfigPort:
        rule = rules.get(node)
        if rule is None:
            return port
        target = _port_map(graph, rule.inports).get(port, port)
        return target if isinstance(target, _ConfigPort) else graph.port_name(target)

    def outport(node: str, port: str) -> str:
        rule = rules.get(node)
        if rule is None:
            return port
        return graph.port_name(_port_map(graph, rule.outports).get(port, port))

    for iip in graph.iips:
        target = inport(iip.tgt.node, iip.tgt.port)
        if isinstance(target, _ConfigPort):
            config.setdefault(iip.tgt.node, {})[target.config] = iip.data
    for node in graph.nodes.values():
        rule = rules[node.id]
        meta = {**(rule.metadata if rule else {}), **node.metadata,
                **config.get(node.id, {}), **(rule.override if rule else {})}
        out.add_node(node.id, rule.component if rule else node.component, meta)
    for edge in graph.edges:
        tgt = inport(edge.tgt.node, edge.tgt.port)
        if isinstance(tgt, _ConfigPort):
            raise GraphFormatError(
                f"connection {edge.src} -> {edge.tgt}: port {edge.tgt.port!r} is mapped to"
                f" config {tgt.config!r}, which only IIPs can set", format="map")
        out.add_edge(edge.src.node, outport(edge.src.node, edge.src.port), edge.tgt.node,
                     tgt, src_index=edge.src.index, tgt_index=edge.tgt.index,
                     metadata=edge.metadata, capacity=edge.capacity)
    for iip in graph.iips:
        tgt = inport(iip.tgt.node, iip.tgt.port)
        if not isinstance(tgt, _ConfigPort):
            out.add_iip(iip.data, iip.tgt.node, tgt, index=iip.tgt.index,
                        metadata=iip.metadata)
    for public, exp in graph.inports.items():
        tgt = inport(exp.node, exp.port)
        if isinstance(tgt, _ConfigPort):
            raise GraphFormatError(f"exported in-port {public!r} is mapped to config"
                                   f" {tgt.config!r}", format="map")
        out.add_inport(public, exp.node, tgt, index=exp.index, metadata=exp.metadata)
    for public, exp in graph.outports.items():
        out.add_outport(public, exp.node, outport(exp.node, exp.port), index=exp.index,
                        metadata=exp.metadata)
    for group in graph.groups:
        out.add_group(group.name, group.nodes, group.metadata)
    out.clear_history()
    if registry is not None:
        check(out, registry)
    return out


def check(graph: Graph, registry: Any) -> None:
    """Refuse the first node whose component, or connection whose port, the registry
    does not know, with the closest names it does know."""
    known = registry.names(aliases=True)
    for node in graph.nodes.values():
        if node.component not in registry:
            raise ComponentNotFound(
                f"node {node.id!r}: no component {node.component!r}"
                f"{suggest(node.component, known)} (map it with --map: components:"
                f" {{{node.component}: NAME}})")
    infos: dict[str, Any] = {}

    def ports(node_id: str, kind: str) -> list[str]:
        component = graph.nodes[node_id].component
        if component not in infos:
            try:
                infos[component] = registry.describe(component)
            except ReflowError:
                infos[component] = None
        info = infos[component]
        if info is None:
            return []
        return [graph.port_name(p.name) for p in getattr(info, kind)]

    def need(node_id: str, port: str, kind: str) -> None:
        names = ports(node_id, kind)
        if names and port not in names:
            side = "in-port" if kind == "inports" else "out-port"
            raise PortNotFound(
                f"node {node_id!r} ({graph.nodes[node_id].component}) has no {side}"
                f" {port!r}{suggest(port, names)}; it has {', '.join(names)}")

    for edge in graph.edges:
        need(edge.src.node, edge.src.port, "outports")
        need(edge.tgt.node, edge.tgt.port, "inports")
    for iip in graph.iips:
        need(iip.tgt.node, iip.tgt.port, "inports")
    for exp in graph.inports.values():
        need(exp.node, exp.port, "inports")
    for exp in graph.outports.values():
        need(exp.node, exp.port, "outports")
