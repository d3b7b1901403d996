"""util/* and the Reflow template aliases (Reflow port and config names)."""

from __future__ import annotations

import logging
import uuid

import pytest
import trio
import trio.testing

import reflowpy as rf
from tests.components.helpers import REGISTRY, config_error, run_node


async def test_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    r = await run_node("util/Log", {"message": "got {{ n }}", "level": "warning"},
                       inputs={"in": [{"n": 1}]})
    assert r["out"] == [{"n": 1}]
    assert "got 1" in caplog.text
    with config_error("node 'n'.*'level'"):
        await run_node("util/Log", {"level": "loud"}, inputs={"in": [1]})


async def test_inspect_tap() -> None:
    r = await run_node("util/Tap", inputs={"in": [1, 2]})
    assert r["out"] == [1, 2] and r["tap"] == [1, 2]


async def test_counter() -> None:
    r = await run_node("util/Counter", {"start": 10, "step": 5},
                       inputs=[("in", "a"), ("in", "b"), ("reset", None), ("in", "c")])
    assert r["count"] == [15, 20, 15] and r["out"] == ["a", "b", "c"]


async def test_sample_every_and_seeded_rate() -> None:
    r = await run_node("util/Sample", {"every": 3}, inputs={"in": list(range(10))})
    assert r["out"] == [2, 5, 8]
    a = await run_node("util/Sample", {"rate": 0.5, "seed": 7}, inputs={"in": list(range(50))})
    b = await run_node("util/Sample", {"rate": 0.5, "seed": 7}, inputs={"in": list(range(50))})
    assert a["out"] == b["out"] and 10 < len(a["out"]) < 40
    with config_error("node 'n'.*'every'"):
        await run_node("util/Sample", {"every": 2, "rate": 0.1}, inputs={"in": [1]})


async def test_uuid_now_const() -> None:
    r = await run_node("util/Uuid", inputs={"in": [None, None]})
    assert len({uuid.UUID(u).version for u in r["out"]}) == 1 and r["out"][0] != r["out"][1]
    r = await run_node("util/Now", {"format": "epoch_ms"}, inputs={"in": [None]})
    assert isinstance(r["out"][0], int) and r["out"][0] > 1_600_000_000_000
    r = await run_node("util/Const", {"value": {"k": [1]}}, inputs={"in": [None]})
    assert r["out"] == [{"k": [1]}]
    with config_error("node 'n'.*'value'"):
        await run_node("util/Const", {}, inputs={"in": [None]})


async def test_assert_expect_and_expression() -> None:
    r = await run_node("util/Assert", {"expect": [1, 2]}, inputs={"in": [1, 3, 4]})
    assert r["out"] == [1]
    assert [f["index"] for f in r["failed"]] == [1, 2]
    r = await run_node("util/Assert", {"expression": "x > 0"}, inputs={"in": [1, -1]},
                       outports=["out"])
    assert r["out"] == [1] and [d.value for d in r.dead] == [-1]
    assert r.dead[0].error_type == "AssertionError"


async def test_reflow_if_branch_decision_rules() -> None:
    meta = {"propertyValues": {"decisionRules": {"type": "IF", "groups": [
        {"connector": "OR", "rules": [
            {"field": "score", "operator": "greater_equal", "value": 90},
            {"field": "vip", "operator": "is", "value": True}]}]}}}
    r = await run_node("tpl_if_branch", meta,
                       inputs={"data": [{"score": 95}, {"score": 10, "vip": True}, {"score": 1}]})
    assert r["true-out"] == [{"score": 95}, {"score": 10, "vip": True}]
    assert r["false-out"] == [{"score": 1}]
    r = await run_node("tpl_if_branch", {"condition_type": "greater_than", "value": 3},
                       inputs={"data": [5, 1]})
    assert r["true-out"] == [5] and r["false-out"] == [1]


async def test_reflow_switch_loop_passthrough() -> None:
    r = await run_node("tpl_switch", {"propertyValues": {"switch_field": "t",
                                                         "case1_value": "a", "case2_value": "b"}},
                       inputs={"data": [{"t": "b"}, {"t": "z"}]})
    assert r["case2"] == [{"t": "b"}] and r["default"] == [{"t": "z"}]
    r = await run_node("tpl_loop", inputs={"collection": [["x", "y"]]})
    assert r["item"] == [{"value": "x", "index": 0}, {"value": "y", "index": 1}]
    assert r["completed"] == [True]
    r = await run_node("tpl_passthrough", inputs={"input": [1]})
    assert r["output"] == [1]


