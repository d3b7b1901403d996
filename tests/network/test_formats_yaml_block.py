"""The fast YAML block reader answers what PyYAML's safe loader answers, or nothing.

``reflowpy.network.formats._yaml_block`` reads the plain block subset of YAML that graph
files are written in and leaves everything else to the full loader. Its one promise:
whenever it returns data, that is the data the full loader (our ``_Loader``) returns
for the same text; when the full loader refuses a text, the fast reader returns
nothing, so the full loader's error is the one reported. Checked three ways, seeded:
documents PyYAML itself writes (every style and width), line soups built from the
subset's edges (indentation, dashes, odd scalars, comments, quotes), and the real
fixtures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reflowpy.network.formats import _yaml_block
from reflowpy.network.formats import yaml as yamlfmt
from reflowpy.network.formats._limits import Budget, check_value
from tests.scale import long_scale

ROOT = Path(__file__).resolve().parents[2]
_Loader = yamlfmt._Loader
_NOTHING = object()


def _full(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return _NOTHING
    except RecursionError:
        return _NOTHING


def _check(text: str) -> bool:
    """Assert the promise on ``text``; True when the fast reader answered."""
    fast = _yaml_block.read(text, _Loader)
    if fast is None:
        return False
    full = _full(text)
    assert full is not _NOTHING, f"fast reader accepted what PyYAML refuses: {text!r}"
    assert fast == full and _types(fast) == _types(full), (text, fast, full)
    # What it answers skips the limits walk, so it must be within them already.
    check_value(fast, "yaml", "", Budget(len(text)))
    return True


def _types(value: Any) -> Any:
    """The value with every scalar's type beside it (1 == 1.0 == True in Python)."""
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return (type(value).__name__, value)


_SCALAR_TEXT = st.sampled_from([
    "x", "step 1", "bench/Step", "yes", "No", "on", "OFF", "true", "False", "null", "~",
    "Null", "0", "-1", "+1", "007", "0x1F", "0o17", "0b101", "1_000", "1.5", "-.5", ".inf",
    "-.Inf", ".NaN", "1e3", "1.0e+3", "2024-01-01", "12:30", "1:2:3", "=", "<<", "a b  c",
    "(x)", "a-b", "-", "a,b", "a;b", "100%", "é", "日本", "x?", "a!b", "a&b", "*b", "&a",
    "!x", "@x", "`x", "%x", "|", ">", "a|b", "9" * 25, "18446744073709551616",
    "-9223372036854775809", "0.", "._", "./a", "+", "+.5", "1__0", "0_", "1.2.3",
])
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | _SCALAR_TEXT
    | st.floats(allow_nan=False) | st.text(st.characters(codec="utf-8"), max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(_SCALAR_TEXT | st.from_regex(r"[a-z_][a-z0-9_.-]{0,5}", fullmatch=True),
                      inner, max_size=4),
    max_leaves=25)


@settings(max_examples=long_scale(300), deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,6}", fullmatch=True),
                       _VALUES, max_size=5),
       st.sampled_from([False, None]), st.integers(2, 5), st.booleans(), st.booleans(),
       st.sampled_from([80, 20, 1000]))
def test_documents_pyyaml_writes(doc: dict[str, Any], flow: bool | None, indent: int,
                                 unicode: bool, sort: bool, width: int) -> None:
    text = yaml.dump(doc, default_flow_style=flow, indent=indent, allow_unicode=unicode,
                     sort_keys=sort, width=width)
    _check(text)


_LINES = ["a:", "a: 1", "b: x", "  c: y", "  - d", "- e", "- f: g", "  h:", "    i: j",
          "  - k: l", "    m: n", "a: 'q ''x'' #'", 'b: "r: s"', "c: []", "d: {}", "e: [1]",
          "# note", "   # deep note", "", "  ", "f: yes", "g: 0x10", "h: 1:30", "i: ~",
          "j: &x v", "k: *x", "l: !!str 5", "m: |", "  text", "- - x", "-", "- ", "n:  v  ",
          "o: v # c", "p: 'open", "a: dup", "q:x", "  - ", "r: - s", "? t", "<<: {}", "---",
          "...", "s: 'é'", "t: \"日本\"", "u: 2024-01-01", "1: x", "yes: y", "v: .inf",
          "w: 18446744073709551616", "x: -", "y: a - b", "z: a: b"]


