"""The peers file: named peers this network may place nodes on, and their tokens.

YAML or JSON::

    peers:
      gpu-box:
        url: ws://10.0.0.7:8080/bridge
        token: s3cret            # optional; else REFLOWPY_BRIDGE_TOKEN
      edge:
        url: wss://edge.example/bridge

A node's ``"remote"`` metadata names a peer (``"gpu-box"``) or gives a URL directly;
the token presented is the peer's own, else ``REFLOWPY_BRIDGE_TOKEN``, else none
(accepted only by a peer that has no token either).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

from reflowpy.errors import ConfigError

__all__ = ["Peer", "Peers", "load_peers"]


class Peer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One named peer: where its ``/bridge`` is and the token to present."""

    url: str
    token: str | None = None


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


def load_peers(source: str | Path | Mapping[str, Any] | None) -> Peers:
    """Read a peers file (path) or mapping; ``None`` gives no peers."""
    if source is None:
        return Peers()
    where = "peers mapping"
    data: Any = source
    if not isinstance(source, Mapping):
        where = f"peers file {str(source)!r}"
        try:
            data = yaml.safe_load(Path(source).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    try:
        return msgspec.convert(data or {}, Peers)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from None
