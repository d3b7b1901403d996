"""Observability: the trace store, causality queries, metrics, OpenTelemetry, the live page.

* :class:`Collector` records a network's events into a trace store
  (:class:`SqliteStore`, or :class:`~reflowpy.observe.postgres.PostgresStore`), with a
  causality id per message (:mod:`reflowpy.observe.lineage`), bounded and never
  blocking the dataflow; ``sample=N`` traces 1 in N messages.
* :mod:`reflowpy.observe.query` answers "which inputs produced this output", "what
  happened to message X" and "why did it fail"; ``reflowpy trace ...`` prints them.
* :mod:`reflowpy.observe.stats` is the one adapter to the kernel's counters; metrics
  and the live page read only it.
"""

from reflowpy.observe.backends import open_store
from reflowpy.observe.collector import Collector, Recording
from reflowpy.observe.store import (
    EventRow,
    ExecutionRecord,
    SqliteStore,
    TraceStore,
    TraceStoreError,
)

__all__ = [
    "Collector",
    "EventRow",
    "ExecutionRecord",
    "Recording",
    "SqliteStore",
    "TraceStore",
    "TraceStoreError",
    "open_store",
]
