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

**Message taps.** The kernel reports a message entering or leaving a queue through
two bus attributes, ``sent(out, target, value, depth)`` and ``received(port, value,
depth)``, never by building the event itself. For subscribers the bus builds the
``MessageSent``/``MessageReceived`` struct from those arguments (once, however many
subscribers). A :class:`MessageTap` (the trace collector) gets the arguments as they
are, in the kernel's own call, and no struct is built for it; it receives every other
event through ``event(e)``. The bus rewires these attributes when subscribers or taps
come and go, so a traced message pays exactly one call into the one tap.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Protocol

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
    "MessageTap",
    "NetworkEvent",
    "NetworkIdle",
    "NetworkShutdown",
    "NetworkStalled",
    "NetworkStarted",
    "now_ms",
]


_time = time.time


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


class MessageTap(Protocol):
    """A synchronous observer of every event, called in the kernel's own call.

    ``sent(out, target, value, depth)``: ``value`` entered ``target``'s queue (an
    :class:`~reflowpy.network.ports.InPort`, or an exported out-port's sink, whose
    ``runner`` is ``None``) from the out-port ``out``; ``depth`` is the queue's length
    right after it. ``received(port, value, depth)``: a node took ``value`` from its
    in-port ``port`` for an activation; ``depth`` is the length right after the take.
    ``event(e)``: every other event (lifecycle, failures, dead letters), as
    subscribers see it. A tap must never raise and never block: it runs inside the
    dataflow, so it only appends to buffers of its own.
    """

    def sent(self, out: Any, target: Any, value: Any, depth: int) -> None: ...

    def received(self, port: Any, value: Any, depth: int) -> None: ...

    def event(self, event: Any) -> None: ...


def _ignore(*_: Any) -> None:
    # sent/received while nobody listens (a burst tap detached mid-batch)
    return None


class EventBus:
    """Fan-out of network events to bounded subscriptions and taps; never blocks the
    publisher.

    ``publish(event)`` delivers ``event`` to every subscription (dropping it where a
    buffer is full) and every tap. ``sent``/``received`` report one message (see the
    module docstring). All three are attributes, rewired whenever subscriptions or taps
    change: with exactly one subscriber, ``publish`` *is* that subscription's push; with
    exactly one tap and no subscriber, ``sent`` *is* the tap's ``sent``.
    """

    def __init__(self, network: str = "") -> None:
        #: The network name the built events carry.
        self.network = network
        self._subscriptions: list[EventSubscription] = []
        self._taps: list[MessageTap] = []
        #: True when at least one subscriber or tap listens; the hot path reads only this.
        self.active = False
        self.publish: Callable[[Any], None] = self._publish_all
        #: ``sent(out, target, value, depth)``: a value entered a queue (see MessageTap).
        self.sent: Callable[[Any, Any, Any, int], None] = _ignore
        #: ``received(port, value, depth)``: a node took a value (see MessageTap).
        self.received: Callable[[Any, Any, int], None] = _ignore

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

    def tap(self, tap: MessageTap) -> None:
        """Call ``tap`` for every event from now on (until :meth:`untap`)."""
        self._taps = [*self._taps, tap]
        self._rewire()

    def untap(self, tap: MessageTap) -> None:
        """Stop calling ``tap`` (safe inside one of its own calls, and twice)."""
        self._taps = [t for t in self._taps if t is not tap]
        self._rewire()

    def _rewire(self) -> None:
        subs, taps = self._subscriptions, self._taps
        self.active = bool(subs or taps)
        if not taps:
            self.publish = subs[0]._push if len(subs) == 1 else self._publish_all
            self.sent = self._sent_event if subs else _ignore
            self.received = self._received_event if subs else _ignore
        elif not subs and len(taps) == 1:
            self.publish = taps[0].event
            self.sent = taps[0].sent
            self.received = taps[0].received
        else:
            self.publish = self._publish_all
            self.sent = self._sent_all
            self.received = self._received_all

    def _publish_all(self, event: Any) -> None:
        for sub in self._subscriptions:
            sub._push(event)
        for tap in self._taps:
            tap.event(event)

    def _sent_event(self, out: Any, target: Any, value: Any, depth: int) -> None:
        event = MessageSent(
            network=self.network, timestamp=_time() * 1000.0, from_actor=out.node,
            from_port=out.name, to_actor=target.node if target.runner is not None else "",
            to_port=target.name, message=value, queue_depth=depth)
        for sub in self._subscriptions:
            sub._push(event)

    def _received_event(self, port: Any, value: Any, depth: int) -> None:
        event = MessageReceived(
            network=self.network, timestamp=_time() * 1000.0, actor_id=port.node,
            port=port.name, message=value, queue_depth=depth)
        for sub in self._subscriptions:
            sub._push(event)

    def _sent_all(self, out: Any, target: Any, value: Any, depth: int) -> None:
        if self._subscriptions:
            self._sent_event(out, target, value, depth)
        for tap in self._taps:
            tap.sent(out, target, value, depth)

    def _received_all(self, port: Any, value: Any, depth: int) -> None:
        if self._subscriptions:
            self._received_event(port, value, depth)
        for tap in self._taps:
            tap.received(port, value, depth)

    def statistics(self) -> dict[str, int]:
        """Subscribers and the events they lost to full buffers."""
        return {
            "subscribers": len(self._subscriptions) + len(self._taps),
            "dropped": sum(s.dropped for s in self._subscriptions),
        }
