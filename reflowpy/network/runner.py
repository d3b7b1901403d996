"""The per-node runtime: one :class:`NodeRunner` per node, its context and firing loop.

A runner owns the node's actor instance, its state, its in-port queues and out-ports,
and (once there is work) one trio task in the network's nursery. The task is created
lazily when the first message arrives, so an idle node costs a few small objects and
no task: a network of 100,000 idle actors fits in a few hundred megabytes.

The firing loop takes whatever is queued and processes it without yielding; it
parks only when nothing is left. Sends that find room are plain appends (see
:mod:`reflowpy.network.ports`), so a message crosses a hop with no scheduler round
trip under load, and with one ``reschedule`` when the receiver was parked.

**One activation, three phases.** (1) the behaviour runs; (2) its outputs are
checked: the result must be ``None`` or a mapping (anything else, falsy or not, is an
:class:`~reflowpy.ActorError` naming node and type), each value is frozen and its
out-port resolved and type-checked; (3) the outputs are delivered through
:meth:`OutPort.send <reflowpy.network.ports.OutPort.send>`. A failure in (1) or (2)
delivers nothing: what the activation sent with ``ctx.send`` is *held back* until it
succeeds (up to :data:`HOLD_LIMIT` values, beyond which they are released early and a
later failure says how many), so a retry or a re-sent dead letter never duplicates
outputs. Failures follow the node's :class:`~reflowpy.Policy` in
:func:`reflowpy.network.supervision.recover`.

**The ledger.** Each runner counts the messages it took (``taken``), finished
(``delivered``) and dead-lettered after taking them (``dead_taken``); their
difference is what is inside an activation right now. A cancellation inside an
activation (forced stop, drain timeout, outer cancel, node removal) dead-letters the
activation's inputs with the reason; inside the delivery phase, the values not yet
delivered are dead-lettered at their targets instead (the activation itself
succeeded). For a ``run()`` actor a message counts as delivered when ``receive()``
returns it.

Activity accounting goes through the network's
:class:`~reflowpy.network.scheduler.Scheduler`; the runner only says when it starts
work (:meth:`NodeRunner.resume`), parks, and blocks on a full queue.
"""

from __future__ import annotations

import logging
import math
import os
import time
import types
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import trio

from reflowpy.errors import (
    ActivationTimeout,
    ActorError,
    ConfigError,
    MessageError,
    MissingEnvironment,
    NetworkStopped,
    PortNotFound,
    leaf_exception,
)
from reflowpy.network import chain
from reflowpy.network import events as ev
from reflowpy.network.actor import Actor
from reflowpy.network.message import _LEAVES, freeze
from reflowpy.network.ports import (
    _NO_QUEUE,
    InPort,
    OutPort,
    OutPortStatistics,
    OutputSink,
    PortStatistics,
)
from reflowpy.network.supervision import Policy, format_traceback, recover

if TYPE_CHECKING:
    from reflowpy.network.network import Network

__all__ = ["HOLD_LIMIT", "LATENCY_BUCKETS", "NodeRunner", "NodeStatistics",
           "resolve_config"]

_P = TypeVar("_P", InPort, OutPort)

_reschedule = trio.lowlevel.reschedule
_current_task = trio.lowlevel.current_task
_wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
_Abort = trio.lowlevel.Abort
_perf = time.perf_counter

#: Activations a runner performs before it yields to the scheduler even with work left.
_BUDGET = 512
#: How deep inline activations may nest (a chain of plain-``def`` nodes runs inline).
_MAX_INLINE = 32
#: Values one activation may hold back (``ctx.send`` before it succeeded).
HOLD_LIMIT = 1024
#: Upper bounds (seconds) of the activation-latency histogram buckets; the last
#: bucket counts everything slower.
LATENCY_BUCKETS: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0)

_log = logging.getLogger("reflowpy.node")
_EMPTY_CONFIG: Mapping[str, Any] = types.MappingProxyType({})
_NO_HELD: list[Any] = []
_UNUSED: Any = object()  # no batched out-port (compares equal to no port name)
_MANY: Any = object()  # no value for the node's only out-port in a one-entry result

#: Queues ``send_all`` may hand a chunk to (a removed or closed port refuses value by
#: value, through ``send``).
_BATCH_TARGETS = (InPort, OutputSink)


def _put_promised(out: OutPort, value: Any) -> None:
    # An inline activation's output: every target has room promised (see _room), past
    # capacity if a nested inline activation filled it meanwhile.
    if not out.send_nowait(value):
        for target in out.targets:
            if not target.put_nowait(value):
                target.put_batch([value])
        out.sent += 1


async def _no_proc(ctx: Any) -> Any:
    # The async behaviour slot of a node whose behaviour is a plain def (never called).
    raise AssertionError(f"{ctx!r}: a plain-def behaviour has no async process")


#: One output of an activation: (out-port, frozen value, connection index or None).
_Output = tuple[OutPort, Any, "int | None"]


class NodeStatistics(msgspec.Struct, frozen=True):
    """A snapshot of one node: its ledger, counters and ports.

    Ledger: ``taken`` messages were taken from its queues by activations (or by
    ``receive()``), ``delivered`` finished, ``dead_lettered`` went to the dead letters
    (after being taken, from its queues, or from blocked sends into it), and
    ``in_activation`` are inside an activation now. Counters: ``activations``
    (``run()`` actors count one per received message), ``failures``, ``messages_out``
    (values sent on its out-ports), ``busy_s`` (seconds its task was not parked,
    including ``backpressured_s`` spent blocked on full queues), ``queued`` and
    ``latency`` (activation counts per :data:`LATENCY_BUCKETS` bucket, measured per
    batch: a batch of n activations adds n to the bucket of its mean). ``status`` is
    the line the actor last set with ``ctx.status()``.
    """

    node: str
    component: str
    running: bool
    activations: int
    failures: int
    taken: int
    delivered: int
    dead_lettered: int
    in_activation: int
    queued: int
    messages_out: int
    busy_s: float
    backpressured_s: float
    latency: tuple[int, ...]
    inports: dict[str, PortStatistics]
    outports: dict[str, OutPortStatistics]
    status: str = ""

    def __getitem__(self, key: str) -> Any:
        # Mapping-style reads of the former dict form (``stats["activations"]``).
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """Mapping-style read of a field (the former dict form)."""
        return getattr(self, key, default)


