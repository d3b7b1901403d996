"""The one gate in front of every route: Host, Origin, CORS, authentication, caps.

:class:`Guard` is ASGI middleware wrapping the whole app, so every route — the REST
API, SSE, the FBP and Reflow WebSockets, and whatever routes are added later
(``/bridge``, ``/metrics``, ``/ui/``) — gets the same protection without doing
anything. In order, for each HTTP request and WebSocket handshake:

1. **Host** (DNS rebinding): the ``Host`` header must be an IP literal, ``localhost``,
   or a name given with ``allow_hosts`` (``.example.com`` allows its subdomains).
   A page on ``rebind.evil.example`` whose name was re-pointed at 127.0.0.1 sends
   ``Host: rebind.evil.example`` and gets ``421``.
2. **Origin** (cross-site requests): a request that carries ``Origin`` must come from
   the same origin as its ``Host`` or from ``allow_origins``. Checked on every
   WebSocket handshake (browsers do not apply CORS to WebSockets) and every
   state-changing HTTP request (anything but GET/HEAD/OPTIONS), including the
   "simple" ``text/plain`` POSTs browsers send cross-site without a preflight.
   ``Origin: null`` (sandboxed frames, ``file:`` pages) is never allowed. Requests
   without ``Origin`` are not from a browser page and pass (the token protects them).
3. **CORS** (off by default): with ``cors=True``, responses to an allowed foreign
   origin carry ``Access-Control-Allow-Origin`` (and credentials), and preflights
   (``OPTIONS`` with ``Access-Control-Request-Method``) are answered here.
4. **Authentication** (with a token, see :mod:`reflowpy.server.auth`): bearer header,
   session cookie or single-use ticket; else ``401`` (HTTP) or a denied handshake
   (WebSocket, ``403``). The FBP WebSockets are the exception the protocol needs:
   they are accepted unauthenticated and authenticate per message by the secret;
   until then they count as *unauthenticated* connections and receive nothing but
   the auth error. A browser asking for a page under ``/ui/`` (``Accept: text/html``)
   is redirected to the login form ``/ui/login`` instead (see
   :mod:`reflowpy.server.session`), which with ``POST /auth/login`` is served
   unauthenticated (``PUBLIC_PATHS``).
5. **Caps**: at most ``max_connections`` requests and WebSockets in flight in total,
   ``max_unauthenticated`` unauthenticated ones, ``max_per_peer`` unauthenticated ones
   from one peer address. Beyond a cap a request gets ``503`` and a handshake is
   denied; the caps for unauthenticated connections keep anonymous clients from
   locking out the ones that know the token.

The routes see the outcome in ``scope["state"]``: ``authorized`` (bool) and ``guard``
(the connection's :class:`Slot`, on which the FBP runtime calls ``authenticate()``).
Refusals are JSON ``{"error", "detail"}`` and are logged at INFO without secrets.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reflowpy.server.auth import (
    SESSION_COOKIE,
    Sessions,
    bearer_token,
    cookie_value,
    token_matches,
)

__all__ = ["LOGIN_PAGE", "PUBLIC_PATHS", "SELF_AUTH_PATHS", "Guard", "GuardConfig", "Slot"]

_log = logging.getLogger("reflowpy.server.guard")

#: WebSocket paths that authenticate inside their own protocol: FBP per message (the
#: secret), the bridge by its HELLO challenge on the token. Until they do, they count
#: against the unauthenticated connection caps.
SELF_AUTH_PATHS = frozenset({"/", "/fbp", "/bridge"})
#: HTTP paths served without authentication: the browser login (its form and the
#: ``POST`` that checks the token and sets the session cookie). They count against
#: the unauthenticated caps like every anonymous request.
PUBLIC_PATHS = frozenset({"/ui/login", "/auth/login"})
#: Where a browser that asks for a page under ``/ui/`` without a session is sent.
LOGIN_PAGE = "/ui/login"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class GuardConfig:
    """What the guard allows; built once by the server from its flags."""

    def __init__(
        self,
        *,
        token: str | None = None,
        allow_hosts: Iterable[str] = (),
        allow_origins: Iterable[str] = (),
        cors: bool = False,
        max_connections: int = 1000,
        max_unauthenticated: int = 64,
        max_per_peer: int = 32,
    ) -> None:
        self.token = token
        self.allow_hosts = {h.lower().rstrip(".") for h in allow_hosts}
        self.allow_origins = {_normal_origin(o) for o in allow_origins}
        self.cors = cors
        self.max_connections = max_connections
        self.max_unauthenticated = max_unauthenticated
        self.max_per_peer = max_per_peer


def _normal_origin(origin: str) -> str:
    parts = urlsplit(origin.strip())
    if not parts.scheme or not parts.hostname:
        return origin.strip().lower()
    port = parts.port
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(parts.scheme)
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def _host_name(host_header: str) -> str:
    """The name part of a ``Host`` header (no port, no brackets), lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Slot:
    """One request or WebSocket in flight, as the caps count it."""

    __slots__ = ("_guard", "authenticated", "peer", "released")

    def __init__(self, guard: Guard, peer: str, authenticated: bool) -> None:
        self._guard = guard
        self.peer = peer
        self.authenticated = authenticated
        self.released = False

    def authenticate(self) -> None:
        """The connection proved the token later (FBP secret): it stops counting as
        unauthenticated."""
        if not self.authenticated and not self.released:
            self.authenticated = True
            self._guard._unauth -= 1
            self._guard._unauth_per_peer[self.peer] -= 1

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self._guard._total -= 1
        if not self.authenticated:
            self._guard._unauth -= 1
            self._guard._unauth_per_peer[self.peer] -= 1
            if self._guard._unauth_per_peer[self.peer] <= 0:
                del self._guard._unauth_per_peer[self.peer]


