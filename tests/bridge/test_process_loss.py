"""Killing the middle process mid-stream: it is restarted and nothing is lost.

Partitions ack on completion, so whatever the dead worker held is resent from the
upstream resend buffer. A deterministic partition restarts its output sequence at the
checkpoint that came with the last completion ack, so its replayed outputs are dropped
here as duplicates: exactly once. A non-deterministic one resumes after what was
received: at least once, and the duplicates are counted.
"""

from __future__ import annotations

from collections import Counter

import pytest

from reflowpy.bridge import BridgedNetwork
from tests.bridge.helpers import pipeline, registry
from tests.bridge.procs import stream_with_kills
from tests.bridge.test_partitions import PLUGIN
from tests.scale import long_scale

KILLS: Counter[str] = Counter()


@pytest.mark.parametrize("deterministic", [True, False])
async def test_kill_and_restart_the_middle_process(deterministic: bool) -> None:
    n = long_scale(10_000)
    kills = 2
    g = pipeline({"b": "partition:mid", "c": "partition:mid"}, deterministic=deterministic)
    bn = BridgedNetwork(g, registry(), worker_plugins=PLUGIN, deadline=30)
    async with bn:
        got, killed_at = await stream_with_kills(bn, "partition:mid", n, kills)
    KILLS["kills"] += len(killed_at)
    stats = bn.statistics()
    assert stats["restarts"]["partition:mid"] == kills
    assert {v[1] for v in got} == set(range(n))  # nothing lost
    counts = Counter(v[1] for v in got)
    duplicates = sum(c - 1 for c in counts.values())
    KILLS[f"duplicates deterministic={deterministic}"] += duplicates
    KILLS[f"replayed deterministic={deterministic}"] += stats["replayed"]["partition:mid"]
    if deterministic:
        assert duplicates == 0, duplicates
        assert [v[1] for v in got] == list(range(n))  # and in order
    assert stats["replayed"]["partition:mid"] > 0  # the kills did hit unfinished work
    print(f"\nprocess loss (deterministic={deterministic}): killed at {killed_at},"
          f" replayed {stats['replayed']['partition:mid']}, duplicates {duplicates}")


