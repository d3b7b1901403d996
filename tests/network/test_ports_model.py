"""InPort's queue bound and high water against a model (hypothesis, stateful).

The hot path compares a queue's length once per put (against ``mark``, the smaller of
high water and capacity); this checks that the shortcut never lets a value past the
capacity, never refuses one below it, and keeps ``high_water`` the longest queue seen,
across capacity changes (live edge edits) and batch hand-overs.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from reflowpy.network.ports import InPort
from tests.scale import long_scale


class _Receiver:
    order: deque[InPort] | None = None
    parked = False

    def wake(self, port: InPort) -> None:  # pragma: no cover - parked is False
        raise AssertionError("not parked")

    def reject(self, port: InPort, value: Any, reason: str | None) -> None:
        raise AssertionError("nothing is rejected here")


class PortModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.port = InPort(_Receiver(), "n", "in", 3)
        self.model: deque[int] = deque()
        self.capacity = 3
        self.high = 0
        self.next = 0

    @rule()
    def put(self) -> None:
        ok = self.port.put_nowait(self.next)
        assert ok == (len(self.model) < self.capacity)
        if ok:
            self.model.append(self.next)
            self.high = max(self.high, len(self.model))
        self.next += 1

    @rule(k=st.integers(1, 4))
    def put_batch(self, k: int) -> None:
        # the runner reserves room first; past capacity only for room already promised
        values = list(range(self.next, self.next + k))
        self.next += k
        self.port.put_batch(values)
        self.model.extend(values)
        self.high = max(self.high, len(self.model))

    @precondition(lambda self: bool(self.model))
    @rule()
    def take(self) -> None:
        assert self.port.take() == self.model.popleft()

    @rule(capacity=st.integers(1, 8))
    def set_capacity(self, capacity: int) -> None:
        self.port.set_capacity(capacity)
        self.capacity = capacity

    @invariant()
    def agrees(self) -> None:
        assert list(self.port.queue) == list(self.model)
        assert self.port.high_water == self.high
        assert self.port.statistics().high_water == self.high
        assert self.port.mark <= self.port.capacity


TestPortModel = PortModel.TestCase
TestPortModel.settings = settings(max_examples=long_scale(300), stateful_step_count=40,
                                  deadline=None)
