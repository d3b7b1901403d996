"""Graph model: every operation, every error, events, transactions, undo/redo."""

from __future__ import annotations

from typing import Any

import pytest

import reflowpy as rf
from reflowpy.network.graph import Endpoint


class Recorder:
    """A subscriber that keeps every event."""

    def __init__(self) -> None:
        self.events: list[rf.GraphEvent] = []

    def __call__(self, event: rf.GraphEvent) -> None:
        self.events.append(event)

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]


def sample() -> rf.Graph:
    g = rf.Graph("sample")
    g.add_node("a", "core/Repeat", {"x": 1})
    g.add_node("b", "core/Double")
    g.add_node("c", "core/Output")
    g.add_edge("a", "out", "b", "in", metadata={"route": 1})
    g.add_edge("b", "out", "c", "in", src_index=0, tgt_index=2, capacity=8)
    g.add_iip(5, "a", "in")
    g.add_inport("input", "a", "in")
    g.add_outport("result", "c", "out")
    g.add_group("grp", ["a", "b"], {"description": "first two"})
    return g


# -- nodes ----------------------------------------------------------------------------------


def test_add_node_stores_and_returns_node() -> None:
    g = rf.Graph()
    node = g.add_node("a", "core/Repeat", {"x": 3})
    assert node == rf.Node("a", "core/Repeat", {"x": 3})
    assert g.node("a") is g.nodes["a"] is node


def test_add_node_duplicate_raises_naming_graph_and_node() -> None:
    g = rf.Graph("g1")
    g.add_node("a", "core/Repeat")
    with pytest.raises(rf.DuplicateNode, match=r"graph 'g1'.*node 'a' already exists"):
        g.add_node("a", "core/Other")
    assert g.nodes["a"].component == "core/Repeat"


def test_add_node_empty_id_refused() -> None:
    with pytest.raises(rf.NodeNotFound, match="non-empty"):
        rf.Graph().add_node("", "x")


def test_node_lookup_missing_raises() -> None:
    with pytest.raises(rf.NodeNotFound, match=r"graph 'g': no node 'zz'"):
        rf.Graph("g").node("zz")


def test_remove_node_cascades_everything() -> None:
    g = sample()
    g.remove_node("a")
    assert "a" not in g.nodes
    assert [(e.src.node, e.tgt.node) for e in g.edges] == [("b", "c")]
    assert g.iips == []
    assert g.inports == {}
    assert g.group("grp").nodes == ["b"]
    assert g.outports.keys() == {"result"}


def test_remove_node_missing_raises_and_changes_nothing() -> None:
    g = sample()
    before = g.copy()
    with pytest.raises(rf.NodeNotFound):
        g.remove_node("nope")
    assert g == before


def test_rename_node_follows_edges_iips_exports_groups() -> None:
    g = sample()
    g.rename_node("a", "start")
    assert "a" not in g.nodes and g.nodes["start"].id == "start"
    assert g.nodes["start"].metadata == {"x": 1}
    assert g.find_edge("start", "out", "b", "in").metadata == {"route": 1}
    assert g.iips[0].tgt == Endpoint("start", "in")
    assert g.inports["input"].node == "start"
    assert g.group("grp").nodes == ["start", "b"]
    with pytest.raises(rf.EdgeNotFound):
        g.find_edge("a", "out", "b", "in")


def test_rename_node_errors() -> None:
    g = sample()
    with pytest.raises(rf.DuplicateNode, match="cannot rename node 'a' to 'b'"):
        g.rename_node("a", "b")
    with pytest.raises(rf.NodeNotFound):
        g.rename_node("zz", "y")
    with pytest.raises(rf.NodeNotFound):
        g.rename_node("a", "")
    g.rename_node("a", "a")  # no-op
    assert "a" in g.nodes


