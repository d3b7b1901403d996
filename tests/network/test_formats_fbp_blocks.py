"""The ``.fbp`` reader's block path (``fbp._Parser._plain_block``) against the full grammar.

A 50 MB ``.fbp`` file is mostly blocks of plain rows, ``a out -> in b`` and ``a(comp)``,
which the reader checks by C-level string passes (a skeleton of the non-word
characters, counts, a copy with digits folded) instead of a regex, and hands to the bulk
builders. Those checks must accept exactly what the grammar reads as such rows: a row
they pass wrongly would become a wrong edge, a row they refuse wrongly only costs time
(``_BULK`` and the grammar read it). So every text here is read three ways and must
give the same graph (edges and IIPs in order) or the same error text, line and column
included:

* the full grammar alone (``fast = False``, the oracle);
* the fast paths with blocks of a few rows, so block edges fall everywhere;
* the fast paths with the real block size.

The texts are random graphs written as the writer writes them, with hostile rows mixed
in: comments, odd whitespace (tabs, doubled or trailing spaces, CR, CRLF, U+2028),
indices (``OUT[3]``, past int32), quoted IIPs with escapes, JSON IIPs with huge
integers, exports (``INPORT=``, ``OUTPORT=``, ``EXPORT=``), ``DEFAULT_INPORT=``,
non-ASCII names, names starting with digits or ``-``, empty components, metadata,
very long lines and unterminated last lines.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.network.formats import fbp
from tests.network.test_graph_bulk import _same
from tests.scale import long_scale

_NAMES = ["a", "b", "n1", "n_2", "Zed", "q", "x-y", "_", "très", "1a", "-z", "INPORT",
          "true", "null", "EXPORT", "DEFAULT_INPORT", "a" * 300, "Σ"]
_PORTS = ["in", "out", "IN", "Out", "x.y", "_p", "9p", "data", "OUT[3]", "in[0]",
          "out[99999999999]", "in[2147483647]", "p" * 200]
_COMPS = ["core/Repeat", "x", "My/Comp-1", "/", "", "a:k=v", "c:x=5,red", "é/ü"]
_ODD = [
    "# a comment", "#", "   ", "", "\t", "'it\\'s' -> in a", "'\\\\' -> IN b",
    '{"k": [1, "\\u00e9\\ud83d\\ude00"]} -> cfg a', "123456789012345678901234567 -> in a",
    "-9223372036854775809 -> in b", "9223372036854775807 -> in b", "1e999 -> in a",
    "INPORT=a.in:start", "OUTPORT=b.out:done", "EXPORT=a.out:res", "EXPORT=b.in:inp",
    "DEFAULT_INPORT=X", "DEFAULT_OUTPORT=y", "# @name G", "# @runtime py",
    "a out -> in b, b out -> in a", "a out -> in b # trailing", "(core/Repeat) out -> in a",
    "a OUT -> IN b(core/Repeat) OUT -> IN q", "a out ->", "-> in b", "a out -> in b,",
    "a  out -> in b", "a out  -> in b", " a out -> in b", "a out -> in b ", "a\tout -> in b",
    "a out->in b", "a out -> in b\r", "a(x) ", " a(x)", "a(x)b", "a((x))", "a(x:)",
    "a  -> in b", "a out ->  b", "1b(x)", "-b(x)",
]


@st.composite
def _hostile_fbp(draw: st.DrawFn) -> str:
    """A random graph in plain rows as the writer writes it, then hostile rows."""
    names = draw(st.lists(st.sampled_from(_NAMES), min_size=1, max_size=8, unique=True))
    plain = [n for n in names if re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", n)] or ["a"]
    comp = {n: draw(st.sampled_from(["core/Repeat", "x", "My/Comp-1"])) for n in names}
    rows: list[str] = []
    if draw(st.booleans()):
        rows += [f"{n}({comp[n]})" for n in names]
    for _ in range(draw(st.integers(0, 30))):
        src, tgt = draw(st.sampled_from(plain)), draw(st.sampled_from(plain))
        out, in_ = draw(st.sampled_from(["out", "o", "Out"])), draw(st.sampled_from(["in", "IN"]))
        rows.append(f"{src} {out} -> {in_} {tgt}")
    if draw(st.booleans()):
        rows += [f"{n}({comp[n]})" for n in names]
    for _ in range(draw(st.integers(0, 6))):  # hostile rows, anywhere
        kind = draw(st.integers(0, 3))
        if kind == 0:
            row = draw(st.sampled_from(_ODD))
        elif kind == 1:
            row = (f"{draw(st.sampled_from(_NAMES))} {draw(st.sampled_from(_PORTS))} ->"
                   f" {draw(st.sampled_from(_PORTS))} {draw(st.sampled_from(_NAMES))}")
        elif kind == 2:
            row = f"{draw(st.sampled_from(_NAMES))}({draw(st.sampled_from(_COMPS))})"
        else:
            row = draw(st.text(st.sampled_from(" ->()[]:,'\"#=.\t\r\u2028abAB01_"),
                               max_size=20))
        rows.insert(draw(st.integers(0, len(rows))), row)
    newline = draw(st.sampled_from(["\n", "\n", "\n", "\r\n", "\r", "\u2028"]))
    end = draw(st.sampled_from(["\n", "", newline]))
    return newline.join(rows) + end


def _read(text: str, cs: bool, how: str, block: int = 0) -> Any:
    """The graph (or the error text) of ``text``, read ``how``: "grammar" alone, "small"
    blocks of up to ``block`` characters (a few rows), or "real" blocks."""
    parser = fbp._Parser(text, cs, strict=True)
    parser.fast = how != "grammar"
    if how == "small":
        parser.block = block
    try:
        parser._scan()
        return fbp._graph(parser, parser._finish())
    except rf.GraphFormatError as exc:
        return str(exc)


@settings(max_examples=long_scale(400))
@given(_hostile_fbp(), st.booleans(), st.integers(8, 200))
def test_block_path_gives_what_the_full_grammar_gives(text: str, cs: bool, block: int) -> None:
    oracle = _read(text, cs, "grammar")
    _same(_read(text, cs, "small", block), oracle)
    _same(_read(text, cs, "real"), oracle)


@settings(max_examples=long_scale(200))
@given(st.lists(st.sampled_from(["a out -> in b", "b out -> in a", "a(x)", "b(y)",
                                 "a OUT -> IN b", "q o -> i a"]), max_size=40), st.booleans())
def test_block_path_documents_match_the_grammar(lines: list[str], cs: bool) -> None:
    """``parse`` (the NoFlo document) too, not only the graph."""
    text = "\n".join(lines) + "\n"

    def parse(fast: bool) -> Any:
        parser = fbp._Parser(text, cs)
        parser.fast = fast
        parser.block = 50
        try:
            return parser.parse()
        except rf.GraphFormatError as exc:
            return str(exc)

    assert parse(True) == parse(False)


def test_writer_output_goes_through_blocks() -> None:
    """The rows the writer emits are what the block path takes (else it is dead code)."""
    g = rf.Graph("w")
    for i in range(50):
        g.add_node(f"n{i}", "core/Repeat")
    for i in range(49):
        g.add_edge(f"n{i}", "out", f"n{i + 1}", "in")
        g.add_edge(f"n{i}", "OUT", f"n{(i * 7) % 50}", "data")
    text = fbp.dumps(g)
    parser = fbp._Parser(text, False, strict=True)
    parser.block = 200  # (the first block, holding the header, is refused)
    taken: list[int] = []
    plain_block = parser._plain_block

    def spy(start: int, end: int) -> bool:
        ok = plain_block(start, end)
        taken.append(end - start if ok else 0)
        return ok

    parser._plain_block = spy  # type: ignore[method-assign]
    parser._scan()
    # The node rows share their block with the header and the first edges (so _BULK
    # reads them: a block is one kind of row); the edge rows after them fill blocks.
    first_edge = text.rfind("\n", 0, text.index(" -> ")) + 1
    assert sum(taken) == len(text) - first_edge
    assert fbp._graph(parser, parser._finish()) == g


def test_block_checks_refuse_each_lookalike() -> None:
    """Each check of ``_plain_block`` on its own: a block that differs from plain rows in
    one way only is refused (the grammar reads it, with its own result or error)."""
    plain_edges = "a out -> in b\nb o -> i a\n"
    plain_nodes = "a(x)\nb(core/Repeat)\n"
    for good in (plain_edges, plain_nodes):
        assert fbp._Parser(good, False)._plain_block(0, len(good))
    lookalikes = [
        "a out -> in b\nb o x-> i a\n", "a out -> in b\nb o ->i a\n", "a out -> in  b\n",
        "a out -> in b\n b o -> i a\n", "a out -> in b \n", " a out -> in b\n",
        "1a out -> in b\n", "a 1out -> in b\n", "a out -> 2in b\n", "a out -> in 3b\n",
        "a out -> in b-c\n", "a o.ut -> in b\n", "a out[1] -> in b\n", "a out -> in b\r\n",
        "a out -> in b\tc\n", "a out -> in é\n", "a out -> in b -> in c\nd e\n",
        "a(x)b\n", "a(x)\nb()\n", "(x)\n", "-a(x)\n", "1a(x)\n", "a(x:k)\n", "a/b(x)\n",
        "a(x) \n", "a (x)\n", "a(x)\r\n", "a((x))\n", "a(x))\n", "ä(x)\n", "a(x)\n\n",
        # the skeleton alone passes these: an empty word, or a bad first character
        "a  -> in b\n", "a out ->  b\n", "a(x)\n1b(x)\n", "a(x)\n-b(x)\n",
        "a out -> in b\nc d -> e 5f\n",
    ]
    for text in lookalikes:
        assert not fbp._Parser(text, False)._plain_block(0, len(text)), text


# -- bounded work on hostile text ----------------------------------------------------------


def _alternating(n: int) -> str:
    """Plain node rows, each followed by one the block checks refuse (metadata)."""
    return "".join(f"n{i}(x)\nm{i}(x:k=v)\n" for i in range(n))


def test_each_character_is_in_two_block_checks_at_most() -> None:
    """A refused block is not checked again from each of its rows (that was quadratic)."""
    for text in (_alternating(3000), "a out -> in b\n" * 50 + "'x' -> in a\n" * 3000,
                 "a(x)\n" * 3 + "# c\n" * 5000):
        parser = fbp._Parser(text, False, strict=True)
        checked: list[int] = []

        def spy(start: int, end: int, plain_block: Any = parser._plain_block,
                checked: list[int] = checked) -> bool:
            checked.append(end - start)
            return bool(plain_block(start, end))

        parser._plain_block = spy  # type: ignore[method-assign]
        with contextlib.suppress(rf.GraphFormatError):
            parser._scan()
        assert sum(checked) <= 2 * len(text)


class _CountingPattern:
    """A compiled pattern that counts its ``finditer`` calls."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern, self.calls = pattern, 0

    def finditer(self, *args: Any) -> Any:
        self.calls += 1
        return self.pattern.finditer(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pattern, name)


