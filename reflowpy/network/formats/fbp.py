"""The ``.fbp`` DSL: a Python reader that gives what the npm ``fbp`` parser gives, and a writer.

The reader follows the grammar of the npm package ``fbp`` (``grammar/fbp.peg``, a PEG)
rule by rule, including its ordered choices and backtracking, so :func:`parse`
returns the same NoFlo JSON document as ``require("fbp").parse(text)`` — the test
suite checks this against the real npm parser on a corpus. What it accepts::

    # @name MyGraph              annotations -> properties (@runtime -> environment.type)
    INPORT=Read.IN:FILENAME      exported ports (names folded to lower case)
    OUTPORT=Show.OUT:OUT
    'file.txt' -> IN Read(ReadFile)           string IIP ('\\'' escapes a quote)
    {"a": [1, 2]} -> CONFIG Read              JSON IIP
    Read OUT -> IN Split(SplitStr:key=val) OUT[0] -> IN Show(Output)   chains, indices
    (core/Repeat) OUT -> IN Show              anonymous node _core_Repeat_1
    DEFAULT_INPORT=x / DEFAULT_OUTPORT=y      ports used when a side names none
    A OUT -> IN B, C OUT -> IN D   # comment  several statements on a line

Port names are folded to lower case unless ``case_sensitive`` is true (the npm
option of the same name). Node metadata ``A(comp:k=v,red)`` gives ``{"k": "v",
"routes": "red"}``; ``x``/``y`` become numbers.

The writer emits text that both parsers read back into the same graph. The DSL has
no place for edge metadata or capacities, IIP metadata, groups, exported port
metadata or indices, the case-sensitivity flag, or metadata values outside its
character set; :func:`losses` lists what a graph would lose, and the CLI prints it.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
import re
from collections.abc import Callable, Sequence
from typing import Any

from reflowpy.errors import GraphError, GraphFormatError
from reflowpy.network.formats._limits import (
    MAX_DEPTH,
    MAX_INDEX,
    MAX_INT,
    MIN_INT,
    check_int,
    check_value,
    line_col,
)
from reflowpy.network.formats._util import building_error
from reflowpy.network.graph import Edge, Endpoint, Graph, Node

__all__ = ["dumps", "loads", "losses", "parse"]

_NODE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_\-]*")
_PORT_NAME = re.compile(r"[a-zA-Z_][a-zA-Z.0-9_]*")
_COMPONENT = re.compile(r"[a-zA-Z/\-0-9_]*")
_META = re.compile(r"[a-zA-Z/=_,0-9]+")
_ANN_KEY = re.compile(r"[a-zA-Z0-9\-_]+")
_ANN_VALUE = re.compile(r"[a-zA-Z0-9\-_ .]+")
_DIGITS = re.compile(r"[0-9]+")
_SPACES = re.compile(r" *")
_SPACES1 = re.compile(r" +")
_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_NEWLINES = "\n\r\u2028\u2029"
_FAST_NODE = re.compile(
    r" *([a-zA-Z_][a-zA-Z0-9_\-]*)\(([a-zA-Z/\-0-9_]+)(?::([a-zA-Z/=_,0-9]+))?\) *(?:\n|\Z)"
)
# The fast path: runs of the statements the writer emits, each run matched at once and
# its rows read with ``findall`` (no Python per row but a few C-level passes).
_N = r"[a-zA-Z_][a-zA-Z0-9_\-]*"  # a node name
_P = r"[a-zA-Z_][a-zA-Z.0-9_]*"  # a port name
# The rows, with their groups capturing ("(") or not ("(?:", inside a run).
_EDGE_T = (r" *{o}{n} +{p}(?:\[[0-9]+\])?) *-> *{o}{p}(?:\[[0-9]+\])? +{n}) *(?:\n|\Z)")
_NODE_T = r" *{o}{n})\({o}[a-zA-Z/\-0-9_]+)\) *(?:\n|\Z)"
# ``a out[1] -> in[2] b``: (source side, target side) as written; ``a(comp)``: (name,
# component).
_EDGE_ROW = re.compile(_EDGE_T.format(o="(", n=_N, p=_P))
_NODE_ROW = re.compile(_NODE_T.format(o="(", n=_N, p=_P))
_SRC_SIDE = re.compile(rf"({_N}) +({_P})(?:\[([0-9]+)\])?")
_TGT_SIDE = re.compile(rf"({_P})(?:\[([0-9]+)\])? +({_N})")
_RUN = 4096  # rows per run: bounds the rows held at once
# One ``finditer`` over the text: a run of edges (group 1), a run of plain nodes (2),
# a node with metadata (3 name, 4 component, 5 metadata, as _FAST_NODE), or, where none
# of them matches, the empty alternative: matches are contiguous, and the first empty
# one hands the statement there to the grammar.
_BULK = re.compile(
    f"((?:{_EDGE_T.format(o='(?:', n=_N, p=_P)}){{1,{_RUN}}})"
    f"|((?:{_NODE_T.format(o='(?:', n=_N, p=_P)}){{1,{_RUN}}})"
    f"|{_FAST_NODE.pattern}|")

# The fastest path, for the blocks the writer emits: whole lines checked by
# C-level string passes instead of a regex. Deleting the word characters leaves a
# block's skeleton: ``a out -> in b`` rows leave "  ->  " (their port names in lower
# case, so no folding), ``a(comp)`` rows leave "(", the component's slashes and ")".
_BLOCK = 1 << 17  # characters a block holds at most (whole lines: ~4k rows of a graph)
_LOWER_WORD = b"abcdefghijklmnopqrstuvwxyz0123456789_"
_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_NODE_WORD = _LOWER_WORD + _UPPER + b"-"
_EDGE_ROW_SKELETON = b"  ->  \n"
_NODE_ROWS_SKELETON = re.compile(rb"(?:\(/*\)\n)+")
# A word of a checked block starts with a digit where "\n0" or " 0" is in this copy.
_DIGITS_AS_0 = bytes.maketrans(b"0123456789", b"0" * 10)

_SRC_KEY = operator.attrgetter("src.node", "src.port")
_TGT_KEY = operator.attrgetter("tgt.node", "tgt.port")

_ANON = re.compile(r"[^a-zA-Z0-9]+")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
            "t": "\t"}


class _Fail(Exception):
    """Backtracking signal inside the parser (never leaves this module)."""



class _Parser:
    #: The blocks :meth:`_plain_block` checks (tests make them a few rows long).
    block: int = _BLOCK

    def __init__(self, text: str, case_sensitive: bool, strict: bool = False) -> None:
        self.text = text
        self.strict = strict
        self.pos = 0
        self.cs = case_sensitive
        self.default_in = "IN"
        self.default_out = "OUT"
        # name -> the grammar's entry, or (fast path) the offset of its declaration
        # name -> the grammar's entry, or (fast path) the offset of its declaration, or
        # (a run of plain nodes) its component
        self.nodes: dict[str, dict[str, Any] | int | str] = {}
        # The statements' halves in order: dicts {"src"/"data", "tgt"} from the grammar,
        # and from the fast path 6-tuples (complete edges) and 2-tuples (target halves).
        self.edges: list[Any] = []
        self.inports: dict[str, dict[str, Any]] | None = None
        self.outports: dict[str, dict[str, Any]] | None = None
        self.properties: dict[str, Any] | None = None
        self.anon_index: dict[str, int] = {}
        self.anon_names: dict[int, str] = {}
        self.fail_pos = 0
        self.expected: set[str] = set()
        self.depth = 0
        self.node_pos: dict[str, int] = {}
        self.exports: list[tuple[str, str, str, int]] = []
        #: Whether to use the fast path (the fuzz suite turns it off to compare).
        self.fast = True
        self._folded: dict[str, str] = {}
        self._names: dict[str, str] = {}
        self._src_ends: dict[str, Endpoint] = {}
        #: Whether ``edges`` holds anything but fast-path :class:`Edge` objects.
        self.mixed = False
        self._comps: dict[str, str] = {}  # one string per component name
        self._ports: dict[str, str] = {}  # one string per folded port name
        self._halves = "EXPORT=" in text  # keep every half: export resolution reads them
        self._node_runs: list[tuple[int, int]] = []
        self._run_index: dict[str, int] = {}  # name -> offset, see _run_pos
        self._runs_indexed = 0
        self._tgt_ends: dict[str, Endpoint] = {}
        #: Where in ``edges`` the items other than fast-path Edges are (in order), so
        #: the passes after the scan never walk the millions of edges between them.
        self.others: list[int] = []
        # The rows of the plain edge runs, by hash: their number against ``_rows`` says
        # whether all the edges are distinct (see :meth:`distinct`); ``_unsure`` once an
        # edge came another way.
        self._row_hashes: set[int] = set()
        self._rows = 0
        self._unsure = False

    # -- terminals ------------------------------------------------------------------

    def _expect(self, what: str) -> None:
        if self.pos > self.fail_pos:
            self.fail_pos = self.pos
            self.expected = {what}
        elif self.pos == self.fail_pos:
            self.expected.add(what)

    def lit(self, s: str) -> None:
        if self.text.startswith(s, self.pos):
            self.pos += len(s)
            return
        self._expect(repr(s))
        raise _Fail

    def rx(self, pattern: re.Pattern[str], what: str) -> str:
        m = pattern.match(self.text, self.pos)
        if m is None or (not m.group() and not pattern.pattern.endswith("*")):
            self._expect(what)
            raise _Fail
        self.pos = m.end()
        return m.group()

    def opt(self, rule: Callable[[], Any]) -> Any:
        save = self.pos
        try:
            return rule()
        except _Fail:
            self.pos = save
            return None

    def choice(self, *rules: Callable[[], Any]) -> Any:
        save = self.pos
        for rule in rules:
            try:
                return rule()
            except _Fail:
                self.pos = save
        raise _Fail

    def _(self) -> None:
        self.pos = _SPACES.match(self.text, self.pos).end()  # type: ignore[union-attr]

    def __(self) -> None:
        self.rx(_SPACES1, "' '")

    def newline(self) -> None:
        if self.pos < len(self.text) and self.text[self.pos] in _NEWLINES:
            self.pos += 1
            return
        self._expect("newline")
        raise _Fail

    # -- lines -------------------------------------------------------------------------

    def parse(self) -> dict[str, Any]:
        self._scan()
        return self.result()

    def _scan(self) -> None:
        """Read every statement: runs of the two shapes the writer emits,
        ``a out[1] -> in b`` and ``a(comp)``, in one ``finditer`` of one compiled
        regex (:data:`_BULK`) over the text, anything else by the grammar. The grammar
        gives exactly these results for them (worked through rule by rule; the fuzz
        suite compares both, ``fast=False``); anything followed by more than spaces and
        a newline takes the general path.

        What the fast path stores is small, since a 50 MB file holds millions of
        statements: an edge as the :class:`Edge` it becomes (endpoints shared per
        spelling, node names through ``names``, port names through ``_folded``); a
        node as ``name -> component`` (a run of plain nodes, see :meth:`_node_run`) or
        ``name -> offset`` of its declaration (component and place are read again from
        the text when needed, see :meth:`_node_entry`); a node statement's target half
        (the grammar's ``IN`` of a lone ``a(comp)``) only where something can pair with
        it or an ``EXPORT=`` may look at it."""
        text, end = self.text, len(self.text)
        fast = self.fast
        # No block is tried before ``refused``, the middle of the last block refused: so
        # each character is in two block checks at most, not in one per row of a block.
        refused = 0
        while self.pos < end:
            if fast:
                pos = self.pos
                while pos < end:
                    if pos >= refused:
                        stop = text.rfind("\n", pos, pos + self.block) + 1
                        if stop > pos:
                            if self._plain_block(pos, stop):
                                pos = stop
                                continue
                            refused = pos + (stop - pos) // 2 + 1
                    m = _BULK.match(text, pos)
                    assert m is not None  # (its last alternative is empty)
                    last = m.lastindex
                    if last is None:
                        break
                    if last == 1:
                        self._edge_run(m.start(), m.end())
                    elif last == 2:
                        self._node_run(m.start(), m.end())
                    else:  # a node with metadata
                        self.pos = m.start()
                        name, comp, meta = m.group(3, 4, 5)
                        self._fast_node(name, comp, meta, m.start(3))
                    pos = m.end()
                self.pos = pos
                if pos >= end:
                    break
            start = self.pos
            try:
                self.line()
            except _Fail:
                self.pos = start
                break
        if self.pos < len(self.text):
            self._syntax_error()

    def _plain_block(self, start: int, end: int) -> bool:
        """Store the whole lines ``text[start:end]`` if each is a plain edge row ``a out
        -> in b`` (one space apart, no index) or each a plain node row ``a(comp)``, and
        say whether it did; else :data:`_BULK` and the grammar read them. The checks,
        C-level passes over the block, prove what :data:`_BULK`'s rows would: the
        skeleton (see :data:`_LOWER_WORD`) and one `` -> `` or one ``)`` ending each
        row fix each row's shape; no two spaces, no space at a row's start or end and no
        ``()`` mean no word is empty; and no word starts with a digit (nor a node name
        with ``-``), as the names' rules want."""
        chunk = self.text[start:end]
        if not chunk.isascii():
            return False
        rows = chunk.count("\n")
        size = rows * len(_EDGE_ROW_SKELETON)
        if "->" in chunk:
            if (chunk.count(" -> ") != rows or "  " in chunk or "\n " in chunk
                    or " \n" in chunk or chunk[0] in " 0123456789"):
                return False
            lowered = True  # then the port names need no folding
            data = chunk.encode("ascii")  # (checks of bytes are the tightest C loops)
            skeleton = data.translate(None, _LOWER_WORD)
            if len(skeleton) != size:
                lowered = False
                skeleton = skeleton.translate(None, _UPPER)
            if len(skeleton) != size or skeleton.count(_EDGE_ROW_SKELETON) != rows:
                return False
            digits = data.translate(_DIGITS_AS_0)
            if b" 0" in digits or b"\n0" in digits:
                return False
            del chunk, data, skeleton, digits
            self._edge_run(start, end, lowered)
            return True
        if (chunk.count(")\n") != rows or "()" in chunk or chunk[0] in "0123456789-("
                or " " in chunk or "\n-" in chunk or "\n(" in chunk):
            return False
        data = chunk.encode("ascii")
        if (_NODE_ROWS_SKELETON.fullmatch(data.translate(None, _NODE_WORD)) is None
                or b"\n0" in data.translate(_DIGITS_AS_0)):
            return False
        del chunk, data
        self._node_run(start, end)
        return True

    def _edge_run(self, start: int, end: int, lowered: bool | None = None) -> None:
        """Store a run of ``a out -> in b`` rows as :class:`Edge` objects. Both halves
        at once: the grammar pairs them with each other whatever came before (see
        :meth:`_flat_edges`). Endpoints are shared, one per spelling of a side, so the
        rows become edges through C-level maps; a new spelling is read once.
        ``lowered`` (from :meth:`_plain_block`, which checked the rows are plain):
        whether they hold no capital."""
        chunk = self.text[start:end]
        plain = lowered is not None  # (from _plain_block: the shape is checked)
        if lowered is None:
            lowered = chunk.islower()  # then the port names need no folding
        if plain or (chunk.count(" -> ") == chunk.count("->") and "  " not in chunk
                     and "[" not in chunk and "\n " not in chunk and " \n" not in chunk
                     and chunk[0] != " " and chunk[-1] != " "):
            # Written as the writer writes (one space apart, no index): each row is a
            # source side ``node port`` and a target side ``port node``, split apart by
            # C-level string methods. A side stands for one Endpoint: each distinct side
            # of the run is read once and its Endpoint shared by the rows naming it.
            body = chunk.rstrip("\n")
            del chunk
            if self.cs or lowered:
                sides = body.replace(" -> ", "\n").split("\n")
                del body
                srcs, tgts = sides[0::2], sides[1::2]
                del sides
            else:  # the port names folded, the sides spelled again from the words
                words = body.replace(" -> ", " ").replace("\n", " ").split(" ")
                del body
                sport = " ".join(words[1::4]).lower().split(" ")
                tport = " ".join(words[2::4]).lower().split(" ")
                srcs = list(map(" ".join, zip(words[0::4], sport, strict=True)))
                tgts = list(map(" ".join, zip(tport, words[3::4], strict=True)))
                del words, sport, tport
            # (source side, target side) is the edge: two rows with one hash may be equal.
            self._row_hashes.update(map(hash, zip(srcs, tgts, strict=True)))
            self._rows += len(srcs)
            src_ends = self._run_ends(srcs, True)
            tgt_ends = self._run_ends(tgts, False)
            self.edges.extend(map(Edge, map(src_ends.__getitem__, srcs),
                                  map(tgt_ends.__getitem__, tgts)))
            return
        del chunk
        self._unsure = True  # (spellings differ: the rows do not say which are equal)
        rows_found = _EDGE_ROW.findall(self.text, start, end)
        srcs, tgts = zip(*rows_found, strict=True)  # type: ignore[assignment]
        del rows_found
        src_ends, tgt_ends = self._src_ends, self._tgt_ends
        try:
            for side in set(srcs).difference(src_ends):
                src_ends[side] = self._side(side, True)
            for side in set(tgts).difference(tgt_ends):
                tgt_ends[side] = self._side(side, False)
        except GraphFormatError:
            # An index out of range: find the first in text order for its message.
            for m in _EDGE_ROW.finditer(self.text, start, end):
                self._side(m.group(1), True, m.start(1))
                self._side(m.group(2), False, m.start(2))
            raise
        self.edges.extend(map(Edge, map(src_ends.__getitem__, srcs),
                              map(tgt_ends.__getitem__, tgts)))

    def _run_ends(self, sides: list[str], source: bool) -> dict[str, Endpoint]:
        """``side -> Endpoint`` for the distinct sides of a plain run (``node port`` for
        a source, ``port node`` for a target; ports folded already), node names through
        ``_names``, port names through ``_ports``: C-level passes over the distinct."""
        distinct = list(set(sides))
        words = " ".join(distinct).split(" ")
        nodes, ports = (words[0::2], words[1::2]) if source else (words[1::2], words[0::2])
        del words
        intern, shared = self._names.setdefault, self._ports.setdefault
        return dict(zip(distinct, map(Endpoint, map(intern, nodes, nodes),
                                      map(shared, ports, ports)), strict=True))

    def _side(self, side: str, source: bool, at: int = 0) -> Endpoint:
        """The endpoint one side of an edge row spells (``a out[1]`` / ``in[2] b``);
        ``at``, its offset in the text, places an index out of range as the grammar
        does (on its digits)."""
        self.pos = at + side.find("[") + 1
        if source:
            node, port, index = _SRC_SIDE.fullmatch(side).groups()  # type: ignore[union-attr]
        else:
            port, index, node = _TGT_SIDE.fullmatch(side).groups()  # type: ignore[union-attr]
        return Endpoint(self._names.setdefault(node, node), self._fold(port),
                        None if index is None else self._index(index))

    def _node_run(self, start: int, end: int) -> None:
        """Store a run of ``a(comp)`` rows: ``name -> component`` at once when each
        name is new (the usual case), else row by row as :meth:`_fast_node` does."""
        text, nodes = self.text, self.nodes
        chunk = text[start:end]
        ids: Sequence[str]
        comps: Sequence[str]
        # The first row's ``(comp)\n``: when every row ends so (one component for the
        # run, as often), only the names are split out.
        tail = chunk[chunk.find("("):chunk.find("\n") + 1]
        if (" " not in chunk and tail.endswith(")\n") and chunk.endswith("\n")
                and chunk.count(tail) == chunk.count("\n")):
            ids = chunk.split(tail)
            ids.pop()  # (the empty rest after the last row)
            comps = [tail[1:-2]] * len(ids)
        elif " " not in chunk:  # ``name(comp)`` lines: split at the parentheses
            parts = chunk.rstrip("\n")[:-1].replace(")\n", "(").split("(")
            ids, comps = parts[0::2], parts[1::2]
            del parts
        else:
            ids, comps = zip(*_NODE_ROW.findall(text, start, end), strict=True)
        del chunk
        flats = self.edges
        if (self._halves or len(set(ids)) != len(ids)
                or not nodes.keys().isdisjoint(ids)):
            for m in _NODE_ROW.finditer(text, start, end):
                self.pos = m.start()
                self._fast_node(m.group(1), m.group(2), None, m.start(1))
            return
        if flats and type(flats[-1]) is dict and ("src" in flats[-1] or "data" in flats[-1]):
            self.others.append(len(flats))
            flats.append((ids[0], self._fold(self.default_in)))  # pairs with that half
            self.mixed = True
        intern, shared = self._names.setdefault, self._comps.setdefault
        nodes.update(zip(map(intern, ids, ids), map(shared, comps, comps), strict=True))
        self._node_runs.append((start, end))

    def _fast_node(self, name: str, comp: str, meta: str | None, pos: int) -> None:
        """One ``a(comp[:meta])`` statement: the grammar's result for it."""
        nodes = self.nodes
        if meta is None and name not in nodes:  # _add_node's first case
            nodes[self._names.setdefault(name, name)] = pos
        else:
            self._add_node(name, {"comp": comp, "meta": meta.split(",") if meta else None},
                           pos)
        flats = self.edges
        if self._halves or (flats and type(flats[-1]) is dict
                                      and ("src" in flats[-1] or "data" in flats[-1])):
            self.others.append(len(flats))
            flats.append((name, self._fold(self.default_in)))  # export resolution reads it
            self.mixed = True

    def _run_pos(self, name: str) -> int:
        """Where a node stored by :meth:`_node_run` is declared (for error messages).
        The runs are indexed at the first question and as more come, so a file that
        declares its nodes again costs one pass over the runs, not one per node."""
        index, runs = self._run_index, self._node_runs
        for start, end in runs[self._runs_indexed:]:
            for m in _NODE_ROW.finditer(self.text, start, end):
                index.setdefault(m.group(1), m.start(1))
        self._runs_indexed = len(runs)
        return index.get(name, 0)

    def _end(self, m: re.Match[str], group: int, intern: Callable[[str, str], str]
             ) -> Endpoint:
        """The endpoint an edge match of :data:`_BULK` names from group ``group`` on
        (2: node, port, index of the source; 6: port, index, node of the target)."""
        self.pos = m.start()  # where an index out of range is looked for
        if group == 2:
            node, port, index = m.group(2, 3, 4)
        else:
            port, index, node = m.group(6, 7, 8)
        return Endpoint(intern(node, node), self._fold(port),
                        None if index is None else self._index(index))

    def _node_entry(self, name: str) -> dict[str, Any]:
        """The grammar's entry for node ``name`` (``{"component", "metadata"?}``),
        turning a fast-path ``offset`` into one (and noting its place)."""
        node = self.nodes.get(name)
        if isinstance(node, dict):
            return node
        entry: dict[str, Any] = {}
        if type(node) is str:  # from a run of plain nodes: the component itself
            self.node_pos.setdefault(name, self._run_pos(name))
            entry["component"] = node
        elif type(node) is int:
            m = _FAST_NODE.match(self.text, node)
            assert m is not None
            self.node_pos.setdefault(name, node)
            entry["component"] = m.group(2)
        self.nodes[name] = entry
        return entry

    def _fold(self, port: str) -> str:
        """A port name as stored (lower case unless case sensitive), one string object
        per distinct spelling, so a million edges share a few port-name strings."""
        folded = self._folded.get(port)
        if folded is None:
            folded = self._folded[port] = port if self.cs else port.lower()
        return folded

    def line(self) -> None:
        # The grammar's ordered choice, skipping alternatives whose leading literal
        # cannot match here (same result, far fewer failed attempts).
        text = self.text
        start = _SPACES.match(text, self.pos).end()  # type: ignore[union-attr]
        head = text[start:start + 1]
        rules: list[Callable[[], Any]] = []
        if head in "IOD":
            rules += [self.line_inport, self.line_outport, self.line_default_in,
                      self.line_default_out]
        elif head == "E":
            rules.append(self.line_export)
        if head == "#":
            if text.startswith("#", self.pos):
                rules.append(self.line_annotation)
            rules.append(self.line_comment)
        elif head and head in _NEWLINES:
            rules.append(self.line_blank)
        rules.append(self.line_connection)
        self.choice(*rules)

    def _port(self, name: str, index: str | None) -> dict[str, Any]:
        return {"port": name if self.cs else name.lower(),
                "index": self._index(index) if index is not None else None}

    def _index(self, digits: str) -> int:
        """A port index, refused (a hard error, not a backtrack) past the int32 range."""
        if len(digits) > 10 or int(digits) > MAX_INDEX:
            at = self.text.rfind(digits, 0, self.pos + len(digits))
            raise GraphFormatError(f"port index {digits[:20]}{'...' if len(digits) > 20 else ''}"
                                   f" is out of range (0 to {MAX_INDEX})", format="fbp",
                                   where=line_col(self.text, max(at, 0)))
        return int(digits)

    def line_terminator(self) -> None:
        self._()
        self.opt(lambda: self.lit(","))
        self.opt(self.comment)
        self.opt(self.newline)

    def _export_line(self, keyword: str) -> tuple[str, str, str]:
        self._()
        self.lit(keyword)
        node = self.node()
        self.lit(".")
        port = self.rx(_PORT_NAME, "port name")
        self.lit(":")
        pub = self.rx(_PORT_NAME, "port name")
        self._()
        self.opt(self.line_terminator)
        if not self.cs:
            pub, port = pub.lower(), port.lower()
        return node, port, pub

    def line_inport(self) -> None:
        node, port, pub = self._export_line("INPORT=")
        self.inports = self.inports or {}
        self.inports[pub] = {"process": node, "port": port}

    def line_outport(self) -> None:
        node, port, pub = self._export_line("OUTPORT=")
        self.outports = self.outports or {}
        self.outports[pub] = {"process": node, "port": port}

    def line_export(self) -> None:
        """The legacy ``EXPORT=NODE.PORT:PUBLIC`` (npm fbp before 1.6, still in noflo's
        ``spec/fixtures/subgraph_legacy.fbp``); resolved to an in- or out-port in
        :meth:`_resolve_exports` once every connection is known."""
        start = _SPACES.match(self.text, self.pos).end()  # type: ignore[union-attr]
        node, port, pub = self._export_line("EXPORT=")
        self.exports.append((node, port, pub, start))

    def _resolve_exports(self) -> None:
        # Which of the exported (node, port) pairs are a source / a target somewhere:
        # the fast path's Edges through C-level maps (no dict per edge), the rest read.
        edges, nodes = self.edges, self.nodes
        folded: dict[str, str] = {}  # lower-case name -> the first node so spelled
        for n in nodes:
            folded.setdefault(n.lower(), n)
        wanted = {(node if node in nodes else folded.get(node.lower(), node), port)
                  for node, port, _, _ in self.exports}
        others = set(self.others)
        runs = [edges[a + 1:b] for a, b in zip([-1, *sorted(others)],
                                                [*sorted(others), len(edges)], strict=True)]
        srcs = wanted.intersection(map(_SRC_KEY, itertools.chain.from_iterable(runs)))
        tgts = wanted.intersection(map(_TGT_KEY, itertools.chain.from_iterable(runs)))
        del runs
        for i in others:
            e = _as_dict(edges[i])
            if "src" in e:
                srcs.add((e["src"]["process"], e["src"]["port"]))
            if "tgt" in e:
                tgts.add((e["tgt"]["process"], e["tgt"]["port"]))
        for node, port, pub, pos in self.exports:
            name = node if node in nodes else folded.get(node.lower(), node)
            key = (name, port)
            if key in srcs and key not in tgts:
                kind = "out"
            elif (key in tgts and key not in srcs) or port.lower().startswith("in"):
                kind = "in"
            elif port.lower().startswith("out"):
                kind = "out"
            else:
                raise GraphFormatError(
                    f"EXPORT={node}.{port}:{pub}: cannot tell an in-port from an out-port"
                    f" here; write INPORT={node}.{port}:{pub} or OUTPORT={node}.{port}:{pub}",
                    format="fbp", where=line_col(self.text, pos))
            table = "inports" if kind == "in" else "outports"
            if getattr(self, table) is None:
                setattr(self, table, {})
            getattr(self, table)[pub] = {"process": name, "port": port}

    def _default_line(self, keyword: str) -> str:
        self._()
        self.lit(keyword)
        name = self.rx(_PORT_NAME, "port name")
        self._()
        self.opt(self.line_terminator)
        return name

    def line_default_in(self) -> None:
        self.default_in = self._default_line("DEFAULT_INPORT=")

    def line_default_out(self) -> None:
        self.default_out = self._default_line("DEFAULT_OUTPORT=")

    def line_annotation(self) -> None:
        self.lit("#")
        self.__()
        self.lit("@")
        key = self.rx(_ANN_KEY, "annotation name")
        self.__()
        value = self.rx(_ANN_VALUE, "annotation value")
        self.newline()
        self.properties = self.properties if self.properties is not None else {}
        if key == "runtime":
            self.properties["environment"] = {"type": value}
        else:
            self.properties[key] = value

    def comment(self) -> None:
        self._()
        self.lit("#")
        end = self.pos
        while end < len(self.text) and self.text[end] not in _NEWLINES:
            end += 1
        self.pos = end

    def line_comment(self) -> None:
        self.comment()
        self.opt(self.newline)

    def line_blank(self) -> None:
        self._()
        self.newline()

    def line_connection(self) -> None:
        self._()
        items = self.connection()
        self._()
        self.opt(self.line_terminator)
        self.others.extend(range(len(self.edges), len(self.edges) + len(items)))
        self.edges.extend(items)
        self.mixed = True

    # -- connections ------------------------------------------------------------------

    def connection(self) -> list[dict[str, Any]]:
        """``source _ "->" _ connection / destination``, iteratively."""
        items: list[list[dict[str, Any]]] = []
        starts: list[int] = []
        while True:
            start = self.pos
            try:
                src = self.source()
                self._()
                self.lit("->")
                self._()
                items.append(src)
                starts.append(start)
                continue
            except _Fail:
                self.pos = start
            while True:
                try:
                    items.append(self.destination())
                    return [e for part in items for e in part]
                except _Fail:
                    if not starts:
                        raise
                    self.pos = starts.pop()
                    items.pop()

    def source(self) -> list[dict[str, Any]]:
        return self.choice(self.bridge, lambda: [self.outport()], lambda: [self.iip()])  # type: ignore[no-any-return]

    def destination(self) -> list[dict[str, Any]]:
        return self.choice(lambda: [self.inport()], self.bridge)  # type: ignore[no-any-return]

    def _make_port(self, process: str, port: dict[str, Any] | None,
                   default: str) -> dict[str, Any]:
        if not self.cs:
            default = default.lower()
        out: dict[str, Any] = {"process": process,
                               "port": port["port"] if port else default}
        if port and port["index"] is not None:
            out["index"] = port["index"]
        return out

    def bridge(self) -> list[dict[str, Any]]:
        def first() -> tuple[Any, str, Any]:
            x = self.port__()
            proc = self.node()
            y = self.__port()
            return x, proc, y

        def second() -> tuple[Any, str, Any]:
            x = self.opt(self.port__)
            proc = self.node_with_component()
            y = self.opt(self.__port)
            return x, proc, y

        x, proc, y = self.choice(first, second)
        return [{"tgt": self._make_port(proc, x, self.default_in)},
                {"src": self._make_port(proc, y, self.default_out)}]

    def outport(self) -> dict[str, Any]:
        proc = self.node()
        port = self.opt(self.__port)
        return {"src": self._make_port(proc, port, self.default_out)}

    def inport(self) -> dict[str, Any]:
        port = self.opt(self.port__)
        proc = self.node()
        return {"tgt": self._make_port(proc, port, self.default_in)}

    def iip(self) -> dict[str, Any]:
        return self.choice(self.quoted_iip, lambda: {"data": self.json_text()})  # type: ignore[no-any-return]

    def quoted_iip(self) -> dict[str, Any]:
        self.lit("'")
        text, i, out = self.text, self.pos, []
        while i < len(text):
            if text[i] == "\\" and i + 1 < len(text) and text[i + 1] == "'":
                out.append("'")
                i += 2
            elif text[i] == "'":
                break
            else:
                out.append(text[i])
                i += 1
        self.pos = i
        self.lit("'")
        return {"data": "".join(out)}

    # -- nodes and ports ------------------------------------------------------------------

    def node(self) -> str:
        """``nodeNameAndComponent / nodeName / nodeComponent``."""
        m = _NODE_NAME.match(self.text, self.pos)
        if m is not None:
            if self.text.startswith("(", m.end()):
                save = self.pos
                try:
                    return self.node_name_and_component()
                except _Fail:
                    self.pos = save
            self.pos = m.end()
            return m.group()
        return self.node_component()

    def node_with_component(self) -> str:
        return self.choice(self.node_name_and_component, self.node_component)  # type: ignore[no-any-return]

    def node_name_and_component(self) -> str:
        start = self.pos
        name = self.rx(_NODE_NAME, "node name")
        comp = self.component()
        self._add_node(name, comp, start)
        return name

    def node_component(self) -> str:
        offset = self.pos
        comp = self.component()
        if offset not in self.anon_names:
            base = _ANON.sub("_", comp["comp"], count=1)
            self.anon_index[base] = self.anon_index.get(base, 0) + 1
            self.anon_names[offset] = f"_{base}_{self.anon_index[base]}"
            self._add_node(self.anon_names[offset], comp, offset)
        return self.anon_names[offset]

    def component(self) -> dict[str, Any]:
        self.lit("(")
        comp = self.rx(_COMPONENT, "component name")
        meta = None
        save = self.pos
        try:
            self.lit(":")
            meta = self.rx(_META, "metadata").split(",")
        except _Fail:
            self.pos = save
        self.lit(")")
        return {"comp": comp, "meta": meta}

    def _add_node(self, name: str, comp: dict[str, Any], pos: int) -> None:
        node = self._node_entry(name)
        if comp["comp"]:
            old = node.get("component")
            if (self.strict and old is not None and old != comp["comp"]
                    and self.node_pos[name] != pos):
                # npm's parser keeps the last silently; a second, different component for
                # one name is almost always two nodes that were meant to differ.
                raise GraphFormatError(
                    f"node {name!r} is declared twice with different components:"
                    f" {old!r} at {line_col(self.text, self.node_pos[name])} and"
                    f" {comp['comp']!r} at {line_col(self.text, pos)}; rename one",
                    format="fbp", where=line_col(self.text, pos))
            self.node_pos.setdefault(name, pos)
            node["component"] = comp["comp"]
        if comp["meta"]:
            metadata: dict[str, Any] = {}
            for item in comp["meta"]:
                parts = item.split("=")
                if len(parts) == 1:
                    parts = ["routes", parts[0]]
                key, value = parts[0], parts[1]
                metadata[key] = _parse_float(value) if key in ("x", "y") else value
            node["metadata"] = metadata

    def port(self) -> dict[str, Any]:
        name = self.rx(_PORT_NAME, "port name")
        index = None
        save = self.pos
        try:
            self.lit("[")
            index = self._index(self.rx(_DIGITS, "digit"))
            self.lit("]")
        except _Fail:
            self.pos = save
            index = None
        return {"port": name if self.cs else name.lower(), "index": index}

    def port__(self) -> dict[str, Any]:
        port = self.port()
        self.__()
        return port

    def __port(self) -> dict[str, Any]:
        self.__()
        return self.port()

    # -- JSON (RFC 7159, as in the npm grammar) -----------------------------------------

    def ws(self) -> None:
        self.pos = _WS.match(self.text, self.pos).end()  # type: ignore[union-attr]

    def json_text(self) -> Any:
        self.ws()
        value = self.json_value()
        self.ws()
        return value

    def json_value(self) -> Any:
        text, pos = self.text, self.pos
        for word, value in (("false", False), ("null", None), ("true", True)):
            if text.startswith(word, pos):
                self.pos += len(word)
                return value
        if text.startswith("{", pos):
            return self.json_object()
        if text.startswith("[", pos):
            return self.json_array()
        m = _NUMBER.match(text, pos)
        if m:
            self.pos = m.end()
            if m.group(1) or m.group(2):
                return float(m.group())
            if len(m.group()) > 20:
                raise GraphFormatError(
                    f"an integer of {len(m.group().lstrip('-'))} digits is out of range"
                    " (graphs hold 64-bit integers); write it as a string", format="fbp",
                    where=line_col(text, pos))
            number = int(m.group())
            if not MIN_INT <= number <= MAX_INT:
                check_int(number, "fbp", line_col(text, pos))
            return number
        if text.startswith('"', pos):
            return self.json_string()
        self._expect("JSON value")
        raise _Fail

    def _json_members(self, open_: str, close: str, member: Callable[[], None]) -> None:
        """``open_ (member ("," member)*)? close`` with whitespace around each token:
        an empty container backtracks to ``close``; a failure after a member fails."""
        self.ws()
        self.lit(open_)
        self.ws()
        save = self.pos
        parsed = False
        try:
            while True:
                member()
                parsed = True
                save = self.pos
                try:
                    self.ws()
                    self.lit(",")
                    self.ws()
                except _Fail:
                    self.pos = save
                    break
        except _Fail:
            self.pos = save
            if parsed:
                raise
        self.ws()
        self.lit(close)
        self.ws()

    def _nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise GraphFormatError(f"JSON nested more than {MAX_DEPTH} levels deep",
                                   format="fbp", where=line_col(self.text, self.pos))

    def json_object(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        seen: dict[str, int] = {}
        self._nest()

        def member() -> None:
            at = self.pos
            key = self.json_string()
            if self.strict and key in seen:
                # JSON.parse (and so npm's parser) keeps the last silently.
                raise GraphFormatError(
                    f"key {key!r} is defined twice in one JSON object, at"
                    f" {line_col(self.text, seen[key])} and {line_col(self.text, at)};"
                    " JSON keeps only the last: rename or remove one",
                    format="fbp", where=line_col(self.text, at))
            seen[key] = at
            self.ws()
            self.lit(":")
            self.ws()
            result[key] = self.json_value()

        try:
            self._json_members("{", "}", member)
        finally:
            self.depth -= 1
        return result

    def json_array(self) -> list[Any]:
        result: list[Any] = []
        self._nest()
        try:
            self._json_members("[", "]", lambda: result.append(self.json_value()))
        finally:
            self.depth -= 1
        return result

    def json_string(self) -> str:
        self.lit('"')
        text, i, out = self.text, self.pos, []
        while i < len(text):
            ch = text[i]
            if ch == '"':
                break
            if ch == "\\":
                nxt = text[i + 1:i + 2]
                if nxt in _ESCAPES:
                    out.append(_ESCAPES[nxt])
                    i += 2
                    continue
                if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2:i + 6]):
                    out.append(chr(int(text[i + 2:i + 6], 16)))
                    i += 6
                    continue
                self.pos = i
                self._expect("JSON escape")
                raise _Fail
            if ord(ch) < 0x20:
                self.pos = i
                self._expect("'\"'")
                raise _Fail
            out.append(ch)
            i += 1
        self.pos = i
        self.lit('"')
        joined = "".join(out)
        try:  # pair up \uD83D\uDE00 escapes as JavaScript does
            return joined.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:
            return joined

    # -- results and errors -------------------------------------------------------------

    def _syntax_error(self) -> None:
        pos = self.fail_pos
        line = self.text.count("\n", 0, pos) + 1
        col = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        found = repr(self.text[pos]) if pos < len(self.text) else "end of input"
        expected = ", ".join(sorted(self.expected)) or "a statement"
        raise GraphFormatError(f"expected {expected} but found {found}", format="fbp",
                               where=f"line {line}, column {col}")

    def _flat_edges(self) -> list[Any]:
        """Pair each source half (``src`` or ``data``) with the target half after it, as
        the npm grammar does; edges the fast path stored pass through, its target halves
        (2-tuples) pair like the grammar's."""
        if not self.mixed:
            self.others = []
            return self.edges  # only ready-made edges: nothing to pair
        flats, n = self.edges, len(self.edges)
        grouped: list[Any] = []
        others: list[int] = []  # where the items other than Edges are in ``grouped``
        done = 0  # flats[:done] are handled
        # Only the grammar's items and the target halves need looking at (``others``
        # says where they are): the edges between them pass through in slices.
        for i in self.others:
            if i < done:
                continue  # the target half of the pair before
            grouped += flats[done:i]
            done = i + 1
            item = flats[i]
            if type(item) is tuple:  # a lone target half: pairs only with what is before
                continue
            if "src" in item and "tgt" in item:
                others.append(len(grouped))
                grouped.append(item)
            elif i + 1 < n and ("src" in item or "data" in item):
                nxt = flats[i + 1]
                if type(nxt) is tuple:
                    if len(nxt) == 2:
                        item["tgt"] = _as_dict(nxt)["tgt"]
                        others.append(len(grouped))
                        grouped.append(item)
                        done = i + 2
                elif type(nxt) is dict and "tgt" in nxt and "src" not in nxt:
                    item["tgt"] = nxt["tgt"]
                    others.append(len(grouped))
                    grouped.append(item)
                    done = i + 2
        grouped += flats[done:]
        self.others = others
        return grouped

    def distinct(self) -> bool:
        """Whether no two of the fast path's Edges have the same ends (then none of
        them need be compared when the graph stores them): every Edge came from a plain
        run, and no two of those rows hash alike."""
        return not self._unsure and len(self._row_hashes) == self._rows

    def _finish(self) -> list[Any]:
        """The paired connections, with exports resolved and every reference checked."""
        if self.exports:  # (before the pairing: it reads the halves, ``others`` says where)
            self._resolve_exports()
        grouped = self._flat_edges()
        nodes, check = self.nodes, grouped
        # Every node name a fast-path edge names went through ``_names``: when each of
        # them is declared, none of those edges can fail the per-connection check.
        if self._names.keys() <= nodes.keys():
            check = [grouped[i] for i in self.others]
        self._src_ends, self._tgt_ends = {}, {}  # the edges hold the endpoints now
        self._names.clear()
        _validate_contents(nodes, self.inports or {}, self.outports or {}, check)
        return grouped

    def result(self) -> dict[str, Any]:
        grouped = self._finish()
        out: dict[str, Any] = {
            "inports": self.inports or {},
            "outports": self.outports or {},
            "groups": [],
            "processes": {name: node if type(node) is dict else self._node_entry(name)
                          for name, node in list(self.nodes.items())},
            "connections": [_as_dict(c) for c in grouped],
        }
        if self.properties is not None:
            out["properties"] = self.properties
        out["caseSensitive"] = self.cs
        return out