def resolve_config(node_id: str, metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    """Node metadata as actor config, with Reflow's ``env_vars`` rules resolved.

    ``env_vars`` maps a variable name to ``"required"``, ``"optional"`` or
    ``"optional:DEFAULT"``; resolved values land in ``config["env"]``. A missing
    required variable is a :class:`~reflowpy.ConfigError` naming node and variable.
    """
    if not metadata:
        return _EMPTY_CONFIG
    config = dict(metadata)
    rules = config.get("env_vars")
    if rules:
        if not isinstance(rules, Mapping):
            raise ConfigError(f"node {node_id!r}: metadata key 'env_vars' must be an object")
        env: dict[str, str | None] = {}
        missing: list[str] = []
        for name, rule in rules.items():
            rule = str(rule)
            value = os.environ.get(name)
            if rule == "required":
                if value is None:
                    missing.append(name)
            elif rule == "optional":
                pass
            elif rule.startswith("optional:"):
                if value is None:
                    value = rule.partition(":")[2]
            else:
                raise ConfigError(
                    f"node {node_id!r}: env_vars rule for {name!r} must be 'required',"
                    f" 'optional' or 'optional:default', got {rule!r}"
                )
            env[name] = value
        if missing:  # after every rule is checked: a bad rule is the graph's fault
            names = ", ".join(map(repr, missing))
            raise MissingEnvironment(
                f"node {node_id!r}: environment variable{'s' if len(missing) > 1 else ''}"
                f" {names} {'are' if len(missing) > 1 else 'is'} required (env_vars) but"
                " not set")
        config["env"] = env
    return types.MappingProxyType(config)


#: Longest status line a node keeps (longer ones are cut, with "...").
_STATUS_MAX = 200


class _Context:
    """The :class:`~reflowpy.ActorContext` of one node (reused across firings)."""

    __slots__ = ("_log", "_runner", "config", "inputs", "node_id", "state", "status_text")

    def __init__(self, runner: NodeRunner, config: Mapping[str, Any]) -> None:
        self._runner = runner
        self.node_id = runner.node_id
        self.inputs: Mapping[str, Any] = _EMPTY_CONFIG  # shared until the first activation
        self.state: dict[str, Any] = {}
        self.config = config
        self._log: logging.LoggerAdapter[logging.Logger] | None = None
        self.status_text = ""

    def status(self, text: str) -> None:
        """Set this node's status line (see ActorContext.status)."""
        if not isinstance(text, str):
            raise TypeError(f"node {self.node_id!r}: ctx.status() takes a str, got"
                            f" {type(text).__name__}")
        # one line of printable text: a newline or an escape cannot forge another line
        line = " ".join("".join(c if c.isprintable() else " " for c in text).split())
        self.status_text = line if len(line) <= _STATUS_MAX else line[:_STATUS_MAX - 3] + "..."

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry the node id (created on first use)."""
        if self._log is None:
            self._log = logging.LoggerAdapter(_log, {"node": self.node_id})
        return self._log

    @property
    def registry(self) -> Any:
        """The network's component registry (wrappers such as ``flow/Retry`` resolve the
        components they run here)."""
        return self._runner.net.registry

    async def send(self, port: str, value: Any, *, index: int | None = None) -> None:
        """Send ``value`` out of ``port`` (to connections with ``index`` only, if given).

        Inside an activation of a ``process()`` actor the value is held back until the
        activation succeeds (see the module docstring); a ``run()`` actor's send is
        delivered at once.
        """
        runner = self._runner
        out = runner.outports.get(port)
        if out is None:
            out = runner.outport(port)
        if type(value) not in _LEAVES:
            value = freeze(value, where=f"node {runner.node_id!r} port {port!r}")
        if runner.holding:
            if out.checked:
                out.check(value)
            await runner.hold(out, value, index)
            return
        targets = out.targets if index is None else out._chosen(index)
        if len(targets) == 1 and not out.checked and not runner.net.bus.active:
            # OutPort.send_nowait for one target, inlined. Inline activation of the
            # receiver only for the first send after this node waited (request/response:
            # low latency); a node that sends back to back is under load, and queued
            # batches move faster than inline calls.
            sched = runner.sched
            sched.inline_ok = runner.fresh
            runner.fresh = False
            delivered = targets[0].put_nowait(value)
            sched.inline_ok = True
            if delivered:
                out.sent += 1
            else:
                await out.send(value, index)
        else:
            await runner.deliver(out, value, index)
        runner.budget -= 1
        if runner.budget <= 0:
            runner.budget = _BUDGET
            await trio.lowlevel.checkpoint()

    async def send_all(self, port: str, values: Sequence[Any]) -> None:
        """Send each of ``values`` out of ``port`` in order, as ``send`` for each.

        When nothing is held back, the port feeds one unchecked local queue and nobody
        observes, what that queue has room for moves in one :meth:`InPort.put_batch`
        (room reserved first, as the batch hand-over of a plain-def node); the rest,
        and every other case, goes through :meth:`send` value by value. A value that
        cannot be frozen raises after the values before it were sent, as with ``send``.
        """
        runner = self._runner
        out = runner.outports.get(port)
        if out is None:
            out = runner.outport(port)
        where = f"node {runner.node_id!r} port {port!r}"
        i, n = 0, len(values)
        while i < n:
            targets = out.targets
            if runner.holding or out.checked or len(targets) != 1 \
                    or type(targets[0]) not in _BATCH_TARGETS or runner.net.bus.active:
                break
            target = targets[0]
            room = min(target.capacity - len(target.queue), n - i)
            if room <= 1:
                await self.send(port, values[i])  # waits for room, then try again
                i += 1
                continue
            chunk: list[Any] = []
            try:
                for value in values[i:i + room]:
                    chunk.append(value if type(value) in _LEAVES
                                 else freeze(value, where=where))
            finally:  # (a value that cannot be frozen: the ones before it are sent)
                if chunk:
                    out.sent += len(chunk)
                    runner.fresh = False
                    target.put_batch(chunk)
            i += room
            runner.budget -= room
            if runner.budget <= 0:
                runner.budget = _BUDGET
                await trio.lowlevel.checkpoint()
        for value in values[i:]:
            await self.send(port, value)

    async def receive(self, port: str | None = None) -> tuple[str, Any]:
        """The next ``(port, value)`` for a ``run()`` actor; parks until one arrives."""
        runner = self._runner
        runner.fresh = True  # a reply to what we receive may be activated inline
        order = runner.order
        while True:
            if runner.removed:
                raise NetworkStopped(f"node {self.node_id!r}: the node was removed")
            if port is None:
                if order:
                    inport = order.popleft()
                    return inport.name, runner.take_received(inport)
            else:
                inport = runner.inport(port)
                if inport.queue:
                    order.remove(inport)  # type: ignore[union-attr]
                    return inport.name, runner.take_received(inport)
            if runner.stop_requested:
                raise NetworkStopped(f"node {self.node_id!r}: the network is stopping")
            await runner.park()

    async def receive_until(
        self, deadline: float, port: str | None = None
    ) -> tuple[str, Any] | None:
        """Like :meth:`receive`, or ``None`` once ``deadline`` (``trio.current_time()``
        scale) passes. While it waits the node counts as busy: a pending timer is work
        the network still has to do, so ``idle()`` waits for it."""
        if deadline == math.inf:
            return await self.receive(port)
        sched = self._runner.sched
        sched.timer_started()
        try:
            with trio.move_on_at(deadline):
                return await self.receive(port)
        finally:
            sched.timer_done()
        return None

    def connected(self, port: str) -> bool:
        """Whether ``port`` has at least one receiver."""
        out = self._runner.outports.get(port) or self._runner.outport(port)
        return bool(out.targets)

    def dead_letter(self, port: str, value: Any, error: BaseException) -> None:
        """Store a message this node cannot process (see ActorContext.dead_letter)."""
        # The message was delivered to the actor; this letter is the actor's report, so it
        # does not count in the ledger a second time (count=0).
        self._runner.net.dead_letter(self.node_id, port, value, error, 1, reason="failed",
                                     count=0)

    def __repr__(self) -> str:
        return f"<ActorContext node={self.node_id!r}>"


class NodeRunner:
    """Runtime state of one node. Created by the network; not part of the public API.

    It is the :class:`~reflowpy.network.ports.Receiver` of its in-ports (``order``,
    ``parked``, ``wake``, ``reject``) and the owner of its out-ports
    (``waiting_for``).
    """

    __slots__ = (
        "activations",
        "actor",
        "await_all",
        "backpressured",
        "batch_it",
        "batch_n",
        "blocked_since",
        "budget",
        "busy",
        "cancel_reason",
        "chained",
        "cls",
        "component",
        "ctx",
        "dead_taken",
        "delivered",
        "failed",
        "failures",
        "finished",
        "fired",
        "fn",
        "folded",
        "fresh",
        "held",
        "holding",
        "inline",
        "inports",
        "latency",
        "net",
        "node_id",
        "optional",
        "order",
        "outports",
        "owns_loop",
        "park_epoch",
        "parked",
        "policy",
        "proc",
        "released",
        "releasing",
        "removed",
        "required",
        "restarts",
        "running",
        "sched",
        "scope",
        "simple",
        "single",
        "stop_requested",
        "taken",
        "torn_down",
        "waiter",
        "woke_at",
    )

    def __init__(
        self,
        net: Network,
        node_id: str,
        component: str,
        cls: type[Actor],
        config: Mapping[str, Any],
        policy: Policy,
        inports: Mapping[str, InPort] | None = None,
    ) -> None:
        self.net = net
        self.sched = net.scheduler
        self.node_id = node_id
        self.component = component
        self.cls = cls
        self.policy = policy
        self.inports: dict[str, InPort] = dict(inports or {})
        self.outports: dict[str, OutPort] = {}
        # Arrival order across in-ports; ``None`` while the node has one in-port and
        # fires per message, where the port's own queue already is the order.
        self.order: deque[InPort] | None = None
        self.single: InPort | None = None
        self.failed: deque[tuple[dict[str, Any], Exception]] | None = None
        self.inline = False
        self.fresh = True
        self.waiter: trio.lowlevel.Task | None = None
        #: The scheduler's sweep count when this runner last parked (idle release).
        self.park_epoch = 0
        #: Its parked task was told to end (idle release) and has not ended yet.
        self.releasing = False
        #: Receiver protocol: True while a value arriving must call ``wake``.
        self.parked = True
        self.running = False
        self.finished = False
        self.stop_requested = False
        self.removed = False
        self.folded = False
        #: Run by another node's task now (operator chaining, see chain.py).
        self.chained = False
        self.cancel_reason: str | None = None
        self.torn_down = False
        self.scope: trio.CancelScope | None = None
        self.activations = 0
        self.failures = 0
        self.taken = 0
        #: Messages the per-message fire loop took (each one activation): kept apart
        #: from ``taken``/``activations`` so the hot loop updates one counter.
        self.fired = 0
        #: The running fast-path batch (see _batch_counts).
        self.batch_it: Any = None
        self.batch_n = 0
        self.delivered = 0
        self.dead_taken = 0
        self.busy = 0.0
        self.woke_at = 0.0
        self.backpressured = 0.0
        self.blocked_since = 0.0
        self.latency: list[int] | None = None  # allocated with the first batch
        self.holding = False
        self.held: list[_Output] = _NO_HELD
        self.released = 0
        self.restarts: deque[float] | None = None
        self.budget = _BUDGET
        self.await_all = cls.await_all_inports
        self.owns_loop = cls.owns_loop()
        self.required: tuple[InPort, ...] = ()
        self.optional: tuple[InPort, ...] = ()
        self.ctx = _Context(self, config)
        self.actor = cls()
        self.fn: Callable[[Any], Any] | None = None
        self.proc: Callable[[Any], Any] = _no_proc
        self.simple = True
        self._bind_behaviour()

    def _bind_behaviour(self) -> None:
        # @actor functions are called directly: a plain ``def`` without any coroutine,
        # an ``async def`` without the wrapper's extra coroutine frame.
        behaviour = getattr(self.cls, "behaviour", None)
        is_async = getattr(self.cls, "behaviour_is_async", True)
        self.fn = behaviour if behaviour is not None and not is_async else None
        # (a plain def never takes the async path: no bound method kept for it)
        self.proc = (behaviour if behaviour is not None and is_async
                     else self.actor.process if self.fn is None else _no_proc)
        policy = self.policy
        if policy.offload and self.fn is None and not self.owns_loop:
            raise ConfigError(
                f"{self.net.where()}: node {self.node_id!r} ({self.component}):"
                " Policy(offload=True) runs a plain-def behaviour in a worker thread; this"
                " component's behaviour is async (it must not block: await instead)")
        # The fast loop has no timeout, no offload and no retry (whose state rollback
        # needs a snapshot per activation): those nodes take the guarded path.
        self.simple = policy.timeout is None and not policy.offload and policy.retries == 0
        self.update_dispatch()

    def update_dispatch(self) -> None:
        """Choose the queueing and dispatch strategy after ports or behaviour changed.

        A node with one in-port that fires per message reads that port's queue
        directly. A node whose behaviour is a plain ``def`` on the fast path may be
        activated *inline*, in the sender's task, when it is parked with nothing queued:
        it cannot be mid-activation then, and a ``def`` cannot suspend, so the actor
        still runs one activation at a time, in arrival order.
        """
        fires = not self.owns_loop and not self.await_all
        if fires and len(self.inports) == 1:
            self.single = next(iter(self.inports.values()))
            self.order = None
        elif self.await_all:
            self.single = None
            self.order = None
        else:
            self.single = None
            if self.order is None:
                self.order = deque()
        self.inline = fires and self.fn is not None and self.simple

    # -- ports ------------------------------------------------------------------------

    def inport(self, name: str) -> InPort:
        """The in-port ``name`` (case-folded unless the graph is case sensitive)."""
        return self._port(self.inports, name, "in-port")

    def outport(self, name: str) -> OutPort:
        """The out-port ``name`` (case-folded unless the graph is case sensitive)."""
        return self._port(self.outports, name, "out-port")

    def _port(self, table: dict[str, _P], name: str, kind: str) -> _P:
        port = table.get(name) or table.get(name.lower())
        if port is None:
            raise PortNotFound(
                f"{self.net.where()}: node {self.node_id!r} ({self.component}) has no {kind}"
                f" {name!r}; it has {sorted(table) or 'none'}"
            )
        return port

    def refresh_join(self) -> None:
        """Recompute the required/optional in-ports of an ``await_all_inports`` actor."""
        specs = {p.name: p for p in self.net.port_specs(self)[0]}
        ports = list(self.inports.values())
        self.required = tuple(p for p in ports if specs.get(p.name) is None
                              or specs[p.name].required)
        self.optional = tuple(p for p in ports if p not in self.required)

    # -- the Receiver protocol and the owner of out-ports -------------------------------

    def wake(self, port: InPort) -> None:
        """``port`` just received a value and this node is parked or has no task: run it.

        Inline when allowed (see :meth:`update_dispatch`), else reschedule the parked
        task or start one.
        """
        order = self.order
        sched = self.sched
        if (
            self.inline
            and len(port.queue) == 1
            and (order is None or len(order) == 1)
            and sched.inline_ok
            and sched.inline_depth < _MAX_INLINE
            and not self.net.bus.active
            and self._room()
        ):
            self._activate_inline(port)
        else:
            self.resume()

    def reject(self, port: InPort, value: Any, reason: str | None) -> None:
        """A value for ``port`` that will never be queued: to the dead letters."""
        reason = reason or self.cancel_reason or self.net.stop_reason or "cancelled"
        if self.folded:  # a removed node's totals were already folded into the network
            self.net._retired[0] += 1
        self.net.dead_letter(self.node_id, port.name, value,
                             ActorError(f"node {self.node_id!r} port {port.name!r}: the"
                                        f" message was not processed ({reason})",
                                        node=self.node_id, port=port.name),
                             0, reason=reason)

    def waiting_for(self, target: InPort | None) -> None:
        """A send of this node waits for room in ``target`` (``None``: it stopped)."""
        if target is not None:
            self.blocked_since = _perf()
            self.sched.block(self, target)
        else:
            self.backpressured += _perf() - self.blocked_since
            self.blocked_since = 0.0
            self.sched.unblock(self)

    # -- scheduling ---------------------------------------------------------------------

    def resume(self) -> None:
        """Make the node's task run: reschedule it if parked, start it if there is none."""
        if self.chained:  # the chain's task runs it; it looks again when it lets go
            return
        if self.waiter is not None:
            self.wake_parked()
        elif self.releasing:
            # Told to end (idle release) but not ended yet: it carries on instead.
            self.releasing = False
            self.parked = False
            self.sched.enter()
        elif not self.running:
            self.spawn()

    def release(self) -> bool:
        """End the parked task of an idle node (the scheduler's idle release); the next
        arrival starts a new one. Not work: ``active`` is untouched. False (nothing
        done) for a ``run()`` actor, whose task holds its state, or a busy node."""
        waiter = self.waiter
        if waiter is None or self.owns_loop or self.removed or self.stop_requested:
            return False
        self.waiter = None
        self.releasing = True
        _reschedule(waiter)
        return True

    def wake_parked(self) -> None:
        """Resume the parked task so it re-checks its state (used when draining)."""
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            self.parked = False
            self.sched.enter()
            _reschedule(waiter)

    def _room(self) -> bool:
        for out in self.outports.values():
            for target in out.targets:
                if len(target.queue) >= target.capacity:
                    return False
        return True

    def _activate_inline(self, port: InPort) -> None:
        # See update_dispatch(). Every target has room for the one value per out-port
        # a returned mapping can hold, so nothing here can block.
        value = port.queue.popleft()
        if port.putters:  # a sender waits for this room (InPort.take, inlined)
            _reschedule(port.putters.popleft())
        if self.order is not None:
            self.order.popleft()
        sched = self.sched
        sched.inline_depth += 1
        inputs = {port.name: value}
        self.fired += 1  # taken, one activation
        try:
            ctx = self.ctx
            ctx.inputs = inputs
            result = self.fn(ctx)  # type: ignore[misc]
            if result.__class__ is dict and len(result) == 1:
                ((name, out_value),) = result.items()
                out: Any = self.outports.get(name)
                if out is None:
                    out = self.outport(str(name))
                if type(out_value) not in _LEAVES:
                    out_value = freeze(out_value, where=f"node {self.node_id!r} port {name!r}")
                if out.checked:
                    out.check(out_value)
                outputs: Any = None
            elif result is None:
                outputs = ()
            else:
                outputs = self.outputs(result)
        except Exception as exc:
            # Recovery may sleep (backoff) or restart the actor: the node's own task
            # does it, before it takes the next message.
            if self.failed is None:
                self.failed = deque()
            self.failed.append((inputs, exc))
            self.resume()
        else:
            self.delivered += 1
            if outputs is None:  # one output (the common case): no tuple, no loop
                targets = out.targets
                if len(targets) == 1:
                    # room was promised (past capacity if an inline activation filled it)
                    if not targets[0].put_nowait(out_value):
                        targets[0].put_batch([out_value])
                    out.sent += 1
                else:
                    _put_promised(out, out_value)
            else:
                for out, out_value, _ in outputs:
                    _put_promised(out, out_value)
        finally:
            sched.inline_depth -= 1

    def spawn(self) -> None:
        """Start the runner's task (lazily, on first work)."""
        net = self.net
        if net.spawn_system(self.main, self.node_id):
            self.running = True
            self.parked = False
            sched = self.sched
            sched.enter()
            if sched.tasked_runner(self):
                net.spawn_system(sched.release_idle, "idle release")

    async def park(self) -> None:
        """Wait for the next arrival, counting this runner inactive meanwhile."""
        now = _perf()
        self.busy += now - self.woke_at
        self.fresh = True
        self.waiter = _current_task()
        self.parked = True
        sched = self.sched
        self.park_epoch = sched.epoch
        sched.leave()
        await _wait_task_rescheduled(self._abort_park)
        self.woke_at = _perf()

    def _abort_park(self, _: Callable[[], Any]) -> _Abort:
        self.waiter = None
        self.parked = False
        self.sched.enter()  # the finally in main() balances the books
        return _Abort.SUCCEEDED

    def take(self, port: InPort) -> Any:
        """Take the oldest value of ``port`` for an activation (``MessageReceived`` if
        observed)."""
        value = port.take()
        self.taken += 1
        bus = self.net.bus
        if bus.active:
            bus.received(port, value, len(port.queue))
        return value

    def take_received(self, port: InPort) -> Any:
        """Take a value for a ``run()`` actor: taken, activated and delivered at once."""
        # InPort.take and self.take, inlined (one receive per round trip of a run() actor)
        value = port.queue.popleft()
        if port.putters:
            _reschedule(port.putters.popleft())
        self.taken += 1
        self.activations += 1
        self.delivered += 1
        bus = self.net.bus
        if bus.active:
            bus.received(port, value, len(port.queue))
        return value

    async def main(self) -> None:
        """The runner task: dispatch to the loop that fits the actor's firing rule."""
        self.woke_at = _perf()
        try:
            with trio.CancelScope() as scope:
                self.scope = scope
                if self.removed:
                    return
                if self.finished:
                    self._reject_queued("the actor's run() has finished", "finished")
                elif self.owns_loop:
                    await self._run_loop()
                elif self.await_all:
                    await self._join_loop()
                else:
                    await self._fire_loop()
        finally:
            self.busy += _perf() - self.woke_at
            self.running = False
            self.parked = True
            self.scope = None
            self.sched.forget(self)
            if self.releasing:  # idle release: it was not counted active
                self.releasing = False
                self._shed()
            else:
                self.sched.leave()
            if self.removed:
                self.net.retire_runner(self)

    def _shed(self) -> None:
        # A released node keeps its counters, state and actor, and none of what its
        # last work allocated: its empty queues and its last inputs go (a queue is
        # allocated again with its next value, see InPort.put_nowait).
        for port in self.inports.values():
            if not port.queue and not port.putters:
                port.queue = _NO_QUEUE
        self.ctx.inputs = _EMPTY_CONFIG

    # -- the firing loops ----------------------------------------------------------------

    async def _fire_loop(self) -> None:
        # The hot path: take the whole batch already queued, then park. Observed or
        # not: the batch loops announce each message to the event bus while it listens.
        while True:
            if self.removed:
                return
            if self.failed:
                inputs, exc = self.failed.popleft()
                await self._recover_and_deliver(inputs, exc)
                continue
            order = self.order
            n = len(order) if order is not None else len(self.single.queue)  # type: ignore[union-attr]
            if n == 0:
                await self.park()
                if self.releasing:
                    return
                continue
            if not self.simple:
                await self._fire_guarded(n)
                continue
            await self._batch(n)
            self.budget -= n
            if self.budget <= 0:
                self.budget = _BUDGET
                await trio.lowlevel.checkpoint()

    async def _batch(self, n: int) -> None:
        # One fast-path batch of n messages: chained with the nodes downstream while
        # they qualify (see chain.py), the rest (or all) by this node alone.
        started = _perf()
        taken0 = self.fired
        if self.net.chain:
            stages = chain.claim(self)
            if stages is not None:
                n -= await chain.run(stages, n)
        if n > 0 and not self.removed:
            if self.fn is not None:
                await self._batch_def(n)
            else:
                await self._batch_async(n)
        took = self.fired - taken0
        if took:
            latency = self.latency
            if latency is None:
                latency = self.latency = [0] * (len(LATENCY_BUCKETS) + 1)
            mean = (_perf() - started) / took
            i = 0
            for bound in LATENCY_BUCKETS:
                if mean <= bound:
                    break
                i += 1
            latency[i] += took

    # The batch ledger. A batch of n messages counts nothing per message: the loop runs
    # over ``batch_it`` (an iterator of range(n)), so the messages taken since the batch
    # (re)started are ``batch_n - batch_it.__length_hint__()`` whenever anyone looks
    # (see _batch_counts); the last of them is the one in an activation, the others are
    # delivered. The counts are folded into ``fired``/``delivered`` when the batch ends
    # and before a failure is handed to recovery (which re-bases the batch).

    def _batch_counts(self) -> tuple[int, int]:
        """(taken, delivered) of the running batch not yet folded into the counters."""
        it = self.batch_it
        if it is None:
            return 0, 0
        taken = self.batch_n - it.__length_hint__()
        return taken, taken - 1 if taken else 0

    def _batch_fold(self, unfinished: int) -> None:
        # Fold what the batch took; the last ``unfinished`` of it are accounted by the
        # caller (recovery or _lost). The batch continues from here with nothing taken.
        it = self.batch_it
        assert it is not None
        left = it.__length_hint__()
        taken = self.batch_n - left
        self.fired += taken
        self.delivered += taken - unfinished
        self.batch_n = left

    def _batch_end(self) -> None:
        # The batch ended (or was cancelled in its delivery phase, where the out-port
        # dead-letters what it could not deliver): everything it took is delivered.
        it = self.batch_it
        if it is not None:
            taken = self.batch_n - it.__length_hint__()
            self.fired += taken
            self.delivered += taken
            self.batch_it = None

    def _hand_over(self) -> tuple[Any, InPort | None, int]:
        """The batch hand-over target of a plain-def batch: ``(out-port, queue, room)``.

        A node whose only *connected* out-port feeds one unchecked queue collects the
        values for it while that queue has room and hands them over in one extend
        (:meth:`OutPort.send_nowait` specialised: room is reserved up front). Its other
        out-ports (``error``, ``rejected``, ...) are unconnected: a value for one of them
        is counted and queued nowhere, so it cannot overtake the pending batch. Computed
        at the start of a batch and again after anything that may have yielded (a live
        edit may have connected a port meanwhile); ``(_UNUSED, None, 0)`` when no port
        qualifies or its queue has no room for more than one value.
        """
        primary: OutPort | None = None
        for out in self.outports.values():
            if out.targets:
                if primary is not None:
                    return _UNUSED, None, 0  # two connected out-ports: no hand-over
                primary = out
        if primary is None or primary.checked or len(primary.targets) != 1:
            return _UNUSED, None, 0
        target = primary.targets[0]
        room = target.capacity - len(target.queue)
        if room <= 1:
            return _UNUSED, None, 0
        return primary, target, room

    async def _batch_def(self, n: int) -> None:
        # Plain def behaviours: nothing suspends between messages unless an output has
        # to wait, and a def cannot ``await ctx.send``, so nothing is held back.
        ctx = self.ctx
        outports = self.outports
        order = self.order
        port = self.single
        fn = self.fn
        assert fn is not None
        # Batch transfer (see _hand_over): outputs for ``primary`` are collected in
        # ``batch`` while its queue has room. Any other delivery, and anything that
        # may yield, flushes the batch first (FIFO per connection, and no room promised
        # across a yield); once flushed or used up, the hand-over is armed again.
        primary, target_q, room = self._hand_over()
        batch: list[Any] | None = [] if target_q is not None else None
        # A one-entry result for the node's usual out-port (its connected one, or its
        # only one) needs no lookup: the out-ports of a node never change.
        only: Any = primary if target_q is not None else None
        if only is None:
            only = next((o for o in outports.values() if o.targets),
                        next(iter(outports.values()), None))
        only_name: Any = only.name if only is not None else _UNUSED
        dict_ = dict
        # Observed: each message is announced as the general path would (see deliver);
        # re-read after anything that can yield, since observers come and go then.
        bus = self.net.bus
        observed = bus.active
        self.batch_n = n
        self.batch_it = it = iter(range(n))
        try:
            for _ in it:
                try:
                    if order is not None:
                        port = order.popleft()
                    value = port.queue.popleft()  # type: ignore[union-attr]
                except IndexError:  # the node was removed: its queue is gone
                    self.batch_n -= 1
                    break
                if port.putters:  # type: ignore[union-attr]
                    _reschedule(port.putters.popleft())  # type: ignore[union-attr]
                if observed:
                    bus.received(port, value, len(port.queue))  # type: ignore[union-attr]
                ctx.inputs = inputs = {port.name: value}  # type: ignore[union-attr]
                try:
                    result = fn(ctx)
                    if result.__class__ is dict_ and len(result) == 1:
                        out_value = result.get(only_name, _MANY)
                        if out_value is _MANY:
                            ((name, out_value),) = result.items()
                            out = outports.get(name)
                            if out is None:
                                out = self.outport(str(name))
                        else:
                            out = only
                        if type(out_value) not in _LEAVES:
                            out_value = freeze(
                                out_value, where=f"node {self.node_id!r} port {out.name!r}")
                        if out.checked:
                            out.check(out_value)
                    elif result is None:
                        continue
                    else:
                        out = None
                        outputs = self.outputs(result)
                except Exception as exc:
                    self._batch_fold(1)
                    if batch:
                        self._flush(target_q, primary, batch)
                    batch = None  # (a cancelled recovery must not flush it again)
                    await self._recover_and_deliver(inputs, exc)
                    fn = self.fn  # a restart rebinds the behaviour
                    assert fn is not None
                    observed = bus.active
                    primary, target_q, room = self._hand_over()
                    batch = [] if target_q is not None else None
                    continue
                except BaseException:
                    self._batch_fold(1)
                    self._lost(inputs)
                    raise
                if out is primary:
                    batch.append(out_value)  # type: ignore[union-attr]
                    if observed:  # in the queue as far as anyone can tell (no yield)
                        bus.sent(out, target_q, out_value,
                                 len(target_q.queue) + len(batch))  # type: ignore[union-attr, arg-type]
                    if len(batch) >= room:  # type: ignore[arg-type]
                        self._flush(target_q, primary, batch)  # type: ignore[arg-type]
                        batch = None
                        primary, target_q, room = self._hand_over()
                        batch = [] if target_q is not None else None
                    continue
                if out is not None:
                    targets = out.targets
                    if not targets:
                        # unconnected: counted, queued nowhere (the batch keeps going)
                        out.send_nowait(out_value)
                        continue
                    if batch:
                        self._flush(target_q, primary, batch)
                    batch = None
                    if len(targets) != 1 or out.checked \
                            or not targets[0].put_nowait(out_value):
                        await self.deliver(out, out_value, None)
                        observed = bus.active
                    else:
                        out.sent += 1  # OutPort.send_nowait, inlined
                        if observed:
                            bus.sent(out, targets[0], out_value, len(targets[0].queue))
                elif outputs:
                    if batch:
                        self._flush(target_q, primary, batch)
                    batch = None
                    await self._deliver_all(outputs)
                    observed = bus.active
                else:
                    continue
                primary, target_q, room = self._hand_over()
                batch = [] if target_q is not None else None
        finally:
            self._batch_end()
            if batch:
                self._flush(target_q, primary, batch)

    async def _batch_async(self, n: int) -> None:
        # async def behaviours: what the activation sends with ctx.send is held back
        # until it succeeds (the fast path below only runs when nothing was held).
        ctx = self.ctx
        outports = self.outports
        order = self.order
        port = self.single
        proc = self.proc
        # A node with one out-port: a one-entry result for it needs no lookup (the
        # out-ports of a node never change; its targets may, so they are read per value).
        only_name: Any = next(iter(outports)) if len(outports) == 1 else _UNUSED
        only: Any = outports[only_name] if only_name is not _UNUSED else None
        dict_ = dict
        bus = self.net.bus  # observed: see _batch_def (a behaviour may yield: read per message)
        self.batch_n = n
        self.batch_it = it = iter(range(n))
        self.holding = True
        try:
            for _ in it:
                try:
                    if order is not None:
                        port = order.popleft()
                    value = port.queue.popleft()  # type: ignore[union-attr]
                except IndexError:  # the node was removed: its queue is gone
                    self.batch_n -= 1
                    break
                if port.putters:  # type: ignore[union-attr]
                    _reschedule(port.putters.popleft())  # type: ignore[union-attr]
                if bus.active:
                    bus.received(port, value, len(port.queue))  # type: ignore[union-attr]
                ctx.inputs = inputs = {port.name: value}  # type: ignore[union-attr]
                try:
                    result = await proc(ctx)
                    if self.held:  # what it sent with ctx.send goes first
                        out = None
                        outputs = self.outputs(result)
                    elif result.__class__ is dict_ and len(result) == 1:
                        out_value = result.get(only_name, _MANY)
                        if out_value is _MANY:
                            ((name, out_value),) = result.items()
                            out = outports.get(name)
                            if out is None:
                                out = self.outport(str(name))
                        else:
                            out = only
                        if type(out_value) not in _LEAVES:
                            out_value = freeze(
                                out_value, where=f"node {self.node_id!r} port {out.name!r}")
                        if out.checked:
                            out.check(out_value)
                    elif result is None:
                        continue
                    else:
                        out = None
                        outputs = self.outputs(result)
                except Exception as exc:
                    self._batch_fold(1)
                    self.held = _NO_HELD
                    await self._recover_and_deliver(inputs, exc)
                    proc = self.proc  # a restart rebinds the behaviour
                    self.holding = True
                    continue
                except BaseException:
                    self._batch_fold(1)
                    self._lost(inputs)
                    raise
                if out is not None:
                    targets = out.targets
                    if len(targets) != 1 or not targets[0].put_nowait(out_value):
                        await self.deliver(out, out_value, None)
                    else:
                        out.sent += 1  # OutPort.send_nowait, inlined
                        if bus.active:
                            bus.sent(out, targets[0], out_value, len(targets[0].queue))
                elif outputs:
                    await self._deliver_all(outputs)
        finally:
            self.holding = False
            self._batch_end()

    def _flush(self, target: InPort | None, out: OutPort | None, values: list[Any]) -> None:
        assert target is not None and out is not None
        out.sent += len(values)
        target.put_batch(values)

    async def _fire_guarded(self, n: int) -> None:
        # The general path: timeouts, offload, retries (a state snapshot per message).
        for _ in range(n):
            if self.removed:
                return
            order = self.order
            port = order.popleft() if order is not None else self.single
            assert port is not None
            value = self.take(port)
            self.activations += 1
            await self._activate({port.name: value})

    async def _join_loop(self) -> None:
        self.refresh_join()
        while True:
            if self.removed:
                return
            required = self.required
            if not required or not all(p.queue for p in required):
                if not required and any(p.queue for p in self.optional):
                    pass
                else:
                    await self.park()
                    if self.releasing:
                        return
                    continue
            inputs = {p.name: self.take(p) for p in required}
            for p in self.optional:
                if p.queue:
                    inputs[p.name] = self.take(p)
            self.activations += 1
            await self._activate(inputs)
            self.budget -= 1
            if self.budget <= 0:
                self.budget = _BUDGET
                await trio.lowlevel.checkpoint()

    async def _run_loop(self) -> None:
        run = self.actor.run  # type: ignore[attr-defined]
        while True:
            started = time.perf_counter()
            try:
                await run(self.ctx)
            except NetworkStopped:
                pass
            except Exception as exc:
                if isinstance(exc, ExceptionGroup) and exc.split(NetworkStopped)[1] is None:
                    break  # the stop, seen by the tasks of the actor's own nursery
                self.failures += 1
                self.publish_failure(exc, None, 1, False, started)
                if self.policy.restart and self.restart_allowed():
                    await self.restart()
                    run = self.actor.run  # type: ignore[attr-defined]
                    continue
                if self.policy.on_failure == "stop":
                    self.net.fail(self.wrap(exc, None))
                else:
                    self.net.report_error(self.wrap(exc, None))
            break
        self.finished = True
        self._publish(ev.ActorCompleted(network=self.net.name, actor_id=self.node_id,
                                        component=self.component,
                                        activations=self.activations))
        self._reject_queued("the actor's run() has finished", "finished")

    # -- activations and failures -----------------------------------------------------

    def outputs(self, result: Any) -> list[_Output]:
        """Phase 2: the checked outputs of a result (and what the activation held back).

        Raises :class:`~reflowpy.ActorError` for a result that is not ``None`` or a
        mapping, :class:`~reflowpy.PortNotFound` for an unknown out-port,
        :class:`~reflowpy.MessageError` for a value that cannot be a message.
        """
        outputs = self._take_held() if self.held else []
        if result is None:
            return outputs
        if type(result) is not dict and not isinstance(result, Mapping):  # ABC check: slow
            raise ActorError(
                f"{self.net.where()}: node {self.node_id!r} ({self.component}): a behaviour"
                " must return a mapping of out-port -> value, or None; it returned a"
                f" {type(result).__name__}",
                node=self.node_id,
            )
        for name, value in result.items():
            out = self.outports.get(name) if type(name) is str else None
            if out is None:
                out = self.outport(str(name))
            if type(value) not in _LEAVES:
                value = freeze(value, where=f"node {self.node_id!r} port {name!r}")
            if out.checked:
                out.check(value)
            outputs.append((out, value, None))
        return outputs

    async def hold(self, out: OutPort, value: Any, index: int | None) -> None:
        """Hold back a ``ctx.send`` of the running activation (see module docstring)."""
        if self.held is _NO_HELD:
            self.held = []
        self.held.append((out, value, index))
        if len(self.held) >= HOLD_LIMIT:
            released = self._take_held()
            self.released += len(released)
            self.holding = False
            try:
                await self._deliver_all(released)
            finally:
                self.holding = True

    def _take_held(self) -> list[_Output]:
        held, self.held = self.held, _NO_HELD
        return held

    async def deliver(self, out: OutPort, value: Any, index: int | None) -> None:
        """Deliver a checked, frozen value: ``OutPort.send``, announcing it to the event
        bus (``bus.sent``) as the value enters each target's queue (so the depth is the
        one right after it, and the send comes before any receive of it)."""
        bus = self.net.bus
        await out.send(value, index, bus if bus.active else None)

    async def _deliver_all(self, outputs: list[_Output]) -> None:
        # Phase 3. Cancelled part-way, the outputs not yet delivered are dead-lettered
        # at their targets (OutPort.send does it for the one it was sending).
        for i, (out, value, index) in enumerate(outputs):
            try:
                await self.deliver(out, value, index)
            except BaseException:
                for later, later_value, later_index in outputs[i + 1:]:
                    for target in later._chosen(later_index):
                        target.abandon(later_value, None)
                raise

    async def attempt(self, inputs: dict[str, Any]) -> list[_Output]:
        """Phases 1 and 2 of one attempt: the behaviour call (with the policy's timeout,
        in a worker thread with ``offload``) and its checked outputs."""
        ctx = self.ctx
        ctx.inputs = inputs
        policy = self.policy
        timeout = policy.timeout
        fn = self.fn
        self.held = _NO_HELD
        self.holding = True
        try:
            if policy.offload and fn is not None:
                with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
                    result = await trio.to_thread.run_sync(fn, ctx, abandon_on_cancel=True)
                if scope.cancelled_caught:
                    raise self._timeout(timeout or math.inf, inputs,
                                        "its worker thread was abandoned")
            elif timeout is None:
                result = fn(ctx) if fn is not None else await self.proc(ctx)
            elif fn is not None:
                # A plain def cannot be interrupted: it is timed, and an overrun fails
                # the activation afterwards (Policy(offload=True) avoids the freeze).
                started = _perf()
                result = fn(ctx)
                if _perf() - started > timeout:
                    raise self._timeout(timeout, inputs,
                                        "a plain def cannot be interrupted; it blocked"
                                        " every node meanwhile (use Policy(offload=True))")
            else:
                with trio.move_on_after(timeout) as scope:
                    result = await self.proc(ctx)
                if scope.cancelled_caught:
                    raise self._timeout(timeout, inputs, "it was cancelled")
        except BaseException:
            self.held = _NO_HELD
            raise
        finally:
            self.holding = False
        return self.outputs(result)

    def _timeout(self, timeout: float, inputs: Mapping[str, Any], what: str) -> ActivationTimeout:
        return ActivationTimeout(
            f"{self.net.where()}: node {self.node_id!r} ({self.component}): activation"
            f" exceeded the policy timeout of {timeout:g} s; {what}",
            node=self.node_id, port=",".join(inputs),
        )

    async def _activate(self, inputs: dict[str, Any]) -> None:
        # One guarded activation: never raises Exception (the policy decides).
        snapshot = dict(self.ctx.state) if self.policy.retries else None
        try:
            outputs = await self.attempt(inputs)
        except Exception as exc:
            await self._recover_and_deliver(inputs, exc, snapshot)
            return
        except BaseException:
            self._lost(inputs)
            raise
        self.delivered += len(inputs)
        if outputs:
            await self._deliver_all(outputs)

    async def _recover_and_deliver(self, inputs: dict[str, Any], exc: Exception,
                                   snapshot: dict[str, Any] | None = None) -> None:
        try:
            outputs = await recover(self, inputs, exc, snapshot)
        except BaseException:
            self._lost(inputs)
            raise
        if outputs is None:
            return
        self.delivered += len(inputs)
        if outputs:
            await self._deliver_all(outputs)

    def _lost(self, inputs: Mapping[str, Any]) -> None:
        # A cancellation inside an activation: its inputs go to the dead letters.
        reason = self.cancel_reason or self.net.stop_reason or "cancelled"
        port = ",".join(inputs)
        value = next(iter(inputs.values())) if len(inputs) == 1 else dict(inputs)
        self.dead_taken += len(inputs)
        self.held = _NO_HELD
        self.net.dead_letter(
            self.node_id, port, value,
            ActorError(f"node {self.node_id!r}: activation interrupted ({reason})",
                       node=self.node_id, port=port),
            1, reason=reason, count=len(inputs))

    def wrap(self, exc: BaseException, port: str | None) -> ActorError:
        """``exc`` as an :class:`~reflowpy.ActorError` naming graph, node and port."""
        if isinstance(exc, ActorError):
            return exc
        leaf = leaf_exception(exc)  # (what a task of the actor's own nursery raised)
        kind = "bad message" if isinstance(leaf, MessageError) else type(leaf).__name__
        err = ActorError(
            f"{self.net.where()}: node {self.node_id!r} ({self.component})"
            f"{f' on port {port!r}' if port else ''} failed: {kind}: {leaf}",
            node=self.node_id, port=port,
        )
        err.__cause__ = exc
        return err

    def publish_failure(
        self, exc: BaseException, port: str | None, attempt: int, will_retry: bool,
        started: float,
    ) -> None:
        """Announce a failed attempt as ``ActorFailed`` (with the traceback text)."""
        if self.net.bus.active:
            self.net.bus.publish(ev.ActorFailed(
                network=self.net.name, actor_id=self.node_id, component=self.component,
                error=str(exc) or type(exc).__name__, error_type=type(exc).__name__,
                port=port, attempt=attempt, will_retry=will_retry,
                duration_ms=(time.perf_counter() - started) * 1000.0,
                traceback=format_traceback(exc),
                reason="failed" if not isinstance(exc, ActivationTimeout) else "timeout"))

    def _publish(self, event: Any) -> None:
        if self.net.bus.active:
            self.net.bus.publish(event)

    def restart_allowed(self) -> bool:
        """Whether the restart budget allows one more restart now (and count it)."""
        now = time.monotonic()
        window = self.policy.restart_window
        if self.restarts is None:
            self.restarts = deque()
        while self.restarts and now - self.restarts[0] > window:
            self.restarts.popleft()
        if len(self.restarts) >= self.policy.max_restarts:
            return False
        self.restarts.append(now)
        return True

    async def restart(self) -> None:
        """Replace the actor instance (fresh state), tearing down the old one."""
        old = self.actor
        try:
            await old.teardown(self.ctx)
        except Exception as exc:  # a broken teardown must not block the restart
            _log.warning("node %r: teardown before restart failed: %s", self.node_id, exc)
        self.actor = self.cls()
        self.ctx.state = {}
        self._bind_behaviour()
        await self.actor.setup(self.ctx)
        self._publish(ev.ActorStarted(network=self.net.name, actor_id=self.node_id,
                                      component=self.component))

    def _reject_queued(self, why: str, reason: str) -> None:
        for port in list(self.inports.values()):
            while port.queue:
                value = port.take()
                self.net.dead_letter(self.node_id, port.name, value,
                                     ActorError(f"node {self.node_id!r}: {why}",
                                                node=self.node_id, port=port.name),
                                     0, reason=reason)
        if self.order is not None:
            self.order.clear()
        while self.failed:  # failed inline activations not yet recovered
            inputs, _ = self.failed.popleft()
            self._lost(inputs)

    def ledger(self) -> tuple[int, int]:
        """(taken, delivered) of this node so far, a running batch included."""
        batch_taken, batch_delivered = self._batch_counts()
        return (self.taken + self.fired + batch_taken,
                self.delivered + batch_delivered)

    def statistics(self) -> NodeStatistics:
        """The node's ledger, counters and per-port statistics (see NodeStatistics)."""
        inports = {name: p.statistics() for name, p in self.inports.items()}
        busy = self.busy
        backpressured = self.backpressured
        taken, delivered = self.ledger()
        if self.running and not self.parked:
            busy += _perf() - self.woke_at
        if self.blocked_since:  # blocked right now: count the wait so far, as busy does
            backpressured += _perf() - self.blocked_since
        return NodeStatistics(
            node=self.node_id,
            component=self.component,
            running=self.running,
            activations=self.activations + taken - self.taken,
            failures=self.failures,
            taken=taken,
            delivered=delivered,
            dead_lettered=self.net.dead_count(self.node_id),
            in_activation=taken - delivered - self.dead_taken,
            queued=sum(p.queued for p in inports.values()),
            messages_out=sum(p.sent for p in self.outports.values()),
            busy_s=busy,
            backpressured_s=backpressured,
            latency=tuple(self.latency or (0,) * (len(LATENCY_BUCKETS) + 1)),
            inports=inports,
            outports={name: p.statistics() for name, p in self.outports.items()},
            status=self.ctx.status_text,
        )
