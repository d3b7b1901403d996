"""`reflowpy run`: any graph file until idle, outputs as JSON lines, clean Ctrl-C."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import reflowpy as rf
from tests.scale import long_scale

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reflowpy.cli", "run", *args],
                          capture_output=True, text=True, timeout=timeout, env=ENV)


def _graph(tmp_path: Path, fmt: str = "fbp") -> Path:
    g = rf.Graph("cli")
    g.add_node("repeat", "core/Repeat")
    g.add_inport("numbers", "repeat", "in")
    g.add_outport("repeated", "repeat", "out")
    path = tmp_path / f"graph.{fmt}"
    g.save(str(path))
    return path


def test_run_prints_outputs_as_json_lines_for_every_format(tmp_path: Path) -> None:
    for fmt in ("fbp", "json", "yaml"):
        proc = _run(str(_graph(tmp_path, fmt)), "--input", "numbers=2", "-i", "numbers=[1,2]")
        assert proc.returncode == 0, proc.stderr
        lines = [json.loads(line) for line in proc.stdout.splitlines()]
        assert lines == [{"port": "repeated", "value": 2},
                         {"port": "repeated", "value": [1, 2]}], fmt


def test_run_reports_bad_input_and_dead_letters(tmp_path: Path) -> None:
    path = _graph(tmp_path)
    g = rf.Graph("bad")
    g.add_node("double", "transform/Map", {"expression": "x * 2"})
    g.add_inport("numbers", "double", "in")
    g.save(str(tmp_path / "map.json"))
    proc = _run(str(path), "--input", "nonsense")
    assert proc.returncode == 2 and "PORT=JSON" in proc.stderr
    proc = _run(str(path), "--input", "nope=1")
    assert proc.returncode == 2 and "no exported in-port 'nope'" in proc.stderr
    proc = _run(str(tmp_path / "missing.json"))
    assert proc.returncode == 3 and "missing.json" in proc.stderr
    proc = _run(str(tmp_path / "map.json"), "--input", 'numbers={"a": 1}')  # dict * 2 fails
    assert proc.returncode == 1 and "dead letter" in proc.stderr and "'double'" in proc.stderr


def test_run_timeout_and_ctrl_c_stop_cleanly(tmp_path: Path) -> None:
    g = rf.Graph("ticks")
    g.add_node("tick", "time/Interval", {"interval": 0.01})
    g.add_node("out", "core/Output")
    g.add_edge("tick", "out", "out", "in")
    path = tmp_path / "ticks.json"
    g.save(str(path))
    proc = _run(str(path), "--timeout", "0.5")
    assert proc.returncode == 1 and "not idle after 0.5 s" in proc.stderr
    # Ctrl-C at seeded random moments of a busy run (a KeyboardInterrupt raised inside
    # trio's cleanup once crashed trio itself): always a clean stop, exit 130.
    rng = random.Random(9)
    for _ in range(long_scale(4)):
        child = subprocess.Popen([sys.executable, "-m", "reflowpy.cli", "run", str(path)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=ENV)
        assert child.stdout is not None
        child.stdout.readline()  # it is running and printing ticks
        for _ in range(rng.randrange(50)):
            child.stdout.readline()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
        assert child.returncode == 130, err
        assert "interrupted; network stopped" in err and "Traceback" not in err


def test_core_output_lines_join_the_json_lines_stdout(tmp_path: Path) -> None:
    """Every stdout line of ``reflowpy run`` is JSON: core/Output's as
    ``{"node", "value", "text"}`` (text as the node formats it), exported ports' as
    ``{"port", "value"}``; used as a library, core/Output still prints its text."""
    g = rf.Graph("show")
    g.add_node("rep", "core/Repeat")
    g.add_node("show", "core/Output", {"prefix": "got: "})
    g.add_edge("rep", "out", "show", "in")
    g.add_iip({"a": [1, "é"]}, "rep", "in")
    g.add_iip("plain", "rep", "in")
    g.add_outport("shown", "show", "out")
    path = tmp_path / "show.json"
    g.save(str(path))
    proc = _run(str(path))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]  # all JSON
    printed = [x for x in lines if "node" in x]
    assert printed == [{"node": "show", "value": {"a": [1, "é"]}, "text": 'got: {"a": [1, "é"]}'},
                       {"node": "show", "value": "plain", "text": "got: plain"}]
    assert [x for x in lines if "port" in x] == [{"port": "shown", "value": {"a": [1, "é"]}},
                                                 {"port": "shown", "value": "plain"}]
    code = ("import reflowpy as rf, trio\n"
            f"g = rf.Graph.load({str(path)!r})\n"
            "async def main():\n"
            "    async with rf.Network(g) as net:\n"
            "        await net.idle()\n"
            "trio.run(main)\n")
    lib = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=ENV)
    assert lib.returncode == 0, lib.stderr
    assert lib.stdout.splitlines() == ['got: {"a": [1, "é"]}', "got: plain"]
