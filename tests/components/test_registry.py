"""The library as a whole: names, documentation, discovery, and `reflowpy components`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import reflowpy as rf
from reflowpy.components import ALIASES, COMPONENTS, register_all

ROOT = Path(__file__).resolve().parents[2]


def test_at_least_sixty_documented_components() -> None:
    std = [n for n in COMPONENTS if not n.startswith("reflow/")]
    assert len(std) >= 60
    reg = rf.default_registry()
    for name in COMPONENTS:
        info = reg.describe(name)
        cls = COMPONENTS[name]
        assert info.description, name
        assert cls.__doc__ and len(cls.__doc__.strip()) > 20, name
        for port in (*info.inports, *info.outports):
            assert port.description, f"{name}.{port.name} has no description"


def test_register_all_is_idempotent_and_aliases_resolve() -> None:
    reg = register_all(rf.Registry())
    register_all(reg)
    assert set(reg.names()) == set(COMPONENTS) | {"script/python", "script/wasm"}
    for alias, target in ALIASES.items():
        assert reg.resolve(alias) == target and alias in reg
    assert reg.get("tpl_if_branch") is COMPONENTS["reflow/IfBranch"]


def test_entry_point_components_are_discovered(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "rfplugin_demo.py"
    pkg.write_text(
        "import reflowpy as rf\n"
        "class Shout(rf.Actor):\n"
        "    '''Upper-cases text.'''\n"
        "    inports = [rf.Port('in', description='text')]\n"
        "    outports = [rf.Port('out', description='TEXT')]\n"
        "    async def process(self, ctx):\n"
        "        return {'out': ctx.inputs['in'].upper()}\n")
    dist = tmp_path / "rfplugin_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rfplugin-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[reflowpy.components]\ndemo/Shout = rfplugin_demo:Shout\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = rf.default_registry()
    assert "demo/Shout" in reg and "core/Repeat" in reg
    g = rf.Graph("p")
    g.add_node("s", "demo/Shout")
    g.add_inport("in", "s", "in")
    g.add_outport("out", "s", "out")
    assert rf.run(g, {"in": ["hi"]}, registry=reg) == {"out": ["HI"]}


def _cli(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "reflowpy.cli", "components", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_cli_components_listing_and_json() -> None:
    text = _cli()
    assert "core/Repeat" in text and "flow/If  (also: flow/ConditionalBranch)" in text
    assert f"{len(COMPONENTS) + 2} components" in text  # + script/python, script/wasm
    data = json.loads(_cli("--json"))
    assert len(data) == len(COMPONENTS) + 2
    gate = next(c for c in data if c["name"] == "flow/Gate")
    assert [p["name"] for p in gate["inports"]] == ["in", "open", "close"]
    assert gate["inports"][1]["type"] == "bang"
    only_flow = json.loads(_cli("--json", "flow/"))
    assert only_flow and all(c["name"].startswith("flow/") for c in only_flow)
