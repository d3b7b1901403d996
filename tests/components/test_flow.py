"""flow/*: routing, loops, synchronisation and the supervision wrappers."""

from __future__ import annotations

import trio
import trio.testing

import reflowpy as rf
from tests.components.helpers import REGISTRY, config_error, run_node

RULES = {"type": "IF", "groups": [
    {"connector": "AND", "rules": [
        {"field": "status", "operator": "is", "value": "active"},
        {"field": "age", "operator": "greater_than", "value": 17}]},
]}


async def test_gate_open_close_and_blocked() -> None:
    r = await run_node("flow/Gate", inputs=[("in", 1), ("open", True), ("in", 2), ("close", True),
                                            ("in", 3)], outports=["out", "blocked"])
    assert r["out"] == [2]
    assert r["blocked"] == [1, 3]


async def test_gate_buffer_releases_on_open_and_bounds_the_buffer() -> None:
    r = await run_node("flow/Gate", {"when_closed": "buffer", "max_buffer": 2},
                       inputs=[("in", 1), ("in", 2), ("in", 3), ("open", None)],
                       outports=["out", "error"])
    assert r["out"] == [1, 2]
    assert r["error"][0]["value"] == 3


async def test_gate_bad_config() -> None:
    with config_error("node 'n'.*'when_closed'"):
        await run_node("flow/Gate", {"when_closed": "sometimes"}, inputs={"in": [1]})


async def test_if_with_expression_and_error_port() -> None:
    r = await run_node("flow/If", {"expression": "x > 2"}, inputs={"in": [1, 3, "a"]},
                       outports=["true", "false", "error"])
    assert r["true"] == [3]
    assert r["false"] == [1]
    assert r["error"][0]["value"] == "a"


async def test_if_with_reflow_rule_groups() -> None:
    msgs = [{"status": "active", "age": 30}, {"status": "active", "age": 10},
            {"status": "gone", "age": 40}]
    r = await run_node("flow/If", {"rules": RULES}, inputs={"in": msgs},
                       outports=["true", "false"])
    assert r["true"] == [msgs[0]]
    assert r["false"] == msgs[1:]
    either = {"type": "OR", "groups": [
        {"connector": "OR", "rules": [{"field": "tags", "operator": "contains", "value": "x"},
                                      {"field": "name", "operator": "starts_with", "value": "a"}]},
        {"connector": "AND", "rules": [{"field": "n", "operator": "less_equal", "value": 0}]}]}
    r = await run_node("flow/ConditionalBranch", {"rules": either},
                       inputs={"in": [{"tags": ["x"]}, {"name": "ab"}, {"n": 0}, {"n": 1}]},
                       outports=["true", "false"])
    assert len(r["true"]) == 3 and r["false"] == [{"n": 1}]


async def test_if_bad_rules_name_the_key() -> None:
    bad = {"groups": [{"rules": [{"field": "a", "operator": "resembles", "value": 1}]}]}
    with config_error(r"node 'n'.*'rules\.groups\[0\]\.rules\[0\]\.operator'"):
        await run_node("flow/If", {"rules": bad}, inputs={"in": [1]}, outports=["true"])
    with config_error("node 'n'.*'expression'"):
        await run_node("flow/If", {}, inputs={"in": [1]}, outports=["true"])


async def test_switch_by_field_and_by_expression() -> None:
    msgs = [{"kind": "click"}, {"kind": "view"}, {"kind": "other"}]
    r = await run_node("flow/Switch", {"field": "kind", "cases": ["click", "view"]},
                       inputs={"in": msgs}, outports=["case1", "case2", "default"])
    assert r.outputs == {"case1": [msgs[0]], "case2": [msgs[1]], "default": [msgs[2]]}
    r = await run_node("flow/Switch", {"match": "expression", "cases": ["x < 0", "x < 10"]},
                       inputs={"in": [-1, 5, 50]}, outports=["case1", "case2", "default"])
    assert r.outputs == {"case1": [-1], "case2": [5], "default": [50]}


async def test_switch_too_many_cases() -> None:
    with config_error("node 'n'.*'cases'"):
        await run_node("flow/Switch", {"cases": list(range(9))}, inputs={"in": [1]},
                       outports=["default"])


async def test_router_by_key_with_default_and_missing_key() -> None:
    msgs = [{"region": "eu"}, {"region": "us"}, {"region": "mars"}, {"other": 1}]
    r = await run_node("flow/Router", {"key": "region", "routes": {"eu": "out1", "us": "out2"}},
                       inputs={"in": msgs}, outports=["out1", "out2", "default", "error"])
    assert r["out1"] == [msgs[0]] and r["out2"] == [msgs[1]] and r["default"] == [msgs[2]]
    assert r["error"][0]["value"] == msgs[3]
    with config_error(r"node 'n'.*'routes\.eu'"):
        await run_node("flow/Router", {"key": "k", "routes": {"eu": "out9"}}, inputs={"in": [1]})


async def test_round_robin_over_connected_ports() -> None:
    r = await run_node("flow/RoundRobin", inputs={"in": list(range(6))},
                       outports=["out1", "out2", "out3"])
    assert r.outputs == {"out1": [0, 3], "out2": [1, 4], "out3": [2, 5]}
    r = await run_node("flow/LoadBalancer", inputs={"in": [1]}, outports=[])
    assert [d.value for d in r.dead] == [1]  # nothing connected: dead-lettered


