"""The readers' bulk paths build exactly the graphs (or the errors) of the one-by-one paths.

Loading 50 MB of a graph file is bulk work: ``.fbp`` runs of plain statements are read
by C-level splits and maps (``fbp._Parser._edge_run``/``_node_run``), JSON readers
buffer their edges (``_util.EdgeBuffer``), and ``Graph._extend(checked=True)`` stores
them by dict/zip passes. Each is compared here, on generated inputs built to hit its
edges (names that differ in case only, indices, odd spacing, repeated edges and nodes,
undeclared nodes, bad capacities, IIPs between runs), with the path it replaces:

* ``.fbp``: the full grammar alone (``fast = False``), and the NoFlo document npm's
  parser gives, read by the NoFlo reader;
* JSON: the same reader with every edge going through ``Graph.add_edge`` (the old path);
* ``_extend``: ``add_node``/``add_edge`` one by one.

Equal means equal graphs with edges and IIPs in the same order, or the same error text.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.network import formats
from reflowpy.network.formats import _util, fbp, noflo
from reflowpy.network.graph import Edge, Endpoint, Node
from tests.scale import long_scale

_NAMES = st.sampled_from(["a", "b", "A", "n1", "n_2", "x-y", "Zed", "q"])
_PORTS = st.sampled_from(["in", "out", "IN", "Out", "data", "x.y", "OUT"])
_COMPS = st.sampled_from(["core/Repeat", "core/Output", "x", "My/Comp-1"])


def _same(a: Any, b: Any) -> None:
    """Both the same error text, or equal graphs with edges and IIPs in one order."""
    if isinstance(a, str) or isinstance(b, str):
        assert a == b
        return
    assert a == b, a.diff(b)
    assert a.edges == b.edges and a.iips == b.iips
    assert a.inports == b.inports and a.outports == b.outports
    assert set(a._edge_index) == {(e.src, e.tgt) for e in a.edges}
    assert len(a._edge_index) == len(a.edges)
    assert a.to_dict("reflow") == b.to_dict("reflow")


# -- .fbp ----------------------------------------------------------------------------------


@st.composite
def _fbp_text(draw: st.DrawFn) -> str:
    """Runs of plain node and edge rows (what the writer emits, and what it does not:
    doubled spaces, indices, case variants), mixed with statements only the grammar
    reads (IIPs, metadata, chains, exports, comments, blank lines)."""
    sp = st.sampled_from([" ", " ", " ", "  "])
    lines: list[str] = []
    # One component per name, mostly (two differing is refused, naming both places).
    comp = {name: draw(_COMPS) for name in ["a", "b", "A", "n1", "n_2", "x-y", "Zed", "q"]}
    clash = draw(st.integers(0, 7)) == 0
    bad_index = draw(st.integers(0, 7)) == 0
    if draw(st.integers(0, 6)):  # most texts declare their nodes first, as a run
        lines += [f"{name}({c})" for name, c in comp.items() if draw(st.integers(0, 9))]
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["nodes", "nodes", "edges", "edges", "edges", "other"]))
        rows = draw(st.integers(1, 6))
        for _ in range(rows):
            if kind == "nodes":
                name = draw(_NAMES)
                lines.append(f"{draw(st.sampled_from(['', ' ']))}{name}"
                             f"({draw(_COMPS) if clash else comp[name]})"
                             f"{draw(st.sampled_from(['', ' ']))}")
            elif kind == "edges":
                si = draw(st.sampled_from(["", "", "", "[0]", "[3]"]) if not bad_index
                          or draw(st.integers(0, 9)) else st.just("[99999999999]"))
                ti = draw(st.sampled_from(["", "", "", "[1]"]))
                lines.append(f"{draw(_NAMES)}{draw(sp)}{draw(_PORTS)}{si}{draw(sp)}->"
                             f"{draw(sp)}{draw(_PORTS)}{ti}{draw(sp)}{draw(_NAMES)}")
            else:
                lines.append(draw(st.sampled_from([
                    "'v' -> in a", "5 -> IN b", "# comment", "", f"a({comp['a']}:k=v)",
                    "INPORT=a.in:start", "OUTPORT=b.out:done", "EXPORT=a.out:res",
                    "a out -> in b(x) out -> in q", "DEFAULT_INPORT=DATA", "# @name G",
                    "a out -> in b, b out -> in a", "'x' ->", "-> in b", "A(B) OUT",
                ])))
    end = draw(st.sampled_from(["\n", "", "\n\n"]))
    return "\n".join(lines) + end


def fbp_graph(text: str, cs: bool, fast: bool) -> Any:
    """The graph ``.fbp`` text gives when built straight from the parser's records (with
    or without the bulk fast path), or the error's text."""
    parser = fbp._Parser(text, cs, strict=True)
    parser.fast = fast
    try:
        parser._scan()
        return fbp._graph(parser, parser._finish())
    except rf.GraphFormatError as exc:
        return str(exc)


