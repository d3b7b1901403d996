"""A fast reader for the plain block subset of YAML that graph files are written in.

PyYAML's C parser still builds a Python object per event and resolves and constructs
every scalar in Python: a 50 MB graph took minutes. Graph files, ours and hand-written
ones alike, are almost always block mappings and sequences of one-line scalars::

    processes:
      n0:
        component: bench/Step
        metadata: {}
    connections:
    - from:
        nodeId: n0
        portName: out

:func:`read` reads exactly that subset in one pass over the lines, with one compiled
regex per line and a stack of open containers. It answers the same data PyYAML's safe
loader (our :class:`~reflowpy.network.formats.yaml._Loader`) would, or ``None`` for
"not in the subset": anything else, or anything it is unsure of, goes to the full
loader, which also gives the errors. What it reads:

* block mappings and sequences (also a sequence at its key's indentation), blank
  lines and whole-line comments;
* keys: plain names (``[A-Za-z_][A-Za-z0-9_./-]*``) that resolve to strings;
* values: one-line plain scalars from a conservative character set (no ``:``, ``#``,
  quotes, tabs, flow indicators), resolved by the loader's own implicit resolvers and
  built by its own constructors (so ``yes``, ``0x1F``, ``1_000``, ``.inf`` mean what
  PyYAML says), single-quoted and backslash-free double-quoted one-line strings,
  ``[]`` and ``{}``.

What it answers is within the limits of :mod:`~reflowpy.network.formats._limits` by
construction, so the caller need not walk it again: no aliases (nothing to expand),
containers at most ``MAX_DEPTH - 2`` deep, integers in the 64-bit range, keys that are
strings, no lone surrogates (see ``_ODD``); anything beyond goes to the full loader,
whose check names it.

Not read (so left to the full loader): anchors, aliases and tags, flow collections
with content, multi-line scalars, ``? `` keys, merges, directives and document
markers, tabs, CR line ends, duplicate keys (refused there, with both lines) and
characters outside the printable set. The fuzz suite checks on generated documents and
line soups that whatever this reader answers is what PyYAML answers.
"""

from __future__ import annotations

import re
from typing import Any

from reflowpy.network.formats._limits import MAX_DEPTH, MAX_INT, MIN_INT

__all__ = ["read"]

_KEY = r"[A-Za-z_][A-Za-z0-9_./\-]*"
# A plain scalar: starts with a letter, digit, _ . / ~ ( + or a minus before a digit;
# then no character that could end it, start a comment or change its meaning.
_PLAIN = (r"(?:[A-Za-z0-9_./~(+\u00c0-\u1fff\u2070-\ud7ff\uf900-\ufdcf]|-(?=[0-9]))"
          r"(?:[A-Za-z0-9_./()+\-=~;,@$%^*?<>!&| \u00c0-\u1fff\u2070-\ud7ff\uf900-\ufdcf]*"
          r"[A-Za-z0-9_./()+\-=~;,@$%^*?<>!&|\u00c0-\u1fff\u2070-\ud7ff\uf900-\ufdcf])?")
_SQUOTED = r"'(?:[^'\n]|'')*'"
_DQUOTED = r'"[^"\\\n]*"'
_VALUE = rf"(?:{_PLAIN}|{_SQUOTED}|{_DQUOTED}|\[\]|\{{\}})"
# One line: indent, "- " (a sequence item), then "key:", "key: value" or a value (in
# the subset only after "- "); or a blank or comment line (groups None but the indent).
_LINE = re.compile(
    rf"( *)(?:(- +)?(?:({_KEY}):(?: +({_VALUE}))?|({_VALUE}))? *|#[^\n]*)(?:\n|\Z)")
# _LINE for findall: every line matches, one outside the subset in the last group (a
# group that is never empty), so the matches follow each other with no gap.
_ROWS = re.compile(rf"{_LINE.pattern}|([^\n])[^\n]*(?:\n|\Z)")
_SLICE = 1 << 16  # characters per findall: bounds the rows held at once
# Deepest stack of open containers read here; deeper goes to the full loader, whose
# check (reflowpy.network.formats._limits.MAX_DEPTH) gives the error.
_MAX_STACK = MAX_DEPTH - 2
# Characters outside what the full reader takes unquestioned (control characters, DEL,
# C1, the YAML 1.1 line breaks NEL/LS/PS, BOM, surrogates, non-characters): full path.
_ODD = re.compile("[^\n\x20-\x7e\u00a0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd"
                  "\U00010000-\U0010ffff]")

_STR = "tag:yaml.org,2002:str"
_SIMPLE_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                          "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"})


class _NotSubset(Exception):
    """The text leaves the subset: the full loader reads it."""


class _Scalars:
    """Plain scalars resolved and built as the loader does, once per distinct text."""

    def __init__(self, loader_class: Any) -> None:
        self.resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = \
            loader_class.yaml_implicit_resolvers
        self.loader_class = loader_class
        self.loader: Any = None
        self.cache: dict[str, Any] = {}

    def plain(self, text: str) -> Any:
        try:
            return self.cache[text]
        except KeyError:
            pass
        tag = _STR
        for candidate, regexp in self.resolvers.get(text[0], ()):
            if regexp.match(text):
                tag = candidate
                break
        if tag == _STR:
            value: Any = text
        elif tag in _SIMPLE_TAGS:
            value = self._construct(tag, text)
            if type(value) is int and not MIN_INT <= value <= MAX_INT:
                raise _NotSubset  # the full loader's check names it
        else:  # merge, value, yaml, timestamp...: the full loader decides
            raise _NotSubset
        self.cache[text] = value
        return value

    def _construct(self, tag: str, text: str) -> Any:
        import yaml

        if self.loader is None:
            self.loader = self.loader_class("")
        node = yaml.ScalarNode(tag, text)
        try:
            return self.loader.construct_object(node)
        except yaml.YAMLError:  # e.g. an integer out of range: the full loader says so
            raise _NotSubset from None


