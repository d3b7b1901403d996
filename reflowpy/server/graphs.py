"""Graph documents in and out of the server: parse an upload, write the stored form.

Uploads come in every format the graph layer reads (Reflow JSON, NoFlo/fbp-graph
JSON, the ``.fbp`` DSL, YAML), parsed by the graph layer itself
(:meth:`Graph.loads <reflowpy.Graph.loads>` / :meth:`Graph.from_dict
<reflowpy.Graph.from_dict>`) so the server and ``reflowpy convert`` agree on every
file. "json" means "JSON, Reflow or NoFlo dialect detected from the content"; no
format at all means "detect everything". The server stores and returns graphs as
NoFlo/fbp-graph JSON, the form FBP clients and fbp-spec fixtures use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from reflowpy.errors import GraphFormatError
from reflowpy.network.formats import check_duplicate_keys
from reflowpy.network.graph import Graph

__all__ = ["FORMATS", "dump_graph", "graph_text", "load_graph", "media_format"]

#: What a client may name as a graph format: the graph layer's formats plus "json"
#: (either JSON dialect, detected).
FORMATS = ("json", "reflow", "noflo", "fbp", "yaml")

#: Content types that name a graph format.
_MEDIA = {
    "application/json": "json",
    "text/x-fbp": "fbp",
    "text/vnd.fbp": "fbp",
    "application/x-fbp": "fbp",
    "application/yaml": "yaml",
    "application/x-yaml": "yaml",
    "text/yaml": "yaml",
    "text/x-yaml": "yaml",
}


def media_format(content_type: str) -> str | None:
    """The graph format a ``Content-Type`` names, if any (``None``: detect it)."""
    return _MEDIA.get(content_type.split(";")[0].strip().lower())


def _check(format: str | None) -> str | None:
    if format is None or not format.strip():
        return None
    fmt = format.strip().lower()
    if fmt not in FORMATS:
        raise GraphFormatError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}"
                               " or leave it out to detect it")
    return fmt


def load_graph(source: Mapping[str, Any] | str | bytes, format: str | None = None,
               *, name: str | None = None) -> Graph:
    """A :class:`Graph` from a parsed JSON document (mapping) or a text in ``format``.

    ``format`` is ``None`` (detect), ``"json"`` (JSON; Reflow or NoFlo detected),
    or one of the graph layer's formats. Raises :class:`~reflowpy.GraphFormatError`
    naming the format and what is wrong.
    """
    fmt = _check(format)
    if isinstance(source, Mapping):
        if fmt in ("fbp", "yaml"):
            raise GraphFormatError(f"a {fmt} graph is text; send it as a string, not a JSON"
                                   " object", format=fmt)
        graph = Graph.from_dict(source, None if fmt == "json" else fmt)
    elif fmt == "json":
        try:
            doc = msgspec.json.decode(source)
        except msgspec.DecodeError as exc:
            raise GraphFormatError(f"{exc} (the text is not valid JSON)",
                                   format="json") from None
        check_duplicate_keys(source, doc, "json")  # as for a file
        if not isinstance(doc, dict):
            raise GraphFormatError("expected a JSON object with processes/connections,"
                                   f" got {type(doc).__name__}", format="json",
                                   where="top level")
        graph = Graph.from_dict(doc)
    else:
        graph = Graph.loads(source, fmt)
    if name:
        graph.name = name
    return graph


def dump_graph(graph: Graph) -> dict[str, Any]:
    """The NoFlo/fbp-graph JSON document of ``graph`` (plain JSON values)."""
    return msgspec.to_builtins(graph.to_dict("noflo"))  # type: ignore[no-any-return]


def graph_text(graph: Graph) -> str:
    """``dump_graph`` as compact JSON text (the stored form)."""
    return msgspec.json.encode(dump_graph(graph)).decode()
