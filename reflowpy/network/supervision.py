"""Failure policy and the dead-letter store.

An exception in a behaviour never vanishes. The node's :class:`Policy` decides what
happens next, in this order: retry the same activation with exponential backoff;
if the retries are exhausted and ``restart`` is set, replace the actor instance (fresh
state) within a restart budget; finally either dead-letter the message (the default)
or stop the whole network (``on_failure="stop"``). A per-activation ``timeout``
turns a slow activation into an :class:`~reflowpy.ActivationTimeout` failure that
follows the same path.

Recovery lives here too (:func:`recover`): the runner hands a failed activation over
and gets back the outputs of a successful retry, or ``None`` once the message was
dead-lettered. Before each retry of a node whose policy retries, the node's
``ctx.state`` is rolled back to what it was before the failed activation (a shallow
copy taken per activation: top-level keys are restored, a mutable value changed in
place is not -- keep state values immutable, or reassign them). Nodes without retries
skip the snapshot (it costs a dict copy per activation); their failed activations keep
whatever they changed.

Blocking behaviours: an ``async def`` over its ``timeout`` is cancelled; a plain
``def`` cannot be interrupted, so it is timed and an overrun fails the activation
afterwards with :class:`~reflowpy.ActivationTimeout` (the message says it froze the
network meanwhile). ``offload=True`` runs a plain-``def`` behaviour in a worker thread
(``trio.to_thread``) so a blocking call does not freeze other nodes; on timeout its
thread is abandoned. The default is to run behaviours in the trio thread (offloading
costs ~50 us per activation).

A policy comes from the actor class (``policy = Policy(...)``), from node metadata
(``{"policy": {"retries": 3, "timeout": 1.5}}``), or from the network default; node
metadata wins over the class, the class over the network default.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import trio

from reflowpy.errors import ActivationTimeout, ConfigError

if TYPE_CHECKING:
    from reflowpy.network.runner import NodeRunner

__all__ = ["DeadLetter", "DeadLetterStore", "Policy", "format_traceback", "recover"]

_log = logging.getLogger("reflowpy.node")


class Policy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a node reacts when an activation fails.

    ``retries``: extra attempts of the same activation; the n-th waits
    ``min(backoff * backoff_factor**(n-1), max_backoff)`` seconds.
    ``timeout``: seconds one activation may take (``None``: no limit).
    ``restart``: after retries are exhausted, replace the actor (fresh state) and try
    the message once more, at most ``max_restarts`` times per ``restart_window`` seconds.
    ``on_failure``: ``"dead_letter"`` keeps the network running and stores the message;
    ``"stop"`` stops the network with the error.
    ``offload``: run a plain-``def`` behaviour in a worker thread (for blocking calls).
    """

    retries: int = 0
    backoff: float = 0.05
    backoff_factor: float = 2.0
    max_backoff: float = 5.0
    timeout: float | None = None
    restart: bool = False
    max_restarts: int = 3
    restart_window: float = 60.0
    on_failure: Literal["dead_letter", "stop"] = "dead_letter"
    offload: bool = False

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("Policy.retries must be >= 0")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("Policy.timeout must be > 0 seconds or None")
        if self.backoff < 0 or self.max_backoff < 0 or self.backoff_factor < 1:
            raise ValueError("Policy backoff must be >= 0 and backoff_factor >= 1")
        if self.max_restarts < 0:
            raise ValueError("Policy.max_restarts must be >= 0")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        return float(min(self.backoff * self.backoff_factor ** (attempt - 1), self.max_backoff))

    @classmethod
    def from_config(cls, value: Any, *, node: str = "") -> Policy:
        """Build a policy from node metadata, naming the node and key on error."""
        if isinstance(value, Policy):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"node {node!r}: metadata key 'policy' must be an object")
        try:
            return msgspec.convert(dict(value), cls)
        except (msgspec.ValidationError, ValueError) as exc:
            raise ConfigError(f"node {node!r}: metadata key 'policy': {exc}") from None


def format_traceback(exc: BaseException) -> str:
    """The formatted traceback of ``exc`` (with its cause chain), for reports; for an
    error raised in another process (a sandboxed script's ``ScriptRaised``, which
    carries ``remote_traceback``) that process's traceback follows, since the user's
    own frames are there."""
    text = "".join(traceback.format_exception(exc)).rstrip()
    remote = getattr(exc, "remote_traceback", "")
    if isinstance(remote, str) and remote.strip():
        text += "\n\nRaised in the sandbox:\n" + remote.rstrip()
    return text