def _as_dict(item: Any) -> dict[str, Any]:
    """A fast-path item as the grammar's dict (dicts pass through)."""
    if type(item) is tuple:
        return {"tgt": {"process": item[0], "port": item[1]}}
    if type(item) is not Edge:
        return item  # type: ignore[no-any-return]
    ends = []
    for end in (item.src, item.tgt):
        out: dict[str, Any] = {"process": end.node, "port": end.port}
        if end.index is not None:
            out["index"] = end.index
        ends.append(out)
    return {"src": ends[0], "tgt": ends[1]}


def _parse_float(value: str) -> float | None:
    """JavaScript's parseFloat on the characters the metadata rule allows, as JSON sees
    it: NaN and Infinity become ``None`` (``JSON.stringify`` writes them as null)."""
    m = re.match(r"[0-9]+(?:[eE][0-9]+)?", value)
    if not m:
        return None
    number = float(m.group())
    return number if math.isfinite(number) else None


def _validate_contents(processes: dict[str, Any], inports: dict[str, Any],
                       outports: dict[str, Any], connections: list[Any]) -> None:
    def fail(message: str) -> GraphFormatError:
        return GraphFormatError(message, format="fbp")

    # (A fast-path node is no dict: one C-level pass tells whether any entry is one.)
    grammar_nodes = processes.items() if dict in set(map(type, processes.values())) else ()
    for name, node in grammar_nodes:
        if type(node) is dict and not node.get("component"):  # else a fast-path node
            raise fail(f'node "{name}" does not have a component defined; write'
                       f" {name}(Component) once")
    for kind, table in (("inports", inports), ("outports", outports)):
        for public, exp in table.items():
            if exp["process"] not in processes:
                raise fail(f'{kind[:-1]} "{public}" is connected to an undefined node'
                           f' "{exp["process"]}"')
    for conn in connections:
        if type(conn) is Edge:
            if conn.src.node in processes and conn.tgt.node in processes:
                continue
            conn = _as_dict(conn)
        tgt, src = conn.get("tgt"), conn.get("src")
        if tgt and tgt["process"] not in processes:
            what = (f"IIP {json.dumps(conn['data'])}" if "data" in conn
                    else f'edge from "{src["process"]}" port "{src["port"]}"'
                    if src else "edge")
            raise fail(f'{what} is connected to an undefined target node "{tgt["process"]}"')
        if src and src["process"] not in processes:
            raise fail(f'edge to "{tgt["process"] if tgt else "?"}" port'
                       f' "{tgt["port"] if tgt else "?"}" is connected to an undefined'
                       f' source node "{src["process"]}"')


