"""Capabilities of posted graphs: components by pattern, scripts, network, workspace.

On main a posted ``io/ReadFile`` read ``/etc/shadow``, ``io/WriteFile`` wrote anywhere,
and ``--no-setsource`` let a ``script/python`` node with ``network: true`` run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

import reflowpy as rf
from reflowpy.server.policy import CapabilityRefused
from tests.server.conftest import Served, start_server
from tests.server.test_fbp import Fbp


def _graph(component: str, metadata: dict[str, Any], node: str = "n",
           iip: Any = None) -> dict[str, Any]:
    g: dict[str, Any] = {"processes": {node: {"component": component, "metadata": metadata}},
                         "connections": []}
    if iip is not None:
        g["connections"].append({"data": iip, "tgt": {"process": node, "port": "in"}})
    return g


async def _post(served: Served, graph: dict[str, Any], **extra: Any) -> httpx.Response:
    async with served.client() as c:
        return await c.post("/executions", json={"graph": graph, "policy": {"until": "idle"},
                                                 **extra})


def _refused(r: httpx.Response, *words: str) -> None:
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["error"] == "capability_refused"
    for word in words:
        assert word in body["detail"], (word, body["detail"])


@pytest.mark.parametrize("path", ["/etc/shadow", "/etc/passwd", "../../../../etc/passwd",
                                  "sub/../../outside.txt", "/proc/self/environ"])
async def test_file_paths_outside_the_workspace_are_refused(server: Served, path: str) -> None:
    _refused(await _post(server, _graph("io/ReadFile", {"path": path}, "reader")),
             "'reader'", "outside the workspace", "--workspace")
    _refused(await _post(server, _graph("io/WriteFile", {"path": path}, "w"), ), "'w'")
    _refused(await _post(server, _graph("io/SqliteQuery", {"database": path,
                                                           "query": "select 1"}, "q")), "'q'")


async def test_relative_paths_live_in_the_workspace(server: Served) -> None:
    workspace = server.data_dir / "workspace"
    r = await _post(server, _graph("io/WriteFile", {"path": "out.txt"}, "w", iip="hello"))
    assert r.status_code == 201, r.text
    async with server.client() as c:
        ex = r.json()["id"]
        with trio.fail_after(10):
            while (await c.get(f"/executions/{ex}")).json()["status"] != "finished":
                await trio.sleep(0.02)
    assert (workspace / "out.txt").read_text().strip() == "hello"


async def test_finished_means_the_teardowns_ran(server: Served) -> None:
    """A batch is "finished" only once its network stopped and every teardown ran: a
    node whose teardown is still writing (to a FIFO nobody reads yet) keeps the
    execution "stopping". The status used to say "finished" at the idle point, before
    the stop, so a client could read a writer's file before it was flushed."""
    fifo = server.data_dir / "teardown.fifo"
    os.mkfifo(fifo)
    r = await _post(server, _graph("test/TeardownWrites", {"path": str(fifo)}, "t",
                                   iip="x"))
    assert r.status_code == 201, r.text
    ex = r.json()["id"]
    async with server.client() as c:
        async def status() -> str:
            return str((await c.get(f"/executions/{ex}")).json()["status"])

        data = b""
        try:
            with trio.fail_after(30):
                while await status() in ("starting", "running"):
                    await trio.sleep(0.02)
                assert await status() == "stopping"
                data = await trio.to_thread.run_sync(fifo.read_bytes)
                while (now := await status()) == "stopping":
                    await trio.sleep(0.02)
        finally:
            if not data:  # a failed check: let the blocked write through, or the
                # server's stop waits on the FIFO for ever
                os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    assert data == b"done"
    assert now == "finished"


async def test_a_symlink_out_of_the_workspace_is_refused(server: Served) -> None:
    workspace = server.data_dir / "workspace"
    os.symlink("/etc", workspace / "etc-link")
    _refused(await _post(server, _graph("io/ReadFile", {"path": "etc-link/passwd"})),
             "outside the workspace")


async def test_paths_arriving_as_packets_are_confined_too(server: Served) -> None:
    workspace = server.data_dir / "workspace"
    (workspace / "ok.txt").write_text("inside\n")
    graph = {"processes": {"r": {"component": "io/ReadFile", "metadata": {}}},
             "connections": [], "inports": {"paths": {"process": "r", "port": "in"}},
             "outports": {"lines": {"process": "r", "port": "out"},
                          "errors": {"process": "r", "port": "error"}}}
    async with server.client() as c:
        ex = (await c.post("/executions", json={"graph": graph})).json()["id"]
        await c.post(f"/executions/{ex}/inputs/paths", json={"values": ["/etc/passwd",
                                                                        "ok.txt"]})
        r = await c.get(f"/executions/{ex}/outputs/lines", params={"wait": 10})
        assert r.json()["values"] == ["inside"]
        errors = (await c.get(f"/executions/{ex}/outputs/errors",
                              params={"wait": 10})).json()["values"]
        assert len(errors) == 1 and "outside the workspace" in json.dumps(errors)
        assert "root:" not in json.dumps(errors)
        await c.post(f"/executions/{ex}/stop")


