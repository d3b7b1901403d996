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

Not read (so left to the full loader): anchors, aliases and tags, flow collections
with content, multi-line scalars, ``? `` keys, merges, directives and document
markers, tabs, CR line ends, duplicate keys (refused there, with both lines) and
characters outside the printable set. The fuzz suite checks on generated documents and
line soups that whatever this reader answers is what PyYAML answers.
"""

from __future__ import annotations

import re
from typing import Any

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
    pos, end = 0, len(text)
    match = _LINE.match
    while pos < end:
        m = match(text, pos)
        if m is None or m.end() == pos:
            raise _NotSubset
        pos = m.end()
        spaces, dash, key, value, item = m.groups()
        if key is None:
            if item is None:
                if dash is None:
                    continue  # blank or comment line
                raise _NotSubset  # "- " alone: a nested block or null
            if dash is None:
                raise _NotSubset  # a bare value: a continued scalar or an error
        ind = len(spaces)
        if pending is not None:
            owner, pkey, pind = pending
            pending = None
            if ind > pind or (dash is not None and ind == pind):
                child: Any = [] if dash is not None else {}
                owner[pkey] = child
                stack.append((ind, child, dash is None))
            else:
                owner[pkey] = None
        elif root is None:
            if ind or dash is not None:
                raise _NotSubset
            root = {}
            stack.append((0, root, True))
        while stack:
            top = stack[-1]
            if top[0] == ind and top[2] == (dash is None):
                break
            if top[0] < ind:
                raise _NotSubset
            stack.pop()
        else:
            raise _NotSubset
        container = stack[-1][1]
        if dash is not None:
            if key is None:
                container.append(_scalar(item, plain, cache))
                continue
            ind += len(dash)
            mapping: dict[str, Any] = {}
            container.append(mapping)
            stack.append((ind, mapping, True))
            container = mapping
        name = cache.get(key)
        if name is None:
            name = plain(key)
            if type(name) is not str:
                raise _NotSubset
        if name in container:
            raise _NotSubset  # a duplicate: the full loader names both lines
        if value is None:
            pending = (container, name, ind)
        else:
            container[name] = _scalar(value, plain, cache)
    if pending is not None:
        pending[0][pending[1]] = None
    return root


def _scalar(text: str, plain: Any, cache: dict[str, Any]) -> Any:
    first = text[0]
    if first == "'" or first == '"':
        return _quoted(text)
    if first == "[":
        return []
    if first == "{":
        return {}
    value = cache.get(text, cache)
    return plain(text) if value is cache else value
