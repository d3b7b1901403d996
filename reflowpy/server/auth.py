"""Who may talk to the server: the token, where it comes from, and browser sessions.

A server started with a token refuses every request that does not prove it knows
the token (the checks themselves run in :mod:`reflowpy.server.guard`, for every
route). A request proves it with one of:

* ``Authorization: Bearer <token>`` (API clients, the Reflow ``/ws``, FBP clients
  that can set headers);
* the FBP runtime *secret* carried by every FBP message (top-level ``secret`` or
  ``payload.secret``), checked per message by :mod:`reflowpy.server.fbp`;
* a **session cookie** (``reflowpy_session``, ``HttpOnly``, ``SameSite=Strict``)
  that ``POST /auth/session`` sets for a request that carried the bearer header —
  for browsers, whose ``EventSource`` cannot send headers;
* a **ticket** (``?ticket=...``) from ``POST /auth/ticket``: single use, valid for
  ``ticket_ttl`` seconds, for an ``EventSource`` or ``WebSocket`` opened by a page
  that holds the token but should not put it in a URL (URLs get logged).

The token itself is never put in a URL, logged, echoed or stored. :func:`load_token`
takes it from ``$REFLOWPY_TOKEN`` or a file; one given on the command line still
works but is announced with a warning, since every local user can read a process's
``/proc/<pid>/cmdline``. The variable is removed from the environment once read, so
nothing the server spawns (script workers, containers) inherits it.

Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from reflowpy.errors import ReflowError

__all__ = ["Sessions", "TokenError", "bearer_token", "cookie_value", "load_token",
           "token_matches"]

_log = logging.getLogger("reflowpy.server")

#: Name of the session cookie set by ``POST /auth/session``.
SESSION_COOKIE = "reflowpy_session"


class TokenError(ReflowError):
    """The server token could not be read (missing or empty file, bad permissions)."""


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


def cookie_value(headers: Iterable[tuple[bytes, bytes]], name: str) -> str | None:
    """The value of cookie ``name`` in the ``Cookie`` header(s), if any."""
    for key, value in headers:
        if key.lower() != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            k, _, v = part.strip().partition("=")
            if k == name and v:
                return v
    return None


def load_token(*, argv_token: str | None, token_file: str | None,
               environ: dict[str, str] | None = None) -> str | None:
    """The server token: ``--token-file`` first, then ``$REFLOWPY_TOKEN``, then
    ``--token`` (with a warning: argv is world-readable in ``/proc``).

    Removes ``REFLOWPY_TOKEN`` from ``environ`` (default ``os.environ``) so child
    processes never inherit it. Raises :class:`TokenError` for an unreadable or empty
    file, naming it; warns when the file is readable by group or others.
    """
    env = os.environ if environ is None else environ
    from_env = env.pop("REFLOWPY_TOKEN", None) or None
    if token_file is not None:
        path = Path(token_file)
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TokenError(f"--token-file {token_file!r}: cannot read it: {exc.strerror}"
                             ) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            _log.warning("--token-file %s is readable by group or others (mode %o);"
                         " chmod 600 it", token_file, stat.S_IMODE(mode))
        token = text.strip()
        if not token:
            raise TokenError(f"--token-file {token_file!r} is empty; write the token into it")
        return token
    if from_env is not None:
        return from_env.strip() or None
    if argv_token:
        _log.warning("the token was given on the command line, where every local user can"
                     " read it (/proc/<pid>/cmdline); use $REFLOWPY_TOKEN or --token-file")
        return argv_token
    return None


class Sessions:
    """Browser sessions and single-use tickets derived from the token.

    Both are random 256-bit values kept in memory only (a restart logs browsers out);
    sessions expire after ``session_ttl`` seconds, tickets after ``ticket_ttl`` or on
    first use. At most ``limit`` of each are kept (the oldest are forgotten first), so
    a client with the token cannot grow the server without bound.
    """

    def __init__(self, *, session_ttl: float = 12 * 3600, ticket_ttl: float = 60.0,
                 limit: int = 10_000) -> None:
        self.session_ttl = session_ttl
        self.ticket_ttl = ticket_ttl
        self.limit = limit
        self._sessions: dict[str, float] = {}
        self._tickets: dict[str, float] = {}

    def _issue(self, table: dict[str, float], ttl: float) -> tuple[str, float]:
        now = time.monotonic()
        for key in [k for k, exp in table.items() if exp <= now]:
            del table[key]
        while len(table) >= self.limit:
            del table[next(iter(table))]
        value = secrets.token_urlsafe(32)
        table[value] = now + ttl
        return value, ttl

    def new_session(self) -> tuple[str, float]:
        """A new session id and its lifetime in seconds."""
        return self._issue(self._sessions, self.session_ttl)

    def new_ticket(self) -> tuple[str, float]:
        """A new single-use ticket and its lifetime in seconds."""
        return self._issue(self._tickets, self.ticket_ttl)

    def session_valid(self, value: str | None) -> bool:
        """Whether ``value`` is a live session id."""
        if not value:
            return False
        expires = self._sessions.get(value)
        if expires is None:
            return False
        if expires <= time.monotonic():
            del self._sessions[value]
            return False
        return True

    def use_ticket(self, value: str | None) -> bool:
        """Consume ticket ``value``; ``True`` if it was live (it is gone afterwards)."""
        if not value:
            return False
        expires = self._tickets.pop(value, None)
        return expires is not None and expires > time.monotonic()

    def end_session(self, value: str | None) -> None:
        """Forget session ``value`` (logout)."""
        if value:
            self._sessions.pop(value, None)