class DeadLetter(msgspec.Struct, frozen=True):
    """A message that could not be processed: where it was going, why, and when.

    ``reason`` says how it got here: ``failed`` (the policy gave up), ``timeout`` (an
    activation timeout, or a stop's drain timeout), ``stopped`` (a forced stop),
    ``cancelled`` (the scope holding the network was cancelled), ``node removed``,
    ``finished`` (a ``run()`` actor had returned), ``stalled`` (stopped while stalled).
    ``error_type`` and ``traceback`` describe the exception.
    """

    id: int
    node: str
    port: str
    value: Any
    error: str
    error_type: str
    attempts: int
    timestamp: float
    reason: str = "failed"
    traceback: str = ""


class DeadLetterStore:
    """Dead letters of one network, in arrival order, with a bounded size.

    When the store is full the oldest letter is evicted and ``evicted`` counts it, so a
    flood of failures cannot exhaust memory and the loss is still reported.
    """

    def __init__(self, max_size: int = 10_000) -> None:
        self.max_size = max_size
        self.evicted = 0
        self._letters: dict[int, DeadLetter] = {}
        self._next_id = 1

    def add(
        self, node: str, port: str, value: Any, error: BaseException, attempts: int,
        reason: str = "failed",
    ) -> DeadLetter:
        """Store a failed message and return its letter."""
        letter = DeadLetter(
            reason=reason,
            traceback=format_traceback(error) if error.__traceback__ is not None else "",
            id=self._next_id,
            node=node,
            port=port,
            value=value,
            error=str(error) or type(error).__name__,
            error_type=type(error).__name__,
            attempts=attempts,
            timestamp=time.time(),
        )
        self._next_id += 1
        self._letters[letter.id] = letter
        if len(self._letters) > self.max_size:
            del self._letters[next(iter(self._letters))]
            self.evicted += 1
        return letter

    def get(self, letter_id: int) -> DeadLetter:
        """The letter with ``letter_id``; raises ``KeyError`` naming it."""
        try:
            return self._letters[letter_id]
        except KeyError:
            raise KeyError(f"no dead letter with id {letter_id}") from None

    def remove(self, letter_id: int) -> DeadLetter:
        """Take a letter out of the store (after a re-send, or to discard it)."""
        letter = self.get(letter_id)
        del self._letters[letter_id]
        return letter

    def __iter__(self) -> Iterator[DeadLetter]:
        return iter(list(self._letters.values()))

    def __len__(self) -> int:
        return len(self._letters)


async def recover(
    runner: NodeRunner, inputs: dict[str, Any], exc: Exception,
    snapshot: dict[str, Any] | None,
) -> list[Any] | None:
    """Apply ``runner``'s policy to one failed activation.

    Retries with backoff (rolling ``ctx.state`` back to ``snapshot`` first), then a
    restart within the budget, then the dead letters (or a network stop). Returns the
    checked outputs of the attempt that succeeded, or ``None`` once the message was
    dead-lettered. Never raises ``Exception``; a cancellation propagates (the runner
    dead-letters the inputs then).
    """
    policy = runner.policy
    attempt = 1
    port = ",".join(inputs)
    started = time.perf_counter()
    while True:
        runner.failures += 1
        will_retry = attempt <= policy.retries
        runner.publish_failure(exc, port, attempt, will_retry, started)
        if snapshot is not None:
            runner.ctx.state = dict(snapshot)
        if not will_retry:
            break
        await trio.sleep(policy.delay(attempt))
        attempt += 1
        started = time.perf_counter()
        try:
            return await runner.attempt(inputs)
        except Exception as again:
            exc = again
    if policy.restart and runner.restart_allowed():
        await runner.restart()
        attempt += 1
        try:
            return await runner.attempt(inputs)
        except Exception as again:
            exc = again
            runner.failures += 1
            runner.publish_failure(exc, port, attempt, False, started)
    if runner.released:
        exc.add_note(f"{runner.released} output(s) of this activation were already"
                     f" released (more than the hold-back limit); a re-send repeats them")
        runner.released = 0
    value = next(iter(inputs.values())) if len(inputs) == 1 else dict(inputs)
    reason = "timeout" if isinstance(exc, ActivationTimeout) else "failed"
    runner.dead_taken += len(inputs)
    letter = runner.net.dead_letter(runner.node_id, port, value, exc, attempt,
                                    reason=reason, count=len(inputs))
    if policy.on_failure == "stop":
        runner.net.fail(runner.wrap(exc, port))
    elif runner.node_id not in runner.net.dead_warned:  # say so once per node
        runner.net.dead_warned.add(runner.node_id)
        _log.warning("node %r: message dead-lettered (id %d) after %d attempt(s): %s: %s;"
                     " further dead letters of this node are logged at DEBUG level",
                     runner.node_id, letter.id, attempt, letter.error_type, exc)
    else:
        _log.debug("node %r: message dead-lettered (id %d) after %d attempt(s): %s: %s",
                   runner.node_id, letter.id, attempt, letter.error_type, exc)
    return None
