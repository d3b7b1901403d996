"""The exception hierarchy of reflowpy, in one place.

Every error a user can meet is a subclass of :class:`ReflowError`, so ``except
rf.ReflowError`` catches everything the library raises on purpose. Messages name
what was wrong and where (graph, node, port, field) and, when it helps, what to do.

::

    ReflowError
     +-- GraphError                  a graph operation or file is invalid
     |    +-- NodeNotFound
     |    +-- DuplicateNode
     |    +-- EdgeNotFound
     |    +-- PortNotFound           unknown port on a node or exported port name
     |    +-- DuplicatePort
     |    +-- GroupNotFound
     |    +-- DuplicateGroup
     |    +-- IIPNotFound
     |    +-- GraphFormatError       a file is not a graph in the format tried
     |    +-- GraphValidationError   a graph failed validation (carries the report)
     |    +-- GraphCycleError        an operation needs an acyclic graph (carries a cycle)
     |    +-- PortTypeError          a port type string cannot be parsed
     +-- ComponentError              registry lookups and component definitions
     |    +-- ComponentNotFound
     |    +-- ConfigError            bad node config (metadata / env_vars)
     |         +-- SandboxUnavailable  a script sandbox cannot run here (no Docker, no image)
     |         +-- MissingEnvironment  a variable env_vars requires is not set here
     +-- MessageError                a value cannot be a message (not freezable/serializable)
     +-- ExpressionError             a safe expression failed to parse or evaluate
     +-- NetworkError                lifecycle misuse of a Network
     |    +-- NetworkStopped
     |    +-- NetworkStalled         nothing can make progress (a cycle of full queues)
     |    +-- NetworkTimeout         rf.run(timeout=) expired (also a TimeoutError)
     +-- ActorError                  user code failed (wraps the original exception)
     |    +-- ActivationTimeout
     |    +-- ScriptError            a sandboxed script (script/python, script/wasm) failed
     |         +-- ScriptRaised      the user's code raised; remote type + traceback
     |         +-- ScriptCrashed     the worker died (exit code, signal)
     |         +-- ScriptProtocolError  the worker broke the frame protocol
     |         +-- ScriptLimitExceeded  a sandbox limit hit; the worker was restarted
     |         |    +-- ScriptTimeout        wall time per call (also an ActivationTimeout)
     |         |    +-- ScriptMemoryExceeded memory limit (OOM, RLIMIT_AS, WASM memory)
     |         |    +-- ScriptCPUExceeded    CPU seconds or WASM fuel
     |         +-- WasmTrap          the WASM module trapped; its instance was reset
     +-- CodecError                  a frame could not be encoded or decoded
 +-- ServerConfigError           a server option cannot be used (an address that cannot
                                 be bound, a data dir or workspace that cannot be made,
                                 a webhook network that is not a CIDR); also a ValueError
"""

from __future__ import annotations

__all__ = [
    "ActivationTimeout",
    "ActorError",
    "CodecError",
    "ComponentError",
    "ComponentNotFound",
    "ConfigError",
    "DuplicateGroup",
    "DuplicateNode",
    "DuplicatePort",
    "EdgeNotFound",
    "ExpressionError",
    "GraphCycleError",
    "GraphError",
    "GraphFormatError",
    "GraphValidationError",
    "GroupNotFound",
    "IIPNotFound",
    "MessageError",
    "MissingEnvironment",
    "NetworkError",
    "NetworkStalled",
    "NetworkStopped",
    "NetworkTimeout",
    "NodeNotFound",
    "PortNotFound",
    "PortTypeError",
    "ReflowError",
    "SandboxUnavailable",
    "ScriptCPUExceeded",
    "ScriptCrashed",
    "ScriptError",
    "ScriptLimitExceeded",
    "ScriptMemoryExceeded",
    "ScriptProtocolError",
    "ScriptRaised",
    "ScriptTimeout",
    "ServerConfigError",
    "WasmTrap",
]


class ReflowError(Exception):
    """Base class of every error reflowpy raises on purpose."""


