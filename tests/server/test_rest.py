"""REST API against a real served instance over loopback (httpx)."""

from __future__ import annotations

import httpx
import msgspec
import trio

from tests.server.conftest import Served

GRAPH = {
    "properties": {"name": "doubler"},
    "processes": {"d": {"component": "test/Double"}, "r": {"component": "core/Repeat"}},
    "connections": [{"src": {"process": "d", "port": "out"},
                     "tgt": {"process": "r", "port": "in"}}],
    "inports": {"x": {"process": "d", "port": "in"}},
    "outports": {"y": {"process": "r", "port": "out"}},
}

REFLOW_GRAPH = {
    "caseSensitive": False,
    "properties": {"name": "reflow-doubler"},
    "processes": {"d": {"component": "test/Double", "metadata": {}}},
    "connections": [],
    "inports": {"x": {"nodeId": "d", "portId": "in"}},
    "outports": {"y": {"nodeId": "d", "portId": "out"}},
}


async def test_health_and_components(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    comps = {c["name"]: c for c in (await client.get("/components")).json()}
    assert comps["test/Double"]["inports"][0] == {
        "name": "in", "type": "number", "description": "", "required": True,
        "addressable": False}


async def test_openapi_documents_every_route(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    for path in ("/graphs", "/graphs/{id}", "/executions", "/executions/{id}/events",
                 "/executions/{id}/outputs/{port}", "/executions/{id}/dead-letters"):
        assert path in doc["paths"]
    assert "ExecutionCreate" in doc["components"]["schemas"]


async def test_graph_crud_in_noflo_and_reflow_json(client: httpx.AsyncClient) -> None:
    r = await client.post("/graphs", json={"graph": GRAPH, "id": "g1"})
    assert r.status_code == 201, r.text
    assert r.json()["graph"]["processes"]["d"]["component"] == "test/Double"
    r = await client.post("/graphs", json=REFLOW_GRAPH)
    assert r.status_code == 201, r.text
    reflow_id = r.json()["id"]
    assert r.json()["graph"]["inports"]["x"] == {"process": "d", "port": "in"}
    listed = {g["id"]: g for g in (await client.get("/graphs")).json()}
    assert listed["g1"]["nodes"] == 2 and listed["g1"]["edges"] == 1
    assert reflow_id in listed
    r = await client.put("/graphs/g1", json=REFLOW_GRAPH)
    assert r.status_code == 200 and r.json()["graph"]["properties"]["name"] == "reflow-doubler"
    assert (await client.delete("/graphs/g1")).status_code == 204
    assert (await client.get("/graphs/g1")).status_code == 404
    assert (await client.delete("/graphs/g1")).status_code == 404


async def test_invalid_graphs_are_422_with_report(client: httpx.AsyncClient) -> None:
    bad = {"processes": {"a": {"component": "no/Such"}}, "connections": []}
    r = await client.post("/graphs", json=bad)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_graph" and "no/Such" in body["detail"]
    assert body["report"]
    r = await client.post("/graphs", json={"processes": {"a": {"component": 3}}})
    assert r.status_code == 422
    r = await client.post("/graphs", content=b"{not json", headers={
        "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "malformed_json"


async def test_execution_inputs_outputs_and_stop(client: httpx.AsyncClient) -> None:
    await client.post("/graphs", json={"graph": GRAPH, "id": "g"})
    r = await client.post("/executions", json={"graph_id": "g", "inputs": {"x": [1, 2]}})
    assert r.status_code == 201, r.text
    ex = r.json()["id"]
    r = await client.get(f"/executions/{ex}/outputs/y", params={"wait": 5, "after": 0})
    out = r.json()
    while len(out["values"]) < 2:
        more = (await client.get(f"/executions/{ex}/outputs/y",
                                 params={"wait": 5, "after": out["next"]})).json()
        out = {"values": out["values"] + more["values"], "next": more["next"]}
    assert out["values"] == [2, 4]
    r = await client.post(f"/executions/{ex}/inputs/x", json={"values": [10, 20]})
    assert r.status_code == 202
    r = await client.get(f"/executions/{ex}/outputs/y", params={"wait": 5, "after": 2})
    values = r.json()["values"]
    while len(values) < 2:
        values += (await client.get(f"/executions/{ex}/outputs/y",
                                    params={"wait": 5, "after": 2 + len(values)})).json()["values"]
    assert values == [20, 40]
    status = (await client.get(f"/executions/{ex}")).json()
    assert status["status"] in ("running", "idle")
    assert status["counters"]["nodes"]["d"]
    assert status["uptime"] > 0
    r = await client.post(f"/executions/{ex}/stop", json={"mode": "drain"})
    assert r.status_code == 200 and r.json()["status"] == "stopped"
    r = await client.post(f"/executions/{ex}/inputs/x", json={"value": 1})
    assert r.status_code == 409


async def test_inline_execution_until_idle_finishes(client: httpx.AsyncClient) -> None:
    r = await client.post("/executions", json={
        "graph": GRAPH, "inputs": {"x": [3]}, "policy": {"until": "idle"}})
    assert r.status_code == 201, r.text
    ex = r.json()["id"]
    r = await client.get(f"/executions/{ex}/outputs/y", params={"wait": 5})
    assert r.json()["values"] == [6]
    with trio.fail_after(5):
        while (await client.get(f"/executions/{ex}")).json()["status"] != "finished":
            await trio.sleep(0.01)


async def test_execution_errors(client: httpx.AsyncClient) -> None:
    assert (await client.get("/executions/nope")).status_code == 404
    r = await client.post("/executions", json={"graph_id": "missing"})
    assert r.status_code == 404
    r = await client.post("/executions", json={"graph": GRAPH, "graph_id": "x"})
    assert r.status_code == 422
    r = await client.post("/executions", json={"graph": GRAPH, "inputs": {"nope": [1]}})
    assert r.status_code == 422 and "nope" in r.json()["detail"]
    r = await client.post("/executions", json={"graph": GRAPH, "policy": {"restart": "x"}})
    assert r.status_code == 422


async def test_dead_letters_list_resend_delete(client: httpx.AsyncClient) -> None:
    graph = {"processes": {"f": {"component": "test/Fail"}}, "connections": [],
             "inports": {"in": {"process": "f", "port": "in"}}, "outports": {}}
    ex = (await client.post("/executions", json={"graph": graph, "inputs": {"in": [1, 2]}})
          ).json()["id"]
    with trio.fail_after(5):
        letters: list[dict[str, object]] = []
        while len(letters) < 2:
            letters = (await client.get(f"/executions/{ex}/dead-letters")).json()
    assert [letter["value"] for letter in letters] == [1, 2]
    assert letters[0]["error_type"] == "ValueError"
    first, second = letters[0]["id"], letters[1]["id"]
    assert (await client.delete(f"/executions/{ex}/dead-letters/{first}")).status_code == 204
    r = await client.post(f"/executions/{ex}/dead-letters/{second}/resend")
    assert r.status_code == 200 and r.json() == {"id": second, "resent": True}
    with trio.fail_after(5):
        while True:
            ids = [d["id"] for d in (await client.get(f"/executions/{ex}/dead-letters")).json()]
            if ids and second not in ids and first not in ids:
                break
    assert (await client.delete(f"/executions/{ex}/dead-letters/{first}")).status_code == 404


async def test_sse_events_stream(client: httpx.AsyncClient, server: Served) -> None:
    ex = (await client.post("/executions", json={"graph": GRAPH})).json()["id"]
    seen: list[str] = []
    async with client.stream("GET", f"/executions/{ex}/events") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        sent = False
        async for line in resp.aiter_lines():
            if not sent:
                await client.post(f"/executions/{ex}/inputs/x", json={"value": 5})
                sent = True
            if line.startswith("event: "):
                seen.append(line[7:])
            if line.startswith("data: ") and seen and seen[-1] == "MessageSent":
                event = msgspec.json.decode(line[6:])
                if event["toPort"] == "y":
                    assert event["message"] == 10
                    break
    assert "MessageSent" in seen


async def test_sse_output_stream_resumes_with_last_event_id(client: httpx.AsyncClient) -> None:
    ex = (await client.post("/executions", json={"graph": GRAPH, "inputs": {"x": [1, 2, 3]}})
          ).json()["id"]

    async def read(headers: dict[str, str], count: int) -> list[tuple[int, object]]:
        got: list[tuple[int, object]] = []
        event_id = -1
        async with client.stream("GET", f"/executions/{ex}/outputs/y",
                                 params={"stream": "true"}, headers=headers) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            async for line in resp.aiter_lines():
                if line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("data: "):
                    got.append((event_id, msgspec.json.decode(line[6:])))
                    if len(got) == count:
                        return got
        return got

    with trio.fail_after(10):
        first = await read({}, 2)
        assert first == [(0, 2), (1, 4)]
        rest = await read({"last-event-id": "1"}, 1)
    assert rest == [(2, 6)]


async def test_flood_and_disconnects_leave_the_server_working(client: httpx.AsyncClient,
                                                              server: Served) -> None:
    ex = (await client.post("/executions", json={"graph": GRAPH})).json()["id"]
    statuses: list[int] = []

    async def hit(i: int) -> None:
        if i % 3 == 0:
            r = await client.post("/graphs", content=b"{broken" * (i + 1))
        elif i % 3 == 1:
            r = await client.post(f"/executions/{ex}/inputs/x", json={"value": i})
        else:
            r = await client.get("/health")
        statuses.append(r.status_code)

    async def vanish() -> None:
        # open an SSE stream and drop it mid-stream
        async with server.client() as c, c.stream("GET", f"/executions/{ex}/events") as resp:
            async for _ in resp.aiter_bytes():
                break

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for i in range(300):
                nursery.start_soon(hit, i)
            for _ in range(10):
                nursery.start_soon(vanish)
    assert all(s < 500 for s in statuses) and statuses.count(202) == 100
    r = await client.post("/graphs", content=b"x" * (17 * 1024 * 1024))
    assert r.status_code == 413
    assert (await client.get("/health")).json()["status"] == "ok"
    values = (await client.get(f"/executions/{ex}/outputs/y",
                               params={"wait": 5, "limit": 1000})).json()["values"]
    while len(values) < 100:
        values += (await client.get(f"/executions/{ex}/outputs/y", params={
            "wait": 5, "after": len(values)})).json()["values"]
    assert sorted(values) == sorted(2 * i for i in range(1, 300, 3))


FBP_TEXT = "INPORT=d.IN:X\nOUTPORT=r.OUT:Y\nd(test/Double) OUT -> IN r(core/Repeat)\n"
YAML_TEXT = """
properties: {name: from-yaml}
processes:
  d: {component: test/Double}
connections: []
inports: {x: {process: d, port: in}}
outports: {y: {process: d, port: out}}
"""


async def test_graph_uploads_in_every_format_are_stored_as_noflo_json(
        client: httpx.AsyncClient) -> None:
    # .fbp by content type, and by detection when the content type names no format
    for ctype in ("text/x-fbp", "text/plain"):
        r = await client.post("/graphs", content=FBP_TEXT.encode(),
                              headers={"content-type": ctype})
        assert r.status_code == 201, r.text
        doc = r.json()["graph"]
        assert doc["processes"]["r"]["component"] == "core/Repeat"
        assert doc["connections"] == [{"src": {"process": "d", "port": "out"},
                                       "tgt": {"process": "r", "port": "in"}}]
        assert doc["inports"]["x"] == {"process": "d", "port": "in"}
    r = await client.post("/graphs", content=YAML_TEXT.encode(),
                          headers={"content-type": "application/yaml"})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "from-yaml"
    assert r.json()["graph"]["outports"]["y"] == {"process": "d", "port": "out"}
    # the wrapper names the format of a text graph
    r = await client.post("/graphs", json={"graph": FBP_TEXT, "format": "fbp", "id": "w",
                                           "name": "wrapped"})
    assert r.status_code == 201 and r.json()["name"] == "wrapped"
    # an explicit dialect for a JSON body; the edge capacity survives the stored form
    reflow = {**REFLOW_GRAPH, "processes": {**REFLOW_GRAPH["processes"],
                                            "r": {"component": "core/Repeat"}},
              "connections": [{"from": {"nodeId": "d", "portId": "out"},
                               "to": {"nodeId": "r", "portId": "in"},
                               "metadata": {"capacity": 3}}]}
    r = await client.post("/graphs", params={"format": "reflow"},
                          content=msgspec.json.encode(reflow),
                          headers={"content-type": "application/json"})
    assert r.status_code == 201, r.text
    assert r.json()["graph"]["connections"][0]["metadata"] == {"capacity": 3}
    # the stored form runs: inline execution of the stored .fbp graph
    r = await client.post("/executions", json={"graph_id": "w", "inputs": {"x": [4]},
                                               "policy": {"until": "idle"}})
    assert r.status_code == 201, r.text
    out = await client.get(f"/executions/{r.json()['id']}/outputs/y", params={"wait": 5})
    assert out.json()["values"] == [8]


async def test_graph_uploads_in_a_wrong_format_are_422_naming_it(
        client: httpx.AsyncClient) -> None:
    r = await client.post("/graphs", json={"graph": FBP_TEXT, "format": "dot"})
    assert r.status_code == 422 and "unknown format 'dot'" in r.json()["detail"]
    # NoFlo JSON read as Reflow's dialect fails at the field that differs
    r = await client.post("/graphs", params={"format": "reflow"}, json=GRAPH)
    assert r.status_code == 422
    assert "reflow graph at connections[0]" in r.json()["detail"]
    r = await client.post("/graphs", json={"graph": {"processes": {}}, "format": "fbp"})
    assert r.status_code == 422 and "fbp" in r.json()["detail"]
    r = await client.post("/graphs", content=b"d(test/Double) OUT -> ",
                          headers={"content-type": "text/x-fbp"})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("not a valid fbp graph at line 1")
