"""transform/*: per-message transformations in a running network."""

from __future__ import annotations

from typing import Any

import pytest

from tests.components.helpers import config_error, run_node


async def test_map() -> None:
    r = await run_node("transform/Map", {"expression": "{'name': upper(name), 'n': n * 2}"},
                       inputs={"in": [{"name": "a", "n": 1}, {"name": "b"}]})
    assert r["out"] == [{"name": "A", "n": 2}]
    assert "unknown name 'n'" in r["error"][0]["error"]
    with config_error("node 'n'.*'expression'"):
        await run_node("transform/Map", {"expression": "x +* 1"}, inputs={"in": [1]})


async def test_filter_with_rejected() -> None:
    r = await run_node("transform/Filter", {"expression": "level in ['error', 'fatal']"},
                       inputs={"in": [{"level": "info"}, {"level": "error"}, 7]})
    assert r["out"] == [{"level": "error"}]
    assert r["rejected"] == [{"level": "info"}]
    assert r["error"][0]["value"] == 7  # 'level' unknown for a number


async def test_reduce_operations_and_expression() -> None:
    r = await run_node("transform/Reduce", {"operation": "max"}, inputs={"in": [[3, 9, 2], []]})
    assert r["out"] == [9, None]
    r = await run_node("transform/Reduce", {"expression": "acc + x.amount", "initial": 0},
                       inputs={"in": [[{"amount": 2}, {"amount": 3}], "nope"]})
    assert r["out"] == [5]
    assert r["error"][0]["value"] == "nope"
    with config_error("node 'n'.*'operation'"):
        await run_node("transform/Reduce", {"operation": "median"}, inputs={"in": [[1]]})


async def test_scan_running_total_and_reset() -> None:
    r = await run_node("transform/Scan", {"operation": "sum"},
                       inputs=[("in", 1), ("in", 2), ("reset", None), ("in", 3)])
    assert r["out"] == [1, 3, 3]


async def test_flatmap() -> None:
    r = await run_node("transform/FlatMap", {"expression": "split(x, ' ')"},
                       inputs={"in": ["a b", "c"]})
    assert r["out"] == ["a", "b", "c"]
    r = await run_node("transform/FlatMap", {}, inputs={"in": [[1, 2], 3]})
    assert r["out"] == [1, 2]
    assert r["error"][0]["value"] == 3


async def test_pick_pointer_fields_and_default() -> None:
    doc = {"user": {"name": "ann", "tags": ["a", "b"]}, "a/b": 1}
    r = await run_node("transform/Pick", {"pointer": "/user/tags/1"}, inputs={"in": [doc]})
    assert r["out"] == ["b"]
    r = await run_node("transform/Pick", {"fields": {"n": "user.name", "s": "/a~1b"}},
                       inputs={"in": [doc]})
    assert r["out"] == [{"n": "ann", "s": 1}]
    r = await run_node("transform/Pick", {"pointer": "/missing"}, inputs={"in": [doc]})
    assert r["out"] == [] and len(r["error"]) == 1
    r = await run_node("transform/Pick", {"pointer": "/missing", "default": None},
                       inputs={"in": [doc]})
    assert r["out"] == [None]


async def test_set_value_expression_and_append() -> None:
    r = await run_node("transform/Set", {"pointer": "/meta/seen", "value": True},
                       inputs={"in": [{"a": 1}]})
    assert r["out"] == [{"a": 1, "meta": {"seen": True}}]
    r = await run_node("transform/Set", {"pointer": "/total", "expression": "price * qty"},
                       inputs={"in": [{"price": 2, "qty": 3}]})
    assert r["out"] == [{"price": 2, "qty": 3, "total": 6}]
    r = await run_node("transform/Set", {"pointer": "/xs/-", "value": 9},
                       inputs={"in": [{"xs": [1]}, {"xs": 5}]})
    assert r["out"] == [{"xs": [1, 9]}]
    assert len(r["error"]) == 1
    with config_error("node 'n'.*'value'"):
        await run_node("transform/Set", {"pointer": "/a"}, inputs={"in": [{}]})