def test_set_node_metadata_merges_and_none_deletes() -> None:
    g = sample()
    old = g.nodes["a"]
    node = g.set_node_metadata("a", {"y": 2, "label": "A"})
    assert node.metadata == {"x": 1, "y": 2, "label": "A"}
    g.set_node_metadata("a", {"x": None, "label": None})
    assert g.nodes["a"].metadata == {"y": 2}
    assert old.metadata == {"x": 1}  # stored items are replaced, not mutated
    with pytest.raises(rf.NodeNotFound):
        g.set_node_metadata("zz", {"x": 1})


def test_set_node_component() -> None:
    g = sample()
    g.set_node_component("b", "core/Triple")
    assert g.nodes["b"].component == "core/Triple"


# -- edges ----------------------------------------------------------------------------------


def test_add_edge_folds_port_case_and_dedups() -> None:
    g = rf.Graph()
    g.add_node("a", "x")
    g.add_node("b", "y")
    e1 = g.add_edge("a", "OUT", "b", "In")
    assert (e1.src.port, e1.tgt.port) == ("out", "in")
    assert g.add_edge("a", "out", "b", "in") is e1
    assert len(g.edges) == 1


def test_case_sensitive_graph_keeps_port_case() -> None:
    g = rf.Graph(case_sensitive=True)
    g.add_node("a", "x")
    g.add_node("b", "y")
    g.add_edge("a", "Out", "b", "In")
    g.add_edge("a", "out", "b", "in")
    assert len(g.edges) == 2


def test_add_edge_errors() -> None:
    g = sample()
    with pytest.raises(rf.NodeNotFound, match="no node 'zz'"):
        g.add_edge("zz", "out", "b", "in")
    with pytest.raises(rf.NodeNotFound, match="no node 'zz'"):
        g.add_edge("a", "out", "zz", "in")
    with pytest.raises(ValueError, match=r"capacity of a\.out -> b\.x must be an integer >= 1"):
        g.add_edge("a", "out", "b", "x", capacity=0)
    with pytest.raises(rf.PortNotFound, match="index"):
        g.add_edge("a", "out", "b", "x", src_index=-1)
    with pytest.raises(rf.PortNotFound, match="non-empty"):
        g.add_edge("a", "", "b", "x")
    assert len(g.edges) == 2


def test_edge_capacity_from_metadata_key() -> None:
    g = sample()
    e = g.add_edge("a", "out", "c", "in", metadata={"capacity": 3, "k": 1})
    assert e.capacity == 3 and e.metadata == {"k": 1}


def test_remove_edge_and_errors() -> None:
    g = sample()
    with pytest.raises(rf.EdgeNotFound, match=r"no connection b\.out\[1\] -> c\.in\[2\]"):
        g.remove_edge("b", "out", "c", "in", src_index=1, tgt_index=2)
    g.remove_edge("b", "OUT", "c", "in", src_index=0, tgt_index=2)
    assert len(g.edges) == 1
    with pytest.raises(rf.EdgeNotFound, match="no node 'zz'"):
        g.remove_edge("zz", "out", "c", "in")


def test_set_edge_metadata() -> None:
    g = sample()
    e = g.set_edge_metadata("a", "out", "b", "in", {"route": None, "color": "red"})
    assert e.metadata == {"color": "red"}
    assert g.find_edge("a", "out", "b", "in") is e
    e = g.set_edge_metadata("a", "out", "b", "in", {"capacity": 4})
    assert e.capacity == 4 and "capacity" not in e.metadata
    with pytest.raises(ValueError):
        g.set_edge_metadata("a", "out", "b", "in", {"capacity": -1})
    with pytest.raises(rf.EdgeNotFound):
        g.set_edge_metadata("a", "out", "c", "in", {"x": 1})


def test_edges_of() -> None:
    g = sample()
    assert {(e.src.node, e.tgt.node) for e in g.edges_of("b")} == {("a", "b"), ("b", "c")}


# -- IIPs -----------------------------------------------------------------------------------


