"""Shared helpers of the bridge tests: registries, pipelines, ledgers."""

from __future__ import annotations

from typing import Any

import reflowpy as rf
from tests.bridge.components import register


def registry() -> rf.Registry:
    reg = rf.default_registry()
    register(reg)
    return reg


def pipeline(where: dict[str, str], *, name: str = "pipe", deterministic: bool = True,
             capacity: int | None = None) -> rf.Graph:
    """in -> a (Repeat) -> b (Tag) -> c (Tag) -> d (Repeat) -> out, placed by ``where``."""
    g = rf.Graph(name)
    g.add_node("a", "core/Repeat")
    g.add_node("b", "test/Tag", {"deterministic": deterministic})
    g.add_node("c", "test/Tag", {"deterministic": deterministic})
    g.add_node("d", "core/Repeat")
    for node, loc in where.items():
        kind, _, value = loc.partition(":")
        g.nodes[node].metadata[kind] = value
    g.add_edge("a", "out", "b", "in", capacity=capacity)
    g.add_edge("b", "out", "c", "in", capacity=capacity)
    g.add_edge("c", "out", "d", "in", capacity=capacity)
    g.add_inport("in", "a", "in")
    g.add_outport("out", "d", "out")
    return g


def check_exact(values: list[Any], n: int, sources: int = 1) -> None:
    """Every (source, seq) exactly once, in order per source, nothing else."""
    per: dict[Any, list[int]] = {}
    for v in values:
        per.setdefault(v[0], []).append(v[1])
    assert sorted(per) == list(range(sources)), sorted(per)[:10]
    for src, seqs in per.items():
        assert len(seqs) == n, (src, len(seqs), n)
        assert seqs == list(range(n)), (src, [s for i, s in enumerate(seqs) if s != i][:5])
