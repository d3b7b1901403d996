"""A misspelt field of a process, connection, port end, exported port or group is refused,
naming the place and the field meant; a foreign addition far from every field is not."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reflowpy as rf


def _noflo() -> dict[str, Any]:
    return {"processes": {"a": {"component": "core/Repeat", "metadata": {"x": 1}},
                          "b": {"component": "core/Drop"}},
            "connections": [{"src": {"process": "a", "port": "out", "index": 0},
                             "tgt": {"process": "b", "port": "in"}, "metadata": {}},
                            {"data": 5, "tgt": {"process": "a", "port": "in"}}],
            "inports": {"go": {"process": "a", "port": "in", "metadata": {}}},
            "groups": [{"name": "g", "nodes": ["a"], "metadata": {}}]}


def _reflow() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(rf.Graph.loads(json.dumps(_noflo()), "noflo").dumps("reflow"))
    return doc


def _places(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """(path of a dict inside a table, one of its field names) for every field below the
    top level, except free-form contents (metadata, data, a Reflow portType: read by
    its own reader)."""
    found: list[tuple[tuple[Any, ...], str]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) \
        if isinstance(doc, list) else ()
    for key, value in items:
        if len(path) >= 2 and isinstance(doc, dict):
            found.append((path, key))
        if key in ("metadata", "data", "properties", "portType") or len(path) > 3:
            continue
        if isinstance(value, (dict, list)):
            found.extend(_places(value, (*path, key)))
    return found


def _misspell(draw: st.DrawFn, name: str) -> str:
    kind = draw(st.sampled_from(["drop", "swap", "case"]))
    if kind == "case" or len(name) < 4:
        return name[0].swapcase() + name[1:]
    i = draw(st.integers(0, len(name) - 2))
    if kind == "drop":
        return name[:i] + name[i + 1:]
    return name[:i] + name[i + 1] + name[i] + name[i + 2:]


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


@st.composite
def _typo(draw: st.DrawFn) -> tuple[str, dict[str, Any], str, str]:
    fmt = draw(st.sampled_from(["noflo", "reflow"]))
    doc = _noflo() if fmt == "noflo" else _reflow()
    path, key = draw(st.sampled_from(_places(doc)))
    wrong = _misspell(draw, key)
    entry = _at(doc, path)
    if wrong == key or wrong in entry:
        wrong = key[:-1]
    entry[wrong] = entry.pop(key)
    return fmt, doc, key, wrong


@settings(max_examples=150, deadline=None)
@given(case=_typo(), as_yaml=st.booleans())
def test_a_misspelt_field_is_refused_naming_place_and_field(
        case: tuple[str, dict[str, Any], str, str], as_yaml: bool) -> None:
    fmt, doc, key, wrong = case
    text = json.dumps(doc)
    if as_yaml:
        import yaml
        text = yaml.safe_dump(doc)
    try:
        rf.Graph.loads(text, "yaml" if as_yaml else fmt)
    except rf.GraphFormatError as exc:
        message = str(exc)
        if f"unknown field {wrong!r}" in message:
            assert f"did you mean {key!r}" in message
            assert exc.where and exc.where != "top level"
            return
        # Dropping a required field may be refused for that first ("missing ...").
        assert any(word in message.lower() for word in ("missing", "no node", "expected",
                                                        "needs")), message
        return
    # Only a field too short to be judged a misspelling can pass (its value is ignored).
    import difflib
    assert not difflib.get_close_matches(wrong, [key], cutoff=0.75), (wrong, key)


@pytest.mark.parametrize("extra", ["x-author", "ui", "createdBy", "zzz"])
def test_foreign_additions_are_ignored(extra: str) -> None:
    doc = _noflo()
    doc["processes"]["a"][extra] = 1
    doc["connections"][0]["src"][extra] = 1
    graph = rf.Graph.loads(json.dumps(doc), "noflo")
    assert sorted(graph.nodes) == ["a", "b"]


def test_the_first_entry_with_the_misspelling_is_named() -> None:
    doc = _noflo()
    doc["connections"][1]["tgt"]["prot"] = doc["connections"][1]["tgt"].pop("port")
    with pytest.raises(rf.GraphFormatError) as info:
        rf.Graph.loads(json.dumps(doc), "noflo")
    assert info.value.where == "connections[1].tgt"
    assert "'prot'" in str(info.value) and "'port'" in str(info.value)