def _fbp_via_document(text: str, cs: bool) -> Any:
    try:
        return noflo.from_dict(fbp.parse(text, case_sensitive=cs, strict=True), "fbp")
    except rf.GraphFormatError as exc:
        return str(exc)


@settings(max_examples=long_scale(500), deadline=None)
@given(_fbp_text(), st.booleans())
def test_fbp_bulk_runs_give_the_grammar_graph(text: str, cs: bool) -> None:
    bulk = fbp_graph(text, cs, fast=True)
    _same(bulk, fbp_graph(text, cs, fast=False))
    _same(bulk, _fbp_via_document(text, cs))


@st.composite
def _plain_runs(draw: st.DrawFn) -> str:
    """Only rows the plain fast path takes (one space apart, no index), from few names
    and ports in several spellings, in runs split by other statements: the same edge
    often comes again, in another run, spelled in another case (lower-case runs and
    mixed-case runs take different splits; their rows must still compare as edges)."""
    names = ["a", "b", "B", "n1"]
    lines = [f"{n}(c)" for n in names]
    for _ in range(draw(st.integers(1, 8))):
        for _ in range(draw(st.integers(1, 8))):
            lines.append(f"{draw(st.sampled_from(names))} "
                         f"{draw(st.sampled_from(['out', 'OUT', 'Out', 'err']))} -> "
                         f"{draw(st.sampled_from(['in', 'IN', 'x.y']))} "
                         f"{draw(st.sampled_from(names))}")
        lines.append(draw(st.sampled_from(["# cut", "q(c)", "", "'v' -> in a"])))
    return "\n".join(lines) + draw(st.sampled_from(["\n", ""]))


@settings(max_examples=long_scale(400), deadline=None)
@given(_plain_runs(), st.booleans())
def test_fbp_plain_runs_share_endpoints_and_keep_each_edge_once(text: str, cs: bool) -> None:
    """The plain path reads each distinct side of a run once and shares its Endpoint;
    whether all rows are distinct edges is told by their sides. Against the grammar,
    and against the rows themselves (each distinct edge once, in first-seen order)."""
    bulk = fbp_graph(text, cs, fast=True)
    _same(bulk, fbp_graph(text, cs, fast=False))
    assert not isinstance(bulk, str)
    keys = [(e.src, e.tgt) for e in bulk.edges]
    assert len(set(keys)) == len(keys)
    fold = (lambda p: p) if cs else str.lower
    rows = [line.split(" ") for line in text.split("\n") if " -> " in line
            and not line.startswith("'")]
    want = list(dict.fromkeys((Endpoint(r[0], fold(r[1])), Endpoint(r[4], fold(r[3])))
                              for r in rows))
    assert keys == want
    parser = fbp._Parser(text, cs, strict=True)
    parser._scan()
    assert parser.distinct() == (len(want) == len(rows))  # (no two rows hash alike here)


