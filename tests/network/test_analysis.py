"""Analysis: validation against a registry, port types, cycles, stages, reachability,
components and layout — on small graphs with known answers and on a 10k-node graph."""

from __future__ import annotations

import pytest

import reflowpy as rf
from reflowpy.network import analysis, porttypes
from reflowpy.network.porttypes import PortType, compatible


class Source(rf.Actor):
    inports = [rf.Port("stop", required=False)]
    outports = [rf.Port("out", type="integer"), rf.Port("names", type="array<string>")]


class Scale(rf.Actor):
    inports = [rf.Port("in", type="float"), rf.Port("factor", type="float")]
    outports = [rf.Port("out", type="optional<float>")]


class Join(rf.Actor):
    inports = [rf.Port("in", type="string"), rf.Port("items", type="array<integer>")]
    outports = [rf.Port("out", type="string"), rf.Port("bad", type="quaternion")]


def registry() -> rf.Registry:
    reg = rf.Registry()
    reg.register("t/Source", Source)
    reg.register("t/Scale", Scale)
    reg.register("t/Join", Join)
    return reg


def typed_graph() -> rf.Graph:
    g = rf.Graph("typed")
    g.add_node("src", "t/Source")
    g.add_node("scale", "t/Scale")
    g.add_node("join", "t/Join")
    g.add_edge("src", "out", "scale", "in")  # integer -> float: fine
    g.add_iip(2.0, "scale", "factor")
    g.add_edge("scale", "out", "join", "in")  # optional<float> -> string: mismatch
    g.add_edge("src", "names", "join", "items")  # array<string> -> array<integer>: mismatch
    return g


# -- port types ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "canonical"), [
    ("any", "any"), ("int", "integer"), ("Number", "float"), ("all", "any"),
    ("array<int>", "array<integer>"), ("array", "array<any>"),
    ("optional< array<string> >", "optional<array<string>>"), ("option<bool>",
                                                               "optional<boolean>"),
    ("object<Doc>", "object<Doc>"), ("object", "object"), ("", "any"), ("error", "error"),
])
def test_port_type_syntax(text: str, canonical: str) -> None:
    assert str(porttypes.parse(text)) == canonical


@pytest.mark.parametrize("bad", ["quaternion", "array<int", "integer<float>", "array<>x",
                                 "<int>"])
def test_port_type_errors(bad: str) -> None:
    with pytest.raises(rf.PortTypeError, match="port type"):
        porttypes.parse(bad)


def test_port_type_reflow_json_both_ways() -> None:
    for text in ("any", "flow", "event", "boolean", "integer", "float", "string", "bytes",
                 "stream", "encoded", "object<Doc>", "array<optional<integer>>", "error"):
        assert str(porttypes.from_reflow(porttypes.to_reflow(text))) == text
    assert porttypes.to_reflow("optional<array<float>>") == {
        "type": "option", "value": {"type": "array", "value": {"type": "float"}}}
    assert porttypes.to_reflow("object") == {"type": "object", "value": ""}
    assert porttypes.from_reflow({"type": "object", "value": "Doc"}) == PortType("object",
                                                                               name="Doc")
    assert porttypes.from_reflow(None) == PortType("any")
    with pytest.raises(rf.PortTypeError, match=r"x\.portType"):
        porttypes.from_reflow({"value": 1}, "x.portType")
    with pytest.raises(rf.PortTypeError):
        porttypes.from_reflow({"type": "matrix"})


@pytest.mark.parametrize(("src", "tgt", "ok"), [
    ("any", "integer", True), ("string", "any", True), ("integer", "float", True),
    ("float", "integer", False), ("string", "integer", False),
    ("array<integer>", "array<float>", True), ("array<string>", "array<integer>", False),
    ("array<array<integer>>", "array<array<any>>", True), ("array<integer>", "integer", False),
    ("optional<integer>", "integer", True), ("integer", "optional<float>", True),
    ("optional<string>", "integer", False), ("stream", "bytes", True),
    ("object<A>", "object<B>", False), ("object<A>", "object", True),
    ("flow", "event", False), ("error", "error", True),
])
def test_compatibility_rules(src: str, tgt: str, ok: bool) -> None:
    assert compatible(src, tgt) is ok


# -- validate --------------------------------------------------------------------------------


def test_validate_without_registry_finds_structure_problems() -> None:
    g = rf.Graph("v")
    g.add_node("a", "x")
    g.add_node("b", "y")
    g.add_node("lonely", "z")
    g.add_edge("a", "out", "b", "in")
    # damage the graph behind the API's back, as a stale file or a buggy tool might
    g.edges.append(rf.Edge(rf.Endpoint("a", "out"), rf.Endpoint("ghost", "in")))
    g.iips.append(rf.IIP(1, rf.Endpoint("ghost2", "in")))
    g.inports["pub"] = rf.ExportedPort("ghost3", "in")
    g.groups.append(rf.Group("grp", ["ghost4"]))
    report = analysis.validate(g)
    kinds = {(p.kind, p.node) for p in report.problems}
    assert kinds == {("dangling_edge", "ghost"), ("dangling_iip", "ghost2"),
                     ("dangling_export", "ghost3"), ("dangling_group_member", "ghost4"),
                     ("orphan", "lonely")}
    assert not report.ok
    text = str(report)
    assert text.startswith("graph 'v': 3 error(s), 2 warning(s)")
    assert "node 'ghost' does not exist" in text


