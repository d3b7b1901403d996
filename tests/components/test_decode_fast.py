"""The fast paths of immutability: freeze's one-check for flat containers and
decode_json (msgspec with json as the fallback) give exactly what the general paths
give: the same values, the same container types all the way down, the same errors.

The oracle for freeze is the recursive walk as it was before the fast path
(``_general_freeze`` below, kept verbatim apart from names); the oracle for
decode_json is ``freeze(json.loads(text))``.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import uuid
from typing import Any, NoReturn

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.network.codec import decode_json
from reflowpy.network.message import FrozenDict, FrozenList, freeze, freeze_decoded
from tests.scale import long_scale

# -- the oracle: freeze as it was (a recursive walk with per-item checks) -----------------

_LEAF_TYPES = frozenset({
    type(None), bool, int, float, str, bytes, complex, FrozenDict, FrozenList,
    datetime.datetime, datetime.date, datetime.time, datetime.timedelta, uuid.UUID,
    decimal.Decimal,
})


def _general_freeze(value: Any, where: str = "", path: str = "") -> Any:
    t = type(value)
    if t in _LEAF_TYPES:
        return value
    if t is dict or isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if type(k) not in _LEAF_TYPES or type(k) in (FrozenDict, FrozenList):
                _refuse(k, where, f"{path} key", "a dict key must be a str, int or other scalar")
            out[k] = v if type(v) in _LEAF_TYPES else _general_freeze(v, where, f"{path}.{k}")
        return FrozenDict(out)
    if t is list or isinstance(value, list):
        return FrozenList([v if type(v) in _LEAF_TYPES
                           else _general_freeze(v, where, f"{path}[{i}]")
                           for i, v in enumerate(value)])
    if t is tuple or isinstance(value, tuple):
        items = [v if type(v) in _LEAF_TYPES else _general_freeze(v, where, f"{path}[{i}]")
                 for i, v in enumerate(value)]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return tuple(items)
    if t is set or t is frozenset:
        return frozenset(_general_freeze(v, where, f"{path}{{}}") for v in value)
    if t is bytearray or t is memoryview:
        return bytes(value)
    if isinstance(value, msgspec.Struct):
        if not type(value).__struct_config__.frozen:
            _refuse(value, where, path, "a msgspec.Struct message must be declared frozen=True")
        return value
    if isinstance(value, (int, float, str, bytes)):
        return value
    _refuse(value, where, path, "messages must be JSON/msgpack values or frozen Structs")


def _refuse(value: Any, where: str, path: str, why: str) -> NoReturn:
    at = f" at {path.lstrip('.')}" if path else ""
    prefix = f"{where}: " if where else ""
    raise rf.MessageError(
        f"{prefix}cannot send a value of type {type(value).__name__}{at}: {why}")


def _shape(value: Any) -> Any:
    """The value with the type of every container and leaf spelled out (so a
    FrozenList and a list, or 1 and True, do not compare equal)."""
    t = type(value)
    if isinstance(value, dict):
        return (t.__name__, tuple((_shape(k), _shape(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (t.__name__, tuple(_shape(v) for v in value))
    if isinstance(value, frozenset):
        return (t.__name__, frozenset(_shape(v) for v in value))
    if isinstance(value, float) and value != value:
        return (t.__name__, "nan")
    return (t.__name__, value)


def _outcome(fn: Any, value: Any) -> Any:
    try:
        result = fn(value)
    except rf.MessageError as exc:
        return ("MessageError", str(exc))
    return ("ok", _shape(result), result)


# -- values of every kind freeze meets ----------------------------------------------------


class _Color(enum.Enum):
    RED = 1


class _StrEnum(enum.StrEnum):
    A = "a"


class _Frozen(msgspec.Struct, frozen=True):
    x: int


class _Mutable(msgspec.Struct):
    x: int


class _MyDict(dict[str, Any]):
    pass


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
    st.binary(max_size=4), st.just(1.5j), st.just(datetime.date(2026, 12, 1)),
    st.just(uuid.UUID(int=7)), st.just(decimal.Decimal("1.5")),
)
_odd = st.one_of(
    st.just(_Color.RED), st.just(_StrEnum.A), st.just(_Frozen(1)), st.just(_Mutable(1)),
    st.builds(object), st.just(bytearray(b"ab")), st.just(memoryview(b"cd")),
    st.just(FrozenDict({"f": 1})), st.just(FrozenList([1])),
)
_keys = st.one_of(st.text(max_size=4), st.integers(), st.none(), st.booleans(),
                  st.just(FrozenDict()), st.just((1, 2)), st.just(_StrEnum.A))


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=4), children, max_size=5),
        st.dictionaries(_keys, children, max_size=3),
        st.tuples(children, children),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=3)), max_size=3),
        st.sets(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=3), children, max_size=3).map(_MyDict),
    )


_values = st.recursive(st.one_of(_scalars, _odd), _containers, max_leaves=20)
# Mostly-flat records, the fast path's common case
_flat = st.one_of(
    st.dictionaries(st.text(max_size=6), _scalars, max_size=10),
    st.lists(_scalars, max_size=10),
    st.dictionaries(_keys, st.one_of(_scalars, _odd), max_size=6),
)


@settings(max_examples=long_scale(400), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_values, _flat))
def test_freeze_fast_path_equals_the_general_walk(value: Any) -> None:
    want = _outcome(_general_freeze, value)
    assert _outcome(freeze, value) == want
    assert _outcome(freeze_decoded, value) == want
    if want[0] == "ok":
        where = _outcome(lambda v: freeze(v, where="node 'n' port 'out'"), value)
        assert where[0] == "ok"
    else:
        try:
            freeze(value, where="node 'n' port 'out'")
        except rf.MessageError as exc:
            assert str(exc).startswith("node 'n' port 'out': cannot send")
        else:
            raise AssertionError("freeze accepted what the general walk refused")


def test_freeze_flat_record_is_one_copy_and_frozen() -> None:
    record = {"ts": 1, "level": "info", "ok": True, "lat": 1.5, "none": None, "b": b"x"}
    frozen = freeze(record)
    assert type(frozen) is FrozenDict and frozen == record and frozen is not record
    assert freeze(frozen) is frozen  # already immutable: by reference
    with pytest.raises(TypeError):
        frozen["ts"] = 2  # type: ignore[index]
    record["ts"] = 3  # the copy does not share the sender's dict
    assert frozen["ts"] == 1
    assert type(freeze([1, "a", None])) is FrozenList


@pytest.mark.parametrize(("value", "where"), [
    ({"a": object()}, "at a"),
    ({(1, 2): 1}, "key"),
    ({FrozenDict(): 1}, "key"),
    ([1, 2, _Mutable(1)], "at [2]"),
    ({"a": [{"b": {1, object()}}]}, "a[0].b{}"),
])
def test_freeze_refusals_still_name_the_path(value: Any, where: str) -> None:
    with pytest.raises(rf.MessageError) as info:
        freeze(value, where="node 'n' port 'out'")
    assert where in str(info.value) and "node 'n' port 'out'" in str(info.value)


# -- decode_json against freeze(json.loads(text)) ---------------------------------------


def _json_outcome(text: str | bytes) -> Any:
    try:
        value = decode_json(text)
    except ValueError:
        value = _Err
    try:
        oracle = freeze(json.loads(text))
    except ValueError:
        oracle = _Err
    return value, oracle


class _ErrType:
    pass


_Err: Any = _ErrType()

_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63 - 5, max_value=2**70),
    st.integers(min_value=-(2**70), max_value=-(2**63) + 5), st.floats(),
    st.text(max_size=6), st.text(alphabet=st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010),
                                 max_size=3),
)
_json_values = st.recursive(
    _json_scalars,
    lambda c: st.one_of(st.lists(c, max_size=5),
                        st.dictionaries(st.text(max_size=4), c, max_size=5)),
    max_leaves=25,
)


@st.composite
def _json_texts(draw: st.DrawFn) -> str | bytes:
    value = draw(_json_values)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()),
                      separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))
    how = draw(st.sampled_from(["str", "utf8", "utf16", "utf32", "bom", "spaces", "mutate",
                                "dupkey"]))
    if how == "utf8":
        return text.encode("utf-8", "surrogatepass")
    if how == "utf16":
        return text.encode("utf-16", "surrogatepass")
    if how == "utf32":
        return text.encode("utf-32-le", "surrogatepass")
    if how == "bom":
        return b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass")
    if how == "spaces":
        return draw(st.sampled_from([" ", "\t", "\n", "\r", "\x0c", ""])) + text + "\n "
    if how == "dupkey" and text.startswith("{") and len(text) > 2:
        return '{"k": 1, ' + text[1:-1] + (', ' if len(text) > 2 else '') + '"k": 2}'
    if how == "mutate" and text:
        i = draw(st.integers(0, len(text) - 1))
        junk = draw(st.sampled_from(["", ",", "]", "}", "NaN", "-", "0", "\\", '"', "\x00", "e9",
                                     "Infinity", "\ud800", "1e999", "01"]))
        return text[:i] + junk + text[i + 1:]
    return text


#: Inputs where the two decoders' inputs or rules differ (checked in every run).
JSON_EDGES: list[str | bytes] = [
    "NaN", "-Infinity", "[Infinity, 1]", "1e400", "-1e400", '"\\ud800"', '{"\\udfff": 1}',
    "\ud800", '"\ud800"', "123456789012345678901234567890", "-0", "-0.0", "4.9e-324",
    "2.4703282292062328e-324", "1.7976931348623157e308", '{"a":1,"a":2}', "\ufeff1",
    b"\xef\xbb\xbf[1]", "1.0".encode("utf-16"), '"a\x01b"', "[1,]", "01", "1.", "", " ", "\x0c1",
    b'"\xff"', '"\\u0000"', "tru", "[" * 3000 + "]" * 3000, '{"a": [1, {"b": null}]}',
    '[{"x": [[], {}]}, "s", 1.5, true, false, null]',
    # the flat-object shortcut: braces and brackets in strings, nesting in any encoding
    '{"a": "[x", "b": 1}', '{"a": "{"}', '{"a": {"b": 1}}', '{"a": [1]}', '{"a": "}"}',
    '{"a": {}}', '{"\\u007b": []}', '{"a": "\\u005b"}', '{"a": {"b": [{}]}}',
    '{"a": {"b": 1}}'.encode("utf-16"), '{"a": [2]}'.encode("utf-32"), b'{"a": {"b": 1}}',
    b'{"a": "x"}',
]


@pytest.mark.parametrize("text", JSON_EDGES, ids=range(len(JSON_EDGES)))
def test_decode_json_edges_match_json_loads(text: str | bytes) -> None:
    try:
        want = freeze(json.loads(text))
    except ValueError:
        with pytest.raises(ValueError):
            decode_json(text)
        return
    except RecursionError:
        with pytest.raises(RecursionError):
            decode_json(text)
        return
    got = decode_json(text)
    assert _shape(got) == _shape(want)


@settings(max_examples=long_scale(600), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_json_texts())
def test_decode_json_equals_freeze_of_json_loads(text: str | bytes) -> None:
    got, want = _json_outcome(text)
    if want is _Err:
        assert got is _Err, f"decode_json accepted what json.loads refuses: {text!r:.80}"
    else:
        assert got is not _Err, f"decode_json refused what json.loads accepts: {text!r:.80}"
        assert _shape(got) == _shape(want)


@settings(max_examples=long_scale(300), deadline=None)
@given(st.one_of(st.text(max_size=30), st.binary(max_size=30)))
def test_decode_json_on_garbage_agrees_with_json_loads(text: str | bytes) -> None:
    got, want = _json_outcome(text)
    assert (got is _Err) == (want is _Err)
    if want is not _Err:
        assert _shape(got) == _shape(want)
