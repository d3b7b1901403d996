"""A small, safe expression language over messages (never Python ``eval``).

Used by Map, Filter, If, Switch, Expression, Template and others, so a graph file can
say ``"expression": "price * qty > 100 and status in ['paid', 'sent']"`` without
running arbitrary code. The language is a tiny subset of Python's expression syntax
with Python's semantics for what it has:

* literals: ``42``, ``3.5``, ``1e3``, ``'text'``/``"text"`` (with ``\\n \\t \\\\ \\' \\"``
  escapes), ``true``/``false``/``null`` (and ``True``/``False``/``None``), lists
  ``[1, 2]``, objects ``{'a': 1}``;
* names: the variables a component binds (``msg`` and ``x`` are the message; Reduce
  adds ``acc``), then, when the message is an object, its fields (``price`` means
  ``msg.price``);
* access: ``a.b``, ``a['b']``, ``a[0]``, ``a[-1]``; a missing key or index gives
  ``null`` rather than an error, so ``user.email != null`` is a test for presence;
* arithmetic ``+ - * / // % **`` and unary ``- +``; comparison ``== != < <= > >=``
  (chained, as in Python), ``in``, ``not in``; ``and``, ``or``, ``not`` (returning
  operands, as in Python); ``a if cond else b``;
* calls to a fixed set of functions (see :data:`FUNCTIONS`), never to values.

Limits keep a hostile graph from hurting the process: sources up to 10,000
characters, nesting up to 64 levels, ``**`` and string/list repetition bounded in
the size of their result. Every error is an :class:`~reflowpy.ExpressionError` that
carries the source and the column.

>>> compile_expression("price * qty")({"price": 2, "qty": 3})
6
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import reflowpy as rf
from reflowpy.components.paths import get_path, parse_pointer

__all__ = ["FUNCTIONS", "Expression", "compile_expression", "evaluate", "render_template"]

MAX_SOURCE = 10_000
MAX_DEPTH = 64
MAX_SIZE = 1_000_000  # elements/characters a repetition may produce
MAX_BITS = 100_000  # bits an integer power may produce

Env = Mapping[str, Any]
Code = Callable[[Env], Any]

# -- tokenizer ---------------------------------------------------------------------------

_OPERATORS = (
    "**", "//", "==", "!=", "<=", ">=",
    "(", ")", "[", "]", "{", "}", ",", ".", ":", "+", "-", "*", "/", "%", "<", ">",
)
_KEYWORDS = {"and", "or", "not", "in", "if", "else", "true", "false", "null", "True",
             "False", "None"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}


class _Token:
    __slots__ = ("kind", "pos", "value")

    def __init__(self, kind: str, value: Any, pos: int) -> None:
        self.kind = kind  # "num", "str", "name", "op", "kw", "end"
        self.value = value
        self.pos = pos

    def __repr__(self) -> str:
        return f"{self.kind}:{self.value!r}@{self.pos}"


def _tokenize(src: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c in " \t\r\n":
            i += 1
            continue
        start = i
        if c.isdigit() or (c == "." and i + 1 < n and src[i + 1].isdigit()):
            while i < n and (src[i].isdigit() or src[i] == "_"):
                i += 1
            is_float = False
            if i < n and src[i] == "." and i + 1 < n and src[i + 1].isdigit():
                is_float = True
                i += 1
                while i < n and src[i].isdigit():
                    i += 1
            elif i < n and src[i] == "." and not (i + 1 < n and src[i + 1].isalpha()):
                is_float = True
                i += 1
            if i < n and src[i] in "eE":
                j = i + 1
                if j < n and src[j] in "+-":
                    j += 1
                if j < n and src[j].isdigit():
                    is_float = True
                    i = j
                    while i < n and src[i].isdigit():
                        i += 1
            text = src[start:i]
            try:
                value: Any = float(text) if is_float else int(text)
            except ValueError:
                raise rf.ExpressionError(
                    f"bad number {text!r}", expression=src, position=start
                ) from None
            tokens.append(_Token("num", value, start))
            continue
        if c.isalpha() or c == "_" or c == "$":
            while i < n and (src[i].isalnum() or src[i] in "_$"):
                i += 1
            word = src[start:i]
            tokens.append(_Token("kw" if word in _KEYWORDS else "name", word, start))
            continue
        if c in "'\"":
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise rf.ExpressionError(
                        "unterminated string", expression=src, position=start
                    )
                ch = src[i]
                if ch == c:
                    i += 1
                    break
                if ch == "\\":
                    if i + 1 >= n or src[i + 1] not in _ESCAPES:
                        raise rf.ExpressionError(
                            "unknown escape in string", expression=src, position=i
                        )
                    chars.append(_ESCAPES[src[i + 1]])
                    i += 2
                    continue
                chars.append(ch)
                i += 1
            tokens.append(_Token("str", "".join(chars), start))
            continue
        for op in _OPERATORS:
            if src.startswith(op, i):
                tokens.append(_Token("op", op, start))
                i += len(op)
                break
        else:
            raise rf.ExpressionError(
                f"unexpected character {c!r}", expression=src, position=start
            )
    tokens.append(_Token("end", None, n))
    return tokens


# -- runtime helpers ---------------------------------------------------------------------


def _check_size(value: Any) -> Any:
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_SIZE:
        raise OverflowError(f"result longer than {MAX_SIZE} items")
    return value


def _mul(a: Any, b: Any) -> Any:
    for seq, count in ((a, b), (b, a)):
        if (isinstance(seq, (str, list, tuple)) and isinstance(count, int)
                and len(seq) * max(count, 0) > MAX_SIZE):
            raise OverflowError(f"repetition longer than {MAX_SIZE} items")
    return a * b


def _pow(a: Any, b: Any) -> Any:
    if (isinstance(a, int) and isinstance(b, int) and not isinstance(b, bool) and b > 0
            and abs(a) > 1 and abs(a).bit_length() * b > MAX_BITS):
        raise OverflowError(f"power result larger than {MAX_BITS} bits")
    result = a**b
    if isinstance(result, complex):
        raise ValueError("power of a negative number to a fractional exponent")
    return result


def _contains(container: Any, item: Any) -> bool:
    if container is None:
        return False
    return item in container


def _access(container: Any, key: Any) -> Any:
    """``container[key]`` with ``null`` for a missing key/index or a ``null`` container."""
    if container is None:
        return None
    if isinstance(container, Mapping):
        return container.get(key)
    if isinstance(container, (list, tuple, str)):
        if isinstance(key, bool) or not isinstance(key, int):
            raise TypeError(
                f"index of a {type(container).__name__} must be an integer, got {key!r}"
            )
        if -len(container) <= key < len(container):
            return container[key]
        return None
    raise TypeError(f"cannot read {key!r} from a {type(container).__name__}")


def _num(name: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}() needs a number, got {value!r}")
    return value


def _to_int(value: Any) -> int:
    if isinstance(value, str):
        return int(value.strip())
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"int() of {value!r}")
        return int(value)
    if isinstance(value, (int, bool)):
        return int(value)
    raise TypeError(f"int() needs a number or string, got {value!r}")


def _to_float(value: Any) -> float:
    if isinstance(value, (str, int, float)):
        return float(value)
    raise TypeError(f"float() needs a number or string, got {value!r}")


def _to_str(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(rf.thaw(value), default=str, separators=(",", ":"))
    return str(value)


def _round(value: Any, ndigits: Any = None) -> Any:
    _num("round", value)
    return round(value) if ndigits is None else round(value, int(ndigits))


def _get(obj: Any, path: Any, default: Any = None) -> Any:
    return get_path(obj, parse_pointer(str(path)), default)


def _coalesce(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def _split(s: Any, sep: Any = None, limit: Any = -1) -> list[str]:
    return str(s).split(sep, int(limit))


def _join(items: Any, sep: Any = "") -> str:
    return _check_size(str(sep).join(_to_str(i) for i in items))  # type: ignore[no-any-return]


#: The functions expressions may call, by name. Nothing else is callable.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": lambda v: abs(_num("abs", v)),
    "bool": bool,
    "ceil": lambda v: math.ceil(_num("ceil", v)),
    "coalesce": _coalesce,
    "contains": lambda c, x: _contains(c, x),
    "endswith": lambda s, x: str(s).endswith(str(x)),
    "float": _to_float,
    "floor": lambda v: math.floor(_num("floor", v)),
    "get": _get,
    "int": _to_int,
    "join": _join,
    "keys": lambda o: list(o.keys()),
    "len": len,
    "lower": lambda s: str(s).lower(),
    "max": max,
    "min": min,
    "replace": lambda s, a, b: _check_size(str(s).replace(str(a), str(b))),
    "round": _round,
    "sorted": sorted,
    "split": _split,
    "startswith": lambda s, x: str(s).startswith(str(x)),
    "str": _to_str,
    "strip": lambda s: str(s).strip(),
    "sum": sum,
    "trim": lambda s: str(s).strip(),
    "type": _type,
    "upper": lambda s: str(s).upper(),
    "values": lambda o: list(o.values()),
}


# -- parser (Pratt) -> Python AST -> code object ----------------------------------------
#
# The parser builds a Python ``ast`` expression and compiles it once, so an evaluation
# is one call of a code object instead of a walk over a tree of closures. What the
# generated code may do is fixed here, not by the expression: it sees no builtins, its
# only globals are the helpers in ``_NAMESPACE`` (bound under ``_``-names no token can
# spell), a field name or string from the source only ever becomes an ``ast.Constant``
# (never an identifier or an attribute), and every operator with a limit or a ``null``
# rule goes through the same helper as before (``_check_size``, ``_mul``, ``_pow``, ``_access``,
# ``_contains``, ``_num``). Operators whose Python semantics are the language's
# (``- / // %``, comparisons, ``and``/``or``/``not``, ``a if c else b``) compile to
# Python's own opcodes.
#
# Two functions come out of one source: ``_fast(msg)``, for the common call with only
# the message bound (names resolve to ``msg``/``x`` or a field of ``msg``), and
# ``_env(env)``, for an explicit environment (Reduce's ``acc``, user variables).

_BINDING = {
    "if": 1,
    "or": 2,
    "and": 3,
    # "not" prefix: 4
    "in": 5, "not": 5, "==": 5, "!=": 5, "<": 5, "<=": 5, ">": 5, ">=": 5,
    "+": 6, "-": 6,
    "*": 7, "/": 7, "//": 7, "%": 7,
    # unary minus: 8
    "**": 9,
    "(": 10, "[": 10, ".": 10,
}
_COMPARISONS = {"in", "not", "==", "!=", "<", "<=", ">", ">="}
_PY_COMPARE: dict[str, ast.cmpop] = {
    "==": ast.Eq(), "!=": ast.NotEq(), "<": ast.Lt(), "<=": ast.LtE(), ">": ast.Gt(),
    ">=": ast.GtE(),
}
_PY_BINARY: dict[str, ast.operator] = {
    "-": ast.Sub(), "/": ast.Div(), "//": ast.FloorDiv(), "%": ast.Mod(),
}
_LOC = {"lineno": 1, "col_offset": 0, "end_lineno": 1, "end_col_offset": 0}


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISS: Any = _Missing()


def _no_fields(key: str, default: Any) -> Any:
    return default


def _fields_of(msg: Any) -> Callable[[str, Any], Any]:
    """The ``get`` of a message's fields; a non-object has none."""
    if isinstance(msg, Mapping):
        return msg.get
    return _no_fields


