"""Compiled expressions against the interpreter they replaced (tests/components/
expression_oracle.py, the module as of commit e778cd8): on random expressions and
random messages both give the same value or the same error, and hostile expressions
are refused exactly as before."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.components.expression import FUNCTIONS, Expression, evaluate
from tests.components import expression_oracle as oracle
from tests.scale import long_scale

NAMES = ["a", "b", "c", "msg", "x", "missing", "acc", "index", "level"]
_SAFE_FUNCS = sorted(FUNCTIONS)

_scalars = st.one_of(
    st.integers(-50, 50).map(str),
    st.floats(-1e3, 1e3, allow_nan=False).map(lambda f: repr(abs(f))),
    st.sampled_from(["'a'", "'abc'", '"x y"', "''", "'\\n'", "true", "false", "null",
                     "True", "None", "1e3", ".5", "10"]),
    st.sampled_from(NAMES),
)


def _expr(depth: int = 0) -> st.SearchStrategy[str]:
    if depth >= 3:
        return _scalars
    sub = st.deferred(lambda: _expr(depth + 1))
    binop = st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=",
                             ">", ">=", "in", "not in", "and", "or"])
    return st.one_of(
        _scalars,
        st.tuples(sub, binop, sub).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(sub, st.sampled_from(["<", "<=", "==", "in"]), sub,
                  st.sampled_from(["<", "!=", "not in", ">="]), sub)
        .map(lambda t: f"{t[0]} {t[1]} {t[2]} {t[3]} {t[4]}"),
        sub.map(lambda e: f"({e})"),
        sub.map(lambda e: f"not {e}"),
        sub.map(lambda e: f"-{e}"),
        st.tuples(sub, sub, sub).map(lambda t: f"{t[0]} if {t[1]} else {t[2]}"),
        st.lists(sub, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(st.tuples(st.sampled_from(["k", "'k2'", "a"]), sub), max_size=3)
        .map(lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"),
        st.tuples(sub, st.sampled_from(["a", "b", "len", "x", "__class__", "null"]))
        .map(lambda t: f"{t[0]}.{t[1]}"),
        st.tuples(sub, sub).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(st.sampled_from(_SAFE_FUNCS), st.lists(sub, max_size=3))
        .map(lambda t: f"{t[0]}({', '.join(t[1])})"),
    )


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-100, 100),
              st.floats(allow_nan=False, allow_infinity=False, width=32),
              st.sampled_from(["", "a", "abc", "error", "x y"])),
    lambda kids: st.one_of(st.lists(kids, max_size=3),
                           st.dictionaries(st.sampled_from(["a", "b", "c", "k"]), kids,
                                           max_size=3)),
    max_leaves=8,
)
_messages = st.one_of(
    st.dictionaries(st.sampled_from(["a", "b", "c", "level", "k"]), _json, max_size=5),
    _json,
)


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b) and not (isinstance(a, dict) and isinstance(b, dict)) \
            and not (isinstance(a, list) and isinstance(b, list)):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _outcome(fn: Any, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args, **kwargs)
    except rf.ExpressionError as exc:
        return "error", str(exc)


def _both(src: str) -> tuple[Any, Any] | None:
    """(new, old) compiled forms, or None when both refuse the source the same way."""
    new = _outcome(Expression, src)
    old = _outcome(oracle.Expression, src)
    assert new[0] == old[0], (src, new, old)
    if new[0] == "error":
        assert new[1] == old[1], src
        return None
    return new[1], old[1]


COUNTS = {"expressions": 0, "evaluations": 0}


@settings(max_examples=long_scale(1500), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(_expr(), st.lists(_messages, min_size=1, max_size=4))
def test_compiled_matches_interpreter(src: str, msgs: list[Any]) -> None:
    pair = _both(src)
    COUNTS["expressions"] += 1
    if pair is None:
        return
    new, old = pair
    for raw in msgs:
        for msg in (raw, rf.freeze(raw)):
            COUNTS["evaluations"] += 1
            got, want = _outcome(new, msg), _outcome(old, msg)
            if want[0] == "error" and "nested too deeply" in want[1]:
                continue  # the interpreter ran out of Python stack; the code object may not
            assert got[0] == want[0], (src, msg, got, want)
            if got[0] == "ok":
                assert _same(got[1], want[1]), (src, msg, got, want)
            else:
                assert got[1] == want[1], (src, msg)
            # the explicit-environment path (Reduce, Scan, user variables)
            got = _outcome(new, msg, acc=raw, index=3)
            want = _outcome(old, msg, acc=raw, index=3)
            assert got[0] == want[0], (src, msg, got, want)
            if got[0] == "ok":
                assert _same(got[1], want[1]), (src, msg)
            else:
                assert got[1] == want[1], (src, msg)


_tokens = st.sampled_from(["a", "b", "1", "2.5", "'s'", "+", "-", "*", "**", "(", ")", "[",
                           "]", "{", "}", ",", ":", ".", "and", "or", "not", "in", "if",
                           "else", "==", "<", "len", "x", "@", '"', "\\", " "])


@settings(max_examples=long_scale(1500), deadline=None)
@given(st.lists(_tokens, max_size=12).map(" ".join))
def test_syntax_fuzz_refused_exactly_as_before(src: str) -> None:
    pair = _both(src)
    if pair is not None:
        new, old = pair
        assert _outcome(new, {"a": 1, "b": 2}) == _outcome(old, {"a": 1, "b": 2}) or \
            "nested too deeply" in _outcome(old, {"a": 1, "b": 2})[1]


# Every identifier the generated code uses internally, and Python's own escape hatches:
# as expression names they are only ever fields of the message.
_INTERNAL = ["_get", "_MISS", "_DICTS", "_typeof", "_fields_of", "_unknown", "_env_field",
             "_access", "_check_size", "_mul", "_pow", "_invoke", "_neg", "_pos",
             "_ExpressionError", "_RecursionError", "_KeyError", "_ERRORS", "_too_deep",
             "_failed", "_NUMS", "_SOURCE", "_t1", "_t2", "_fn_len", "env", "exc",
             "__builtins__", "__import__", "__class__", "__dict__", "eval", "exec", "open",
             "getattr", "type", "globals", "locals", "compile", "breakpoint"]


@pytest.mark.parametrize("name", _INTERNAL)
def test_internal_names_are_only_fields(name: str) -> None:
    for expr in (Expression(name), Expression(f"msg.{name}"), Expression(f"x[{name!r}]")):
        assert expr({name: 7}) == 7
        assert expr({name: 7}, acc=1) == 7
    with pytest.raises(rf.ExpressionError, match="unknown name"):
        Expression(name)({"other": 1})
    with pytest.raises(rf.ExpressionError, match="unknown name"):
        Expression(name)({"other": 1}, acc=1)
    assert Expression(f"msg.{name}")({"other": 1}) is None


@pytest.mark.parametrize("src", [
    "__import__('os')", "open('/etc/passwd')", "eval('1')", "exec('1')", "getattr(x, 'a')",
    "globals()", "type(x)(1)", "len.__self__", "(1).__class__", "x.__class__.__mro__",
    "''.join", "[].append(1)", "msg['__class__']['__init__']", "lambda: 1", "x := 1",
    "[i for i in x]", "f'{x}'", "x; y", "import os", "a = 1", "*x", "**x", "x.y()",
    "_fn_len(x)", "_invoke('len', _fn_len, x)", "__builtins__['eval']('1')",
])
def test_hostile_expressions_refused_as_before(src: str) -> None:
    msg = {"a": 1, "x": [1]}
    new_c, old_c = _outcome(Expression, src), _outcome(oracle.Expression, src)
    assert new_c[0] == old_c[0]
    if new_c[0] == "error":
        assert new_c[1] == old_c[1]
        return
    new, old = _outcome(new_c[1], msg), _outcome(old_c[1], msg)
    assert new == old
    assert new[0] == "error" or new[1] is None or isinstance(new[1], (int, str, list, dict))


@pytest.mark.parametrize("src", [
    "2 ** 1000000", "10 ** 10 ** 10", "(-7) ** 99999999", "'a' * 10 ** 7", "[0] * 10 ** 7",
    "10 ** 7 * 'a'", "'ab' * 600000", "join(split('a b c', ' '), 'x' * 600000)",
    "replace('aaaa', 'a', 'b' * 400000)", "x * 1000001", "2.0 ** 99999", "(-8) ** 0.5",
])
def test_huge_results_are_refused(src: str) -> None:
    for fn in (Expression(src), oracle.Expression(src)):
        with pytest.raises(rf.ExpressionError):
            fn("a")


def test_nesting_limits() -> None:
    for src in ("(" * 65 + "1" + ")" * 65, "-" * 70 + "1", "[" * 65 + "]" * 65,
                "not " * 70 + "1", "x" + ".a" * 10 + "[" * 64 + "0" + "]" * 64):
        with pytest.raises(rf.ExpressionError) as new:
            Expression(src)
        with pytest.raises(rf.ExpressionError) as old:
            oracle.Expression(src)
        assert str(new.value) == str(old.value)
    assert Expression("(" * 60 + "1" + ")" * 60)() == 1
    with pytest.raises(rf.ExpressionError, match="longer than"):
        Expression("1" * 10_001)


def test_long_operator_chains_never_escape() -> None:
    """``1+1+...`` nests without recursion in the parser. The interpreter failed every
    evaluation of a long one (Python stack); the compiled form either evaluates it or
    refuses it when it is compiled, never with anything but an ExpressionError."""
    for n in (500, 2000, 4999):
        src = "+".join(["1"] * n)
        try:
            expr = Expression(src)
        except rf.ExpressionError as exc:
            assert "too deeply nested to compile" in str(exc)
            continue
        assert expr() == n


def test_evaluation_order_of_errors_is_kept() -> None:
    # the first failing operand, left to right, names the error (as before)
    for src in ("u1 in u2", "u1 + u2", "u1 * u2", "u1 < u2 < u3", "-u1 + u2", "[u1, u2]",
                "{u1: u2}", "len(u1, u2)", "u1 if u2 else u3", "1 < 2 < u3"):
        assert _outcome(evaluate, src, {}) == _outcome(oracle.evaluate, src, {})


def test_counts_reported() -> None:
    # not an assertion on speed: the number of cases the property tests ran, for the log
    print(f"compiled-vs-interpreter: {COUNTS}")


_EDGE_MESSAGES: list[Any] = [
    None, 0, 1, -1, 2.5, True, "", "abc", [], [1, 2], {}, {"a": 1}, {"a": None},
    {"a": [1, 2], "b": {"c": "x"}}, {"level": "error", "latency": 150},
    {"msg": 5, "x": 6, "a": "abc"}, [{"a": 1}],
]
_EDGE = [
    "x in null", "null in x", "a in null", "1 in x", "'a' in x", "x in [1, 2]",
    "x not in [1, 2]", "x not in null", "[1] in [[1]]", "1 in [1.0, 2]", "a in msg",
    "'a' in msg", "x in 'abc'", "{} in [x]", "x in [[], {}]", "a.b in a", "-x", "+x", "-a",
    "x + x", "x * 2", "2 * x", "x * x", "x + 1", "'a' + x", "x + [1]", "a + a", "a * 3",
    "x // 2", "x % 2", "x / 2", "x ** 2", "2 ** x", "x < 1 < 2", "1 < x < 2", "x == x == x",
    "0 < x <= 1 in [True]", "x and a", "x or a", "not x", "x if x else a",
    "a if x else missing", "x.a", "x[0]", "x[-1]", "x['a']", "x.a.b", "msg.msg", "msg",
    "x", "a", "b.c", "level == 'error' or latency > 100", "len(x)", "str(x)", "type(x)",
    "keys(x)", "coalesce(a, x)", "{a: x, 'b': a}", "[x, a]", "abs(x)", "int(x)", "bool(x)",
    "sorted(x)", "sum(x)", "max(x)", "min(x, 1)", "x * -1", "-x * -1", "-(x + 1)",
]


@pytest.mark.parametrize("src", _EDGE)
def test_edge_cases_match_interpreter(src: str) -> None:
    new, old = Expression(src), oracle.Expression(src)
    for msg in _EDGE_MESSAGES:
        for m in (msg, rf.freeze(msg)):
            got, want = _outcome(new, m), _outcome(old, m)
            assert got[0] == want[0], (src, m, got, want)
            if got[0] == "ok":
                assert _same(got[1], want[1]), (src, m, got, want)
            else:
                assert got[1] == want[1], (src, m)
            assert _outcome(new, m, acc=1) == _outcome(old, m, acc=1) or \
                _same(_outcome(new, m, acc=1)[1], _outcome(old, m, acc=1)[1])
