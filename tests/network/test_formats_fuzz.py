"""Fuzzing every graph reader: whatever the text, only reflowpy errors, in bounded time.

Three sources of hostile text, all seeded (the ``ci`` hypothesis profile):

* the checked-in seed corpus ``tests/fixtures/fuzz/`` (one file per class of input that
  broke the readers once: scalars where lists belong, nesting thousands deep, integers
  past 4300 digits, lone surrogates, non-string keys, YAML alias bombs and recursive
  aliases, duplicate ids, legacy ``EXPORT=``), each read in a child process under a
  1 GB address-space limit and a wall-clock guard;
* mutations of the corpus and of the real fixtures (bytes flipped, spliced, cut, and
  hostile snippets inserted);
* generated documents: random JSON-like values in every field of the Reflow and NoFlo
  structures, written as JSON and YAML, and random token streams of the ``.fbp`` DSL.

Every text is read detected and as each format, and whatever loads is written back in
every format: the only exception allowed is :class:`~reflowpy.ReflowError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.network import formats
from tests.network.test_graph_bulk import fbp_graph
from tests.scale import long_scale

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fixtures" / "fuzz"
GRAPHS = ROOT / "tests" / "fixtures" / "graphs"
SEEDS = sorted(CORPUS.iterdir())
SEED_TEXTS = [p.read_bytes() for p in SEEDS if p.suffix != ".md"] + [
    p.read_bytes() for p in sorted(GRAPHS.iterdir())]
GUARD_S = 20  # a guard against hangs, not a timing: a case normally takes milliseconds


@contextmanager
def _guard(seconds: int = GUARD_S) -> Iterator[None]:
    def expired(*_: Any) -> None:
        raise TimeoutError(f"a graph reader ran for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def read_everything(text: str | bytes) -> int:
    """Read ``text`` detected and as every format, write what loads in every format.
    Returns how many reads succeeded; raises anything that is not a ReflowError."""
    loaded = 0
    with _guard():
        for fmt in (None, *formats.FORMATS):
            try:
                graph = formats.loads(text, fmt)
            except rf.ReflowError:
                continue
            loaded += 1
            for out in formats.FORMATS:
                try:
                    written = formats.dumps(graph, out)
                except rf.ReflowError:
                    continue
                written.encode("utf-8")  # what is written can be saved
                if out != "fbp":
                    again = formats.loads(written, out)
                    assert again == graph, again.diff(graph)
    return loaded


# -- the seed corpus ------------------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    from tests.network.test_formats_fuzz import read_everything
    for path in sys.argv[1:]:
        try:
            n = read_everything(open(path, "rb").read())
            print(json.dumps({"file": path, "loaded": n}), flush=True)
        except BaseException as exc:
            print(json.dumps({"file": path, "raised": type(exc).__name__ + ": " + str(exc)[:200]}),
                  flush=True)
""")


def test_seed_corpus_has_every_class_of_the_issue() -> None:
    names = {p.name for p in SEEDS}
    for needed in ("scalar_connections.json", "scalar_connections.yaml", "deep_document.json",
                   "deep_iip.fbp", "deep_porttype.json", "deep_iip.yaml",
                   "bigint_metadata.json", "bigint_iip.fbp", "bigint_index.fbp",
                   "surrogate_component.json", "nonstring_key.yaml",
                   "billion_laughs.yaml", "recursive_alias.yaml", "duplicate_process.json",
                   "duplicate_process.yaml", "duplicate_process.fbp", "tag_error.yaml",
                   "export_legacy.fbp"):
        assert needed in names
    assert len(SEEDS) >= 60


