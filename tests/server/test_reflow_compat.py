"""Reflow's /workflows REST and /ws WebSocket surface."""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio
from trio_websocket import open_websocket_url

from tests.server.conftest import Served

REFLOW_GRAPH = {
    "caseSensitive": False,
    "properties": {"name": "wf"},
    "processes": {"d": {"component": "test/Double", "metadata": {}},
                  "r": {"component": "core/Repeat", "metadata": {}}},
    "connections": [
        {"from": {"nodeId": "d", "portId": "out"}, "to": {"nodeId": "r", "portId": "in"}},
        {"to": {"nodeId": "d", "portId": "in"}, "data": 21},
    ],
    "inports": {"x": {"nodeId": "d", "portId": "in"}},
    "outports": {"y": {"nodeId": "r", "portId": "out"}},
}


def request(execution_id: str, **extra: Any) -> dict[str, Any]:
    return {"graph_json": REFLOW_GRAPH, "input": {"x": 5, "ignored": 1},
            "metadata": {"execution_id": execution_id, "workflow_id": "wf-1",
                         "source": "test"}, **extra}


async def test_workflows_rest(client: httpx.AsyncClient) -> None:
    r = await client.post("/workflows", json=request("exec-1"))
    body = r.json()
    assert r.status_code == 200 and body["success"] is True
    assert body["data"] == {"execution_id": "exec-1", "status": "started",
                            "message": "Workflow started in background"}
    with trio.fail_after(10):
        while True:
            state = (await client.get("/workflows/exec-1")).json()["data"]
            if state["status"] != "Running":
                break
    assert state["status"] == "Completed"
    assert sorted(state["result"]["results"]["y"]) == [10, 42]
    assert state["result"]["success"] is True
    r = await client.get("/workflows/nope")
    assert r.status_code == 404 and r.json()["success"] is False
    r = await client.post("/workflows", content=b"{oops")
    assert r.status_code == 400 and r.json()["success"] is False
    r = await client.post("/workflows", json={"graph_json": {"processes": {
        "a": {"component": "no/Such"}}}})
    assert r.status_code == 422 and "no/Such" in r.json()["error"]


async def test_workflow_cancel(client: httpx.AsyncClient) -> None:
    graph = {**REFLOW_GRAPH, "connections": REFLOW_GRAPH["connections"][:1]}
    r = await client.post("/workflows", json={"graph_json": graph, "input": None,
                                              "metadata": {"execution_id": "c1"}})
    assert r.json()["success"], r.text
    # a batch job with no input is idle at once and completes; a service-like one is
    # cancelled: either way cancel reports cancelled and the state is terminal.
    r = await client.post("/workflows/c1/cancel")
    assert r.json()["data"] == {"execution_id": "c1", "status": "cancelled"}
    state = (await client.get("/workflows/c1")).json()["data"]
    assert state["status"] in ("Cancelled", "Completed")


async def test_ws_start_subscribe_and_completion_after_idle(server: Served) -> None:
    async with open_websocket_url(f"{server.ws_url}/ws") as ws:
        await ws.send_message(json.dumps({"type": "start_workflow",
                                          "data": request("ws-1")}))
        messages: list[dict[str, Any]] = []
        with trio.fail_after(10):
            while True:
                msg = json.loads(await ws.get_message())
                messages.append(msg)
                if msg["type"] == "workflow_event" and isinstance(
                        msg["event"]["event_type"], dict):
                    break
        assert messages[0] == {"type": "workflow_started", "success": True,
                               "execution_id": "ws-1"}
        kinds = [m["type"] for m in messages]
        assert "network_event" in kinds
        final = messages[-1]["event"]
        assert "Completed" in final["event_type"]
        assert final["workflow_id"] == "wf-1"
        sent = [m["event"] for m in messages if m["type"] == "network_event"
                and m["event"]["_type"] == "MessageSent"]
        # completion came after the network's last message, not right after start
        assert kinds.index("workflow_event", 1) < len(kinds) - 1
        assert any(e["toPort"] == "y" for e in sent)
        await ws.send_message(json.dumps({"type": "subscribe_workflow",
                                          "execution_id": "ws-1"}))
        ack = json.loads(await ws.get_message())
        assert ack == {"type": "subscription_ack", "success": True, "execution_id": "ws-1"}
        await ws.send_message("{bad json")
        assert json.loads(await ws.get_message())["type"] in ("workflow_event", "error")


async def test_ws_errors(server: Served) -> None:
    async with open_websocket_url(f"{server.ws_url}/ws") as ws:
        for raw, expected in (
            ("{bad", "Invalid JSON"),
            (json.dumps({"no": "type"}), "Missing message type"),
            (json.dumps({"type": "launch"}), "Unknown message type: launch"),
            (json.dumps({"type": "subscribe_workflow", "execution_id": "x"}), "not found"),
            (json.dumps({"type": "start_workflow", "data": {"graph_json": 3}}),
             "Invalid request"),
        ):
            await ws.send_message(raw)
            with trio.fail_after(5):
                msg = json.loads(await ws.get_message())
            assert msg["type"] == "error" and expected in msg["error"], msg


# -- second pass: Reflow's shapes, persistence, webhooks ------------------------------------


async def test_health_is_reflows_envelope_with_reflowpys_fields(client: httpx.AsyncClient
                                                                ) -> None:
    body = (await client.get("/health")).json()
    assert body["success"] is True and body["data"] == "Server is healthy"
    assert isinstance(body["timestamp"], int) and body["timestamp"] > 1_700_000_000_000
    assert body["status"] == "ok" and "version" in body and "error" not in body


async def test_ws_workflow_event_has_reflows_top_level_event_type(server: Served) -> None:
    async with open_websocket_url(f"{server.ws_url}/ws") as ws:
        await ws.send_message(json.dumps({"type": "start_workflow",
                                          "data": request("flat-1")}))
        events = []
        with trio.fail_after(10):
            while True:
                msg = json.loads(await ws.get_message())
                if msg["type"] == "workflow_event":
                    events.append(msg)
                    if isinstance(msg["event_type"], dict) and "Completed" in msg["event_type"]:
                        break
        assert events[0]["event_type"] == "Started"
        final = events[-1]
        assert final["workflow_id"] == "wf-1" and final["execution_id"] == "flat-1"
        assert final["event_type"]["Completed"]["nodes_failed"] == 0
        assert isinstance(final["timestamp"], int) and "data" in final
        await ws.send_message("{}")
        error = json.loads(await ws.get_message())
        assert error == {"type": "error", "success": False, "error": "Missing message type"}


async def test_workflows_survive_a_restart(tmp_path: Any) -> None:
    from tests.server.conftest import start_server

    async with trio.open_nursery() as nursery:
        served = await start_server(nursery, tmp_path / "data")
        async with served.client() as c:
            await c.post("/workflows", json=request("kept-1"))
            with trio.fail_after(10):
                while (await c.get("/workflows/kept-1")).json()["data"]["status"] == "Running":
                    await trio.sleep(0.02)
        served.shutdown.set()
    async with trio.open_nursery() as nursery:
        served = await start_server(nursery, tmp_path / "data")
        async with served.client() as c:
            state = (await c.get("/workflows/kept-1")).json()
            assert state["success"] is True  # 404 on main
            assert state["data"]["workflow_id"] == "wf-1"
            assert state["data"]["status"] == "Completed"
            assert sorted(state["data"]["result"]["results"]["y"]) == [10, 42]
        served.shutdown.set()

# webhooks: tests/server/test_reflow_api_gaps.py (Reflow's WorkflowEvent, retries, SSRF)
