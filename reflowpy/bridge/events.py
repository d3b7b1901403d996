"""Bridge events: a bridge's state and counters, on the network's event bus.

:class:`BridgeStatus` is published (only while someone subscribes) whenever a bridge
changes state (``connecting``/``up``/``down``/``lost``/``closed``) and once per ping
interval while it is up, so a live view can draw each bridge's RTT, credits and
resend buffer without polling. The struct itself lives with the kernel's events
(:mod:`reflowpy.network.events`, in the ``NetworkEvent`` union), so a consumer that
decodes the event stream (``codec.decode_event``, the trace store's ``/events``)
reads it without importing the bridge; this module re-exports it.
"""

from __future__ import annotations

from reflowpy.network.events import BridgeStatus

__all__ = ["BridgeStatus"]