def _unknown(name: str) -> Any:
    raise NameError(f"unknown name {name!r}")


def _env_field(env: Env, name: str) -> Any:
    msg = env.get("msg")
    if isinstance(msg, Mapping) and name in msg:
        return msg[name]
    raise NameError(f"unknown name {name!r}")


def _in(item: Any, container: Any) -> bool:
    return _contains(container, item)


def _not_in(item: Any, container: Any) -> bool:
    return not _contains(container, item)


def _invoke(name: str, fn: Callable[..., Any], *values: Any) -> Any:
    try:
        return fn(*values)
    except TypeError as exc:
        raise TypeError(f"{name}(): {exc}") from None


def _neg(value: Any) -> Any:
    return -_num("unary minus", value)


def _pos(value: Any) -> Any:
    return +_num("unary plus", value)


#: The only globals compiled expressions can reach. ``__builtins__`` is empty.
_NAMESPACE: dict[str, Any] = {
    "__builtins__": {},
    "_MISS": _MISS, "_DICTS": (dict, rf.FrozenDict), "_typeof": type,
    "_fields_of": _fields_of, "_unknown": _unknown, "_env_field": _env_field,
    "_access": _access, "_check_size": _check_size, "_mul": _mul, "_pow": _pow, "_in": _in,
    "_not_in": _not_in, "_invoke": _invoke, "_neg": _neg, "_pos": _pos,
}
_FUNCTION_GLOBALS = {name: f"_fn_{name}" for name in FUNCTIONS}
_NAMESPACE.update({glob: FUNCTIONS[name] for name, glob in _FUNCTION_GLOBALS.items()})


