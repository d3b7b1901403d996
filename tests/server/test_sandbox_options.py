"""Posted graphs cannot weaken the sandbox of their script nodes (issue 10).

``allow_weaker``, ``user``, ``group``, ``image``, ``wasi`` and limits above the
server's defaults are refused with 403 (REST) or an FBP error naming the node and the
rule, unless the operator allows that option (``sandbox_options``). Nothing starts: the
refusal comes before a worker exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import open_websocket_url

from reflowpy.errors import ReflowError
from reflowpy.script.host import Limits
from reflowpy.server.policy import SANDBOX_OPTIONS, CapabilityRefused, GraphPolicy
from tests.scale import long_scale
from tests.server.conftest import Served, start_server
from tests.server.test_fbp import Fbp
from tests.server.test_policy import SCRIPT, _graph, _post, _refused

WEAKENING: list[tuple[str, dict[str, Any]]] = [
    ("allow_weaker", {"allow_weaker": ["namespaces"]}),
    ("allow_weaker", {"allow_weaker": "all"}),
    ("user", {"user": 0}),
    ("group", {"group": 0}),
    ("image", {"image": "docker.io/library/python:3.12"}),
    ("limits.memory_mb", {"limits": {"memory_mb": 1_000_000}}),
    ("limits.wall_time", {"limits": {"wall_time": 1e9}}),
    ("limits.pids", {"limits": {"pids": 100_000}}),
    ("limits.max_frame", {"limits": {"max_frame": 1 << 30}}),
    ("limits.idle_cpu_seconds", {"limits": {"idle_cpu_seconds": 1e6}}),
]


@pytest.mark.parametrize(("rule", "meta"), WEAKENING)
async def test_rest_refuses_weakening_metadata(server: Served, rule: str,
                                               meta: dict[str, Any]) -> None:
    graph = _graph("script/python", {"source": SCRIPT, "sandbox": "process", **meta}, "weak")
    _refused(await _post(server, graph), "'weak'", f"sandbox option {rule}",
             "--allow-sandbox-option")
    assert not server.state.executions.executions  # nothing was started


async def test_wasi_is_refused_on_wasm_nodes(server: Served) -> None:
    _refused(await _post(server, _graph("script/wasm", {"module": "p.wat", "wasi": True},
                                        "w")), "'w'", "sandbox option wasi")


async def test_lower_limits_and_false_options_are_fine(server: Served) -> None:
    graph = _graph("script/python", {
        "source": SCRIPT, "sandbox": "process", "allow_weaker": None, "wasi": False,
        "limits": {"memory_mb": 64, "wall_time": 2.0, "pids": 16}}, "ok", iip=1)
    r = await _post(server, graph)
    assert r.status_code == 201, r.text


async def test_the_reflow_api_refuses_too(server: Served) -> None:
    graph = {"processes": {"s": {"component": "script/python", "metadata": {
        "source": SCRIPT, "sandbox": "process", "user": 0}}}, "connections": []}
    async with server.client() as c:
        r = await c.post("/workflows", json={"graph_json": graph, "input": None,
                                             "metadata": {"execution_id": "w"}})
    assert r.status_code == 403 and r.json()["success"] is False
    assert "'s'" in r.json()["error"] and "sandbox option user" in r.json()["error"]


async def test_the_operator_may_allow_an_option(nursery: trio.Nursery, tmp_path: Path
                                                ) -> None:
    served = await start_server(nursery, tmp_path / "d",
                                sandbox_options=["limits.memory_mb", "image"])
    ok = await _post(served, _graph("script/python", {
        "source": SCRIPT, "sandbox": "process", "limits": {"memory_mb": 512}}, "m", iip=1))
    assert ok.status_code == 201, ok.text
    _refused(await _post(served, _graph("script/python", {
        "source": SCRIPT, "sandbox": "process", "limits": {"pids": 100_000}}, "p")),
        "sandbox option limits.pids")
    _refused(await _post(served, _graph("script/python", {
        "source": SCRIPT, "sandbox": "process", "user": 0}, "u")), "sandbox option user")
    served.shutdown.set()


def test_unknown_operator_options_are_an_error() -> None:
    with pytest.raises(ValueError, match="unknown option"):
        GraphPolicy(sandbox_options=["root"])


async def test_fbp_addnode_changenode_and_setsource_nodes(server: Served) -> None:
    async with open_websocket_url(f"{server.ws_url}/", subprotocols=["noflo"]) as ws:
        fbp = Fbp(ws)
        await fbp.send("graph", "clear", {"id": "g", "name": "g"})
        await fbp.expect("graph", "clear")
        await fbp.send("graph", "addnode", {"id": "a", "component": "script/python",
                                            "graph": "g", "metadata": {
                                                "source": SCRIPT, "sandbox": "process",
                                                "allow_weaker": "all"}})
        msg = await fbp.recv()
        assert msg["command"] == "error", msg
        assert "'a'" in msg["payload"]["message"]
        assert "sandbox option allow_weaker" in msg["payload"]["message"]
        await fbp.send("graph", "addnode", {"id": "b", "component": "script/python",
                                            "graph": "g", "metadata": {
                                                "source": SCRIPT, "sandbox": "process"}})
        await fbp.expect("graph", "addnode")
        await fbp.send("graph", "changenode", {"id": "b", "graph": "g",
                                               "metadata": {"group": 0}})
        msg = await fbp.recv()
        assert msg["command"] == "error" and "sandbox option group" in msg["payload"][
            "message"], msg
        # a component:source component takes only limits (and config) from metadata:
        # raising a limit there is refused as well
        await fbp.send("component", "source", {"name": "Echo", "library": "mine",
                                               "language": "python", "code": SCRIPT})
        await fbp.expect("component", "component")
        await fbp.send("graph", "addnode", {"id": "c", "component": "mine/Echo",
                                            "graph": "g", "metadata": {
                                                "limits": {"wall_time": 1e6}}})
        msg = await fbp.recv()
        assert msg["command"] == "error" and "'c'" in msg["payload"]["message"]
        assert "sandbox option limits.wall_time" in msg["payload"]["message"]


_NUMERIC = [n for n in Limits.__struct_fields__
            if isinstance(getattr(Limits(), n), int | float)]


@settings(max_examples=long_scale(200), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options=st.dictionaries(st.sampled_from([*SANDBOX_OPTIONS, "limits"]),
                               st.one_of(st.none(), st.booleans(), st.integers(-5, 10**7),
                                         st.text(max_size=5), st.lists(st.text(max_size=3),
                                                                       max_size=2)),
                               max_size=4),
       limits=st.dictionaries(st.sampled_from(_NUMERIC),
                              st.one_of(st.integers(0, 10**9), st.floats(0, 1e9)),
                              max_size=4),
       granted=st.sets(st.sampled_from([*SANDBOX_OPTIONS, "limits",
                                        *(f"limits.{n}" for n in _NUMERIC)]), max_size=3))
def test_policy_property(options: dict[str, Any], limits: dict[str, Any],
                         granted: set[str]) -> None:
    """Refused exactly when some set option or raised limit is not granted; a refusal
    names that option's rule."""
    policy = GraphPolicy(sandbox_options=granted, sandboxes=["process"])
    config = {"sandbox": "process", **{k: v for k, v in options.items() if k != "limits"},
              "limits": limits}
    defaults = Limits()
    offending = {f"sandbox option {k}" for k, v in config.items()
                 if k in SANDBOX_OPTIONS and v is not None and v is not False
                 and k not in granted}
    if "limits" not in granted:
        offending |= {f"sandbox option limits.{n}" for n, v in limits.items()
                      if v > getattr(defaults, n) and f"limits.{n}" not in granted}
    try:
        policy.check_script("n", "script/python", config)
    except CapabilityRefused as exc:
        assert exc.rule in offending, (exc.rule, offending)
        assert isinstance(exc, ReflowError) and "'n'" in str(exc)
    else:
        assert not offending