def test_seed_corpus_only_reflow_errors_within_1gb() -> None:
    files = [str(p) for p in SEEDS if p.suffix != ".md"]
    proc = subprocess.run([sys.executable, "-c", _CHILD, *files], capture_output=True,
                          text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == len(files)
    raised = [r for r in results if "raised" in r]
    assert not raised, raised


@pytest.mark.parametrize("name, fmt, words", [
    ("scalar_connections.json", "noflo", ["connections", "Expected `array`, got `int`"]),
    ("scalar_connections.yaml", "yaml", ["connections", "array"]),
    ("deep_document.json", "json", ["nested more than 64 levels"]),
    ("deep_metadata.json", "json", ["nested more than 64 levels"]),
    ("deep_iip.fbp", "fbp", ["line 1", "nested more than 64 levels"]),
    ("deep_iip.yaml", "yaml", ["connections[0].data", "nested more than 64 levels"]),
    ("deep_porttype_string.json", "reflow", ["connections[0].from.portType",
                                             "nested more than 32"]),
    ("bigint_metadata.json", "json", ["line 1, column 58", "5000 digits"]),
    ("bigint_iip.fbp", "fbp", ["line 1, column 1", "5000 digits"]),
    ("bigint_index.fbp", "fbp", ["port index", "out of range"]),
    ("bigint.yaml", "yaml", ["line 4", "out of range"]),
    ("surrogate_component.json", "json", ["line 1, column 36", "lone UTF-16 surrogate"]),
    ("surrogate.yaml", "yaml", ["line 2", "invalid Unicode"]),
    ("nonstring_key.yaml", "yaml", ["env_vars", "must be a string, got int"]),
    ("binary.yaml", "yaml", ["processes.a.metadata.blob", "bytes value is not JSON"]),
    ("billion_laughs.yaml", "yaml", ["expands to more than", "aliases"]),
    ("merge_bomb.yaml", "yaml", ["expands to more than"]),
    ("recursive_alias.yaml", "yaml", ["processes.a.metadata.k", "contains itself"]),
    ("duplicate_process.json", "noflo", ["'a' is defined twice (line 1, column 16 and"
                                         " line 2, column 2)"]),
    ("duplicate_process_reflow.json", "reflow", ["line 1, column 16 and line 3, column 3"]),
    ("duplicate_process.yaml", "yaml", ["'a' is defined twice", "line 2 and line 3"]),
    ("duplicate_process.fbp", "fbp", ["'A' is declared twice", "line 1, column 1",
                                      "line 2, column 1"]),
    ("duplicate_inport.json", "noflo", ["inports.p", "inport 'p' is defined twice",
                                        "line 2, column 14 and line 3, column 14"]),
    ("duplicate_metadata_key_reflow.json", "reflow", [
        "processes.a.metadata.label", "line 2, column 16 and line 2, column 30"]),
    ("duplicate_tgt.json", "noflo", ["connections[0].tgt", "line 2, column 14 and line 3"]),
    ("duplicate_iip_key.fbp", "fbp", ["key 'k' is defined twice",
                                      "line 1, column 2 and line 2, column 2"]),
    ("duplicate_inport.yaml", "yaml", ["key 'p' is defined twice", "line 4 and line 5"]),
    ("tag_error.yaml", "yaml", ["line 2"]),
    ("python_tag.yaml", "yaml", ["python/object"]),
    ("export_ambiguous.fbp", "fbp", ["INPORT=A.config:cfg"]),
])
def test_each_class_gets_a_clear_error_in_the_detected_format(
        name: str, fmt: str, words: list[str]) -> None:
    with pytest.raises(rf.GraphFormatError) as info:
        formats.load(CORPUS / name)
    message = str(info.value)
    assert message.startswith(f"not a valid {fmt}"), message
    assert str(CORPUS / name) in message
    for word in words:
        assert word in message, message


def test_legacy_export_and_yaml_subtleties_load() -> None:
    g = formats.load(CORPUS / "export_legacy.fbp")
    assert g.inports["in"] == rf.ExportedPort("Merge", "in")
    assert g.outports["out"] == rf.ExportedPort("Split", "out")
    g = formats.load(CORPUS / "duplicate_key_merge_ok.yaml")  # a merge key may be overridden
    assert g.nodes["a"].component == "y" and g.nodes["a"].metadata == {"k": 1}
    g = formats.load(CORPUS / "timestamp.yaml")  # dates stay strings, as in JSON
    assert g.nodes["x" if "x" in g.nodes else "a"].metadata["when"] == "2024-01-01"


# -- mutations ----------------------------------------------------------------------------

_SNIPPETS = ["[" * 80, "{" * 80, '"\\ud800"', "9" * 30, "&a [*a]", "*a", "!!binary x",
             "!!python/name:os.system", "\x00", "\ufeff", "EXPORT=A.B:C\n", "-> ->", "'",
             '"', "\n  - ", ": ", "<<: *a", "\\u0000", "1e999", "null", "[]", "{}",
             '"processes": 5', "connections:\n", "\r\n", "# @name x\n", "OUT[99999999999]"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEED_TEXTS))[:4000])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "snippet", "dup"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:at + draw(st.integers(1, 40))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=20))
        elif op == "snippet":
            data[at:at] = draw(st.sampled_from(_SNIPPETS)).encode("utf-8", "surrogatepass")
        else:
            end = min(len(data), at + draw(st.integers(1, 200)))
            data[at:at] = data[at:end]
    return bytes(data)