def _quoted(text: str) -> str:
    if text[0] == "'":
        return text[1:-1].replace("''", "'")
    return text[1:-1]


def read(text: str, loader_class: Any) -> Any:
    """The data of ``text`` if it is in the block subset (see the module docstring),
    else ``None``; ``loader_class`` is the safe loader whose resolvers and
    constructors give scalars their meaning."""
    if not text or _ODD.search(text) is not None:
        return None
    try:
        return _read(text, _Scalars(loader_class))
    except _NotSubset:
        return None


def _read(text: str, scalars: _Scalars) -> Any:
    plain, cache = scalars.plain, scalars.cache
    # Open containers, innermost last: (indent, container, is_mapping).
    stack: list[tuple[int, Any, bool]] = []
    pending: tuple[dict[str, Any], str, int] | None = None  # "key:" awaiting its value
    root: Any = None
    # The innermost open container, as stack[-1] holds it once a line has set it.
    top: Any = None
    top_ind, top_map = -1, False
    # The lines in slices of about _SLICE characters (ending at a line end), split at
    # their ends in C. Each distinct line of a slice is matched once: a graph file
    # repeats most of its lines ("    portName: out", "  metadata: null", "- from:"),
    # so the regex sees a fraction of them. A line holds no "\n" (and no "\r", see
    # _ODD), so ``_ROWS`` matches it alone as it matches it in the whole text.
    fullmatch, groups = _ROWS.fullmatch, re.Match.groups
    pos, end = 0, len(text)
    while pos < end:
        stop = text.find("\n", pos + _SLICE)
        stop = end if stop < 0 else stop + 1
        lines = text[pos:stop].split("\n")
        if text.endswith("\n", 0, stop):
            lines.pop()  # the "" after the slice's last line end
        pos = stop
        distinct = list(set(lines))
        matches = list(map(fullmatch, distinct))
        if None in matches:  # pragma: no cover - _ROWS matches every line
            raise _NotSubset
        rows_of = dict(zip(distinct, map(groups, matches), strict=True))  # type: ignore[arg-type]
        del distinct, matches
        rows = list(map(rows_of.__getitem__, lines))
        del lines, rows_of
        for spaces, dash, key, value, item, bad in rows:
            if value and pending is None and not dash and top_map and len(spaces) == top_ind:
                # The common line: "key: value" in the mapping open at this indent.
                name = cache.get(key)
                if name is None:
                    name = plain(key)
                    if type(name) is not str:
                        raise _NotSubset
                if name in top:
                    raise _NotSubset  # a duplicate: the full loader names both lines
                first = value[0]
                if first == "'" or first == '"':
                    top[name] = _quoted(value)
                elif first == "[":
                    top[name] = []
                elif first == "{":
                    top[name] = {}
                else:
                    scalar = cache.get(value, cache)
                    top[name] = plain(value) if scalar is cache else scalar
                continue
            if not key:
                if bad:
                    raise _NotSubset  # a line outside the subset
                if not item:
                    if not dash:
                        continue  # blank or comment line
                    raise _NotSubset  # "- " alone: a nested block or null
                if not dash:
                    raise _NotSubset  # a bare value: a continued scalar or an error
            ind = len(spaces)
            if pending is not None:
                owner, pkey, pind = pending
                pending = None
                if ind > pind or (dash and ind == pind):
                    if len(stack) >= _MAX_STACK:
                        raise _NotSubset  # the full loader reports the depth
                    child: Any = [] if dash else {}
                    owner[pkey] = child
                    stack.append((ind, child, not dash))
                else:
                    owner[pkey] = None
            elif root is None:
                if ind or dash:
                    raise _NotSubset
                root = {}
                stack.append((0, root, True))
            while stack:
                top_ind, container, top_map = stack[-1]
                if top_ind == ind and top_map is not bool(dash):
                    break
                if top_ind < ind:
                    raise _NotSubset
                stack.pop()
            else:
                raise _NotSubset
            top = container
            if dash:
                if not key:
                    container.append(_scalar(item, plain, cache))
                    continue
                if len(stack) >= _MAX_STACK:
                    raise _NotSubset
                ind += len(dash)
                mapping: dict[str, Any] = {}
                container.append(mapping)
                stack.append((ind, mapping, True))
                top_ind, top, top_map = ind, mapping, True
                container = mapping
            name = cache.get(key)
            if name is None:
                name = plain(key)
                if type(name) is not str:
                    raise _NotSubset
            if name in container:
                raise _NotSubset  # a duplicate: the full loader names both lines
            if not value:
                pending = (container, name, ind)
                continue
            first = value[0]
            if first == "'" or first == '"':
                container[name] = _quoted(value)
            elif first == "[":
                container[name] = []
            elif first == "{":
                container[name] = {}
            else:
                scalar = cache.get(value, cache)
                container[name] = plain(value) if scalar is cache else scalar
    if pending is not None:
        pending[0][pending[1]] = None
    return root


def _scalar(text: str, plain: Any, cache: dict[str, Any]) -> Any:
    """A value written after ``- `` (the same as the inline code for ``key: value``)."""
    first = text[0]
    if first == "'" or first == '"':
        return _quoted(text)
    if first == "[":
        return []
    if first == "{":
        return {}
    value = cache.get(text, cache)
    return plain(text) if value is cache else value
