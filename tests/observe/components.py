"""Small actors for the observability tests (a registry usable from the CLI too:
``--registry tests.observe.components:registry``)."""

from __future__ import annotations

from typing import Any

import reflowpy as rf


class Split(rf.Actor):
    inports = ["in"]
    outports = ["out"]

    async def process(self, ctx: Any) -> None:
        for part in str(ctx.inputs["in"]).split(","):
            await ctx.send("out", part.strip())


@rf.actor(inports=["in"], outports=["out"])
def parse(ctx: rf.ActorContext) -> dict[str, Any]:
    return {"out": int(ctx.inputs["in"])}


@rf.actor(inports=["in"], outports=["out"])
def double(ctx: rf.ActorContext) -> dict[str, Any]:
    return {"out": ctx.inputs["in"] * 2}


@rf.actor(inports=["in"], outports=["out"])
def passthrough(ctx: rf.ActorContext) -> dict[str, Any]:
    return {"out": ctx.inputs["in"]}


class Add(rf.Actor):
    """A join: fires when both a and b hold a message."""

    inports = ["a", "b"]
    outports = ["out"]
    await_all_inports = True

    async def process(self, ctx: Any) -> dict[str, Any]:
        return {"out": ctx.inputs["a"] + ctx.inputs["b"]}


def registry() -> rf.Registry:
    reg = rf.Registry()
    reg.register("t/Split", Split)
    reg.register("t/Parse", parse)
    reg.register("t/Double", double)
    reg.register("t/Pass", passthrough)
    reg.register("t/Add", Add)
    return reg


def failing_graph() -> rf.Graph:
    """in -> split -> parse -> double -> out; parse fails on non-numbers."""
    g = rf.Graph("numbers")
    g.add_node("split", "t/Split")
    g.add_node("parse", "t/Parse")
    g.add_node("double", "t/Double")
    g.add_edge("split", "out", "parse", "in")
    g.add_edge("parse", "out", "double", "in")
    g.add_inport("in", "split", "in")
    g.add_outport("out", "double", "out")
    return g
