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

**Browser login** for the dashboard: a browser that opens ``/ui/`` without a session
is redirected to ``GET /ui/login``, a form with one password field. It posts the token
in the request *body* (``POST /auth/login``, form-encoded, same origin only: the guard
refuses a foreign ``Origin``), never in a URL; a right token sets the session cookie
and answers ``303`` to ``/ui/``; a wrong one gets the form again with ``401``. Failed
attempts are counted per peer address and answered after a delay that doubles with
each (up to 5 s), so guessing is slow. ``POST /auth/logout`` ends the session and
returns to the form.
"""

from __future__ import annotations

import html
import urllib.parse
from collections import Counter
from typing import TYPE_CHECKING

import msgspec
import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from reflowpy.server.auth import SESSION_COOKIE, cookie_value, token_matches

if TYPE_CHECKING:
    from reflowpy.server.state import ServerState

__all__ = ["routes"]


def _json(value: object, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status_code=status,
                    media_type="application/json")


_LOGIN = """<!doctype html><html><head><meta charset="utf-8"><title>reflowpy: sign in</title>
</head><body><main><h1>reflowpy</h1><form method="post" action="/auth/login">
<label>Server token <input type="password" name="token" id="token" autocomplete=
"current-password" required autofocus></label> <button type="submit" id="submit">Sign in
</button></form><p id="message">%s</p></main></body></html>"""
_LOGIN_HEADERS = {
    "cache-control": "no-store", "x-content-type-options": "nosniff",
    "x-frame-options": "DENY", "referrer-policy": "same-origin",
    "content-security-policy": "default-src 'none'; form-action 'self';"
                               " frame-ancestors 'none'"}
#: Most bytes of a login form body.
_MAX_LOGIN_BODY = 4096


def _login_page(message: str = "", status: int = 200) -> Response:
    return Response(_LOGIN % html.escape(message), status_code=status,
                    media_type="text/html", headers=_LOGIN_HEADERS)


def _set_session(state: ServerState, request: Request, response: Response) -> None:
    value, ttl = state.sessions.new_session()
    response.set_cookie(SESSION_COOKIE, value, max_age=int(ttl), path="/",
                        httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def routes(state: ServerState) -> list[BaseRoute]:
    """``/auth/session``, ``/auth/ticket`` and the browser login."""
    failures: Counter[str] = Counter()

    def no_token() -> Response:
        return _json({"error": "no_token", "detail": "this server has no token; requests"
                      " need no authentication"}, 409)

    async def create_session(request: Request) -> Response:
        if state.token is None:
            return no_token()
        response = _json({"expires_in": state.sessions.session_ttl})
        _set_session(state, request, response)
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

    async def login_form(request: Request) -> Response:
        if state.token is None:
            return Response(status_code=303, headers={"location": "/ui/"})
        return _login_page()

    async def login(request: Request) -> Response:
        if state.token is None:
            return Response(status_code=303, headers={"location": "/ui/"})
        peer = (request.client.host if request.client else "?")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_LOGIN_BODY:
                return _login_page("The form was too large.", 413)
        fields = urllib.parse.parse_qs(body.decode("utf-8", errors="replace"),
                                       max_num_fields=4)
        given = (fields.get("token") or [""])[0]
        if not token_matches(state.token, given):
            failures[peer] += 1
            if len(failures) > 10_000:  # bounded: forget the oldest peers
                failures.clear()
            await trio.sleep(min(5.0, 0.05 * 2 ** min(failures[peer], 7)))
            return _login_page("Wrong token.", 401)
        failures.pop(peer, None)
        response = Response(status_code=303, headers={"location": "/ui/",
                                                      "cache-control": "no-store"})
        _set_session(state, request, response)
        return response

    async def logout(request: Request) -> Response:
        state.sessions.end_session(cookie_value(request.scope.get("headers", ()),
                                                SESSION_COOKIE))
        response = Response(status_code=303, headers={"location": "/ui/login"})
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return [
        Route("/ui/login", login_form, methods=["GET"]),
        Route("/auth/login", login, methods=["POST"]),
        Route("/auth/logout", logout, methods=["POST"]),
        Route("/auth/session", create_session, methods=["POST"]),
        Route("/auth/session", end_session, methods=["DELETE"]),
        Route("/auth/ticket", create_ticket, methods=["POST"]),
    ]