@settings(max_examples=long_scale(1500))
@given(mutated())
def test_mutated_files_raise_only_reflow_errors(text: bytes) -> None:
    read_everything(text)


@settings(max_examples=long_scale(300))
@given(mutated())
def test_mutated_text_handed_as_str_with_surrogates(text: bytes) -> None:
    read_everything(text.decode("utf-8", "surrogateescape"))


# -- generated documents ----------------------------------------------------------------

_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
            | st.floats(allow_nan=True) | st.text(max_size=8)
            | st.sampled_from(["a", "b", "in", "out", "IN", "Output", "core/Repeat", ""]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.sampled_from(["a", "b", "process", "port",
                                                          "nodeId", "portId", "type",
                                                          "value", "data", "index"]),
                                         inner, max_size=4), max_leaves=12)


def _end(reflow: bool) -> st.SearchStrategy[Any]:
    if reflow:
        return st.fixed_dictionaries({}, optional={
            "nodeId": _VALUES | st.sampled_from(["a", "b"]),
            "portId": _VALUES | st.sampled_from(["in", "out"]),
            "portName": _VALUES, "index": _VALUES, "expose": _VALUES, "data": _VALUES,
            "metadata": _VALUES, "portType": _VALUES | st.sampled_from(
                [{"type": "array", "value": {"type": "integer"}}, "integer", {"type": "x"}])})
    return st.fixed_dictionaries({}, optional={
        "process": _VALUES | st.sampled_from(["a", "b"]),
        "port": _VALUES | st.sampled_from(["in", "out"]), "index": _VALUES})


def _document(reflow: bool) -> st.SearchStrategy[Any]:
    process = st.fixed_dictionaries({}, optional={
        "component": _VALUES | st.just("core/Repeat"), "id": _VALUES, "metadata": _VALUES})
    if reflow:
        conn = st.fixed_dictionaries({}, optional={"from": _end(True) | _VALUES,
                                                   "to": _end(True) | _VALUES,
                                                   "data": _VALUES, "metadata": _VALUES})
    else:
        conn = st.fixed_dictionaries({}, optional={"src": _end(False) | _VALUES,
                                                   "tgt": _end(False) | _VALUES,
                                                   "data": _VALUES, "metadata": _VALUES})
    table = st.dictionaries(st.sampled_from(["p", "q", "IN"]), _end(reflow) | _VALUES,
                            max_size=3) | _VALUES
    return st.fixed_dictionaries({}, optional={
        "processes": st.dictionaries(st.sampled_from(["a", "b", "c"]), process | _VALUES,
                                     max_size=3) | _VALUES,
        "connections": st.lists(conn | _VALUES, max_size=4) | _VALUES,
        "inports": table, "outports": table,
        "groups": st.lists(st.fixed_dictionaries({}, optional={
            "name": _VALUES, "id": _VALUES, "nodes": _VALUES, "metadata": _VALUES}),
            max_size=2) | _VALUES,
        "properties": _VALUES, "caseSensitive": _VALUES,
        "graph_dependencies": _VALUES, "external_connections": _VALUES,
    })


