"""Real foreign graphs (tests/fixtures/foreign, origins in ORIGIN.md): each loads, round-trips
without losing a field, and six run end to end on reflowpy components through ``--map``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import reflowpy as rf
from reflowpy.network import formats

ROOT = Path(__file__).resolve().parents[1]
FOREIGN = ROOT / "tests" / "fixtures" / "foreign"
MAPS = FOREIGN / "maps"
FILES = sorted(p for p in FOREIGN.rglob("*") if p.is_file() and p.suffix in (".fbp", ".json")
               and "maps" not in p.parts)
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
_DEFAULTS: tuple[Any, ...] = (None, False, {}, [], "")


def test_the_foreign_corpus_is_all_there() -> None:
    assert len(FILES) == 34
    assert {p.parent.name for p in FILES} >= {"noflo", "noflo-ui", "noflo-browser-app",
                                               "noflo-strings", "simple", "ingestion"}


def _missing(orig: Any, out: Any, path: str = "") -> list[str]:
    """Fields of ``orig`` that ``out`` lacks or changed (defaults written out are fine;
    lists are compared as multisets, since IIPs are written after the edges)."""
    if isinstance(orig, dict):
        if not isinstance(out, dict):
            return [f"{path}: {orig!r} became {out!r}"]
        lost = []
        for key, value in orig.items():
            if value in _DEFAULTS and out.get(key) in _DEFAULTS:
                continue
            if key not in out:
                lost.append(f"{path}.{key} dropped")
            else:
                lost += _missing(value, out[key], f"{path}.{key}")
        return lost
    if isinstance(orig, list):
        if not isinstance(out, list) or len(orig) != len(out):
            return [f"{path}: {len(orig)} items became {out!r:.80}"]
        rest, lost = list(out), []
        for item in orig:
            best = min(rest, key=lambda other: len(_missing(item, other)))
            lost += _missing(item, best, f"{path}[]")
            rest.remove(best)
        return lost
    return [] if orig == out else [f"{path}: {orig!r} became {out!r}"]


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(FOREIGN)) for p in FILES])
def test_foreign_graph_loads_and_round_trips_losslessly(path: Path) -> None:
    graph = formats.load(path)
    assert graph.nodes
    for fmt in ("reflow", "noflo", "yaml"):
        back = formats.loads(formats.dumps(graph, fmt), fmt)
        assert back == graph, back.diff(graph)
    text = path.read_text(encoding="utf-8")
    source = formats.detect(text)
    if source == "fbp":
        again = formats.loads(formats.dumps(graph, "fbp"), "fbp")
        assert again.nodes == graph.nodes and again.iips == graph.iips
        assert {(e.src, e.tgt) for e in again.edges} == {(e.src, e.tgt) for e in graph.edges}
    else:  # every field of the original document is in what we write in its format
        written = json.loads(formats.dumps(graph, source))
        assert _missing(json.loads(text), written) == []


def test_reflow_workspace_fields_expose_and_port_case_survive() -> None:
    path = FOREIGN / "reflow-workspace" / "simple" / "processor.graph.json"
    graph = formats.load(path)
    assert graph.extra["graph_dependencies"][0]["graphName"] == "generator"
    assert graph.extra["external_connections"][0]["fromPort"] == "Output"
    assert set(graph.extra) == {"graph_dependencies", "external_connections",
                                "provided_interfaces", "required_interfaces"}
    doc = json.loads(graph.dumps("reflow"))
    assert doc["inports"]["data_in"]["portName"] == "Input"
    assert doc["inports"]["data_in"]["portId"] == "Input"
    assert doc["inports"]["data_in"]["expose"] is True
    assert doc["required_interfaces"]["data_input"]["required"] is True
    # through NoFlo JSON and back to Reflow: still nothing lost
    again = formats.loads(formats.dumps(formats.loads(graph.dumps("noflo")), "reflow"))
    assert json.loads(again.dumps("reflow")) == doc


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reflowpy.cli", "run", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd, env=ENV)


def _lines(out: str) -> list[Any]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{\"port\"")]


def _printed(out: str) -> list[str]:
    """The text of core/Output's JSON lines (``{"node", "value", "text"}``)."""
    return [json.loads(line)["text"] for line in out.splitlines()
            if line.startswith("{\"node\"")]