_N = TypeVar("_N", bound=ast.AST)


def _at(node: _N) -> _N:
    for key, value in _LOC.items():
        setattr(node, key, value)
    return node


def _load(name: str) -> ast.expr:
    return _at(ast.Name(id=name, ctx=ast.Load()))


def _const(value: Any) -> ast.expr:
    return _at(ast.Constant(value=value))


def _call(fn: str, *args: ast.expr) -> ast.expr:
    return _at(ast.Call(func=_load(fn), args=list(args), keywords=[]))


class _Parser:
    """One pass over the tokens, building one body of the compiled functions. The
    bodies differ only in how a name is read (``mode``): ``"dict"`` when the message
    is a dict (``msg['f']``, one opcode), ``"any"`` for any other message and for a
    dict that lacks a field (its fields' ``get``, or none), ``"env"`` from an explicit
    environment."""

    def __init__(self, src: str, tokens: list[_Token], mode: str) -> None:
        self.src = src
        self.tokens = tokens
        self.mode = mode
        self.i = 0
        self.depth = 0
        self.temps = 0

    def error(self, message: str, token: _Token | None = None) -> rf.ExpressionError:
        tok = token or self.tokens[self.i]
        return rf.ExpressionError(message, expression=self.src, position=tok.pos)

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, value: str) -> _Token:
        tok = self.tok
        if tok.kind not in ("op", "kw") or tok.value != value:
            shown = "end of expression" if tok.kind == "end" else repr(tok.value)
            raise self.error(f"expected {value!r}, found {shown}")
        return self.next()

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"

    def parse(self) -> ast.expr:
        if self.tok.kind == "end":
            raise self.error("empty expression")
        code = self.expression(0)
        if self.tok.kind != "end":
            raise self.error(f"unexpected {self.tok.value!r}")
        return code

    def binding(self, tok: _Token) -> int:
        if tok.kind in ("op", "kw"):
            return _BINDING.get(tok.value, 0)
        return 0

    def expression(self, rbp: int) -> ast.expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nested deeper than {MAX_DEPTH} levels")
        left = self.prefix(self.next())
        while self.binding(self.tok) > rbp:
            left = self.infix(self.next(), left)
        self.depth -= 1
        return left

    def name(self, name: str) -> ast.expr:
        key = _const(name)
        if self.mode == "env":
            # env[name] if name in env else _env_field(env, name)
            return _at(ast.IfExp(
                test=_at(ast.Compare(left=key, ops=[ast.In()], comparators=[_load("env")])),
                body=_at(ast.Subscript(value=_load("env"), slice=key, ctx=ast.Load())),
                orelse=_call("_env_field", _load("env"), key)))
        if name in ("msg", "x"):
            return _load("msg")
        if self.mode == "dict":
            # msg[name]; a missing field raises KeyError, and _TEMPLATE evaluates the
            # "any" body instead, which says which name is unknown
            return _at(ast.Subscript(value=_load("msg"), slice=key, ctx=ast.Load()))
        # (_t if (_t := _get(name, _MISS)) is not _MISS else _unknown(name))
        t = self.temp()
        return _at(ast.IfExp(
            test=_at(ast.Compare(left=self.assign(t, _call("_get", key, _load("_MISS"))),
                                 ops=[ast.IsNot()], comparators=[_load("_MISS")])),
            body=_load(t), orelse=_call("_unknown", key)))

    def assign(self, name: str, value: ast.expr) -> ast.expr:
        return _at(ast.NamedExpr(target=_at(ast.Name(id=name, ctx=ast.Store())), value=value))

    def guarded(self, helper: str, op: ast.operator, a: ast.expr, b: ast.expr) -> ast.expr:
        """``a op b`` by Python when both are plain numbers, else ``helper(a, b)`` (which
        keeps the size limits); each operand evaluated once, left to right."""
        ta, tb = self.temp(), self.temp()
        both = _at(ast.BinOp(
            left=_at(ast.Compare(left=_call("_typeof", self.assign(ta, a)), ops=[ast.In()],
                                 comparators=[_load("_NUMS")])),
            op=ast.BitAnd(),
            right=_at(ast.Compare(left=_call("_typeof", self.assign(tb, b)), ops=[ast.In()],
                                  comparators=[_load("_NUMS")]))))
        return _at(ast.IfExp(test=both,
                             body=_at(ast.BinOp(left=_load(ta), op=op, right=_load(tb))),
                             orelse=_call(helper, _load(ta), _load(tb))))

    def prefix(self, tok: _Token) -> ast.expr:
        if tok.kind in ("num", "str"):
            return _const(tok.value)
        if tok.kind == "kw":
            if tok.value in ("true", "True"):
                return _const(True)
            if tok.value in ("false", "False"):
                return _const(False)
            if tok.value in ("null", "None"):
                return _const(None)
            if tok.value == "not":
                operand = self.expression(4)
                return _at(ast.UnaryOp(op=ast.Not(), operand=operand))
            raise self.error(f"unexpected keyword {tok.value!r}", tok)
        if tok.kind == "name":
            if self.tok.kind == "op" and self.tok.value == "(":
                return self.call(tok)
            return self.name(tok.value)
        if tok.kind == "op":
            if tok.value == "-":
                # -_t if type(_t := operand) in _NUMS else _neg(_t)
                t = self.temp()
                operand = self.assign(t, self.expression(8))
                return _at(ast.IfExp(
                    test=_at(ast.Compare(left=_call("_typeof", operand), ops=[ast.In()],
                                         comparators=[_load("_NUMS")])),
                    body=_at(ast.UnaryOp(op=ast.USub(), operand=_load(t))),
                    orelse=_call("_neg", _load(t))))
            if tok.value == "+":
                return _call("_pos", self.expression(8))
            if tok.value == "(":
                inner = self.expression(0)
                self.expect(")")
                return inner
            if tok.value == "[":
                return _at(ast.List(elts=self.sequence("]"), ctx=ast.Load()))
            if tok.value == "{":
                return self.object()
        if tok.kind == "end":
            raise self.error("unexpected end of expression", tok)
        raise self.error(f"unexpected {tok.value!r}", tok)

    def sequence(self, close: str) -> list[ast.expr]:
        items: list[ast.expr] = []
        while not (self.tok.kind == "op" and self.tok.value == close):
            items.append(self.expression(0))
            if self.tok.kind == "op" and self.tok.value == ",":
                self.next()
            elif not (self.tok.kind == "op" and self.tok.value == close):
                raise self.error(f"expected ',' or {close!r}")
        self.expect(close)
        return items

    def object(self) -> ast.expr:
        keys: list[ast.expr | None] = []
        values: list[ast.expr] = []
        while not (self.tok.kind == "op" and self.tok.value == "}"):
            # a bare name is a key, as in JS: {a: 1} == {'a': 1}
            keys.append(_const(self.next().value) if self.tok.kind == "name"
                        else self.expression(0))
            self.expect(":")
            values.append(self.expression(0))
            if self.tok.kind == "op" and self.tok.value == ",":
                self.next()
            elif not (self.tok.kind == "op" and self.tok.value == "}"):
                raise self.error("expected ',' or '}'")
        self.expect("}")
        return _at(ast.Dict(keys=keys, values=values))

    def call(self, name_tok: _Token) -> ast.expr:
        name = name_tok.value
        glob = _FUNCTION_GLOBALS.get(name)
        if glob is None:
            known = ", ".join(sorted(FUNCTIONS))
            raise self.error(f"unknown function {name!r} (known: {known})", name_tok)
        self.expect("(")
        args = self.sequence(")")
        return _call("_invoke", _const(name), _load(glob), *args)

    def infix(self, tok: _Token, left: ast.expr) -> ast.expr:
        op = tok.value
        if op == ".":
            attr = self.next()
            if attr.kind not in ("name", "kw"):
                raise self.error("expected a field name after '.'", attr)
            return _call("_access", left, _const(attr.value))
        if op == "[":
            index = self.expression(0)
            self.expect("]")
            return _call("_access", left, index)
        if op == "(":
            raise self.error("only named functions can be called", tok)
        if op == "and":
            return _at(ast.BoolOp(op=ast.And(), values=[left, self.expression(3)]))
        if op == "or":
            return _at(ast.BoolOp(op=ast.Or(), values=[left, self.expression(2)]))
        if op == "if":
            cond = self.expression(1)
            self.expect("else")
            other = self.expression(0)
            return _at(ast.IfExp(test=cond, body=left, orelse=other))
        if op in _COMPARISONS:
            return self.comparison(tok, left)
        # ** is right associative and binds tighter than a unary minus on its left
        right = self.expression(7) if op == "**" else self.expression(_BINDING[op])
        if op in _PY_BINARY:
            return _at(ast.BinOp(left=left, op=_PY_BINARY[op], right=right))
        if op == "+":
            # _t if type(_t := a + b) in _NUMS else _check_size(_t): only a sequence
            # result can exceed the size limit, and a + b never builds a big one fast
            t = self.temp()
            total = self.assign(t, _at(ast.BinOp(left=left, op=ast.Add(), right=right)))
            return _at(ast.IfExp(
                test=_at(ast.Compare(left=_call("_typeof", total), ops=[ast.In()],
                                     comparators=[_load("_NUMS")])),
                body=_load(t), orelse=_call("_check_size", _load(t))))
        if op == "*":
            return self.guarded("_mul", ast.Mult(), left, right)
        return _call("_pow", left, right)

    def comparison(self, tok: _Token, left: ast.expr) -> ast.expr:
        ops: list[str] = []
        operands: list[ast.expr] = [left]
        while True:
            op = tok.value
            if op == "not":
                self.expect("in")
                op = "not in"
            ops.append(op)
            operands.append(self.expression(5))
            if self.tok.kind in ("op", "kw") and self.tok.value in _COMPARISONS:
                tok = self.next()
                continue
            break
        if len(ops) == 1:
            return self.compare(ops[0], operands[0], operands[1])
        # a < b < c: each operand evaluated once, left to right, stopping at the first
        # false link; the result is True or False.
        links: list[ast.expr] = []
        lhs = operands[0]
        for i, op in enumerate(ops):
            rhs = operands[i + 1]
            if i < len(ops) - 1:
                t = self.temp()
                rhs_value: ast.expr = _at(ast.NamedExpr(
                    target=_at(ast.Name(id=t, ctx=ast.Store())), value=rhs))
                links.append(self.compare(op, lhs, rhs_value))
                lhs = _load(t)
            else:
                links.append(self.compare(op, lhs, rhs))
        chain = _at(ast.BoolOp(op=ast.And(), values=links))
        return _at(ast.IfExp(test=chain, body=_const(True), orelse=_const(False)))

    def compare(self, op: str, a: ast.expr, b: ast.expr) -> ast.expr:
        if op not in ("in", "not in"):
            return _at(ast.Compare(left=a, ops=[_PY_COMPARE[op]], comparators=[b]))
        # membership in a literal list of constants tests a constant tuple (same ==
        # semantics, no list built per call)
        if isinstance(b, ast.List) and all(isinstance(e, ast.Constant) for e in b.elts):
            b = _const(tuple(e.value for e in b.elts))  # type: ignore[attr-defined]
        # False if (_a := a) is _MISS | (_b := b) is None else _a in _b  (null contains
        # nothing; ``a`` is never _MISS, the test only fixes the order of evaluation)
        ta, tb = self.temp(), self.temp()
        absent = _at(ast.BinOp(
            left=_at(ast.Compare(left=self.assign(ta, a), ops=[ast.Is()],
                                 comparators=[_load("_MISS")])),
            op=ast.BitOr(),
            right=_at(ast.Compare(left=self.assign(tb, b), ops=[ast.Is()],
                                  comparators=[_const(None)]))))
        test = ast.In() if op == "in" else ast.NotIn()
        return _at(ast.IfExp(test=absent, body=_const(op == "not in"),
                             orelse=_at(ast.Compare(left=_load(ta), ops=[test],
                                                    comparators=[_load(tb)]))))


