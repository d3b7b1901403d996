"""The component registry: names -> actor classes (or subgraphs), with discovery.

A registry maps a component name such as ``core/Repeat`` to what a node of that
component is made of: an :class:`~reflowpy.Actor` subclass (one instance per node) or
a :class:`~reflowpy.Graph` used as a subgraph component. ``describe()`` returns the
ports, types and description that editors and the FBP protocol's ``component:list``
show.

Third-party packages add components through the ``reflowpy.components`` entry-point
group: each entry point names either an ``Actor`` subclass (registered under the
entry point's name) or a callable ``register(registry)``.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from reflowpy.errors import ComponentError, ComponentNotFound
from reflowpy.network.actor import Actor, Port
from reflowpy.network.graph import Graph

__all__ = ["ENTRY_POINT_GROUP", "ComponentInfo", "Registry", "default_registry"]

ENTRY_POINT_GROUP = "reflowpy.components"

Component = type[Actor] | Graph


class ComponentInfo(msgspec.Struct, frozen=True):
    """What a component looks like from outside: name, ports, description."""

    name: str
    description: str = ""
    icon: str = ""
    inports: tuple[Port, ...] = ()
    outports: tuple[Port, ...] = ()
    subgraph: bool = False
    await_all_inports: bool = False


class Registry:
    """Component name -> actor class or subgraph.

    >>> reg = Registry()
    >>> reg.register("demo/Double", SomeActor)   # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._components: dict[str, Component] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, component: Component, *, replace: bool = False) -> None:
        """Register ``component`` under ``name``.

        Raises :class:`ComponentError` if the name is taken (pass ``replace=True`` to
        overwrite, as live editors do) or the value is not an actor class or graph.
        """
        if not name:
            raise ComponentError("a component name must be a non-empty string")
        is_actor = isinstance(component, type) and issubclass(component, Actor)
        if not (is_actor or isinstance(component, Graph)):
            raise ComponentError(
                f"component {name!r}: expected an Actor subclass (or @rf.actor function) or a"
                f" Graph, got {type(component).__name__}"
            )
        if not replace and (name in self._components or name in self._aliases):
            raise ComponentError(
                f"component {name!r} is already registered; pass replace=True to overwrite"
            )
        self._aliases.pop(name, None)
        self._components[name] = component

    def alias(self, alias: str, name: str) -> None:
        """Make ``alias`` resolve to the registered component ``name`` (e.g. Reflow's
        ``tpl_passthrough``)."""
        if name not in self._components:
            raise ComponentNotFound(f"cannot alias {alias!r}: no component {name!r}")
        self._aliases[alias] = name

    def unregister(self, name: str) -> None:
        """Remove a component or alias; raises :class:`ComponentNotFound`."""
        if name in self._aliases:
            del self._aliases[name]
        elif name in self._components:
            del self._components[name]
        else:
            raise ComponentNotFound(f"no component {name!r} to unregister")

    def resolve(self, name: str) -> str:
        """The canonical name ``name`` refers to (itself, or what an alias points to)."""
        return self._aliases.get(name, name)

    def get(self, name: str) -> Component:
        """The actor class or subgraph registered as ``name``."""
        try:
            return self._components[self.resolve(name)]
        except KeyError:
            import difflib

            names = sorted(self._components) + sorted(self._aliases)
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
            hint = (f"; did you mean {', '.join(map(repr, close))}?" if close
                    else f" ({len(self._components)} known; `reflowpy components` lists them)")
            raise ComponentNotFound(f"no component {name!r} in the registry{hint}") from None

    def subgraph_cycle(self, name: str) -> list[str] | None:
        """The chain of subgraph components through which ``name`` uses itself (``['A',
        'B', 'A']``: A has a node of component B, which has one of A), or ``None``.

        Such a graph would nest networks without end as it starts; names the registry
        does not know are left to the component checks."""

        def uses(key: str) -> Iterator[str] | None:
            found = self._components.get(key)
            if not isinstance(found, Graph):
                return None
            return (self.resolve(node.component) for node in found.nodes.values())

        # depth-first, with an explicit stack: a legitimate nesting may be deep
        root = self.resolve(name)
        first = uses(root)
        if first is None:
            return None
        path, stack, done = [root], [first], set()
        while stack:
            key = next(stack[-1], None)
            if key is None:
                done.add(path.pop())
                stack.pop()
            elif key in path:
                return [*path[path.index(key):], key]
            elif key not in done and (inner := uses(key)) is not None:
                path.append(key)
                stack.append(inner)
        return None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.resolve(name) in self._components

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._components))

    def __len__(self) -> int:
        return len(self._components)

    def names(self, *, aliases: bool = False) -> list[str]:
        """Registered component names, sorted; with ``aliases=True`` aliases too."""
        names = set(self._components)
        if aliases:
            names |= set(self._aliases)
        return sorted(names)

    def describe(self, name: str) -> ComponentInfo:
        """Ports, types and description of a component, for listings and editors."""
        component = self.get(name)
        if isinstance(component, Graph):
            graph = component
            return ComponentInfo(
                name=name,
                description=str(graph.properties.get("description", "")),
                icon=str(graph.properties.get("icon", "")),
                inports=tuple(_exported_port(graph, public, True) for public in graph.inports),
                outports=tuple(
                    _exported_port(graph, public, False) for public in graph.outports
                ),
                subgraph=True,
            )
        return ComponentInfo(
            name=name,
            description=(component.description or component.__doc__ or "").strip(),
            icon=component.icon,
            inports=component.inport_specs(),
            outports=component.outport_specs(),
            await_all_inports=component.await_all_inports,
        )

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP, *,
                          skip_broken: bool = False, order_first: str = "") -> list[str]:
        """Register every component published under the entry-point ``group``
        (the entry point named ``order_first`` before the others).

        Returns the names registered. A broken entry point raises
        :class:`ComponentError` naming the distribution and entry point; with
        ``skip_broken`` (what :func:`default_registry` does) it is logged once as a
        warning on ``reflowpy.registry`` and skipped, so one bad plugin cannot break
        every command.
        """
        eps = sorted(importlib.metadata.entry_points(group=group),
                     key=lambda ep: ep.name != order_first)
        if skip_broken:
            added: list[str] = []
            for ep in eps:
                try:
                    added += self._load_entry_point(ep, group)
                except Exception as exc:
                    _report_broken(ep.name, exc)
            return added
        return [name for ep in eps for name in self._load_entry_point(ep, group)]

    def _load_entry_point(self, ep: Any, group: str) -> list[str]:
        """Register what one entry point names; its names, or ComponentError."""
        added: list[str] = []
        try:
            obj: Any = ep.load()
        except Exception as exc:
            raise ComponentError(
                f"entry point {ep.name!r} ({ep.value}) in group {group!r} failed to load:"
                f" {type(exc).__name__}: {exc}"
            ) from exc
        if (isinstance(obj, type) and issubclass(obj, Actor)) or isinstance(obj, Graph):
            self.register(ep.name, obj, replace=True)
            added.append(ep.name)
        elif callable(obj):
            before = set(self._components)
            register: Callable[[Registry], object] = obj
            register(self)
            added.extend(sorted(set(self._components) - before))
        else:
            raise ComponentError(
                f"entry point {ep.name!r} ({ep.value}) is neither an Actor subclass, a"
                " Graph, nor a register(registry) function"
            )
        return added

    def copy(self) -> Registry:
        """An independent registry with the same components and aliases."""
        other = Registry()
        other._components = dict(self._components)
        other._aliases = dict(self._aliases)
        return other