def parse(text: str, *, case_sensitive: bool = False, strict: bool = False) -> dict[str, Any]:
    """Parse ``.fbp`` text into the NoFlo JSON document the npm ``fbp`` parser returns.

    With ``strict`` (what :func:`loads` uses) a node name declared twice with different
    components is refused, naming both places; npm's parser keeps the last silently."""
    return _Parser(text, case_sensitive, strict).parse()


def loads(text: str, *, case_sensitive: bool = False) -> Graph:
    """Read ``.fbp`` text into a :class:`Graph` (strictly: see :func:`parse`).

    The same graph as ``noflo.from_dict(parse(text))`` (the fuzz suite compares them),
    built straight from the parser's records: the NoFlo document is never made."""
    parser = _Parser(text, case_sensitive, strict=True)
    parser._scan()
    connections = parser._finish()
    parser.edges = []  # the halves: paired into ``connections`` now
    return _graph(parser, connections)


def _graph(parser: _Parser, connections: list[Any]) -> Graph:
    fmt = "fbp"
    props = dict(check_value(parser.properties or {}, fmt, "properties"))
    name = props.pop("name", "") if isinstance(props.get("name"), str) else ""
    graph = Graph(name, case_sensitive=parser.cs, properties=props)
    graph._recording = False
    nodes, parser.nodes = parser.nodes, {}
    text, comps = parser.text, dict[str, str]()  # one string per component name
    where = "processes"

    def node(node_id: str, proc: Any) -> Node:
        if type(proc) is str:  # from a run of plain nodes
            return Node(node_id, proc, {})
        if type(proc) is int:
            comp = _FAST_NODE.match(text, proc).group(2)  # type: ignore[union-attr]
            return Node(node_id, comps.setdefault(comp, comp), {})
        return Node(node_id, proc["component"], proc.get("metadata") or {})

    try:
        if set(map(type, nodes.values())) <= {str}:  # all from runs: built in C loops
            graph._extend(list(map(Node, nodes.keys(), nodes.values())),  # type: ignore[arg-type]
                          checked=True)
        else:
            graph._extend(node(node_id, proc) for node_id, proc in nodes.items())
        del nodes
        # Every connection's ends were checked in _finish. Without edges from the
        # grammar (the usual big file: only IIPs besides the fast path's edges), the
        # edges are kept in bulk and only the IIPs are looked at one by one.
        others = parser.others  # where the items other than Edges are
        if not any("src" in connections[i] for i in others):
            for i in others:
                where = f"connections[{i}]"
                t, data = connections[i]["tgt"], connections[i]["data"]
                if data is not None:
                    check_value(data, fmt, f"{where}.data")
                graph.add_iip(data, t["process"], t["port"], index=t.get("index"))
            where = "connections"
            edges = connections
            if others:  # the Edges between the IIPs, in slices
                edges = []
                for start, stop in zip([-1, *others], [*others, len(connections)],
                                       strict=True):
                    edges += connections[start + 1:stop]
                connections.clear()  # (its Edges live on in ``edges``)
            graph._extend(edges=edges, checked=True, distinct=parser.distinct())
            del edges
            connections = []
        edges = []
        add_edge = edges.append
        for i, conn in enumerate(connections):
            if type(conn) is Edge:
                add_edge(conn)
                continue
            where = f"connections[{i}]"
            t = conn["tgt"]
            if "src" in conn:
                s = conn["src"]
                add_edge(Edge(Endpoint(s["process"], s["port"], s.get("index")),
                              Endpoint(t["process"], t["port"], t.get("index")), {}, None))
            else:
                data = conn["data"]
                if data is not None:
                    check_value(data, fmt, f"{where}.data")
                graph.add_iip(data, t["process"], t["port"], index=t.get("index"))
        connections.clear()
        where = "connections"
        graph._extend(edges=edges)
        for table, add in (("inports", graph.add_inport), ("outports", graph.add_outport)):
            for public, exp in (getattr(parser, table) or {}).items():
                where = f"{table}.{public}"
                add(public, exp["process"], exp["port"])
    except (GraphError, ValueError) as exc:
        raise building_error(exc, fmt, where) from None
    graph._recording = True
    return graph


