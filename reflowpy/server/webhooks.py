"""Outgoing webhooks (Reflow's ``webhook_url`` and ``trace_webhook_url``): delivered
for real, a bounded number of times, and never where the server's policy forbids.

**Where a webhook may go.** A URL must be ``http`` or ``https`` with a host, and
every address the host resolves to must be *allowed*: by default only public
(globally routable) unicast addresses. Loopback, private (RFC 1918, ULA), link-local
(which includes cloud metadata endpoints such as ``169.254.169.254``), CGNAT,
multicast, unspecified and reserved addresses are refused, so a client that may
start workflows cannot make the server probe or call services only it can reach
(SSRF). The operator widens that with ``webhook_allow`` (``--webhook-allow``): CIDR
networks (``127.0.0.1/32``, ``10.0.0.0/8``) or ``*`` for any address. The check runs
when the workflow is accepted (a refusal is ``403`` naming the rule) and again at
every delivery attempt, and the request goes to the address that was checked (the
URL's host is kept in ``Host`` and TLS SNI/verification), so a DNS answer that
changes between check and connect (rebinding) cannot redirect it. Redirects are not
followed.

**Delivery.** One POST per attempt, with a timeout; a 2xx answer is delivered, a
4xx other than 408/429 is a permanent refusal (not retried), anything else (5xx,
timeouts, connection errors, DNS failures) is retried after ``backoff`` seconds,
doubling, for at most ``attempts`` attempts. Every outcome is logged; at most
:data:`MAX_CONCURRENT` deliveries run at once.

Client headers (``webhook_headers``) are sent as given, except the ones that would
change the request's framing or target (``Host``, ``Content-Length``,
``Transfer-Encoding``, ``Connection``), which are refused at acceptance, as are
names or values with control characters.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import trio

from reflowpy.errors import ServerConfigError
from reflowpy.server.policy import CapabilityRefused

__all__ = ["MAX_CONCURRENT", "WebhookPolicy", "check_headers", "deliver"]

_log = logging.getLogger("reflowpy.server.webhooks")

#: Most webhook deliveries in flight at once (a flood of executions cannot open an
#: unbounded number of outgoing connections).
MAX_CONCURRENT = 16
_FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection",
                                "upgrade", "te", "trailer", "keep-alive"})
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebhookPolicy:
    """Which addresses webhooks may be sent to, and how many deliveries run at once
    (see the module docstring). Made inside the server's trio run."""

    def __init__(self, allow: Iterable[str] = (), *, concurrent: int = MAX_CONCURRENT
                 ) -> None:
        self.limiter = trio.CapacityLimiter(concurrent)
        self.any = False
        self.networks: list[Network] = []
        for item in allow:
            if item == "*":
                self.any = True
                continue
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ServerConfigError(f"webhook_allow: {item!r} is not a CIDR network (e.g."
                                        " 127.0.0.1/32, 10.0.0.0/8) or '*'") from None

    def address_allowed(self, address: Address) -> bool:
        """Whether a webhook may connect to ``address``."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if self.any or any(address in net for net in self.networks
                           if net.version == address.version):
            return True
        return address.is_global and not address.is_multicast

    def check_url(self, url: str, *, what: str = "webhook_url") -> urllib.parse.SplitResult:
        """The parsed ``url`` if its form is acceptable (scheme, host); raises
        :class:`CapabilityRefused` otherwise. An IP literal host is checked here too."""
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise CapabilityRefused(f"{what} {url!r} is not a valid URL: {exc}",
                                    rule="webhook") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CapabilityRefused(f"{what} {url!r}: only http(s) URLs with a host are"
                                    " allowed (rule: webhook)", rule="webhook")
        if parts.username is not None or parts.password is not None:
            raise CapabilityRefused(f"{what} {url!r}: credentials in the URL are not"
                                    " allowed; use webhook_headers", rule="webhook")
        del port
        try:
            literal = ipaddress.ip_address(parts.hostname)
        except ValueError:
            return parts
        self._refuse(url, literal, what)
        return parts

    def _refuse(self, url: str, address: Address, what: str) -> None:
        if not self.address_allowed(address):
            raise CapabilityRefused(
                f"{what} {url!r} resolves to {address}, which is not a public address;"
                " this server does not send webhooks there (rule: webhook destination;"
                " the operator may allow it with --webhook-allow CIDR)",
                rule="webhook destination")

    async def resolve(self, url: str, *, what: str = "webhook_url"
                      ) -> tuple[urllib.parse.SplitResult, Address]:
        """Check ``url`` and every address its host resolves to; the address to
        connect to. Raises :class:`CapabilityRefused` (never retried) or
        :class:`OSError` (DNS failure; retried)."""
        parts = self.check_url(url, what=what)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        if not addresses:
            raise OSError(f"{host!r} did not resolve")
        for address in addresses:
            self._refuse(url, address, what)
        return parts, addresses[0]


def check_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """Client ``webhook_headers`` as a plain dict; raises :class:`ValueError` naming a
    header that would change the request's target or framing or is malformed."""
    out: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ValueError(f"webhook_headers: {name!r} is not a valid header name")
        if name.lower() in _FORBIDDEN_HEADERS:
            raise ValueError(f"webhook_headers: {name!r} may not be set by the client")
        if not isinstance(value, str) or any((ord(c) < 32 and c != "\t") or ord(c) == 127
                                             for c in value):
            raise ValueError(f"webhook_headers: the value of {name!r} must be a string"
                             " without control characters")
        out[name] = value
    return out


def _pinned(parts: urllib.parse.SplitResult, address: Address) -> tuple[str, str]:
    """The URL aimed at ``address`` and the original ``Host`` header value."""
    host = str(address) if address.version == 4 else f"[{address}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    target = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/",
                                      parts.query, ""))
    return target, parts.netloc.rpartition("@")[2]


async def deliver(url: str, body: bytes, headers: Mapping[str, str], *,
                  policy: WebhookPolicy, attempts: int = 4, backoff: float = 1.0,
                  timeout: float = 10.0, what: str = "webhook") -> bool:
    """POST ``body`` to ``url`` (see the module docstring); ``True`` once a 2xx answer
    came, ``False`` when refused or out of attempts (logged either way)."""
    delay = backoff
    last = "no attempt made"
    async with policy.limiter:
        for attempt in range(1, max(1, attempts) + 1):
            try:
                parts, address = await policy.resolve(url)
                target, host = _pinned(parts, address)
                extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" \
                    else {}
                async with httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                             trust_env=False) as client:
                    response = await client.post(
                        target, content=body, extensions=extensions,
                        headers={"content-type": "application/json", **headers,
                                 "host": host})
                status = response.status_code
                if 200 <= status < 300:
                    _log.info("%s delivered to %s (attempt %d)", what, url, attempt)
                    return True
                last = f"answered {status}"
                if 400 <= status < 500 and status not in (408, 429):
                    _log.warning("%s to %s refused: %s; not retried", what, url, last)
                    return False
            except CapabilityRefused as exc:
                _log.warning("%s not sent: %s", what, exc)
                return False
            except (httpx.HTTPError, OSError) as exc:
                last = f"failed: {type(exc).__name__}: {exc}"
            if attempt < attempts:
                await trio.sleep(delay)
                delay *= 2
        _log.warning("%s to %s given up after %d attempts: %s", what, url, attempts, last)
        return False
