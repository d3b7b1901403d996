"""The FBP Network Protocol over WebSocket, against a real served instance.

Every message the runtime sends is validated against fbp-protocol's JSON schemas
(from the npm package pinned in tests/js).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tests.server._proc import JS, node_package
from tests.server.conftest import Served, start_server


@cache
def _schemas() -> dict[str, Any]:
    node_package("fbp-protocol")
    out = subprocess.run(
        ["node", "-e", "process.stdout.write(JSON.stringify(require("
         "'fbp-protocol/schema/schemas.js')))"],
        cwd=JS, capture_output=True, check=True, timeout=60)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def validate(message: dict[str, Any]) -> None:
    schema = _schemas()[message["protocol"]]["output"][message["command"]]
    jsonschema.Draft4Validator(schema).validate(message)


class Fbp:
    """A test client: sends commands, collects (validated) messages."""

    def __init__(self, ws: WebSocketConnection, secret: str | None = None) -> None:
        self.ws = ws
        self.secret = secret

    async def send(self, protocol: str, command: str, payload: dict[str, Any] | None = None
                   ) -> None:
        msg: dict[str, Any] = {"protocol": protocol, "command": command,
                               "payload": payload or {}}
        if self.secret is not None:
            msg["secret"] = self.secret
        await self.ws.send_message(json.dumps(msg))

    async def recv(self) -> dict[str, Any]:
        with trio.fail_after(10):
            raw = await self.ws.get_message()
        msg = json.loads(raw)
        validate(msg)
        assert "secret" not in msg
        assert not isinstance(msg["payload"], dict) or "secret" not in msg["payload"]
        return msg  # type: ignore[no-any-return]

    async def expect(self, protocol: str, command: str) -> dict[str, Any]:
        """The next message with this protocol/command (skipping others)."""
        while True:
            msg = await self.recv()
            if msg["protocol"] == protocol and msg["command"] == command:
                return msg["payload"]  # type: ignore[no-any-return]
            assert msg["command"] != "error", msg

    async def expect_packet(self, port: str) -> Any:
        while True:
            payload = await self.expect("runtime", "packet")
            if payload["port"] == port:
                return payload["payload"]


@pytest.fixture
async def fbp(server: Served) -> AsyncIterator[Fbp]:
    async with open_websocket_url(f"{server.ws_url}/", subprotocols=["noflo"]) as ws:
        assert ws.subprotocol == "noflo"
        yield Fbp(ws)


async def _graph(fbp: Fbp, gid: str = "g") -> None:
    await fbp.send("graph", "clear", {"id": gid, "main": True, "name": gid})
    await fbp.expect("graph", "clear")
    await fbp.send("graph", "addnode", {"id": "a", "component": "core/Repeat", "graph": gid})
    await fbp.send("graph", "addinport", {"public": "in", "node": "a", "port": "in",
                                          "graph": gid})
    await fbp.send("graph", "addoutport", {"public": "out", "node": "a", "port": "out",
                                           "graph": gid})
    await fbp.expect("graph", "addoutport")


async def test_runtime_describes_itself(fbp: Fbp) -> None:
    await fbp.send("runtime", "getruntime")
    rt = await fbp.expect("runtime", "runtime")
    assert rt["type"] == "reflowpy"
    for cap in ("protocol:graph", "protocol:network", "protocol:component",
                "protocol:runtime", "protocol:trace", "component:getsource"):
        assert cap in rt["capabilities"]


async def test_packets_in_and_out_and_live_editing(fbp: Fbp) -> None:
    await _graph(fbp)
    await fbp.send("network", "start", {"graph": "g"})
    started = await fbp.expect("network", "started")
    assert started["started"] is True
    await fbp.send("runtime", "packet", {"graph": "g", "port": "in", "event": "data",
                                         "payload": 21})
    assert (await fbp.expect("runtime", "packetsent"))["payload"] == 21
    assert await fbp.expect_packet("out") == 21
    # live edit: a doubler behind the running repeater, exported as a new out-port
    await fbp.send("graph", "addnode", {"id": "d", "component": "test/Double", "graph": "g"})
    await fbp.send("graph", "addedge", {"src": {"node": "a", "port": "out"},
                                        "tgt": {"node": "d", "port": "in"}, "graph": "g"})
    await fbp.send("graph", "addoutport", {"public": "doubled", "node": "d", "port": "out",
                                           "graph": "g"})
    await fbp.expect("graph", "addoutport")
    await fbp.send("runtime", "packet", {"graph": "g", "port": "in", "event": "data",
                                         "payload": 4})
    packet: Any = None
    data: dict[str, Any] | None = None
    while packet is None or data is None:
        msg = await fbp.recv()
        if msg["command"] == "packet" and msg["payload"]["port"] == "doubled":
            packet = msg["payload"]["payload"]
        if msg["command"] == "data" and msg["payload"]["id"] == "a() OUT -> IN d()":
            data = msg["payload"]
    assert packet == 8
    assert data["src"] == {"node": "a", "port": "out"} and data["data"] == 4
    await fbp.send("network", "stop", {"graph": "g"})
    stopped = await fbp.expect("network", "stopped")
    assert stopped["started"] is False and stopped["uptime"] > 0  # 0.0 on main
    await fbp.send("network", "getstatus", {"graph": "g"})
    assert await fbp.expect("network", "status") == {"graph": "g", "running": False,
                                                      "started": False}


async def test_network_data_uses_noflo_edge_ids_and_iips(fbp: Fbp) -> None:
    await fbp.send("graph", "clear", {"id": "h", "main": False})
    await fbp.send("graph", "addnode", {"id": "Hello", "component": "core/Repeat",
                                        "graph": "h"})
    await fbp.send("graph", "addnode", {"id": "World", "component": "core/Drop", "graph": "h"})
    await fbp.send("graph", "addedge", {"src": {"node": "Hello", "port": "out"},
                                        "tgt": {"node": "World", "port": "in"}, "graph": "h"})
    await fbp.send("graph", "addinitial", {"src": {"data": "hi"},
                                           "tgt": {"node": "Hello", "port": "in"},
                                           "graph": "h"})
    await fbp.send("network", "start", {"graph": "h"})
    await fbp.expect("network", "started")
    first = await fbp.expect("network", "data")
    second = await fbp.expect("network", "data")
    assert first == {"id": "DATA -> IN Hello()", "graph": "h",
                     "tgt": {"node": "Hello", "port": "in"}, "data": "hi"}
    assert second["id"] == "Hello() OUT -> IN World()" and second["data"] == "hi"


async def test_component_list_getsource_and_setsource(fbp: Fbp) -> None:
    await fbp.send("component", "list")
    names = set()
    while True:
        msg = await fbp.recv()
        if msg["command"] == "componentsready":
            assert msg["payload"] == len(names)
            break
        names.add(msg["payload"]["name"])
        if msg["payload"]["name"] == "test/Double":
            assert msg["payload"]["inPorts"][0]["type"] == "number"
    assert {"core/Repeat", "test/Double"} <= names
    code = ('"""Triples a number."""\n'
            'inports = ["in"]\noutports = ["out"]\n\n'
            'def process(inputs, config, state):\n    return {"out": inputs["in"] * 3}\n')
    await fbp.send("component", "source", {"name": "Triple", "library": "mine",
                                           "language": "python", "code": code})
    comp = await fbp.expect("component", "component")
    assert comp["name"] == "mine/Triple"
    assert comp["description"] == "Triples a number."
    assert [p["id"] for p in comp["inPorts"]] == ["in"]
    assert [p["id"] for p in comp["outPorts"]] == ["out"]
    await fbp.send("component", "getsource", {"name": "mine/Triple"})
    src = await fbp.expect("component", "source")
    assert src == {"name": "Triple", "library": "mine", "language": "python", "code": code}
    # the new component runs (in its sandbox) in a graph driven over FBP
    await fbp.send("graph", "clear", {"id": "t"})
    await fbp.send("graph", "addnode", {"id": "x", "component": "mine/Triple", "graph": "t"})
    await fbp.send("graph", "addinport", {"public": "in", "node": "x", "port": "in",
                                          "graph": "t"})
    await fbp.send("graph", "addoutport", {"public": "out", "node": "x", "port": "out",
                                           "graph": "t"})
    await fbp.send("network", "start", {"graph": "t"})
    await fbp.expect("network", "started")
    await fbp.send("runtime", "packet", {"graph": "t", "port": "in", "event": "data",
                                         "payload": 5})
    assert await fbp.expect_packet("out") == 15
    await fbp.send("component", "getsource", {"name": "core/Repeat"})
    assert "class" in (await fbp.expect("component", "source"))["code"]


async def test_setsource_runs_in_a_sandbox_not_in_the_server(fbp: Fbp) -> None:
    import os

    code = ('import os\noutports = ["pid", "uid"]\n'
            'def process(inputs, config, state):\n'
            '    send_output("pid", os.getpid())\n'
            '    return {"uid": os.getuid() * config.get("k", 1)}\n')
    await fbp.send("component", "source", {"name": "Who", "language": "python",
                                           "code": code})
    comp = await fbp.expect("component", "component")
    assert [p["id"] for p in comp["outPorts"]] == ["pid", "uid"]
    await fbp.send("graph", "clear", {"id": "w"})
    await fbp.send("graph", "addnode", {"id": "who", "component": "Who", "graph": "w",
                                        "metadata": {"config": {"k": 1},
                                                     "limits": {"wall_time": 5}}})
    await fbp.send("graph", "addinport", {"public": "in", "node": "who", "port": "in",
                                          "graph": "w"})
    for port in ("pid", "uid"):
        await fbp.send("graph", "addoutport", {"public": port, "node": "who", "port": port,
                                               "graph": "w"})
    await fbp.send("network", "start", {"graph": "w"})
    await fbp.expect("network", "started")
    await fbp.send("runtime", "packet", {"graph": "w", "port": "in", "event": "data",
                                         "payload": 1})
    got: dict[str, Any] = {}
    while len(got) < 2:
        packet = await fbp.expect("runtime", "packet")
        got[packet["port"]] = packet["payload"]
    pid, uid = got["pid"], got["uid"]
    assert isinstance(pid, int) and pid != os.getpid()
    if os.geteuid() == 0:
        assert uid != 0  # the process sandbox drops root


async def test_hostile_setsource_cannot_touch_the_server(fbp: Fbp, tmp_path: Path) -> None:
    import uuid

    loaded = tmp_path / "loaded-in-server"
    loader = (f'open({str(loaded)!r}, "w").write("x")\n'
              'def process(inputs, config, state):\n    return None\n')
    await fbp.send("component", "source", {"name": "Loader", "language": "python",
                                           "code": loader})
    await fbp.expect("component", "component")
    assert not loaded.exists()  # setsource only parsed the module
    await fbp.send("graph", "clear", {"id": "l"})
    await fbp.send("graph", "addnode", {"id": "ld", "component": "Loader", "graph": "l"})
    await fbp.send("network", "start", {"graph": "l"})
    err = await fbp.expect("network", "error")
    assert "'ld'" in err["message"] and "failed to load" in err["message"]
    assert not loaded.exists()  # the module ran in the sandbox, as an unprivileged user

    outside = Path("/etc") / f"reflowpy-hostile-{uuid.uuid4().hex}"
    code = ('import os\n'
            'def process(inputs, config, state):\n'
            '    if inputs["in"] == "exit":\n        os._exit(3)\n'
            f'    open({str(outside)!r}, "w").write("pwned")\n'
            '    return {"out": "written"}\n')
    await fbp.send("component", "source", {"name": "Evil", "language": "python",
                                           "code": code})
    await fbp.expect("component", "component")
    await fbp.send("graph", "clear", {"id": "e"})
    await fbp.send("graph", "addnode", {"id": "evil", "component": "Evil", "graph": "e"})
    await fbp.send("graph", "addinport", {"public": "in", "node": "evil", "port": "in",
                                          "graph": "e"})
    await fbp.send("graph", "addoutport", {"public": "out", "node": "evil", "port": "out",
                                           "graph": "e"})
    await fbp.send("network", "start", {"graph": "e"})
    await fbp.expect("network", "started")
    for payload in ("write", "exit"):
        await fbp.send("runtime", "packet", {"graph": "e", "port": "in", "event": "data",
                                             "payload": payload})
        err = await fbp.expect("network", "processerror")
        assert err["id"] == "evil"
        if payload == "write":
            assert any(why in err["error"] for why in (
                "PermissionError", "Permission denied", "Read-only file system"))
    assert not outside.exists()
    # the server is alive and serving; the network keeps running
    await fbp.send("network", "getstatus", {"graph": "e"})
    assert (await fbp.expect("network", "status"))["started"] is True
    await fbp.send("runtime", "getruntime")
    assert (await fbp.expect("runtime", "runtime"))["type"] == "reflowpy"


async def test_setsource_errors_name_the_component(fbp: Fbp) -> None:
    await fbp.send("component", "source", {"name": "Bad", "language": "python",
                                           "code": "def broken(:"})
    err = await fbp.expect("component", "error")
    assert "'Bad'" in err["message"] and "syntax error at line 1" in err["message"]
    await fbp.send("component", "source", {
        "name": "NoFn", "library": "mine", "language": "python",
        "code": "class NoFn:\n    pass\n"})
    err = await fbp.expect("component", "error")
    assert "'mine/NoFn'" in err["message"] and "process(" in err["message"]
    await fbp.send("component", "source", {
        "name": "Ports", "language": "python",
        "code": "inports = [x for x in 'ab']\ndef process(inputs):\n    return None\n"})
    err = await fbp.expect("component", "error")
    assert "'Ports'" in err["message"] and "inports" in err["message"]
    await fbp.send("component", "source", {"name": "Js", "language": "javascript",
                                           "code": "x"})
    assert "language" in (await fbp.expect("component", "error"))["message"]
    await fbp.send("component", "list")
    names = set()
    while (msg := await fbp.recv())["command"] != "componentsready":
        names.add(msg["payload"]["name"])
    assert not {"Bad", "mine/NoFn", "Ports", "Js"} & names


async def test_bad_input_gets_protocol_errors_and_connection_survives(fbp: Fbp) -> None:
    await fbp.ws.send_message("{not json")
    assert "malformed" in (await fbp.expect("runtime", "error"))["message"]
    await fbp.ws.send_message("[1, 2]")
    await fbp.expect("runtime", "error")
    await fbp.send("graph", "frobnicate", {})
    assert "unknown command" in (await fbp.expect("graph", "error"))["message"]
    await fbp.send("nosuch", "thing", {})
    await fbp.expect("runtime", "error")
    await fbp.ws.send_message(json.dumps({"protocol": "graph", "command": "addnode",
                                          "payload": "nope"}))
    await fbp.expect("graph", "error")
    await fbp.send("graph", "addnode", {"graph": "missing", "id": "a", "component": "x"})
    assert (await fbp.expect("graph", "error")) == {"message": "Requested graph not found"}
    await fbp.send("network", "start", {"graph": "missing"})
    await fbp.expect("network", "error")
    await fbp.send("runtime", "getruntime")
    await fbp.expect("runtime", "runtime")


async def test_oversized_frame_closes_only_that_connection(nursery: trio.Nursery,
                                                           tmp_path: Path) -> None:
    served = await start_server(nursery, tmp_path / "d", max_frame=64 * 1024)
    async with open_websocket_url(f"{served.ws_url}/fbp", subprotocols=["noflo"]) as other:
        async with open_websocket_url(f"{served.ws_url}/fbp", subprotocols=["noflo"]) as ws:
            await ws.send_message("x" * (128 * 1024))
            with trio.fail_after(10), pytest.raises(ConnectionClosed):
                await ws.get_message()
        peer = Fbp(other)
        await peer.send("runtime", "getruntime")
        await peer.expect("runtime", "runtime")
    served.shutdown.set()


async def test_a_client_that_never_reads_is_disconnected(nursery: trio.Nursery,
                                                         tmp_path: Path) -> None:
    served = await start_server(nursery, tmp_path / "d", client_queue=8)
    async with open_websocket_url(f"{served.ws_url}/", subprotocols=["noflo"]) as reader:
        peer = Fbp(reader)
        async with open_websocket_url(f"{served.ws_url}/", subprotocols=["noflo"],
                                      message_queue_size=1) as lazy:
            # flood without reading: the runtime must drop this client, not stall
            closed = False
            with trio.fail_after(20):
                try:
                    for _ in range(20000):
                        await lazy.send_message(json.dumps(
                            {"protocol": "component", "command": "list", "payload": {}}))
                except ConnectionClosed:
                    closed = True
            assert closed, "the server kept a client that never reads"
        await peer.send("runtime", "getruntime")
        await peer.expect("runtime", "runtime")
    served.shutdown.set()


async def test_secret_is_required_per_message(nursery: trio.Nursery, tmp_path: Path) -> None:
    served = await start_server(nursery, tmp_path / "d", token="t0ken")
    async with open_websocket_url(f"{served.ws_url}/", subprotocols=["noflo"]) as ws:
        anon = Fbp(ws)
        await anon.send("runtime", "getruntime")
        assert "unauthorized" in (await anon.expect("runtime", "error"))["message"]
        await anon.send("graph", "clear", {"id": "x"})
        assert "unauthorized" in (await anon.expect("graph", "error"))["message"]
        authed = Fbp(ws, secret="t0ken")
        await authed.send("graph", "clear", {"id": "x", "name": "x"})
        assert await authed.expect("graph", "clear") == {"id": "x", "name": "x"}
    async with open_websocket_url(f"{served.ws_url}/", subprotocols=["noflo"],
                                  extra_headers=[(b"authorization", b"Bearer t0ken")]) as ws:
        header = Fbp(ws)
        await header.send("runtime", "getruntime")
        assert "protocol:graph" in (await header.expect("runtime", "runtime"))["capabilities"]
    served.shutdown.set()


async def test_rest_graphs_are_editable_over_fbp_and_edits_persist(
        fbp: Fbp, client: Any) -> None:
    from tests.server.test_rest import GRAPH

    assert (await client.post("/graphs", json={"graph": GRAPH, "id": "shared"})
            ).status_code == 201
    await fbp.send("graph", "addnode", {"id": "extra", "component": "core/Repeat",
                                        "graph": "shared"})
    await fbp.expect("graph", "addnode")
    await fbp.send("graph", "changenode", {"id": "d", "metadata": {"x": 5},
                                           "graph": "shared"})
    await fbp.expect("graph", "changenode")
    stored = (await client.get("/graphs/shared")).json()["graph"]
    assert stored["processes"]["extra"]["component"] == "core/Repeat"
    assert stored["processes"]["d"]["metadata"] == {"x": 5}
    await fbp.send("graph", "clear", {"id": "fresh"})
    await fbp.expect("graph", "clear")
    await fbp.send("graph", "addnode", {"id": "n", "component": "core/Drop", "graph": "fresh"})
    await fbp.expect("graph", "addnode")
    assert "n" in (await client.get("/graphs/fresh")).json()["graph"]["processes"]


async def test_a_graph_rest_replaces_is_edited_afresh_over_fbp(fbp: Fbp, client: Any) -> None:
    """FBP edits a copy of a stored graph; REST replacing (or deleting) that graph
    drops the copy, so the next FBP edit applies to what REST stored, not to the
    stale copy (which would write the old graph back)."""
    from tests.server.test_rest import GRAPH

    assert (await client.post("/graphs", json={"graph": GRAPH, "id": "swap"})
            ).status_code == 201
    await fbp.send("graph", "addnode", {"id": "old", "component": "core/Drop", "graph": "swap"})
    await fbp.expect("graph", "addnode")
    replacement = {"processes": {"solo": {"component": "core/Drop"}}, "connections": []}
    assert (await client.put("/graphs/swap", json={"graph": replacement})).status_code == 200
    await fbp.send("graph", "addnode", {"id": "new", "component": "core/Drop", "graph": "swap"})
    await fbp.expect("graph", "addnode")
    stored = (await client.get("/graphs/swap")).json()["graph"]["processes"]
    assert sorted(stored) == ["new", "solo"]
    assert (await client.delete("/graphs/swap")).status_code == 204
    again = {"processes": {"fresh": {"component": "core/Drop"}}, "connections": []}
    assert (await client.post("/graphs", json={"graph": again, "id": "swap"})).status_code == 201
    await fbp.send("graph", "addnode", {"id": "later", "component": "core/Drop", "graph": "swap"})
    await fbp.expect("graph", "addnode")
    stored = (await client.get("/graphs/swap")).json()["graph"]["processes"]
    assert sorted(stored) == ["fresh", "later"]


async def test_structural_edits_follow_the_graph_layer_and_persist(
        fbp: Fbp, client: Any) -> None:
    await _graph(fbp, "e")
    await fbp.send("graph", "addnode", {"id": "b", "component": "core/Drop", "graph": "e"})
    await fbp.send("graph", "addedge", {"src": {"node": "a", "port": "out"},
                                        "tgt": {"node": "b", "port": "in"}, "graph": "e"})
    await fbp.expect("graph", "addedge")
    # renaming a node carries its edge, exported ports and group membership along
    await fbp.send("graph", "addgroup", {"name": "grp", "nodes": ["a"], "graph": "e"})
    await fbp.expect("graph", "addgroup")
    await fbp.send("graph", "renamenode", {"from": "a", "to": "first", "graph": "e"})
    assert await fbp.expect("graph", "renamenode") == {"from": "a", "to": "first",
                                                       "graph": "e"}
    await fbp.send("graph", "renamegroup", {"from": "grp", "to": "g2", "graph": "e"})
    await fbp.expect("graph", "renamegroup")
    await fbp.send("graph", "changeedge", {"src": {"node": "first", "port": "out"},
                                           "tgt": {"node": "b", "port": "in"},
                                           "metadata": {"route": 4}, "graph": "e"})
    assert (await fbp.expect("graph", "changeedge"))["metadata"] == {"route": 4}
    # a metadata change that changes nothing is still answered with the current state
    await fbp.send("graph", "changegroup", {"name": "g2", "metadata": {}, "graph": "e"})
    assert (await fbp.expect("graph", "changegroup"))["metadata"] == {}
    await fbp.send("graph", "renameinport", {"from": "in", "to": "feed", "graph": "e"})
    await fbp.expect("graph", "renameinport")
    stored = (await client.get("/graphs/e")).json()["graph"]
    assert set(stored["processes"]) == {"first", "b"}
    assert stored["connections"] == [{"src": {"process": "first", "port": "out"},
                                      "tgt": {"process": "b", "port": "in"},
                                      "metadata": {"route": 4}}]
    assert stored["inports"] == {"feed": {"process": "first", "port": "in"}}
    assert stored["outports"] == {"out": {"process": "first", "port": "out"}}
    assert stored["groups"] == [{"name": "g2", "nodes": ["first"], "metadata": {}}]
    # the graph layer's checks answer as protocol errors
    await fbp.send("graph", "renamenode", {"from": "b", "to": "first", "graph": "e"})
    error = await fbp.expect("graph", "error")
    assert "'first'" in error["message"] and "exists" in error["message"]


# -- protocol fidelity (second pass) -------------------------------------------------------


async def _two_stage(fbp: Fbp, gid: str) -> None:
    await fbp.send("graph", "clear", {"id": gid, "name": gid})
    await fbp.expect("graph", "clear")
    for node, component in (("a", "core/Repeat"), ("b", "core/Repeat"), ("c", "core/Drop")):
        await fbp.send("graph", "addnode", {"id": node, "component": component, "graph": gid})
        await fbp.expect("graph", "addnode")
    for src, tgt in (("a", "b"), ("b", "c")):
        await fbp.send("graph", "addedge", {"src": {"node": src, "port": "out"},
                                            "tgt": {"node": tgt, "port": "in"}, "graph": gid})
        await fbp.expect("graph", "addedge")
    await fbp.send("graph", "addinport", {"public": "in", "node": "a", "port": "in",
                                          "graph": gid})
    await fbp.expect("graph", "addinport")


async def test_network_edges_selects_which_data_is_sent(fbp: Fbp) -> None:
    await _two_stage(fbp, "sel")
    await fbp.send("network", "edges", {"graph": "sel", "edges": [
        {"src": {"node": "b", "port": "out"}, "tgt": {"node": "c", "port": "in"}}]})
    await fbp.expect("network", "edges")
    await fbp.send("network", "start", {"graph": "sel"})
    await fbp.expect("network", "started")
    for i in range(3):
        await fbp.send("runtime", "packet", {"graph": "sel", "port": "in", "event": "data",
                                             "payload": i})
    ids = []
    while len(ids) < 3:
        msg = await fbp.recv()
        if msg["command"] == "data":
            ids.append(msg["payload"]["id"])
    assert ids == ["b() OUT -> IN c()"] * 3  # nothing from the unselected a -> b
    await fbp.send("network", "stop", {"graph": "sel"})
    while True:  # a's data would have come before b's: none arrived
        msg = await fbp.recv()
        if msg["command"] == "stopped":
            break
        assert msg["command"] != "data" or msg["payload"]["id"] == "b() OUT -> IN c()", msg
    await fbp.send("network", "edges", {"graph": "sel", "edges": [{"src": {"node": "b"}}]})
    assert "needs node and port" in (await fbp.expect("network", "error"))["message"]


async def test_network_debug_is_known_and_reported(fbp: Fbp) -> None:
    await _two_stage(fbp, "dbg")
    await fbp.send("network", "debug", {"graph": "dbg", "enable": True})
    assert (await fbp.expect("network", "status"))["debug"] is True
    await fbp.send("network", "start", {"graph": "dbg"})
    await fbp.expect("network", "started")
    await fbp.send("network", "stop", {"graph": "dbg"})
    stopped = await fbp.expect("network", "stopped")
    await fbp.send("network", "getstatus", {"graph": "dbg"})
    status = await fbp.expect("network", "status")
    assert status["debug"] is True and status["uptime"] == stopped["uptime"] > 0
    await fbp.send("network", "debug", {"graph": "dbg", "enable": "yes"})
    assert "enable" in (await fbp.expect("network", "error"))["message"]


async def test_getsource_of_a_graph_returns_its_json(fbp: Fbp) -> None:
    await _two_stage(fbp, "lib/flow")
    await fbp.send("component", "getsource", {"name": "lib/flow"})
    source = await fbp.expect("component", "source")
    assert source["language"] == "json" and source["name"] == "flow"
    assert source["library"] == "lib"
    doc = json.loads(source["code"])
    assert set(doc["processes"]) == {"a", "b", "c"}
    await fbp.send("component", "getsource", {"name": "no/such"})
    assert "no/such" in (await fbp.expect("component", "error"))["message"]


async def test_trace_buffersize_bounds_the_trace(fbp: Fbp) -> None:
    await _two_stage(fbp, "tr")
    await fbp.send("trace", "start", {"graph": "tr", "buffersize": 2000})
    await fbp.expect("trace", "start")
    await fbp.send("network", "start", {"graph": "tr"})
    await fbp.expect("network", "started")
    for i in range(50):
        await fbp.send("runtime", "packet", {"graph": "tr", "port": "in", "event": "data",
                                             "payload": i})
    seen = 0
    while seen < 100:  # every packet crosses two edges
        if (await fbp.recv())["command"] == "data":
            seen += 1
    await fbp.send("trace", "dump", {"graph": "tr"})
    dump = await fbp.expect("trace", "dump")
    events = json.loads(dump["flowtrace"])["events"]
    size = sum(len(json.dumps(e, separators=(",", ":"))) for e in events)
    assert 0 < len(events) < 100 and size <= 2000
    assert events[-1]["payload"]["data"] == 49  # the newest are kept
    await fbp.send("trace", "start", {"graph": "tr", "buffersize": -1})
    assert "buffersize" in (await fbp.expect("trace", "error"))["message"]