def test_iips_add_remove_and_errors() -> None:
    g = sample()
    g.add_iip({"k": [1, 2]}, "b", "CONFIG", index=1, metadata={"m": 1})
    assert g.iips[-1] == rf.IIP({"k": [1, 2]}, Endpoint("b", "config", 1), {"m": 1})
    with pytest.raises(rf.NodeNotFound):
        g.add_iip(1, "zz", "in")
    with pytest.raises(rf.IIPNotFound, match=r"no initial packet for b\.config"):
        g.remove_iip("b", "config")  # index differs
    g.remove_iip("b", "config", index=1)
    g.add_iip(1, "a", "in")
    g.remove_iip("a", "in")  # removes every IIP to a.in
    assert g.iips == []


# -- exported ports ----------------------------------------------------------------------------


def test_exported_ports_add_rename_metadata_remove() -> None:
    g = sample()
    with pytest.raises(rf.DuplicatePort, match="exported inport 'input' already exists"):
        g.add_inport("INPUT", "b", "in")
    with pytest.raises(rf.NodeNotFound):
        g.add_outport("x", "zz", "out")
    g.rename_inport("input", "numbers")
    assert list(g.inports) == ["numbers"]
    with pytest.raises(rf.PortNotFound, match=r"no exported inport 'input' \(known: numbers\)"):
        g.remove_inport("input")
    g.set_inport_metadata("numbers", {"type": "integer"})
    assert g.inports["numbers"].metadata == {"type": "integer"}
    g.add_outport("second", "b", "out", index=1)
    with pytest.raises(rf.DuplicatePort):
        g.rename_outport("second", "result")
    g.rename_outport("second", "other")
    g.set_outport_metadata("other", {"x": 1})
    g.remove_outport("other")
    g.remove_inport("numbers")
    assert g.inports == {} and list(g.outports) == ["result"]
    with pytest.raises(rf.PortNotFound):
        g.rename_outport("zz", "y")
    with pytest.raises(rf.PortNotFound):
        g.set_outport_metadata("zz", {})


# -- groups and properties ---------------------------------------------------------------------


def test_groups() -> None:
    g = sample()
    with pytest.raises(rf.DuplicateGroup):
        g.add_group("grp")
    with pytest.raises(rf.NodeNotFound, match="group 'x': no node 'zz'"):
        g.add_group("x", ["a", "zz"])
    assert all(gr.name != "x" for gr in g.groups)
    g.add_group("x", ["c"])
    g.rename_group("x", "y")
    with pytest.raises(rf.DuplicateGroup):
        g.rename_group("y", "grp")
    with pytest.raises(rf.GroupNotFound, match="no group 'x'"):
        g.remove_group("x")
    g.set_group_metadata("y", {"color": 3})
    g.add_to_group("y", "a")
    assert g.group("y") == rf.Group("y", ["c", "a"], {"color": 3})
    g.remove_from_group("y", "c")
    with pytest.raises(rf.NodeNotFound):
        g.remove_from_group("y", "c")
    g.remove_group("y")
    assert [gr.name for gr in g.groups] == ["grp"]
    with pytest.raises(rf.GroupNotFound):
        g.set_group_metadata("nope", {})


def test_properties_merge_and_delete() -> None:
    g = rf.Graph(properties={"a": 1})
    assert g.set_properties({"b": 2, "a": None}) == {"b": 2}


# -- events ---------------------------------------------------------------------------------------


def test_events_reach_two_subscribers_with_before_after() -> None:
    g = rf.Graph("ev")
    first, second = Recorder(), Recorder()
    g.subscribe(first)
    unsubscribe = g.subscribe(second)
    g.add_node("a", "x")
    g.add_node("b", "y")
    e = g.add_edge("a", "out", "b", "in")
    g.add_iip(1, "a", "in")
    g.rename_node("a", "a2")
    g.set_node_metadata("b", {"k": 1})
    g.add_inport("pub", "b", "in")
    g.remove_inport("pub")
    g.remove_edge("a2", "out", "b", "in")
    assert first.types == second.types == [
        "AddNode", "AddNode", "AddConnection", "AddInitial", "RenameNode", "ChangeNode",
        "AddInport", "RemoveInport", "RemoveConnection",
    ]
    ev = first.events
    assert ev[0].after == rf.Node("a", "x") and ev[0].before is None and ev[0].graph == "ev"
    assert ev[2].after == e
    assert ev[3].after.data == 1
    assert (ev[4].before, ev[4].after) == ("a", "a2")
    assert ev[5].before.metadata == {} and ev[5].after.metadata == {"k": 1}
    assert ev[6].after[0] == "pub" and isinstance(ev[6].after[1], rf.ExportedPort)
    assert ev[7].before[0] == "pub" and ev[7].after is None
    assert ev[8].before.src == Endpoint("a2", "out")
    unsubscribe()
    g.add_node("c", "z")
    assert len(second.events) == 9 and len(first.events) == 10


