"""Bridge events: a bridge's state and counters, on the network's event bus.

:class:`BridgeStatus` is published (only while someone subscribes) whenever a bridge
changes state (``connecting``/``up``/``down``/``lost``/``closed``) and once per ping
interval while it is up, so a live view can draw each bridge's RTT, credits and
resend buffer without polling. Same conventions as the kernel's events: ``_type``
tag, camelCase fields, ms timestamps.
"""

from __future__ import annotations

import msgspec

from reflowpy.network.events import now_ms

__all__ = ["BridgeStatus"]


class BridgeStatus(msgspec.Struct, frozen=True, tag_field="_type", tag="BridgeStatus",
                   rename="camel", kw_only=True):
    """One bridge right now (see :class:`~reflowpy.bridge.BridgeStatistics`)."""

    network: str
    peer: str
    location: str
    state: str
    rtt_ms: float | None
    credits: int
    resend_buffer: int
    receive_buffer: int
    reconnects: int
    bytes_in: int
    bytes_out: int
    msgs_in: int
    msgs_out: int
    timestamp: float = msgspec.field(default_factory=now_ms)
