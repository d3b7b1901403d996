"""EventSubscription.take_all / put_back: bulk draining keeps the stream's order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reflowpy.network.events import EventBus


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 3)),
                max_size=30))
def test_bulk_drain_keeps_order_and_drops_nothing(steps: list[tuple[int, int, int]]
                                                  ) -> None:
    # Each step publishes some events, then takes everything and handles only a part
    # of it (as the collector does when it stops at a shutdown), while newer events
    # arrive, and puts the rest back: they must come before the newer ones.
    bus = EventBus()
    sub = bus.subscribe(10_000)
    published: list[int] = []
    handled: list[int] = []
    n = 0
    for publish, handle, meanwhile in steps:
        for _ in range(publish):
            bus.publish(n)
            published.append(n)
            n += 1
        events = sub.take_all()
        for _ in range(min(handle, len(events))):
            handled.append(events.popleft())
        for _ in range(meanwhile):
            bus.publish(n)
            published.append(n)
            n += 1
        sub.put_back(events)
    handled.extend(sub.take_all())
    assert handled == published
    assert sub.dropped == 0