async def test_foreach_items_index_and_completed() -> None:
    r = await run_node("flow/ForEach", inputs={"in": [[1, 2, 3], {"k": "v"}, 5]},
                       outports=["item", "completed", "error"])
    assert r["item"] == [1, 2, 3, {"key": "k", "value": "v"}]
    assert r["completed"] == [3, 1]
    assert r["error"][0]["value"] == 5
    r = await run_node("flow/Loop", {"with_index": True}, inputs={"in": [["a"]]},
                       outports=["item"])
    assert r["item"] == [{"index": 0, "value": "a"}]


async def test_barrier_zips_inputs_in_rounds() -> None:
    r = await run_node("flow/Barrier", {"inputs": 3},
                       inputs=[("in1", 1), ("in1", 2), ("in2", "a"), ("in3", True),
                               ("in2", "b"), ("in3", False)])
    assert r["out"] == [[1, "a", True], [2, "b", False]]
    with config_error("node 'n'.*'inputs'"):
        await run_node("flow/Barrier", {"inputs": 9}, inputs={"in1": [1]})


async def test_sequencer_reorders_and_reports_late_and_bad() -> None:
    msgs = [{"seq": 2}, {"seq": 0}, {"seq": 3}, {"seq": 1}, {"seq": 0}, {"nope": 1}]
    r = await run_node("flow/Sequencer", inputs={"in": msgs}, outports=["out", "late", "error"])
    assert [m["seq"] for m in r["out"]] == [0, 1, 2, 3]
    assert r["late"] == [{"seq": 0}]
    assert r["error"][0]["value"] == {"nope": 1}


async def test_sequencer_bound() -> None:
    r = await run_node("flow/Sequencer", {"max_pending": 1},
                       inputs={"in": [{"seq": 5}, {"seq": 6}]}, outports=["out", "error"])
    assert r["out"] == [] and r["error"][0]["value"] == {"seq": 6}


async def test_retry_retries_then_reports(autojump_clock: trio.testing.MockClock) -> None:
    cfg = {"component": "transform/Map", "config": {"expression": "10 / x"},
           "retries": 2, "backoff": 1.0}
    start = trio.current_time()
    r = await run_node("flow/Retry", cfg, inputs={"in": [2, 0]}, outports=["out", "error"])
    assert r["out"] == [5.0]
    assert r["error"][0]["value"] == 0 and r["error"][0]["attempts"] == 3
    assert trio.current_time() - start >= 3.0  # backoff 1 s then 2 s, on the mock clock


async def test_retry_succeeds_on_a_later_attempt() -> None:
    calls = {"n": 0}

    class Flaky(rf.Actor):
        inports = ["in"]
        outports = ["out"]

        async def process(self, ctx: rf.ActorContext) -> dict[str, object]:
            calls["n"] += 1
            if calls["n"] < 3:
                raise RuntimeError("flaky")
            return {"out": ctx.inputs["in"]}

    REGISTRY.register("test/Flaky", Flaky, replace=True)
    import reflowpy.components.flow as flow

    original = flow._registry
    flow._registry = lambda: REGISTRY
    try:
        r = await run_node("flow/Retry", {"component": "test/Flaky", "retries": 3, "backoff": 0},
                           inputs={"in": ["ok"]}, outports=["out", "error"])
    finally:
        flow._registry = original
    assert r["out"] == ["ok"] and calls["n"] == 3


async def test_retry_bad_component() -> None:
    with config_error("node 'n'.*'component'"):
        await run_node("flow/Retry", {"component": "no/Such"}, inputs={"in": [1]})


async def test_timeout_wrapper(autojump_clock: trio.testing.MockClock) -> None:
    cfg = {"component": "time/Delay", "config": {"delay": 5}, "seconds": 1}
    r = await run_node("flow/Timeout", cfg, inputs={"in": ["slow"]},
                       outports=["out", "timeout"])
    assert r["timeout"] == ["slow"] and r["out"] == []
    cfg = {"component": "time/Delay", "config": {"delay": 0.5}, "seconds": 1}
    r = await run_node("flow/Timeout", cfg, inputs={"in": ["fast"]}, outports=["out", "timeout"])
    assert r["out"] == ["fast"]
    with config_error("node 'n'.*'seconds'"):
        await run_node("flow/Timeout", {"component": "core/Repeat", "seconds": 0},
                       inputs={"in": [1]})


async def test_circuit_breaker_opens_and_recovers(autojump_clock: trio.testing.MockClock) -> None:
    g = rf.Graph("t")
    g.add_node("cb", "flow/CircuitBreaker", {
        "component": "transform/Map", "config": {"expression": "10 / x"},
        "failures": 2, "reset": 30})
    g.add_inport("in", "cb", "in")
    for p in ("out", "rejected", "state", "error"):
        g.add_outport(p, "cb", p)
    async with rf.Network(g, REGISTRY, output_capacity=1000) as net:
        for v in (0, 0, 1):
            await net.send("in", v)
        await net.idle()
        assert net.outputs("rejected").drain() == [1]
        assert net.outputs("state").drain() == ["open"]
        await trio.sleep(31)
        await net.send("in", 2)
        await net.idle()
        assert net.outputs("out").drain() == [5.0]
        assert net.outputs("state").drain() == ["half_open", "closed"]
        assert len(net.outputs("error").drain()) == 2
