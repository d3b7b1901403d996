"""Test helpers for the server: the standard registry plus three test-only components,
and ``python -m tests.server.testkit`` to serve it as a subprocess.

The FBP suites (fbp-test, fbp-spec) run against the real standard components
(``core/Repeat``, ``core/Drop``, ...) from :func:`reflowpy.default_registry`;
``test/Fail`` and ``test/Double`` exist only to exercise dead letters and typed ports,
``test/TeardownWrites`` to show when an execution counts as finished.
"""

from __future__ import annotations

import sys
from typing import Any

import trio

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


class _TeardownWrites(rf.Actor):
    """Takes packets; its teardown writes ``done`` to the file named by its ``path``
    config (a FIFO blocks that write until the test reads it)."""

    inports = ["in"]
    outports: list[str] = []

    async def process(self, ctx: Any) -> None:
        return None

    async def teardown(self, ctx: Any) -> None:
        path = str(ctx.config["path"])

        def write() -> None:
            with open(path, "w") as f:
                f.write("done")

        await trio.to_thread.run_sync(write)


def test_registry() -> rf.Registry:
    """The standard registry plus ``test/Fail``, ``test/Double`` and
    ``test/TeardownWrites``."""
    registry = rf.default_registry()
    registry.register("test/Fail", _Fail, replace=True)
    registry.register("test/Double", _Double, replace=True)
    registry.register("test/TeardownWrites", _TeardownWrites, replace=True)
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
