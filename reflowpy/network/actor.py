"""Actors: the unit of behaviour in a graph, and the context a behaviour sees.

An actor is a class with named in- and out-ports. The network makes **one instance
per node**, so each node has its own state; nothing is shared per component.

Three ways to write one:

* ``@actor(inports=[...], outports=[...])`` on a function ``f(ctx)`` (``def`` or
  ``async def``) that returns a mapping ``{port: value}`` or ``None``;
* a subclass of :class:`Actor` with ``process(self, ctx)``, called once per firing;
* a subclass of :class:`Actor` with ``run(self, ctx)``, which owns its loop (sources,
  streaming actors) and reads in-ports with ``await ctx.receive()``.

**Firing rules.** By default an actor fires once per arriving message, in arrival
order across its in-ports. With ``await_all_inports = True`` it fires when every
required in-port holds a message, taking exactly one from each (FIFO per port, never
overwriting a waiting message).

Outputs are either returned (a mapping port -> value) or sent at any time with
``await ctx.send(port, value)``; a send suspends while the receiver's queue is full,
which is how backpressure reaches the sender.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import msgspec

if TYPE_CHECKING:
    from reflowpy.network.supervision import Policy

__all__ = ["Actor", "ActorContext", "Port", "actor", "port_specs"]


class Port(msgspec.Struct, frozen=True):
    """A declared port.

    ``type`` is a port type in the syntax of :mod:`reflowpy.network.porttypes`
    (``"any"``, ``"integer"``, ``"array<string>"``, ...). ``required`` in-ports must
    hold a message for an ``await_all_inports`` actor to fire; optional ones are taken
    when present. ``capacity`` overrides the network default queue size of this
    in-port. ``addressable`` ports accept ``port[index]`` connections. A ``strict``
    port has its type checked on every message sent out of it or into it (a mismatch is
    a :class:`~reflowpy.MessageError` of the sending activation); other ports are
    checked only when the graph is validated.
    """

    name: str
    type: str = "any"
    description: str = ""
    required: bool = True
    capacity: int | None = None
    addressable: bool = False
    strict: bool = False


def port_specs(ports: Sequence[str | Port]) -> tuple[Port, ...]:
    """Normalize a port declaration (names or :class:`Port` values) to ``Port`` values."""
    return tuple(p if isinstance(p, Port) else Port(str(p)) for p in ports)


class ActorContext(Protocol):
    """What a behaviour sees. One context per node, reused across firings.

    ``inputs`` maps in-port name -> value for the current firing (valid during that
    firing). ``state`` is the node's own mutable dict; it survives firings and is reset
    when the supervisor restarts the actor. ``config`` is the node's metadata with its
    ``env_vars`` rules resolved.
    """

    node_id: str
    inputs: Mapping[str, Any]
    state: dict[str, Any]
    config: Mapping[str, Any]

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry the node id."""
        ...

    async def send(self, port: str, value: Any) -> None:
        """Send ``value`` out of ``port``; suspends while a receiver's queue is full."""
        ...

    async def send_all(self, port: str, values: Sequence[Any]) -> None:
        """Send each of ``values`` out of ``port``, in order: exactly ``send`` for each,
        but what the receiving queue has room for is handed over at once (a reader's
        chunk of records)."""
        ...

    async def receive(self, port: str | None = None) -> tuple[str, Any]:
        """For ``run()`` actors: the next ``(port, value)``, from ``port`` or from any in-port.

        Raises :class:`~reflowpy.NetworkStopped` when the network drains for a stop and
        nothing is left to receive: flush what you hold, then return.
        """
        ...

    async def receive_until(
        self, deadline: float, port: str | None = None
    ) -> tuple[str, Any] | None:
        """Like ``receive``, or ``None`` once ``deadline`` (trio time) passes; the node
        counts as busy meanwhile (a pending timer keeps the network from being idle)."""
        ...

    def connected(self, port: str) -> bool:
        """Whether an out-port has at least one receiver (connection or exported port)."""
        ...

    def status(self, text: str) -> None:
        """Set the node's status line, shown on the live page and in its statistics
        (as Node-RED's node status): one line, at most 200 characters, kept until the
        next call (``""`` clears it)."""
        ...

    def dead_letter(self, port: str, value: Any, error: BaseException) -> None:
        """For ``run()`` actors: put a message that cannot be processed in the dead-letter
        store (with the error), instead of dropping it."""
        ...


