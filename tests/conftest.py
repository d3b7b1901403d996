"""Shared test configuration. pytest-trio runs every async test (trio_mode = true).

Adversarial suites (hypothesis, fault injection, fuzzing) run a bounded, seeded share by
default so CI stays well under its budget; ``REFLOWPY_LONG=1`` runs the full counts and the
tests marked ``long`` (soaks, thousands of fault runs).

- hypothesis profile ``ci`` (default): derandomized (the seed is fixed, so a CI failure
  reproduces), no per-example deadline (a loaded 2-core machine is slow, not wrong).
- hypothesis profile ``long``: ten times the examples of ``ci``, still derandomized.
- ``tests.scale.long_scale(n)``: a count for a fault loop or an explicit ``max_examples``:
  ``n`` in CI, ``10 * n`` with ``REFLOWPY_LONG=1``.
- pytest-timeout: a test that hangs fails alone after ``timeout`` seconds (pyproject),
  and the run goes on; with ``REFLOWPY_LONG=1`` every test gets an hour.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from tests.scale import LONG

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "long",
    parent=settings.get_profile("ci"),
    max_examples=1000,
)
settings.load_profile("long" if LONG else "ci")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if LONG:
        for item in items:
            item.add_marker(pytest.mark.timeout(3600))
        return
    skip = pytest.mark.skip(reason="long run: set REFLOWPY_LONG=1")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)
