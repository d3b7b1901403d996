"""The per-node runtime: one :class:`NodeRunner` per node, its context and firing loop.

A runner owns the node's actor instance, its state, its in-port queues and out-ports,
and (once there is work) one trio task in the network's nursery. The task is created
lazily when the first message arrives, so an idle node costs a few small objects and
no task: a network of 100,000 idle actors fits in a few hundred megabytes.

The firing loop takes whatever is queued and processes it without yielding; it
parks only when nothing is left. Sends that find room are plain appends (see
:mod:`reflowpy.network.ports`), so a message crosses a hop with no scheduler round
trip under load, and with one ``reschedule`` when the receiver was parked.

Idle detection counts *active* runners: a runner is active from the moment work is
handed to it until it parks with nothing it can do. The network is idle when the
count reaches zero. Per message, nothing is counted.

Failures follow the node's :class:`~reflowpy.Policy` in :meth:`NodeRunner._recover`.
"""

from __future__ import annotations

import logging
import math
import os
import time
import types
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from reflowpy.errors import (
    ActivationTimeout,
    ActorError,
    ConfigError,
    MessageError,
    NetworkStopped,
    PortNotFound,
)
from reflowpy.network import events as ev
from reflowpy.network.actor import Actor
from reflowpy.network.message import _LEAVES, freeze
from reflowpy.network.ports import InPort, OutPort
from reflowpy.network.supervision import Policy

if TYPE_CHECKING:
    from reflowpy.network.network import Network

__all__ = ["NodeRunner", "resolve_config"]

_P = TypeVar("_P", InPort, OutPort)

_reschedule = trio.lowlevel.reschedule
_current_task = trio.lowlevel.current_task
_wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
_Abort = trio.lowlevel.Abort

#: Activations a runner performs before it yields to the scheduler even with work left.
_BUDGET = 512
#: How deep inline activations may nest (a chain of plain-``def`` nodes runs inline).
_MAX_INLINE = 32

_log = logging.getLogger("reflowpy.node")
_EMPTY_CONFIG: Mapping[str, Any] = types.MappingProxyType({})


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
        for name, rule in rules.items():
            rule = str(rule)
            value = os.environ.get(name)
            if rule == "required":
                if value is None:
                    raise ConfigError(
                        f"node {node_id!r}: environment variable {name!r} is required"
                        " (env_vars) but not set"
                    )
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
        config["env"] = env
    return types.MappingProxyType(config)


