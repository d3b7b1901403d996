"""FBP ``trace:start/dump/clear/stop`` backed by the trace store, over a real WebSocket."""

from __future__ import annotations

import json
from typing import Any

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from tests.server.conftest import Served


async def _send(ws: WebSocketConnection, protocol: str, command: str,
                payload: dict[str, Any]) -> None:
    await ws.send_message(json.dumps({"protocol": protocol, "command": command,
                                      "payload": payload}))


async def _expect(ws: WebSocketConnection, protocol: str, command: str) -> dict[str, Any]:
    with trio.fail_after(20):
        while True:
            msg = json.loads(await ws.get_message())
            assert msg["command"] != "error", msg
            if msg["protocol"] == protocol and msg["command"] == command:
                return msg["payload"]  # type: ignore[no-any-return]


async def _dump(ws: WebSocketConnection) -> list[dict[str, Any]]:
    await _send(ws, "trace", "dump", {"graph": "g"})
    payload = await _expect(ws, "trace", "dump")
    assert payload["type"] == "flowtrace.json"
    trace = json.loads(payload["flowtrace"])
    assert trace["header"]["main"] == "g"
    return trace["events"]  # type: ignore[no-any-return]


async def test_fbp_trace_is_backed_by_the_store(served: Served) -> None:
    async with open_websocket_url(f"{served.ws_url}/", subprotocols=["noflo"]) as ws:
        await _send(ws, "graph", "clear", {"id": "g", "main": True, "name": "g"})
        await _expect(ws, "graph", "clear")
        for node, comp in (("a", "core/Repeat"), ("d", "test/Double")):
            await _send(ws, "graph", "addnode", {"id": node, "component": comp, "graph": "g"})
        await _send(ws, "graph", "addedge", {"src": {"node": "a", "port": "out"},
                                             "tgt": {"node": "d", "port": "in"}, "graph": "g"})
        await _send(ws, "graph", "addinport", {"public": "in", "node": "a", "port": "in",
                                               "graph": "g"})
        await _send(ws, "graph", "addoutport", {"public": "out", "node": "d", "port": "out",
                                                "graph": "g"})
        await _expect(ws, "graph", "addoutport")
        await _send(ws, "trace", "start", {"graph": "g"})  # before the network runs
        await _expect(ws, "trace", "start")
        await _send(ws, "network", "start", {"graph": "g"})
        await _expect(ws, "network", "started")
        for v in (1, 2):
            await _send(ws, "runtime", "packet", {"graph": "g", "port": "in", "event": "data",
                                                  "payload": v})
            got = await _expect(ws, "runtime", "packet")
            assert got["payload"] == 2 * v
        events = await _dump(ws)
        data = [e["payload"] for e in events if e["command"] == "data"]
        assert [(d["id"], d["data"]) for d in data] == [("a() OUT -> IN d()", 1),
                                                        ("a() OUT -> IN d()", 2)]
        packets = [e["payload"]["payload"] for e in events if e["command"] == "packet"]
        assert packets == [2, 4]
        assert all(e["time"].endswith("Z") for e in events)
        async with served.client() as c:
            traces = (await c.get("/traces")).json()
            # the FBP trace beside the server's own recording of the same network
            by_source = {t["source"]: t["id"] for t in traces}
            assert sorted(by_source) == ["fbp", "server"]
            assert by_source["server"].startswith("fbp-g-")
            assert by_source["fbp"].startswith(by_source["server"] + ".fbp-")
        await _send(ws, "trace", "clear", {"graph": "g"})
        await _expect(ws, "trace", "clear")
        assert await _dump(ws) == []
        await _send(ws, "runtime", "packet", {"graph": "g", "port": "in", "event": "data",
                                              "payload": 5})
        await _expect(ws, "runtime", "packet")
        after = await _dump(ws)  # still recording after clear
        assert [e["payload"]["payload"] for e in after if e["command"] == "packet"] == [10]
        await _send(ws, "trace", "stop", {"graph": "g"})
        await _expect(ws, "trace", "stop")
        await _send(ws, "network", "stop", {"graph": "g"})
        await _expect(ws, "network", "stopped")
