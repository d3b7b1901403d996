"""``python -m benchmarks <name> [args]``: run ``benchmarks/<name>.py``'s ``main(argv)``."""

import importlib
import sys


def _main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m benchmarks <name> [args...]")
    module = importlib.import_module(f"benchmarks.{sys.argv[1]}")
    module.main(sys.argv[2:])


if __name__ == "__main__":
    _main()
