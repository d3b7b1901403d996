"""The graph's edge index (``graph._EdgeIndex``) and its lazy build after a bulk load.

The index answers "is ``src -> tgt`` stored?" for add_edge and find_edge. It is kept
per source endpoint (an Edge while one connection leaves that port, a dict from the
second on), and a reader that vouches its edges are distinct leaves it unbuilt until
the first edit needs it. Both are checked against models:

* the index against a plain dict keyed by ``(src, tgt)``, under random sequences of
  setdefault / replace / pop / get;
* a graph loaded in bulk (index not built) against the same graph built one call at a
  time (index built as it goes), under random sequences of edits, lookups, renames,
  copies, undo and redo: every call returns the same thing or raises the same error
  text, and the graphs stay equal with their edges in the same order.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.network.graph import Edge, Endpoint, Node, _EdgeIndex
from tests.scale import long_scale

_NODES = ["a", "b", "c", "d"]
# Few distinct endpoints, so that ports fan out (several edges from one source) often.
_ENDS = st.builds(Endpoint, st.sampled_from(_NODES[:2]), st.sampled_from(["out", "in"]),
                  st.sampled_from([None, None, 0]))


def _check(index: _EdgeIndex, model: dict[tuple[Endpoint, Endpoint], Edge]) -> None:
    assert len(index) == len(model)
    assert sorted(index, key=repr) == sorted(model, key=repr)
    for (src, tgt), edge in model.items():
        assert index.get(src, tgt) is edge


@settings(max_examples=long_scale(400), deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "add", "replace", "pop", "get"]),
                          _ENDS, _ENDS), max_size=40),
       st.lists(st.tuples(_ENDS, _ENDS), max_size=12))
def test_edge_index_is_a_dict_by_both_ends(ops: list[tuple[str, Endpoint, Endpoint]],
                                           initial: list[tuple[Endpoint, Endpoint]]) -> None:
    edges = [Edge(s, t) for s, t in initial]
    model: dict[tuple[Endpoint, Endpoint], Edge] = {}
    for e in edges:
        model.setdefault((e.src, e.tgt), e)
    index = _EdgeIndex(edges)  # the build: one C-level pass, or edge by edge on fan-out
    _check(index, model)
    for op, src, tgt in ops:
        edge = Edge(src, tgt, {"n": len(model)})
        if op == "add":
            assert index.setdefault(edge) is model.setdefault((src, tgt), edge)
        elif op == "replace":
            if (src, tgt) in model:
                assert index.replace(edge) is model[(src, tgt)]
                model[(src, tgt)] = edge
            else:
                try:
                    index.replace(edge)
                except KeyError:
                    pass
                else:
                    raise AssertionError("replace of a missing edge must raise KeyError")
        elif op == "pop":
            if (src, tgt) in model:
                assert index.pop(src, tgt) is model.pop((src, tgt))
            else:
                try:
                    index.pop(src, tgt)
                except KeyError:
                    pass
                else:
                    raise AssertionError("pop of a missing edge must raise KeyError")
        else:
            assert index.get(src, tgt) is model.get((src, tgt))
        _check(index, model)


# -- a bulk-loaded graph behaves as one built call by call --------------------------------

_PORT = st.sampled_from(["out", "in", "OUT"])
_IDX = st.sampled_from([None, None, 0])
_NODE = st.sampled_from(["a", "b", "a", "b", "c", "e", "ghost"])
_OP = st.one_of(
    st.tuples(st.just("add_edge"), _NODE, _PORT, _NODE, _PORT, _IDX),
    st.tuples(st.just("remove_edge"), _NODE, _PORT, _NODE, _PORT, _IDX),
    st.tuples(st.just("find_edge"), _NODE, _PORT, _NODE, _PORT, _IDX),
    st.tuples(st.just("set_edge_metadata"), _NODE, _PORT, _NODE, _PORT, _IDX),
    st.tuples(st.sampled_from(["set_edge_metadata", "remove_edge", "find_edge"]),
              st.integers(0, 30)),  # on a stored edge (the i-th)
    st.tuples(st.just("rename_node"), _NODE, st.sampled_from(["a", "z", "y2"])),
    st.tuples(st.just("remove_node"), _NODE),
    st.tuples(st.just("add_node"), st.sampled_from(["e", "a", "f"])),
    st.tuples(st.just("undo")), st.tuples(st.just("redo")),
    st.tuples(st.just("copy")),
    st.tuples(st.just("transaction"), _NODE, _PORT, _NODE, _PORT, st.booleans()),
)


def _do(g: rf.Graph, op: tuple[Any, ...]) -> tuple[rf.Graph, Any]:
    """Apply one operation; (the graph to go on with, what it returned or raised)."""
    kind = op[0]
    if len(op) == 2 and type(op[1]) is int:
        if not g.edges:
            return g, None
        e = g.edges[op[1] % len(g.edges)]
        op = (kind, e.src.node, e.src.port, e.tgt.node, e.tgt.port, e.src.index)
    try:
        if kind in ("add_edge", "remove_edge", "find_edge", "set_edge_metadata"):
            _, s, sp, t, tp, idx = op
            if kind == "set_edge_metadata":
                edge = g.find_edge(s, sp, t, tp, src_index=idx)
                k = edge.metadata.get("k", 0) + 1  # a new value each time
                return g, g.set_edge_metadata(s, sp, t, tp, {"capacity": k, "k": k},
                                              src_index=idx)
            return g, getattr(g, kind)(s, sp, t, tp, src_index=idx)
        if kind == "rename_node":
            return g, g.rename_node(op[1], op[2])
        if kind == "remove_node":
            return g, g.remove_node(op[1])
        if kind == "add_node":
            return g, g.add_node(op[1], "c")
        if kind in ("undo", "redo"):
            return g, getattr(g, kind)()
        if kind == "copy":
            return g.copy(), None
        _, s, sp, t, tp, fail = op
        with g.transaction("t"):
            g.add_edge(s, sp, t, tp)
            g.add_edge(t, sp, s, tp)
            if fail:
                raise ValueError("rolled back")
        return g, None
    except (rf.ReflowError, ValueError) as exc:
        return g, f"{type(exc).__name__}: {exc}"


@settings(max_examples=long_scale(300), deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_NODES[:2]), _PORT, st.sampled_from(_NODES), _PORT,
                          _IDX), max_size=14, unique_by=lambda r: (r[0], r[1].lower(), r[2],
                                                                   r[3].lower(), r[4])),
       st.lists(_OP, max_size=25), st.booleans())
def test_bulk_loaded_graph_edits_as_one_built_call_by_call(
        rows: list[tuple[str, str, str, str, int | None]], ops: list[tuple[Any, ...]],
        vouched: bool) -> None:
    one = rf.Graph("g")
    for name in _NODES:
        one.add_node(name, "c")
    for s, sp, t, tp, idx in rows:
        one.add_edge(s, sp, t, tp, src_index=idx)
    one.clear_history()
    bulk = rf.Graph("g")
    bulk._recording = False
    bulk._extend([Node(name, "c", {}) for name in _NODES], checked=True)
    bulk._extend(edges=[Edge(Endpoint(s, bulk.port_name(sp), idx),
                             Endpoint(t, bulk.port_name(tp))) for s, sp, t, tp, idx in rows],
                 checked=True, distinct=vouched)
    bulk._recording = True
    assert bulk._index is None  # the index is not built by the load
    log_one: list[Any] = []
    log_bulk: list[Any] = []
    for g, log in ((one, log_one), (bulk, log_bulk)):
        g.subscribe(lambda ev, log=log: log.append((ev.type, ev.before, ev.after)))
    for op in ops:
        one, got_one = _do(one, op)
        bulk, got_bulk = _do(bulk, op)
        assert got_one == got_bulk, op
        assert one == bulk, one.diff(bulk)
        assert one.edges == bulk.edges
        for g in (one, bulk):  # the index holds exactly the stored edges, by both ends
            assert len(g._edge_index) == len(g.edges)
            assert all(g._edge_index.get(e.src, e.tgt) is e for e in g.edges)
        assert one.history() == bulk.history()
    assert log_one == log_bulk  # the events until the first copy (which has no listeners)
