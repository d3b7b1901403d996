"""``analysis.validate`` looks only at what can make a problem (nodes whose metadata has
a key it checks, nodes no connection or export names, found by set passes); its report
must be the one the node-by-node check gives. The old checks are kept here as the
oracle and compared on generated graphs (metadata good, bad and irrelevant, orphans,
exports on placed nodes, dangling references)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.errors import ConfigError, GraphError, MissingEnvironment
from reflowpy.network import analysis
from reflowpy.network.analysis import Problem, exported_elsewhere, location_of
from reflowpy.network.graph import Edge, Endpoint
from reflowpy.network.runner import resolve_config
from reflowpy.network.supervision import Policy
from tests.scale import long_scale

_META = st.sampled_from([
    {}, {"label": "x"}, {"partition": "p1"}, {"partition": ""}, {"partition": "local"},
    {"remote": "ws://h:1"}, {"remote": 5}, {"partition": "p", "remote": "r"},
    {"policy": {"restart": "always"}}, {"policy": "nonsense"}, {"policy": None},
    {"env_vars": {"REFLOWPY_SURELY_UNSET_VAR": "required"}}, {"env_vars": "x"},
    {"env_vars": {"HOME": "optional"}}, {"env_vars": {"V": "bogus"}}, {"env_vars": {}},
    {"env_vars": None}, {"label": "y", "remote": ""}, {"x": 1, "partition": None},
])


def _old_metadata(graph: rf.Graph, add: Any) -> None:
    """The node-by-node check as it was (every node resolved and placed)."""
    located: dict[str, str] = {}
    for node in graph.nodes.values():
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
            where = located.get(exp.node, analysis.LOCAL)
            if where != analysis.LOCAL:
                add(Problem("bad_placement", exported_elsewhere(graph, public, exp.node, where),
                            exp.node, exp.port))


def _old_orphans(graph: rf.Graph) -> list[Problem]:
    connected = {e.src.node for e in graph.edges} | {e.tgt.node for e in graph.edges}
    exported = {p.node for p in graph.inports.values()} | {
        p.node for p in graph.outports.values()}
    return [Problem("orphan", f"node {n!r} has no connection and no exported port", n,
                    severity="warning")
            for n in graph.nodes if n not in connected and n not in exported]


@st.composite
def _graphs(draw: st.DrawFn) -> rf.Graph:
    g = rf.Graph(draw(st.sampled_from(["", "G"])))
    n = draw(st.integers(0, 12))
    for i in range(n):
        g.add_node(f"n{i}", "c", draw(_META))
    ids = list(g.nodes)
    if ids:
        for _ in range(draw(st.integers(0, 10))):
            g.add_edge(draw(st.sampled_from(ids)), "out", draw(st.sampled_from(ids)), "in")
        for i in range(draw(st.integers(0, 3))):
            g.add_inport(f"i{i}", draw(st.sampled_from(ids)), "in")
            g.add_outport(f"o{i}", draw(st.sampled_from(ids)), "out")
    if draw(st.integers(0, 4)) == 0:  # a dangling edge, as a bad file can leave
        ghost = draw(st.sampled_from([(0, 1), (1, 0), (0, 0)]))
        ends = [Endpoint("ghost" if ghost[0] or not ids else ids[0], "out"),
                Endpoint("ghost2" if ghost[1] or not ids else ids[-1], "in")]
        g.edges.insert(draw(st.integers(0, len(g.edges))), Edge(*ends))
        g._index = None
    return g


@settings(max_examples=long_scale(400), deadline=None)
@given(_graphs())
def test_validate_reports_what_the_node_by_node_checks_report(graph: rf.Graph) -> None:
    report = analysis.validate(graph)
    old_meta: list[Problem] = []
    _old_metadata(graph, old_meta.append)
    new_meta = [p for p in report.problems
                if p.kind in ("missing_env", "bad_config", "bad_policy", "bad_placement")]
    assert new_meta == old_meta
    assert [p for p in report.problems if p.kind == "orphan"] == _old_orphans(graph)
    dangling = [p for p in report.problems if p.kind == "dangling_edge"]
    assert [(p.node, p.port) for p in dangling] == [
        (end.node, end.port) for e in graph.edges for end in (e.src, e.tgt)
        if end.node not in graph.nodes]
