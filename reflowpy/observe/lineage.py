"""Causality ids: which message each event is about, and which inputs caused each output.

The kernel does not stamp ids on messages (that would cost on the hot path); the
observed event stream is enough to assign them exactly, on the collector's side:

* every ``MessageSent`` to a node's in-port gets a fresh id and is appended to a model
  of that in-port's FIFO queue; the ``MessageReceived`` at that port takes the head of
  the model. One queue per in-port is also what the kernel has (merge keeps arrival
  order), so the match is exact.
* values that enter a queue without a ``MessageSent`` (IIPs, ``Network.send``) are found
  by the ``queue_depth`` the kernel reports with each event: the model is padded with
  *external* entries, and a receive of one of them is an ``input`` (a root of lineage).
* a node's sends are caused by what it received since its previous send (one message
  for a per-message actor, one per port for a join, a whole window for a batcher); the
  further sends of the same activation have the same causes.
* when tracing starts mid-stream (burst sampling), values already queued are marked
  *unknown*: their receive is recorded with no known origin.

The model relies on two things the kernel guarantees (reflowpy.network.ports,
``OutPort.send``): a ``MessageSent`` is published the moment the value enters that
target's queue, before anything can yield (so it precedes any receive of the value,
also while a broadcast still waits for room at a later target), and its
``queue_depth`` is the queue's length right after that append; a ``MessageReceived``'s
``queue_depth`` is the length right after the take.

If the event bus dropped events for the collector, or the stream ever disagrees with
the model (a reported depth it cannot have, a receive from a port it holds nothing
for while the depth says it should), the model resynchronises to the reported depth,
counts the disagreement in :attr:`Lineage.mismatches` and sets :attr:`Lineage.inexact`;
it never raises, and the collector marks the execution's lineage as inexact instead of
guessing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

__all__ = ["EXTERNAL", "UNKNOWN", "Lineage"]

#: Model entries for queued values that arrived without a MessageSent.
EXTERNAL = -1
#: Model entries for values queued before tracing started.
UNKNOWN = -2


_NO_LAST: list[int] = []  # "no earlier send" (compared by identity)

#: Most causes kept for a ``run()`` actor between two of its sends.
_MAX_CAUSES = 1000


class Lineage:
    """Assigns message ids and causes from one network's event stream, in order.

    ``rules`` maps node id -> firing rule (``message``: fires per message, ``join``: one
    message per in-port, ``loop``: owns its loop); unknown nodes fire per message.
    ``queued`` are the in-port depths when tracing started mid-stream (``None``: tracing
    sees the network from its start).
    """

    __slots__ = ("_complete", "_failing", "_last", "_next", "_pending", "_queues", "_rules",
                 "inexact", "mismatches")

    def __init__(self, rules: Mapping[str, str] | None = None,
                 queued: Mapping[tuple[str, str], int] | None = None, first_id: int = 1
                 ) -> None:
        #: Whether tracing saw the network from its start (then a node that sends
        #: without having received anything is a source: its causes are ``[]``).
        self._complete = queued is None
        self._rules = dict(rules or {})
        self._next = first_id
        # _queues, _pending and _last are never replaced (the trace collector's tap
        # reads them: its fast path is sent_to/received_from inlined)
        self._queues: dict[tuple[str, str], deque[int]] = {}
        self._pending: dict[str, dict[str, int] | list[int]] = {}
        self._last: dict[str, list[int] | None] = {}
        self._failing: set[str] = set()
        #: Set when the model disagreed with a reported queue depth (events were lost).
        self.inexact = False
        #: How many times the event stream disagreed with the model.
        self.mismatches = 0
        for key, n in (queued or {}).items():
            if n > 0:
                self._queues[key] = deque([UNKNOWN] * n)

    def rule(self, node: str) -> str:
        """The firing rule the model assumes for ``node``."""
        return self._rules.get(node, "message")

    @property
    def next_id(self) -> int:
        """The id the next new message will get."""
        return self._next

    def queue(self, node: str, port: str) -> deque[int]:
        """The model of in-port ``node.port``'s queue (a caller may keep it: it is never
        replaced), for :meth:`sent_to` and :meth:`received_from`."""
        q = self._queues.get((node, port))
        if q is None:
            q = self._queues[(node, port)] = deque()
        return q

    def sent(self, from_node: str, to_node: str, to_port: str, queue_depth: int
             ) -> tuple[int, list[int] | None]:
        """A ``MessageSent``: its message id and its causes (``None``: not known)."""
        return self.sent_to(from_node, self.queue(to_node, to_port) if to_node else None,
                            queue_depth)

    def sent_to(self, from_node: str, q: deque[int] | None, queue_depth: int
                ) -> tuple[int, list[int] | None]:
        """:meth:`sent` with the target's model queue resolved (``None``: an exported
        out-port)."""
        pending = self._pending.pop(from_node, None)  # never empty when present
        causes: list[int] | None
        if pending:
            causes = list(pending.values()) if type(pending) is dict \
                else pending  # type: ignore[assignment]
            self._last[from_node] = causes
        else:
            causes = self._last.get(from_node, _NO_LAST)
            if causes is _NO_LAST:
                causes = self._last[from_node] = [] if self._complete else None
        msg = self._next
        self._next = msg + 1
        if q is not None:
            missing = queue_depth - 1 - len(q)
            if missing:
                if missing > 0:
                    q.extend([EXTERNAL] * missing)
                else:
                    # the model holds more than the queue can: events were lost
                    self._mismatch()
                    for _ in range(min(-missing, len(q))):
                        q.popleft()
            q.append(msg)
        return msg, causes

    def _mismatch(self) -> None:
        self.inexact = True
        self.mismatches += 1

    def _take(self, node: str, port: str, queue_depth: int | None) -> tuple[int, str]:
        return self._take_from(self._queues.get((node, port)), queue_depth)

    def _take_from(self, q: deque[int] | None, queue_depth: int | None) -> tuple[int, str]:
        if q:
            head = q.popleft()
            if queue_depth is not None and len(q) > queue_depth \
                    and len(q) > max(queue_depth, 0):
                # the model holds values the queue no longer has: events were lost
                self._mismatch()
                while len(q) > max(queue_depth, 0):
                    q.popleft()
        else:
            head = EXTERNAL
        if head >= 0:
            return head, "recv"
        msg = self._next
        self._next += 1
        return msg, "input" if head == EXTERNAL else "unknown"

    def received(self, node: str, port: str, queue_depth: int) -> tuple[int, str]:
        """A ``MessageReceived``: its message id and kind (``recv``, ``input``, ``unknown``)."""
        return self.received_from(node, port, self._queues.get((node, port)), queue_depth)

    def received_from(self, node: str, port: str, q: deque[int] | None, queue_depth: int
                      ) -> tuple[int, str]:
        """:meth:`received` with the port's model queue resolved (see :meth:`queue`)."""
        msg, kind = self._take_from(q, queue_depth)
        if self._failing:
            self._failing.discard(node)
        rule = self._rules.get(node, "message")
        if rule == "message":
            self._pending[node] = [msg]
        elif rule == "join":
            pending = self._pending.get(node)
            if not isinstance(pending, dict) or port in pending:
                self._pending[node] = {port: msg}
            else:
                pending[port] = msg
        else:
            pending = self._pending.get(node)
            if not isinstance(pending, list):
                self._pending[node] = [msg]
            else:
                pending.append(msg)
                if len(pending) > _MAX_CAUSES:
                    del pending[:-_MAX_CAUSES]
        return msg, kind

    def failed(self, node: str) -> list[int]:
        """An ``ActorFailed``: the messages the node was processing."""
        self._failing.add(node)
        return self.current(node)

    def dead_lettered(self, node: str, port: str) -> tuple[list[int], str]:
        """A ``DeadLettered``: the messages it holds, and ``failed`` (after a failure or a
        ``run()`` actor's own dead letter) or ``rejected`` (a queued value the network
        dropped on stop or removal, never received)."""
        if node in self._failing or (self._rules.get(node) == "loop" and node in self._pending):
            self._failing.discard(node)
            msgs = self.current(node)
            self._pending.pop(node, None)
            return msgs, "failed"
        msg, _ = self._take(node, port, None)
        return [msg], "rejected"

    def current(self, node: str) -> list[int]:
        """The messages a node is processing now (or last processed)."""
        pending = self._pending.get(node)
        if pending:
            return list(pending.values()) if isinstance(pending, dict) else list(pending)
        return list(self._last.get(node) or [])
