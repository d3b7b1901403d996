"""Helpers shared by the graph format readers: precise errors and graph building.

Every reader turns whatever goes wrong into one :class:`~reflowpy.GraphFormatError`
that names the format, the place (``line 3, column 7`` or a field path such as
``connections[2].tgt.process``) and what was expected.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, TypeVar

import msgspec

from reflowpy.errors import GraphError, GraphFormatError
from reflowpy.network.graph import Graph

T = TypeVar("T")


class _JSONDoc(Protocol):
    """The top-level fields the Reflow and NoFlo JSON documents share."""

    case_sensitive: bool
    properties: dict[str, Any]


D = TypeVar("D", bound=_JSONDoc)

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def convert(data: Any, type: type[T], fmt: str, prefix: str = "") -> T:
    """``msgspec.convert`` with its validation error turned into a GraphFormatError
    whose ``where`` is the field path (``prefix`` + msgspec's path)."""
    try:
        return msgspec.convert(data, type)
    except msgspec.ValidationError as exc:
        m = _AT.match(str(exc))
        assert m is not None
        path = m.group("path") or ""
        if prefix:
            path = prefix + path
        raise GraphFormatError(m.group("msg"), format=fmt,
                               where=path.lstrip(".") or "top level") from None


def json_loads(text: str | bytes, fmt: str) -> Any:
    """Parse JSON, reporting syntax errors with line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise GraphFormatError(
            f"{exc.msg} (the text is not valid JSON)", format=fmt,
            where=f"line {exc.lineno}, column {exc.colno}",
        ) from None
    except UnicodeDecodeError as exc:
        raise GraphFormatError(f"not UTF-8 text: {exc.reason}", format=fmt,
                               where=f"byte {exc.start}") from None


def json_dumps(data: Any, fmt: str) -> str:
    """Serialize to indented JSON; unserializable IIP data becomes a GraphFormatError."""
    try:
        return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise GraphFormatError(
            f"cannot be written as JSON: {exc} (IIP data and metadata must be JSON values)",
            format=fmt,
        ) from None


@contextlib.contextmanager
def building(fmt: str, where: str) -> Iterator[None]:
    """Report a refused graph operation while reading as a GraphFormatError at ``where``."""
    try:
        yield
    except GraphFormatError:
        raise
    except GraphError as exc:
        raise GraphFormatError(str(exc), format=fmt, where=where) from None
    except ValueError as exc:
        raise GraphFormatError(str(exc), format=fmt, where=where) from None


def split_capacity(metadata: Mapping[str, Any] | None) -> tuple[dict[str, Any], int | None]:
    """Edge metadata from a file -> (metadata without ``capacity``, capacity)."""
    meta = dict(metadata or {})
    cap = meta.get("capacity")
    if isinstance(cap, int) and not isinstance(cap, bool) and cap >= 1:
        del meta["capacity"]
        return meta, cap
    return meta, None


def join_capacity(metadata: Mapping[str, Any], capacity: int | None) -> dict[str, Any]:
    """Edge metadata for a file: ``capacity`` is stored as ``metadata.capacity``."""
    meta = dict(metadata)
    if capacity is not None:
        meta["capacity"] = capacity
    return meta


def read_document(data: Any, doc_type: type[D], fmt: str) -> tuple[D, Graph]:
    """Check and convert a parsed JSON graph document (Reflow or NoFlo: both keep the
    graph name as ``properties.name``) and make the empty graph it describes."""
    if not isinstance(data, dict):
        raise GraphFormatError(
            f"expected a JSON object with processes/connections, got {type(data).__name__}",
            format=fmt, where="top level",
        )
    doc = convert(data, doc_type, fmt)
    props = dict(doc.properties)
    name = props.pop("name", "") if isinstance(props.get("name"), str) else ""
    return doc, Graph(name, case_sensitive=doc.case_sensitive, properties=props)


def document_properties(graph: Graph) -> dict[str, Any]:
    """The graph's properties for a JSON document, with its name as ``name``."""
    props = dict(graph.properties)
    if graph.name:
        props["name"] = graph.name
    return props