async def test_template() -> None:
    r = await run_node("transform/Template", {"template": "{{ count }} errors at {{ at }}"},
                       inputs={"in": [{"count": 3, "at": "12:00"}, 5]})
    assert r["out"] == ["3 errors at 12:00"]
    assert len(r["error"]) == 1
    with config_error("node 'n'.*'template'"):
        await run_node("transform/Template", {"template": "{{ oops"}, inputs={"in": [1]})


async def test_expression_fields() -> None:
    r = await run_node("transform/Expression",
                       {"fields": {"total": "price * qty", "big": "price * qty > 5"}},
                       inputs={"in": [{"price": 2, "qty": 3}]})
    assert r["out"] == [{"total": 6, "big": True}]
    with config_error(r"node 'n'.*'fields\.bad'"):
        await run_node("transform/Expression", {"fields": {"bad": "("}}, inputs={"in": [1]})


async def test_json_parse_and_stringify() -> None:
    r = await run_node("transform/JsonParse", inputs={"in": ['{"a": [1, 2]}', b"3", "{bad"]})
    assert r["out"] == [{"a": [1, 2]}, 3]
    assert r["error"][0]["value"] == "{bad"
    r = await run_node("transform/JsonStringify", {"sort_keys": True},
                       inputs={"in": [{"b": 1, "a": b"x"}]})
    assert r["out"] == ['{"a":"b\'x\'","b":1}']


SCHEMA = {"type": "object", "required": ["id"],
          "properties": {"id": {"type": "integer"}, "tags": {"type": "array"}}}


async def test_validate_schema_ports() -> None:
    r = await run_node("transform/Validate", {"schema": SCHEMA},
                       inputs={"in": [{"id": 1}, {"id": "x"}, {}]})
    assert r["out"] == [{"id": 1}]
    assert [e["errors"][0]["path"] for e in r["invalid"]] == ["/id", "/"]
    r = await run_node("transform/Validate", {"schema": SCHEMA}, inputs={"in": [{"id": "x"}]},
                       outports=["out"])
    assert r["out"] == [] and [d.value for d in r.dead] == [{"id": "x"}]
    with config_error("node 'n'.*'schema'"):
        await run_node("transform/Validate", {"schema": {"type": "banana"}}, inputs={"in": [1]})


@pytest.mark.parametrize(
    ("component", "config", "outs", "inport"),
    [
        ("transform/Map", {"expression": "x + 1"}, ["out"], "in"),
        ("transform/Expression", {"fields": {"y": "x + 1"}}, ["out"], "in"),
        ("transform/Filter", {"expression": "x + 1 > 2"}, ["out"], "in"),
        ("transform/Scan", {"expression": "acc + x", "initial": 0}, ["out"], "in"),
        ("transform/FlatMap", {"expression": "[x + 1]"}, ["out"], "in"),
        ("transform/Template", {"template": "{{ x + 1 }}"}, ["out"], "in"),
        ("flow/If", {"expression": "x + 1 > 2"}, ["true", "false"], "in"),
        ("flow/Switch", {"match": "expression", "cases": ["x + 1 > 2"]}, ["case1", "default"],
         "in"),
        ("core/MakeFunction", {"function": "x + 1"}, ["out"], "in"),
        ("reflow/DataTransformer", {"expression": "x + 1"}, ["output"], "input"),
    ],
)
async def test_failed_evaluation_goes_to_error_and_the_next_packet_still_flows(
    component: str, config: dict[str, Any], outs: list[str], inport: str
) -> None:
    # One rule for every expression-driven component (_common.evaluate_or_report):
    # the failing packet goes to `error` with its value, nothing else is sent for it.
    r = await run_node(component, config, inputs={inport: [{"no": "number"}, 5]},
                       outports=[*outs, "error"])
    assert [e["value"] for e in r["error"]] == [{"no": "number"}]
    assert sum(len(r[o]) for o in outs) == 1
