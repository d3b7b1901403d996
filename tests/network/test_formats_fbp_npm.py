"""The .fbp reader against the reference: the npm ``fbp`` parser (tests/js/node_modules).

Every text of the corpus is parsed by node (``require("fbp").parse``) and by
:func:`reflowpy.network.formats.fbp.parse`; the JSON documents must be equal, and a
text npm rejects must be rejected too. Our writer's output is checked the same way.
Skips only when ``node`` is not installed (CI has it); a missing npm package fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import reflowpy as rf
from reflowpy.network.formats import fbp

JS = Path(__file__).parent.parent / "js"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "graphs"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.npm,
    pytest.mark.skipif(NODE is None, reason="node is not installed"),
]

_RUNNER = """
const fbp = require(process.argv[1]);
let input = '';
process.stdin.on('data', d => input += d);
process.stdin.on('end', () => {
  const out = JSON.parse(input).map(([text, cs]) => {
    try { return {ok: fbp.parse(text, {caseSensitive: cs})}; }
    catch (e) { return {error: String(e.message)}; }
  });
  process.stdout.write(JSON.stringify(out));
});
"""

CORPUS: list[tuple[str, bool]] = [
    # plain edges, default ports, case folding
    ("Read(ReadFile) OUT -> IN Display(Output)\n", False),
    ("Read(ReadFile) OUT -> IN Display(Output)\n", True),
    ("A(Comp) -> B(Comp2)\n", False),
    ("A(Comp) -> B(Comp2)\n", True),
    ("a(x) Out -> In b(y)", False),
    # IIPs: strings, escapes, JSON literals
    ("'somefile.txt' -> SOURCE Read(ReadFile)\n", False),
    ("'it\\'s' -> IN A(B)\n'a\\\\b' -> IN A\n'' -> IN A\n", False),
    ("'multi\nline' -> IN A(B)\n", False),
    ('5 -> IN A(B)\n-3.5e2 -> IN A\n0 -> IN A\n1E+3 -> IN A\n', False),
    ('{"a": [1, 2, {"b": null}], "c": "\\u00e9\\n\\t"} -> CONFIG A(B)\n', False),
    ('[] -> IN A(B)\n{} -> IN A\n[true, false, null] -> IN A\n', False),
    ('\ttrue -> IN A(B)\n\tnull -> IN A\n\tfalse -> IN A\n', False),
    ("true -> IN A(B)\n", False),  # 'true' is a node name here: an error in both
    ('{"multi":\n  [1,\n   2]} -> IN A(B)\n', False),
    # chains and bridges
    ("'5' -> IN A(Comp) OUT -> IN B(C2) OUT -> IN C(C3)\n", False),
    ("A(X) OUT -> IN B(Y) OUT -> IN C(Z)\nC OUT -> IN A\n", False),
    ("'x' -> IN A(B) OUT\n", False),
    # addressable ports
    ("A(X) OUT[2] -> IN[0] B(Y)\nA OUT[10] -> IN[1] B\n", False),
    ("Split(Splitter) OUT[0] -> IN Left(Out), Split OUT[1] -> IN Right(Out)\n", False),
    # anonymous nodes
    ("(core/Repeat) OUT -> IN (core/Repeat) OUT -> IN (core/Out)\n", False),
    ("'x' -> IN (a/b/c) OUT -> IN (a-b_c)\n", False),
    # node metadata
    ("A(Comp:x=12,y=34) OUT -> IN B(Comp:red,label=foo)\n", False),
    ("A(Comp:x=1e3,y=abc) OUT -> IN B(Comp:a=b=c,,z)\n", False),
    ("A(Comp:routes=r1) -> B(C)\nA(Other) -> B\n", False),
    # exported ports and defaults
    ("INPORT=Read.SOURCE:FILENAME\nOUTPORT=Display.OUT:OUT\n"
     "Read(ReadFile) OUT -> IN Display(Output)\n", False),
    ("INPORT=Read.Source:FileName\nRead(ReadFile) OUT -> IN Display(Output)\n", True),
    ("INPORT=Missing.IN:X\nA(B)\n", False),
    ("DEFAULT_INPORT=Foo\nDEFAULT_OUTPORT=Bar\nA(B) -> C(D)\n", False),
    ("DEFAULT_INPORT=Foo\nA(B) -> C(D)\n", True),
    # annotations and comments
    ("# @name MyGraph\n# @runtime noflo-nodejs\n# @description a b.c\nA(B)\n", False),
    ("# @name last-line-without-newline", False),
    ("#@name notanannotation\n# just a comment\n  # indented comment\nA(B) # trailing\n",
     False),
    ("  # @name indented\nA(B)\n", False),
    ("A(B) OUT -> IN C(D) # comment\n\n\n\r\nE(F)\r\n", False),
    # multiple statements per line, spacing
    ("A(B) OUT -> IN C(D), E(F) OUT -> IN G(H)\n", False),
    ("A(B)   OUT   ->   IN   C(D)\n", False),
    ("A(B) OUT->IN C(D)\n", False),
    ("a-b(x) out.x -> in.y c_d(y)\n", False),
    # errors in both
    ("A(B) OUT -> IN C\n", False),
    ("A() OUT -> IN B(C)\n", False),
    ("A(B) OUT -> -> C(D)\n", False),
    ("'unterminated -> IN A(B)\n", False),
    ("A(B) OUT -> IN C(D)\nthis is not -> valid ->\n", False),
    ("", False),
    ("this is not a graph at all", False),
    # a bridge at the end of a line joins the next line's first target
    ("'x' -> IN A(B) OUT\nIN C(D)\n", False),
]


def _npm(texts: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    package = JS / "node_modules" / "fbp"
    assert package.exists(), "run `make js` (npm ci in tests/js) first"
    assert NODE is not None
    proc = subprocess.run([NODE, "-e", _RUNNER, str(package)], input=json.dumps(texts),
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _ours(text: str, cs: bool) -> dict[str, Any]:
    try:
        return {"ok": json.loads(json.dumps(fbp.parse(text, case_sensitive=cs)))}
    except rf.GraphFormatError as exc:
        return {"error": str(exc)}


def _writer_texts() -> list[str]:
    g = rf.Graph("written", properties={"environment": {"type": "python"}, "author": "x"})
    g.add_node("a", "core/Repeat", {"x": 10, "y": 20, "color": "red"})
    g.add_node("true", "core/Node")
    g.add_node("b-2", "math/Double")
    g.add_edge("a", "out", "b-2", "in", src_index=1, tgt_index=3)
    g.add_edge("true", "out.x", "a", "in")
    for data in ("it's", "back\\slash\\", "", 5, -2.5, 1e-07, True, False, None,
                 [1, {"k": "v"}], {"a": "\n\u2028"}, "line\nbreak"):
        g.add_iip(data, "a", "in")
    g.add_iip("x", "true", "in", index=4)
    g.add_inport("numbers", "b-2", "in")
    g.add_outport("out.put", "b-2", "out")
    texts = [g.dumps("fbp")]
    for name in ("clock.fbp", "noflo_clock.json"):
        texts.append(rf.Graph.load(FIXTURES / name).dumps("fbp"))
    return texts


def test_corpus_matches_npm_fbp_parser() -> None:
    corpus = CORPUS + [(t, False) for t in _writer_texts()]
    assert len(corpus) >= 30
    expected = _npm(corpus)
    mismatches = []
    for (text, cs), want in zip(corpus, expected, strict=True):
        got = _ours(text, cs)
        if ("ok" in want) != ("ok" in got) or ("ok" in want and want["ok"] != got["ok"]):
            mismatches.append((text, cs, want, got))
    assert not mismatches, json.dumps(mismatches, indent=1)
    ok = sum(1 for w in expected if "ok" in w)
    assert ok >= 30 and len(expected) - ok >= 6  # both accepted and rejected texts


def test_writer_output_reads_back_the_same_graph_in_npm() -> None:
    g = rf.Graph.load(FIXTURES / "clock.fbp")
    text = g.dumps("fbp")
    (result,) = _npm([(text, False)])
    assert rf.Graph.from_dict(result["ok"], "noflo") == g
