"""The expression interpreter as it was before expressions compiled to code objects
(reflowpy 0.1.0, commit e778cd8), kept unchanged as the oracle of
``test_expression_compiled.py``: the compiled form must give the same value, or the
same kind of error, for every expression and message. Not imported by the library.
"""

# ruff: noqa
# mypy: ignore-errors
from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import reflowpy as rf

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


def _add(a: Any, b: Any) -> Any:
    return _check_size(a + b)


def _contains(container: Any, item: Any) -> bool:
    if container is None:
        return False
    return item in container


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": _add,
    "-": operator.sub,
    "*": _mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": _pow,
}

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": lambda a, b: _contains(b, a),
    "not in": lambda a, b: not _contains(b, a),
}


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
    from reflowpy.components._common import get_path, parse_pointer

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


# -- parser (Pratt) -> closures ----------------------------------------------------------

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


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.tokens = _tokenize(src)
        self.i = 0
        self.depth = 0

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

    def parse(self) -> Code:
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

    def expression(self, rbp: int) -> Code:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nested deeper than {MAX_DEPTH} levels")
        left = self.prefix(self.next())
        while self.binding(self.tok) > rbp:
            left = self.infix(self.next(), left)
        self.depth -= 1
        return left

    def prefix(self, tok: _Token) -> Code:
        if tok.kind in ("num", "str"):
            value = tok.value
            return lambda env: value
        if tok.kind == "kw":
            if tok.value in ("true", "True"):
                return lambda env: True
            if tok.value in ("false", "False"):
                return lambda env: False
            if tok.value in ("null", "None"):
                return lambda env: None
            if tok.value == "not":
                operand = self.expression(4)
                return lambda env: not operand(env)
            raise self.error(f"unexpected keyword {tok.value!r}", tok)
        if tok.kind == "name":
            if self.tok.kind == "op" and self.tok.value == "(":
                return self.call(tok)
            return _name(tok.value)
        if tok.kind == "op":
            if tok.value == "-":
                operand = self.expression(8)
                return lambda env: -_num("unary minus", operand(env))
            if tok.value == "+":
                operand = self.expression(8)
                return lambda env: +_num("unary plus", operand(env))
            if tok.value == "(":
                inner = self.expression(0)
                self.expect(")")
                return inner
            if tok.value == "[":
                items = self.sequence("]")
                return lambda env: [item(env) for item in items]
            if tok.value == "{":
                return self.object()
        if tok.kind == "end":
            raise self.error("unexpected end of expression", tok)
        raise self.error(f"unexpected {tok.value!r}", tok)

    def sequence(self, close: str) -> list[Code]:
        items: list[Code] = []
        while not (self.tok.kind == "op" and self.tok.value == close):
            items.append(self.expression(0))
            if self.tok.kind == "op" and self.tok.value == ",":
                self.next()
            elif not (self.tok.kind == "op" and self.tok.value == close):
                raise self.error(f"expected ',' or {close!r}")
        self.expect(close)
        return items

    def object(self) -> Code:
        pairs: list[tuple[Code, Code]] = []
        while not (self.tok.kind == "op" and self.tok.value == "}"):
            # a bare name is a key, as in JS: {a: 1} == {'a': 1}
            key = _constant(self.next().value) if self.tok.kind == "name" else self.expression(0)
            self.expect(":")
            pairs.append((key, self.expression(0)))
            if self.tok.kind == "op" and self.tok.value == ",":
                self.next()
            elif not (self.tok.kind == "op" and self.tok.value == "}"):
                raise self.error("expected ',' or '}'")
        self.expect("}")
        return lambda env: {k(env): v(env) for k, v in pairs}

    def call(self, name_tok: _Token) -> Code:
        name = name_tok.value
        fn = FUNCTIONS.get(name)
        if fn is None:
            known = ", ".join(sorted(FUNCTIONS))
            raise self.error(f"unknown function {name!r} (known: {known})", name_tok)
        self.expect("(")
        args = self.sequence(")")

        def call(env: Env) -> Any:
            values = [a(env) for a in args]
            try:
                return fn(*values)
            except TypeError as exc:
                raise TypeError(f"{name}(): {exc}") from None

        return call

    def infix(self, tok: _Token, left: Code) -> Code:
        op = tok.value
        if op == ".":
            attr = self.next()
            if attr.kind not in ("name", "kw"):
                raise self.error("expected a field name after '.'", attr)
            key = attr.value
            return lambda env: _access(left(env), key)
        if op == "[":
            index = self.expression(0)
            self.expect("]")
            return lambda env: _access(left(env), index(env))
        if op == "(":
            raise self.error("only named functions can be called", tok)
        if op == "and":
            right = self.expression(3)
            return lambda env: left(env) and right(env)
        if op == "or":
            right = self.expression(2)
            return lambda env: left(env) or right(env)
        if op == "if":
            cond = self.expression(1)
            self.expect("else")
            other = self.expression(0)
            return lambda env: left(env) if cond(env) else other(env)
        if op in _COMPARISONS:
            return self.comparison(tok, left)
        # ** is right associative and binds tighter than a unary minus on its left
        right = self.expression(7) if op == "**" else self.expression(_BINDING[op])
        fn = _BINARY[op]
        return lambda env: fn(left(env), right(env))

    def comparison(self, tok: _Token, left: Code) -> Code:
        ops: list[Callable[[Any, Any], Any]] = []
        operands: list[Code] = [left]
        while True:
            op = tok.value
            if op == "not":
                self.expect("in")
                op = "not in"
            ops.append(_COMPARE[op])
            operands.append(self.expression(5))
            if self.tok.kind in ("op", "kw") and self.tok.value in _COMPARISONS:
                tok = self.next()
                continue
            break
        if len(ops) == 1:
            fn, a, b = ops[0], operands[0], operands[1]
            return lambda env: fn(a(env), b(env))

        def chain(env: Env) -> Any:
            lhs = operands[0](env)
            for fn, rhs_code in zip(ops, operands[1:], strict=True):
                rhs = rhs_code(env)
                if not fn(lhs, rhs):
                    return False
                lhs = rhs
            return True

        return chain


