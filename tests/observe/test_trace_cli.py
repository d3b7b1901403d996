"""``reflowpy run --trace FILE`` and ``reflowpy trace ...`` as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from reflowpy.observe import SqliteStore
from tests.observe.components import failing_graph

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reflowpy.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("cli")
    graph = d / "numbers.json"
    graph.write_text(failing_graph().dumps("reflow"))
    trace = d / "run.trace"
    r = _cli("run", str(graph), "--registry", "tests.observe.components:registry",
             "--input", 'in="1,2,x"', "--input", 'in="5"', "--trace", str(trace))
    assert r.returncode == 1, r.stderr  # a dead letter: exit 1
    assert "trace " in r.stderr and str(trace) in r.stderr
    values = [json.loads(line)["value"] for line in r.stdout.splitlines()]
    assert values == [2, 4, 10]
    return graph, trace


def test_root_cause_in_one_command(recorded: tuple[Path, Path]) -> None:
    _, trace = recorded
    r = _cli("trace", "failures", "--store", str(trace))
    assert r.returncode == 1, r.stderr
    out = r.stdout
    assert "1 failure:" in out
    assert "node 'parse' port 'in' failed (attempt 1): ValueError: invalid literal" in out
    assert 'on message #' in out and '= "x"' in out
    assert 'root cause: input #1 into split.in = "1,2,x"' in out
    j = _cli("trace", "failures", "--store", str(trace), "--json")
    rows = [json.loads(line) for line in j.stdout.splitlines()]
    assert [f["node"] for f in rows] == ["parse"]
    assert rows[0]["inputs"][0]["value"] == "1,2,x"


def test_list_show_lineage_message(recorded: tuple[Path, Path]) -> None:
    _, trace = recorded
    listing = _cli("trace", "list", "--store", str(trace))
    assert listing.returncode == 0 and "numbers" in listing.stdout
    assert "dead_letters" in listing.stdout
    ex = listing.stdout.split()[0]
    show = _cli("trace", "show", ex[:8], "--store", str(trace), "--json", "--kind", "output")
    outs = [json.loads(line) for line in show.stdout.splitlines()]
    assert [o["value"] for o in outs] == [2, 4, 10]
    last = outs[-1]["msg"]
    lin = _cli("trace", "lineage", ex, str(last), "--store", str(trace), "--json")
    assert lin.returncode == 0, lin.stderr
    data = json.loads(lin.stdout)
    assert [h["value"] for h in data["inputs"]] == ["5"]
    assert [h["node"] for h in data["hops"]] == ["double", "parse", "split", "split"]
    text = _cli("trace", "lineage", "last", str(last), "--store", str(trace))
    assert "inputs: #" in text.stdout and "into split.in" in text.stdout
    msg = _cli("trace", "message", "last", str(data["inputs"][0]["msg"]), "--store", str(trace))
    assert msg.returncode == 0 and "caused #" in msg.stdout
    tail = _cli("trace", "tail", "--store", str(trace), "--limit", "1")
    assert tail.returncode == 0 and "shutdown" in tail.stdout


def test_clear_errors(tmp_path: Path, recorded: tuple[Path, Path]) -> None:
    r = _cli("trace", "list", "--store", str(tmp_path / "missing.sqlite"))
    assert r.returncode == 2 and "no trace store at" in r.stderr
    r = _cli("trace", "show", "zzz", "--store", str(recorded[1]))
    assert r.returncode == 2 and "no execution 'zzz'" in r.stderr
    r = _cli("trace", "lineage", "last", "99999", "--store", str(recorded[1]))
    assert r.returncode == 2 and "has no message 99999" in r.stderr
    assert "Traceback" not in r.stderr


def test_replay_reproduces_a_deterministic_graph(recorded: tuple[Path, Path]) -> None:
    _, trace = recorded
    r = _cli("trace", "replay", "--store", str(trace),
             "--registry", "tests.observe.components:registry")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 inputs sent, 3 outputs compared" in r.stdout
    assert "outputs identical" in r.stdout


def test_replay_detects_a_changed_graph(tmp_path: Path, recorded: tuple[Path, Path]) -> None:
    trace = tmp_path / "changed.trace"
    trace.write_bytes(recorded[1].read_bytes())
    store = SqliteStore(trace)  # the recorded output 4 becomes 5: replay must notice
    ex = store.execution().id
    rows = [msgspec.structs.astuple(r) for r in store.events(ex, limit=10**6)]
    assert any(r[3] == "output" and r[10] == 4 for r in rows)
    store.clear_events(ex)
    store.append([(*r[:10], 5 if r[3] == "output" and r[10] == 4 else r[10], *r[11:])
                  for r in rows])
    store.close()
    r = _cli("trace", "replay", "--store", str(trace),
             "--registry", "tests.observe.components:registry")
    assert r.returncode == 1
    assert "port 'out' value 1: recorded 5, replayed 4" in r.stdout
