"""Undo/redo of graph transactions while a network runs: the network follows the
inverse events, so it stays consistent with the graph."""

from __future__ import annotations

from typing import Any

import reflowpy as rf


@rf.actor(inports=["in"], outports=["out"])
def double(ctx: Any) -> dict[str, Any]:
    return {"out": ctx.inputs["in"] * 2}


@rf.actor(inports=["in"], outports=["out"])
def passthrough(ctx: Any) -> dict[str, Any]:
    return {"out": ctx.inputs["in"]}


def registry() -> rf.Registry:
    reg = rf.Registry()
    reg.register("pass", passthrough)
    reg.register("double", double)
    return reg


async def test_undo_and_redo_of_a_transaction_reach_the_running_network() -> None:
    g = rf.Graph("live")
    g.add_node("a", "pass")
    g.add_inport("input", "a", "in")
    g.add_outport("result", "a", "out")
    net = rf.Network(g, registry())
    async with net:
        with g.transaction("branch"):
            g.add_node("d", "double")
            g.add_edge("a", "out", "d", "in")
            g.add_outport("doubled", "d", "out")
        await net.send("input", 2)
        await net.idle()
        assert net.outputs("result").drain() == [2]
        assert net.outputs("doubled").drain() == [4]

        assert g.undo()
        assert "d" not in g.nodes and "d" not in net._runners
        await net.send("input", 3)
        await net.idle()
        assert net.outputs("result").drain() == [3]

        assert g.redo()
        assert "d" in net._runners
        await net.send("input", 5)
        await net.idle()
        assert net.outputs("result").drain() == [5]
        assert net.outputs("doubled").drain() == [10]


async def test_undo_of_remove_node_restores_its_connections_in_the_network() -> None:
    g = rf.Graph("live2")
    g.add_node("a", "pass")
    g.add_node("b", "double")
    g.add_edge("a", "out", "b", "in")
    g.add_inport("input", "a", "in")
    g.add_outport("result", "b", "out")
    net = rf.Network(g, registry())
    async with net:
        g.remove_node("b")  # also removes the edge and the exported out-port
        assert "b" not in net._runners
        g.undo()
        await net.send("input", 21)
        await net.idle()
        assert net.outputs("result").drain() == [42]
