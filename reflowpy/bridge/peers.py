"""The peers file: named peers this network may place nodes on, and their tokens.

YAML or JSON::

    peers:
      gpu-box:
        url: ws://10.0.0.7:8080/bridge
        token: s3cret            # optional; else REFLOWPY_BRIDGE_TOKEN
      edge:
        url: wss://edge.example/bridge
        ca: /etc/reflowpy/edge-ca.pem   # optional: the CA to trust for wss://

A node's ``"remote"`` metadata names a peer (``"gpu-box"``) or gives a URL directly;
the token presented is the peer's own, else ``REFLOWPY_BRIDGE_TOKEN``, else none
(accepted only by a peer that has no token either).
"""

from __future__ import annotations

import os
import secrets
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import trio

from reflowpy.bridge.session import dial
from reflowpy.bridge.transport import LinkClosed, StreamTransport, Transport
from reflowpy.bridge.websocket import WebSocketTransport
from reflowpy.errors import BridgeAuthError, BridgeError, ConfigError, GraphFormatError
from reflowpy.network.formats._limits import read_limited
from reflowpy.network.formats.yaml import load_data

__all__ = ["Peer", "PeerState", "Peers", "load_peers", "probe", "probe_all",
           "ssl_context_for", "transport_for"]


class Peer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One named peer: where its ``/bridge`` is, the token to present, and for
    ``wss://`` optionally ``ca``: a CA bundle (or the peer's own certificate) to trust
    instead of the system's."""

    url: str
    token: str | None = None
    ca: str | None = None


class Peers(msgspec.Struct, frozen=True):
    """The configured peers, by name."""

    peers: dict[str, Peer] = {}

    def resolve(self, remote: str) -> tuple[str, str]:
        """``(url, token)`` for a node's ``remote`` value (a peer name or a URL)."""
        peer = self.peers.get(remote)
        default = os.environ.get("REFLOWPY_BRIDGE_TOKEN", "")
        if peer is not None:
            return peer.url, peer.token if peer.token is not None else default
        if "://" in remote or remote.startswith("unix:"):
            return remote, default
        raise ConfigError(f"remote {remote!r} is neither a URL nor a peer of the peers file"
                          f" (known peers: {', '.join(sorted(self.peers)) or 'none'})")


def transport_for(address: str, *, ssl_context: ssl.SSLContext | None = None) -> Transport:
    """The transport an address names (``ws://``, ``wss://``, ``unix:``, ``tcp://``)."""
    if address.startswith(("ws://", "wss://")):
        return WebSocketTransport(address, ssl_context=ssl_context)
    if address.startswith(("unix:", "tcp://")):
        return StreamTransport(address)
    raise BridgeError(f"unknown bridge address {address!r}: expected ws://, wss://, unix: or"
                      " tcp://")


def ssl_context_for(peers: Peers, remote: str) -> ssl.SSLContext | None:
    """The TLS context for a ``wss://`` peer (its ``ca`` if given, else the system's)."""
    url, _ = peers.resolve(remote)
    if not url.startswith("wss://"):
        return None
    peer = peers.peers.get(remote)
    return ssl.create_default_context(cafile=peer.ca if peer is not None else None)


def load_peers(source: str | Path | Mapping[str, Any] | None) -> Peers:
    """Read a peers file (path) or mapping; ``None`` gives no peers."""
    if source is None:
        return Peers()
    where = "peers mapping"
    data: Any = source
    if not isinstance(source, Mapping):
        where = f"peers file {str(source)!r}"
        try:
            with open(source, "rb") as file:
                # the graph readers' YAML: bounded size, depth and alias expansion
                data = load_data(read_limited(file, "peers"))
        except OSError as exc:
            raise ConfigError(f"{where}: {exc.strerror}") from None
        except GraphFormatError as exc:
            at = f" at {exc.where}" if exc.where else ""
            raise ConfigError(f"{where}{at}: {exc.detail}") from None
    try:
        return msgspec.convert(data or {}, Peers)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from None


class PeerState(msgspec.Struct, frozen=True):
    """What probing one peer found: ``ok`` (reachable, token accepted), ``auth`` (token
    refused), ``unreachable`` or ``error``; the handshake time in ms."""

    name: str
    url: str
    state: str
    detail: str
    handshake_ms: float | None = None


async def probe(name: str, url: str, token: str, *, timeout: float = 5.0,
                ssl_context: ssl.SSLContext | None = None) -> PeerState:
    """Dial ``url`` and run the HELLO challenge without placing anything."""
    started = trio.current_time()
    try:
        with trio.fail_after(timeout):
            async with transport_for(url, ssl_context=ssl_context).connect() as conn:
                await dial(conn, local_id="probe", token=token,
                           session=f"probe-{secrets.token_hex(4)}", timeout=timeout)
    except BridgeAuthError as exc:
        ms = (trio.current_time() - started) * 1000
        if getattr(exc, "code", "") == "refused":  # token accepted; nothing to host: fine
            return PeerState(name, url, "ok", "token accepted", ms)
        return PeerState(name, url, "auth", str(exc), ms)
    except (OSError, LinkClosed, trio.TooSlowError) as exc:
        return PeerState(name, url, "unreachable", str(exc) or type(exc).__name__)
    except BridgeError as exc:
        return PeerState(name, url, "error", str(exc))
    return PeerState(name, url, "ok", "handshake complete",
                     (trio.current_time() - started) * 1000)


async def probe_all(peers: Peers, timeout: float = 5.0) -> list[PeerState]:
    """Probe every configured peer concurrently (sorted by name)."""
    results: dict[str, PeerState] = {}

    async def one(name: str) -> None:
        url, token = peers.resolve(name)
        results[name] = await probe(name, url, token, timeout=timeout,
                                    ssl_context=ssl_context_for(peers, name))

    async with trio.open_nursery() as nursery:
        for name in peers.peers:
            nursery.start_soon(one, name)
    return [results[n] for n in sorted(results)]
