"""Test helpers for the server: a registry with the few core components the FBP test
suites need, an in-process server on an ephemeral port, and a subprocess launcher.

The standard components (``core/Repeat``, ``core/Drop``, ...) live in
``reflowpy.components``; when that package is installed its real components are used.
Until then the tiny test-only actors below stand in, registered under the same names.
"""

from __future__ import annotations

import sys
from typing import Any

import reflowpy as rf


class _Repeat(rf.Actor):
    """Forwards every packet unchanged (test stand-in for core/Repeat)."""

    inports = [rf.Port("in", description="packet to repeat")]
    outports = [rf.Port("out", description="the same packet")]

    async def process(self, ctx: Any) -> Any:
        return {"out": ctx.inputs["in"]}


class _Drop(rf.Actor):
    """Drops every packet (test stand-in for core/Drop)."""

    inports = [rf.Port("in", description="packet to drop")]

    async def process(self, ctx: Any) -> None:
        return None


class _Fail(rf.Actor):
    """Raises on every packet: exercises dead letters."""

    inports = ["in"]
    outports = ["out"]

    async def process(self, ctx: Any) -> None:
        raise ValueError(f"cannot handle {ctx.inputs['in']!r}")


class _Double(rf.Actor):
    """Doubles numbers."""

    inports = [rf.Port("in", type="number")]
    outports = [rf.Port("out", type="number")]

    async def process(self, ctx: Any) -> Any:
        return {"out": ctx.inputs["in"] * 2}


def test_registry() -> rf.Registry:
    """The standard registry, with stand-ins for the core components it lacks, plus
    ``test/Fail`` and ``test/Double``."""
    try:
        registry = rf.default_registry()
    except ImportError:
        registry = rf.Registry()
    for name, cls in (("core/Repeat", _Repeat), ("core/Drop", _Drop)):
        if name not in registry:
            registry.register(name, cls)
    registry.register("test/Fail", _Fail, replace=True)
    registry.register("test/Double", _Double, replace=True)
    return registry


test_registry.__test__ = False  # type: ignore[attr-defined]


def main(argv: list[str]) -> int:
    """``python -m tests.server.testkit [serve options]``: ``reflowpy serve`` with the
    test registry (for fbp-protocol's and fbp-spec's suites)."""
    import reflowpy.server.serve as serve_module

    serve_module.server_registry = test_registry  # type: ignore[assignment]
    from reflowpy.cli import main as cli_main

    return cli_main(["serve", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