class _Context:
    """The :class:`~reflowpy.ActorContext` of one node (reused across firings)."""

    __slots__ = ("_log", "_runner", "config", "inputs", "node_id", "state")

    def __init__(self, runner: NodeRunner, config: Mapping[str, Any]) -> None:
        self._runner = runner
        self.node_id = runner.node_id
        self.inputs: Mapping[str, Any] = {}
        self.state: dict[str, Any] = {}
        self.config = config
        self._log: logging.LoggerAdapter[logging.Logger] | None = None

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry the node id (created on first use)."""
        if self._log is None:
            self._log = logging.LoggerAdapter(_log, {"node": self.node_id})
        return self._log

    async def send(self, port: str, value: Any, *, index: int | None = None) -> None:
        """Send ``value`` out of ``port`` (to connections with ``index`` only, if given)."""
        runner = self._runner
        out = runner.outports.get(port)
        if out is None:
            out = runner.outport(port)
        if type(value) not in _LEAVES:
            value = freeze(value, where=f"node {runner.node_id!r} port {port!r}")
        targets = out.targets
        if (index is None and len(targets) == 1 and not out.checked
                and not runner.net.bus.active):
            # Inline activation of the receiver only for the first send after this node
            # waited (request/response: low latency); a node that sends back to back is
            # under load, and queued batches move faster than inline calls.
            net = runner.net
            net.inline_ok = runner.fresh
            runner.fresh = False
            out.sent += 1
            target = targets[0]
            delivered = target.put_nowait(value)
            net.inline_ok = True
            if not delivered:
                await target.put(value)
        else:
            await runner.emit(out, value, index)
        runner.budget -= 1
        if runner.budget <= 0:
            runner.budget = _BUDGET
            await trio.lowlevel.checkpoint()

    async def receive(self, port: str | None = None) -> tuple[str, Any]:
        """The next ``(port, value)`` for a ``run()`` actor; parks until one arrives."""
        runner = self._runner
        runner.fresh = True  # a reply to what we receive may be activated inline
        order = runner.order
        while True:
            if port is None:
                if order:
                    inport = order.popleft()
                    return inport.name, runner.take(inport)
            else:
                inport = runner.inport(port)
                if inport.queue:
                    order.remove(inport)  # type: ignore[union-attr]
                    return inport.name, runner.take(inport)
            if runner.stop_requested:
                raise NetworkStopped(f"node {self.node_id!r}: the network is stopping")
            await runner.park()

    async def receive_until(
        self, deadline: float, port: str | None = None
    ) -> tuple[str, Any] | None:
        """Like :meth:`receive`, or ``None`` once ``deadline`` (``trio.current_time()``
        scale) passes. While it waits the node counts as busy: a pending timer is work
        the network still has to do, so ``idle()`` waits for it."""
        runner = self._runner
        if deadline == math.inf:
            return await self.receive(port)
        net = runner.net
        net.timers += 1
        try:
            with trio.move_on_at(deadline):
                return await self.receive(port)
        finally:
            net.timers -= 1
            if net.active == 0 and net.timers == 0:
                net.became_idle()
        return None

    def connected(self, port: str) -> bool:
        """Whether ``port`` has at least one receiver."""
        out = self._runner.outports.get(port) or self._runner.outport(port)
        return bool(out.targets)

    def dead_letter(self, port: str, value: Any, error: BaseException) -> None:
        """Store a message this node cannot process (see ActorContext.dead_letter)."""
        self._runner.net.dead_letter(self.node_id, port, value, error, 1)

    def __repr__(self) -> str:
        return f"<ActorContext node={self.node_id!r}>"


class NodeRunner:
    """Runtime state of one node. Created by the network; not part of the public API."""

    __slots__ = (
        "activations",
        "actor",
        "await_all",
        "budget",
        "cls",
        "component",
        "ctx",
        "failed",
        "failures",
        "finished",
        "fn",
        "fresh",
        "inline",
        "inports",
        "net",
        "node_id",
        "optional",
        "order",
        "outports",
        "owns_loop",
        "policy",
        "proc",
        "required",
        "restarts",
        "running",
        "scope",
        "simple",
        "single",
        "stop_requested",
        "torn_down",
        "waiter",
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
        self.running = False
        self.finished = False
        self.stop_requested = False
        self.torn_down = False
        self.scope: trio.CancelScope | None = None
        self.activations = 0
        self.failures = 0
        self.restarts: deque[float] | None = None
        self.budget = _BUDGET
        self.await_all = cls.await_all_inports
        self.owns_loop = cls.owns_loop()
        self.required: tuple[InPort, ...] = ()
        self.optional: tuple[InPort, ...] = ()
        self.simple = policy.timeout is None
        self.ctx = _Context(self, config)
        self.actor = cls()
        self.fn: Callable[[Any], Any] | None = None
        self.proc: Callable[[Any], Any] = self.actor.process
        self._bind_behaviour()

    def _bind_behaviour(self) -> None:
        # @actor functions are called directly: a plain ``def`` without any coroutine,
        # an ``async def`` without the wrapper's extra coroutine frame.
        behaviour = getattr(self.cls, "behaviour", None)
        is_async = getattr(self.cls, "behaviour_is_async", True)
        self.fn = behaviour if behaviour is not None and not is_async else None
        self.proc = behaviour if behaviour is not None and is_async else self.actor.process
        self.update_dispatch()

    def update_dispatch(self) -> None:
        """Choose the queueing and dispatch strategy after ports or behaviour changed.

        A node with one in-port that fires per message reads that port's queue
        directly. A node whose behaviour is a plain ``def`` with no timeout may be
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

    # -- scheduling ---------------------------------------------------------------------

    def wake(self, port: InPort) -> None:
        """``port`` just received a value and this node is parked or has no task: run it.

        Inline when allowed (see :meth:`update_dispatch`), else reschedule the parked
        task or start one.
        """
        order = self.order
        if (
            self.inline
            and len(port.queue) == 1
            and (order is None or len(order) == 1)
            and self.net.inline_ok
            and self.net.inline_depth < _MAX_INLINE
            and not self.net.bus.active
            and self._room()
        ):
            self._activate_inline(port)
        else:
            self.resume()

    def resume(self) -> None:
        """Make the node's task run: reschedule it if parked, start it if there is none."""
        if self.waiter is not None:
            self.wake_parked()
        elif not self.running:
            self.spawn()

    def wake_parked(self) -> None:
        """Resume the parked task so it re-checks its state (used when draining)."""
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            self.net.active += 1
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
        if self.order is not None:
            self.order.popleft()
        net = self.net
        net.inline_depth += 1
        inputs = {port.name: value}
        try:
            ctx = self.ctx
            ctx.inputs = inputs
            self.activations += 1
            result = self.fn(ctx)  # type: ignore[misc]
            if result:
                for name, out_value in result.items():
                    out = self.outports.get(name)
                    if out is None:
                        out = self.outport(name)
                    if type(out_value) not in _LEAVES:
                        out_value = freeze(
                            out_value, where=f"node {self.node_id!r} port {name!r}")
                    if out.checked:
                        out.check(out_value)
                    out.sent += 1
                    if not out.targets:
                        out.unconnected += 1
                    for target in out.targets:
                        if not target.put_nowait(out_value):
                            target.put_batch([out_value])
        except Exception as exc:
            # Recovery may sleep (backoff) or restart the actor: the node's own task
            # does it, before it takes the next message.
            if self.failed is None:
                self.failed = deque()
            self.failed.append((inputs, exc))
            self.resume()
        finally:
            net.inline_depth -= 1

    def spawn(self) -> None:
        """Start the runner's task (lazily, on first work)."""
        self.running = True
        self.net.active += 1
        self.net.spawn_system(self.main, self.node_id)

    async def park(self) -> None:
        """Wait for the next arrival, counting this runner inactive meanwhile."""
        net = self.net
        net.active -= 1
        if net.active == 0 and net.timers == 0:
            net.became_idle()
        self.fresh = True
        self.waiter = _current_task()
        await _wait_task_rescheduled(self._abort_park)

    def _abort_park(self, _: Callable[[], Any]) -> _Abort:
        self.waiter = None
        self.net.active += 1  # the finally in main() balances the books
        return _Abort.SUCCEEDED

    def take(self, port: InPort) -> Any:
        """Take the oldest value of ``port``, publishing ``MessageReceived`` if observed."""
        value = port.take()
        bus = self.net.bus
        if bus.active:
            bus.publish(ev.MessageReceived(
                network=self.net.name, actor_id=self.node_id, port=port.name,
                message=value, queue_depth=len(port.queue)))
        return value

    async def main(self) -> None:
        """The runner task: dispatch to the loop that fits the actor's firing rule."""
        try:
            with trio.CancelScope() as scope:
                self.scope = scope
                if self.finished:
                    self._reject_queued("the actor's run() has finished")
                elif self.owns_loop:
                    await self._run_loop()
                elif self.await_all:
                    await self._join_loop()
                else:
                    await self._fire_loop()
        finally:
            self.running = False
            self.scope = None
            net = self.net
            net.active -= 1
            if net.active == 0 and net.timers == 0:
                net.became_idle()

    async def _fire_loop(self) -> None:
        # The hot path: take the whole batch already queued, then park. Keep it flat:
        # every attribute lookup inside the inner loop is paid per message.
        ctx = self.ctx
        bus = self.net.bus
        outports = self.outports
        emit = self.emit
        while True:
            if self.failed:
                inputs, exc = self.failed.popleft()
                await self._recover(inputs, exc)
                continue
            order = self.order
            port = self.single
            n = len(order) if order is not None else len(port.queue)  # type: ignore[union-attr]
            if n == 0:
                await self.park()
                continue
            if bus.active or not self.simple:
                await self._fire_observed(n)
                continue
            self.activations += n
            fn = self.fn
            proc = self.proc
            # Batch transfer: a plain-def node with one out-port feeding one queue
            # collects outputs while that queue has room and hands them over in one
            # extend. Nothing can yield in between, so the room stays reserved; once it
            # is used up, the rest goes one by one (and may wait: backpressure).
            batch: list[Any] | None = None
            primary = ""
            room = 0
            target_q: InPort | None = None
            if fn is not None and len(outports) == 1:
                only = next(iter(outports.values()))
                if len(only.targets) == 1 and not only.checked:
                    target_q = only.targets[0]
                    room = target_q.capacity - len(target_q.queue)
                    if room > 1:
                        batch = []
                        primary = only.name
            for _ in range(n):
                if order is not None:
                    port = order.popleft()
                value = port.queue.popleft()  # type: ignore[union-attr]
                if port.putters:  # type: ignore[union-attr]
                    _reschedule(port.putters.popleft())  # type: ignore[union-attr]
                ctx.inputs = inputs = {port.name: value}  # type: ignore[union-attr]
                try:
                    result = fn(ctx) if fn is not None else await proc(ctx)
                    if result:
                        for name, out_value in result.items():
                            if type(out_value) not in _LEAVES:
                                out_value = freeze(
                                    out_value, where=f"node {self.node_id!r} port {name!r}")
                            if batch is not None and name == primary:
                                batch.append(out_value)
                                if len(batch) >= room:
                                    self._flush(target_q, primary, batch)
                                    batch = None
                                continue
                            out = outports.get(name)
                            if out is None:
                                out = self.outport(name)
                            targets = out.targets
                            if len(targets) == 1 and not out.checked:
                                out.sent += 1
                                target = targets[0]
                                if not target.put_nowait(out_value):
                                    await target.put(out_value)
                            else:
                                await emit(out, out_value, None)
                except Exception as exc:
                    if batch:
                        self._flush(target_q, primary, batch)
                    batch = None
                    await self._recover(inputs, exc)
                    fn = self.fn  # a restart rebinds the behaviour
                    proc = self.proc
            if batch:
                self._flush(target_q, primary, batch)
            self.budget -= n
            if self.budget <= 0:
                self.budget = _BUDGET
                await trio.lowlevel.checkpoint()

    def _flush(self, target: InPort | None, port: str, values: list[Any]) -> None:
        assert target is not None
        out = self.outports.get(port) or self.outport(port)
        out.sent += len(values)
        target.put_batch(values)

    async def _fire_observed(self, n: int) -> None:
        # The general path: events for every message, per-activation timeouts.
        for _ in range(n):
            order = self.order
            port = order.popleft() if order is not None else self.single
            assert port is not None
            value = self.take(port)
            self.activations += 1
            await self._activate_guarded({port.name: value})

    async def _join_loop(self) -> None:
        self.refresh_join()
        while True:
            required = self.required
            if not required or not all(p.queue for p in required):
                if not required and any(p.queue for p in self.optional):
                    pass
                else:
                    await self.park()
                    continue
            inputs = {p.name: self.take(p) for p in required}
            for p in self.optional:
                if p.queue:
                    inputs[p.name] = self.take(p)
            self.activations += 1
            await self._activate_guarded(inputs)
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
                self.failures += 1
                self._publish_failure(exc, None, 1, False, started)
                if self.policy.restart and self._restart_allowed():
                    await self.restart()
                    run = self.actor.run  # type: ignore[attr-defined]
                    continue
                if self.policy.on_failure == "stop":
                    self.net.fail(self._wrap(exc, None))
                else:
                    self.net.report_error(self._wrap(exc, None))
            break
        self.finished = True
        self._publish(ev.ActorCompleted(network=self.net.name, actor_id=self.node_id,
                                        component=self.component,
                                        activations=self.activations))
        self._reject_queued("the actor's run() has finished")

    # -- activations and failures -----------------------------------------------------

    async def emit(self, out: OutPort, value: Any, index: int | None) -> None:
        """Deliver an already frozen ``value`` to every target of ``out``."""
        if out.checked:
            out.check(value)
        out.sent += 1
        targets = out.targets
        if not targets:
            out.unconnected += 1
            return
        bus = self.net.bus
        indices = out.indices
        for i, target in enumerate(targets):
            if index is not None and indices[i] != index:
                continue
            if not target.put_nowait(value):
                await target.put(value)
            if bus.active:
                to_actor = target.node if target.runner is not None else ""
                bus.publish(ev.MessageSent(
                    network=self.net.name, from_actor=self.node_id, from_port=out.name,
                    to_actor=to_actor, to_port=target.name, message=value,
                    queue_depth=len(target.queue)))

    async def _activate_once(self, inputs: dict[str, Any]) -> None:
        """One attempt of an activation: behaviour call (with timeout) and its outputs."""
        ctx = self.ctx
        ctx.inputs = inputs
        timeout = self.policy.timeout
        if timeout is None:
            result = self.fn(ctx) if self.fn is not None else await self.proc(ctx)
        else:
            with trio.move_on_after(timeout) as scope:
                result = self.fn(ctx) if self.fn is not None else await self.proc(ctx)
            if scope.cancelled_caught:
                raise ActivationTimeout(
                    f"node {self.node_id!r}: activation exceeded the policy timeout of"
                    f" {timeout:g} s",
                    node=self.node_id, port=",".join(inputs),
                )
        if result:
            if not isinstance(result, Mapping):
                raise ActorError(
                    f"node {self.node_id!r}: process() must return a mapping of out-port"
                    f" -> value or None, got {type(result).__name__}",
                    node=self.node_id,
                )
            for name, value in result.items():
                out = self.outports.get(name) or self.outport(name)
                if type(value) not in _LEAVES:
                    value = freeze(value, where=f"node {self.node_id!r} port {name!r}")
                await self.emit(out, value, None)

    async def _activate_guarded(self, inputs: dict[str, Any]) -> None:
        try:
            await self._activate_once(inputs)
        except Exception as exc:
            await self._recover(inputs, exc)

    async def _recover(self, inputs: dict[str, Any], exc: Exception) -> None:
        """Apply the failure policy to one failed activation. Never raises ``Exception``."""
        policy = self.policy
        attempt = 1
        port = ",".join(inputs)
        started = time.perf_counter()
        while True:
            self.failures += 1
            will_retry = attempt <= policy.retries
            self._publish_failure(exc, port, attempt, will_retry, started)
            if not will_retry:
                break
            await trio.sleep(policy.delay(attempt))
            attempt += 1
            started = time.perf_counter()
            try:
                await self._activate_once(inputs)
                return
            except Exception as again:
                exc = again
        if policy.restart and self._restart_allowed():
            await self.restart()
            attempt += 1
            try:
                await self._activate_once(inputs)
                return
            except Exception as again:
                exc = again
                self.failures += 1
                self._publish_failure(exc, port, attempt, False, started)
        value = next(iter(inputs.values())) if len(inputs) == 1 else dict(inputs)
        letter = self.net.dead_letter(self.node_id, port, value, exc, attempt)
        if policy.on_failure == "stop":
            self.net.fail(self._wrap(exc, port))
        else:
            _log.warning("node %r: message dead-lettered (id %d) after %d attempt(s): %s",
                         self.node_id, letter.id, attempt, exc)

    def _wrap(self, exc: BaseException, port: str | None) -> ActorError:
        if isinstance(exc, ActorError):
            return exc
        kind = "bad message" if isinstance(exc, MessageError) else type(exc).__name__
        err = ActorError(
            f"{self.net.where()}: node {self.node_id!r} ({self.component})"
            f"{f' on port {port!r}' if port else ''} failed: {kind}: {exc}",
            node=self.node_id, port=port,
        )
        err.__cause__ = exc
        return err

    def _publish_failure(
        self, exc: BaseException, port: str | None, attempt: int, will_retry: bool,
        started: float,
    ) -> None:
        self._publish(ev.ActorFailed(
            network=self.net.name, actor_id=self.node_id, component=self.component,
            error=str(exc) or type(exc).__name__, error_type=type(exc).__name__, port=port,
            attempt=attempt, will_retry=will_retry,
            duration_ms=(time.perf_counter() - started) * 1000.0))

    def _publish(self, event: Any) -> None:
        if self.net.bus.active:
            self.net.bus.publish(event)

    def _restart_allowed(self) -> bool:
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

    def _reject_queued(self, reason: str) -> None:
        for port in list(self.inports.values()):
            while port.queue:
                value = port.take()
                self.net.dead_letter(self.node_id, port.name, value,
                                     ActorError(f"node {self.node_id!r}: {reason}",
                                                node=self.node_id, port=port.name), 0)
        if self.order is not None:
            self.order.clear()

    def statistics(self) -> dict[str, Any]:
        """Activations, failures, and per-port queue statistics of this node."""
        return {
            "node": self.node_id,
            "component": self.component,
            "activations": self.activations,
            "failures": self.failures,
            "running": self.running,
            "inports": {name: p.statistics() for name, p in self.inports.items()},
            "outports": {
                name: {"sent": p.sent, "unconnected": p.unconnected,
                       "targets": len(p.targets)}
                for name, p in self.outports.items()
            },
        }
