"""A key written twice in one JSON object is refused by the server, as in graph files.

JSON decoders keep the last of two equal keys, so a graph posted with two processes of
one id (or a message with two ``id``) would silently lose one. Every JSON document a
client sends (REST bodies, the FBP protocol's and Reflow's WebSocket messages) is
refused then with both places named; a real server on a loopback port.
"""

from __future__ import annotations

import json

import httpx
import trio
from trio_websocket import open_websocket_url

from tests.server.conftest import Served

_DUP_PROCESS = (b'{"processes": {"a": {"component": "core/Repeat"},\n'
                b' "a": {"component": "core/Output"}}, "connections": []}')


async def test_rest_graph_upload_with_a_duplicate_process_is_refused(
        client: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        r = await client.post("/graphs", content=_DUP_PROCESS,
                              headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["error"] == "duplicate_key"
        assert "process 'a' is defined twice" in body["detail"]
        assert "line 1, column 16 and line 2, column 2" in body["detail"]
        # The wrapper form, and a duplicate deep in metadata.
        wrapped = (b'{"graph": {"processes": {"a": {"component": "core/Repeat",'
                   b' "metadata": {"x": 1, "x": 2}}}}, "id": "g"}')
        r = await client.post("/graphs", content=wrapped,
                              headers={"content-type": "application/json"})
        assert r.status_code == 400 and "key 'x'" in r.json()["detail"], r.text
        assert (await client.get("/graphs/g")).status_code == 404  # nothing stored
        # The same graph without the repeat is taken.
        r = await client.post("/graphs", content=wrapped.replace(b'"x": 1, ', b""),
                              headers={"content-type": "application/json"})
        assert r.status_code in (200, 201), r.text


async def test_reflow_workflow_with_a_duplicate_key_is_refused(
        client: httpx.AsyncClient) -> None:
    body = (b'{"graph_json": {"processes": {"a": {"component": "core/Repeat"},'
            b' "a": {"component": "core/Repeat"}}, "connections": []}}')
    with trio.fail_after(30):
        r = await client.post("/workflows", content=body,
                              headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert "'a' in graph_json.processes is defined twice" in r.text


async def test_fbp_and_reflow_ws_messages_with_a_duplicate_key_get_errors(
        server: Served) -> None:
    with trio.fail_after(60):
        async with open_websocket_url(f"{server.ws_url}/", subprotocols=["noflo"]) as ws:
            await ws.send_message('{"protocol": "graph", "command": "clear", "payload":'
                                  ' {"id": "g", "id": "h", "main": true}}')
            msg = json.loads(await ws.get_message())
            assert msg["command"] == "error", msg
            assert "key 'id' in payload is defined twice" in msg["payload"]["message"]
            assert "line 1, column 55 and line 1, column 66" in msg["payload"]["message"]
            # The connection survives and the same message without the repeat works.
            await ws.send_message('{"protocol": "graph", "command": "clear", "payload":'
                                  ' {"id": "g", "main": true}}')
            msg = json.loads(await ws.get_message())
            assert (msg["protocol"], msg["command"]) == ("graph", "clear"), msg
        async with open_websocket_url(f"{server.ws_url}/ws") as ws:
            await ws.send_message('{"type": "start_workflow", "type": "x"}')
            msg = json.loads(await ws.get_message())
            assert msg["type"] == "error" and "defined twice" in msg["error"], msg