def test_validate_clean_graph_is_ok() -> None:
    g = rf.Graph()
    g.add_node("a", "x")
    g.add_node("b", "y")
    g.add_edge("a", "out", "b", "in")
    report = rf.validate(g)
    assert report.ok and report.problems == [] and str(report) == "graph: ok"


def test_validate_with_registry_checks_components_ports_and_types() -> None:
    g = typed_graph()
    g.add_node("ghost", "t/Missing")
    g.add_edge("src", "nope", "ghost", "in")
    g.add_edge("src", "out", "scale", "typo")
    g.add_edge("join", "bad", "scale", "factor")
    report = analysis.validate(g, registry())
    found = sorted((p.kind, p.node, p.port) for p in report.problems)
    assert found == sorted([
        ("unknown_component", "ghost", None),
        ("unknown_port", "src", "nope"),
        ("unknown_port", "scale", "typo"),
        ("type_mismatch", "join", "in"),
        ("type_mismatch", "join", "items"),
        ("bad_port_type", "join", "bad"),
    ])
    mismatch = next(p for p in report.problems if p.port == "items")
    assert "array<string>" in mismatch.message and "array<integer>" in mismatch.message
    assert isinstance(report, rf.ValidationReport) and not report.ok


def test_validate_unconnected_required_port_is_a_warning() -> None:
    g = rf.Graph()
    g.add_node("src", "t/Source")
    g.add_node("scale", "t/Scale")
    g.add_edge("src", "out", "scale", "in")
    report = analysis.validate(g, registry())
    assert [(p.kind, p.node, p.port, p.severity) for p in report.problems] == [
        ("unconnected_port", "scale", "factor", "warning")]
    assert report.ok  # warnings only
    g.add_inport("factor", "scale", "factor")
    assert analysis.validate(g, registry()).problems == []


# -- structure -------------------------------------------------------------------------------


def chain_with_cycle() -> rf.Graph:
    g = rf.Graph("c")
    for n in "abcdef":
        g.add_node(n, "x")
    g.add_edge("a", "out", "b", "in")
    g.add_edge("b", "out", "c", "in")
    g.add_edge("c", "out", "b", "back")  # cycle b <-> c
    g.add_edge("c", "out", "d", "in")
    g.add_edge("d", "out", "d", "self")  # self loop
    g.add_edge("e", "out", "f", "in")
    return g


def test_cycles_lists_all_simple_cycles() -> None:
    g = chain_with_cycle()
    assert analysis.cycles(g) == [["d"], ["b", "c"]]
    assert len(analysis.cycles(g, limit=1)) == 1
    g2 = rf.Graph()
    for n in "abc":
        g2.add_node(n, "x")
    g2.add_edge("a", "o", "b", "i")
    g2.add_edge("b", "o", "c", "i")
    g2.add_edge("c", "o", "a", "i")
    g2.add_edge("a", "o", "c", "i")
    assert analysis.cycles(g2) == [["a", "c"], ["a", "b", "c"]]


def test_topological_order_and_cycle_error() -> None:
    g = rf.Graph("dag")
    for n in "dcba":
        g.add_node(n, "x")
    g.add_edge("a", "o", "b", "i")
    g.add_edge("b", "o", "c", "i")
    g.add_edge("a", "o", "c", "i")
    order = analysis.topological_order(g)
    assert set(order) == set("abcd")
    for e in g.edges:
        assert order.index(e.src.node) < order.index(e.tgt.node)
    with pytest.raises(rf.GraphCycleError, match="has a cycle: b -> c -> b") as info:
        analysis.topological_order(chain_with_cycle())
    assert sorted(info.value.cycle) == ["b", "c"]


def test_stages() -> None:
    g = rf.Graph()
    for n in "abcde":
        g.add_node(n, "x")
    g.add_edge("a", "o", "b", "i")
    g.add_edge("a", "o", "c", "i")
    g.add_edge("b", "o", "d", "i")
    g.add_edge("c", "o", "d", "i")
    g.add_edge("a", "o", "d", "j")
    assert analysis.stages(g) == [["a", "e"], ["b", "c"], ["d"]]
    assert analysis.stages(chain_with_cycle()) == [["a", "e"], ["b", "c", "f"], ["d"]]
    assert analysis.stages(rf.Graph()) == []


