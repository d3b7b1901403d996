"""How much of an adversarial suite runs: a bounded, seeded share in CI, all of it when long.

``REFLOWPY_LONG=1`` selects the long runs (see ``tests/conftest.py``).
"""

from __future__ import annotations

import os

LONG = os.environ.get("REFLOWPY_LONG") == "1"


def long_scale(n: int) -> int:
    """Iterations for a fault loop or ``max_examples``: ``n`` in CI, ``10 * n`` when long."""
    return n * 10 if LONG else n