class Guard:
    """ASGI middleware applying :class:`GuardConfig` (see the module docstring)."""

    def __init__(self, app: ASGIApp, config: GuardConfig, sessions: Sessions) -> None:
        self.app = app
        self.config = config
        self.sessions = sessions
        self._total = 0
        self._unauth = 0
        self._unauth_per_peer: Counter[str] = Counter()
        #: Refusals so far, by reason (``statistics()``).
        self.refused: Counter[str] = Counter()
        #: Host header -> allowed (a server sees few distinct ones; bounded).
        self._hosts: dict[str | None, bool] = {}

    def statistics(self) -> dict[str, object]:
        """Connections in flight and refusals by reason."""
        return {"in_flight": self._total, "unauthenticated": self._unauth,
                "refused": dict(self.refused)}

    # -- checks -----------------------------------------------------------------------

    def _host_ok(self, host: str | None) -> bool:
        if host is None:
            return False
        name = _host_name(host)
        if name == "localhost" or _is_ip(name) or name in self.config.allow_hosts:
            return True
        return any(allowed.startswith(".") and (name.endswith(allowed) or
                                                name == allowed[1:])
                   for allowed in self.config.allow_hosts)

    def _origin_ok(self, origin: str, host: str, scheme: str) -> bool:
        normal = _normal_origin(origin)
        if normal == "null":
            return False
        if normal in self.config.allow_origins:
            return True
        same = _normal_origin(f"{'https' if scheme in ('https', 'wss') else 'http'}://{host}")
        return normal == same

    def _authenticated(self, scope: Scope) -> bool:
        token = self.config.token
        if token is None:
            return True
        headers = scope.get("headers", ())
        if token_matches(token, bearer_token(headers)):
            return True
        if self.sessions.session_valid(cookie_value(headers, SESSION_COOKIE)):
            return True
        query = scope.get("query_string", b"").decode("latin-1")
        if "ticket=" in query:
            ticket = parse_qs(query).get("ticket", [None])[0]
            if self.sessions.use_ticket(ticket):
                return True
        return False

    # -- ASGI -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        # one pass over the headers, keeping only the few the checks read
        host = origin = None
        preflight = False
        for name, value in scope.get("headers", ()):
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"access-control-request-method":
                preflight = True
        allowed = self._hosts.get(host) if host is not None else False
        if allowed is None:
            allowed = self._host_ok(host)
            if len(self._hosts) < 1024:
                self._hosts[host] = allowed
        if not allowed:
            await self._refuse(scope, receive, send, 421, "bad_host",
                               f"Host {host!r} is not a name of this server; start it with"
                               " --allow-host NAME to serve that name")
            return
        assert host is not None
        method = scope.get("method", "GET")
        cors_origin: str | None = None
        if origin is not None:
            ok = self._origin_ok(origin, host, scope.get("scheme", "http"))
            if (kind == "websocket" or method not in _SAFE_METHODS) and not ok:
                await self._refuse(scope, receive, send, 403, "bad_origin",
                                   f"requests from origin {origin!r} are not allowed;"
                                   " start the server with --allow-origin to allow it")
                return
            if ok and self.config.cors and kind == "http":
                cors_origin = origin
            if kind == "http" and method == "OPTIONS" and preflight:
                await self._preflight(send, cors_origin, scope)
                return
        authenticated = self.config.token is None or self._authenticated(scope)
        path = scope.get("path", "")
        if not authenticated and not (kind == "websocket" and path in SELF_AUTH_PATHS) \
                and not (kind == "http" and path in PUBLIC_PATHS):
            if kind == "http" and method == "GET" and (path == "/ui" or path.startswith(
                    "/ui/")) and _wants_html(scope):
                # a browser opening the dashboard: to the login form (no token in URLs)
                self.refused["login_redirect"] += 1
                await send({"type": "http.response.start", "status": 303, "headers": [
                    (b"location", LOGIN_PAGE.encode()), (b"content-length", b"0"),
                    (b"cache-control", b"no-store")]})
                await send({"type": "http.response.body", "body": b""})
                return
            await self._refuse(scope, receive, send, 401, "unauthorized",
                               "send Authorization: Bearer <token> (or a session cookie"
                               " or ticket from POST /auth/session, /auth/ticket)",
                               cors_origin)
            return
        config = self.config
        if self._total >= config.max_connections:
            await self._refuse(scope, receive, send, 503, "too_many_connections",
                               f"the server holds {config.max_connections} connections"
                               " (max_connections); try again later", cors_origin)
            return
        peer = (scope.get("client") or ("?", 0))[0]
        if not authenticated and (self._unauth >= config.max_unauthenticated or
                                  self._unauth_per_peer[peer] >= config.max_per_peer):
            await self._refuse(scope, receive, send, 503, "too_many_unauthenticated",
                               "too many unauthenticated connections; authenticate with"
                               " the bearer header", cors_origin)
            return
        slot = Slot(self, peer, authenticated)
        self._total += 1
        if not authenticated:
            self._unauth += 1
            self._unauth_per_peer[peer] += 1
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["authorized"] = authenticated
        state["guard"] = slot
        try:
            if cors_origin is None:
                await self.app(scope, receive, send)
            else:
                await self.app(scope, receive, _with_cors(send, cors_origin))
        finally:
            slot.release()

    async def _preflight(self, send: Send, origin: str | None, scope: Scope) -> None:
        if origin is None:
            self.refused["cors_preflight"] += 1
            await _json(send, 403, "bad_origin", "CORS is not enabled for this origin"
                        " (start the server with --cors --allow-origin ORIGIN)")
            return
        requested = next((v.decode("latin-1") for k, v in scope.get("headers", ())
                          if k == b"access-control-request-headers"), "")
        await send({"type": "http.response.start", "status": 204, "headers": [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-allow-methods", b"GET, POST, PUT, DELETE, OPTIONS"),
            (b"access-control-allow-headers",
             (requested or "authorization, content-type, last-event-id").encode("latin-1")),
            (b"access-control-max-age", b"600"),
            (b"vary", b"Origin"),
        ]})
        await send({"type": "http.response.body", "body": b""})

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int,
                      error: str, detail: str, cors_origin: str | None = None) -> None:
        self.refused[error] += 1
        _log.info("refused %s %s from %s: %s", scope["type"], scope.get("path"),
                  (scope.get("client") or ("?",))[0], error)
        if scope["type"] == "websocket":
            message = await receive()
            if message["type"] != "websocket.connect":
                return
            # An HTTP response instead of the upgrade (ASGI websocket denial response);
            # servers without the extension turn a close before accept into a 403.
            if "websocket.http.response" in scope.get("extensions", {}):
                body = _body(error, detail)
                await send({"type": "websocket.http.response.start", "status": status,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
        if cors_origin is not None:
            extra += [(b"access-control-allow-origin", cors_origin.encode("latin-1")),
                      (b"access-control-allow-credentials", b"true"), (b"vary", b"Origin")]
        await _json(send, status, error, detail, extra)


def _wants_html(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            return b"text/html" in value
    return False


def _body(error: str, detail: str) -> bytes:
    import msgspec

    return msgspec.json.encode({"error": error, "detail": detail})


async def _json(send: Send, status: int, error: str, detail: str,
                extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = _body(error, detail)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})


def _with_cors(send: Send, origin: str) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [*message.get("headers", []),
                                  (b"access-control-allow-origin", origin.encode("latin-1")),
                                  (b"access-control-allow-credentials", b"true"),
                                  (b"vary", b"Origin")]
        await send(message)
    return wrapped
