"""The ASGI application: one Starlette app serving the three dialects on one port.

* reflowpy's own REST API (:mod:`reflowpy.server.rest`) with its OpenAPI document at
  ``/openapi.json`` and Server-Sent Events (:mod:`reflowpy.server.sse`);
* the FBP Network Protocol over WebSocket at ``/`` and ``/fbp``
  (:mod:`reflowpy.server.fbp`);
* Reflow's server surface, ``/workflows`` and ``/ws``
  (:mod:`reflowpy.server.reflow_compat`).

:class:`ServerState` is everything the handlers share: registry, storage, the
execution manager (whose nursery hosts every network), the FBP runtime, the token
and the limits. :func:`create_app` wraps the routes in the token middleware.
"""

from __future__ import annotations

import time
from pathlib import Path

import trio
from starlette.applications import Starlette
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from reflowpy.network.registry import Registry
from reflowpy.server.auth import TokenAuth
from reflowpy.server.executions import ExecutionManager
from reflowpy.server.storage import Storage

__all__ = ["ServerState", "create_app"]


class ServerState:
    """What every handler of one server shares. Limits are plain attributes."""

    def __init__(
        self,
        registry: Registry,
        nursery: trio.Nursery,
        *,
        data_dir: str | Path | None = None,
        token: str | None = None,
        allow_setsource: bool = True,
        setsource_sandbox: str = "process",
        max_body: int = 16 * 1024 * 1024,
        max_connections: int = 1000,
        client_queue: int = 10_000,
        event_buffer: int = 10_000,
        stop_timeout: float = 10.0,
        trace_limit: int = 100_000,
    ) -> None:
        from reflowpy.server.fbp import FbpRuntime

        self.registry = registry
        self.nursery = nursery
        self.storage = Storage(data_dir)
        self.token = token
        self.allow_setsource = allow_setsource
        if setsource_sandbox not in ("process", "docker"):
            raise ValueError(f"setsource_sandbox must be 'process' or 'docker', got"
                             f" {setsource_sandbox!r}")
        #: where FBP ``component:source`` code runs: a subprocess or a Docker container
        self.setsource_sandbox = setsource_sandbox
        self.max_body = max_body
        self.max_connections = max_connections
        self.client_queue = client_queue
        self.event_buffer = event_buffer
        self.stop_timeout = stop_timeout
        self.trace_limit = trace_limit
        self.started = time.monotonic()
        self.executions = ExecutionManager(registry, self.storage, nursery)
        self.fbp = FbpRuntime(self)
        self.reflow_connections = 0


def create_app(state: ServerState) -> TokenAuth:
    """The ASGI app for ``state``: every route behind the bearer-token middleware."""
    from reflowpy.bridge.endpoint import routes as bridge_routes
    from reflowpy.server import reflow_compat, rest

    async def fbp_endpoint(websocket: WebSocket) -> None:
        await state.fbp.serve(websocket)

    routes: list[BaseRoute] = [
        *rest.routes(state),
        *reflow_compat.routes(state),
        WebSocketRoute("/", fbp_endpoint),
        WebSocketRoute("/fbp", fbp_endpoint),
        *bridge_routes(state),
    ]
    app = Starlette(routes=routes)
    app.state.server = state
    return TokenAuth(app, state.token)