def test_noflo_helloworld_runs_through_a_map() -> None:
    proc = _run(str(FOREIGN / "noflo" / "helloworld_hello.fbp"), "--map",
                str(MAPS / "noflo.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert _printed(proc.stdout)[-1] == "Hello, World!"


@pytest.mark.parametrize("name", ["subgraph.fbp", "subgraph_legacy.fbp"])
def test_noflo_subgraph_fixtures_run_through_a_map(name: str) -> None:
    proc = _run(str(FOREIGN / "noflo" / name), "--map", str(MAPS / "noflo.yaml"),
                "-i", "in=5", "-i", 'in="x"')
    assert proc.returncode == 0, proc.stderr
    assert _lines(proc.stdout) == [{"port": "out", "value": 5}, {"port": "out", "value": "x"}]


def test_noflo_strings_sendjson_runs_through_a_map() -> None:
    proc = _run(str(FOREIGN / "noflo-strings" / "SendJson.fbp"), "--map",
                str(MAPS / "noflo.yaml"), "-i", 'json="{\\"a\\": [1, 2]}"', "-i", "in=null")
    assert proc.returncode == 0, proc.stderr
    assert _lines(proc.stdout) == [{"port": "out", "value": {"a": [1, 2]}}]


def test_noflo_linecount_reads_the_file_next_to_the_graph(tmp_path: Path) -> None:
    folder = tmp_path / "linecount"
    folder.mkdir()
    shutil.copy(FOREIGN / "noflo" / "linecount_count.fbp", folder / "count.fbp")
    (folder / "package.json").write_text('{\n  "name": "demo",\n  "version": "1.0.0"\n}\n')
    # run from elsewhere: 'package.json' in the graph resolves against the graph's folder
    proc = _run(str(folder / "count.fbp"), "--map", str(MAPS / "noflo.yaml"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _printed(proc.stdout) == ["1", "2", "3", "4"]  # Display prints each count
    proc = _run(str(folder / "count.fbp"), "--map", str(MAPS / "noflo.yaml"), "--cwd",
                str(tmp_path), cwd=tmp_path)  # overridden: no package.json there
    assert "No such file or directory" in proc.stdout


def test_reflow_workspace_runs_as_one_graph_through_a_map() -> None:
    proc = _run(str(FOREIGN / "reflow-workspace" / "simple"), "--map",
                str(MAPS / "reflow_workspace.yaml"))
    assert proc.returncode == 0, proc.stderr
    lines = _lines(proc.stdout)
    assert [v["value"] for v in lines if v["port"] == "processor.data_out"] == [1, 2, 3]
    assert [v["value"] for v in lines if v["port"] == "generator.data_out"] == [1, 2, 3]


def test_unmapped_components_and_ports_get_did_you_mean(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("components:\n  Output: core/Outptu\n")
    proc = _run(str(FOREIGN / "noflo" / "helloworld_hello.fbp"), "--map", str(bad))
    assert proc.returncode == 3, proc.stderr
    assert "did you mean 'core/Output'" in proc.stderr and "Traceback" not in proc.stderr
    bad.write_text("components:\n  Merge: core/Merge\n  Split: {component: core/Split,"
                   " inports: {IN: inn}}\n")
    proc = _run(str(FOREIGN / "noflo" / "subgraph.fbp"), "--map", str(bad))
    assert proc.returncode == 3
    assert "has no in-port 'inn'; did you mean 'in'?" in proc.stderr
    bad.write_text("components: [1, 2]\n")
    proc = _run(str(FOREIGN / "noflo" / "subgraph.fbp"), "--map", str(bad))
    assert proc.returncode == 3 and "not a valid map" in proc.stderr
    proc = _run(str(FOREIGN / "reflow-workspace"))  # unknown Reflow actors, no map
    assert proc.returncode == 3 and "no component 'ApiFetcherActor'" in proc.stderr


def test_noflo_project_graphs_are_components_by_name(tmp_path: Path) -> None:
    graphs = tmp_path / "graphs"
    graphs.mkdir()
    (graphs / "Twice.fbp").write_text(
        "INPORT=a.IN:IN\nOUTPORT=b.OUT:OUT\na(core/Repeat) OUT -> IN b(core/Repeat)\n")
    (graphs / "main.fbp").write_text(
        "INPORT=t.IN:IN\nOUTPORT=t.OUT:OUT\nt(Twice)\n")
    proc = _run(str(tmp_path), "-i", "in=3")
    assert proc.returncode == 0, proc.stderr
    assert _lines(proc.stdout) == [{"port": "out", "value": 3}]
    proc = _run(str(graphs / "main.fbp"), "--graphs", str(graphs), "-i", "in=4")
    assert proc.returncode == 0, proc.stderr
    assert _lines(proc.stdout) == [{"port": "out", "value": 4}]
    reg = rf.default_registry()
    from reflowpy.network.formats import workspace

    assert workspace.register_graphs(reg, graphs) == ["Twice", "main"]
    assert reg.describe("Twice").subgraph