#: The frame every expression compiles into; ``_DICT_BODY``, ``_ANY_BODY`` and
#: ``_ENV_BODY`` are replaced by the parsed expression (as AST, never as text).
#: Expressions have no side effects (every function in FUNCTIONS is pure), so when the
#: dict body stops at a missing field, evaluating the "any" body from the start gives
#: exactly the old result: the value, or the first error in evaluation order.
_TEMPLATE = """
def _fast(msg):
    try:
        if _typeof(msg) in _DICTS:
            try:
                return _DICT_BODY
            except _KeyError:
                pass  # a missing field (or a KeyError the "any" body raises again)
        _get = _fields_of(msg)
        return _ANY_BODY
    except _ExpressionError:
        raise
    except _RecursionError:
        raise _too_deep(_SOURCE) from None
    except _ERRORS as exc:
        raise _failed(exc, _SOURCE) from None


def _env(env):
    try:
        return _ENV_BODY
    except _ExpressionError:
        raise
    except _RecursionError:
        raise _too_deep(_SOURCE) from None
    except _ERRORS as exc:
        raise _failed(exc, _SOURCE) from None
"""


class _Splice(ast.NodeTransformer):
    def __init__(self, bodies: dict[str, ast.expr]) -> None:
        self.bodies = bodies

    def visit_Return(self, node: ast.Return) -> ast.Return:
        if isinstance(node.value, ast.Name) and node.value.id in self.bodies:
            node.value = self.bodies[node.value.id]
        return node


