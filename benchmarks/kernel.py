"""Kernel workloads W1-W5 (issue 3). Prints one JSON line per workload and variant.

    python -m benchmarks kernel [--quick] [--only W1,W3] [--runs 3]

W1 pipeline: source -> 10 pass-through actors -> sink, 200,000 messages
   ``{"i": i, "payload": "x" * 32}``; end-to-end msgs/s and hops/s (plain ``def`` and
   ``async def`` pass-throughs).
W2 fan-out/fan-in: source -> 8 workers (round robin over an addressable port) -> sink.
W3 latency: ping-pong between two actors, 20,000 round trips of the same
   ``{"i", "payload"}`` dict the peers send (frozen at every send, as a user's dict is),
   p50/p99 in microseconds.
W4 many actors: 10,000 and 100,000 idle actors (a chain of plain-``def`` nodes): the
   whole cost a user pays, counted as the peers count it: ``spawn_s`` is Graph build +
   Network start, ``kib_per_actor`` is the RSS growth (graph included) over the RSS
   before the graph was built, in KiB (2**10 bytes); the graph's share is shown apart.
W5 backpressure: a fast source into a slow sink (0.2 ms per message) for 20 s; RSS
   sampled every 0.25 s from a thread; ``peak_growth_mb`` is the peak over the RSS just
   before the network started (MiB), as the peers report it.

Each figure is the median of ``--runs`` runs (default 3). W6 (the JSON-lines log
pipeline) lives in ``benchmarks/w6.py``; ``python -m benchmarks peers`` runs all of
them beside the peer libraries in one run.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import trio

import reflowpy as rf


def _rss_mb() -> float:
    """Resident set size in MiB (2**20 bytes, as the peers count)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _settled_rss_mb() -> float:
    gc.collect()
    return _rss_mb()


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
              hops_per_s=round(n * 10 / seconds))


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
            message = {"i": i, "payload": "x" * 32}  # what the peers send
            t0 = clock()
            await ctx.send("ping", message)
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
    _emit("W3 latency", n, seconds, p50_us=round(p50, 2), p99_us=round(p99, 2),
          message="dict {i, payload}")


# -- W4 ---------------------------------------------------------------------------------------


def w4(n: int) -> None:
    reg = _registry()
    before = _settled_rss_mb()
    t0 = time.perf_counter()
    g = rf.Graph("w4")
    for i in range(n):
        g.add_node(f"a{i}", "bench/Pass")
    for i in range(1, n):
        g.add_edge(f"a{i - 1}", "out", f"a{i}", "in")
    graph_s = time.perf_counter() - t0
    graph_mb = _settled_rss_mb() - before

    async def main() -> tuple[float, float]:
        t1 = time.perf_counter()
        net = rf.Network(g, reg)
        async with net:
            start_s = time.perf_counter() - t1
            total_mb = _settled_rss_mb() - before
            await net.idle()
        return start_s, total_mb

    start_s, total_mb = trio.run(main)
    spawn = graph_s + start_s
    _emit("W4 many actors", n, spawn, spawn_s=round(spawn, 3), graph_s=round(graph_s, 3),
          network_start_s=round(start_s, 3),
          kib_per_actor=round(total_mb * 1024 / n, 2),
          graph_kib_per_node=round(graph_mb * 1024 / n, 2),
          kib_per_actor_excl_graph=round((total_mb - graph_mb) * 1024 / n, 2))


# -- W5 ---------------------------------------------------------------------------------------


class _RssSampler:
    """Samples this process's RSS from a thread every ``every`` s (W5)."""

    def __init__(self, every: float = 0.25) -> None:
        self.every = every
        self.samples: list[float] = []
        self.base = _settled_rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(_rss_mb())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(_rss_mb())


def w5(duration: float) -> None:
    reg = _registry()
    g = rf.Graph("w5")
    g.add_node("src", "bench/Source", {"n": 10**12})
    g.add_node("sink", "bench/SlowSink")
    g.add_edge("src", "out", "sink", "in")
    sampler = _RssSampler()

    async def main() -> int:
        net = rf.Network(g, reg)
        sampler.start()
        async with net:
            await trio.sleep(duration)
            sampler.stop()
            processed = net._runners["sink"].activations
            await net.stop(drain=False)
        return processed

    t0 = time.perf_counter()
    processed = trio.run(main)
    seconds = time.perf_counter() - t0
    s = sampler.samples
    _emit("W5 backpressure", processed, seconds, duration_s=duration,
          base_rss_mb=round(sampler.base, 1),
          peak_growth_mb=round(max(s) - sampler.base, 2),
          end_growth_mb=round(s[-1] - sampler.base, 2))


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
        w5(2.0 if args.quick else 20.0)


if __name__ == "__main__":
    main()
