"""``reflowpy validate`` and ``reflowpy convert``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import reflowpy as rf
from reflowpy.cli import build_parser, main

FIXTURES = Path(__file__).parent / "fixtures" / "graphs"


def test_validate_ok_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(FIXTURES / "reflow_pipeline.json")]) == 0
    assert capsys.readouterr().out.strip() == "graph 'pipeline': ok"


def test_validate_bad_file_is_a_format_error_exit_3(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads((FIXTURES / "noflo_clock.json").read_text())
    doc["inports"]["ghost"] = {"process": "ghost", "port": "in"}
    # a graph file naming a missing node for an exported port: built through the API it
    # is refused, so the file is a format error naming the field
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    assert main(["validate", str(path)]) == 3
    err = capsys.readouterr().err
    assert "inports.ghost" in err and "no node 'ghost'" in err and "Traceback" not in err


def test_validate_with_registry_finds_unknown_components(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mod = tmp_path / "myreg.py"
    mod.write_text(
        "import reflowpy as rf\n"
        "class Counter(rf.Actor):\n"
        "    inports = [rf.Port('start', type='array<integer>')]\n"
        "    outports = [rf.Port('count', type='integer')]\n"
        "REGISTRY = rf.Registry()\n"
        "REGISTRY.register('core/Counter', Counter)\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        code = main(["validate", str(FIXTURES / "pipeline.yaml"), "--registry",
                     "myreg:REGISTRY"])
    finally:
        sys.path.remove(str(tmp_path))
    out = capsys.readouterr().out
    assert code == 1
    assert "unknown_component" in out and "core/Log" in out
    assert out.startswith("graph 'yaml-pipeline': 1 error(s)")


def test_validate_strict_fails_on_warnings(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    g = rf.Graph("w")
    g.add_node("lonely", "x")
    path = tmp_path / "w.fbp"
    path.write_text("lonely(x)\n")
    assert main(["validate", str(path)]) == 0
    assert main(["validate", str(path), "--strict"]) == 1
    assert "orphan" in capsys.readouterr().out


def test_validate_unreadable_and_not_a_graph(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "missing.json")]) == 3
    assert "cannot read" in capsys.readouterr().err
    junk = tmp_path / "junk.txt"
    junk.write_text("{not json")
    assert main(["validate", str(junk)]) == 3
    err = capsys.readouterr().err
    assert "json" in err and "line 1, column 2" in err


@pytest.mark.parametrize("fmt", ["reflow", "noflo", "fbp", "yaml"])
def test_convert_every_format_to_file(fmt: str, tmp_path: Path) -> None:
    src = FIXTURES / "clock.fbp"
    out = tmp_path / f"out.{fmt}"
    assert main(["convert", str(src), "--to", fmt, "-o", str(out)]) == 0
    assert rf.Graph.load(out) == rf.Graph.load(src)


def test_convert_to_stdout_and_warns_about_fbp_losses(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(FIXTURES / "reflow_pipeline.json"), "--to", "noflo"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["processes"]["double"]["component"] == "math/Double"
    assert main(["convert", str(FIXTURES / "reflow_pipeline.json"), "--to", "fbp"]) == 0
    captured = capsys.readouterr()
    assert "double(math/Double)" in captured.out
    assert "warning: .fbp cannot hold group 'math'" in captured.err


def test_usage_errors() -> None:
    assert main(["convert", "x.json"]) == 2  # --to is required
    assert main(["nonsense"]) == 2
    assert main(["convert", str(FIXTURES / "clock.fbp"), "--to", "xml"]) == 2
    assert main(["--help"]) == 0


def test_subcommands_are_registered() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"validate", "convert"} <= set(sub.choices)  # type: ignore[arg-type]


def test_module_entry_point_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "reflowpy.cli", "validate",
                           str(FIXTURES / "noflo_clock.json")], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr
    assert "graph 'clock': ok" in proc.stdout
