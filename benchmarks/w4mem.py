"""Where an idle actor's bytes go (W4): tracemalloc over building the graph and
starting the network, grouped by the line that allocated them.

    python -m benchmarks w4mem [--n 10000] [--top 15] [--touched] [--release S]

One JSON line per phase (``graph``, ``network``) with the traced bytes per node, then
one line per allocation site (bytes per node, share of the phase) for the top sites.
``--touched`` sends one message through the chain of ``async def`` nodes first, so
every node holds a parked task (the after-work figure of W4); ``--release S`` then
runs the network with ``idle_release=S`` and waits for the idle release to end those
tasks (the figure after work *and* the release period).
"""

from __future__ import annotations

import argparse
import gc
import json
import tracemalloc
from typing import Any

import trio

import reflowpy as rf


@rf.actor(inports=["in"], outports=["out"])
def _pass(ctx: Any) -> Any:
    return {"out": ctx.inputs["in"]}


@rf.actor(inports=["in"], outports=["out"])
async def _pass_async(ctx: Any) -> Any:
    return {"out": ctx.inputs["in"]}


def _sites(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int, top: int,
           phase: str) -> None:
    stats = after.compare_to(before, "lineno")
    total = sum(s.size_diff for s in stats)
    print(json.dumps({"workload": "W4 memory", "phase": phase, "n": n,
                      "bytes_per_node": round(total / n, 1)}), flush=True)
    for s in stats[:top]:
        frame = s.traceback[0]
        print(json.dumps({"phase": phase, "site": f"{frame.filename.split('reflowpy/')[-1]}"
                                                  f":{frame.lineno}",
                          "bytes_per_node": round(s.size_diff / n, 1),
                          "blocks_per_node": round(s.count_diff / n, 2),
                          "share": round(s.size_diff / total, 3) if total else None}),
              flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks w4mem")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--touched", action="store_true")
    parser.add_argument("--release", type=float, default=None,
                        help="idle_release seconds; wait for the release after --touched")
    args = parser.parse_args(argv)
    n = args.n
    reg = rf.Registry()
    reg.register("bench/Pass", _pass)
    reg.register("bench/PassAsync", _pass_async)
    component = "bench/PassAsync" if args.touched else "bench/Pass"
    gc.collect()
    tracemalloc.start(1)
    s0 = tracemalloc.take_snapshot()
    g = rf.Graph("w4")
    for i in range(n):
        g.add_node(f"a{i}", component)
    for i in range(1, n):
        g.add_edge(f"a{i - 1}", "out", f"a{i}", "in")
    g.add_inport("in", "a0", "in")
    gc.collect()
    s1 = tracemalloc.take_snapshot()
    _sites(s0, s1, n, args.top, "graph")

    async def run() -> None:
        release = args.release if args.release is not None else 10.0
        async with rf.Network(g, reg, idle_release=release) as net:
            phase = "network"
            if args.touched:
                await net.send("in", 1)
                await net.idle()
                phase = "network (touched)"
                if args.release is not None:
                    await trio.sleep(2.5 * release)  # parked a whole period, then swept
                    phase = f"network (touched, released after {release:g} s)"
            gc.collect()
            s2 = tracemalloc.take_snapshot()
            _sites(s1, s2, n, args.top, phase)
            await net.stop(drain=False)

    trio.run(run)


if __name__ == "__main__":
    main()
