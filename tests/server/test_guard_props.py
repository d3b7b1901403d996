"""Property-based checks of the guard, the path confinement and the depth limit against
small reference models (hypothesis, seeded by the ``ci`` profile).

The guard is driven through its ASGI interface with hostile Host/Origin/method
combinations; confinement with random relative/absolute paths full of ``..``, symlinks
and odd bytes; the depth limit with random nestings.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reflowpy.server.auth import Sessions
from reflowpy.server.guard import Guard, GuardConfig
from reflowpy.server.jsonio import JsonTooDeep, decode_json, depth_exceeds
from reflowpy.server.policy import CapabilityRefused, GraphPolicy
from tests.scale import long_scale

ALLOWED_ORIGIN = "https://app.flowhub.io"
NAMES = ["localhost", "127.0.0.1", "[::1]", "10.1.2.3", "flows.internal", "a.corp.example",
         "corp.example", "evil.example", "rebind.evil.example", "localhost.evil.example",
         "127.0.0.1.nip.io", "LOCALHOST", "flows.internal.", "", "evilcorp.example"]
PORTS = ["", ":80", ":3569", ":443"]
ORIGINS = [None, "null", ALLOWED_ORIGIN, "https://app.flowhub.io:443", "http://app.flowhub.io",
           "https://app.flowhub.io.evil.example", "http://evil.example", "file://",
           "http://localhost:3569", "http://127.0.0.1:3569", "http://flows.internal"]
METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH"]


def _host_allowed(host: str) -> bool:
    name = host.lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    name = name.rstrip(".")
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    return name in ("localhost", "flows.internal") or name == "corp.example" or \
        name.endswith(".corp.example")


def _origin_of(url: str) -> tuple[str, str, int] | None:
    """RFC 6454 origin triple (scheme, host, port) or None for an opaque origin."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https"
                                                           else 80)


def _expected(kind: str, method: str, host: str, origin: str | None) -> int:
    if not _host_allowed(host):
        return 421
    if origin is not None and (kind == "websocket" or method not in ("GET", "HEAD", "OPTIONS")):
        mine = _origin_of(origin)
        allowed = {_origin_of(ALLOWED_ORIGIN), _origin_of(f"http://{host}")}
        if mine is None or mine not in allowed:
            return 403
    return 200


async def _call(guard: Guard, kind: str, method: str, host: str, origin: str | None) -> int:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    scope: dict[str, Any] = {"type": kind, "method": method, "path": "/x", "scheme": "http",
                             "headers": headers, "client": ("127.0.0.1", 1),
                             "query_string": b"",
                             "extensions": {"websocket.http.response": {}}}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"} if kind == "websocket" else {
            "type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await guard(scope, receive, send)  # type: ignore[arg-type]
    first = sent[0]
    if first["type"] == "websocket.close":
        return 403
    return int(first.get("status", 200))


def _guard() -> Guard:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return Guard(app, GuardConfig(allow_hosts=["flows.internal", ".corp.example"],
                                  allow_origins=[ALLOWED_ORIGIN]), Sessions())


@settings(max_examples=long_scale(300), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["http", "websocket"]), method=st.sampled_from(METHODS),
       name=st.sampled_from(NAMES), port=st.sampled_from(PORTS),
       origin=st.sampled_from(ORIGINS))
def test_guard_decisions_match_the_model(kind: str, method: str, name: str, port: str,
                                         origin: str | None) -> None:
    host = name + port
    if kind == "websocket":
        method = "GET"
    got = trio.run(_call, _guard(), kind, method, host, origin)
    assert got == _expected(kind, method, host, origin), (kind, method, host, origin)


@settings(max_examples=long_scale(300), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["a", "b", "a/up", "/", ".", "..", "link", "x\x00", "~",
                                 "etc", "passwd", "//"]), max_size=12).map("/".join),
       st.booleans())
def test_confined_paths_never_leave_the_workspace(tmp_path_factory: Any, raw: str,
                                                  absolute: bool) -> None:
    base = tmp_path_factory.getbasetemp() / "confine"
    workspace = base / "ws"
    if not workspace.exists():
        (workspace / "a" / "b").mkdir(parents=True)
        os.symlink("/etc", workspace / "link")
        os.symlink("../../", workspace / "a" / "up")
    policy = GraphPolicy(workspace=workspace)
    value = ("/" + raw) if absolute else raw
    try:
        out = policy.confine("n", "path", value)
    except CapabilityRefused as exc:
        assert exc.node == "n" and exc.rule == "workspace"
        return
    resolved = Path(out).resolve()
    root = workspace.resolve()
    assert resolved == root or root in resolved.parents, (value, out)


@st.composite
def _nested(draw: Any) -> Any:
    """A document with one deep spine (lists and objects mixed) and shallow siblings."""
    kinds = draw(st.lists(st.integers(0, 3), max_size=90))
    value: Any = draw(st.one_of(st.none(), st.integers(), st.text(max_size=3)))
    for kind in reversed(kinds):
        if kind == 0:
            value = [value]
        elif kind == 1:
            value = {"k": value}
        elif kind == 2:
            value = [1, {"x": [2]}, value]
        else:
            value = {"a": [], "b": value, "c": {"d": None}}
    return value


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@settings(max_examples=long_scale(300), deadline=None)
@given(_nested(), st.integers(1, 90))
def test_depth_limit_matches_a_recursive_reference(value: Any, limit: int) -> None:
    assert depth_exceeds(value, limit) == (_depth(value) > limit)


@pytest.mark.parametrize("depth", [1, 63, 64, 65, 999, 1000, 5000, 10**5])
def test_depth_limit_on_encoded_documents(depth: int) -> None:
    doc = "[" * depth + "]" * depth
    if depth <= 64:
        assert decode_json(doc, 64) is not None
    else:
        with pytest.raises(JsonTooDeep):
            decode_json(doc, 64)
