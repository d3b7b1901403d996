"""In-ports and out-ports: bounded FIFO queues, fan-out, backpressure, statistics.

Every in-port of every node owns one bounded FIFO. All connections into the port
append to it (**merge**), so order is FIFO per connection and arrival order across
connections. An out-port holds the list of in-ports it feeds; a value sent out of
it is appended to each of them (**broadcast**), so the slowest receiver sets the
pace.

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
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from reflowpy.errors import MessageError
from reflowpy.network.porttypes import PortType, accepts

if TYPE_CHECKING:
    from reflowpy.network.runner import NodeRunner

__all__ = ["InPort", "OutPort", "OutputSink", "PortStatistics"]

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


class PortStatistics(msgspec.Struct, frozen=True):
    """A snapshot of one port: queued values, capacity, totals, waiting senders."""

    node: str
    port: str
    queued: int
    capacity: int
    total: int
    waiting_senders: int
    high_water: int


class InPort:
    """The bounded queue of one node's in-port.

    ``put_nowait`` is the hot path: it appends, counts, notes the arrival order, and
    wakes the node only if it was parked (or has no task yet). It never yields.
    ``put`` waits for room (backpressure).
    """

    __slots__ = (
        "capacity",
        "high_water",
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
        runner: NodeRunner | None,
        node: str,
        name: str,
        capacity: int,
        strict: PortType | None = None,
    ) -> None:
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

    def put_nowait(self, value: Any) -> bool:
        """Append ``value`` if there is room and wake the receiver; False when full."""
        queue = self.queue
        if len(queue) >= self.capacity:
            return False
        try:
            queue.append(value)
        except AttributeError:  # first value ever: allocate the queue (no cost per put)
            self.queue = deque((value,))
        self.total += 1
        runner = self.runner
        if runner is not None:
            if runner.order is not None:
                runner.order.append(self)
            if runner.waiter is not None or not runner.running:
                runner.wake(self)
        return True

    async def put(self, value: Any) -> None:
        """Append ``value``, waiting while the queue is full (FIFO among waiting senders)."""
        while not self.put_nowait(value):
            if self.putters is _NO_WAITERS:
                self.putters = deque()
            await _wait_in(self.putters)

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
        runner = self.runner
        if runner is not None:
            if runner.order is not None:
                runner.order.extend([self] * len(values))
            if runner.waiter is not None or not runner.running:
                runner.wake(self)
        elif isinstance(self, OutputSink):
            self.wake_readers()

    def statistics(self) -> PortStatistics:
        """Queue length, capacity, total values received, senders waiting for room."""
        depth = len(self.queue)
        self.high_water = max(self.high_water, depth)
        return PortStatistics(
            node=self.node,
            port=self.name,
            queued=depth,
            capacity=self.capacity,
            total=self.total,
            waiting_senders=len(self.putters),
            high_water=self.high_water,
        )


class OutputSink(InPort):
    """The queue behind an exported out-port; read with ``Network.outputs(name)``.

    Values that reach it have left the network, so they do not keep it busy, but the
    queue is still bounded: a consumer that stops reading slows the graph down instead
    of growing memory without limit.
    """

    __slots__ = ("closed", "readers")

    def __init__(self, node: str, name: str, capacity: int) -> None:
        super().__init__(None, node, name, capacity)
        self.queue = deque()
        self.readers: deque[trio.lowlevel.Task] = deque()
        self.closed = False

    def put_nowait(self, value: Any) -> bool:
        queue = self.queue
        if len(queue) >= self.capacity:
            return False
        queue.append(value)
        self.total += 1
        if self.readers:
            _reschedule(self.readers.popleft())
        return True

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


class OutPort:
    """One node's out-port: the in-ports it feeds (broadcast) and a send counter."""

    __slots__ = ("checked", "indices", "name", "node", "sent", "strict", "targets",
                 "unconnected")

    def __init__(self, node: str, name: str, strict: PortType | None = None) -> None:
        self.node = node
        self.name = name
        self.strict = strict
        #: Whether sends must be type-checked (this port or a target is strict).
        self.checked = strict is not None
        self.targets: list[InPort] = []
        self.indices: list[int | None] = []
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

    def _retarget(self, targets: list[InPort], indices: list[int | None]) -> None:
        self.targets = targets
        self.indices = indices
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
