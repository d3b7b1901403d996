"""Browser-friendly authentication: a session cookie or a single-use ticket.

Browsers cannot put an ``Authorization`` header on an ``EventSource`` (SSE) or a
``WebSocket``, and the token must never travel in a URL (URLs end up in logs and
history). A page that holds the token exchanges it once:

* ``POST /auth/session`` (with the bearer header) sets the ``reflowpy_session``
  cookie: ``HttpOnly`` (scripts cannot read it), ``SameSite=Strict`` (other sites'
  pages never send it), ``Path=/``; ``Secure`` when served over HTTPS. Every later
  request of that browser, SSE included, is authenticated by it.
  ``DELETE /auth/session`` ends it.
* ``POST /auth/ticket`` returns ``{"ticket", "expires_in"}``: append
  ``?ticket=...`` to one SSE or WebSocket URL; it works once, within
  ``expires_in`` seconds, and is worthless afterwards.

Both require that the request is already authenticated (the
:class:`~reflowpy.server.guard.Guard` checked it), so they only ever turn a proof of
the token into a narrower one. On a server without a token they answer ``409``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from reflowpy.server.auth import SESSION_COOKIE, cookie_value

if TYPE_CHECKING:
    from reflowpy.server.app import ServerState

__all__ = ["routes"]


def _json(value: object, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status_code=status,
                    media_type="application/json")


def routes(state: ServerState) -> list[BaseRoute]:
    """``/auth/session`` and ``/auth/ticket``."""

    def no_token() -> Response:
        return _json({"error": "no_token", "detail": "this server has no token; requests"
                      " need no authentication"}, 409)

    async def create_session(request: Request) -> Response:
        if state.token is None:
            return no_token()
        value, ttl = state.sessions.new_session()
        response = _json({"expires_in": ttl})
        response.set_cookie(SESSION_COOKIE, value, max_age=int(ttl), path="/",
                            httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    async def end_session(request: Request) -> Response:
        state.sessions.end_session(cookie_value(request.scope.get("headers", ()),
                                                SESSION_COOKIE))
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    async def create_ticket(request: Request) -> Response:
        if state.token is None:
            return no_token()
        value, ttl = state.sessions.new_ticket()
        return _json({"ticket": value, "expires_in": ttl}, 201)

    return [
        Route("/auth/session", create_session, methods=["POST"]),
        Route("/auth/session", end_session, methods=["DELETE"]),
        Route("/auth/ticket", create_ticket, methods=["POST"]),
    ]
