"""Bridges: nodes in other reflowpy processes and on other machines.

A node whose metadata says ``"partition": "NAME"`` runs in a local worker process;
``"remote": "ws://host:port/bridge"`` (or a peer name from the peers file) runs it on
another ``reflowpy serve``. :class:`BridgedNetwork` places a graph that way and carries
every edge that crosses a boundary over a bridge: one connection per pair of peers,
edges as channels, credit-based flow control (a slow remote consumer slows the
producer, memory stays bounded), sequence numbers, acks and a resend buffer (a dropped
connection resumes with no loss and no duplicates), and an HMAC challenge on a shared
token at HELLO.

Where things live:

* :mod:`~reflowpy.bridge.frames` -- the wire frames and their limits;
* :mod:`~reflowpy.bridge.channel` -- one edge's state machine (seq, credit, resend, resume);
* :mod:`~reflowpy.bridge.session` -- the channels between two peers and the live link;
* :mod:`~reflowpy.bridge.transport` -- the link interface; Unix/TCP stream and in-memory links;
* :mod:`~reflowpy.bridge.websocket` -- the WebSocket link (wsproto over a trio stream);
* :mod:`~reflowpy.bridge.auth` -- the HELLO challenge;
* :mod:`~reflowpy.bridge.placement` -- cutting a graph by location;
* :mod:`~reflowpy.bridge.binding` -- the sender and receiver proxies on a Network;
* :mod:`~reflowpy.bridge.host` -- the accepting side (``/bridge``, partition workers);
* :mod:`~reflowpy.bridge.cluster` -- :class:`BridgedNetwork`, the placing side;
* :mod:`~reflowpy.bridge.worker` -- the partition worker process.
"""

from reflowpy.bridge.channel import ChannelStatistics
from reflowpy.bridge.cluster import BridgedNetwork
from reflowpy.bridge.host import Host
from reflowpy.bridge.peers import Peer, Peers, load_peers
from reflowpy.bridge.placement import Placement, place
from reflowpy.bridge.session import BridgeStatistics, Session
from reflowpy.bridge.transport import (
    Connection,
    MemoryTransport,
    StreamTransport,
    Transport,
)
from reflowpy.bridge.websocket import WebSocketTransport

__all__ = [
    "BridgeStatistics",
    "BridgedNetwork",
    "ChannelStatistics",
    "Connection",
    "Host",
    "MemoryTransport",
    "Peer",
    "Peers",
    "Placement",
    "Session",
    "StreamTransport",
    "Transport",
    "WebSocketTransport",
    "load_peers",
    "place",
]