@settings(max_examples=long_scale(700))
@given(st.booleans().flatmap(_document), st.sampled_from(["json", "yaml"]))
def test_generated_documents_raise_only_reflow_errors(doc: Any, how: str) -> None:
    if how == "json":
        text = json.dumps(doc, allow_nan=True)
    else:
        text = yaml.safe_dump(doc, allow_unicode=True)
    read_everything(text)
    try:
        with _guard():
            rf.Graph.from_dict(doc)
    except rf.ReflowError:
        pass


_FBP_TOKENS = ["A", "B(core/Repeat)", "C(x:k=v,red)", "(anon)", " ", "  ", "->", "IN", "OUT",
               "in[0]", "OUT[3]", "'iip'", "'it\\'s'", '{"a": [1, {"b": null}]}', "[1,2]",
               "true", "5", "-1.5e3", "\n", ",", "# comment\n", "# @name G\n",
               "INPORT=A.IN:X\n", "OUTPORT=B.OUT:Y\n", "EXPORT=A.IN:Z\n",
               "DEFAULT_INPORT=I\n", "\t", "9" * 25, "[" * 70, "]" * 70, "\\u0000", "é"]


@settings(max_examples=long_scale(800))
@given(st.lists(st.sampled_from(_FBP_TOKENS), max_size=30))
def test_generated_fbp_token_streams_raise_only_reflow_errors(tokens: list[str]) -> None:
    read_everything("".join(tokens))


# -- API entry points --------------------------------------------------------------------

@settings(max_examples=long_scale(200))
@given(_VALUES)
def test_deep_and_odd_iip_data_built_through_the_api_is_written_or_refused(data: Any) -> None:
    g = rf.Graph("api")
    g.add_node("a", "core/Repeat", {"v": data})
    g.add_iip(data, "a", "in")
    for fmt in formats.FORMATS:
        with contextlib.suppress(rf.ReflowError):
            formats.dumps(g, fmt)


def test_deep_data_built_through_the_api_is_refused_when_written() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    g = rf.Graph("api")
    g.add_node("a", "core/Repeat", {"v": deep})
    for fmt in ("reflow", "noflo", "yaml"):
        with pytest.raises(rf.GraphFormatError, match="nested too deeply"):
            formats.dumps(g, fmt)


_EDGE_LINES = ["a out -> in b", "a OUT[1] -> IN[2] b", "b out -> in c", "c out -> in a",
               "a(core/Repeat)", "b(x:k=v,red)", "c(y)", "'iip' -> in a", "a out ->",
               "-> in b", "IN c(z)", "a out -> in b, c out -> in a", "  a  out  ->  in  b  ",
               "# c\n", "", "A(B) OUT", "OUT -> IN C"]


@settings(max_examples=long_scale(600))
@given(st.lists(st.sampled_from(_EDGE_LINES), max_size=12), st.booleans())
def test_fbp_fast_path_gives_what_the_full_grammar_gives(lines: list[str], cs: bool) -> None:
    from reflowpy.network.formats import fbp

    text = "\n".join(lines) + "\n"

    def parse(fast: bool) -> Any:
        parser = fbp._Parser(text, cs)
        if not fast:
            parser.fast = False
        try:
            return parser.parse()
        except rf.GraphFormatError as exc:
            return str(exc)

    assert parse(True) == parse(False)


_BUILD_LINES = [*_EDGE_LINES, "INPORT=a.in:start", "OUTPORT=c.out:done", "EXPORT=b.out:res",
                "{\"k\": [1, \"\\ud800\"]} -> cfg c", "DEFAULT_INPORT=X", "a out -> in a",
                "(core/Repeat) out -> in b", "a OUT[0] -> IN b", "# @name G1", "d(q:x=5)"]


