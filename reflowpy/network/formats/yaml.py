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


_OPTIONAL_END_FIELDS = ("index", "data", "metadata")


def _compact(doc: dict[str, Any]) -> dict[str, Any]:
    """Drop the port fields Reflow treats as optional when they are null (``index``,
    ``data``, ``metadata``): a third fewer scalars to read and write; the fields serde
    requires (``nodeId``, ``portId``, ``portName``, ``expose``, ``portType``) stay."""

    def end(e: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in e.items() if not (v is None and k in _OPTIONAL_END_FIELDS)}

    for conn in doc["connections"]:
        conn["from"] = end(conn["from"])
        conn["to"] = end(conn["to"])
    for table in ("inports", "outports"):
        doc[table] = {k: end(v) for k, v in doc[table].items()}
    return doc


def dumps(graph: Graph) -> str:
    """The graph as YAML in Reflow's structure (null optional port fields left out)."""
    from reflowpy.network.formats import reflow

    try:
        return _yaml.dump(_compact(reflow.to_dict(graph)), Dumper=_Dumper, sort_keys=False,
                          allow_unicode=True)
    except _yaml.YAMLError as exc:
        raise GraphFormatError(f"cannot be written as YAML: {exc}", format="yaml") from None
