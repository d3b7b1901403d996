"""Graph-layer workloads on freshly built n-node graphs (default 10,000).

The graph is a layered DAG: ``width`` nodes per layer, each node connected to two
nodes of the next layer (plus a few long edges), with IIPs on the first layer and
exported ports at both ends, so every analysis has real work. Each workload prints
one JSON line; ``msgs_per_s`` is nodes per second for graph work.

    python -m benchmarks graph [--nodes 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from reflowpy.network import analysis
from reflowpy.network.graph import Graph


def build(n: int, width: int = 50, seed: int = 1) -> Graph:
    """A layered graph of ``n`` nodes, about 2 connections per node; every node but
    the first layer's has an upstream node."""
    rng = random.Random(seed)
    g = Graph(f"bench{n}")
    ids = [f"n{i}" for i in range(n)]
    for i, node_id in enumerate(ids):
        g.add_node(node_id, "bench/Step", {"label": f"step {i}"})
    for i in range(n - width):
        layer_end = (i // width + 1) * width
        for j in {i + width, rng.randrange(layer_end, min(layer_end + width, n))}:
            g.add_edge(ids[i], "out", ids[j], "in")
        if i % 97 == 0 and layer_end + 3 * width < n:
            g.add_edge(ids[i], "side", ids[layer_end + 2 * width + i % width], "aux")
    for i in range(min(width, n)):
        g.add_iip(i, ids[i], "in")
    g.add_inport("input", ids[0], "in")
    g.add_outport("output", ids[-1], "out")
    return g


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _measure(workload: str, n: int, repeat: int, fn: Callable[[], Any]) -> dict[str, Any]:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return {"workload": workload, "n": n, "seconds": round(best, 4),
            "msgs_per_s": round(n / best) if best > 0 else None,
            "peak_rss_mb": round(_rss_mb(), 1)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks graph")
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    n, r = args.nodes, args.repeat
    g = build(n)
    texts = {fmt: g.dumps(fmt) for fmt in ("reflow", "noflo", "fbp", "yaml")}
    results = [_measure("graph.build", n, r, lambda: build(n))]
    for fmt in ("reflow", "noflo", "fbp", "yaml"):
        results.append(_measure(f"graph.dumps.{fmt}", n, r, lambda f=fmt: g.dumps(f)))
        results.append(_measure(f"graph.loads.{fmt}", n, r,
                                lambda f=fmt: Graph.loads(texts[f], f)))
    results += [
        _measure("graph.loads.detect", n, r, lambda: Graph.loads(texts["reflow"])),
        _measure("graph.copy", n, r, g.copy),
        _measure("analysis.validate", n, r, lambda: analysis.validate(g)),
        _measure("analysis.cycles", n, r, lambda: analysis.cycles(g)),
        _measure("analysis.topological_order", n, r, lambda: analysis.topological_order(g)),
        _measure("analysis.stages", n, r, lambda: analysis.stages(g)),
        _measure("analysis.orphans", n, r, lambda: analysis.orphans(g)),
        _measure("analysis.unreachable", n, r, lambda: analysis.unreachable(g)),
        _measure("analysis.reachable_from", n, r, lambda: analysis.reachable_from(g, "n0")),
        _measure("analysis.connected_components", n, r,
                 lambda: analysis.connected_components(g)),
        _measure("analysis.layout", n, r, lambda: analysis.layout(g)),
        _measure("graph.undo_layout", n, 1, g.undo),
    ]
    for line in results:
        print(json.dumps(line))
    sys.stdout.flush()
    return 0
