"""The safe expression language: syntax, semantics, limits; property-tested against
Python for arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.components.cron import Cron, CronError
from reflowpy.components.expression import compile_expression, evaluate, render_template


@pytest.mark.parametrize(("src", "msg", "expected"), [
    ("a.b[0] + len(c)", {"a": {"b": [5]}, "c": "xyz"}, 8),
    ("msg.a.missing == null", {"a": {}}, True),
    ("items[-1]", {"items": [1, 2, 3]}, 3),
    ("items[10]", {"items": [1]}, None),
    ("1 < x < 3", 2, True),
    ("3 > x > 5", 4, False),
    ("'b' in ['a', 'b'] and 'z' not in 'abc'", None, True),
    ("x if x > 2 else -x", 1, -1),
    ("not a or b", {"a": 0, "b": 0}, True),
    ("a and b", {"a": 1, "b": 0}, 0),
    ("{k: 1, 'z': [1, 2][-1]}", None, {"k": 1, "z": 2}),
    ("round(x / 3, 2)", 10, 3.33),
    ("lower(s) + upper(s) + trim('  t ')", {"s": "Ab"}, "abAB" + "t"),
    ("coalesce(null, missing, 3)", {"missing": None}, 3),
    ("get(msg, '/a/b', 'd')", {"a": {}}, "d"),
    ("type(x)", [1], "array"),
    ("-2 ** 2", None, -4),
    ("2 ** 3 ** 2", None, 512),
    ("7 // 2 + 7 % 3 - 1.5e1", None, 3 + 1 - 15.0),
    ('"esc\\"aped\\n"', None, 'esc"aped\n'),
])
def test_semantics(src: str, msg: object, expected: object) -> None:
    assert compile_expression(src)(msg) == expected


@pytest.mark.parametrize(("src", "column"), [
    ("1 +", 4), ("foo(1)", 1), ("(1", 3), ("a..b", 3), ('"abc', 1), ("1 @ 2", 3),
    ("x(1)", 1), ("", 1), ("[1, 2", 6),
])
def test_syntax_errors_name_the_column(src: str, column: int) -> None:
    with pytest.raises(rf.ExpressionError) as info:
        compile_expression(src)
    assert info.value.position + 1 == column
    assert info.value.expression == src


@pytest.mark.parametrize("src", [
    "10 ** 10 ** 10", "'a' * 10 ** 7", "[0] * 10 ** 7", "n.__class__", "1 / 0", "len(5)",
    "unknown_name", "'a' < 1", "(" * 100 + "1" + ")" * 100,
])
def test_runtime_errors_and_limits_are_expression_errors(src: str) -> None:
    with pytest.raises(rf.ExpressionError):
        evaluate(src, {"n": 1})


def test_no_python_escape_hatches() -> None:
    for src in ("__import__('os')", "open('/etc/passwd')", "eval('1')", "n.__dict__",
                "n.real"):
        with pytest.raises(rf.ExpressionError):
            evaluate(src, {"n": 1})
    # on an object, '.' reads keys, never attributes
    assert evaluate("msg.__class__", {"a": 1}) is None


def test_template() -> None:
    assert render_template("{{ a }}-{{ b }}-{{ c }}", {"a": None, "b": True, "c": [1]}) == \
        'null-true-[1]'


_ints = st.integers(min_value=-1000, max_value=1000)


@st.composite
def _arith(draw: st.DrawFn, depth: int = 0) -> str:
    if depth > 3 or draw(st.booleans()):
        n = draw(_ints)
        return f"({n})" if n < 0 else str(n)
    op = draw(st.sampled_from(["+", "-", "*", "//", "%", "/"]))
    left = draw(_arith(depth + 1))
    right = draw(_arith(depth + 1))
    wrap = draw(st.booleans())
    text = f"{left} {op} {right}"
    return f"({text})" if wrap else text


@settings(max_examples=400, deadline=None)
@given(_arith())
def test_arithmetic_matches_python(src: str) -> None:
    try:
        expected = eval(src, {"__builtins__": {}})  # the reference, on generated arithmetic only
    except ZeroDivisionError:
        with pytest.raises(rf.ExpressionError, match="ZeroDivisionError"):
            evaluate(src)
        return
    assert evaluate(src) == expected


@settings(max_examples=200, deadline=None)
@given(_ints, _ints, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
       st.sampled_from(["and", "or"]))
def test_comparisons_and_logic_match_python(a: int, b: int, cmp: str, logic: str) -> None:
    src = f"a {cmp} b {logic} not (a == b)"
    assert evaluate(src, {"a": a, "b": b}) == eval(src, {"__builtins__": {}}, {"a": a, "b": b})


def test_cron_parsing_and_next() -> None:
    import datetime

    c = Cron("*/15 9-17 * * mon-fri")
    assert c.next_after(datetime.datetime(2024, 1, 5, 17, 50)) == datetime.datetime(2024, 1, 8, 9)
    assert Cron("@hourly").next_after(datetime.datetime(2024, 1, 1, 0, 0)) == \
        datetime.datetime(2024, 1, 1, 1, 0)
    # day-of-month OR day-of-week when both are restricted (Vixie cron)
    assert Cron("0 0 13 * fri").next_after(datetime.datetime(2024, 1, 1)) == \
        datetime.datetime(2024, 1, 5)
    assert Cron("0 0 29 2 *").next_after(datetime.datetime(2024, 3, 1)) == \
        datetime.datetime(2028, 2, 29)
    for bad in ("* * *", "60 * * * *", "*/0 * * * *", "5-1 * * * *", "* * * foo *"):
        with pytest.raises(CronError):
            Cron(bad)
