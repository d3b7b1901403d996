"""Activity and idle accounting of one network, and stall (deadlock) detection.

The :class:`Scheduler` is the only owner of the numbers idle detection rests on, so
their invariants live in one place:

* ``active`` counts *work in hand*: a runner task from the moment work is handed to
  it until it parks with nothing it can do, and a live-added node until its
  ``setup()`` has run. It never counts per message.
* ``timers`` counts ``run()`` actors waiting with a deadline (``receive_until``): a
  pending timer is work the network still has to do.
* The network is **idle** when both are zero; :meth:`Scheduler.idle` wakes waiters.
* ``inline_depth`` / ``inline_ok`` bound inline activations (a parked plain-``def``
  receiver run in its sender's task, see :mod:`reflowpy.network.runner`).

**Idle release.** A runner gets its task lazily, on its first work; once it has been
parked for a whole ``release_after`` period (seconds) the scheduler ends that task
(:meth:`Scheduler.release_idle`, one task that runs only while some runner holds a
task), and the next arrival starts a new one. A parked task costs a few KiB (its
coroutine frames, cancel scope and status); a released node costs only its runner.
Releasing is not work: it changes neither ``active`` nor idleness, so no
``NetworkIdle`` is announced for it. Only runners that fire per message or join hold a
task they can give back; a ``run()`` actor's task *is* its state and is kept.

**Stalls.** A runner blocked in a send on a full queue tells the scheduler
(:meth:`block` / :meth:`unblock`). When every active runner is blocked and every queue
they wait on is still full -- no task can make progress, which in a graph is a cycle
of full queues, or a full queue into a node waiting on another port -- the network is
*stalled*. The check runs only when the number of blocked runners reaches the number
of active ones, so a flowing network never pays for it. The network then reports a
:class:`Stall` (the cycle if there is one, the blocked nodes and queue depths) as a
``NetworkStalled`` event, and ``Network.idle()`` raises
:class:`~reflowpy.NetworkStalled` instead of waiting forever (``on_stall="fail"``,
the default) or keeps waiting (``on_stall="wait"``). A send blocked on an exported
out-port (the consumer outside the network reads slowly) is not a stall.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgspec
import trio

from reflowpy.network.ports import InPort, OutputSink

__all__ = ["Scheduler", "Stall"]


class Stall(msgspec.Struct, frozen=True):
    """Why a network cannot make progress.

    ``cycle`` lists the nodes of a cycle of full queues (empty if the blocked chain
    ends at a node that waits for something else), ``nodes`` every blocked node,
    ``queues`` the depth/capacity of each queue a blocked node waits on
    (``"node.port" -> [depth, capacity]``).
    """

    cycle: tuple[str, ...]
    nodes: tuple[str, ...]
    queues: dict[str, tuple[int, int]]

    def describe(self) -> str:
        """One line for errors and logs."""
        where = (f"cycle {' -> '.join(self.cycle)} -> {self.cycle[0]}" if self.cycle
                 else f"nodes {', '.join(self.nodes)}")
        full = ", ".join(f"{q} {d}/{c}" for q, (d, c) in self.queues.items())
        return f"{where}: every active node is blocked on a full queue ({full})"


class Scheduler:
    """Counts active work and timers for one network; detects idle and stalls.

    ``on_idle()`` is called each time the network becomes idle, ``on_stall(stall)``
    when it stalls. Both are callbacks of the owning network.
    """

    __slots__ = (
        "_blocked",
        "_idle_event",
        "_on_idle",
        "_on_stall",
        "active",
        "chain_epoch",
        "epoch",
        "inline_depth",
        "inline_ok",
        "reaping",
        "release_after",
        "stall",
        "stopping",
        "tasked",
        "timers",
    )

    def __init__(self, on_idle: Callable[[], None],
                 on_stall: Callable[[Stall], None], release_after: float = 10.0) -> None:
        self.active = 0
        self.timers = 0
        #: Nesting of inline activations in the current call stack.
        self.inline_depth = 0
        #: Bumped when a running chain must look again (a live edit, a split; see chain.py).
        self.chain_epoch = 0
        #: Whether the current send may activate a parked plain-``def`` node inline.
        self.inline_ok = True
        #: The current stall, or None while the network can make progress.
        self.stall: Stall | None = None
        #: Set by a forced stop: tasks being cancelled are not a stall.
        self.stopping = False
        self._blocked: dict[Any, InPort] = {}
        #: Idle release (see the module docstring): seconds a runner stays parked
        #: before its task ends (``math.inf``: never), the sweep counter runners note
        #: when they park, the runners that hold a task, and whether the sweep runs.
        self.release_after = release_after
        self.epoch = 0
        self.tasked: list[Any] = []
        self.reaping = False
        self._idle_event = trio.Event()
        self._on_idle = on_idle
        self._on_stall = on_stall

    # -- activity ------------------------------------------------------------------

    def enter(self) -> None:
        """Work was handed to a runner (or a setup started)."""
        self.active += 1

    def leave(self) -> None:
        """A runner parked with nothing it can do (or its task ended)."""
        self.active -= 1
        if self.active == 0:
            self._idle_event.set()  # also wakes wait(timers=False)
            if self.timers == 0:
                self._on_idle()
        elif self._blocked and len(self._blocked) >= self.active:
            self._check_stall()

    def timer_started(self) -> None:
        """A ``run()`` actor waits with a deadline."""
        self.timers += 1

    def timer_done(self) -> None:
        """A deadline wait ended (value received, deadline passed, or cancelled)."""
        self.timers -= 1
        if self.active == 0 and self.timers == 0:
            self._became_idle()

    def is_idle(self) -> bool:
        """No work in hand and no timer pending."""
        return self.active == 0 and self.timers == 0

    def _became_idle(self) -> None:
        self._idle_event.set()
        self._on_idle()

    async def wait(self, *, timers: bool = True, stalled: bool = False) -> None:
        """Return once idle (with ``timers=False``: once no work is in hand, pending
        timers aside); with ``stalled=True`` also once the network stalls."""
        while self.active > 0 or (timers and self.timers > 0):
            if stalled and self.stall is not None:
                return
            if self._idle_event.is_set():
                self._idle_event = trio.Event()
            await self._idle_event.wait()

    def poke(self) -> None:
        """Wake every :meth:`wait` so it re-checks (after a stall or a failure)."""
        self._idle_event.set()

    # -- idle release ----------------------------------------------------------------

    def tasked_runner(self, runner: Any) -> bool:
        """``runner`` got a task; returns True when the release sweep must be started."""
        self.tasked.append(runner)
        if self.reaping or self.release_after == math.inf:
            return False
        self.reaping = True
        return True

    async def release_idle(self) -> None:
        """The release sweep: every ``release_after`` seconds, end the tasks of runners
        parked since before the previous sweep. Ends when no runner holds a task (the
        next task started starts it again)."""
        try:
            while self.tasked:
                await trio.sleep(self.release_after)
                epoch = self.epoch
                self.epoch = epoch + 1
                keep = []
                for runner in self.tasked:
                    if not runner.running:
                        continue  # its task ended (released, removed, or finished)
                    if runner.waiter is not None and runner.park_epoch < epoch \
                            and runner.release():
                        continue
                    keep.append(runner)
                self.tasked = keep
        finally:
            self.reaping = False

    # -- stalls ------------------------------------------------------------------------

    def block(self, runner: Any, target: InPort) -> None:
        """``runner`` waits for room in ``target``."""
        self._blocked[runner] = target
        if len(self._blocked) >= self.active and self.timers == 0:
            self._check_stall()

    def unblock(self, runner: Any) -> None:
        """``runner`` stopped waiting (its value went in, or it was cancelled)."""
        self._blocked.pop(runner, None)
        if self.stall is not None:
            self.stall = None

    def forget(self, runner: Any) -> None:
        """``runner`` is gone (node removed)."""
        self._blocked.pop(runner, None)

    def _check_stall(self) -> None:
        if self.stall is not None or self.timers or not self._blocked or self.stopping:
            return
        if len(self._blocked) < self.active:
            return
        for target in self._blocked.values():
            if isinstance(target, OutputSink) or len(target.queue) < target.capacity:
                return
        self.stall = self._describe()
        self._idle_event.set()
        self._on_stall(self.stall)

    def _describe(self) -> Stall:
        waits = {r.node_id: t for r, t in self._blocked.items()}
        cycle: list[str] = []
        for start in waits:
            path: list[str] = []
            node: str | None = start
            while node is not None and node not in path:
                path.append(node)
                target = waits.get(node)
                node = target.node if target is not None else None
            if node is not None:
                cycle = path[path.index(node):]
                break
        return Stall(
            cycle=tuple(cycle),
            nodes=tuple(sorted(waits)),
            queues={f"{t.node}.{t.name}": (len(t.queue), t.capacity)
                    for t in self._blocked.values()},
        )
