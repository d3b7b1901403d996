"""Every graph in examples/ runs and prints what it should.

Through ``reflowpy run FILE`` in a subprocess when the CLI has the ``run`` command;
until then through ``rf.run`` in-process (the stdout of ``core/Output`` nodes is what
both paths check).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import reflowpy as rf

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

EXPECTED: dict[str, list[str]] = {
    "log_alerts.json": ["ALERT 5 errors in [1700000160, 1700000220)",
                        "ALERT 9 errors in [1700000220, 1700000280)"],
    "orders_total.json": ["total: 5.0", "total: 8.0",
                          "rejected order 3: 'oops' is not of type 'number'", "total: 14.0"],
    "word_count.json": ['{"the": 3, "dog": 2, "distinct": 9}'],
    "sensor_reorder.json": ['sensor b: {"seq": 0, "sensor": "b", "v": 19.0}',
                            "sensor a avg: 20.75", 'sensor b: {"seq": 4, "sensor": "b", "v": 18.5}',
                            "sensor a avg: 22.75"],
    "reflow_templates.json": ['small: {"amount": 20}', 'big orders: [{"amount": 250},'
                              ' {"amount": 180}]'],
}


def _cli_has_run() -> bool:
    proc = subprocess.run([sys.executable, "-m", "reflowpy.cli", "run", "--help"],
                          capture_output=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc.returncode == 0


def _load(path: Path) -> rf.Graph:
    load = getattr(rf.Graph, "load", None)
    if load is not None:
        graph: rf.Graph = load(str(path))
        return graph
    return _load_json(json.loads(path.read_text()))  # until the formats land on main


def _load_json(doc: dict[str, Any]) -> rf.Graph:
    g = rf.Graph(doc.get("properties", {}).get("name", ""))
    for pid, proc in doc["processes"].items():
        g.add_node(pid, proc["component"], proc.get("metadata") or {})
    for c in doc["connections"]:
        if "tgt" in c:
            if "src" in c:
                g.add_edge(c["src"]["process"], c["src"]["port"], c["tgt"]["process"],
                           c["tgt"]["port"])
            else:
                g.add_iip(c["data"], c["tgt"]["process"], c["tgt"]["port"])
        elif c.get("from") and c["from"].get("nodeId"):
            g.add_edge(c["from"]["nodeId"], c["from"]["portId"], c["to"]["nodeId"],
                       c["to"]["portId"])
        else:
            g.add_iip(c["data"], c["to"]["nodeId"], c["to"]["portId"])
    for public, ep in doc.get("outports", {}).items():
        if "process" in ep:
            g.add_outport(public, ep["process"], ep["port"])
        else:
            g.add_outport(public, ep["nodeId"], ep.get("portName") or ep["portId"])
    return g


def test_there_are_at_least_five_examples() -> None:
    assert len(list(EXAMPLES.glob("*.json"))) >= 5
    assert set(EXPECTED) == {p.name for p in EXAMPLES.glob("*.json")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    path = EXAMPLES / name
    if _cli_has_run():
        proc = subprocess.run([sys.executable, "-m", "reflowpy.cli", "run", str(path)],
                              capture_output=True, text=True, timeout=120, cwd=EXAMPLES,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
    else:
        monkeypatch.chdir(EXAMPLES)
        rf.run(_load(path), timeout=60)
        out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    for expected in EXPECTED[name]:
        assert expected in lines, f"{expected!r} not in the output of {name}:\n{out}"
    # lines of one output (same prefix) keep their order; branches may interleave
    for prefix in {x.split(":")[0] for x in EXPECTED[name]}:
        want = [x for x in EXPECTED[name] if x.split(":")[0] == prefix]
        assert [x for x in lines if x in want] == want
