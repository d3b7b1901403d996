"""Failure policy and the dead-letter store.

An exception in a behaviour never vanishes. The node's :class:`Policy` decides what
happens next, in this order: retry the same activation with exponential backoff;
if the retries are exhausted and ``restart`` is set, replace the actor instance (fresh
state) within a restart budget; finally either dead-letter the message (the default)
or stop the whole network (``on_failure="stop"``). A per-activation ``timeout``
turns a slow activation into an :class:`~reflowpy.ActivationTimeout` failure that
follows the same path.

A policy comes from the actor class (``policy = Policy(...)``), from node metadata
(``{"policy": {"retries": 3, "timeout": 1.5}}``), or from the network default; node
metadata wins over the class, the class over the network default.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import msgspec

from reflowpy.errors import ConfigError

__all__ = ["DeadLetter", "DeadLetterStore", "Policy"]


class Policy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a node reacts when an activation fails.

    ``retries``: extra attempts of the same activation; the n-th waits
    ``min(backoff * backoff_factor**(n-1), max_backoff)`` seconds.
    ``timeout``: seconds one activation may take (``None``: no limit).
    ``restart``: after retries are exhausted, replace the actor (fresh state) and try
    the message once more, at most ``max_restarts`` times per ``restart_window`` seconds.
    ``on_failure``: ``"dead_letter"`` keeps the network running and stores the message;
    ``"stop"`` stops the network with the error.
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


class DeadLetter(msgspec.Struct, frozen=True):
    """A message that could not be processed: where it was going, why, and when."""

    id: int
    node: str
    port: str
    value: Any
    error: str
    error_type: str
    attempts: int
    timestamp: float


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
        self, node: str, port: str, value: Any, error: BaseException, attempts: int
    ) -> DeadLetter:
        """Store a failed message and return its letter."""
        letter = DeadLetter(
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