def test_events_are_copies() -> None:
    g = rf.Graph()
    rec = Recorder()
    g.subscribe(rec)
    g.add_node("a", "x", {"k": [1]})
    rec.events[0].after.metadata["k"].append(2)
    assert g.nodes["a"].metadata == {"k": [1]}


def test_remove_node_emits_cascade_before_remove_node() -> None:
    g = sample()
    rec = Recorder()
    g.subscribe(rec)
    g.remove_node("a")
    assert rec.types == ["RemoveConnection", "RemoveInitial", "RemoveInport", "ChangeGroup",
                         "RemoveNode"]


def test_failing_listener_does_not_break_graph_or_others(caplog: Any) -> None:
    g = rf.Graph()
    rec = Recorder()

    def broken(event: rf.GraphEvent) -> None:
        raise RuntimeError("boom")

    g.subscribe(broken)
    g.subscribe(rec)
    g.add_node("a", "x")
    assert rec.types == ["AddNode"] and "a" in g.nodes
    assert "listener" in caplog.text and "boom" in caplog.text


def test_refused_operation_emits_nothing() -> None:
    g = sample()
    rec = Recorder()
    g.subscribe(rec)
    for bad in (lambda: g.add_node("a", "x"), lambda: g.add_edge("a", "o", "zz", "i"),
                lambda: g.remove_iip("c", "in"), lambda: g.add_group("grp")):
        with pytest.raises(rf.GraphError):
            bad()
    assert rec.events == []


def test_unobserved_graph_does_not_grow() -> None:
    g = rf.Graph(max_history=10)
    for i in range(100):
        g.add_node(f"n{i}", "x")
    assert len(g.history()) == 10


# -- transactions, undo, redo ---------------------------------------------------------------


def test_undo_redo_single_operations() -> None:
    g = rf.Graph()
    g.add_node("a", "x")
    g.add_node("b", "x")
    g.add_edge("a", "out", "b", "in")
    snapshot = g.copy()
    g.remove_node("a")
    assert g.history()[-1] == "remove_node"
    assert g.undo()
    assert g == snapshot
    assert g.redo()
    assert "a" not in g.nodes and g.edges == []
    assert not g.redo()


def test_transaction_groups_and_undo_emits_inverse_events() -> None:
    g = rf.Graph("t")
    g.add_node("a", "x")
    rec = Recorder()
    g.subscribe(rec)
    with g.transaction("build"):
        g.add_node("b", "x")
        g.add_edge("a", "out", "b", "in")
        g.set_node_metadata("a", {"x": 5})
    assert rec.types == ["StartTransaction", "AddNode", "AddConnection", "ChangeNode",
                         "EndTransaction"]
    assert rec.events[0].after == "build"
    rec.events.clear()
    g.undo()
    assert rec.types == ["StartTransaction", "ChangeNode", "RemoveConnection", "RemoveNode",
                         "EndTransaction"]
    assert rec.events[1].after.metadata == {}
    assert list(g.nodes) == ["a"] and g.edges == [] and g.nodes["a"].metadata == {}
    rec.events.clear()
    g.redo()
    assert rec.types == ["StartTransaction", "AddNode", "AddConnection", "ChangeNode",
                         "EndTransaction"]
    assert g.nodes["a"].metadata == {"x": 5} and len(g.edges) == 1


