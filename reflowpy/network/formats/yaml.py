"""YAML graphs: the Reflow or NoFlo JSON structure written as YAML.

Reading accepts either structure (detected like JSON); writing uses Reflow's. YAML
errors are reported with their line and column.
"""

from __future__ import annotations

from typing import Any

import yaml as _yaml

from reflowpy.errors import GraphFormatError
from reflowpy.network.graph import Graph

# libyaml's C loader/dumper when PyYAML was built with it (about 10x faster).
_Loader = getattr(_yaml, "CSafeLoader", _yaml.SafeLoader)
_Dumper = getattr(_yaml, "CSafeDumper", _yaml.SafeDumper)

__all__ = ["dumps", "load_data", "loads"]


def load_data(text: str | bytes) -> Any:
    """Parse YAML text into plain data; raises GraphFormatError with line/column."""
    try:
        return _yaml.load(text, Loader=_Loader)
    except _yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise GraphFormatError(f"{exc.problem or exc} (the text is not valid YAML)",
                               format="yaml", where=where) from None
    except _yaml.YAMLError as exc:
        raise GraphFormatError(f"{exc} (the text is not valid YAML)", format="yaml") from None


def loads(text: str | bytes) -> Graph:
    """Read a YAML graph (Reflow or NoFlo structure)."""
    from reflowpy.network.formats import from_dict

    data = load_data(text)
    if not isinstance(data, dict):
        raise GraphFormatError(
            f"expected a mapping with processes/connections, got {type(data).__name__}",
            format="yaml", where="top level",
        )
    return from_dict(data, None, source="yaml")


def dumps(graph: Graph) -> str:
    """The graph as YAML in Reflow's structure."""
    from reflowpy.network.formats import reflow

    try:
        return _yaml.dump(reflow.to_dict(graph), Dumper=_Dumper, sort_keys=False,
                          allow_unicode=True)
    except _yaml.YAMLError as exc:
        raise GraphFormatError(f"cannot be written as YAML: {exc}", format="yaml") from None