_KEYS = st.sampled_from(["a", "b", "c", "d", "n0", "port-id", "x.y", "a/b", "_k", "k1", "k2",
                         "k3", "on", "null", "yes"])
_RAW = st.sampled_from(["x", "step 1", "12", "bench/Step", "1.5", "false", "null"]) \
    | _SCALAR_TEXT | st.sampled_from(["'q ''x'' #'", '"r: s"', "[]", "{}", "[1]", "''",
                                       '""', "'open", "a: b", "a #c", "&x v", "*x", "|"])


@st.composite
def _block(draw: Any, depth: int = 0, ind: int = 0) -> list[str]:
    """A block mapping written line by line as a person might: random indentation
    steps, indentless or indented sequences, comments and blank lines."""
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        key = draw(_KEYS)
        kind = draw(st.sampled_from(["scalar", "scalar", "map", "seq", "empty"])
                    if depth < 3 else st.just("scalar"))
        pad = " " * ind
        if kind == "scalar":
            lines.append(f"{pad}{key}:{' ' * draw(st.integers(1, 2))}{draw(_RAW)}")
        elif kind == "empty":
            lines.append(f"{pad}{key}:")
        elif kind == "map":
            lines.append(f"{pad}{key}:")
            lines += draw(_block(depth + 1, ind + draw(st.integers(1, 4))))
        else:
            lines.append(f"{pad}{key}:")
            sind = ind + draw(st.sampled_from([0, 0, 2, 4]))
            for _ in range(draw(st.integers(1, 3))):
                if draw(st.booleans()):
                    lines.append(f"{' ' * sind}- {draw(_RAW)}")
                else:
                    inner = draw(_block(depth + 1, sind + 2))
                    first = inner[0].lstrip(" ")
                    lines.append(f"{' ' * sind}- {first}")
                    lines += inner[1:]
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.sampled_from(["", "# c", "    # c", "  "])))
    return lines


@settings(max_examples=long_scale(1000), deadline=None)
@given(_block(), st.lists(st.tuples(st.integers(0, 40), st.sampled_from(
    [*_LINES, "+1", "-1", "+2", "-2"])), max_size=2), st.booleans())
def test_line_soups(lines: list[str], mutations: list[tuple[int, str]],
                    final_newline: bool) -> None:
    for at, change in mutations:  # re-indent or replace a line: mostly off the subset
        i = at % len(lines)
        if change in ("+1", "-1", "+2", "-2"):
            shift = int(change)
            lines[i] = " " * max(0, shift) + lines[i][max(0, -shift):]
        else:
            lines[i] = change
    text = "\n".join(lines)
    _check(text + ("\n" if final_newline else ""))


def test_the_graphs_writers_emit_and_fixtures_take_the_fast_path() -> None:
    import reflowpy as rf
    from benchmarks.graph import build

    g = build(300)
    assert _check(g.dumps("yaml"))
    assert _check(yaml.dump(g.to_dict("noflo"), sort_keys=False))
    answered = 0
    for path in sorted((ROOT / "tests" / "fixtures").rglob("*.y*ml")):
        answered += _check(path.read_text(encoding="utf-8"))
    assert rf.Graph.loads(g.dumps("yaml"), "yaml") == g
    assert answered >= 1


def test_deep_indentation_is_refused_by_the_limits_not_the_stack() -> None:
    import pytest

    import reflowpy as rf

    text = "processes:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(200)) + \
        "  " * 201 + "z: 1\n"
    # The block reader answers only within the depth limit (so its data need no second
    # walk): deeper text goes to the full loader, whose check names the limit.
    assert _yaml_block.read(text, _Loader) is None
    shallow = "processes:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(60)) + \
        "  " * 61 + "z: 1\n"
    assert _yaml_block.read(shallow, _Loader) is not None
    with pytest.raises(rf.GraphFormatError, match="nested more than 64"):
        rf.Graph.loads(text, "yaml")
