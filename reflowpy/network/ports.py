"""In-ports and out-ports: bounded FIFO queues, the one delivery path, fan-out, statistics.

Every in-port of every node owns one bounded FIFO. All connections into the port
append to it (**merge**), so order is FIFO per connection and arrival order across
connections. An out-port holds the list of in-ports it feeds; a value sent out of
it is appended to each of them (**broadcast**), so the slowest receiver sets the
pace.

**The delivery path.** An :class:`OutPort` owns sending: the strict type check, the
counters, broadcast and backpressure. :meth:`OutPort.send_nowait` delivers a value
to every target or to none (it refuses when a target is full), and
:meth:`OutPort.send` is built on it exactly as trio's ``MemorySendChannel.send`` is
built on ``send_nowait``: try, and on refusal wait for room target by target. Every
sender in the kernel (behaviour outputs, ``ctx.send``, ``Network.send``, IIPs,
re-sent dead letters) goes through these two methods. The runner's batch hand-over
(:meth:`InPort.put_batch`) is a specialisation for a plain-``def`` node with one
unchecked target: it reserves room first, so it cannot block.

**The receiving side** is the :class:`Receiver` protocol: an in-port appends a value,
notes the arrival order if the receiver keeps one, and calls ``wake`` only when the
receiver asked for it (it is parked, or has no task yet). A local runner implements it
(:class:`~reflowpy.network.runner.NodeRunner`); a remote in-port (a bridge) or an
observed port can implement it too, without another copy of the delivery code.

Why not a ``trio.MemorySendChannel`` per connection? A channel send is a
checkpoint: every message costs a trip through the scheduler. Here a send that finds
room in the queue is a plain ``deque.append`` plus, if the receiving node is parked,
one ``reschedule`` -- no yield. The sender keeps running until it blocks on a full
queue or runs out of input, and the receiver then takes everything already queued in
one go. Under light load a message goes straight through (nobody waits to fill a
batch); under heavy load whatever is queued moves together.

**Backpressure.** ``put_nowait`` refuses when the queue holds ``capacity`` values;
``put`` then parks the sending task in the port's FIFO of waiting senders until the
receiver takes a value. Capacity comes from the connection (the largest of the
connections into the port), else the port's declaration, else the network default.
If in doubt, keep the default: large queues only add latency and memory.

**Nothing lost.** A value waiting in ``put`` belongs to the port's ledger (``blocked``).
If the waiting task is cancelled (forced stop, outer cancellation, node removal) the
value goes to the dead letters with the reason, through :meth:`Receiver.reject`. A
port whose node was removed (:meth:`InPort.retire`) or whose network stopped
(:meth:`InPort.close`) no longer queues: a removed port dead-letters what still
reaches it (``node removed``), a closed port raises
:class:`~reflowpy.NetworkStopped` so the sender keeps its value (it was never
accepted).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import msgspec
import trio

from reflowpy.errors import MessageError, NetworkStopped
from reflowpy.network.porttypes import PortType, accepts

__all__ = [
    "InPort",
    "OutPort",
    "OutPortStatistics",
    "OutputSink",
    "PortStatistics",
    "Receiver",
]

_reschedule = trio.lowlevel.reschedule
_current_task = trio.lowlevel.current_task
_wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
_Abort = trio.lowlevel.Abort


_NO_WAITERS: Any = ()
_NO_QUEUE: Any = ()


async def _wait_in(waiters: deque[trio.lowlevel.Task]) -> None:
    """Park the current task in ``waiters`` until someone reschedules it (or cancel)."""
    task = _current_task()
    waiters.append(task)

    def abort(_: Callable[[], Any]) -> _Abort:
        with contextlib.suppress(ValueError):
            waiters.remove(task)
        return _Abort.SUCCEEDED

    await _wait_task_rescheduled(abort)


class Receiver(Protocol):
    """What an :class:`InPort` delivers to: a local runner, a remote in-port, a probe.

    The port reads two attributes per value, so the protocol costs no call on the hot
    path:

    ``order``
        ``None``, or a deque the port appends itself to once per value (arrival order
        across the receiver's in-ports).
    ``parked``
        True when the receiver wants ``wake(port)`` after an arrival (it waits, or has
        no task yet); False while it is running and will look at its queues anyway.

    ``wake(port)`` is called with the value already queued. ``reject(port, value,
    reason)`` takes a value the port could not keep (its blocked sender was cancelled,
    or the node was removed) to the dead letters.
    """

    order: deque[InPort] | None
    parked: bool

    def wake(self, port: InPort) -> None: ...

    def reject(self, port: InPort, value: Any, reason: str | None) -> None: ...


class PortStatistics(msgspec.Struct, frozen=True):
    """A snapshot of one in-port (or exported out-port sink) and its ledger.

    ``total`` values were queued so far, ``queued`` are waiting now, ``high_water`` is
    the largest queue length seen (tracked as the queue grows), ``waiting_senders``
    are blocked in ``put`` right now and ``abandoned`` were dead-lettered without
    entering the queue (a cancelled blocked sender, or a send into a removed port).
    """

    node: str
    port: str
    queued: int
    capacity: int
    total: int
    waiting_senders: int
    high_water: int
    abandoned: int = 0


class OutPortStatistics(msgspec.Struct, frozen=True):
    """A snapshot of one out-port: values sent, sent to nobody, and its targets."""

    node: str
    port: str
    sent: int
    unconnected: int
    targets: int


class InPort:
    """The bounded queue of one node's in-port.

    ``put_nowait`` is the hot path: it appends, counts, notes the arrival order, and
    wakes the receiver only if it asked for it. It never yields. ``put`` waits for
    room (backpressure).
    """

    __slots__ = (
        "abandoned",
        "capacity",
        "high_water",
        "mark",
        "name",
        "node",
        "putters",
        "queue",
        "runner",
        "strict",
        "total",
    )

    def __init__(
        self,
        runner: Any,
        node: str,
        name: str,
        capacity: int,
        strict: PortType | None = None,
    ) -> None:
        #: The :class:`Receiver` (``None`` for an exported out-port's sink).
        self.runner = runner
        #: The declared type when the port is strict (checked by senders), else None.
        self.strict = strict
        self.node = node
        self.name = name
        self.capacity = capacity
        # An empty deque costs 760 bytes; a port gets one with its first value.
        self.queue: deque[Any] = _NO_QUEUE
        # Most ports never see a blocked sender: share one empty tuple until one does.
        self.putters: deque[trio.lowlevel.Task] = _NO_WAITERS
        self.total = 0
        self.high_water = 0
        #: ``min(high_water, capacity)``: below it a put neither fills the queue nor
        #: raises the high water, so the hot path compares once (see put_nowait).
        self.mark = 0
        self.abandoned = 0

    def set_capacity(self, capacity: int) -> None:
        """Change the bound; senders waiting for room retry (the owner keeps the
        invariants: ``mark`` follows, and a larger queue lets waiting senders in)."""
        self.capacity = capacity
        self.mark = min(self.high_water, capacity)
        self.wake_putters()

    def put_nowait(self, value: Any) -> bool:
        """Append ``value`` if there is room and wake the receiver; False when full."""
        queue = self.queue
        depth = len(queue)
        if depth >= self.mark:
            # Full, or the queue grows past its high water (rare: only while it grows).
            if depth >= self.capacity:
                return False
            if depth >= self.high_water:
                self.high_water = depth + 1
            self.mark = min(self.high_water, self.capacity)
        try:
            queue.append(value)
        except AttributeError:  # first value ever: allocate the queue (no cost per put)
            self.queue = deque((value,))
        self.total += 1
        runner = self.runner
        if runner is not None:
            if runner.order is not None:
                runner.order.append(self)
            if runner.parked:
                runner.wake(self)
        return True

    async def put(self, value: Any, *, abandon: bool = True) -> None:
        """Append ``value``, waiting while the queue is full (FIFO among waiting senders).

        Cancelled while waiting, the value goes to the dead letters (the ledger keeps
        it) before the cancellation propagates -- unless ``abandon`` is false: then the
        value was never accepted and stays the caller's (``Network.send``).
        """
        while not self.put_nowait(value):
            if self.putters is _NO_WAITERS:
                self.putters = deque()
            try:
                await _wait_in(self.putters)
            except BaseException:
                if abandon:
                    self.abandon(value, None)
                raise

    def abandon(self, value: Any, reason: str | None) -> None:
        """``value`` will never be queued here: dead-letter it (with ``reason``)."""
        self.abandoned += 1
        if self.runner is not None:
            self.runner.reject(self, value, reason)

    def take(self) -> Any:
        """Remove and return the oldest value, letting one waiting sender proceed."""
        value = self.queue.popleft()
        if self.putters:
            _reschedule(self.putters.popleft())
        return value

    def wake_putters(self) -> None:
        """Let every waiting sender retry (after capacity grew or the port was removed)."""
        while self.putters:
            _reschedule(self.putters.popleft())

    def put_batch(self, values: list[Any]) -> None:
        """Append values the caller reserved room for (even past capacity: only for room
        already promised), waking the receiver once."""
        try:
            self.queue.extend(values)
        except AttributeError:
            self.queue = deque(values)
        self.total += len(values)
        depth = len(self.queue)
        if depth > self.high_water:
            self.high_water = depth
            self.mark = min(depth, self.capacity)
        runner = self.runner
        if runner is not None:
            if runner.order is not None:
                runner.order.extend([self] * len(values))
            if runner.parked:
                runner.wake(self)

    def retire(self) -> None:
        """The node was removed: from now on values sent here are dead-lettered."""
        self.__class__ = _RetiredInPort
        self.wake_putters()

    def close(self) -> None:
        """The network stopped: senders get :class:`~reflowpy.NetworkStopped`."""
        self.__class__ = _ClosedInPort
        self.wake_putters()

    def statistics(self) -> PortStatistics:
        """Queue length, capacity, totals, senders waiting for room, high water."""
        return PortStatistics(
            node=self.node,
            port=self.name,
            queued=len(self.queue),
            capacity=self.capacity,
            total=self.total,
            waiting_senders=len(self.putters),
            high_water=self.high_water,
            abandoned=self.abandoned,
        )


class _RetiredInPort(InPort):
    """An in-port of a removed node: what still arrives is dead-lettered at once."""

    __slots__ = ()

    def put_nowait(self, value: Any) -> bool:
        self.abandon(value, "node removed")
        return True

    def put_batch(self, values: list[Any]) -> None:
        for value in values:
            self.abandon(value, "node removed")


class _ClosedInPort(InPort):
    """An in-port of a stopped network: refuses values, so senders keep them."""

    __slots__ = ()

    def put_nowait(self, value: Any) -> bool:
        raise NetworkStopped(
            f"node {self.node!r} port {self.name!r}: the network has stopped; the value"
            " was not accepted")

    def put_batch(self, values: list[Any]) -> None:
        for value in values:
            self.abandon(value, "stopped")


class OutputSink(InPort):
    """The queue behind an exported out-port; read with ``Network.outputs(name)``.

    Values that reach it have left the network, so they do not keep it busy, but the
    queue is still bounded: a consumer that stops reading slows the graph down instead
    of growing memory without limit. A sender cancelled while blocked on a full sink
    dead-letters its value through ``on_abandon`` (set by the network).
    """

    __slots__ = ("closed", "on_abandon", "readers", "receiver")

    def __init__(self, node: str, name: str, capacity: int) -> None:
        super().__init__(None, node, name, capacity)
        self.queue = deque()
        self.readers: deque[trio.lowlevel.Task] = deque()
        self.closed = False
        self.on_abandon: Callable[[OutputSink, Any, str | None], None] | None = None
        #: A :class:`Receiver` told of every value (``Network.attach_receiver``).
        self.receiver: Receiver | None = None

    def put_nowait(self, value: Any) -> bool:
        queue = self.queue
        depth = len(queue)
        if depth >= self.capacity:
            return False
        queue.append(value)
        self.total += 1
        if depth >= self.high_water:
            self.high_water = depth + 1
        if self.readers:
            _reschedule(self.readers.popleft())
        elif self.receiver is not None and self.receiver.parked:
            self.receiver.wake(self)
        return True

    def put_batch(self, values: list[Any]) -> None:
        self.queue.extend(values)
        self.total += len(values)
        self.high_water = max(self.high_water, len(self.queue))
        self.wake_readers()
        if self.receiver is not None and self.receiver.parked:
            self.receiver.wake(self)

    def abandon(self, value: Any, reason: str | None) -> None:
        self.abandoned += 1
        if self.on_abandon is not None:
            self.on_abandon(self, value, reason)

    def wake_readers(self) -> None:
        """Let every waiting reader look at the queue again."""
        while self.readers:
            _reschedule(self.readers.popleft())

    def close(self) -> None:
        """No more values will come: wake every reader so iteration can end."""
        self.closed = True
        while self.readers:
            _reschedule(self.readers.popleft())

    async def get(self) -> Any:
        """The next value; raises ``trio.EndOfChannel`` once closed and drained."""
        while not self.queue:
            if self.closed:
                raise trio.EndOfChannel
            await _wait_in(self.readers)
        return self.take()


class _Owner(Protocol):
    """The sender an out-port belongs to (a runner): told when a send waits for room
    (``waiting_for(target)``, then ``waiting_for(None)``), so time blocked on full
    queues is counted and stall detection knows who is stuck where."""

    def waiting_for(self, target: InPort | None) -> None: ...


class _Announcer(Protocol):
    """Told of each value an observed send puts into a queue (the event bus's ``sent``,
    read at each call: the bus rewires it when observers come and go)."""

    sent: Callable[[OutPort, InPort, Any, int], None]


_NO_TARGETS: list[InPort] = []  # shared, never mutated
_NO_INDEX: dict[int | None, list[InPort]] = {}  # shared, never mutated


class OutPort:
    """One node's out-port: the in-ports it feeds (broadcast), and sending.

    ``send_nowait``/``send`` are the one delivery path (see the module docstring).
    ``owner`` (the sending node's runner, or ``None`` for the network's own sends) is
    told while a send waits for room (see :class:`_Owner`).
    """

    __slots__ = ("by_index", "checked", "indices", "name", "node", "owner", "sent",
                 "strict", "targets", "unconnected")

    def __init__(self, node: str, name: str, strict: PortType | None = None,
                 owner: _Owner | None = None) -> None:
        self.node = node
        self.name = name
        self.strict = strict
        self.owner = owner
        #: Whether sends must be type-checked (this port or a target is strict).
        self.checked = strict is not None
        self.targets: list[InPort] = []
        self.indices: list[int | None] = []
        #: The targets of each connection index (rebuilt with the targets).
        self.by_index: dict[int | None, list[InPort]] = _NO_INDEX
        self.sent = 0
        self.unconnected = 0

    def check(self, value: Any) -> None:
        """Refuse ``value`` if this port or a target is strict and its type rejects it."""
        if self.strict is not None and not accepts(self.strict, value):
            raise MessageError(
                f"node {self.node!r} port {self.name!r} is strict ({self.strict}) and"
                f" cannot send a {type(value).__name__}: {value!r:.60}")
        for target in self.targets:
            if target.strict is not None and not accepts(target.strict, value):
                raise MessageError(
                    f"node {self.node!r} port {self.name!r}: node {target.node!r} port"
                    f" {target.name!r} is strict ({target.strict}) and refuses a"
                    f" {type(value).__name__}: {value!r:.60}")

    def send_nowait(self, value: Any, index: int | None = None) -> bool:
        """Deliver an already frozen ``value`` to every target (or those with ``index``),
        all or none: False, and nothing delivered, when a target is full.

        Raises :class:`~reflowpy.MessageError` when a strict type refuses the value.
        """
        if self.checked:
            self.check(value)
        chosen = self.targets if index is None else self.by_index.get(index, _NO_TARGETS)
        if len(chosen) == 1:
            if not chosen[0].put_nowait(value):
                return False
            self.sent += 1
            return True
        for target in chosen:
            if len(target.queue) >= target.capacity:
                return False
        self.sent += 1
        if not chosen:
            self.unconnected += 1
        for target in chosen:
            # Room was checked and nothing yielded since, but a put may activate its
            # receiver inline, and that receiver may fill a later target of this
            # broadcast: the room promised to this value is then taken past capacity.
            if not target.put_nowait(value):
                target.put_batch([value])
        return True

    async def send(self, value: Any, index: int | None = None,
                   announce: _Announcer | None = None) -> None:
        """Deliver ``value``, waiting for room target by target (backpressure).

        Cancelled while waiting, the value is dead-lettered at every target that has
        not received it yet (with the reason), so the ledger still balances.

        ``announce`` (an observed send: the network's event bus) has its
        ``sent(self, target, value, depth)`` called as the value enters each target's
        queue, before anything can yield: while a broadcast waits for room at a later
        target, an earlier target may already take the value, and an observer must see
        the send before that receive. ``depth`` is the queue's length right after it.
        """
        if self.send_nowait(value, index):
            if announce is not None:
                for target in self._chosen(index):
                    announce.sent(self, target, value, len(target.queue))
            return
        self.sent += 1
        owner = self.owner
        chosen = self._chosen(index)
        for i, target in enumerate(chosen):
            if not target.put_nowait(value):
                if owner is not None:
                    owner.waiting_for(target)
                try:
                    await target.put(value, abandon=False)
                except BaseException:
                    # The sender's reason (a removed node says "node removed"), else the
                    # network's: this value and the targets not reached yet are dead letters.
                    reason = getattr(owner, "cancel_reason", None)
                    for rest in chosen[i:]:
                        rest.abandon(value, reason)
                    raise
                finally:
                    if owner is not None:
                        owner.waiting_for(None)
            if announce is not None:
                announce.sent(self, target, value, len(target.queue))

    def _chosen(self, index: int | None) -> list[InPort]:
        if index is None:
            return self.targets
        return self.by_index.get(index, _NO_TARGETS)

    def _retarget(self, targets: list[InPort], indices: list[int | None]) -> None:
        # Only indexed connections are looked up by index (index None reads targets):
        # most out-ports have none and share one empty table.
        by_index: dict[int | None, list[InPort]] = _NO_INDEX
        for t, i in zip(targets, indices, strict=True):
            if i is not None:
                if by_index is _NO_INDEX:
                    by_index = {}
                by_index.setdefault(i, []).append(t)
        self.targets = targets
        self.indices = indices
        self.by_index = by_index
        self.checked = self.strict is not None or any(t.strict is not None for t in targets)

    def connect(self, target: InPort, index: int | None = None) -> None:
        """Feed ``target`` from this port (a no-op if it already does)."""
        for t, i in zip(self.targets, self.indices, strict=True):
            if t is target and i == index:
                return
        self._retarget([*self.targets, target], [*self.indices, index])

    def disconnect(self, target: InPort, index: int | None = None) -> None:
        """Stop feeding ``target`` (copy-on-write: senders iterating see a stable list)."""
        pairs = [
            (t, i) for t, i in zip(self.targets, self.indices, strict=True)
            if not (t is target and i == index)
        ]
        self._retarget([t for t, _ in pairs], [i for _, i in pairs])

    def statistics(self) -> OutPortStatistics:
        """Values sent, values sent while nothing was connected, number of targets."""
        return OutPortStatistics(node=self.node, port=self.name, sent=self.sent,
                                 unconnected=self.unconnected, targets=len(self.targets))