async def test_components_are_allowed_and_denied_by_pattern(nursery: trio.Nursery,
                                                            tmp_path: Path) -> None:
    served = await start_server(nursery, tmp_path / "d", allow_components=["core/*", "io/*"],
                                deny_components=["io/Write*", "io/Sqlite*"])
    _refused(await _post(served, _graph("io/WriteFile", {"path": "x"}, "w")),
             "'w'", "'io/WriteFile'", "deny 'io/Write*'")
    _refused(await _post(served, _graph("transform/Map", {"expression": "x"}, "m")),
             "'m'", "allow core/*, io/*")
    r = await _post(served, _graph("core/Repeat", {}, "ok", iip=1))
    assert r.status_code == 201, r.text
    async with served.client() as c:
        r = await c.post("/graphs", json={"graph": _graph("io/SqliteInsert", {}, "s")})
        _refused(r, "'s'", "deny 'io/Sqlite*'")
        r = await c.post("/workflows", json={"graph_json": _graph("io/WriteFile", {}, "w")})
        assert r.status_code == 403 and r.json()["success"] is False
        assert "deny 'io/Write*'" in r.json()["error"]
    served.shutdown.set()


SCRIPT = "def process(inputs, config, state):\n    return {'out': inputs['in']}\n"


async def test_no_setsource_refuses_script_nodes_in_posted_graphs(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    served = await start_server(nursery, tmp_path / "d", allow_setsource=False)
    for meta in ({"source": SCRIPT, "sandbox": "process"},
                 {"source": SCRIPT, "sandbox": "process", "network": True}):
        _refused(await _post(served, _graph("script/python", meta, "s")), "'s'",
                 "scripts are disabled")
    _refused(await _post(served, _graph("script/wasm", {"module": "x.wat"}, "w")),
             "scripts are disabled")
    served.shutdown.set()


async def test_script_network_and_sandbox_need_a_grant(nursery: trio.Nursery,
                                                       tmp_path: Path) -> None:
    served = await start_server(nursery, tmp_path / "d", script_sandboxes=["process"])
    _refused(await _post(served, _graph("script/python", {
        "source": SCRIPT, "sandbox": "process", "network": True}, "s")),
        "'s'", "network", "--script-network")
    _refused(await _post(served, _graph("script/python", {"source": SCRIPT}, "d")),
             "'d'", "sandbox 'docker'")
    _refused(await _post(served, _graph("script/python", {
        "file": "/etc/passwd", "sandbox": "process"}, "f")), "outside the workspace")
    served.shutdown.set()


async def test_fbp_edits_are_checked_against_the_policy(nursery: trio.Nursery,
                                                        tmp_path: Path) -> None:
    served = await start_server(nursery, tmp_path / "d", deny_components=["io/*"])
    async with open_websocket_url(f"{served.ws_url}/", subprotocols=["noflo"]) as ws:
        fbp = Fbp(ws)
        await fbp.send("graph", "clear", {"id": "g", "name": "g"})
        await fbp.expect("graph", "clear")
        await fbp.send("graph", "addnode", {"id": "r", "component": "io/ReadFile",
                                            "graph": "g", "metadata": {"path": "/etc/shadow"}})
        msg = await fbp.recv()
        assert msg["command"] == "error" and "'r'" in msg["payload"]["message"]
        assert "deny 'io/*'" in msg["payload"]["message"]
        await fbp.send("graph", "addnode", {"id": "s", "component": "script/python",
                                            "graph": "g", "metadata": {
                                                "source": SCRIPT, "sandbox": "process"}})
        await fbp.expect("graph", "addnode")
        await fbp.send("graph", "changenode", {"id": "s", "graph": "g",
                                               "metadata": {"network": True}})
        msg = await fbp.recv()
        assert msg["command"] == "error" and "network" in msg["payload"]["message"]
    served.shutdown.set()


async def test_the_components_enforce_the_policy_themselves(server: Served) -> None:
    """A graph that skipped the acceptance check (a live edit, an embedding program)
    still cannot leave the workspace: the server's registry carries the policy."""
    registry = server.state.registry
    graph = rf.Graph("bypass")
    graph.add_node("r", "io/ReadFile", {"path": "/etc/passwd"})
    net = rf.Network(graph, registry)
    with pytest.raises(BaseException) as info:
        await net.start()
    assert "outside the workspace" in str(info.value) or any(
        isinstance(e, CapabilityRefused) for e in _leaves(info.value))


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc, *([exc.__cause__] if exc.__cause__ else [])]
