"""A slow remote consumer keeps the producer's memory flat (W5 across a bridge).

The producer pushes 32 KiB messages as fast as it can into a pipeline whose consumer
runs in a partition worker and is slow. The credit (the remote buffer's free room)
holds the bridge pump, the bounded export queue holds the producer: what is in flight
stays under the sum of the bounded buffers, and this process' RSS does not grow with
the number of messages.
"""

from __future__ import annotations

import resource

import reflowpy as rf
from reflowpy.bridge import BridgedNetwork
from tests.bridge.helpers import registry
from tests.bridge.test_partitions import PLUGIN
from tests.scale import long_scale


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


async def test_slow_remote_consumer_keeps_producer_memory_flat() -> None:
    n = long_scale(3000)
    payload = b"x" * 32768
    g = rf.Graph("w5")
    g.add_node("src", "core/Repeat")
    g.add_node("slow", "test/Slow", {"partition": "sink", "delay": 0.0005})
    g.add_node("end", "core/Drop", {"partition": "sink"})
    g.add_edge("src", "out", "slow", "in")
    g.add_edge("slow", "out", "end", "in")
    g.add_inport("in", "src", "in")
    cap = 16
    bn = BridgedNetwork(g, registry(), worker_plugins=PLUGIN, capacity=cap,
                        channel_capacity=cap, output_capacity=cap, buffer_limit=4 * cap)
    in_flight: list[int] = []
    rss: list[float] = []
    async with bn:
        s = bn.session("partition:sink")
        out = next(iter(s.out.values()))
        for i in range(n):
            await bn.network.send("in", [i, payload])
            if i % 100 == 0:
                in_flight.append((i + 1) - out.acked)
                rss.append(_rss_mb())
                assert len(out.buffer) <= 4 * cap
    stats = s.statistics()
    # src queue + its activation + export queue + pump's hand + resend buffer (+ margin)
    bound = cap + 1 + cap + cap + 4 * cap + 3
    assert max(in_flight) <= bound, (max(in_flight), bound)
    growth = max(rss[len(rss) // 5:]) - rss[len(rss) // 5]
    total_mb = n * len(payload) / 2**20
    assert growth < 20, (growth, total_mb)  # ~94 MiB went through
    assert stats.msgs_out == n
    print(f"\nW5 across a bridge: {n} x 32 KiB ({total_mb:.0f} MiB), max in flight"
          f" {max(in_flight)} (bound {bound}), RSS growth {growth:.1f} MiB")