def test_undo_redo_across_several_transactions() -> None:
    g = rf.Graph()
    states = [g.copy()]
    with g.transaction("one"):
        g.add_node("a", "x")
        g.add_node("b", "x")
    states.append(g.copy())
    with g.transaction("two"):
        g.add_edge("a", "out", "b", "in")
        g.add_iip(1, "a", "in")
        g.add_group("grp", ["a"])
    states.append(g.copy())
    with g.transaction("three"):
        g.rename_node("a", "z")
        g.remove_node("b")
        g.set_properties({"p": 1})
        g.add_outport("o", "z", "out")
        g.rename_outport("o", "out2")
        g.rename_group("grp", "g2")
    states.append(g.copy())
    assert g.history() == ["one", "two", "three"]
    for expected in reversed(states[:-1]):
        assert g.undo()
        assert g == expected, g.diff(expected)
    assert not g.undo()
    for expected in states[1:]:
        assert g.redo()
        assert g == expected, g.diff(expected)
    # a new change after undo clears the redo stack
    g.undo()
    g.add_node("q", "x")
    assert not g.can_redo


def test_undo_restores_positions() -> None:
    g = rf.Graph()
    g.add_node("a", "x")
    for i in range(3):
        g.add_iip(i, "a", "in", index=i)
    g.remove_iip("a", "in", index=1)
    g.undo()
    assert [i.data for i in g.iips] == [0, 1, 2]


def test_failed_transaction_rolls_back_with_events() -> None:
    g = sample()
    snapshot = g.copy()
    rec = Recorder()
    g.subscribe(rec)
    with pytest.raises(rf.DuplicateNode), g.transaction("bad"):
        g.add_node("d", "x")
        g.remove_node("a")
        g.add_node("b", "x")  # fails
    assert g == snapshot
    assert rec.types[0] == "StartTransaction" and rec.types[-1] == "EndTransaction"
    assert "AddNode" in rec.types and "RemoveNode" in rec.types
    assert g.history()[-1] != "bad"


def test_nested_transaction_joins_outer() -> None:
    g = rf.Graph()
    with g.transaction("outer"):
        g.add_node("a", "x")
        with g.transaction("inner"):
            g.add_node("b", "x")
    assert g.history() == ["outer"]
    g.undo()
    assert g.nodes == {}


def test_undo_inside_transaction_refused() -> None:
    g = rf.Graph()
    g.add_node("a", "x")
    with g.transaction("t"):
        with pytest.raises(rf.GraphError, match="inside a transaction"):
            g.undo()
        with pytest.raises(rf.GraphError, match="inside a transaction"):
            g.redo()


def test_history_is_bounded_and_clearable() -> None:
    g = rf.Graph(max_history=3)
    for i in range(5):
        g.add_node(f"n{i}", "x")
    assert len(g.history()) == 3
    for _ in range(3):
        g.undo()
    assert not g.undo() and list(g.nodes) == ["n0", "n1"]
    g.clear_history()
    assert not g.can_undo and not g.can_redo
    nohist = rf.Graph(max_history=0)
    nohist.add_node("a", "x")
    assert not nohist.undo()


# -- copy and equality -------------------------------------------------------------------------


def test_copy_is_deep_and_equal() -> None:
    g = sample()
    c = g.copy()
    assert c == g and c is not g
    c.set_node_metadata("a", {"x": 2})
    assert c != g
    assert g.nodes["a"].metadata == {"x": 1}
    assert g.copy(name="other").name == "other"


def test_equality_ignores_edge_order_but_not_content() -> None:
    g1, g2 = rf.Graph(), rf.Graph()
    for g in (g1, g2):
        g.add_node("a", "x")
        g.add_node("b", "x")
    g1.add_edge("a", "out", "b", "in")
    g1.add_edge("b", "out", "a", "in")
    g2.add_edge("b", "out", "a", "in")
    g2.add_edge("a", "out", "b", "in")
    assert g1 == g2 and g1.diff(g2) == []
    g2.set_edge_metadata("a", "out", "b", "in", {"k": 1})
    assert g1 != g2 and g1.diff(g2)
    assert g1 != "not a graph"
