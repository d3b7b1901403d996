"""Network events and the non-blocking event bus.

Events use Reflow's names (``NetworkStarted``, ``ActorStarted``, ``ActorCompleted``,
``ActorFailed``, ``MessageSent``, ``MessageReceived``, ``NetworkIdle``,
``NetworkShutdown``) with a ``_type`` tag, camelCase fields and millisecond
timestamps, and add what Reflow lacks: activation durations, queue depths, dead
letters. They are frozen msgspec structs, so ``msgspec.json.encode(event)`` is the
wire form the server, bridges and the trace store share.

The bus never makes the dataflow wait. Each subscriber has a bounded buffer; when it
is full the event is dropped *for that subscriber* and its ``dropped`` counter grows,
and the next event it receives carries that count (``EventSubscription.dropped``).
With no subscriber, the kernel does not even build per-message events: it checks
:attr:`EventBus.active` (a plain attribute) before constructing one.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import msgspec
import trio

__all__ = [
    "ActorCompleted",
    "ActorFailed",
    "ActorStarted",
    "BridgeStatus",
    "DeadLettered",
    "EventBus",
    "EventSubscription",
    "MessageReceived",
    "MessageSent",
    "NetworkEvent",
    "NetworkIdle",
    "NetworkShutdown",
    "NetworkStalled",
    "NetworkStarted",
    "now_ms",
]


def now_ms() -> float:
    """Wall-clock time in milliseconds since the epoch (event timestamps)."""
    return time.time() * 1000.0


class _Event(msgspec.Struct, frozen=True, tag_field="_type", rename="camel", kw_only=True):
    network: str = ""
    timestamp: float = msgspec.field(default_factory=now_ms)


class NetworkStarted(_Event, frozen=True, tag="NetworkStarted"):
    """The network started: actors created, IIPs about to be delivered."""

    nodes: int = 0


class ActorStarted(_Event, frozen=True, tag="ActorStarted"):
    """A node's actor was created and set up (also after a restart)."""

    actor_id: str
    component: str = ""


class ActorCompleted(_Event, frozen=True, tag="ActorCompleted"):
    """A node's ``run()`` returned, or the node finished during shutdown."""

    actor_id: str
    component: str = ""
    activations: int = 0


class ActorFailed(_Event, frozen=True, tag="ActorFailed"):
    """An activation raised. ``attempt`` counts tries of this message (1 = first).

    ``error_type`` is the exception's class name, ``traceback`` its formatted
    traceback, ``reason`` ``failed`` or ``timeout``.
    """

    actor_id: str
    component: str = ""
    error: str = ""
    error_type: str = ""
    port: str | None = None
    attempt: int = 1
    will_retry: bool = False
    duration_ms: float = 0.0
    traceback: str = ""
    reason: str = "failed"


class MessageSent(_Event, frozen=True, tag="MessageSent"):
    """A message left ``from_actor.from_port`` for ``to_actor.to_port``.

    ``to_actor`` is empty for an exported out-port (``to_port`` is then its public
    name). ``queue_depth`` is the target queue's length after the send.
    """

    from_actor: str
    from_port: str
    to_actor: str
    to_port: str
    message: Any = None
    queue_depth: int = 0


class MessageReceived(_Event, frozen=True, tag="MessageReceived"):
    """An actor took a message from its in-port ``port`` to process it."""

    actor_id: str
    port: str
    message: Any = None
    queue_depth: int = 0


class DeadLettered(_Event, frozen=True, tag="DeadLettered"):
    """A message was moved to the dead-letter store: its policy was exhausted, or it
    was in flight when the network stopped, was cancelled, or lost its node
    (``reason``: see :class:`~reflowpy.DeadLetter`)."""

    actor_id: str
    port: str
    letter_id: int
    error: str = ""
    error_type: str = ""
    traceback: str = ""
    reason: str = "failed"


class NetworkStalled(_Event, frozen=True, tag="NetworkStalled"):
    """Nothing can make progress: every active node is blocked on a full queue.

    ``cycle`` names the nodes of a cycle of full queues (empty when the blocked chain
    ends at a node waiting for something else), ``nodes`` every blocked node, and
    ``queues`` maps ``"node.port"`` to ``[depth, capacity]`` of each queue waited on.
    """

    cycle: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    queues: dict[str, tuple[int, int]] = msgspec.field(default_factory=dict)


class NetworkIdle(_Event, frozen=True, tag="NetworkIdle"):
    """Nothing is queued or being processed anywhere in the network."""


class NetworkShutdown(_Event, frozen=True, tag="NetworkShutdown"):
    """The network stopped. ``forced`` is true when it did not drain."""

    forced: bool = False
    error: str | None = None