class GraphError(ReflowError):
    """A graph operation was refused or a graph is malformed; nothing was changed."""


class NodeNotFound(GraphError, KeyError):
    """A node id does not exist in the graph."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateNode(GraphError):
    """A node id is already taken in the graph."""


class EdgeNotFound(GraphError, KeyError):
    """No connection matches the given endpoints."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PortNotFound(GraphError, KeyError):
    """A port does not exist on a node/component, or an exported port name is unknown."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DuplicatePort(GraphError):
    """An exported port name is already taken."""


class GroupNotFound(GraphError, KeyError):
    """A group name does not exist in the graph."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DuplicateGroup(GraphError):
    """A group name is already taken."""


class IIPNotFound(GraphError, KeyError):
    """No initial information packet matches the given target."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class GraphFormatError(GraphError):
    """A text or file is not a graph in the format that was tried.

    ``format`` names the format, ``where`` the line/column or field path, and the
    message (``detail`` without the prefix) says what was expected.
    """

    def __init__(self, message: str, *, format: str = "", where: str = "") -> None:
        self.format = format
        self.where = where
        self.detail = message
        prefix = f"{format} graph" if format else "graph"
        location = f" at {where}" if where else ""
        super().__init__(f"not a valid {prefix}{location}: {message}")


class GraphValidationError(GraphError):
    """A graph failed validation; ``report`` holds every problem found."""

    def __init__(self, message: str, report: object = None) -> None:
        self.report = report
        super().__init__(message)


class GraphCycleError(GraphError):
    """An operation that needs an acyclic graph met a cycle; ``cycle`` lists its node ids."""

    def __init__(self, message: str, cycle: list[str] | None = None) -> None:
        self.cycle = list(cycle or [])
        super().__init__(message)


class PortTypeError(GraphError, ValueError):
    """A port type is not in the syntax of :mod:`reflowpy.network.porttypes`."""


class ComponentError(ReflowError):
    """A component is missing or badly defined."""


class ComponentNotFound(ComponentError, KeyError):
    """No component with that name is registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(ComponentError):
    """A node's configuration (metadata or env_vars) is invalid; names node and key."""


class MessageError(ReflowError, TypeError):
    """A value cannot travel as a message: it is not freezable or not serializable."""


class ExpressionError(ReflowError, ValueError):
    """A safe expression (``reflowpy.components.expression``) failed to parse or evaluate.

    ``expression`` is the source text and ``position`` the 0-based column of the
    problem (``-1`` when it is not tied to one place).
    """

    def __init__(self, message: str, *, expression: str = "", position: int = -1) -> None:
        self.expression = expression
        self.position = position
        where = f" at column {position + 1}" if position >= 0 else ""
        shown = f" in {expression!r}" if expression else ""
        super().__init__(f"{message}{where}{shown}")


class NetworkError(ReflowError):
    """A Network was used in a way its lifecycle does not allow."""


class NetworkStopped(NetworkError):
    """The network has stopped (or is stopping) and takes no more input."""


class NetworkStalled(NetworkError):
    """The network cannot make progress: every active node is blocked on a full queue
    (a cycle of full queues, or a full queue into a node waiting on another port).

    ``stall`` holds the cycle, the blocked nodes and the queue depths.
    """

    def __init__(self, message: str, *, stall: object = None) -> None:
        self.stall = stall
        super().__init__(message)


class NetworkTimeout(NetworkError, TimeoutError):
    """The network did not become idle in time (``rf.run(timeout=)``).

    ``in_flight`` is the ledger snapshot taken when time ran out; what was in flight
    then is in the dead letters with reason ``timeout``.
    """

    def __init__(self, message: str, *, in_flight: object = None) -> None:
        self.in_flight = in_flight
        super().__init__(message)


class ActorError(ReflowError):
    """User code in a node failed. ``node``, ``port`` and ``__cause__`` say where and why."""

    def __init__(self, message: str, *, node: str = "", port: str | None = None) -> None:
        self.node = node
        self.port = port
        super().__init__(message)