@settings(max_examples=long_scale(60), deadline=None)
@given(st.integers(1, 300), st.integers(0, 2**32), st.booleans())
def test_fbp_written_graphs_read_back_in_bulk_as_by_the_grammar(n: int, seed: int,
                                                                 cs: bool) -> None:
    """Texts the writer emits (long runs, the plain fast path) against the grammar."""
    import random

    rng = random.Random(seed)
    g = rf.Graph("w", case_sensitive=cs)
    for i in range(n):
        g.add_node(f"{'N' if i % 3 else 'n'}{i}", rng.choice(["a/B", "c"]))
    ids = list(g.nodes)
    for _ in range(2 * n):
        g.add_edge(rng.choice(ids), rng.choice(["out", "Out", "err"]), rng.choice(ids),
                   rng.choice(["in", "IN"]))
    g.add_iip(1, ids[0], "in")
    text = g.dumps("fbp")
    bulk = fbp_graph(text, cs, fast=True)
    _same(bulk, fbp_graph(text, cs, fast=False))
    assert not isinstance(bulk, str) and bulk.edges == fbp.loads(text, case_sensitive=cs).edges


@settings(max_examples=long_scale(300), deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["out", "OUT", "err"]),
                          st.sampled_from(["in", "In"]), st.sampled_from(["a", "b"]),
                          st.sampled_from([" ", " ", " ", "  "]), st.integers(0, 5)),
                min_size=1, max_size=40),
       st.booleans(), st.booleans())
def test_fbp_repeated_rows_are_kept_once_as_by_the_grammar(
        rows: list[tuple[str, str, str, str, str, int]], cs: bool, iip: bool) -> None:
    """Rows that repeat (as written, in another case, with other spacing, in another
    run) are one connection: what the bulk path vouches distinct must be."""
    lines = ["a(c)", "b(c)"]
    for s, sp, tp, t, gap, cut in rows:
        lines.append(f"{s}{gap}{sp} -> {tp} {t}")
        if cut == 0:  # ends the run: the next rows are another run
            lines.append("# x")
    if iip:
        lines.append("'v' -> in a")
    text = "\n".join(lines) + "\n"
    bulk = fbp_graph(text, cs, fast=True)
    _same(bulk, fbp_graph(text, cs, fast=False))
    _same(bulk, _fbp_via_document(text, cs))


def test_fbp_bulk_errors_name_the_first_bad_row() -> None:
    rows = "".join(f"n{i}(c)\n" for i in range(5)) + "n0 out -> in n1\n" \
        "n1 out[99999999999] -> in n2\nn2 out[88888888888] -> in n3\n"
    for fast in (True, False):
        got = fbp_graph(rows, False, fast)
        assert isinstance(got, str) and "99999999999" in got and "line 7" in got, got
    undeclared = "n0(c)\nn0 out -> in n1\nn0 out -> in n2\n"
    assert fbp_graph(undeclared, False, True) == fbp_graph(undeclared, False, False)
    assert "undefined target node \"n1\"" in fbp_graph(undeclared, False, True)


# -- JSON: EdgeBuffer against add_edge -------------------------------------------------------


class _OneByOne:
    """The readers' old path: each edge through Graph.add_edge at once."""

    def __init__(self, graph: rf.Graph) -> None:
        self.graph = graph

    def add(self, src_node: str, src_port: str, tgt_node: str, tgt_port: str,
            src_index: int | None, tgt_index: int | None, meta: dict[str, Any],
            cap: int | None) -> None:
        self.graph.add_edge(src_node, src_port, tgt_node, tgt_port, src_index=src_index,
                            tgt_index=tgt_index, metadata=meta, capacity=cap)

    def flush(self) -> None:
        pass


_META = st.sampled_from([None, None, {}, {"capacity": 3}, {"route": 1},
                         {"capacity": 2, "k": [1]}])
_BAD_META = st.sampled_from([{"capacity": 0}, {"capacity": "x"}, {"capacity": True}])


