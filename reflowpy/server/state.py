"""What every handler of one server shares: :class:`ServerState`.

Registry, storage, the execution manager (whose nursery hosts every network), the
policy, the token and the limits live here, in a module of their own, so the route
modules (:mod:`~reflowpy.server.rest`, :mod:`~reflowpy.server.fbp`,
:mod:`~reflowpy.server.session`, :mod:`~reflowpy.server.reflow_compat`) depend on it
and :mod:`~reflowpy.server.app` depends on them, never the other way round.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import trio
from starlette.routing import BaseRoute

from reflowpy.network.registry import Registry
from reflowpy.server.auth import Sessions
from reflowpy.server.executions import ExecutionManager
from reflowpy.server.guard import Guard, GuardConfig
from reflowpy.server.jsonio import DEFAULT_MAX_DEPTH
from reflowpy.server.policy import GraphPolicy
from reflowpy.server.storage import Storage
from reflowpy.server.webhooks import WebhookPolicy

__all__ = ["ServerState"]


class ServerState:
    """What every handler of one server shares. Limits are plain attributes."""

    def __init__(
        self,
        registry: Registry,
        nursery: trio.Nursery,
        *,
        data_dir: str | Path | None = None,
        token: str | None = None,
        allow_setsource: bool = True,
        setsource_sandbox: str = "process",
        max_body: int = 16 * 1024 * 1024,
        max_connections: int = 1000,
        max_unauthenticated: int = 64,
        max_per_peer: int = 32,
        client_queue: int = 10_000,
        client_queue_bytes: int = 8 * 1024 * 1024,
        auth_timeout: float = 30.0,
        max_depth: int = DEFAULT_MAX_DEPTH,
        allow_hosts: Sequence[str] = (),
        allow_origins: Sequence[str] = (),
        cors: bool = False,
        event_buffer: int = 10_000,
        stop_timeout: float = 10.0,
        trace_limit: int = 100_000,
        extra_routes: Sequence[BaseRoute] = (),
        allow_components: Sequence[str] = ("*",),
        deny_components: Sequence[str] = (),
        scripts: bool | None = None,
        script_sandboxes: Sequence[str] = ("process", "docker"),
        script_network: bool = False,
        workspace: str | Path | None = None,
        confine_files: bool = True,
        retention_count: int = 1000,
        retention_seconds: float = 7 * 24 * 3600,
        sandbox_options: Sequence[str] = (),
        webhook_allow: Sequence[str] = (),
        webhook_attempts: int = 4,
        webhook_backoff: float = 1.0,
        api_tools: str | Path | None = None,
        checkpoint_interval: float = 1.0,
        quiesce_timeout: float = 5.0,
    ) -> None:
        self.nursery = nursery
        self.storage = Storage(data_dir)
        self.token = token
        self.allow_setsource = allow_setsource
        if workspace is None and confine_files and data_dir is not None:
            workspace = Path(data_dir) / "workspace"
        #: What posted graphs may use (components, scripts, network, files).
        self.policy = GraphPolicy(
            allow=allow_components, deny=deny_components,
            scripts=allow_setsource if scripts is None else scripts,
            sandboxes=script_sandboxes, script_network=script_network,
            workspace=workspace if confine_files else None,
            sandbox_options=sandbox_options)
        #: The registry graphs run against: ``registry`` with the policy built into
        #: its io and script components.
        self.registry = self.policy.confine_registry(registry)
        if setsource_sandbox not in ("process", "docker"):
            raise ValueError(f"setsource_sandbox must be 'process' or 'docker', got"
                             f" {setsource_sandbox!r}")
        #: where FBP ``component:source`` code runs: a subprocess or a Docker container
        self.setsource_sandbox = setsource_sandbox
        self.max_body = max_body
        self.max_connections = max_connections
        #: Most messages queued for one WebSocket client ...
        self.client_queue = client_queue
        #: ... and most bytes: beyond either the client is dropped, told why.
        self.client_queue_bytes = client_queue_bytes
        #: Seconds an FBP connection may stay unauthenticated (with a token).
        self.auth_timeout = auth_timeout
        #: Deepest JSON nesting accepted in bodies and frames.
        self.max_depth = max_depth
        self.guard_config = GuardConfig(
            token=token, allow_hosts=allow_hosts, allow_origins=allow_origins, cors=cors,
            max_connections=max_connections, max_unauthenticated=max_unauthenticated,
            max_per_peer=max_per_peer)
        self.sessions = Sessions()
        #: Routes other packages mount on this server (bridge, observability).
        self.extra_routes = list(extra_routes)
        self.event_buffer = event_buffer
        self.stop_timeout = stop_timeout
        self.trace_limit = trace_limit
        self.started = time.monotonic()
        #: Ended executions kept: the newest ``retention_count``, none older than
        #: ``retention_seconds``.
        self.executions = ExecutionManager(self.registry, self.storage, nursery,
                                           retention_count=retention_count,
                                           retention_seconds=retention_seconds,
                                           checkpoint_interval=checkpoint_interval,
                                           quiesce_timeout=quiesce_timeout)
        #: Called with a graph id when REST replaced or deleted that graph (the FBP
        #: runtime drops its editing copy).
        self.on_graph_replaced: list[Callable[[str], None]] = []
        #: Where Reflow webhooks may go, and how hard delivery tries.
        self.webhooks = WebhookPolicy(webhook_allow)
        self.webhook_attempts = webhook_attempts
        self.webhook_backoff = webhook_backoff
        #: The operator's API-tool service registry file (``/register-api-tools``).
        self.api_tools = api_tools
        self.api_tool_names: set[str] = set()
        self.reflow_connections = 0
        self.guard: Guard | None = None

    def graph_replaced(self, graph_id: str) -> None:
        """Tell every listener that the stored graph ``graph_id`` changed under them."""
        for listener in self.on_graph_replaced:
            listener(graph_id)