def _constant(value: Any) -> Code:
    return lambda env: value


def _name(name: str) -> Code:
    def lookup(env: Env) -> Any:
        if name in env:
            return env[name]
        msg = env.get("msg")
        if isinstance(msg, Mapping) and name in msg:
            return msg[name]
        raise NameError(f"unknown name {name!r}")

    return lookup


class Expression:
    """A compiled expression: call it with a message (and extra variables).

    ``variables`` bound on every call: ``msg`` and ``x`` (the message), plus the
    keyword arguments given to the call.
    """

    __slots__ = ("_code", "source")

    def __init__(self, source: str) -> None:
        if not isinstance(source, str):
            raise rf.ExpressionError(f"an expression must be a string, got {source!r:.60}")
        if len(source) > MAX_SOURCE:
            raise rf.ExpressionError(f"expression longer than {MAX_SOURCE} characters")
        self.source = source
        self._code = _Parser(source).parse()

    def __call__(self, msg: Any = None, **variables: Any) -> Any:
        env = {"msg": msg, "x": msg, **variables}
        return self.evaluate(env)

    def evaluate(self, env: Env) -> Any:
        """Evaluate with an explicit environment (names -> values)."""
        try:
            return self._code(env)
        except rf.ExpressionError:
            raise
        except RecursionError:
            raise rf.ExpressionError("value nested too deeply", expression=self.source) from None
        except (TypeError, ValueError, ArithmeticError, NameError, KeyError,
                AttributeError) as exc:
            raise rf.ExpressionError(
                f"{type(exc).__name__}: {exc}", expression=self.source
            ) from None

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
