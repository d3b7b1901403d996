"""Graph formats: Reflow JSON, NoFlo JSON, .fbp, YAML — round trips, detection, errors,
hand-written Reflow files, and property-based round trips of random graphs."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.network import formats
from reflowpy.network.formats import fbp
from reflowpy.network.graph import Endpoint

FIXTURES = Path(__file__).parent.parent / "fixtures" / "graphs"
ALL = ("reflow", "noflo", "fbp", "yaml")


def rich_graph() -> rf.Graph:
    g = rf.Graph("rich", properties={"description": "all features", "version": 2})
    g.add_node("a", "core/Repeat", {"x": 10, "label": "A", "nested": {"k": [1, None]}})
    g.add_node("b", "math/Double")
    g.add_node("c", "core/Output")
    g.add_edge("a", "out", "b", "in", metadata={"route": 3, "fromType": "integer"})
    g.add_edge("b", "out", "c", "in", src_index=1, tgt_index=0, capacity=7)
    g.add_iip({"start": 1}, "a", "config", metadata={"note": "n"})
    g.add_iip(None, "a", "in", index=2)
    g.add_iip("text 'quoted'", "c", "prefix")
    g.add_inport("numbers", "b", "in", metadata={"type": "array<integer>", "description": "d"})
    g.add_outport("result", "c", "out", index=1)
    g.add_group("grp", ["a", "b"], {"description": "g"})
    return g


@pytest.mark.parametrize("fmt", ["reflow", "noflo", "yaml"])
def test_rich_graph_round_trips_losslessly(fmt: str) -> None:
    g = rich_graph()
    text = g.dumps(fmt)
    back = rf.Graph.loads(text, fmt)
    assert back == g, back.diff(g)
    assert rf.Graph.loads(text) == g  # detected
    assert back.dumps(fmt) == text  # stable


def test_fbp_round_trip_of_what_the_dsl_holds() -> None:
    g = rf.Graph("dsl", properties={"environment": {"type": "noflo-nodejs"}, "author": "me"})
    g.add_node("a", "core/Repeat", {"x": 10, "y": 20, "routes": "red"})
    g.add_node("b-2", "math/Double")
    g.add_edge("a", "out", "b-2", "in", src_index=1, tgt_index=3)
    for data in ("it's", "back\\slash\\", "", 5, -2.5, True, False, None, [1, {"k": "v"}],
                 {"a": "\n\u2028"}):
        g.add_iip(data, "a", "in")
    g.add_inport("numbers", "b-2", "in")
    g.add_outport("out.put", "b-2", "out")
    assert fbp.losses(g) == []
    text = g.dumps("fbp")
    back = rf.Graph.loads(text, "fbp")
    assert back == g, back.diff(g)
    assert formats.detect(text) == "fbp"


def test_fbp_losses_are_listed_and_dropped() -> None:
    g = rich_graph()
    losses = fbp.losses(g)
    assert any("capacity" in loss for loss in losses)
    assert any("group 'grp'" in loss for loss in losses)
    assert any("metadata 'nested'" in loss for loss in losses)
    back = rf.Graph.loads(g.dumps("fbp"), "fbp")
    assert back.groups == [] and back.find_edge("b", "out", "c", "in",
                                                src_index=1, tgt_index=0).capacity is None


def test_fbp_writer_refuses_names_the_dsl_cannot_spell() -> None:
    g = rf.Graph()
    g.add_node("has space", "x")
    with pytest.raises(rf.GraphFormatError, match="node id 'has space'"):
        g.dumps("fbp")
    g2 = rf.Graph()
    g2.add_node("a", "weird.component@1")
    with pytest.raises(rf.GraphFormatError, match="component"):
        g2.dumps("fbp")


# -- hand-written Reflow / NoFlo / YAML / .fbp files -------------------------------------------


def test_reflow_fixture_loads_with_iips_exports_types_groups() -> None:
    g = rf.Graph.load(FIXTURES / "reflow_pipeline.json")
    assert g.name == "pipeline"
    assert g.properties == {"description": "Reads numbers, doubles them and prints them",
                            "version": "1.0.0"}
    assert g.nodes["source"].metadata == {"x": 10, "y": 20, "label": "Source"}
    assert g.nodes["sink"].metadata == {}
    e = g.find_edge("source", "out", "double", "in")
    assert e.capacity == 16
    assert e.metadata == {"route": 1, "fromType": "integer", "toType": "float"}
    assert g.find_edge("double", "out", "sink", "in", src_index=0, tgt_index=2)
    assert [(i.data, i.tgt) for i in g.iips] == [
        ({"start": 1, "count": 3}, Endpoint("source", "config")),
        ("result: ", Endpoint("sink", "prefix")),
    ]
    assert g.iips[0].metadata == {"note": "start value"}
    assert g.inports["numbers"] == rf.ExportedPort(
        "double", "in", None, {"description": "numbers to double", "type": "array<integer>",
                               "reflow": {"expose": True}})  # kept for the round trip
    assert g.outports["result"].metadata == {"type": "optional<float>", "reflow": {"expose": True}}
    assert [(gr.name, gr.nodes) for gr in g.groups] == [("math", ["double"]),
                                                      ("io", ["source", "sink"])]
    # writing it back gives Reflow's structure with the same port types
    out = g.to_dict("reflow")
    assert out["inports"]["numbers"]["portType"] == {"type": "array",
                                                     "value": {"type": "integer"}}
    assert out["inports"]["numbers"]["portId"] == "numbers"
    assert out["inports"]["numbers"]["portName"] == "in"
    assert out["outports"]["result"]["portType"] == {"type": "option",
                                                     "value": {"type": "float"}}
    conn = out["connections"][0]
    assert conn["from"]["portType"] == {"type": "integer"}
    assert conn["metadata"] == {"route": 1, "capacity": 16}
    iip = out["connections"][2]
    assert iip["from"]["nodeId"] == "" and iip["data"] == {"start": 1, "count": 3}
    assert rf.Graph.from_dict(out) == g


def test_reflow_case_sensitive_fixture() -> None:
    g = rf.Graph.load(FIXTURES / "reflow_typed_ports.json")
    assert g.case_sensitive
    assert g.find_edge("Reader", "Content", "Parser", "Input").metadata == {
        "fromType": "bytes", "toType": "object<Document>"}
    assert g.outports["Document"] == rf.ExportedPort(
        "Parser", "Output", None, {"type": "array<optional<object<Document>>>",
                                   "reflow": {"expose": True}})
    assert g.outports["Errors"].metadata == {"type": "stream"}
    assert g.nodes["Parser"].metadata == {"componentSpec": {"type": "native"}}
    assert rf.Graph.loads(g.dumps("reflow")) == g


def test_noflo_fixture() -> None:
    g = rf.Graph.load(FIXTURES / "noflo_clock.json")
    assert formats.detect((FIXTURES / "noflo_clock.json").read_text()) == "noflo"
    assert g.name == "clock" and g.properties == {"environment": {"type": "noflo-nodejs"}}
    assert g.find_edge("format", "out", "show", "in", src_index=1, tgt_index=0)
    assert g.iips[0].data == 1000 and g.iips[1].metadata == {"secure": False}
    assert g.inports["interval"].metadata == {"x": 0, "y": 0}
    assert g.groups[0] == rf.Group("display", ["format", "show"], {"description": "output"})


def test_fbp_fixture_matches_noflo_fixture_structure() -> None:
    g = rf.Graph.load(FIXTURES / "clock.fbp")
    assert g.name == "clock"
    assert g.properties == {"environment": {"type": "noflo-nodejs"}}
    assert g.nodes["ticker"].metadata == {"x": 100, "y": 100}
    assert g.inports["interval"] == rf.ExportedPort("ticker", "interval")
    assert [(i.data, str(i.tgt)) for i in g.iips] == [("1000", "ticker.interval"),
                                                     ("%H:%M", "format.template")]
    assert g.find_edge("format", "out", "show", "in", src_index=1, tgt_index=0)


@pytest.mark.parametrize("name", ["pipeline.yaml", "noflo_pipeline.yaml"])
def test_yaml_fixtures(name: str) -> None:
    g = rf.Graph.load(FIXTURES / name)
    if name == "pipeline.yaml":
        assert g.find_edge("gen", "count", "log", "in").capacity == 4
        assert g.iips[0].data == [1, 2, 3]
        assert g.inports["start"].metadata == {"type": "array<integer>"}
        assert g.groups[0].nodes == ["gen", "log"]
    else:
        assert g.name == "noflo-yaml" and g.iips[0].data == "hello"
    assert rf.Graph.loads(g.dumps("yaml"), "yaml") == g


def test_save_picks_format_from_extension(tmp_path: Path) -> None:
    g = rich_graph()
    for suffix, fmt in ((".json", "reflow"), (".yaml", "yaml"), (".yml", "yaml")):
        path = tmp_path / f"g{suffix}"
        g.save(path)
        assert formats.detect(path.read_text()) == fmt
        assert rf.Graph.load(path) == g
    g.save(tmp_path / "n.json", "noflo")
    assert formats.detect((tmp_path / "n.json").read_text()) == "noflo"
    simple = rf.Graph.loads((FIXTURES / "clock.fbp").read_text())
    simple.save(tmp_path / "c.fbp")
    assert (tmp_path / "c.fbp").read_text().startswith("# @name clock")
    assert rf.Graph.load(tmp_path / "c.fbp") == simple


# -- errors -----------------------------------------------------------------------------------


def _err(text: str, fmt: str | None = None) -> rf.GraphFormatError:
    with pytest.raises(rf.GraphFormatError) as info:
        rf.Graph.loads(text, fmt)
    return info.value


def test_json_syntax_error_has_line_and_column() -> None:
    e = _err('{\n  "processes": {\n    "a": {"component": "x",}\n  }\n}')
    assert e.format == "json"
    assert e.where == "line 3, column 28"
    assert "not valid JSON" in str(e)


def test_reflow_wrong_field_type_names_the_field() -> None:
    e = _err(json.dumps({"processes": {"a": {"id": "a", "component": 5}}}), "reflow")
    assert e.format == "reflow" and e.where == "processes.a.component"
    assert "Expected `str`, got `int`" in str(e)


def test_reflow_missing_node_names_the_connection() -> None:
    doc = rf.Graph.loads((FIXTURES / "reflow_pipeline.json").read_text()).to_dict()
    doc["connections"][1]["to"]["nodeId"] = "ghost"
    e = _err(json.dumps(doc))
    assert e.format == "reflow" and e.where == "connections[1]" and "no node 'ghost'" in str(e)


def test_reflow_bad_port_type() -> None:
    doc = rich_graph().to_dict()
    doc["inports"]["numbers"]["portType"] = {"type": "quaternion"}
    e = _err(json.dumps(doc))
    assert e.where == "inports.numbers.portType" and "quaternion" in str(e)


def test_reflow_process_id_mismatch() -> None:
    e = _err(json.dumps({"processes": {"a": {"id": "b", "component": "x"}}}), "reflow")
    assert e.where == "processes.a.id"


def test_noflo_errors() -> None:
    e = _err(json.dumps({"processes": {"a": {}}}), "noflo")
    assert e.format == "noflo" and e.where == "processes.a"
    assert "component" in str(e)
    e = _err(json.dumps({"processes": {"a": {"component": "x"}},
                         "connections": [{"tgt": {"process": "a", "port": "in"}}]}), "noflo")
    assert e.where == "connections[0]" and "'src'" in str(e)
    e = _err(json.dumps({"processes": {"a": {"component": "x"}},
                         "groups": [{"name": "g", "nodes": ["a", "zz"]}]}), "noflo")
    assert e.where == "groups[0]" and "'zz'" in str(e)
    e = _err(json.dumps([1, 2]), "noflo")
    assert e.where == "top level"


def test_fbp_syntax_error_has_line_and_column() -> None:
    e = _err("a(x) OUT -> IN b(y)\nc(z) OUT -> -> d(w)\n", "fbp")
    assert e.format == "fbp" and e.where.startswith("line 2, column")
    assert "expected" in str(e)


def test_fbp_semantic_error() -> None:
    e = _err("a(x) OUT -> IN b\n", "fbp")
    assert e.format == "fbp" and "undefined target node" in str(e)
    e = _err("a() OUT -> IN b(x)\n", "fbp")
    assert "does not have a component" in str(e)


def test_yaml_errors() -> None:
    e = _err("processes:\n  a: {component: x\n", "yaml")
    assert e.format == "yaml" and e.where.startswith("line ")
    e = _err("- 1\n- 2\n", "yaml")
    assert e.where == "top level"
    e = _err("processes:\n  a: {component: [1]}\n")
    assert e.format.startswith("yaml") and e.where == "processes.a.component"


def test_detection_and_not_a_graph() -> None:
    assert formats.detect(rich_graph().dumps("reflow")) == "reflow"
    assert formats.detect(rich_graph().dumps("noflo")) == "noflo"
    assert formats.detect(rich_graph().dumps("yaml")) == "yaml"
    assert formats.detect('{"k": [1]} -> IN A(B)\n') == "fbp"
    assert rf.Graph.loads('{"k": [1]} -> IN A(B)\n').iips[0].data == {"k": [1]}
    assert formats.detect("A(B) OUT -> IN C(D)\nC OUT -> IN E(F)\n") == "fbp"
    e = _err("")
    assert "empty" in str(e)
    e = _err("this is not a graph at all")
    assert e.format == "fbp" and e.where.startswith("line 1")
    e = _err(b"\xff{")
    assert "UTF-8" in str(e)
    e = _err(b"\xff\xfe{")  # a UTF-16 byte-order mark, then half a character
    assert "UTF-16" in str(e)
    with pytest.raises(rf.GraphFormatError, match="unknown format 'xml'"):
        rf.Graph.loads("{}", "xml")
    with pytest.raises(rf.GraphFormatError, match="cannot read"):
        rf.Graph.load("/nonexistent/graph.json")


def test_load_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"processes": 5}')
    with pytest.raises(rf.GraphFormatError) as info:
        rf.Graph.load(path)
    assert str(path) in str(info.value) and "processes" in info.value.where


def test_unserializable_iip_is_a_format_error() -> None:
    g = rf.Graph()
    g.add_node("a", "x")
    g.add_iip(object(), "a", "in")
    with pytest.raises(rf.GraphFormatError, match="JSON"):
        g.dumps("reflow")
    g2 = rf.Graph()
    g2.add_node("a", "x")
    g2.add_iip(float("nan"), "a", "in")
    with pytest.raises(rf.GraphFormatError):
        g2.dumps("noflo")


# -- property-based round trips ------------------------------------------------------------------

json_leaf = (st.none() | st.booleans() | st.integers(-(2**53), 2**53)
             | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=6,
)
meta = st.dictionaries(st.text(min_size=1, max_size=8).filter(
    lambda k: k not in ("capacity", "fromType", "toType")), json_value, max_size=3)
name = st.text(min_size=1, max_size=10)
port_type = st.sampled_from(["any", "integer", "array<string>", "optional<float>",
                             "object<Doc>", "int", "nonsense"])


@st.composite
def graphs(draw: Any) -> rf.Graph:
    cs = draw(st.booleans())
    props = draw(st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k != "name"),
                                 json_value, max_size=3))
    g = rf.Graph(draw(st.text(max_size=10)), case_sensitive=cs, properties=props)
    ids = draw(st.lists(name, min_size=1, max_size=6, unique=True))
    for node_id in ids:
        g.add_node(node_id, draw(st.text(max_size=12)), draw(meta))
    node = st.sampled_from(ids)
    index = st.none() | st.integers(0, 5)
    for _ in range(draw(st.integers(0, 8))):
        m = draw(meta)
        if draw(st.booleans()):
            m["fromType"] = draw(port_type)
        g.add_edge(draw(node), draw(name), draw(node), draw(name), src_index=draw(index),
                   tgt_index=draw(index), metadata=m,
                   capacity=draw(st.none() | st.integers(1, 100)))
    for _ in range(draw(st.integers(0, 4))):
        g.add_iip(draw(json_value), draw(node), draw(name), index=draw(index),
                  metadata=draw(meta))
    for add in (g.add_inport, g.add_outport):
        for public in draw(st.lists(name, max_size=3, unique_by=g.port_name)):
            m = draw(meta)
            if draw(st.booleans()):
                m["type"] = draw(port_type)
            add(public, draw(node), draw(name), index=draw(index), metadata=m)
    for group in draw(st.lists(name, max_size=2, unique=True)):
        g.add_group(group, draw(st.lists(node, max_size=3, unique=True)), draw(meta))
    return g


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(), st.sampled_from(["reflow", "noflo", "yaml"]))
def test_random_graphs_survive_round_trip(g: rf.Graph, fmt: str) -> None:
    text = g.dumps(fmt)
    back = rf.Graph.loads(text, fmt)
    assert back == g, back.diff(g)
    assert rf.Graph.loads(text) == g
    assert rf.Graph.loads(back.dumps(fmt), fmt) == g


dsl_node = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_\-]{0,6}", fullmatch=True)
dsl_port = st.from_regex(r"[a-z_][a-z.0-9_]{0,5}", fullmatch=True)
dsl_word = st.from_regex(r"[a-zA-Z/_0-9]{1,6}", fullmatch=True)
dsl_meta = st.dictionaries(dsl_word.filter(lambda k: k not in ("x", "y")), dsl_word,
                           max_size=2) | st.fixed_dictionaries(
    {"x": st.integers(0, 5000), "y": st.integers(0, 5000)})


@st.composite
def dsl_graphs(draw: Any) -> rf.Graph:
    annotation = st.from_regex(r"[a-zA-Z0-9\-_.][a-zA-Z0-9\-_ .]{0,8}", fullmatch=True)
    g = rf.Graph(draw(st.just("") | annotation),
                 properties=draw(st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True)
                                                 .filter(lambda k: k not in (
                                                     "name", "runtime", "environment")),
                                                 annotation, max_size=2)))
    ids = draw(st.lists(dsl_node, min_size=1, max_size=6, unique=True))
    for node_id in ids:
        g.add_node(node_id, draw(st.from_regex(r"[a-zA-Z/\-0-9_]{1,10}", fullmatch=True)),
                   draw(dsl_meta))
    node = st.sampled_from(ids)
    index = st.none() | st.integers(0, 12)
    for _ in range(draw(st.integers(0, 8))):
        g.add_edge(draw(node), draw(dsl_port), draw(node), draw(dsl_port),
                   src_index=draw(index), tgt_index=draw(index))
    for _ in range(draw(st.integers(0, 4))):
        g.add_iip(draw(json_value), draw(node), draw(dsl_port), index=draw(index))
    for add in (g.add_inport, g.add_outport):
        for public in draw(st.lists(dsl_port, max_size=2, unique=True)):
            add(public, draw(node), draw(dsl_port))
    return g


@settings(max_examples=200, deadline=None)
@given(dsl_graphs())
def test_random_dsl_graphs_survive_fbp_round_trip(g: rf.Graph) -> None:
    assert fbp.losses(g) == []
    text = g.dumps("fbp")
    back = rf.Graph.loads(text, "fbp")
    assert back == g, (text, back.diff(g))
    assert back.dumps("fbp") == text


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=string.printable, max_size=60))
def test_arbitrary_text_gives_graph_or_format_error(text: str) -> None:
    try:
        rf.Graph.loads(text)
    except rf.GraphFormatError as exc:
        assert exc.format or "empty" in str(exc)
