"""core/*: NoFlo's core components in a running network."""

from __future__ import annotations

import pytest

import reflowpy as rf
from tests.components.helpers import REGISTRY, config_error, run_node


async def test_repeat_forwards_in_order() -> None:
    r = await run_node("core/Repeat", inputs={"in": [1, "two", {"three": 3}]})
    assert r["out"] == [1, "two", {"three": 3}]


async def test_repeat_async_forwards_after_yield() -> None:
    r = await run_node("core/RepeatAsync", inputs={"in": list(range(5))})
    assert r["out"] == [0, 1, 2, 3, 4]


async def test_copy_gives_equal_immutable_values() -> None:
    r = await run_node("core/Copy", inputs={"in": [{"a": [1]}]})
    assert r["out"] == [{"a": [1]}]
    with pytest.raises(TypeError):
        r["out"][0]["a"].append(2)


async def test_drop_consumes_everything() -> None:
    g = rf.Graph("t")
    g.add_node("r", "core/Repeat")
    g.add_node("d", "core/Drop")
    g.add_edge("r", "out", "d", "in")
    g.add_inport("in", "r", "in")
    async with rf.Network(g, REGISTRY) as net:
        for i in range(3):
            await net.send("in", i)
        await net.idle()
        assert net.statistics() is not None
    assert net.dead_letters() == []


async def test_output_prints_and_forwards(capsys: pytest.CaptureFixture[str]) -> None:
    r = await run_node("core/Output", {"prefix": "> "}, inputs={"in": ["hi", {"n": 1}]})
    assert r["out"] == ["hi", {"n": 1}]
    assert capsys.readouterr().out.splitlines() == ["> hi", '> {"n": 1}']


async def test_output_bad_format_is_a_config_error() -> None:
    with config_error("node 'n'.*'format'"):
        await run_node("core/Output", {"format": "xml"}, inputs={"in": [1]})


async def test_kick_sends_stored_data_on_bang() -> None:
    r = await run_node("core/Kick", inputs=[("data", "payload"), ("in", None), ("in", None)])
    assert r["out"] == ["payload", "payload"]
    r = await run_node("core/Kick", {"data": 7}, inputs={"in": [True]})
    assert r["out"] == [7]


async def test_merge_joins_several_connections() -> None:
    g = rf.Graph("t")
    for n in ("a", "b"):
        g.add_node(n, "core/Repeat")
        g.add_inport(n, n, "in")
    g.add_node("m", "core/Merge")
    g.add_edge("a", "out", "m", "in", tgt_index=0)
    g.add_edge("b", "out", "m", "in", tgt_index=1)
    g.add_outport("out", "m", "out")
    out = await _run(g, [("a", 1), ("b", 2), ("a", 3)])
    assert sorted(out["out"]) == [1, 2, 3]


async def test_split_broadcasts_to_every_connection() -> None:
    g = rf.Graph("t")
    g.add_node("s", "core/Split")
    g.add_inport("in", "s", "in")
    for i, n in enumerate(("x", "y")):
        g.add_node(n, "core/Repeat")
        g.add_edge("s", "out", n, "in", src_index=i)
        g.add_outport(n, n, "out")
    out = await _run(g, [("in", "v")])
    assert out == {"x": ["v"], "y": ["v"]}


async def test_make_function_evaluates_safe_expression() -> None:
    r = await run_node("core/MakeFunction", inputs=[("function", "x * x"), ("in", 3), ("in", 4)],
                       outports=["out", "function", "error"])
    assert r["out"] == [9, 16]
    assert r["function"] == ["x * x"]


async def test_make_function_errors_go_to_error_port() -> None:
    r = await run_node("core/MakeFunction", {"function": "x / 0"},
                       inputs={"in": [1]}, outports=["out", "error"])
    assert r["out"] == []
    assert r["error"][0]["type"] == "ExpressionError"
    r = await run_node("core/MakeFunction", inputs=[("function", "x +"), ("in", 1)],
                       outports=["out", "error"])
    assert len(r["error"]) == 2  # the bad function, then the input with no function


async def test_make_function_bad_config_and_dead_letter() -> None:
    with config_error("node 'n'.*'function'"):
        await run_node("core/MakeFunction", {"function": "import os"}, inputs={"in": [1]})
    r = await run_node("core/MakeFunction", {"function": "len(x)"}, inputs={"in": [5, "ab"]},
                       outports=["out"])
    assert r["out"] == [2]
    assert [d.value for d in r.dead] == [5]


async def _run(g: rf.Graph, pairs: list[tuple[str, object]]) -> dict[str, list[object]]:
    async with rf.Network(g, REGISTRY) as net:
        for port, value in pairs:
            await net.send(port, value)
        await net.idle()
        return {p: net.outputs(p).drain() for p in g.outports}
