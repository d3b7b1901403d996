"""`python -m benchmarks NAME [ARGS]`: run benchmarks/NAME.py's main(ARGS)."""

import importlib
import sys


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m benchmarks NAME [ARGS...]  (e.g. kernel)")
    module = importlib.import_module(f"benchmarks.{sys.argv[1]}")
    module.main(sys.argv[2:])


main()
