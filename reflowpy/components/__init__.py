"""The standard component library, written only against the public actor API.

One module per family; :func:`register_all` puts every component into a registry
under its name (``core/Repeat``, ``flow/Gate``, ...) and adds Reflow's ``tpl_*``
template ids as aliases. Third-party packages add theirs through the
``reflowpy.components`` entry-point group (see :mod:`reflowpy.network.registry`).

========== ===============================================================
family     components
========== ===============================================================
core       NoFlo's names: Repeat, Drop, Output, Kick, Merge, Split, Copy,
           RepeatAsync, MakeFunction
flow       Gate, If, Switch, ForEach/Loop, Barrier, Sequencer, Router,
           RoundRobin/LoadBalancer, Retry, Timeout, CircuitBreaker
transform  Map, Filter, Reduce, Scan, FlatMap, Pick, Set, Template,
           Expression, JsonParse, JsonStringify, Validate
aggregate  Collect, Count, Distinct, Join
time       Batch, Window, Debounce, Throttle, RateLimit, Delay, Interval,
           Timer, Cron
io         ReadFile, WriteFile, ReadDir, Watch, Stdin, Stdout, CsvRead,
           CsvWrite, JsonLinesRead, JsonLinesWrite, SqliteQuery, SqliteInsert
net        HttpRequest, HttpServer, WebSocketSource, WebSocketSink
util       Log, Inspect/Tap, Counter, Sample, Uuid, Now, Const, Assert
reflow     Reflow templates with Reflow's port names (tpl_if_branch, ...)
========== ===============================================================
"""

from __future__ import annotations

import reflowpy as rf
from reflowpy.components import (
    aggregate,
    core,
    flow,
    io,
    net,
    reflow_templates,
    timing,
    transform,
    util,
)

__all__ = ["ALIASES", "COMPONENTS", "register_all"]

#: Every standard component: registered name -> actor class.
COMPONENTS: dict[str, type[rf.Actor]] = {
    "core/Repeat": core.Repeat,
    "core/RepeatAsync": core.RepeatAsync,
    "core/Copy": core.Copy,
    "core/Drop": core.Drop,
    "core/Output": core.Output,
    "core/Kick": core.Kick,
    "core/Merge": core.Merge,
    "core/Split": core.Split,
    "core/MakeFunction": core.MakeFunction,
    "flow/Gate": flow.Gate,
    "flow/If": flow.If,
    "flow/Switch": flow.Switch,
    "flow/ForEach": flow.ForEach,
    "flow/Barrier": flow.Barrier,
    "flow/Sequencer": flow.Sequencer,
    "flow/Router": flow.Router,
    "flow/RoundRobin": flow.RoundRobin,
    "flow/Retry": flow.Retry,
    "flow/Timeout": flow.Timeout,
    "flow/CircuitBreaker": flow.CircuitBreaker,
    "transform/Map": transform.Map,
    "transform/Filter": transform.Filter,
    "transform/Reduce": transform.Reduce,
    "transform/Scan": transform.Scan,
    "transform/FlatMap": transform.FlatMap,
    "transform/Pick": transform.Pick,
    "transform/Set": transform.SetField,
    "transform/Template": transform.RenderTemplate,
    "transform/Expression": transform.Expr,
    "transform/JsonParse": transform.JsonParse,
    "transform/JsonStringify": transform.JsonStringify,
    "transform/Validate": transform.Validate,
    "aggregate/Collect": aggregate.Collect,
    "aggregate/Count": aggregate.Count,
    "aggregate/Distinct": aggregate.Distinct,
    "aggregate/Join": aggregate.Join,
    "time/Batch": timing.Batch,
    "time/Window": timing.Window,
    "time/Debounce": timing.Debounce,
    "time/Throttle": timing.Throttle,
    "time/RateLimit": timing.RateLimit,
    "time/Delay": timing.Delay,
    "time/Interval": timing.Interval,
    "time/Timer": timing.Timer,
    "time/Cron": timing.CronTrigger,
    "io/ReadFile": io.ReadFile,
    "io/WriteFile": io.WriteFile,
    "io/ReadDir": io.ReadDir,
    "io/Watch": io.Watch,
    "io/Stdin": io.Stdin,
    "io/Stdout": io.Stdout,
    "io/CsvRead": io.CsvRead,
    "io/CsvWrite": io.CsvWrite,
    "io/JsonLinesRead": io.JsonLinesRead,
    "io/JsonLinesWrite": io.JsonLinesWrite,
    "io/SqliteQuery": io.SqliteQuery,
    "io/SqliteInsert": io.SqliteInsert,
    "net/HttpRequest": net.HttpRequest,
    "net/HttpServer": net.HttpServer,
    "net/WebSocketSource": net.WebSocketSource,
    "net/WebSocketSink": net.WebSocketSink,
    "util/Log": util.Log,
    "util/Inspect": util.Inspect,
    "util/Counter": util.Counter,
    "util/Sample": util.Sample,
    "util/Uuid": util.Uuid,
    "util/Now": util.Now,
    "util/Const": util.Const,
    "util/Assert": util.Assert,
    **reflow_templates.TEMPLATES,
}

#: Second names for components: alias -> registered name.
ALIASES: dict[str, str] = {
    "flow/ConditionalBranch": "flow/If",
    "flow/Loop": "flow/ForEach",
    "flow/LoadBalancer": "flow/RoundRobin",
    "util/Tap": "util/Inspect",
    "aggregate/Batch": "time/Batch",
    "aggregate/Window": "time/Window",
    **reflow_templates.TEMPLATE_ALIASES,
}


def register_all(registry: rf.Registry) -> rf.Registry:
    """Register every standard component and alias in ``registry`` and return it.

    Idempotent: calling it again (or on a registry that already holds them)
    replaces the entries with the same classes.
    """
    for name, component in COMPONENTS.items():
        registry.register(name, component, replace=True)
    for alias, name in ALIASES.items():
        registry.alias(alias, name)
    from reflowpy.script.actor import register as register_scripts

    register_scripts(registry)
    return registry