def _too_deep(source: str) -> rf.ExpressionError:
    return rf.ExpressionError("value nested too deeply", expression=source)


def _failed(exc: BaseException, source: str) -> rf.ExpressionError:
    return rf.ExpressionError(f"{type(exc).__name__}: {exc}", expression=source)


_ERRORS = (TypeError, ValueError, ArithmeticError, NameError, KeyError, AttributeError)
_NAMESPACE.update({
    "_ExpressionError": rf.ExpressionError, "_RecursionError": RecursionError,
    "_KeyError": KeyError,
    "_ERRORS": _ERRORS, "_too_deep": _too_deep, "_failed": _failed, "_NUMS": (int, float),
})


def _compile(src: str) -> tuple[Callable[[Any], Any], Callable[[Env], Any]]:
    """Parse ``src`` and compile it to ``(_fast(msg), _env(env))``, both raising
    only :class:`~reflowpy.ExpressionError`."""
    tokens = _tokenize(src)
    bodies = {f"_{mode.upper()}_BODY": _Parser(src, tokens, mode).parse()
              for mode in ("dict", "any", "env")}
    module = _Splice(bodies).visit(ast.parse(_TEMPLATE))
    try:
        code = compile(module, "<expression>", "exec")
    except (RecursionError, MemoryError):
        raise rf.ExpressionError("expression too long or too deeply nested to compile",
                                 expression=src, position=0) from None
    namespace = dict(_NAMESPACE, _SOURCE=src)
    exec(code, namespace)  # defines the two functions of _TEMPLATE, runs nothing else
    return namespace["_fast"], namespace["_env"]


