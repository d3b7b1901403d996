"""A graph file is read as the format its extension names, and fields no graph format
defines are reported: a mistyped YAML graph is a YAML error or an ``unknown_field``
warning, never a ``.fbp`` syntax error or a silent empty run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.cli import main
from reflowpy.network import analysis
from reflowpy.network.formats import implied_format

FIXTURES = Path(__file__).parent / "fixtures" / "graphs"
_EXT = {"reflow": ".json", "noflo": ".json", "yaml": ".yaml", "fbp": ".fbp"}


def _graph() -> rf.Graph:
    graph = rf.Graph("kinds")
    graph.add_node("Read", "io/ReadFile", metadata={"config": {"path": "in.txt"}})
    graph.add_node("Show", "core/Output")
    graph.add_edge("Read", "out", "Show", "in")
    graph.add_inport("path", "Read", "path")
    return graph


@pytest.mark.parametrize("fmt", sorted(_EXT))
def test_each_format_reads_back_under_its_extension(tmp_path: Path, fmt: str) -> None:
    graph = _graph()
    path = tmp_path / f"g{_EXT[fmt]}"
    path.write_text(graph.dumps(fmt), encoding="utf-8")
    back = rf.load(path)
    assert sorted(back.nodes) == ["Read", "Show"]
    assert [(e.src.node, e.tgt.node) for e in back.edges] == [("Read", "Show")]


def test_json_inside_a_yaml_file_reads_as_json(tmp_path: Path) -> None:
    path = tmp_path / "g.yml"
    path.write_text(_graph().dumps("noflo"), encoding="utf-8")
    assert sorted(rf.load(path).nodes) == ["Read", "Show"]


# Texts that content detection used to call ".fbp" (a colon where .fbp wants '->').
_NOT_GRAPHS = ["x: 1\n", "proceses:\n  a: {component: core/Repeat}\n", "- 1\n- 2\n",
               "title: my graph\nnodes: [a, b]\n"]


@pytest.mark.parametrize("text", _NOT_GRAPHS)
@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_a_yaml_file_is_never_reported_as_fbp(tmp_path: Path, text: str, suffix: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / f"g{suffix}"
    path.write_text(text, encoding="utf-8")
    code = main(["validate", str(path)])
    captured = capsys.readouterr()
    assert "fbp" not in captured.err and "Traceback" not in captured.err
    if code == 3:
        assert "yaml" in captured.err
    else:  # read as YAML: the stray fields are named
        assert "unknown_field" in captured.out


@pytest.mark.parametrize("text", ["[1, 2]", "[[[[]]]]", "3", '"graph"', "{nope", ""])
def test_a_json_file_is_reported_as_json(tmp_path: Path, text: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "g.json"
    path.write_text(text, encoding="utf-8")
    assert main(["validate", str(path)]) == 3
    err = capsys.readouterr().err
    assert "fbp" not in err and "Traceback" not in err
    assert any(word in err for word in ("json", "noflo", "empty")), err


def test_implied_format() -> None:
    assert [implied_format(p) for p in ("a.FBP", "b.yml", "c.yaml", "d.graph.json",
                                        "e.txt", "noext")] == [
        "fbp", "yaml", "yaml", "json", None, None]


_FIELD_TYPOS = st.sampled_from(analysis.GRAPH_FIELDS).flatmap(
    lambda field: st.integers(0, len(field) - 1).map(
        lambda i: field[:i] + field[i + 1:]))  # one letter dropped


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(typo=_FIELD_TYPOS)
def test_a_mistyped_field_is_warned_with_the_field_meant(tmp_path: Path, typo: str) -> None:
    doc = json.loads(_graph().dumps("noflo"))
    doc[typo] = {}
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    report = analysis.validate(rf.load(path))
    unknown = [p for p in report.problems if p.kind == "unknown_field"]
    assert report.ok and len(unknown) == 1 and unknown[0].severity == "warning"
    assert repr(typo) in unknown[0].message and "did you mean" in unknown[0].message


def test_known_fields_give_no_warning() -> None:
    for fixture in sorted(FIXTURES.glob("*")):
        if implied_format(fixture) is None:
            continue
        try:
            graph = rf.load(fixture)
        except rf.ReflowError:
            continue  # (fixtures of refused files)
        assert analysis.unknown_fields(graph) == [], fixture


def test_run_says_what_it_ignores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("proceses:\n  a: {component: core/Repeat}\n", encoding="utf-8")
    assert main(["run", str(path)]) == 0
    err = capsys.readouterr().err
    assert "'proceses'" in err and "did you mean 'processes'" in err
    assert "declares no node" in err
