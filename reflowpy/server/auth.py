"""Bearer-token authentication for every HTTP request and WebSocket.

A server started with a token (``reflowpy serve --token T``) refuses any HTTP request
without ``Authorization: Bearer T`` (401, JSON body, ``WWW-Authenticate: Bearer``).
WebSockets: the Reflow ``/ws`` endpoint needs the same header at the handshake (a
handshake without it is denied with 403). The FBP endpoints (``/`` and ``/fbp``)
accept the header too, and otherwise follow the FBP protocol: the token is the
runtime *secret* that every message carries (top-level ``secret`` or, for older
clients, ``payload.secret``); the FBP runtime checks it per message.

Tokens are compared in constant time and never echoed, logged or stored. Without a
token every request is allowed, which is why the server binds to loopback unless
told otherwise.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["TokenAuth", "bearer_token", "token_matches"]

#: WebSocket paths that authenticate per message (the FBP secret) when no header is sent.
FBP_PATHS = frozenset({"/", "/fbp"})


def token_matches(expected: str | None, given: object) -> bool:
    """True when no token is configured, or ``given`` equals it (constant time)."""
    if expected is None:
        return True
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, if any."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class TokenAuth:
    """ASGI middleware enforcing the bearer token (see the module docstring).

    It sets ``scope["state"]["authorized"]`` so the FBP endpoint knows whether the
    connection is already authorized by its handshake header.
    """

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.token is None:
            if scope["type"] in ("http", "websocket"):
                scope.setdefault("state", {})["authorized"] = True
            await self.app(scope, receive, send)
            return
        ok = token_matches(self.token, bearer_token(scope.get("headers", ())))
        scope.setdefault("state", {})["authorized"] = ok
        if ok or (scope["type"] == "websocket" and scope.get("path") in FBP_PATHS):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            # Deny the handshake: ASGI websocket.close before accept -> HTTP 403.
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        body = b'{"error":"unauthorized","detail":"send Authorization: Bearer <token>"}'
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