class Expression:
    """A compiled expression: call it with a message (and extra variables).

    ``variables`` bound on every call: ``msg`` and ``x`` (the message), plus the
    keyword arguments given to the call. ``call(msg)`` is the same as ``expr(msg)``
    without the keyword handling: the fastest way to evaluate per message.
    ``evaluate(env)`` evaluates with an explicit environment (names -> values).
    """

    __slots__ = ("call", "evaluate", "source")

    call: Callable[[Any], Any]
    evaluate: Callable[[Env], Any]

    def __init__(self, source: str) -> None:
        if not isinstance(source, str):
            raise rf.ExpressionError(f"an expression must be a string, got {source!r:.60}")
        if len(source) > MAX_SOURCE:
            raise rf.ExpressionError(f"expression longer than {MAX_SOURCE} characters")
        self.source = source
        self.call, self.evaluate = _compile(source)

    def __call__(self, msg: Any = None, **variables: Any) -> Any:
        if variables:
            return self.evaluate({"msg": msg, "x": msg, **variables})
        return self.call(msg)

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def compile_expression(source: str) -> Expression:
    """Parse ``source`` once; raises :class:`~reflowpy.ExpressionError` on bad syntax."""
    return Expression(source)


def evaluate(source: str, msg: Any = None, **variables: Any) -> Any:
    """Parse and evaluate in one step (compile once with :func:`compile_expression`
    when evaluating per message)."""
    return Expression(source)(msg, **variables)


