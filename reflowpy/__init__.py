"""reflowpy: an actor-model dataflow runtime for Python.

A program is a :class:`Graph` of nodes (actors with named in- and out-ports) joined
by connections that carry immutable messages with backpressure. A :class:`Network`
runs a graph under a trio nursery. This module is the public API; everything else is
an implementation detail unless re-exported here.
"""

from reflowpy.errors import (
    ActivationTimeout,
    ActorError,
    CodecError,
    ComponentError,
    ComponentNotFound,
    ConfigError,
    DuplicateGroup,
    DuplicateNode,
    DuplicatePort,
    EdgeNotFound,
    ExpressionError,
    GraphCycleError,
    GraphError,
    GraphFormatError,
    GraphValidationError,
    GroupNotFound,
    IIPNotFound,
    MessageError,
    MissingEnvironment,
    NetworkError,
    NetworkStalled,
    NetworkStopped,
    NetworkTimeout,
    NodeNotFound,
    PortNotFound,
    PortTypeError,
    ReflowError,
    SandboxUnavailable,
    ScriptCPUExceeded,
    ScriptCrashed,
    ScriptError,
    ScriptLimitExceeded,
    ScriptMemoryExceeded,
    ScriptProtocolError,
    ScriptRaised,
    ScriptTimeout,
    ServerConfigError,
    WasmTrap,
    leaf_exception,
)
from reflowpy.network import codec
from reflowpy.network.actor import Actor, ActorContext, Port, actor
from reflowpy.network.analysis import ValidationReport, validate
from reflowpy.network.events import EventSubscription, NetworkEvent
from reflowpy.network.formats import read as load
from reflowpy.network.graph import IIP, Edge, Endpoint, ExportedPort, Graph, GraphEvent, Group, Node
from reflowpy.network.message import FrozenDict, FrozenList, freeze, from_reflow, thaw, to_reflow
from reflowpy.network.network import Ledger, Network, NetworkStatistics, OutputStream, run
from reflowpy.network.ports import PortStatistics, Receiver
from reflowpy.network.registry import ComponentInfo, Registry, default_registry
from reflowpy.network.runner import NodeStatistics
from reflowpy.network.supervision import DeadLetter, Policy

__version__ = "0.1.0"

__all__ = [
    "IIP",
    "ActivationTimeout",
    "Actor",
    "ActorContext",
    "ActorError",
    "CodecError",
    "ComponentError",
    "ComponentInfo",
    "ComponentNotFound",
    "ConfigError",
    "DeadLetter",
    "DuplicateGroup",
    "DuplicateNode",
    "DuplicatePort",
    "Edge",
    "EdgeNotFound",
    "Endpoint",
    "EventSubscription",
    "ExportedPort",
    "ExpressionError",
    "FrozenDict",
    "FrozenList",
    "Graph",
    "GraphCycleError",
    "GraphError",
    "GraphEvent",
    "GraphFormatError",
    "GraphValidationError",
    "Group",
    "GroupNotFound",
    "IIPNotFound",
    "Ledger",
    "MessageError",
    "MissingEnvironment",
    "Network",
    "NetworkError",
    "NetworkEvent",
    "NetworkStalled",
    "NetworkStatistics",
    "NetworkStopped",
    "NetworkTimeout",
    "Node",
    "NodeNotFound",
    "NodeStatistics",
    "OutputStream",
    "Policy",
    "Port",
    "PortNotFound",
    "PortStatistics",
    "PortTypeError",
    "Receiver",
    "ReflowError",
    "Registry",
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
    "ValidationReport",
    "WasmTrap",
    "actor",
    "codec",
    "default_registry",
    "freeze",
    "from_reflow",
    "leaf_exception",
    "load",
    "run",
    "thaw",
    "to_reflow",
    "validate",
]

# Bridges: the errors here; BridgedNetwork & co. live in reflowpy.bridge (import it),
# so that `import reflowpy` does not load the WebSocket stack.
from reflowpy.errors import (
    BridgeAuthError,
    BridgeError,
    BridgeProtocolError,
    PeerLost,
)

__all__ += ["BridgeAuthError", "BridgeError", "BridgeProtocolError", "PeerLost"]