@st.composite
def _json_doc(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A NoFlo document (written as Reflow's too) whose connections are mostly valid,
    repeated now and then, and one in ten broken (undeclared node, empty port, bad
    capacity): the readers must agree on the graph, or on the first error."""
    names = draw(st.lists(_NAMES, min_size=1, max_size=6, unique=True))
    procs = {name: {"component": draw(_COMPS)} for name in names}
    node, port = st.sampled_from(names), _PORTS
    conns: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 16))):
        bad = draw(st.integers(0, 9)) == 0
        tgt = {"process": draw(st.sampled_from(["ghost", ""]) if bad and draw(st.booleans())
                               else node), "port": draw(port)}
        if draw(st.booleans()):
            tgt["index"] = draw(st.sampled_from([0, 2, 2**31 - 1]))
        if draw(st.integers(0, 4)) == 0:
            conns.append({"data": draw(st.sampled_from([1, "x", None, [1, {"a": 2}]])),
                          "tgt": tgt})
            continue
        src = {"process": draw(node), "port": "" if bad and draw(st.booleans())
               else draw(port)}
        if draw(st.booleans()):
            src["index"] = draw(st.sampled_from([0, 1]))
        conn: dict[str, Any] = {"src": src, "tgt": tgt}
        meta = draw(_BAD_META if bad and draw(st.booleans()) else _META)
        if meta is not None:
            conn["metadata"] = meta
        conns.append(conn)
        if draw(st.integers(0, 3)) == 0:
            conns.append(json.loads(json.dumps(conn)))  # a repeated edge
    doc = {"processes": procs, "connections": conns,
           "caseSensitive": draw(st.booleans())}
    return draw(st.sampled_from(["noflo", "reflow"])), doc


def _from_json(fmt: str, doc: dict[str, Any]) -> Any:
    text = json.dumps(doc if fmt == "noflo" else formats.to_dict(
        noflo.from_dict(json.loads(json.dumps(doc)), "noflo"), "reflow"))
    try:
        return formats.loads(text, fmt)
    except rf.GraphFormatError as exc:
        return str(exc)


@settings(max_examples=long_scale(500), deadline=None)
@given(_json_doc())
def test_json_readers_buffered_edges_give_the_add_edge_graph(
        case: tuple[str, dict[str, Any]]) -> None:
    fmt, doc = case
    try:
        noflo.from_dict(json.loads(json.dumps(doc)), "noflo")
    except rf.GraphFormatError:
        if fmt == "reflow":
            return  # no Reflow document to write from a refused NoFlo one
    bulk = _from_json(fmt, doc)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(noflo, "EdgeBuffer", _OneByOne)
        m.setattr(formats.reflow, "EdgeBuffer", _OneByOne)
        one = _from_json(fmt, doc)
    _same(bulk, one)


def test_edge_buffer_is_what_the_readers_use() -> None:
    assert noflo.EdgeBuffer is _util.EdgeBuffer is formats.reflow.EdgeBuffer


# -- Graph._extend(checked=True) against add_node/add_edge ---------------------------------------


@settings(max_examples=long_scale(400), deadline=None)
@given(st.lists(_NAMES, unique=True, min_size=1),
       st.lists(st.tuples(st.integers(0, 7), _PORTS, st.integers(0, 7), _PORTS,
                          st.sampled_from([None, 0, 1])), max_size=30),
       st.booleans())
def test_checked_extend_gives_the_one_by_one_graph(
        names: list[str], rows: list[tuple[int, str, int, str, int | None]],
        presized: bool) -> None:
    one = rf.Graph("g")
    bulk = rf.Graph("g")
    bulk._recording = False
    if presized:  # an index that already holds an edge: the other branch of _extend
        for g in (one, bulk):
            g.add_node("pre", "c")
            g.add_edge("pre", "out", "pre", "in")
    for name in names:
        one.add_node(name, "c")
    bulk._extend([Node(name, "c", {}) for name in names], checked=True)
    edges = []
    for s, sp, t, tp, idx in rows:
        src, tgt = names[s % len(names)], names[t % len(names)]
        one.add_edge(src, sp, tgt, tp, src_index=idx)
        edges.append(Edge(Endpoint(src, bulk.port_name(sp), idx),
                          Endpoint(tgt, bulk.port_name(tp)), {}, None))
    bulk._extend(edges=edges, checked=True)
    bulk._recording = True
    _same(bulk, one)
    # The bulk graph is an ordinary graph afterwards: edits and undo work on it.
    for g in (one, bulk):
        if g.edges:
            e = g.edges[0]
            g.remove_edge(e.src.node, e.src.port, e.tgt.node, e.tgt.port,
                          src_index=e.src.index)
            g.add_edge(e.src.node, e.src.port, e.tgt.node, e.tgt.port,
                       src_index=e.src.index)
    _same(bulk, one)
