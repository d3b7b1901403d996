"""core/Output in a partition worker writes through the parent's channel.

A node with ``"partition": NAME`` runs in a worker process; its core/Output lines must
come out where an in-process core/Output's would: ``reflowpy run``'s JSON-lines stdout
(``{"node", "value", "text"}``), and the text on stdout in library use. Real CLI, real
worker processes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import trio

_GRAPH = {
    "processes": {
        "a": {"component": "core/Repeat"},
        "show": {"component": "core/Output",
                 "metadata": {"partition": "p1", "prefix": "got: "}},
        "c": {"component": "core/Repeat"},
    },
    "connections": [
        {"src": {"process": "a", "port": "out"}, "tgt": {"process": "show", "port": "in"}},
        {"src": {"process": "show", "port": "out"}, "tgt": {"process": "c", "port": "in"}},
    ],
    "inports": {"in": {"process": "a", "port": "in"}},
    "outports": {"out": {"process": "c", "port": "out"}},
}


async def test_partitioned_core_output_lines_join_the_run_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_text(json.dumps(_GRAPH))
    with trio.fail_after(120):
        res = await trio.run_process(
            [sys.executable, "-m", "reflowpy.cli", "run", str(path), "-i", "in=1",
             "-i", 'in={"k": ["é", 2]}', "--timeout", "60"], capture_stdout=True,
            capture_stderr=True, check=False, env={**os.environ})
    assert res.returncode == 0, res.stderr.decode()
    lines = [json.loads(x) for x in res.stdout.decode().splitlines()]  # every line JSON
    assert [x for x in lines if "node" in x] == [
        {"node": "show", "value": 1, "text": "got: 1"},
        {"node": "show", "value": {"k": ["é", 2]}, "text": 'got: {"k": ["é", 2]}'}]
    assert [x["value"] for x in lines if "port" in x] == [1, {"k": ["é", 2]}]


async def test_partitioned_core_output_prints_its_text_in_library_use(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_text(json.dumps(_GRAPH))
    code = ("import reflowpy as rf, trio\n"
            "from reflowpy.bridge.cluster import BridgedNetwork\n"
            f"g = rf.Graph.load({str(path)!r})\n"
            "async def main():\n"
            "    async with BridgedNetwork(g) as bn:\n"
            "        await bn.network.send('in', 'hello')\n"
            "        async for v in bn.network.outputs('out'):\n"
            "            break\n"
            "trio.run(main)\n")
    with trio.fail_after(120):
        res = await trio.run_process([sys.executable, "-c", code], capture_stdout=True,
                                     capture_stderr=True, check=False, env={**os.environ})
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout.decode().splitlines() == ["got: hello"]
