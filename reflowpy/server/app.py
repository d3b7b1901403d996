"""The ASGI application: one Starlette app serving the three dialects on one port.

* reflowpy's own REST API (:mod:`reflowpy.server.rest`) with its OpenAPI document at
  ``/openapi.json`` and Server-Sent Events (:mod:`reflowpy.server.sse`);
* the FBP Network Protocol over WebSocket at ``/`` and ``/fbp``
  (:mod:`reflowpy.server.fbp`);
* Reflow's server surface, ``/workflows`` and ``/ws``
  (:mod:`reflowpy.server.reflow_compat`).

The handlers share one :class:`~reflowpy.server.state.ServerState`.
:func:`create_app` wraps every route — its own and the ``extra_routes``
other parts of reflowpy add (``/bridge``, ``/metrics``, ``/ui/``) — in one
:class:`~reflowpy.server.guard.Guard`, so Host, Origin, CORS, authentication and the
connection caps apply to all of them alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from reflowpy.server import fbp, reflow_compat, rest, session
from reflowpy.server.guard import Guard
from reflowpy.server.state import ServerState

__all__ = ["create_app"]


def create_app(state: ServerState, extra_routes: Sequence[BaseRoute] = ()) -> Guard:
    """The ASGI app for ``state``: every route (``state.extra_routes`` and
    ``extra_routes`` included) behind the :class:`~reflowpy.server.guard.Guard`."""
    from reflowpy.bridge.endpoint import routes as bridge_routes
    from reflowpy.observe.asgi import install as observe_routes
    routes: list[BaseRoute] = [
        *rest.routes(state),
        *session.routes(state),
        *reflow_compat.routes(state),
        *observe_routes(state),  # /metrics, /ui/, /events, /traces
        *fbp.routes(state),  # / and /fbp
        *bridge_routes(state),  # /bridge
        *state.extra_routes,
        *extra_routes,
    ]
    app = Starlette(routes=routes)
    app.state.server = state
    guard = Guard(app, state.guard_config, state.sessions)
    state.guard = guard
    return guard
