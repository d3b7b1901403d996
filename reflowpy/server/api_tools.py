"""API tools: HTTP endpoints of an operator's service registry as components
(Reflow's ``POST /register-api-tools``).

Reflow's server reads a service registry file and registers one actor per API tool.
reflowpy takes the file from the operator (``ServerState(api_tools=PATH)``, JSON or
YAML), never from the client, and registers each tool as the component
``api/SERVICE/TOOL``::

    services:
      - name: weather
        base_url: https://api.example.com/v1
        headers: {Authorization: "Bearer ..."}   # stays on the server
        tools:
          - name: forecast
            method: GET
            path: /forecast/{city}
            description: Forecast for a city

A tool node takes an object on ``params``: keys named in ``{...}`` of the path fill
it (URL-quoted, so a value cannot change the host or path structure), the rest go in
the query string (``GET``, ``DELETE``) or the JSON body. It sends
``{status, headers, body}`` on ``response`` for a 2xx answer and an error packet
on ``error`` otherwise. Requests go only to the operator's ``base_url`` (the file is
the operator's, so no webhook-style address policy applies). Registering again
replaces the tools with the file's current contents; the endpoint answers how many
tools were registered. No file configured: none (Reflow without its registry file).
"""

from __future__ import annotations

import logging
import re
import string
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import msgspec

from reflowpy.errors import ConfigError
from reflowpy.network.actor import Actor, ActorContext
from reflowpy.server.policy import CapabilityRefused

if TYPE_CHECKING:
    from reflowpy.server.state import ServerState

__all__ = ["ApiService", "ApiTool", "load_registry", "register_api_tools"]

_log = logging.getLogger("reflowpy.server.api_tools")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_BODYLESS = frozenset({"GET", "DELETE", "HEAD"})


class ApiTool(msgspec.Struct, forbid_unknown_fields=True):
    """One endpoint of a service."""

    name: str
    path: str = "/"
    method: str = "GET"
    description: str = ""
    timeout: float = 30.0


class ApiService(msgspec.Struct, forbid_unknown_fields=True):
    """A service: a base URL, headers the server adds, its tools."""

    name: str
    base_url: str
    tools: list[ApiTool] = []
    headers: dict[str, str] = {}


class _Registry(msgspec.Struct, forbid_unknown_fields=True):
    services: list[ApiService] = []


def load_registry(path: str | Path) -> list[ApiService]:
    """The services of a registry file; :class:`ConfigError` naming the field."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"api tools registry {str(path)!r}: {exc.strerror}") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            doc = msgspec.yaml.decode(text, type=_Registry)
        else:
            doc = msgspec.json.decode(text, type=_Registry)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"api tools registry {str(path)!r}: {exc}") from None
    for i, service in enumerate(doc.services):
        where = f"api tools registry {str(path)!r}: services[{i}]"
        if not _NAME.match(service.name):
            raise ConfigError(f"{where}.name {service.name!r}: use letters, digits, _ . -")
        parts = urllib.parse.urlsplit(service.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{where}.base_url {service.base_url!r}: an http(s) URL")
        for j, tool in enumerate(service.tools):
            if not _NAME.match(tool.name):
                raise ConfigError(f"{where}.tools[{j}].name {tool.name!r}: use letters,"
                                  " digits, _ . -")
            if tool.method.upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"):
                raise ConfigError(f"{where}.tools[{j}].method {tool.method!r}")
    return doc.services


def _fields(path: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(path) if f}


class _ApiToolActor(Actor):
    """Base of the generated tool components (see the module docstring)."""

    inports: ClassVar[list[Any]] = ["params"]
    outports: ClassVar[list[Any]] = ["response", "error"]
    service: ClassVar[ApiService]
    tool: ClassVar[ApiTool]

    async def process(self, ctx: ActorContext) -> Any:
        params = ctx.inputs["params"]
        params = dict(params) if isinstance(params, dict) or hasattr(params, "items") else {}
        tool, service = self.tool, self.service
        fields = _fields(tool.path)
        missing = sorted(f for f in fields if f not in params)
        if missing:
            return {"error": {"error": f"node {ctx.node_id!r}: params lack {missing} for"
                              f" path {tool.path!r}", "tool": tool.name}}
        path = tool.path.format(**{f: urllib.parse.quote(str(params.pop(f)), safe="")
                                   for f in fields})
        url = service.base_url.rstrip("/") + "/" + path.lstrip("/")
        method = tool.method.upper()
        plain = msgspec.to_builtins(params)
        kwargs: dict[str, Any] = {"params": plain} if method in _BODYLESS else {"json": plain}
        try:
            async with httpx.AsyncClient(timeout=tool.timeout, follow_redirects=False,
                                         trust_env=False) as client:
                response = await client.request(method, url, headers=service.headers,
                                                **kwargs)
        except httpx.HTTPError as exc:
            return {"error": {"error": f"{method} {url}: {type(exc).__name__}: {exc}",
                              "tool": tool.name}}
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        out = {"status": response.status_code, "headers": dict(response.headers),
               "body": body}
        if 200 <= response.status_code < 300:
            return {"response": out}
        return {"error": {**out, "error": f"{method} {url} answered {response.status_code}",
                          "tool": tool.name}}


def tool_component(service: ApiService, tool: ApiTool) -> type[Actor]:
    """The component class of one tool."""
    return type(f"ApiTool_{service.name}_{tool.name}", (_ApiToolActor,), {
        "__module__": __name__, "service": service, "tool": tool,
        "description": tool.description or f"{tool.method.upper()} {service.base_url}"
                                            f"{tool.path} ({service.name})"})


def register_api_tools(state: ServerState) -> list[str]:
    """(Re)register the tools of the operator's registry file on the server's
    registry; the component names (none when no file is configured)."""
    path = state.api_tools
    if path is None:
        return []
    services = load_registry(path)
    registry = state.registry
    for name in [n for n in registry.names() if n in state.api_tool_names]:
        registry.unregister(name)
    names: list[str] = []
    for service in services:
        for tool in service.tools:
            name = f"api/{service.name}/{tool.name}"
            try:
                state.policy.check_component(name, name)  # the operator's rules hold
            except CapabilityRefused as exc:
                _log.warning("API tool not registered: %s", exc)
                continue
            registry.register(name, tool_component(service, tool), replace=True)
            names.append(name)
    state.api_tool_names = set(names)
    return names
