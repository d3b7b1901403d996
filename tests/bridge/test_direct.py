"""Direct edges between two partitions: partition p1's out-port feeds p2's in-port over
their own link, not through this process.

Real worker processes: the same outputs as one process (counted, ordered), no DATA of
that edge here; the direct link cut by a proxy at random moments gives exact
delivery; either partition killed mid-stream loses nothing.
"""

from __future__ import annotations

from collections import Counter

import pytest
import trio

from reflowpy.bridge import BridgedNetwork
from reflowpy.bridge.placement import place
from tests.bridge.helpers import check_exact, pipeline, registry
from tests.bridge.procs import CuttingProxy, stream_with_kills
from tests.bridge.test_partitions import PLUGIN, feed_and_collect, in_one_process
from tests.scale import long_scale

SPLIT = {"b": "partition:p1", "c": "partition:p2"}


def direct_channel(bn: BridgedNetwork) -> int:
    (cid,) = bn.placement.direct
    assert bn.placement.direct[cid] == ("partition:p1", "partition:p2")
    return cid


def assert_not_seen_here(bn: BridgedNetwork, n: int) -> None:
    """This process carried no message of the direct edge, in either direction."""
    cid = direct_channel(bn)
    p1, p2 = bn.session("partition:p1"), bn.session("partition:p2")
    for s in (p1, p2):
        assert cid not in s.out and cid not in s.inc
    assert p1.statistics().msgs_in == 0  # p1's only output goes to p2
    assert p2.statistics().msgs_out == 0  # p2's only input comes from p1
    assert p1.statistics().msgs_out == n and p2.statistics().msgs_in == n
    assert not bn.placement.relays


def test_placement_of_a_direct_edge() -> None:
    placement = place(pipeline(SPLIT), direct=True)
    (cid,) = placement.direct
    p1, p2 = placement.parts["partition:p1"], placement.parts["partition:p2"]
    assert [c.id for c in p1.direct_out["partition:p2"]] == [cid]
    assert [c.id for c in p2.direct_in["partition:p1"]] == [cid]
    assert all(c.id != cid for part in placement.parts.values() for c in part.channels)
    assert p1.deterministic and not p2.deterministic  # p2's checkpoint misses p1's seqs
    assert p2.direct_in["partition:p1"][0].ack_on == "completion"
    relayed = place(pipeline(SPLIT), direct=False)
    assert not relayed.direct and len(relayed.relays) == 1


async def test_direct_edge_same_outputs_as_one_process() -> None:
    n = long_scale(50_000)
    bn = BridgedNetwork(pipeline(SPLIT), registry(), worker_plugins=PLUGIN, direct=True)
    async with bn:
        got = await feed_and_collect(bn.network, n, sources=2)
    check_exact(got, n, sources=2)  # 100k messages, each once, in order per source
    assert got[0][2:] == ["b", "c"]
    assert sorted(map(tuple, got)) == sorted(map(tuple, await in_one_process(n, 2)))
    assert_not_seen_here(bn, 2 * n)
    assert bn.dead_letters() == [] and bn.statistics()["lost_letters"] == 0


async def test_direct_link_cut_at_random_moments() -> None:
    n = long_scale(20_000)
    proxy = CuttingProxy(0, cuts=25, seed=13, min_bytes=2_000, max_bytes=16_000)

    def route(sender: str, receiver: str, address: str) -> str:
        assert (sender, receiver) == ("partition:p1", "partition:p2")
        assert address.startswith("unix:")
        proxy.target_unix = address[len("unix:"):]
        return f"tcp://127.0.0.1:{proxy.port}"

    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        bn = BridgedNetwork(pipeline(SPLIT), registry(), worker_plugins=PLUGIN, direct=True,
                            direct_route=route, liveness=2.0, ping_interval=0.2)
        async with bn:
            got = await feed_and_collect(bn.network, n, sources=2)
        nursery.cancel_scope.cancel()
    assert proxy.cuts >= 20, proxy.cuts
    assert proxy.connections > proxy.cuts  # each cut was followed by a new link
    check_exact(got, n, sources=2)  # link loss: no loss, no duplicates, in order
    assert_not_seen_here(bn, 2 * n)
    assert bn.statistics()["restarts"] == {"partition:p1": 0, "partition:p2": 0}
    print(f"\ndirect link: {proxy.cuts} cuts, {proxy.connections} connections")


KILLS: Counter[str] = Counter()


@pytest.mark.parametrize("victim", ["partition:p1", "partition:p2"])
async def test_kill_a_partition_of_a_direct_edge(victim: str) -> None:
    n = long_scale(10_000)
    kills = 2
    # a window (32) below the resend buffer (1024): a restarted receiver grants less
    # than the dead one did, and the sender must not send past the new grant
    bn = BridgedNetwork(pipeline(SPLIT, capacity=32), registry(), worker_plugins=PLUGIN,
                        direct=True,
                        deadline=30)
    async with bn:
        got, killed_at = await stream_with_kills(bn, victim, n, kills)
    stats = bn.statistics()
    assert stats["restarts"][victim] == kills
    seen = {v[1] for v in got}
    assert seen == set(range(n)), sorted(set(range(n)) - seen)[:10]  # nothing lost
    assert all(v[2:] == ["b", "c"] for v in got)
    duplicates = sum(c - 1 for c in Counter(v[1] for v in got).values())
    KILLS[f"duplicates {victim}"] += duplicates
    assert bn.dead_letters() == [] and stats["lost_letters"] == 0
    if victim == "partition:p1":  # what p1 held unfinished came again from here
        assert stats["replayed"][victim] > 0
    print(f"\nkilled {victim} at {killed_at}: replayed {stats['replayed']},"
          f" duplicates {duplicates}")
