"""``reflowpy peers`` probes the configured peers; ``reflowpy run`` places partitions."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import trio

from tests.bridge.procs import peer_process


async def test_peers_lists_states_of_real_peers(tmp_path: Path) -> None:
    async with peer_process("tok") as (url, _):
        peers = tmp_path / "peers.yaml"
        peers.write_text(
            "peers:\n"
            f"  good: {{url: '{url}', token: tok}}\n"
            f"  badtoken: {{url: '{url}', token: nope}}\n"
            "  gone: {url: 'ws://127.0.0.1:1/bridge', token: tok}\n")
        res = await trio.run_process(
            [sys.executable, "-m", "reflowpy.cli", "peers", "--peers", str(peers), "--json",
             "--timeout", "5"], capture_stdout=True, check=False)
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["good"]["state"] == "ok" and rows["good"]["handshake_ms"] > 0
    assert rows["badtoken"]["state"] == "auth"
    assert "bad token proof" in rows["badtoken"]["detail"]
    assert rows["gone"]["state"] == "unreachable"
    assert res.returncode == 1


async def test_run_places_a_partition(tmp_path: Path) -> None:
    graph = {
        "processes": {
            "a": {"component": "core/Repeat"},
            "b": {"component": "core/MakeFunction", "metadata": {"partition": "p1"}},
            "c": {"component": "core/Repeat"},
        },
        "connections": [
            {"src": {"process": "a", "port": "out"}, "tgt": {"process": "b", "port": "in"}},
            {"src": {"process": "b", "port": "out"}, "tgt": {"process": "c", "port": "in"}},
            {"data": "x * 10", "tgt": {"process": "b", "port": "function"}},
        ],
        "inports": {"in": {"process": "a", "port": "in"}},
        "outports": {"out": {"process": "c", "port": "out"}},
    }
    path = tmp_path / "g.json"
    path.write_text(json.dumps(graph))
    res = await trio.run_process(
        [sys.executable, "-m", "reflowpy.cli", "run", str(path), "-i", "in=1", "-i", "in=2",
         "-i", "in=3", "--timeout", "60"], capture_stdout=True, capture_stderr=True,
        check=False, env={**os.environ})
    lines = [json.loads(x) for x in res.stdout.decode().splitlines()]
    assert res.returncode == 0, res.stderr.decode()
    assert [x["value"] for x in lines] == [10, 20, 30]


def test_a_hostile_peers_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    # the peers file is read like a graph file: bounded size (it read /dev/zero until
    # memory ran out) and YAML without alias bombs (it expanded them with yaml.safe_load)
    import pytest

    from reflowpy.bridge.peers import load_peers
    from reflowpy.errors import ConfigError

    bomb = tmp_path / "bomb.yaml"
    rows = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    rows += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]"
             for i in range(8)]
    bomb.write_text("\n".join(rows) + "\n")
    for source, expected in ((bomb, "expands to more than"), ("/dev/zero", "MiB"),
                             (tmp_path / "none.yaml", "No such file")):
        with pytest.raises(ConfigError, match=expected) as info:
            load_peers(source)
        assert str(source) in str(info.value)
    good = tmp_path / "good.yaml"
    good.write_text("peers:\n  a: {url: 'ws://127.0.0.1:1/bridge', token: t}\n")
    assert load_peers(good).peers["a"].url == "ws://127.0.0.1:1/bridge"