class BridgeStatus(_Event, frozen=True, tag="BridgeStatus"):
    """One bridge (a session to a partition or remote peer) right now: its state
    (``connecting``/``up``/``down``/``lost``/``closed``), RTT, credits, buffers and
    totals. Published by :mod:`reflowpy.bridge` on state changes and once per ping
    interval; defined here so every consumer of the event stream can decode it."""

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


NetworkEvent = (
    NetworkStarted
    | ActorStarted
    | ActorCompleted
    | ActorFailed
    | MessageSent
    | MessageReceived
    | DeadLettered
    | NetworkIdle
    | NetworkShutdown
    | NetworkStalled
    | BridgeStatus
)


class EventSubscription:
    """One subscriber's bounded view of the event stream.

    Iterate it with ``async for``; leave with ``close()`` or by using it as a (sync or
    async) context manager. Iteration ends after ``NetworkShutdown`` is delivered or
    when the subscription is closed.
    """

    def __init__(self, bus: EventBus, buffer: int) -> None:
        if buffer < 1:
            raise ValueError("an event subscription needs a buffer of at least 1")
        self._bus = bus
        self._buffer: deque[Any] = deque()
        self._size = buffer
        self._waiter: trio.Event | None = None
        self.dropped = 0
        self.closed = False

    def _push(self, event: Any) -> None:
        if len(self._buffer) >= self._size:
            self.dropped += 1
            return
        self._buffer.append(event)
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def close(self) -> None:
        """Stop receiving events; pending ones are discarded."""
        if not self.closed:
            self.closed = True
            self._bus._remove(self)
            if self._waiter is not None:
                self._waiter.set()
                self._waiter = None

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            while self._buffer:
                event = self._buffer.popleft()
                yield event
                if isinstance(event, NetworkShutdown):
                    self.close()
                    return
            if self.closed:
                return
            self._waiter = trio.Event()
            await self._waiter.wait()

    async def wait(self) -> None:
        """Return once an event is buffered or the subscription is closed.

        Cancel-safe: unlike cancelling an ``async for`` over the subscription, it
        consumes nothing.
        """
        while not self._buffer and not self.closed:
            if self._waiter is None:
                self._waiter = trio.Event()
            await self._waiter.wait()

    def take_all(self) -> deque[Any]:
        """Every buffered event, oldest first, in one go (the buffer starts empty)."""
        events, self._buffer = self._buffer, deque()
        return events

    def put_back(self, events: deque[Any]) -> None:
        """Return events taken with :meth:`take_all` but not handled, ahead of newer ones."""
        if events:
            events.extend(self._buffer)
            self._buffer = events

    def get_nowait(self) -> Any:
        """The next buffered event; raises ``trio.WouldBlock`` if none is waiting."""
        if not self._buffer:
            raise trio.WouldBlock
        return self._buffer.popleft()

    def __enter__(self) -> EventSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> EventSubscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventBus:
    """Fan-out of network events to bounded subscriptions; never blocks the publisher.

    ``publish(event)`` delivers ``event`` to every subscription (dropping it where a
    buffer is full). It is an attribute, rewired whenever the subscriptions change: with
    exactly one subscriber (a trace collector, the usual case) it *is* that
    subscription's push, so a traced message pays no fan-out loop.
    """

    def __init__(self) -> None:
        self._subscriptions: list[EventSubscription] = []
        #: True when at least one subscriber listens; the hot path reads only this.
        self.active = False
        self.publish: Callable[[Any], None] = self._publish_all

    def subscribe(self, buffer: int = 1000) -> EventSubscription:
        """A new subscription holding at most ``buffer`` undelivered events."""
        return self._add(EventSubscription(self, buffer))

    def _add(self, sub: EventSubscription) -> EventSubscription:
        # A new list, never the one a publish may be walking right now.
        self._subscriptions = [*self._subscriptions, sub]
        self._rewire()
        return sub

    def _remove(self, sub: EventSubscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions = [s for s in self._subscriptions if s is not sub]
        self._rewire()

    def _rewire(self) -> None:
        subs = self._subscriptions
        self.active = bool(subs)
        self.publish = subs[0]._push if len(subs) == 1 else self._publish_all

    def _publish_all(self, event: Any) -> None:
        for sub in self._subscriptions:
            sub._push(event)

    def statistics(self) -> dict[str, int]:
        """Subscribers and the events they lost to full buffers."""
        return {
            "subscribers": len(self._subscriptions),
            "dropped": sum(s.dropped for s in self._subscriptions),
        }
