"""Kernel workloads W1-W5 (issue 3). Prints one JSON line per workload and variant.

    python -m benchmarks kernel [--quick] [--only W1,W3] [--runs 3]

W1 pipeline: source -> 10 pass-through actors -> sink, 200,000 messages
   ``{"i": i, "payload": "x" * 32}``; end-to-end msgs/s and hops/s (plain ``def`` and
   ``async def`` pass-throughs).
W2 fan-out/fan-in: source -> 8 workers (round robin over an addressable port) -> sink.
W3 latency: ping-pong between two actors, 20,000 round trips, p50/p99 in microseconds.
W4 many actors: 10,000 and 100,000 idle actors: spawn time and KB per actor.
W5 backpressure: a fast source into a slow sink for 10 s; RSS sampled every second.

Each figure is the median of ``--runs`` runs (default 3).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import trio

import reflowpy as rf


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 1e6


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _emit(workload: str, n: int, seconds: float, **extra: Any) -> None:
    line = {
        "workload": workload,
        "n": n,
        "seconds": round(seconds, 4),
        "msgs_per_s": round(n / seconds) if seconds > 0 else None,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        **extra,
    }
    print(json.dumps(line), flush=True)


def _median_runs(runs: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(runs))


# -- actors ---------------------------------------------------------------------------------


@rf.actor(inports=["in"], outports=["out"])
def passthrough(ctx: rf.ActorContext) -> dict[str, Any]:
    return {"out": ctx.inputs["in"]}


@rf.actor(inports=["in"], outports=["out"])
async def passthrough_async(ctx: rf.ActorContext) -> dict[str, Any]:
    return {"out": ctx.inputs["in"]}


class Source(rf.Actor):
    outports = [rf.Port("out", addressable=True)]

    async def run(self, ctx: Any) -> None:
        n = int(ctx.config["n"])
        fanout = int(ctx.config.get("fanout", 0))
        send = ctx.send
        if fanout:
            for i in range(n):
                await send("out", {"i": i, "payload": "x" * 32}, index=i % fanout)
        else:
            for i in range(n):
                await send("out", {"i": i, "payload": "x" * 32})


class Sink(rf.Actor):
    inports = ["in"]
    outports = ["count"]

    def __init__(self) -> None:
        self.n = 0

    async def process(self, ctx: Any) -> None:
        self.n += 1


class SlowSink(rf.Actor):
    inports = ["in"]

    async def process(self, ctx: Any) -> None:
        await trio.sleep(0.0002)


def _registry() -> rf.Registry:
    reg = rf.Registry()
    reg.register("bench/Pass", passthrough)
    reg.register("bench/PassAsync", passthrough_async)
    reg.register("bench/Source", Source)
    reg.register("bench/Sink", Sink)
    reg.register("bench/SlowSink", SlowSink)
    return reg


# -- W1 / W2 ---------------------------------------------------------------------------------


def _chain(n: int, stages: int, component: str) -> rf.Graph:
    g = rf.Graph("w1")
    g.add_node("src", "bench/Source", {"n": n})
    prev = "src"
    for i in range(stages):
        g.add_node(f"p{i}", component)
        g.add_edge(prev, "out", f"p{i}", "in")
        prev = f"p{i}"
    g.add_node("sink", "bench/Sink")
    g.add_edge(prev, "out", "sink", "in")
    return g


def _fan(n: int, workers: int) -> rf.Graph:
    g = rf.Graph("w2")
    g.add_node("src", "bench/Source", {"n": n, "fanout": workers})
    g.add_node("sink", "bench/Sink")
    for i in range(workers):
        g.add_node(f"w{i}", "bench/Pass")
        g.add_edge("src", "out", f"w{i}", "in", src_index=i)
        g.add_edge(f"w{i}", "out", "sink", "in")
    return g


def _time_graph(graph: rf.Graph, registry: rf.Registry, expect: int) -> float:
    async def main() -> float:
        net = rf.Network(graph, registry)
        t0 = time.perf_counter()
        async with net:
            await net.idle()
        elapsed = time.perf_counter() - t0
        got = net._runners["sink"].actor.n  # type: ignore[attr-defined]
        if got != expect:
            raise AssertionError(f"sink received {got} of {expect} messages")
        return elapsed

    gc.collect()
    return trio.run(main)


def w1(n: int, runs: int) -> None:
    reg = _registry()
    for component, label in (("bench/Pass", "def"), ("bench/PassAsync", "async def")):
        seconds = _median_runs(runs, lambda c=component: _time_graph(_chain(n, 10, c), reg, n))
        _emit("W1 pipeline", n, seconds, behaviour=label, stages=10,
              hops_per_s=round(n * 11 / seconds))


def w2(n: int, runs: int) -> None:
    reg = _registry()
    seconds = _median_runs(runs, lambda: _time_graph(_fan(n, 8), reg, n))
    _emit("W2 fan-out/fan-in", n, seconds, workers=8)


# -- W3 ---------------------------------------------------------------------------------------


class Pinger(rf.Actor):
    inports = ["pong"]
    outports = ["ping"]

    async def run(self, ctx: Any) -> None:
        n = int(ctx.config["n"])
        samples = self.samples = []
        clock = time.perf_counter_ns
        for i in range(n):
            t0 = clock()
            await ctx.send("ping", i)
            await ctx.receive("pong")
            samples.append(clock() - t0)


def w3(n: int, runs: int) -> None:
    reg = _registry()
    reg.register("bench/Pinger", Pinger)
    results = []
    for _ in range(runs):
        g = rf.Graph("w3")
        g.add_node("ping", "bench/Pinger", {"n": n})
        g.add_node("pong", "bench/Pass")
        g.add_edge("ping", "ping", "pong", "in")
        g.add_edge("pong", "out", "ping", "pong")

        async def main(graph: rf.Graph = g) -> tuple[float, list[int]]:
            net = rf.Network(graph, reg)
            t0 = time.perf_counter()
            async with net:
                await net.idle()
            return time.perf_counter() - t0, net._runners["ping"].actor.samples  # type: ignore[attr-defined]

        gc.collect()
        results.append(trio.run(main))
    seconds = statistics.median(r[0] for r in results)
    samples = sorted(s for r in results for s in r[1])
    p50 = samples[len(samples) // 2] / 1000
    p99 = samples[int(len(samples) * 0.99)] / 1000
    _emit("W3 latency", n, seconds, p50_us=round(p50, 2), p99_us=round(p99, 2))


# -- W4 ---------------------------------------------------------------------------------------


def w4(n: int) -> None:
    reg = _registry()
    gc.collect()
    before = _rss_mb()
    g = rf.Graph("w4")
    for i in range(n):
        g.add_node(f"a{i}", "bench/Pass")
    for i in range(1, n):
        g.add_edge(f"a{i - 1}", "out", f"a{i}", "in")
    graph_mb = _rss_mb() - before

    async def main() -> tuple[float, float]:
        t0 = time.perf_counter()
        net = rf.Network(g, reg)
        async with net:
            spawn = time.perf_counter() - t0
            gc.collect()
            total_mb = _rss_mb() - before - graph_mb
            await net.idle()
        return spawn, total_mb

    spawn, actors_mb = trio.run(main)
    _emit("W4 many actors", n, spawn, spawn_s=round(spawn, 3),
          kb_per_actor=round(actors_mb * 1000 / n, 2),
          graph_kb_per_node=round(graph_mb * 1000 / n, 2))


# -- W5 ---------------------------------------------------------------------------------------


def w5(duration: float) -> None:
    reg = _registry()
    g = rf.Graph("w5")
    g.add_node("src", "bench/Source", {"n": 10**12})
    g.add_node("sink", "bench/SlowSink")
    g.add_edge("src", "out", "sink", "in")
    samples: list[float] = []

    async def main() -> int:
        net = rf.Network(g, reg)
        async with net:
            for _ in range(int(duration)):
                await trio.sleep(1)
                samples.append(_rss_mb())
            processed = net.statistics().nodes["sink"].activations
            await net.stop(drain=False)
        return processed

    t0 = time.perf_counter()
    processed = trio.run(main)
    seconds = time.perf_counter() - t0
    _emit("W5 backpressure", processed, seconds, rss_mb_samples=[round(s, 1) for s in samples],
          rss_growth_mb=round(samples[-1] - samples[0], 2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks kernel")
    parser.add_argument("--quick", action="store_true", help="smaller n, one run")
    parser.add_argument("--only", default="W1,W2,W3,W4,W5")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    only = {w.strip().upper() for w in args.only.split(",")}
    runs = 1 if args.quick else args.runs
    scale = 10 if args.quick else 1
    if "W1" in only:
        w1(200_000 // scale, runs)
    if "W2" in only:
        w2(200_000 // scale, runs)
    if "W3" in only:
        w3(20_000 // scale, runs)
    if "W4" in only:
        w4(10_000 // scale)
        w4(100_000 // scale)
    if "W5" in only:
        w5(2.0 if args.quick else 10.0)


if __name__ == "__main__":
    main()
