"""Graph file formats: Reflow JSON, NoFlo JSON, the ``.fbp`` DSL and YAML.

One entry point per direction, with the format detected on read:

* :func:`loads` / :func:`load` — text or file -> :class:`~reflowpy.Graph`;
* :func:`dumps` / :func:`save` — graph -> text or file;
* :func:`from_dict` / :func:`to_dict` — the JSON documents as Python data.

Detection: text starting with ``{`` is JSON, Reflow's dialect if it has
``from``/``to`` connections, ``nodeId`` ports or ``id``-carrying processes, NoFlo's
otherwise; a YAML mapping with graph keys is YAML; anything else is the ``.fbp``
DSL. Whatever is wrong with a text is reported as one
:class:`~reflowpy.GraphFormatError` naming the format tried, the place and what was
expected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reflowpy.errors import GraphFormatError
from reflowpy.network.formats import fbp, noflo, reflow
from reflowpy.network.formats import yaml as yamlfmt
from reflowpy.network.formats._limits import check_text, read_limited
from reflowpy.network.formats._util import bulk, check_duplicate_keys, json_dumps, json_loads
from reflowpy.network.graph import Graph

__all__ = [
    "FORMATS",
    "check_duplicate_keys",
    "detect",
    "detect_dialect",
    "dumps",
    "format_for_path",
    "from_dict",
    "load",
    "loads",
    "read",
    "save",
    "to_dict",
]

#: The formats :func:`dumps` writes and :func:`loads` reads.
FORMATS = ("reflow", "noflo", "fbp", "yaml")
_GRAPH_KEYS = {"processes", "connections", "inports", "outports", "groups", "properties",
               "caseSensitive"}


def _check_format(format: str, allowed: tuple[str, ...] = FORMATS) -> str:
    fmt = format.lower()
    if fmt == "json":
        fmt = "reflow"
    if fmt not in allowed:
        raise GraphFormatError(f"unknown format {format!r}; use one of {', '.join(allowed)}")
    return fmt


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def detect_dialect(data: Mapping[str, Any]) -> str:
    """``"reflow"`` or ``"noflo"`` for a parsed JSON/YAML graph document."""
    for conn in _items(data.get("connections")):
        if isinstance(conn, dict):
            if "from" in conn or "to" in conn:
                return "reflow"
            if "src" in conn or "tgt" in conn:
                return "noflo"
    for table in ("inports", "outports"):
        ports = data.get(table)
        if isinstance(ports, dict):
            for exp in ports.values():
                if isinstance(exp, dict):
                    return "reflow" if "nodeId" in exp else "noflo"
    procs = data.get("processes")
    if isinstance(procs, dict):
        for proc in procs.values():
            if isinstance(proc, dict):
                return "reflow" if "id" in proc else "noflo"
    for group in _items(data.get("groups")):
        if isinstance(group, dict):
            return "reflow" if "id" in group else "noflo"
    if any(key in data for key in _REFLOW_ONLY_KEYS):
        return "reflow"
    return "noflo"


_REFLOW_ONLY_KEYS = ("graph_dependencies", "external_connections", "provided_interfaces",
                     "required_interfaces")
# A YAML graph has a graph key at the start of a line (block style), or starts a document.
_YAML_HINT = re.compile(
    r"^(?:---|%YAML|[\"']?(?:processes|connections|inports|outports|groups|properties"
    r"|caseSensitive|graph_dependencies|external_connections)[\"']?[ \t]*:(?:[ \t]|$))",
    re.M)


_YAML_WORDS = ("---", "%YAML", "processes", "connections", "inports", "outports", "groups",
               "properties", "caseSensitive", "graph_dependencies", "external_connections")


# What ``str.strip`` removes (both use the Unicode whitespace test).
_LEADING_SPACE = re.compile(r"\s*")


def _looks_yaml(text: str) -> bool:
    """Whether a line of ``text`` starts as a YAML graph does (:data:`_YAML_HINT`).
    The regex tries every line; the words it needs are looked for first, each by one
    fast substring search, so a 50 MB ``.fbp`` text without them costs no regex; the
    graph keys only where a colon ends a key (a colon then a space, a tab or the line's
    end), which three searches tell first."""
    keyed = ": " in text or ":\t" in text or ":\n" in text or text.endswith(":")
    words = _YAML_WORDS if keyed else _YAML_WORDS[:2]
    return any(word in text for word in words) and _YAML_HINT.search(text) is not None


def detect(text: str | bytes) -> str:
    """Guess the format of ``text``: "reflow", "noflo", "yaml" or "fbp".

    JSON when it starts with ``{`` (Reflow's dialect or NoFlo's, from its fields),
    YAML when a line starts with a graph key (``processes:``) or ``---``, the ``.fbp``
    DSL otherwise. Only JSON is parsed to decide; a text is never parsed as YAML just
    to find out (a 50 MB ``.fbp`` file would take minutes)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = json_loads(stripped, "json")
        except GraphFormatError:
            # '{"a": 1} -> IN A(B)' is .fbp starting with a JSON IIP; otherwise the JSON
            # error is the one worth reporting.
            try:
                if fbp.parse(text)["processes"]:
                    return "fbp"
            except GraphFormatError:
                pass
            raise
        return detect_dialect(data) if isinstance(data, dict) else "noflo"
    if _looks_yaml(text):
        return "yaml"
    return "fbp"


def from_dict(data: Mapping[str, Any], format: str | None = None, *,
              source: str | None = None, consume: bool = False) -> Graph:
    """Build a graph from a parsed Reflow or NoFlo document (detected if not given);
    ``consume`` empties ``data`` once converted (for readers that parsed it)."""
    if not isinstance(data, Mapping):
        raise GraphFormatError(f"expected a mapping with processes/connections, got"
                               f" {type(data).__name__}", format=source or format or "",
                               where="top level")
    fmt = _check_format(format, ("reflow", "noflo")) if format else detect_dialect(data)
    label = source or fmt
    if source and source != fmt:
        label = f"{source} ({fmt} structure)"
    return (reflow.from_dict if fmt == "reflow" else noflo.from_dict)(data, label,
                                                                        consume=consume)


def to_dict(graph: Graph, format: str = "reflow") -> dict[str, Any]:
    """The graph as a Reflow (default) or NoFlo JSON document."""
    fmt = _check_format(format, ("reflow", "noflo"))
    return reflow.to_dict(graph) if fmt == "reflow" else noflo.to_dict(graph)


def _text(text: str | bytes, format: str | None) -> str:
    if isinstance(text, bytes | bytearray | memoryview):
        data = bytes(text)
        # A byte-order mark is no part of the graph (editors on Windows write one, and
        # PowerShell's redirection writes UTF-16 with one)
        encoding = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8"
        try:
            return data.decode(encoding).removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            raise GraphFormatError(f"not {encoding.upper()} text: {exc.reason}",
                                   format=format or "", where=f"byte {exc.start}") from None
    if not isinstance(text, str):
        raise GraphFormatError(f"expected graph text (str or bytes), got"
                               f" {type(text).__name__}", format=format or "")
    check_text(text, format or "")
    return text.removeprefix("\ufeff")


def loads(text: str | bytes, format: str | None = None) -> Graph:
    """Read a graph from text, in ``format`` or the detected one (see :func:`detect`).

    Whatever the input, the only exception is :class:`~reflowpy.GraphFormatError`
    (naming the format read, the place and what was expected), and reading takes time
    and memory in proportion to the text: see ``reflowpy.network.formats._limits``.
    The cyclic garbage collector pauses while it reads (:func:`._util.bulk`)."""
    with bulk():
        return _loads(text, format)


def _loads(text: str | bytes, format: str | None, *, decoded: bool = False) -> Graph:
    """:func:`loads`; ``decoded``: ``text`` came from :func:`_text` already."""
    if not decoded or not isinstance(text, str):
        text = _text(text, format)
    detected = format is None
    if format is None:
        # (No stripped copy of a 50 MB text: the first other character is looked up.)
        if not text or text.isspace():
            raise GraphFormatError("the text is empty; expected a graph in reflow/noflo JSON,"
                                   " YAML or .fbp")
        if _starts_json(text):
            try:
                data = json_loads(text.lstrip(), "json")
            except GraphFormatError:
                if detect(text) != "fbp":
                    raise
            else:
                return _from_json(text, data)
        format = "yaml" if _looks_yaml(text) else "fbp"
    fmt = _check_format(format)
    if fmt in ("reflow", "noflo"):
        return _from_json(text, json_loads(text, fmt), fmt)
    if fmt == "yaml":
        return yamlfmt.loads(text)
    graph = fbp.loads(text)
    if detected and not graph.nodes:
        # Valid .fbp can declare nothing (comments only); arbitrary prose parses that way
        # too, so a detected text must declare at least one node to count as a graph.
        raise GraphFormatError(
            "no node declared; the text is neither JSON, a YAML mapping with graph keys,"
            " nor .fbp statements such as 'Read(ReadFile) OUT -> IN Show(Output)'",
            format="fbp", where="line 1, column 1",
        )
    return graph


def _starts_json(text: str) -> bool:
    return text.startswith("{", _LEADING_SPACE.match(text).end())  # type: ignore[union-attr]


def _from_json(text: str, data: Any, fmt: str | None = None) -> Graph:
    """The graph of a parsed JSON document in dialect ``fmt`` (told by its fields if None)."""
    if fmt is None:
        fmt = detect_dialect(data) if isinstance(data, dict) else "noflo"
    check_duplicate_keys(text, data, fmt)
    if not isinstance(data, dict):
        return noflo.from_dict(data, fmt)  # refused with the right message
    read = reflow.from_dict if fmt == "reflow" else noflo.from_dict
    return read(data, fmt, consume=True)


def dumps(graph: Graph, format: str = "reflow") -> str:
    """The graph as text in ``format``; data no format can hold (not JSON, nested too
    deeply) raises :class:`~reflowpy.GraphFormatError`."""
    fmt = _check_format(format)
    if fmt == "fbp":
        return fbp.dumps(graph)
    if fmt == "yaml":
        return yamlfmt.dumps(graph)
    return json_dumps(to_dict(graph, fmt), fmt)


def format_for_path(path: str | Path) -> str:
    """The format a file name implies: .fbp, .yaml/.yml, otherwise reflow JSON."""
    suffix = Path(path).suffix.lower()
    if suffix == ".fbp":
        return "fbp"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    return "reflow"


def implied_format(path: str | Path) -> str | None:
    """The family a file name promises, for reading: ``"fbp"`` (.fbp), ``"yaml"``
    (.yaml/.yml), ``"json"`` (.json: Reflow or NoFlo, told by the fields), else None."""
    return _IMPLIED.get(Path(path).suffix.lower())


_IMPLIED = {".fbp": "fbp", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}


def load(path: str | Path, format: str | None = None) -> Graph:
    """Read a graph file, in ``format`` or else the one its extension names (.json is
    Reflow or NoFlo JSON as its fields tell, .fbp, .yaml/.yml), detected from the
    content for any other name. So a mistyped YAML file is reported as YAML, not as
    a ``.fbp`` text that happens to contain a colon."""
    try:
        with open(path, "rb") as file:
            text = read_limited(file, format or "")
    except OSError as exc:
        raise GraphFormatError(f"cannot read {str(path)!r}: {exc.strerror}",
                               format=format or "") from None
    except GraphFormatError as exc:
        raise GraphFormatError(exc.detail, format=exc.format, where=str(path)) from None
    try:
        # Decoded here so the file's bytes are gone before the text is parsed (50 MB
        # of them would stay beside the text and the graph to the end).
        decoded = _text(text, format)
        del text
        implied = None if format else implied_format(path)
        if implied == "json" or (implied == "yaml" and _starts_json(decoded)):
            # JSON (YAML's JSON subset reads the same): parsed as JSON, dialect by fields.
            with bulk():
                return _from_json(decoded, json_loads(decoded, "json"))
        if implied is not None and not decoded.isspace() and decoded:
            format = implied
        with bulk():
            return _loads(decoded, format, decoded=True)
    except GraphFormatError as exc:
        where = f"{path}, {exc.where}" if exc.where else str(path)
        raise GraphFormatError(exc.detail, format=exc.format, where=where) from None


def read(source: str | bytes | Path, format: str | None = None) -> Graph:
    """A graph from a file path or from the text itself, whichever ``source`` is.

    A :class:`~pathlib.Path`, or a one-line string naming an existing file, is read as
    a file; any other string or bytes is graph text (JSON, YAML or ``.fbp``). This is
    ``reflowpy.load``."""
    if isinstance(source, Path):
        return load(source, format)
    if isinstance(source, str) and "\n" not in source and len(source) < 4096:
        try:
            is_file = Path(source).is_file()
        except (OSError, ValueError):
            is_file = False
        if is_file:
            return load(source, format)
        if not source.lstrip().startswith(("{", "[", "'", '"')) and "->" not in source \
                and "(" not in source and ":" not in source:
            raise GraphFormatError(f"cannot read {source!r}: no such file (nor is it graph text)",
                                   format=format or "")
    return loads(source, format)


def save(graph: Graph, path: str | Path, format: str | None = None) -> None:
    """Write a graph file; the format follows the extension unless given."""
    text = dumps(graph, format or format_for_path(path))
    Path(path).write_text(text, encoding="utf-8")