class ActivationTimeout(ActorError):
    """One activation of a node ran past its policy's timeout."""


class CodecError(ReflowError, ValueError):
    """A frame could not be encoded or decoded (malformed, too large, wrong version)."""


class MissingEnvironment(ConfigError):
    """A node's ``env_vars`` requires a variable this environment does not set (a
    property of where the graph runs, not of the graph: ``validate`` warns)."""


class SandboxUnavailable(ConfigError):
    """A script node's sandbox cannot run on this machine (no Docker engine, missing
    image, no network namespace for the process sandbox); the message says what to do."""


class ScriptError(ActorError):
    """A sandboxed script failed. ``sandbox`` is ``docker``, ``process`` or ``wasm``.

    Raised from the script node's ``process()``, so the message that caused it
    follows the node's failure policy (retry, restart, dead letter).
    """

    def __init__(
        self, message: str, *, node: str = "", port: str | None = None, sandbox: str = ""
    ) -> None:
        self.sandbox = sandbox
        super().__init__(message, node=node, port=port)


class ScriptRaised(ScriptError):
    """The user's script raised. ``remote_type`` and ``remote_traceback`` describe it."""

    def __init__(
        self,
        message: str,
        *,
        node: str = "",
        sandbox: str = "",
        remote_type: str = "",
        remote_traceback: str = "",
    ) -> None:
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback
        super().__init__(message, node=node, sandbox=sandbox)


class ScriptCrashed(ScriptError):
    """The worker process or container died while handling a message."""


class ScriptProtocolError(ScriptError):
    """The worker wrote something that is not a valid frame (garbage, oversize, bad
    type); the host ended it and will start a fresh one."""


class ScriptLimitExceeded(ScriptError):
    """A sandbox limit was hit; ``limit`` names it. The worker was killed and is
    restarted for the next message."""

    limit = "limit"


class ScriptTimeout(ScriptLimitExceeded, ActivationTimeout):
    """One call ran past the node's wall-time limit (``limits.wall_time``)."""

    limit = "wall_time"


class ScriptMemoryExceeded(ScriptLimitExceeded):
    """The script exceeded its memory limit (container OOM, RLIMIT_AS, WASM memory)."""

    limit = "memory"


class ScriptCPUExceeded(ScriptLimitExceeded):
    """The script used up its CPU budget (RLIMIT_CPU seconds or WASM fuel)."""

    limit = "cpu"


class WasmTrap(ScriptError):
    """The WASM module trapped (unreachable, out-of-bounds, unknown import called...);
    its instance was reset."""


# -- bridges (reflowpy.bridge) ------------------------------------------------------------
#
#    NetworkError
#     +-- BridgeError               a bridge to another reflowpy process failed or was misused
#          +-- BridgeProtocolError  a peer sent a frame that breaks the bridge protocol
#          +-- BridgeAuthError      a peer's HELLO was refused (token, replay, version, allow-list)
#          +-- PeerLost             a peer stayed away past its deadline; its nodes failed


class BridgeError(NetworkError):
    """A bridge to another reflowpy process failed or was used wrongly (names the peer)."""


class BridgeProtocolError(BridgeError):
    """A peer sent a frame that breaks the bridge protocol; only that connection closes."""


class BridgeAuthError(BridgeError):
    """A peer's handshake was refused: wrong token, replayed proof, version or allow-list."""


class PeerLost(BridgeError):
    """A peer stayed unreachable past its deadline; messages for it were dead-lettered
    with the reason ``peer lost``."""

__all__ += ["BridgeAuthError", "BridgeError", "BridgeProtocolError", "PeerLost"]


class ServerConfigError(ReflowError, ValueError):
    """A server option cannot be used: an address that cannot be bound, a data
    directory or workspace that cannot be created, a webhook network that is not a
    CIDR. Raised before the server accepts anything; the message names the option's
    value and why."""


def leaf_exception(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups (else ``exc``):
    a trio nursery wraps what one task raised, and a report should name that."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


__all__ += ["leaf_exception"]
