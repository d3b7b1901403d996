"""Every graph in examples/ runs through ``reflowpy run FILE`` and prints what it should.

What is checked is stdout: the JSON lines ``reflowpy run`` prints for ``core/Output``
nodes (their ``text``) and for values leaving exported out-ports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

#: Extra ``reflowpy run`` arguments per example (as the README's ``make demo`` runs it).
EXAMPLE_INPUTS: dict[str, list[str]] = {
    "hello.json": ["--input", "numbers=1", "--input", "numbers=2", "--input", "numbers=3"],
}

EXPECTED: dict[str, list[str]] = {
    "hello.json": ['{"port": "greetings", "value": "hello, 2!"}',
                   '{"port": "greetings", "value": "hello, 4!"}',
                   '{"port": "greetings", "value": "hello, 6!"}'],
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


def test_there_are_at_least_five_examples() -> None:
    assert len(list(EXAMPLES.glob("*.json"))) >= 5
    assert set(EXPECTED) == {p.name for p in EXAMPLES.glob("*.json")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str) -> None:
    path = EXAMPLES / name
    proc = subprocess.run([sys.executable, "-m", "reflowpy.cli", "run", str(path),
                           *EXAMPLE_INPUTS.get(name, [])],
                          capture_output=True, text=True, timeout=120, cwd=EXAMPLES,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # core/Output's lines are JSON lines too ({"node", "value", "text"}): compare the text
    lines = [json.loads(line)["text"] if line.startswith('{"node"') else line
             for line in out.splitlines() if line.strip()]
    for expected in EXPECTED[name]:
        assert expected in lines, f"{expected!r} not in the output of {name}:\n{out}"
    # lines of one output (same prefix) keep their order; branches may interleave
    for prefix in {x.split(":")[0] for x in EXPECTED[name]}:
        want = [x for x in EXPECTED[name] if x.split(":")[0] == prefix]
        assert [x for x in lines if x in want] == want
