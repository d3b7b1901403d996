"""Test helpers for the server: the standard registry plus two test-only components,
and ``python -m tests.server.testkit`` to serve it as a subprocess.

The FBP suites (fbp-test, fbp-spec) run against the real standard components
(``core/Repeat``, ``core/Drop``, ...) from :func:`reflowpy.default_registry`;
``test/Fail`` and ``test/Double`` exist only to exercise dead letters and typed ports.
"""

from __future__ import annotations

import sys
from typing import Any

import reflowpy as rf


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
    """The standard registry plus ``test/Fail`` and ``test/Double``."""
    registry = rf.default_registry()
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