# -- writing ---------------------------------------------------------------------------------


def _meta_ok(key: str, value: Any) -> bool:
    if not re.fullmatch(r"[a-zA-Z/_0-9]+", key):
        return False
    if key in ("x", "y"):
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value) and value >= 0 and float(value).is_integer())
    return isinstance(value, str) and re.fullmatch(r"[a-zA-Z/_0-9]+", value) is not None


def _meta_text(key: str, value: Any) -> str:
    return f"{key}={int(value)}" if key in ("x", "y") else f"{key}={value}"


def _iip_text(data: Any) -> str | None:
    if isinstance(data, str) and not data.endswith("\\"):
        return "'" + data.replace("'", "\\'") + "'"
    try:
        encoded = json.dumps(data, ensure_ascii=False, allow_nan=False,
                             separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    # true/false/null would be read as node names at the start of a statement; a tab
    # (JSON whitespace, not a statement's space) makes the grammar read them as JSON.
    return "\t" + encoded if data is None or isinstance(data, bool) else encoded


def _ann_ok(value: str) -> bool:
    return bool(_ANN_VALUE.fullmatch(value)) and not value.startswith(" ")


def _name_ok(pattern: re.Pattern[str], name: str) -> bool:
    return pattern.fullmatch(name) is not None


def _port_text(port: str, index: int | None) -> str:
    return port if index is None else f"{port}[{index}]"


def losses(graph: Graph) -> list[str]:
    """What writing ``graph`` as ``.fbp`` would lose or cannot express (empty: nothing)."""
    out: list[str] = []
    if graph.case_sensitive:
        out.append("the graph is case sensitive; read the text with case_sensitive=True")
    if graph.name and not _ann_ok(graph.name):
        out.append(f"graph name {graph.name!r} has characters an annotation cannot hold")
    for key, value in graph.properties.items():
        if key == "environment" and isinstance(value, dict) and list(value) == ["type"] \
                and isinstance(value["type"], str) and _ann_ok(value["type"]):
            continue
        if key in ("name", "runtime", "environment") or not _ANN_KEY.fullmatch(key) \
                or not isinstance(value, str) or not _ann_ok(value):
            out.append(f"property {key!r}")
    for node in graph.nodes.values():
        if not _name_ok(_NODE_NAME, node.id):
            out.append(f"node id {node.id!r} is not a DSL name")
        if not node.component or not _COMPONENT.fullmatch(node.component):
            out.append(f"node {node.id!r}: component {node.component!r} is not a DSL name")
        for key, value in node.metadata.items():
            if not _meta_ok(key, value):
                out.append(f"node {node.id!r}: metadata {key!r}")
    for edge in graph.edges:
        for port in (edge.src.port, edge.tgt.port):
            if not _name_ok(_PORT_NAME, port):
                out.append(f"connection {edge.src} -> {edge.tgt}: port {port!r}")
        if edge.metadata:
            out.append(f"connection {edge.src} -> {edge.tgt}: metadata")
        if edge.capacity is not None:
            out.append(f"connection {edge.src} -> {edge.tgt}: capacity")
    for iip in graph.iips:
        if _iip_text(iip.data) is None:
            out.append(f"initial packet for {iip.tgt}: data is not JSON")
        if not _name_ok(_PORT_NAME, iip.tgt.port):
            out.append(f"initial packet for {iip.tgt}: port {iip.tgt.port!r}")
        if iip.metadata:
            out.append(f"initial packet for {iip.tgt}: metadata")
    for kind, table in (("inport", graph.inports), ("outport", graph.outports)):
        for public, exp in table.items():
            if not (_name_ok(_PORT_NAME, public) and _name_ok(_PORT_NAME, exp.port)):
                out.append(f"{kind} {public!r}: names are not DSL port names")
            if exp.index is not None:
                out.append(f"{kind} {public!r}: index")
            if exp.metadata:
                out.append(f"{kind} {public!r}: metadata")
    out.extend(f"group {g.name!r}" for g in graph.groups)
    return out


def dumps(graph: Graph) -> str:
    """The graph as ``.fbp`` text. What the DSL cannot express is left out (see
    :func:`losses`); node ids, components and port names it cannot spell raise
    :class:`GraphFormatError`, since the text would mean another graph."""
    for node in graph.nodes.values():
        if not _name_ok(_NODE_NAME, node.id):
            raise GraphFormatError(f"node id {node.id!r} cannot be written in the DSL"
                                   " (letters, digits, _ and -, not first)", format="fbp")
        if not node.component or not _COMPONENT.fullmatch(node.component):
            raise GraphFormatError(f"node {node.id!r}: component {node.component!r} cannot"
                                   " be written in the DSL (letters, digits, /, _ and -)",
                                   format="fbp")
    lines: list[str] = []
    if graph.name and _ann_ok(graph.name):
        lines.append(f"# @name {graph.name}")
    for key, value in graph.properties.items():
        if key == "environment" and isinstance(value, dict) and list(value) == ["type"] \
                and isinstance(value["type"], str) and _ann_ok(value["type"]):
            lines.append(f"# @runtime {value['type']}")
        elif key not in ("name", "runtime", "environment") and _ANN_KEY.fullmatch(key) \
                and isinstance(value, str) and _ann_ok(value):
            lines.append(f"# @{key} {value}")
    for kind, table in (("INPORT", graph.inports), ("OUTPORT", graph.outports)):
        for public, exp in table.items():
            if _name_ok(_PORT_NAME, public) and _name_ok(_PORT_NAME, exp.port):
                lines.append(f"{kind}={exp.node}.{exp.port}:{public}")
    for node in graph.nodes.values():
        meta = ",".join(_meta_text(k, v) for k, v in node.metadata.items() if _meta_ok(k, v))
        lines.append(f"{node.id}({node.component}{':' + meta if meta else ''})")

    def bad_port(*ports: str) -> bool:
        return any(not _name_ok(_PORT_NAME, port) for port in ports)

    for edge in graph.edges:
        if bad_port(edge.src.port, edge.tgt.port):
            continue
        lines.append(f"{edge.src.node} {_port_text(edge.src.port, edge.src.index)} ->"
                     f" {_port_text(edge.tgt.port, edge.tgt.index)} {edge.tgt.node}")
    for iip in graph.iips:
        data = _iip_text(iip.data)
        if data is None or bad_port(iip.tgt.port):
            continue
        lines.append(f"{data} -> {_port_text(iip.tgt.port, iip.tgt.index)} {iip.tgt.node}")
    return "\n".join(lines) + "\n"