async def test_reflow_data_transformer_map_filter_reduce() -> None:
    r = await run_node("tpl_data_transformer", {"fields": {"full": "first + ' ' + last"}},
                       inputs={"input": [{"first": "a", "last": "b"}, {}]})
    assert r["output"] == [{"full": "a b"}] and len(r["error"]) == 1
    r = await run_node("tpl_map", {"operation": "extract_field", "field": "v"},
                       inputs={"input": [[{"v": 1}, {"v": 2}]]})
    assert r["output"] == [[1, 2]]
    r = await run_node("tpl_filter", {"condition": "greater_than", "field": "v", "value": 1},
                       inputs={"input": [[{"v": 1}, {"v": 2}]]})
    assert r["output"] == [[{"v": 2}]] and r["rejected"] == [[{"v": 1}]]
    r = await run_node("tpl_reduce", {"operation": "product"}, inputs={"input": [[2, 3, 4]]})
    assert r["output"] == [24]
    with config_error("node 'n'.*'operation'"):
        await run_node("tpl_reduce", {"operation": "mean"}, inputs={"input": [[1]]})


async def test_reflow_merge_split_gate_collect() -> None:
    r = await run_node("tpl_merge", inputs=[("a", 1), ("b", 2)])
    assert r["output"] == [{"a": 1}, {"a": 1, "b": 2}]
    r = await run_node("tpl_split", inputs={"input": [[1, 2, 3]]})
    assert r.outputs == {"head": [1], "tail": [[2, 3]], "count": [3]}
    r = await run_node("tpl_gate", inputs=[("input", 1), ("control", True), ("input", 2)])
    assert r["output"] == [2] and r["blocked"] == [1]
    r = await run_node("tpl_collect", {"count": 2}, inputs={"input": [1, 2, 3, 4]})
    assert r["output"] == [[1, 2], [3, 4]] and r["count"] == [2, 2]


async def test_reflow_delay_and_triggers(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    r = await run_node("tpl_delay", {"delayMs": 2500}, inputs={"input": ["x"]})
    assert r["output"] == ["x"] and trio.current_time() - start >= 2.5
    g = rf.Graph("t")
    g.add_node("tick", "tpl_interval_trigger", {"propertyValues": {
        "interval": 2, "intervalUnit": "seconds", "maxExecutions": 3}})
    g.add_node("cron", "tpl_cron_trigger", {"cronExpression": "0 * * * *", "maxExecutions": 2,
                                            "start": "2024-01-01T00:30:00"})
    g.add_outport("tick", "tick", "trigger")
    g.add_outport("cron", "cron", "trigger")
    async with rf.Network(g, REGISTRY) as net:
        ticks = [await net.outputs("tick").receive() for _ in range(3)]
        crons = [await net.outputs("cron").receive() for _ in range(2)]
    assert [(t["count"], t["time"]) for t in ticks] == [(1, 0), (2, 2.0), (3, 4.0)]
    assert [c["time"] for c in crons] == ["2024-01-01T01:00:00+00:00",
                                          "2024-01-01T02:00:00+00:00"]


async def test_reflow_http_request_ports() -> None:
    g = rf.Graph("srv")
    g.add_node("http", "net/HttpServer")
    g.add_node("answer", "transform/Map", {"expression":
        "{'id': id, 'status': 500 if path == '/bad' else 200, 'body': msg.headers['x-h']}"})
    g.add_edge("http", "request", "answer", "in")
    g.add_edge("answer", "out", "http", "response")
    g.add_outport("listening", "http", "listening")
    async with rf.Network(g, REGISTRY) as server:
        url = (await server.outputs("listening").receive())["url"]
        r = await run_node("tpl_http_request", {"propertyValues": {"url": url + "/ok",
                                                                   "timeout": 5000}},
                           inputs=[("headers_in", {"x-h": "v"}), ("data_in", None)])
        assert r["response_out"][0]["body"] == "v"
        r = await run_node("tpl_http_request", {"url": url + "/bad", "retries": 0},
                           inputs=[("headers_in", {"x-h": "v"}), ("data_in", None)])
        assert r["error_out"][0]["status"] == 500