class Actor:
    """Base class of every actor. Subclass it and define ``process`` or ``run``.

    Class attributes declare the interface: ``inports``, ``outports`` (names or
    :class:`Port`), ``await_all_inports``, ``description``, ``icon`` and an optional
    failure ``policy`` (see :class:`~reflowpy.Policy`; node metadata can override it).
    """

    inports: ClassVar[Sequence[str | Port]] = ()
    outports: ClassVar[Sequence[str | Port]] = ()
    await_all_inports: ClassVar[bool] = False
    description: ClassVar[str] = ""
    icon: ClassVar[str] = ""
    policy: ClassVar[Policy | None] = None

    async def setup(self, ctx: ActorContext) -> None:
        """Called once when the network starts (and after a restart), before any firing.

        Validate ``ctx.config`` here and raise :class:`~reflowpy.ConfigError` naming the
        node and key; the network then refuses to start.
        """

    async def process(self, ctx: ActorContext) -> Mapping[str, Any] | None:
        """Handle one firing: read ``ctx.inputs``, return outputs or send them."""
        raise NotImplementedError(
            f"{type(self).__name__} defines neither process() nor run()"
        )

    async def teardown(self, ctx: ActorContext) -> None:
        """Called once when the network stops or before a restart; release resources."""

    # ``run`` is deliberately not defined here: an actor that owns its loop defines
    # ``async def run(self, ctx)``, and the kernel checks ``owns_loop()``.

    @classmethod
    def owns_loop(cls) -> bool:
        """True when the class defines ``run(ctx)`` and so owns its loop."""
        return callable(getattr(cls, "run", None))

    @classmethod
    def inport_specs(cls) -> tuple[Port, ...]:
        """The declared in-ports as :class:`Port` values."""
        return port_specs(cls.inports)

    @classmethod
    def outport_specs(cls) -> tuple[Port, ...]:
        """The declared out-ports as :class:`Port` values."""
        return port_specs(cls.outports)


#: A behaviour function: ``f(ctx)`` returning outputs (or a coroutine producing them).
Behaviour = Callable[[ActorContext], Any]


def actor(
    *,
    inports: Sequence[str | Port] = (),
    outports: Sequence[str | Port] = (),
    await_all_inports: bool = False,
    description: str | None = None,
    icon: str = "",
    policy: Policy | None = None,
) -> Callable[[Behaviour], type[Actor]]:
    """Turn a function ``f(ctx)`` into an :class:`Actor` class, one instance per node.

    The function may be ``def`` or ``async def``; a plain ``def`` is called directly,
    without building a coroutine, which is the fastest behaviour there is::

        @rf.actor(inports=["in"], outports=["out"])
        def double(ctx):
            return {"out": ctx.inputs["in"] * 2}
    """

    def decorate(fn: Behaviour) -> type[Actor]:
        is_async = inspect.iscoroutinefunction(fn)
        namespace: dict[str, Any] = {
            "inports": tuple(inports),
            "outports": tuple(outports),
            "await_all_inports": await_all_inports,
            "description": description if description is not None else (fn.__doc__ or ""),
            "icon": icon,
            "policy": policy,
            "__doc__": fn.__doc__,
            "__module__": fn.__module__,
            "__qualname__": fn.__qualname__,
            "behaviour": staticmethod(fn),
            "behaviour_is_async": is_async,
        }
        if is_async:

            async def process(self: Actor, ctx: ActorContext) -> Mapping[str, Any] | None:
                result: Mapping[str, Any] | None = await fn(ctx)
                return result

        else:

            async def process(self: Actor, ctx: ActorContext) -> Mapping[str, Any] | None:
                result: Mapping[str, Any] | None = fn(ctx)
                return result

        namespace["process"] = process
        return type(fn.__name__, (Actor,), namespace)

    return decorate
