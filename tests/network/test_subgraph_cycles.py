"""A subgraph that contains itself, directly or through others, is refused before it
starts. It used to nest networks without end as each one started (`reflowpy run` of
such a graph hung, growing)."""

from __future__ import annotations

import itertools
from typing import Any

import networkx as nx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.network import analysis


def _sub(name: str, uses: list[str]) -> rf.Graph:
    """A pass-through graph: in -> Repeat -> (each used component in a chain) -> out."""
    g = rf.Graph(name)
    g.add_node("first", "core/Repeat")
    prev = "first"
    for i, component in enumerate(uses):
        g.add_node(f"n{i}", component)
        g.add_edge(prev, "out", f"n{i}", "in")
        prev = f"n{i}"
    g.add_inport("in", "first", "in")
    g.add_outport("out", prev, "out")
    return g


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.lists(st.integers(0, n - 1), max_size=3), min_size=n, max_size=n),
    st.integers(0, n - 1))))
def test_cycles_are_found_exactly_when_the_uses_graph_has_one(case: Any) -> None:
    n, uses, start = case
    registry = rf.default_registry()
    for i in range(n):
        registry.register(f"s/G{i}", _sub(f"G{i}", [f"s/G{j}" for j in uses[i]]))
    uses_graph = nx.DiGraph([(i, j) for i in range(n) for j in uses[i]])
    uses_graph.add_nodes_from(range(n))
    reachable = nx.descendants(uses_graph, start) | {start}
    expect_cycle = not nx.is_directed_acyclic_graph(uses_graph.subgraph(reachable))
    cycle = registry.subgraph_cycle(f"s/G{start}")
    assert (cycle is not None) == expect_cycle
    if cycle is not None:  # a real cycle of the uses graph, closed
        assert cycle[0] == cycle[-1]
        ids = [int(c.removeprefix("s/G")) for c in cycle]
        assert all(b in uses[a] for a, b in itertools.pairwise(ids))
    top = rf.Graph("top")
    top.add_node("x", f"s/G{start}")
    top.add_inport("in", "x", "in")
    top.add_outport("out", "x", "out")
    kinds = {p.kind for p in analysis.validate(top, registry).problems}
    assert ("recursive_subgraph" in kinds) == expect_cycle

    async def main() -> list[Any]:
        async with rf.Network(top, registry) as net:
            await net.send("in", 7)
            await net.idle()
            return net.outputs("out").drain()

    if expect_cycle:
        with pytest.raises(rf.GraphCycleError, match="contains itself") as info:
            trio.run(main)
        assert info.value.cycle == cycle
    else:
        assert trio.run(main) == [7]


def test_a_deep_chain_of_subgraphs_is_checked_without_recursion() -> None:
    registry = rf.Registry()
    registry.register("core/Repeat", rf.default_registry().get("core/Repeat"))
    depth = 5000  # past the interpreter's recursion limit
    registry.register("s/G0", _sub("G0", []))
    for i in range(1, depth):
        registry.register(f"s/G{i}", _sub(f"G{i}", [f"s/G{i - 1}"]))
    assert registry.subgraph_cycle(f"s/G{depth - 1}") is None
    registry.register("s/G0", _sub("G0", [f"s/G{depth - 1}"]), replace=True)
    cycle = registry.subgraph_cycle(f"s/G{depth - 1}")
    assert cycle is not None and len(cycle) == depth + 1