def test_nodes_declared_again_read_the_runs_once(monkeypatch: Any) -> None:
    """Each node of a run declared again (with metadata, or in a second run) asks where
    it was first declared: one pass over the runs answers all (was one regex scan of
    every run per node: 40k lines took a minute)."""
    n = 4000
    run = "".join(f"n{i}(bench/Step)\n" for i in range(n))
    again = "".join(f"n{i}(bench/Step:k=v)\n" for i in range(n))
    for text in (run + again, run + run):
        counting = _CountingPattern(fbp._NODE_ROW)
        monkeypatch.setattr(fbp, "_NODE_ROW", counting)
        graph = fbp.loads(text)
        monkeypatch.undo()
        assert len(graph.nodes) == n
        assert counting.calls <= 2 + text.count("\n") // 1000  # per run, not per node
        assert _read(text, False, "grammar") == graph


def test_a_colon_ending_a_key_is_looked_for_first() -> None:
    """``_looks_yaml`` says what its regex says, whatever the text."""
    from reflowpy.network import formats

    pieces = ["processes", "connections", ":", " ", "\t", "\n", "'", '"', "---", "%YAML",
              "a", "inports:", "x: y", ":\n", "groups :"]

    @settings(max_examples=long_scale(300))
    @given(st.lists(st.sampled_from(pieces), max_size=12))
    def check(parts: list[str]) -> None:
        text = "".join(parts)
        assert formats._looks_yaml(text) == (formats._YAML_HINT.search(text) is not None)

    check()
