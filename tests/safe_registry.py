"""A registry of components that touch nothing outside the process, for running fuzzed
graphs through ``reflowpy run --registry tests.safe_registry:SAFE``."""

from __future__ import annotations

import reflowpy as rf

SAFE = rf.Registry()
_DEFAULT = rf.default_registry()
for _name in ("core/Repeat", "core/Merge", "core/Split", "core/Kick", "core/Drop",
              "transform/Map", "transform/Filter", "transform/JsonParse",
              "aggregate/Count", "aggregate/Collect", "util/Const", "util/Counter"):
    SAFE.register(_name, _DEFAULT.get(_name))