# -- string templates --------------------------------------------------------------------


class Template:
    """A string with ``{{ expression }}`` holes, rendered per message.

    ``{{`` may be written literally as ``{{ '{{' }}``. Values render as JSON for
    objects/arrays, ``true``/``false``/``null`` for those, ``str()`` otherwise.
    """

    __slots__ = ("parts", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.parts: list[str | Expression] = []
        i = 0
        while True:
            start = source.find("{{", i)
            if start < 0:
                self.parts.append(source[i:])
                break
            end = source.find("}}", start + 2)
            if end < 0:
                raise rf.ExpressionError(
                    "template hole '{{' is never closed with '}}'",
                    expression=source,
                    position=start,
                )
            self.parts.append(source[i:start])
            self.parts.append(Expression(source[start + 2 : end].strip()))
            i = end + 2

    def render(self, msg: Any = None, **variables: Any) -> str:
        out: list[str] = []
        for part in self.parts:
            out.append(part if isinstance(part, str) else _to_str(part(msg, **variables)))
        return _check_size("".join(out))  # type: ignore[no-any-return]


def render_template(source: str, msg: Any = None, **variables: Any) -> str:
    """Render a ``{{ expression }}`` template once."""
    return Template(source).render(msg, **variables)


def compile_many(sources: Mapping[str, str] | Sequence[str]) -> Any:
    """Compile a list or mapping of expressions, keeping the shape."""
    if isinstance(sources, Mapping):
        return {k: Expression(v) for k, v in sources.items()}
    return [Expression(s) for s in sources]
