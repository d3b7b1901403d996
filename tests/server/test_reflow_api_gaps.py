"""Reflow's /zeal/convert, /zeal/workflows, /register-api-tools and webhook callbacks,
with real HTTP clients against a real server, and webhooks received by a real HTTP
server (tests/server/_receiver.py)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from reflowpy.server.policy import CapabilityRefused
from reflowpy.server.webhooks import WebhookPolicy, check_headers
from tests.scale import long_scale
from tests.server.conftest import Served, start_server
from tests.server.test_reflow_compat import request

FAST = {"webhook_allow": ["127.0.0.1/32"], "webhook_backoff": 0.01}


async def _finished(c: httpx.AsyncClient, ex_id: str) -> dict[str, Any]:
    with trio.fail_after(20):
        while True:
            state = (await c.get(f"/workflows/{ex_id}")).json()["data"]
            if state["status"] != "Running":
                return state  # type: ignore[no-any-return]
            await trio.sleep(0.02)


async def _hook_settled(served: Served, ex_id: str) -> dict[str, Any]:
    ex = served.state.executions.executions[ex_id]
    with trio.fail_after(20):
        while ex.meta.get("webhook_pending"):
            await trio.sleep(0.01)
    return ex.meta  # type: ignore[no-any-return]


# -- webhooks -------------------------------------------------------------------------


async def test_webhook_is_reflows_workflow_event_with_its_headers(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    from tests.server._receiver import receiving

    served = await start_server(nursery, tmp_path / "d", **FAST)
    async with receiving() as hook, served.client() as c:
        req = request("hook-1")
        req["metadata"].update(webhook_url=f"{hook.url}/done?k=1",
                               webhook_headers={"x-hook": "abc"})
        assert (await c.post("/workflows", json=req)).status_code == 200
        (got,) = await hook.wait_for(1)
    assert got.method == "POST" and got.target == "/done?k=1"
    assert got.headers["x-hook"] == "abc"
    assert got.headers["x-reflow-event-type"] == "Completed"
    assert got.headers["x-reflow-execution-id"] == "hook-1"
    assert got.headers["x-reflow-workflow-id"] == "wf-1"
    assert got.headers["host"] == f"127.0.0.1:{hook.port}"
    event = got.json()
    assert event["workflow_id"] == "wf-1" and event["execution_id"] == "hook-1"
    assert event["event_type"] == "Completed" and isinstance(event["timestamp"], int)
    assert sorted(event["data"]["y"]) == [10, 42]
    assert (await _hook_settled(served, "hook-1"))["webhook_delivered"] is True
    served.shutdown.set()


@pytest.mark.parametrize(("statuses", "requests", "delivered"), [
    ([503, 502, 204], 3, True),     # retried until it lands
    ([500], 4, False),              # bounded: 4 attempts, then given up
    ([429, 200], 2, True),          # 429 is retried
    ([400], 1, False),              # a 4xx refusal is final
])
async def test_webhook_retries_are_bounded(nursery: trio.Nursery, tmp_path: Path,
                                           statuses: list[int], requests: int,
                                           delivered: bool) -> None:
    from tests.server._receiver import receiving

    served = await start_server(nursery, tmp_path / "d", webhook_attempts=4, **FAST)
    async with receiving(statuses=statuses) as hook, served.client() as c:
        req = request("r")
        req["metadata"]["webhook_url"] = hook.url
        assert (await c.post("/workflows", json=req)).status_code == 200
        meta = await _hook_settled(served, "r")
        assert meta["webhook_delivered"] is delivered
        assert len(hook.requests) == requests
        # every attempt carried the same event
        assert len({r.body for r in hook.requests}) in (1, requests)
    served.shutdown.set()


async def test_unreachable_webhook_gives_up_after_the_bound(nursery: trio.Nursery,
                                                            tmp_path: Path) -> None:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there: connection refused on every attempt
    served = await start_server(nursery, tmp_path / "d", webhook_attempts=3, **FAST)
    async with served.client() as c:
        req = request("u")
        req["metadata"]["webhook_url"] = f"http://127.0.0.1:{port}/"
        assert (await c.post("/workflows", json=req)).status_code == 200
    assert (await _hook_settled(served, "u"))["webhook_delivered"] is False
    served.shutdown.set()


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/", "http://localhost:9/", "http://[::1]:9/",
    "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://192.168.1.1/",
    "http://0.0.0.0:9/", "http://[::ffff:127.0.0.1]:9/", "http://100.64.0.1/",
    "http://[fe80::1]/", "http://224.0.0.1/", "http://2130706433/",
    "file:///etc/passwd", "gopher://127.0.0.1/", "http://user:pw@example.com/",
    "http:///nohost",
])
async def test_webhooks_into_the_servers_own_networks_are_refused(server: Served,
                                                                  url: str) -> None:
    async with server.client() as c:
        req = request("ssrf")
        req["metadata"]["webhook_url"] = url
        r = await c.post("/workflows", json=req)
        assert r.status_code == 403, (url, r.text)
        assert r.json()["success"] is False and "webhook" in r.json()["error"]
        req["metadata"].pop("webhook_url")
        req["metadata"].update(enable_tracing=True, trace_webhook_url=url)
        assert (await c.post("/workflows", json=req)).status_code == 403
    assert "ssrf" not in server.state.executions.executions


@pytest.mark.parametrize("headers", [{"Host": "evil"}, {"content-length": "0"},
                                     {"x-a": "b\r\nx-injected: 1"}, {"bad name": "v"}])
async def test_webhook_headers_that_change_the_request_are_refused(
        nursery: trio.Nursery, tmp_path: Path, headers: dict[str, str]) -> None:
    served = await start_server(nursery, tmp_path / "d", **FAST)
    async with served.client() as c:
        req = request("h")
        req["metadata"].update(webhook_url="http://127.0.0.1:9/", webhook_headers=headers)
        r = await c.post("/workflows", json=req)
        assert r.status_code == 422 and "webhook_headers" in r.json()["error"]
    served.shutdown.set()


async def test_trace_webhook_gets_started_and_final_events(nursery: trio.Nursery,
                                                           tmp_path: Path) -> None:
    from tests.server._receiver import receiving

    served = await start_server(nursery, tmp_path / "d", **FAST)
    async with receiving() as trace, served.client() as c:
        req = request("t")
        req["metadata"].update(enable_tracing=True, trace_webhook_url=trace.url)
        assert (await c.post("/workflows", json=req)).status_code == 200
        got = await trace.wait_for(2)
    first, last = got[0].json(), got[1].json()
    assert first["event_type"] == "Started" and first["source"] == "reflow_server"
    assert last["event_type"] == "Completed" and last["execution_id"] == "t"
    served.shutdown.set()


async def test_a_pending_webhook_is_sent_after_a_restart(tmp_path: Path) -> None:
    from tests.server._receiver import receiving

    async with receiving(statuses=[503]) as down:
        async with trio.open_nursery() as nursery:
            served = await start_server(nursery, tmp_path / "d", webhook_attempts=1000,
                                        webhook_allow=["127.0.0.1/32"], webhook_backoff=0.05)
            async with served.client() as c:
                req = request("p")
                req["metadata"]["webhook_url"] = f"{down.url}/hook"
                assert (await c.post("/workflows", json=req)).status_code == 200
            await down.wait_for(1)
            served.shutdown.set()  # stopped while the webhook is still being retried
        port = down.port
    assert served.state.storage is not None
    from tests.server._receiver import Receiver

    receiver = Receiver()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, receiver.handle, port)
        receiver.port = listeners[0].socket.getsockname()[1]
        served = await start_server(nursery, tmp_path / "d", **FAST)
        (got,) = await receiver.wait_for(1)
        assert got.json()["execution_id"] == "p" and got.json()["event_type"] == "Completed"
        assert (await _hook_settled(served, "p"))["webhook_delivered"] is True
        served.shutdown.set()
        nursery.cancel_scope.cancel()


_ADDRESSES = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))


@settings(max_examples=long_scale(500), deadline=None)
@given(address=_ADDRESSES, allow=st.lists(st.sampled_from(
    ["127.0.0.0/8", "10.0.0.0/8", "::1/128", "fc00::/7", "192.168.0.0/16"]), max_size=2))
def test_webhook_address_policy(address: Any, allow: list[str]) -> None:
    """Allowed exactly when public unicast or inside an allowed network; an IPv4-mapped
    IPv6 address is judged as the IPv4 address it maps."""
    policy_allowed = WebhookPolicy(allow).address_allowed(address)
    plain = address.ipv4_mapped if getattr(address, "ipv4_mapped", None) else address
    expected = (plain.is_global and not plain.is_multicast) or any(
        plain in ipaddress.ip_network(n) for n in allow
        if ipaddress.ip_network(n).version == plain.version)
    assert policy_allowed == expected
    if not expected:
        url = f"http://{address}/" if address.version == 4 else f"http://[{address}]/"
        with pytest.raises(CapabilityRefused):
            WebhookPolicy(allow).check_url(url)


@settings(max_examples=long_scale(300), deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3))
def test_webhook_header_check_never_lets_control_characters_through(
        headers: dict[str, str]) -> None:
    try:
        out = check_headers(headers)
    except ValueError as exc:
        assert "webhook_headers" in str(exc)
        return
    for name, value in out.items():
        assert name.lower() not in ("host", "content-length", "transfer-encoding")
        assert "\r" not in value and "\n" not in value and "\r" not in name


# -- Zeal -----------------------------------------------------------------------------


def _zeal(value: str = "hello") -> dict[str, Any]:
    port = {"label": "", "required": False, "multiple": False}
    return {
        "id": "zw-1", "name": "Zeal demo", "description": "d",
        "metadata": {"version": "1.0.0", "author": "me"},
        "graphs": [{
            "id": "main", "name": "Main", "namespace": "ns", "is_main": True,
            "nodes": [
                {"id": "txt", "template_id": "tpl_text_input", "node_type": "input",
                 "title": "Text", "icon": "", "variant": "", "shape": "",
                 "ports": [{**port, "id": "out", "port_type": "output"}],
                 "properties": {}, "property_values": {"defaultValue": value},
                 "position": {"x": 0, "y": 0}},
                {"id": "p1", "template_id": "tpl_passthrough", "node_type": "pass",
                 "title": "Pass", "icon": "i", "variant": "v", "shape": "s",
                 "ports": [{**port, "id": "input", "port_type": "input",
                            "data_type": "string"},
                           {**port, "id": "output", "port_type": "output"}],
                 "properties": {"note": {"defaultValue": "n"}},
                 "position": {"x": 10, "y": 20}},
                {"id": "p2", "template_id": "tpl_passthrough", "node_type": "pass",
                 "ports": [{**port, "id": "input", "port_type": "input"},
                           {**port, "id": "output", "port_type": "output"}],
                 "properties": {}, "position": {"x": 30, "y": 20}},
            ],
            "connections": [
                {"id": "c0", "from": {"node_id": "txt", "port_id": "out"},
                 "to": {"node_id": "p1", "port_id": "input"}},
                {"id": "c1", "from": {"node_id": "p1", "port_id": "output"},
                 "to": {"node_id": "p2", "port_id": "input"}},
            ],
            "groups": [{"id": "g", "name": "G", "nodes": ["p1", "p2"]}],
        }],
    }


async def test_zeal_convert_shape(client: httpx.AsyncClient) -> None:
    r = await client.post("/zeal/convert", json=_zeal())
    body = r.json()
    assert r.status_code == 200 and body["success"] is True, r.text
    data = body["data"]
    assert data["required_actors"] == ["tpl_text_input", "tpl_passthrough", "tpl_passthrough"]
    assert data["conversion_metadata"] == {"source_workflow_id": "zw-1",
                                           "source_workflow_name": "Zeal demo",
                                           "node_count": 3, "connection_count": 2}
    graph = data["reflow_graph"]
    assert set(graph["processes"]) == {"p1", "p2"}  # the input widget became an IIP
    assert graph["processes"]["p1"]["component"] == "tpl_passthrough"
    meta = graph["processes"]["p1"]["metadata"]
    assert meta["note"] == "n" and meta["zeal"]["x"] == 10
    iips = [c for c in graph["connections"] if c.get("data") is not None]
    assert iips and iips[0]["data"] == "hello" and iips[0]["to"]["nodeId"] == "p1"
    assert graph["properties"]["workflow_id"] == "zw-1"
    assert graph["inports"]["input"]["nodeId"] == "p1"
    assert graph["inports"]["p2.input"]["nodeId"] == "p2"  # Reflow would drop this one
    assert graph["groups"][0]["nodes"] == ["p1", "p2"]


@pytest.mark.parametrize(("body", "words"), [
    ({"id": "x", "name": "n"}, "graphs"),
    ({"id": "x", "name": "n", "graphs": []}, "No graphs found"),
    ({"id": "x", "name": "n", "graphs": [{"nodes": [{"id": "a"}]}]}, "template_id"),
    ({"id": "x", "name": "n", "graphs": [{"nodes": [{"id": "a", "template_id": "t"}],
                                          "connections": [{"from": {"node_id": "a",
                                                                    "port_id": "o"},
                                                           "to": {"node_id": "zz",
                                                                  "port_id": "i"}}]}]},
     "unknown node 'zz'"),
    ([1, 2], "Invalid Zeal workflow"),
])
async def test_zeal_convert_errors(client: httpx.AsyncClient, body: Any, words: str
                                   ) -> None:
    r = await client.post("/zeal/convert", json=body)
    assert r.status_code == 400 and r.json()["success"] is False
    assert words in r.json()["error"], r.text


async def test_zeal_workflow_runs(client: httpx.AsyncClient) -> None:
    r = await client.post("/zeal/workflows", json={"workflow": _zeal("hi"), "input": None})
    body = r.json()
    assert r.status_code == 200 and body["success"], r.text
    assert body["data"]["status"] == "started"
    ex_id = body["data"]["execution_id"]
    assert ex_id.startswith("zeal_exec_")
    state = await _finished(client, ex_id)
    assert state["status"] == "Completed" and state["workflow_id"] == "zw-1"
    assert state["result"]["results"]["output"] == ["hi"]
    r = await client.post("/zeal/workflows", json={"input": 1})
    assert r.status_code == 400 and "workflow" in r.json()["error"]


async def test_zeal_workflow_is_subject_to_the_policy(nursery: trio.Nursery,
                                                      tmp_path: Path) -> None:
    served = await start_server(nursery, tmp_path / "d", deny_components=["tpl_pass*"])
    async with served.client() as c:
        r = await c.post("/zeal/workflows", json={"workflow": _zeal()})
        assert r.status_code == 403 and "'p1'" in r.json()["error"]
    served.shutdown.set()


# -- /register-api-tools ----------------------------------------------------------------


async def test_register_api_tools_without_a_registry(client: httpx.AsyncClient) -> None:
    r = await client.post("/register-api-tools")
    assert r.json()["data"] == {"registered_actors": 0,
                                "message": "Registered 0 API tool actors"}


async def test_register_api_tools_and_run_one(nursery: trio.Nursery, tmp_path: Path) -> None:
    from tests.server._receiver import receiving

    async with receiving(statuses=[200], reply={"temp": 21}) as api:
        registry = tmp_path / "api_service_registry.json"
        registry.write_text(json.dumps({"services": [{
            "name": "weather", "base_url": f"{api.url}/v1",
            "headers": {"x-api-key": "operator-secret"},
            "tools": [{"name": "forecast", "method": "GET", "path": "/forecast/{city}"},
                      {"name": "report", "method": "POST", "path": "/report"}]}]}))
        served = await start_server(nursery, tmp_path / "d", api_tools=registry)
        async with served.client() as c:
            r = await c.post("/register-api-tools")
            assert r.json()["data"]["registered_actors"] == 2, r.text
            graph = {"processes": {"f": {"component": "api/weather/forecast"}},
                     "connections": [{"to": {"nodeId": "f", "portId": "params"},
                                      "data": {"city": "a/../b?x", "days": 2}}],
                     "outports": {"out": {"nodeId": "f", "portId": "response"}}}
            r = await c.post("/workflows", json={"graph_json": graph, "input": None,
                                                 "metadata": {"execution_id": "api-1"}})
            assert r.status_code == 200, r.text
            state = await _finished(c, "api-1")
        assert state["result"]["results"]["out"][0]["body"] == {"temp": 21}
        (got,) = api.requests
        # the path parameter cannot change the path; the rest is the query
        assert got.target == "/v1/forecast/a%2F..%2Fb%3Fx?days=2"
        assert got.headers["x-api-key"] == "operator-secret"
        served.shutdown.set()


async def test_a_broken_registry_file_is_a_clear_error(nursery: trio.Nursery,
                                                       tmp_path: Path) -> None:
    registry = tmp_path / "r.yaml"
    registry.write_text("services:\n  - name: s\n    base_url: ftp://x\n")
    served = await start_server(nursery, tmp_path / "d", api_tools=registry)
    async with served.client() as c:
        r = await c.post("/register-api-tools")
    assert r.status_code == 500 and r.json()["success"] is False
    assert "base_url" in r.json()["error"] and "r.yaml" in r.json()["error"]
    served.shutdown.set()
