"""Operator chaining: a run of 1-in-1-out nodes executed in one task, value by value.

When the head of a run of plain 1-in-1-out nodes takes a batch from its queue, it
*claims* the nodes downstream (:func:`claim`) and calls each one's behaviour in turn
with the previous one's output (:func:`run`), as Flink chains operators. A claimed
node is ``chained``: it has no task of its own, arrivals queue without waking it and
``resume`` does nothing, so the head's task is the only one that runs it. The queues
between the nodes stay (empty): the chain is a specialisation of the one delivery
path, and anything it does not handle on its fast path goes back to that path.

**What may chain.** A plain ``def`` node ``b`` (the head may also be ``async def``)
downstream of ``a`` when ``a``'s only connected out-port feeds exactly one in-port,
``b``'s single in-port (it fires per message), unchecked; ``b`` has no task and is
parked (a live-added node is not parked until its ``setup`` ran), nothing queued or
blocked, no timeout and no offload (retries are fine), and nobody observes the network
(``bus.active``).

**The fast path** per message and stage: ``ctx.inputs = {port: value}``, the behaviour
call, and a result that is a one-entry dict for the connected out-port with an
already-frozen value (or ``None``: the message ends there). Counters are not touched per
message: the messages that reached each stage are folded into its ``fired``,
``delivered``, out-port ``sent`` and the next in-port's ``total`` at each *fold*, which
happens before anything can yield, so whoever looks (statistics, the ledger, a stop)
sees every node's counts exactly as unchained. An ``async def`` stage is stepped with
``coroutine.send``: one that completes without suspending costs no trip through trio;
one that suspends is folded first and then awaited.

**The slow path and splitting.** Anything else at stage ``j`` (an exception, another
result shape, a ``ctx.send``, a live edit or a subscriber appearing while a stage
waited) finishes that message at stage ``j`` through the node's own general code
(:func:`~reflowpy.network.supervision.recover` with its policy, retries and dead
letters; ``outputs``/``_deliver_all``), after the nodes past ``j`` were let go
(*split*): they are ordinary taskless nodes again and what ``j`` sends them wakes them.
The batch then continues unchained. A cancellation inside a stage dead-letters that
stage's input (``_lost``), as unchained. The tail's outputs go to its target in one
``put_batch`` while it has room, and through the blocking ``deliver`` (backpressure)
when it has none; values in flight are always in a queue or in exactly one activation.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

import trio

from reflowpy.network.message import _LEAVES
from reflowpy.network.ports import InPort, OutputSink

if TYPE_CHECKING:
    from reflowpy.network.runner import NodeRunner

__all__ = ["MAX_CHAIN", "claim", "run"]

#: The most nodes one chain runs (the head included).
MAX_CHAIN = 64
_MANY: Any = object()
_NO_PORT: Any = object()
_HANDOVER = (InPort, OutputSink)
_reschedule = trio.lowlevel.reschedule


def _connected(runner: NodeRunner) -> Any:
    """The only connected out-port of ``runner`` and its one target, else (None, None);
    (None, False) when it has no connected out-port."""
    found: Any = None
    for out in runner.outports.values():
        if out.targets:
            if found is not None or len(out.targets) != 1:
                return None, None
            found = out
    if found is None:
        return None, False
    return found, found.targets[0]


def _chainable(runner: NodeRunner) -> bool:
    # Only plain ``def`` behaviours are claimed: an ``async def`` stage stepped in the
    # head's task that suspends inside a cancel scope of its own (``trio.sleep``) could
    # not be resumed under a scope of its own without corrupting trio's scope stack, and
    # under the head's scope removing the head would cancel it. An async head is fine.
    policy = runner.policy
    return (runner.fn is not None and policy.timeout is None and not policy.offload
            and runner.single is not None
            and not runner.chained and not runner.removed and not runner.stop_requested
            and not runner.failed and not runner.finished)


def claim(head: NodeRunner) -> list[NodeRunner] | None:
    """The chain ``head`` may run now: ``[head, b, c, ...]`` with every node after the
    head claimed (``chained``), or None when not even one node qualifies."""
    if head.net.bus.active or head.single is None:
        return None
    stages = [head]
    runner = head
    while len(stages) < MAX_CHAIN:
        out, target = _connected(runner)
        if out is None or type(target) is not InPort or out.checked:
            break
        nxt: NodeRunner = target.runner
        if (nxt.running or not nxt.parked or nxt.single is not target or target.queue
                or target.putters or nxt in stages or not _chainable(nxt)):
            break
        nout, ntarget = _connected(nxt)  # its own outputs must fit the fast path
        if ntarget is None or (nout is not None and (
                nout.checked or type(ntarget) not in _HANDOVER)):
            break
        nxt.chained = True
        nxt.running = True  # (a removal waits for release() to fold it)
        nxt.parked = False  # arrivals queue without waking it
        stages.append(nxt)
        runner = nxt
    if len(stages) == 1:
        return None
    return stages


def release(stages: list[NodeRunner], start: int = 1) -> None:
    """Let go of the claimed ``stages[start:]`` (upstream first): each is an ordinary
    taskless node again, started if something is queued for it."""
    for runner in stages[start:]:
        if not runner.chained:
            continue
        runner.chained = False
        runner.running = False
        runner.parked = True
        if runner.removed:
            runner.net.retire_runner(runner)
        elif ((runner.single is not None and runner.single.queue) or runner.failed) \
                and not runner.sched.stopping:
            runner.resume()
    stages[0].sched.chain_epoch += 1  # a running chain looks again
    del stages[max(start, 1):]


@types.coroutine
def _resume(coro: Any, yielded: Any) -> Any:
    # The rest of a suspended behaviour coroutine, driven as ``await`` would drive it.
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


class _Fold:
    """The counts a chain has not yet folded into its nodes (see the module docstring)."""

    __slots__ = ("drops", "started")

    def __init__(self, k: int) -> None:
        self.started = 0
        self.drops = [0] * k


def _fold(stages: list[NodeRunner], f: _Fold, at: int, outs: list[Any],
          ins: list[Any]) -> None:
    # Fold the messages since the last fold. ``at`` is the stage the last started
    # message is at (still in its activation there: its caller accounts for it), or
    # len(stages) when every started message finished (passed on, or ended as None).
    reached = f.started
    drops = f.drops
    last = len(stages) - 1
    for s, runner in enumerate(stages):
        if reached <= 0:
            break
        busy = 1 if s == at else 0
        runner.fired += reached
        runner.delivered += reached - busy
        reached -= drops[s] + busy  # passed on to the next stage
        if s < last:
            outs[s].sent += reached
            ins[s + 1].total += reached
    f.started = 0
    for s in range(len(drops)):
        drops[s] = 0


async def _own(runner: NodeRunner, head: NodeRunner, fn: Any, *args: Any) -> bool:
    """``await fn(*args)`` as ``runner``'s own work: a cancellation of the head (its
    removal) does not reach it; removing ``runner`` or a forced stop (which cancels
    every ``runner.scope``) does. False when it was cancelled so."""
    if runner is head:
        await fn(*args)
        return True
    with trio.CancelScope(shield=True) as scope:
        runner.scope = scope
        try:
            await fn(*args)
        finally:
            runner.scope = None
    return not scope.cancelled_caught


async def _finish(runner: NodeRunner, inputs: dict[str, Any], result: Any,
                  exc: Exception | None, state: dict[str, Any] | None) -> None:
    # A message the fast path does not handle, finished by the node's general code
    # (as NodeRunner._activate does after an attempt).
    if runner.removed:  # removed while it waited: as a cancelled activation
        runner._lost(inputs)
        return
    if exc is None:
        try:
            outputs = runner.outputs(result)
        except Exception as err:
            exc = err
    if exc is not None:
        runner.held = _no_held()
        await runner._recover_and_deliver(inputs, exc, state)
        return
    runner.delivered += 1
    if outputs:
        await runner._deliver_all(outputs)


def _no_held() -> Any:
    from reflowpy.network.runner import _NO_HELD  # (runner imports this module)

    return _NO_HELD


async def run(stages: list[NodeRunner], n: int) -> int:
    """Run up to ``n`` messages of the head's queue through the claimed ``stages``;
    returns how many it took (all accounted). Lets go of every claimed node before it
    returns (see the module docstring)."""
    head = stages[0]
    hport = head.single
    assert hport is not None
    sched = head.sched
    bus = head.net.bus
    last = len(stages) - 1
    outs: list[Any] = []
    ins: list[Any] = [hport]
    for s in range(last):
        outs.append(_connected(stages[s])[0])
        ins.append(stages[s + 1].single)
    tail = stages[last]
    tout, ttarget = _connected(tail)
    plan = [
        (r, r.ctx, r.fn if r.fn is not None else r.proc, r.fn is None,
         r.single.name,  # type: ignore[union-attr]
         outs[s].name if s < last else tout.name if tout is not None else _NO_PORT,
         r.policy.retries > 0)
        for s, r in enumerate(stages)
    ]
    asyncs = [r for r in stages if r.fn is None]
    f = _Fold(len(stages))
    drops = f.drops
    epoch = sched.chain_epoch
    tbatch: list[Any] = []
    room = ttarget.capacity - len(ttarget.queue) if tout is not None else 0
    dict_ = dict
    leaves = _LEAVES
    taken = 0
    for r in asyncs:
        r.holding = True
    try:
        hq = hport.queue
        while taken < n:
            if sched.chain_epoch != epoch or bus.active:
                break
            try:
                value = hq.popleft()
            except IndexError:  # the head was removed: its queue is gone
                break
            if hport.putters:  # a sender waits for this room (InPort.take, inlined)
                _reschedule(hport.putters.popleft())
            taken += 1
            f.started += 1
            j = 0
            for r, ctx, fn, is_async, iname, oname, snap in plan:
                ctx.inputs = inputs = {iname: value}
                state = dict_(ctx.state) if snap else None
                try:
                    if is_async:
                        co = fn(ctx)
                        try:
                            yielded = co.send(None)
                        except StopIteration as stop:
                            result = stop.value
                        else:
                            raise _Suspended(co, yielded)
                        if r.held:
                            raise _Slow(result)
                    else:
                        result = fn(ctx)
                except (_Slow, _Suspended) as slow:
                    _fold(stages, f, j, outs, ins)
                    await _split(stages, j, tbatch, tout, ttarget, asyncs)
                    if isinstance(slow, _Suspended):
                        # only the head can be async (see _chainable): the rest of its
                        # activation runs in the same task and scope as its first step
                        try:
                            result = await _resume(slow.coro, slow.yielded)
                        except Exception as exc:
                            await _own(r, head, _finish, r, inputs, None, exc, state)
                            return taken
                        except BaseException:
                            r._lost(inputs)
                            raise
                    else:
                        result = slow.result
                    await _own(r, head, _finish, r, inputs, result, None, state)
                    return taken
                except Exception as exc:
                    _fold(stages, f, j, outs, ins)
                    await _split(stages, j, tbatch, tout, ttarget, asyncs)
                    await _own(r, head, _finish, r, inputs, None, exc, state)
                    return taken
                except BaseException:
                    _fold(stages, f, j, outs, ins)
                    r._lost(inputs)
                    raise
                if result.__class__ is dict_ and len(result) == 1:
                    value = result.get(oname, _MANY)
                    if value is not _MANY and type(value) in leaves:
                        j += 1
                        continue
                elif result is None:
                    drops[j] += 1
                    break
                _fold(stages, f, j, outs, ins)
                await _split(stages, j, tbatch, tout, ttarget, asyncs)
                await _own(r, head, _finish, r, inputs, result, None, state)
                return taken
            else:  # through every stage: the tail's output for its target
                if room > 0:
                    tbatch.append(value)
                    room -= 1
                    continue
                _fold(stages, f, len(stages), outs, ins)
                _flush(tbatch, tout, ttarget)
                room = ttarget.capacity - len(ttarget.queue)
                if room > 0:
                    tbatch.append(value)
                    room -= 1
                else:  # full: wait for room like any send (backpressure)
                    await _own(tail, head, tail.deliver, tout, value, None)
                    room = ttarget.capacity - len(ttarget.queue)
        return taken
    finally:
        if f.started:  # (every path that leaves a message in an activation folded it)
            _fold(stages, f, len(stages), outs, ins)
        if tbatch:
            _flush(tbatch, tout, ttarget)
        for r in asyncs:
            r.holding = False
        release(stages)


class _Slow(Exception):
    def __init__(self, result: Any) -> None:
        self.result = result


class _Suspended(Exception):
    def __init__(self, coro: Any, yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded


def _flush(tbatch: list[Any], tout: Any, ttarget: Any) -> None:
    values = tbatch[:]
    tbatch.clear()
    tout.sent += len(values)
    ttarget.put_batch(values)


async def _split(stages: list[NodeRunner], j: int, tbatch: list[Any], tout: Any,
                 ttarget: Any, asyncs: list[NodeRunner]) -> None:
    # Before a message is finished by the general code at stage j: what the tail
    # produced goes first, and the nodes past j are let go (they run on their own).
    if tbatch:
        _flush(tbatch, tout, ttarget)
    for r in asyncs:
        r.holding = False
    release(stages, j + 1)