def _exported_port(graph: Graph, public: str, inport: bool) -> Port:
    exported = (graph.inports if inport else graph.outports)[public]
    meta = exported.metadata
    return Port(
        public,
        type=str(meta.get("type", "any")),
        description=str(meta.get("description", "")),
    )


def default_registry() -> Registry:
    """A new registry holding the standard components and every installed plugin.

    Everything comes from the ``reflowpy.components`` entry points, the standard
    library included (entry point ``standard``, loaded first so plugins may replace
    standard components on purpose): the kernel never imports the library above it.
    Raises :class:`ComponentError` when the ``standard`` entry point is missing (the
    package metadata is stale: reinstall with ``pip install -e .``).
    """
    eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    if not any(ep.name == "standard" for ep in eps):
        raise ComponentError(
            f"entry point 'standard' missing from group {ENTRY_POINT_GROUP!r}: the"
            " installed reflowpy metadata is stale; reinstall it (pip install -e .)")
    registry = Registry()
    registry.load_entry_points(skip_broken=True, order_first="standard")
    return registry


_REPORTED: set[str] = set()


def _report_broken(entry: str, exc: BaseException) -> None:
    """Warn about a broken plugin once per process, naming it and what went wrong."""
    if entry in _REPORTED:
        return
    _REPORTED.add(entry)
    import logging

    logging.getLogger("reflowpy.registry").warning(
        "plugin %r skipped (fix or uninstall it): %s", entry, exc)