def test_orphans_unreachable_reachable_components() -> None:
    g = chain_with_cycle()
    g.add_node("lonely", "x")
    g.add_node("exported", "x")
    g.add_inport("pub", "exported", "in")
    g.add_iip(1, "lonely", "in")
    assert analysis.orphans(g) == ["lonely"]
    # a loop nobody enters
    g.add_node("p", "x")
    g.add_node("q", "x")
    g.add_edge("p", "o", "q", "i")
    g.add_edge("q", "o", "p", "i")
    assert analysis.unreachable(g) == ["p", "q"]
    assert analysis.unreachable(g, sources=["e"]) == [
        n for n in g.nodes if n not in ("e", "f")]
    with pytest.raises(rf.NodeNotFound):
        analysis.unreachable(g, sources=["zz"])
    sub = analysis.reachable_from(g, "c")
    assert set(sub.nodes) == {"b", "c", "d"}
    assert {(e.src.node, e.tgt.node) for e in sub.edges} == {("b", "c"), ("c", "b"),
                                                             ("c", "d"), ("d", "d")}
    with pytest.raises(rf.NodeNotFound):
        analysis.reachable_from(g, "zz")
    assert analysis.connected_components(g) == [["a", "b", "c", "d"], ["e", "f"], ["p", "q"],
                                                ["lonely"], ["exported"]]


def test_reachable_subgraph_keeps_iips_exports_groups() -> None:
    g = rf.Graph("r")
    for n in "abc":
        g.add_node(n, "x")
    g.add_edge("a", "o", "b", "i", capacity=2)
    g.add_iip(5, "b", "cfg")
    g.add_outport("out", "b", "o")
    g.add_inport("in", "a", "i")
    g.add_group("grp", ["a", "b", "c"])
    sub = analysis.reachable_from(g, "b")
    assert list(sub.nodes) == ["b"] and sub.iips[0].data == 5
    assert list(sub.outports) == ["out"] and sub.inports == {}
    assert sub.groups[0].nodes == ["b"]


def test_layout_writes_coordinates_and_reduces_crossings() -> None:
    # two layers wired "crosswise": a0->b1, a1->b0 ...; the layout must untangle them
    g = rf.Graph()
    for i in range(4):
        g.add_node(f"a{i}", "x")
    for i in (3, 2, 1, 0):
        g.add_node(f"b{i}", "x")
    for i in range(4):
        g.add_edge(f"a{i}", "o", f"b{i}", "i")
    naive = {n: (0.0 if n[0] == "a" else 200.0, float(i % 4)) for i, n in enumerate(g.nodes)}
    assert analysis.crossings(g, naive) == 6
    rec: list[str] = []
    g.subscribe(lambda e: rec.append(e.type))
    coords = analysis.layout(g)
    assert analysis.crossings(g, coords) == 0
    assert {n: (m.metadata["x"], m.metadata["y"]) for n, m in g.nodes.items()} == coords
    assert coords["a0"][0] == 0.0 and coords["b0"][0] == 200.0
    assert rec[0] == "StartTransaction" and rec[-1] == "EndTransaction"
    assert g.history()[-1] == "layout"
    g.undo()
    assert all("x" not in n.metadata for n in g.nodes.values())


def test_layout_handles_cycles_and_no_write() -> None:
    g = chain_with_cycle()
    coords = analysis.layout(g, write=False, dx=10, dy=5)
    assert all("x" not in n.metadata for n in g.nodes.values())
    assert coords["a"][0] == 0 and coords["b"][0] == 10 and coords["c"][0] == 20
    assert len(set(coords.values())) == len(coords)  # no two nodes on one spot


def test_analyses_on_a_10k_node_graph() -> None:
    from benchmarks.graph import build

    g = build(10_000)
    assert analysis.validate(g).ok
    assert analysis.cycles(g) == []
    order = analysis.topological_order(g)
    position = {n: i for i, n in enumerate(order)}
    assert all(position[e.src.node] < position[e.tgt.node] for e in g.edges)
    stages = analysis.stages(g)
    assert sum(map(len, stages)) == 10_000 and len(stages) == 200
    assert analysis.orphans(g) == [] and analysis.unreachable(g) == []
    assert len(analysis.connected_components(g)) == 1
    coords = analysis.layout(g, write=False)
    assert len(set(coords.values())) == 10_000
    g.add_edge("n9999", "out", "n0", "in")
    assert analysis.cycles(g, limit=5)
    cyclic = analysis.stages(g)
    assert sum(map(len, cyclic)) == 10_000
    assert any("n0" in stage and "n9999" in stage for stage in cyclic)


def test_unknown_components_name_the_close_ones_once_per_component() -> None:
    # validate said only "no component 'core/Repaet' in the registry" where run said
    # which names were meant
    g = rf.Graph("typos")
    for i in range(3):
        g.add_node(f"r{i}", "core/Repaet")
    g.add_node("o", "Output")
    g.add_node("z", "zzzz/Qqqq")
    report = analysis.validate(g, rf.default_registry())
    unknown = {p.node: p.message for p in report.problems if p.kind == "unknown_component"}
    assert set(unknown) == {"r0", "r1", "r2", "o", "z"}
    assert all("did you mean 'core/Repeat'" in unknown[f"r{i}"] for i in range(3))
    assert "did you mean 'core/Output'" in unknown["o"]
    assert "did you mean" not in unknown["z"] and "reflowpy components" in unknown["z"]
