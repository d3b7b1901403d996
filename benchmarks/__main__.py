"""Dispatcher: ``python -m benchmarks NAME [args]`` imports ``benchmarks.NAME`` and
calls its ``main(argv)``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path


def _names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                  if not m.name.startswith("_"))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: python -m benchmarks NAME [args]\nbenchmarks: {', '.join(_names())}")
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in _names():
        print(f"unknown benchmark {name!r}; known: {', '.join(_names())}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"benchmarks.{name}")
    result = module.main(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
