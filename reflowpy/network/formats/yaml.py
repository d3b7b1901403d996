"""YAML graphs: the Reflow or NoFlo JSON structure written as YAML.

Reading accepts either structure (detected like JSON); writing uses Reflow's. YAML
errors are reported with their line and column. Texts in the plain block subset graph
files use (no anchors, tags, flow content or multi-line scalars) are read by
:mod:`~reflowpy.network.formats._yaml_block` in one pass, the same data this loader
gives, about fifty times faster; anything else by the loader below.

The reader is a safe loader restricted to what JSON can hold, because a graph read
from YAML must also be writable as JSON and carried as messages:

* only the JSON types: ``null``, booleans, integers (64-bit), floats, strings, lists
  and string-keyed mappings; ``2024-01-01`` stays a string (no timestamps), tags
  outside the YAML core schema are refused, ``!!binary``/``!!set`` values too;
* a key written twice in one mapping is refused, naming both lines (PyYAML would
  keep the last silently); keys brought in by a ``<<:`` merge may be overridden;
* aliases are allowed, but the document may expand to at most ten times its text
  (``reflowpy.network.formats._limits``): a "billion laughs" file is refused while
  it is counted, never built, and an alias that contains itself is refused too.
"""

from __future__ import annotations

from typing import Any

import yaml as _yaml

from reflowpy.errors import GraphFormatError
from reflowpy.network.formats import _yaml_block
from reflowpy.network.formats._limits import Budget, check_value
from reflowpy.network.graph import Graph

# libyaml's C parser/dumper when PyYAML was built with it (about 10x faster).
_Base: Any = getattr(_yaml, "CSafeLoader", _yaml.SafeLoader)
_Dumper = getattr(_yaml, "CSafeDumper", _yaml.SafeDumper)

__all__ = ["dumps", "load_data", "loads"]

_INT_DIGITS = 22  # beyond this an integer cannot fit in 64 bits (with sign, 0x, _)


class _Loader(_Base):  # type: ignore[misc]
    """The safe loader with JSON's types only, duplicate keys refused, bounded ints."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        own = {id(key) for key, _ in node.value}
        if isinstance(node, _yaml.MappingNode):
            self.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        marks: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise _yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "a mapping key must be a string, not a list or mapping",
                    key_node.start_mark) from None
            if id(key_node) in own:
                if key in marks:
                    first = marks[key]
                    raise _yaml.constructor.ConstructorError(
                        None, None,
                        f"key {key!r} is defined twice in one mapping, at line"
                        f" {first.line + 1} and line {key_node.start_mark.line + 1};"
                        " remove one", key_node.start_mark)
                marks[key] = key_node.start_mark
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_yaml_map(self, node: Any) -> Any:
        data: dict[Any, Any] = {}
        yield data
        data.update(self.construct_mapping(node))

    def construct_yaml_int(self, node: Any) -> int:
        text = str(node.value)
        if len(text) > _INT_DIGITS:
            raise _yaml.constructor.ConstructorError(
                None, None, f"an integer of {len(text)} characters is out of range (graphs"
                " hold 64-bit integers); quote it to keep it as a string", node.start_mark)
        value: int = super().construct_yaml_int(node)
        return value


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_yaml_map)
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_str)
# Plain scalars that look like dates stay strings, as in JSON.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _Base.yaml_implicit_resolvers.items()
}

def load_data(text: str | bytes) -> Any:
    """Parse YAML text into plain JSON-like data; raises GraphFormatError with
    line/column. The result is checked against the limits of
    :mod:`reflowpy.network.formats._limits` (depth, integers, text, alias expansion)."""
    data = _yaml_block.read(text, _Loader) if isinstance(text, str) else None
    if data is not None:  # the plain block subset, read fast with _Loader's meaning;
        return data  # within the limits by construction (see _yaml_block)
    try:
        data = _yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except _yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise GraphFormatError(f"{exc.problem or exc} (the text is not valid YAML)",
                               format="yaml", where=where) from None
    except _yaml.YAMLError as exc:
        raise GraphFormatError(f"{exc} (the text is not valid YAML)", format="yaml") from None
    except RecursionError:
        raise GraphFormatError("nested too deeply (the text is not usable YAML)",
                               format="yaml") from None
    return check_value(data, "yaml", "", Budget(len(text)))


def loads(text: str | bytes) -> Graph:
    """Read a YAML graph (Reflow or NoFlo structure)."""
    from reflowpy.network.formats import from_dict

    data = load_data(text)
    if not isinstance(data, dict):
        raise GraphFormatError(
            f"expected a mapping with processes/connections, got {type(data).__name__}",
            format="yaml", where="top level",
        )
    return from_dict(data, None, source="yaml", consume=True)


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
    except RecursionError:
        raise GraphFormatError("cannot be written as YAML: data nested too deeply",
                               format="yaml") from None
