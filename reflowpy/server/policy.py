"""What graphs posted to the server may do: components, scripts, network, files.

A graph a client sends (REST ``/executions`` and ``/graphs``, Reflow ``/workflows``,
FBP edits and ``network:start``) gets only the capabilities this :class:`GraphPolicy`
grants:

* **components**: a node's component must match one of ``allow`` (shell patterns,
  default ``*``) and none of ``deny`` (``--allow-component``/``--deny-component``);
* **scripts**: ``script/*`` nodes and FBP ``component:source`` components run only
  when ``scripts`` is true (``--no-scripts``; ``--no-setsource`` implies it, since a
  ``script/python`` node with inline source is client code as much as a
  ``component:source`` module is), only in the sandboxes listed in ``sandboxes``
  (``--script-sandbox``), and with ``network: true`` only when ``script_network`` is
  granted (``--script-network``);
* **sandbox options**: a client graph may not weaken the sandbox its script node runs
  in. The options that would (:data:`SANDBOX_OPTIONS`: ``allow_weaker``, ``user``,
  ``group``, ``image``, ``wasi``, and ``limits`` above the defaults of
  :class:`~reflowpy.script.host.Limits`) are refused unless the operator lists them
  in ``sandbox_options`` (``--allow-sandbox-option KEY``; ``limits`` grants every
  limit, ``limits.NAME`` one of them). Lowering a limit is always allowed;
* **files**: with a ``workspace`` (``--workspace DIR``; by default ``DATA_DIR/workspace``)
  every file path of an ``io/*`` node (``path``, ``database``, and paths that arrive
  on a reader's ``in`` port) and of a script node (``file``, ``module``) must lie
  inside it after resolving ``..`` and symlinks; relative paths are taken relative to
  it. (A symlink swapped in between the check and the ``open`` is not caught; the
  workspace should not be shared with untrusted local users.)

A refusal is :class:`CapabilityRefused`, naming the node, the component and the rule;
the server answers ``403`` or an FBP ``error`` with that text.

The checks run twice: on the whole graph when it is accepted (so a refusal comes
before anything starts), and inside the components themselves, which
:meth:`GraphPolicy.confine_registry` wraps, so a live edit or a path arriving as a
packet cannot get around them.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from reflowpy.errors import ReflowError, ServerConfigError
from reflowpy.network.actor import Actor, ActorContext
from reflowpy.network.graph import Graph
from reflowpy.network.registry import Registry

__all__ = ["SANDBOX_OPTIONS", "CapabilityRefused", "GraphPolicy"]

#: Metadata keys that name files, per component family.
_IO_PATH_KEYS = ("path", "database")
_SCRIPT_PATH_KEYS = ("file", "module")
#: Values of ``database`` that are not files.
_NOT_FILES = frozenset({":memory:", ""})
#: Script-node metadata that would weaken the sandbox, with why (for the refusal).
SANDBOX_OPTIONS: dict[str, str] = {
    "allow_weaker": "runs the process sandbox without some of its confinement layers",
    "user": "picks the uid the worker runs as (0 is root)",
    "group": "picks the gid the worker runs as",
    "image": "picks the container image the code runs in",
    "wasi": "grants the WASM plugin WASI (clocks, random, stdio)",
}


class CapabilityRefused(ReflowError):
    """A posted graph asked for something the server does not grant."""

    def __init__(self, message: str, *, node: str | None = None,
                 component: str | None = None, rule: str = "") -> None:
        super().__init__(message)
        self.node = node
        self.component = component
        self.rule = rule


def _is_script(component: Any) -> bool:
    from reflowpy.script.actor import _ScriptActor

    return inspect.isclass(component) and issubclass(component, _ScriptActor)


class GraphPolicy:
    """The capabilities posted graphs get (see the module docstring)."""

    def __init__(
        self,
        *,
        allow: Iterable[str] = ("*",),
        deny: Iterable[str] = (),
        scripts: bool = True,
        sandboxes: Iterable[str] = ("process", "docker"),
        script_network: bool = False,
        workspace: str | Path | None = None,
        sandbox_options: Iterable[str] = (),
    ) -> None:
        self.allow = tuple(allow) or ("*",)
        self.sandbox_options = frozenset(sandbox_options)
        unknown = {o for o in self.sandbox_options if o not in SANDBOX_OPTIONS
                   and o != "limits" and not (o.startswith("limits.")
                                             and o[7:] in _limit_defaults())}
        if unknown:
            raise ValueError(f"sandbox_options: unknown option(s) {sorted(unknown)} (known:"
                             f" {', '.join([*SANDBOX_OPTIONS, 'limits', 'limits.NAME'])})")
        self.deny = tuple(deny)
        self.scripts = scripts
        self.sandboxes = frozenset(sandboxes)
        self.script_network = script_network
        self.workspace: Path | None = None
        if workspace is not None:
            root = Path(workspace)
            try:
                root.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise ServerConfigError(f"workspace {str(root)!r}: cannot create it:"
                                        f" {exc.strerror or exc}") from None
            self.workspace = root.resolve()

    def describe(self) -> dict[str, Any]:
        """The policy as plain values (for logs and ``/health``-style reports)."""
        return {"allow": list(self.allow), "deny": list(self.deny), "scripts": self.scripts,
                "sandboxes": sorted(self.sandboxes), "script_network": self.script_network,
                "sandbox_options": sorted(self.sandbox_options),
                "workspace": str(self.workspace) if self.workspace else None}

    # -- the rules --------------------------------------------------------------------

    def check_component(self, node: str, component: str) -> None:
        """Refuse a component the allow/deny patterns exclude."""
        for pattern in self.deny:
            if fnmatch.fnmatchcase(component, pattern):
                raise CapabilityRefused(
                    f"node {node!r}: component {component!r} is not allowed on this server"
                    f" (rule: deny {pattern!r})", node=node, component=component,
                    rule=f"deny {pattern}")
        if not any(fnmatch.fnmatchcase(component, p) for p in self.allow):
            raise CapabilityRefused(
                f"node {node!r}: component {component!r} is not allowed on this server"
                f" (rule: allow {', '.join(self.allow)})", node=node, component=component,
                rule="allow")

    def check_script(self, node: str, component: str, config: Mapping[str, Any],
                     *, sandbox_default: str = "docker") -> None:
        """Refuse a script node the script rules exclude."""
        if not self.scripts:
            raise CapabilityRefused(
                f"node {node!r}: {component!r} runs client code, and scripts are disabled"
                " on this server (rule: --no-scripts/--no-setsource)", node=node,
                component=component, rule="scripts")
        if component == "script/python" or "sandbox" in config:
            sandbox = config.get("sandbox", sandbox_default)
            if sandbox not in self.sandboxes:
                raise CapabilityRefused(
                    f"node {node!r}: sandbox {sandbox!r} is not allowed on this server"
                    f" (rule: --script-sandbox {','.join(sorted(self.sandboxes))})",
                    node=node, component=component, rule="sandbox")
        if config.get("network") is True and not self.script_network:
            raise CapabilityRefused(
                f"node {node!r}: scripts may not have network access on this server"
                " (rule: --script-network not granted)", node=node, component=component,
                rule="script_network")
        self._check_sandbox_options(node, component, config)

    def _check_sandbox_options(self, node: str, component: str,
                               config: Mapping[str, Any]) -> None:
        for key, why in SANDBOX_OPTIONS.items():
            value = config.get(key)
            if value is None or value is False or key in self.sandbox_options:
                continue
            raise CapabilityRefused(
                f"node {node!r}: metadata {key!r} {why}, which weakens the sandbox; this"
                f" server does not let posted graphs set it (rule: sandbox option {key};"
                f" the operator may allow it with --allow-sandbox-option {key})",
                node=node, component=component, rule=f"sandbox option {key}")
        limits = config.get("limits")
        if not isinstance(limits, Mapping) or "limits" in self.sandbox_options:
            return  # a malformed ``limits`` is the component's to report
        defaults = _limit_defaults()
        for name, value in limits.items():
            default = defaults.get(name)
            if (default is None or isinstance(value, bool)
                    or not isinstance(value, int | float) or value <= default
                    or f"limits.{name}" in self.sandbox_options):
                continue
            raise CapabilityRefused(
                f"node {node!r}: metadata limits.{name} = {value!r} is above this server's"
                f" limit {default!r}, which weakens the sandbox (rule: sandbox option"
                f" limits.{name}; the operator may allow it with --allow-sandbox-option"
                f" limits.{name})", node=node, component=component,
                rule=f"sandbox option limits.{name}")

    def confine(self, node: str, key: str, value: Any) -> Any:
        """``value`` (a path from metadata or a packet) inside the workspace, absolute;
        refused if it points outside. Non-strings pass (the component reports them)."""
        root = self.workspace
        if root is None or not isinstance(value, str) or (
                key == "database" and value in _NOT_FILES):
            return value
        if "\x00" in value:
            raise CapabilityRefused(f"node {node!r}: {key} {value!r} contains a NUL byte",
                                    node=node, rule="workspace")
        path = Path(value)
        resolved = (path if path.is_absolute() else root / path).resolve()
        if resolved != root and root not in resolved.parents:
            raise CapabilityRefused(
                f"node {node!r}: {key} {value!r} is outside the workspace {str(root)!r}"
                " (rule: --workspace)", node=node, rule="workspace")
        return str(resolved)

    def _path_keys(self, component: str, cls: Any) -> tuple[str, ...]:
        if _is_script(cls):
            return _SCRIPT_PATH_KEYS
        if component.startswith("io/"):
            return _IO_PATH_KEYS
        return ()

    def check_node(self, registry: Registry, node: str, component: str,
                   config: Mapping[str, Any]) -> None:
        """Every rule for one node (component, scripts, file paths)."""
        self.check_component(node, component)
        try:
            cls = registry.get(component)
        except ReflowError:
            return  # unknown components are the validator's to report
        if _is_script(cls):
            self.check_script(node, component, config,
                              sandbox_default=str(getattr(cls, "sandbox", "docker")))
        for key in self._path_keys(component, cls):
            if key in config:
                self.confine(node, key, config[key])

    def check_graph(self, graph: Graph, registry: Registry) -> None:
        """Every rule for every node of ``graph``; the first violation is raised."""
        for node in graph.nodes.values():
            self.check_node(registry, node.id, node.component, node.metadata)

    # -- enforcement inside the components ----------------------------------------------

    def confine_registry(self, registry: Registry) -> Registry:
        """A copy of ``registry`` whose ``io/*`` and script components enforce this
        policy themselves (paths from metadata and packets, script rules)."""
        out = registry.copy()
        for name in registry.names():
            try:
                cls = registry.get(name)
            except ReflowError:
                continue
            if not (inspect.isclass(cls) and issubclass(cls, Actor)):
                continue
            keys = self._path_keys(name, cls)
            if keys or _is_script(cls):
                out.register(name, _confined_class(self, name, cls, keys), replace=True)
        return out


def _limit_defaults() -> dict[str, float]:
    """The numeric defaults of the script limits (the ceiling for posted graphs)."""
    from reflowpy.script.host import Limits

    out: dict[str, float] = {}
    for name in Limits.__struct_fields__:
        value = getattr(Limits(), name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = value
    return out


class _ConfinedContext:
    """An :class:`ActorContext` whose ``config`` has its paths confined; everything
    else is the real context."""

    def __init__(self, ctx: ActorContext, config: Mapping[str, Any]) -> None:
        self._ctx = ctx
        self.config = config

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


def _confined_class(policy: GraphPolicy, name: str, cls: type[Actor],
                    keys: tuple[str, ...]) -> type[Actor]:
    script = _is_script(cls)

    def confined_ctx(ctx: ActorContext) -> Any:
        config = dict(ctx.config)
        node = ctx.node_id
        if script:
            policy.check_script(node, name, config,
                                sandbox_default=str(getattr(cls, "sandbox", "docker")))
        for key in keys:
            if key in config:
                config[key] = policy.confine(node, key, config[key])
        return _ConfinedContext(ctx, config)

    namespace: dict[str, Any] = {"__module__": cls.__module__, "__doc__": cls.__doc__,
                                 "__qualname__": cls.__qualname__}
    original_setup = cls.setup

    async def setup(self: Any, ctx: ActorContext) -> None:
        await original_setup(self, confined_ctx(ctx))

    namespace["setup"] = setup
    for method in ("read", "list"):  # readers take paths from packets on ``in``
        original = getattr(cls, method, None)
        if original is None or not inspect.iscoroutinefunction(original):
            continue

        def make(original: Any) -> Any:
            async def confined(self: Any, ctx: ActorContext, path: Any) -> None:
                try:
                    path = policy.confine(ctx.node_id, "path", path)
                except CapabilityRefused as exc:
                    from reflowpy.components._common import report_in_loop

                    await report_in_loop(ctx, exc, path)
                    return
                await original(self, ctx, path)
            return confined

        namespace[method] = make(original)
    return type(cls.__name__, (cls,), namespace)
