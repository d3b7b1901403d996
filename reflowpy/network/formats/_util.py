"""Helpers shared by the graph format readers: precise errors and graph building.

Every reader turns whatever goes wrong into one :class:`~reflowpy.GraphFormatError`
that names the format, the place (``line 3, column 7`` or a field path such as
``connections[2].tgt.process``) and what was expected.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import itertools
import json
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

import msgspec

from reflowpy.errors import GraphError, GraphFormatError
from reflowpy.network.formats._limits import MAX_DEPTH, check_text, check_value, line_col
from reflowpy.network.graph import Edge, Endpoint, Graph

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


_LONE_SURROGATE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_LONG_INT = re.compile(r"-?[0-9]{20,}(?![0-9.eE])")


@contextlib.contextmanager
def bulk() -> Iterator[None]:
    """Pause the cyclic garbage collector while a reader builds a graph: millions of
    new containers, none of them garbage, would otherwise start full collections
    that walk all of them again and again (almost half of a large load's time).
    Collection resumes, as it was, when the block ends, whatever happens in it."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def json_loads(text: str | bytes, fmt: str) -> Any:
    """Parse JSON with msgspec (fast, no recursion blow-ups, no unbounded integers, no
    lone surrogates), reporting what is wrong with line and column."""
    if isinstance(text, str):
        check_text(text, fmt)
    try:
        return msgspec.json.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise _json_error(text, fmt, exc) from None


def _json_error(text: str | bytes, fmt: str, exc: BaseException) -> GraphFormatError:
    """The clearest error for a text msgspec refused: Python's message for bad syntax
    (it names line and column), else the limit the text broke, and where."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            return GraphFormatError(f"not UTF-8 text: {err.reason}", format=fmt,
                                    where=f"byte {err.start}")
    if isinstance(exc, RecursionError):
        return GraphFormatError(f"nested more than {MAX_DEPTH} levels deep", format=fmt)
    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        return GraphFormatError(f"{err.msg} (the text is not valid JSON)", format=fmt,
                                where=f"line {err.lineno}, column {err.colno}")
    except RecursionError:
        return GraphFormatError(f"nested more than {MAX_DEPTH} levels deep", format=fmt)
    except ValueError:
        pass  # an integer past Python's digit limit: found below
    m = _LONE_SURROGATE.search(text)
    if m:
        return GraphFormatError(
            f"{m.group()} is a lone UTF-16 surrogate, which is not Unicode text",
            format=fmt, where=line_col(text, m.start()))
    m = _LONG_INT.search(text)
    if m:
        return GraphFormatError(
            f"an integer of {len(m.group().lstrip('-'))} digits is out of range (graphs"
            " hold 64-bit integers); write it as a string", format=fmt,
            where=line_col(text, m.start()))
    message = str(exc)
    where = ""
    at = re.search(r"\(byte (\d+)\)", message)
    if at:
        pos = len(text.encode("utf-8")[:int(at.group(1))].decode("utf-8", "ignore"))
        where = line_col(text, pos)
        message = message[:at.start()].strip()
    return GraphFormatError(f"{message} (the text is not valid JSON)", format=fmt,
                            where=where)


def check_duplicate_keys(text: str | bytes, data: Any, fmt: str) -> None:
    """Refuse a JSON document with a key written twice in one object, anywhere (two
    processes with one id, two exported ports with one name, two ``tgt`` in one
    connection, a metadata key), naming the object and the lines of both.

    JSON parsers keep the last of two equal keys; a graph file doing so almost
    certainly lost a node or a setting. The check costs one count in the common case:
    the keys the parsed document holds against the ``"...":`` the text holds (at least
    as many, more when a string value contains ``":``); only when the text holds more
    is it scanned token by token (:func:`_duplicate_key`) to find the duplicate."""
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    keys = raw.count(b'":') + len(_KEY_END_SPACED.findall(raw))
    if _QUOTE_ESCAPE.search(raw) is None:
        # Re-encoded, the document has the same '":' inside strings as the text (a
        # quote in a string is '\"' in both) plus one per key it holds: counted in C
        # (msgspec writes no space before a colon).
        if keys <= msgspec.json.encode(data).count(b'":'):
            return
    elif keys <= _count_keys(data):  # '\u0022' quotes: count the keys one by one
        return
    found = _duplicate_key(raw)
    if found is None:
        return
    path, key, first, second = found
    lines = f"{line_col(raw, first)} and {line_col(raw, second)}"
    table = path.split(".")[-1] if path else ""
    if path in ("processes", "inports", "outports"):
        what = f"{'process' if table == 'processes' else table[:-1]} {key!r} is"
    else:
        what = f"key {key!r} {'in ' + path + ' ' if path else 'at the top level '}is"
    raise GraphFormatError(
        f"{what} defined twice ({lines}); JSON keeps only the last, so the first would"
        " be lost silently: rename or remove one",
        format=fmt, where=f"{path}.{key}".lstrip("."))


_KEY_END_SPACED = re.compile(rb'"[ \t\r\n]+:')
_QUOTE_ESCAPE = re.compile(rb"\\u0022", re.I)
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\],:]')


def _count_keys(data: Any) -> int:
    """How many keys the objects of a parsed JSON document hold, all levels."""
    count, stack = 0, [data]
    pop, push = stack.pop, stack.extend
    while stack:
        value = pop()
        t = type(value)
        if t is dict:
            count += len(value)
            push(value.values())
        elif t is list:
            push(value)
    return count


def _duplicate_key(raw: bytes) -> tuple[str, str, int, int] | None:
    """The first key written twice in one object of the (valid) JSON text ``raw``:
    (path of the object, key, offset of the first, offset of the second)."""
    # One frame per open container: [keys seen -> offset, current key] for an object,
    # [None, index] for an array.
    stack: list[list[Any]] = []
    last: re.Match[bytes] | None = None
    for m in _TOKEN.finditer(raw):
        c = raw[m.start()]
        if c == 0x22:  # a string: a key if a ':' follows
            last = m
            continue
        if c == 0x3A and last is not None and stack and stack[-1][0] is not None:
            key = json.loads(last.group())
            frame = stack[-1]
            if key in frame[0]:
                path = "".join(f"[{f[1]}]" if f[0] is None else f".{f[1]}"
                               for f in stack[:-1]).lstrip(".")
                return path, key, frame[0][key], last.start()
            frame[0][key] = last.start()
            frame[1] = key
        elif c == 0x7B:
            stack.append([{}, ""])
        elif c == 0x5B:
            stack.append([None, 0])
        elif c in (0x7D, 0x5D):
            if stack:
                stack.pop()
        elif c == 0x2C and stack and stack[-1][0] is None:
            stack[-1][1] += 1
        last = None
    return None


def json_dumps(data: Any, fmt: str) -> str:
    """Serialize to indented JSON; unserializable IIP data becomes a GraphFormatError."""
    try:
        return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise GraphFormatError(
            f"cannot be written as JSON: {exc} (IIP data and metadata must be JSON values)",
            format=fmt,
        ) from None
    except RecursionError:
        raise GraphFormatError("cannot be written as JSON: data nested too deeply",
                               format=fmt) from None


class EdgeBuffer:
    """A JSON reader's edges, made as :meth:`Graph.add_edge` makes them and stored in
    bulk by :meth:`flush` (``Graph._extend``): per edge, two node look-ups and two
    small objects instead of add_edge's checks and bookkeeping. An edge add_edge would
    refuse (a missing node, an empty port, a bad index or capacity) goes to add_edge
    at once, which raises its own error, so errors come in file order as before."""

    __slots__ = ("edges", "graph", "nodes", "ports")

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes = graph.nodes
        self.edges: list[Edge] = []
        self.ports: dict[str, str] = {}  # port name as written -> as stored

    def add(self, src_node: str, src_port: str, tgt_node: str, tgt_port: str,
            src_index: int | None, tgt_index: int | None, meta: dict[str, Any],
            cap: int | None) -> None:
        nodes, ports = self.nodes, self.ports
        src, tgt = nodes.get(src_node), nodes.get(tgt_node)
        if (src is None or tgt is None or not src_port or not tgt_port
                or (cap is None and "capacity" in meta)
                or (src_index is not None and (type(src_index) is not int or src_index < 0))
                or (tgt_index is not None and (type(tgt_index) is not int or tgt_index < 0))):
            self.flush()  # keeps the order, should add_edge take the edge after all
            self.graph.add_edge(src_node, src_port, tgt_node, tgt_port, src_index=src_index,
                                tgt_index=tgt_index, metadata=meta, capacity=cap)
            return
        sport = ports.get(src_port)
        if sport is None:
            sport = ports[src_port] = self.graph.port_name(src_port)
        tport = ports.get(tgt_port)
        if tport is None:
            tport = ports[tgt_port] = self.graph.port_name(tgt_port)
        self.edges.append(Edge(Endpoint(src.id, sport, src_index),
                               Endpoint(tgt.id, tport, tgt_index), meta, cap))

    def flush(self) -> None:
        """Store the edges (a repeated one once, the first, as add_edge keeps it)."""
        self.graph._extend(edges=self.edges, checked=True)
        self.edges = []


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


_KNOWN_TOP = frozenset({"caseSensitive", "properties", "processes", "connections", "inports",
                        "outports", "groups"})


def read_document(data: Any, doc_type: type[D], fmt: str) -> tuple[D, Graph]:
    """Check and convert a parsed JSON graph document (Reflow or NoFlo: both keep the
    graph name as ``properties.name``) and make the empty graph it describes. Top-level
    fields neither format defines are kept in :attr:`Graph.extra`.

    The whole document is converted in one msgspec call; only when that fails are the
    tables converted entry by entry, to name the entry (msgspec says ``[...]``)."""
    if not isinstance(data, dict):
        raise GraphFormatError(
            f"expected a JSON object with processes/connections, got {type(data).__name__}",
            format=fmt, where="top level",
        )
    try:
        doc = msgspec.convert(data, doc_type)
    except msgspec.ValidationError:
        check_misspelt_fields(data, doc_type, fmt)  # ("missing `component`" has a cause)
        _locate(data, doc_type, fmt)
        doc = convert(data, doc_type, fmt)  # raises with msgspec's own path
    check_misspelt_fields(data, doc_type, fmt)
    props = dict(check_value(doc.properties, fmt, "properties"))
    name = props.pop("name", "") if isinstance(props.get("name"), str) else ""
    graph = Graph(name, case_sensitive=doc.case_sensitive, properties=props)
    for key, value in data.items():
        if key not in _KNOWN_TOP:
            graph.extra[key] = check_value(value, fmt, key)
    return doc, graph


def build_graph(data: Any, doc_type: type[D], fmt: str, consume: bool,
                read_body: Callable[[D, Graph, str, list[str]], None]) -> Graph:
    """The JSON readers' one build path: convert ``data`` (:func:`read_document`), empty
    it if ``consume``, then let ``read_body`` fill the graph without recording undo
    history. ``read_body`` keeps ``at[0]`` on the entry it reads, so a refused graph
    operation becomes a :class:`GraphFormatError` naming that entry."""
    doc, graph = read_document(data, doc_type, fmt)
    if consume:
        data.clear()
    graph._recording = False
    at = ["processes"]
    try:
        read_body(doc, graph, fmt, at)
    except (GraphError, ValueError) as exc:
        raise building_error(exc, fmt, at[0]) from None
    graph._recording = True
    return graph


def check_misspelt_fields(data: dict[str, Any], doc_type: type[Any], fmt: str) -> None:
    """Refuse a field of a table entry (a process, a connection, a connection's end, an
    exported port, a group) that is not one of the entry's fields but close to one
    (``compnent``, ``metdata``, ``prot``, ``Component``): it would be ignored and the
    graph would run without it. Other unknown fields are foreign additions, ignored.

    The fields in use are gathered by C-level set unions over whole tables (a document
    with a million entries costs a few passes, no per-entry Python); entries are looked
    at one by one only to name the first that has a misspelt field."""
    for field in msgspec.structs.fields(doc_type):
        entry_type = _entry_struct(field.type)
        table = data.get(field.encode_name)
        if entry_type is None or not isinstance(table, (dict, list)):
            continue
        entries = _dicts(table.values() if isinstance(table, dict) else table)
        place = field.encode_name + (".{}" if isinstance(table, dict) else "[{}]")
        _check_entries(table, entries, (), entry_type, place, fmt)
        for sub in msgspec.structs.fields(entry_type):
            end_type = _entry_struct(sub.type, nested=True)
            if end_type is not None:
                ends = _dicts(map(dict.get, entries, itertools.repeat(sub.encode_name)))
                _check_entries(table, ends, (sub.encode_name,), end_type,
                               f"{place}.{sub.encode_name}", fmt)


def _dicts(values: Iterable[Any]) -> list[dict[str, Any]]:
    """The dicts among ``values`` (a C-level pass when they are all dicts or None)."""
    found = list(filter(None, values))
    if set(map(type, found)) <= {dict}:
        return found
    return [value for value in found if type(value) is dict]


#: Field names of either JSON dialect: one of them in the other dialect's document is
#: that dialect's to report (a NoFlo ``port`` read as Reflow is no misspelt ``portId``).
_DIALECT_FIELDS = frozenset({"process", "port", "index", "src", "tgt", "from", "to", "data",
                             "metadata", "component", "id", "name", "nodes", "nodeId",
                             "portId", "portName", "expose", "portType"})


def _check_entries(table: dict[Any, Any] | list[Any], entries: list[dict[str, Any]],
                   path: tuple[str, ...], entry_type: type[Any], place: str, fmt: str) -> None:
    """:func:`check_misspelt_fields` for one kind of entry (``path`` leads from a table
    entry to it)."""
    known = {f.encode_name for f in msgspec.structs.fields(entry_type)}
    unknown = set().union(*entries).difference(known)
    folded = {name.lower(): name for name in known}
    misspelt = {key: close[0] for key in unknown if isinstance(key, str)
                and key not in _DIALECT_FIELDS
                for close in [[folded[key.lower()]] if key.lower() in folded
                              else difflib.get_close_matches(key, known, n=1, cutoff=0.75)]
                if close}
    if not misspelt:
        return
    for label, entry in table.items() if isinstance(table, dict) else enumerate(table):
        for step in path:
            entry = entry.get(step) if isinstance(entry, dict) else None
        for key in entry if isinstance(entry, dict) else ():
            if key in misspelt:
                raise GraphFormatError(
                    f"unknown field {key!r}: did you mean {misspelt[key]!r}? (as written it"
                    " would be ignored)", format=fmt, where=place.format(label))


def _entry_struct(hint: Any, nested: bool = False) -> type[Any] | None:
    """The Struct type of a table's entries (``dict[str, S]``, ``list[S]``), or with
    ``nested`` of one field (``S``, ``S | None``)."""
    args = typing.get_args(hint)
    if nested:
        candidates = [hint, *args]
    else:
        candidates = [args[-1]] if args and typing.get_origin(hint) in (dict, list) else []
    for c in candidates:
        if isinstance(c, type) and issubclass(c, msgspec.Struct):
            return c
    return None


def _locate(data: dict[str, Any], doc_type: type[Any], fmt: str) -> None:
    """Convert each entry of the document's keyed tables alone, so the error names it."""
    for field in msgspec.structs.fields(doc_type):
        table = data.get(field.encode_name)
        args = typing.get_args(field.type)
        if isinstance(table, dict) and len(args) == 2:
            for key, item in table.items():
                convert(item, args[1], fmt, f"{field.encode_name}.{key}")


def building_error(exc: Exception, fmt: str, where: str) -> GraphFormatError:
    """A refused graph operation while reading, as a GraphFormatError at ``where``."""
    if isinstance(exc, GraphFormatError):
        return exc
    return GraphFormatError(str(exc), format=fmt, where=where)


def remember_case(graph: Graph, *ports: str) -> None:
    """Note the spelling of port names a case-insensitive graph folds (``Output``)."""
    if graph.case_sensitive:
        return
    for port in ports:
        if port and not port.islower():
            folded = port.lower()
            if folded != port:
                graph.port_case.setdefault(folded, port)


def document_properties(graph: Graph) -> dict[str, Any]:
    """The graph's properties for a JSON document, with its name as ``name``."""
    props = dict(graph.properties)
    if graph.name:
        props["name"] = graph.name
    return props