@settings(max_examples=long_scale(600))
@given(st.lists(st.sampled_from(_BUILD_LINES), max_size=14), st.booleans(), st.booleans())
def test_fbp_direct_build_gives_the_graph_of_the_noflo_document(
        lines: list[str], cs: bool, fast: bool) -> None:
    """``fbp.loads`` builds the graph straight from the parser's records; it must be the
    graph (or the error) that reading the NoFlo document ``parse`` returns gives."""
    from reflowpy.network.formats import fbp, noflo

    text = "\n".join(lines) + "\n"

    def via_document() -> Any:
        try:
            return noflo.from_dict(fbp.parse(text, case_sensitive=cs, strict=True), "fbp")
        except rf.GraphFormatError as exc:
            return str(exc)

    a, b = fbp_graph(text, cs, fast), via_document()
    assert a == b
    if isinstance(a, str):
        return
    assert a.edges == b.edges and a.iips == b.iips  # order too
    assert a.inports == b.inports and a.outports == b.outports
    assert a.to_dict("reflow") == b.to_dict("reflow")


def test_a_string_holding_key_syntax_is_no_duplicate() -> None:
    # '":' inside values makes the text hold more key ends than the document has keys:
    # the exact scan runs and finds no duplicate, so the graph loads.
    text = ('{"processes": {"a": {"component": "x", "metadata": {"label": "\\":\\"",'
            ' "k\\"": "a\\":b", "n": {"k\\"": 1}}}}}')
    g = rf.Graph.loads(text)
    assert g.nodes["a"].metadata["label"] == '":"'


def test_npm_parse_keeps_the_last_key_but_loads_refuses() -> None:
    from reflowpy.network.formats import fbp

    text = '{"k": 1, "k": 2} -> IN A(core/Repeat)\n'
    assert fbp.parse(text)["connections"][0]["data"] == {"k": 2}  # as npm fbp does
    with pytest.raises(rf.GraphFormatError, match="defined twice"):
        rf.Graph.loads(text)


_KEYTEXT = st.sampled_from(["a", "b", "k", 'q"', "\":", " : ", "é", "processes"])
_PAIRS = st.recursive(
    st.none() | st.integers(-5, 5) | st.sampled_from(["x", '":', '\\":', " : ", "\u0022:"]),
    lambda inner: st.lists(inner, max_size=3).map(lambda v: ("list", v))
    | st.lists(st.tuples(_KEYTEXT, inner), max_size=4).map(lambda v: ("obj", v)),
    max_leaves=12)


def _write(value: Any, quote_escape: bool) -> str:
    """JSON text of a pairs tree, keys written as given (duplicates kept)."""
    def s(text: str) -> str:
        out = json.dumps(text, ensure_ascii=False)
        return out[0] + out[1:-1].replace('\\"', "\\u0022") + out[-1] if quote_escape else out

    if isinstance(value, tuple) and value[0] == "list":
        return "[" + ", ".join(_write(v, quote_escape) for v in value[1]) + "]"
    if isinstance(value, tuple):
        return "{" + ",\n".join(f"{s(k)}: {_write(v, quote_escape)}" for k, v in value[1]) + "}"
    return s(value) if isinstance(value, str) else json.dumps(value)


def _has_duplicate(value: Any) -> bool:
    if isinstance(value, tuple) and value[0] == "list":
        return any(_has_duplicate(v) for v in value[1])
    if isinstance(value, tuple):
        keys = [k for k, _ in value[1]]
        return len(set(keys)) != len(keys) or any(_has_duplicate(v) for _, v in value[1])
    return False


@settings(max_examples=long_scale(500))
@given(_PAIRS, st.booleans())
def test_duplicate_keys_are_found_wherever_they_are(tree: Any, quote_escape: bool) -> None:
    """A key written twice in any object of a JSON graph file is refused, with both
    places; no document without one is refused (strings full of '":' included)."""
    from reflowpy.network.formats._util import check_duplicate_keys, json_loads

    text = '{"processes": {}, "properties": {"x": ' + _write(tree, quote_escape) + "}}"
    data = json_loads(text, "noflo")
    if _has_duplicate(tree):
        with pytest.raises(rf.GraphFormatError, match="defined twice") as info:
            check_duplicate_keys(text, data, "noflo")
        assert str(info.value).count("line ") == 2  # the first and the second
    else:
        check_duplicate_keys(text, data, "noflo")
