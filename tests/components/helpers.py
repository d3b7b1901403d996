"""Run one standard component (or a small graph) inside a real Network."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import reflowpy as rf

REGISTRY = rf.default_registry()


def single(component: str, config: Mapping[str, Any] | None = None, *,
           inports: Iterable[str] = ("in",), outports: Iterable[str] = ("out",)) -> rf.Graph:
    """A graph with one node ``n`` whose ports are exported under their own names."""
    g = rf.Graph("test")
    g.add_node("n", component, dict(config or {}))
    for p in inports:
        g.add_inport(p, "n", p)
    for p in outports:
        g.add_outport(p, "n", p)
    return g


class Result:
    def __init__(self, outputs: dict[str, list[Any]], net: rf.Network) -> None:
        self.outputs = outputs
        self.net = net

    def __getitem__(self, port: str) -> list[Any]:
        return self.outputs[port]

    @property
    def dead(self) -> list[rf.DeadLetter]:
        return self.net.dead_letters()


async def run_node(
    component: str,
    config: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Sequence[Any]] | Sequence[tuple[str, Any]] = (),
    outports: Iterable[str] | None = None,
    inports: Iterable[str] | None = None,
) -> Result:
    """Send ``inputs`` (port -> values, or ordered (port, value) pairs), wait until the
    network is idle, stop it (drain), and return every exported output."""
    pairs = ([(p, v) for p, vs in inputs.items() for v in vs] if isinstance(inputs, Mapping)
             else list(inputs))
    if inports is None:
        inports = list(dict.fromkeys(p for p, _ in pairs))
    if outports is None:  # every declared out-port
        outports = [p.name for p in REGISTRY.describe(component).outports]
    outports = list(outports)
    g = single(component, config, inports=inports, outports=outports)
    net = rf.Network(g, REGISTRY, output_capacity=1_000_000)
    collected: dict[str, list[Any]] = {p: [] for p in outports}
    async with net:
        for port, value in pairs:
            await net.send(port, value)
        await net.idle()
        for p in outports:
            collected[p] += net.outputs(p).drain()
    for p in outports:  # what components flushed at stop
        collected[p] += net.outputs(p).drain()
    return Result(collected, net)


class config_error:
    """``with config_error("node 'n'.*'key'"):`` — the network refused to start with a
    :class:`~reflowpy.ConfigError` whose message matches (bare, or inside the
    exception group trio's nursery may wrap it in)."""

    def __init__(self, match: str) -> None:
        self.match = match

    def __enter__(self) -> config_error:
        return self

    def __exit__(self, et: Any, exc: BaseException | None, tb: Any) -> bool:
        import re

        if exc is None:
            raise AssertionError(f"no ConfigError matching {self.match!r} was raised")
        found = _find(exc)
        if found is None:
            return False
        if not re.search(self.match, str(found)):
            raise AssertionError(f"ConfigError {str(found)!r} does not match {self.match!r}")
        return True


def _find(exc: BaseException) -> rf.ConfigError | None:
    if isinstance(exc, rf.ConfigError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = _find(sub)
            if found is not None:
                return found
    return None
