"""Issue 9: random live-edit sequences under load; the ledger balances after every edit.

Each example builds a chain ``a -> ... -> z`` fed by a producer task, then applies a
random sequence of edits while messages flow: insert a node (def, async, needs-setup,
``run()`` loop) between two neighbours in one transaction, remove a node and reconnect
its neighbours, and edits the network cannot apply (unknown component, unknown port,
IIP to an unknown port), which must be refused with the graph unchanged. After each
edit the ledger must balance; at the end every value sent is in the output exactly
once or in the dead letters (reason ``node removed``), never both and never lost.

CI runs ``CI_EXAMPLES`` sequences of ``CI_MESSAGES`` messages; ``REFLOWPY_LONG=1`` runs
1,000 sequences under 100k messages each. The last test keeps one network running
while 1,000 random sequences (CI: 60) are applied to it, each under its share of a
100k-message load. Fails on main: IndexError out of the fire
loop, lost in-flight messages, refused edits applied to the graph, setup races.
"""

from __future__ import annotations

import math
import random
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import reflowpy as rf
from tests.scale import LONG

CI_EXAMPLES = 25
CI_MESSAGES = 3_000
EXAMPLES = 1_000 if LONG else CI_EXAMPLES
MESSAGES = 100_000 if LONG else CI_MESSAGES


@rf.actor(inports=["in"], outports=["out"])
def pass_def(ctx: Any) -> dict[str, Any]:
    return {"out": ctx.inputs["in"]}


@rf.actor(inports=["in"], outports=["out"])
async def pass_async(ctx: Any) -> dict[str, Any]:
    await trio.sleep(0)
    return {"out": ctx.inputs["in"]}


class NeedsSetup(rf.Actor):
    inports = ["in"]
    outports = ["out"]

    async def setup(self, ctx: Any) -> None:
        await trio.sleep(0)
        self.ready = True

    async def process(self, ctx: Any) -> dict[str, Any]:
        assert self.ready, "ran before setup()"
        return {"out": ctx.inputs["in"]}


class Loop(rf.Actor):
    inports = ["in"]
    outports = ["out"]

    async def run(self, ctx: Any) -> None:
        while True:
            _, value = await ctx.receive()
            await ctx.send("out", value)


COMPONENTS = ["t/Def", "t/Async", "t/Setup", "t/Loop"]


def registry() -> rf.Registry:
    reg = rf.Registry()
    reg.register("t/Def", pass_def)
    reg.register("t/Async", pass_async)
    reg.register("t/Setup", NeedsSetup)
    reg.register("t/Loop", Loop)
    return reg


edit = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 20), st.sampled_from(COMPONENTS)),
    st.tuples(st.just("remove"), st.integers(0, 20), st.just("")),
    st.tuples(st.just("bad"), st.integers(0, 2), st.just("")),
    st.tuples(st.just("flow"), st.integers(1, 30), st.just("")),
)


class _Chain:
    """The graph ``a -> ... -> z`` and the edits of the test, applied as a user would."""

    def __init__(self) -> None:
        g = self.graph = rf.Graph("fuzz")
        g.add_node("a", "t/Def")
        g.add_node("z", "t/Async")
        g.add_edge("a", "out", "z", "in")
        g.add_inport("input", "a", "in")
        g.add_outport("result", "z", "out")
        self.chain = ["a", "z"]
        self.counter = 0
        self.applied = self.refused = 0

    async def apply(self, kind: str, where: int, component: str) -> None:
        g, chain = self.graph, self.chain
        if kind == "insert":
            pos = where % (len(chain) - 1)
            left, right = chain[pos], chain[pos + 1]
            self.counter += 1
            node = f"m{self.counter}"
            with g.transaction("insert"):
                g.remove_edge(left, "out", right, "in")
                g.add_node(node, component)
                g.add_edge(left, "out", node, "in")
                g.add_edge(node, "out", right, "in")
            chain.insert(pos + 1, node)
            self.applied += 1
        elif kind == "remove" and len(chain) > 2:
            pos = 1 + where % (len(chain) - 2)
            node = chain.pop(pos)
            with g.transaction("remove"):
                g.remove_node(node)
                g.add_edge(chain[pos - 1], "out", chain[pos], "in")
            self.applied += 1
        elif kind == "bad":
            before = (len(g.nodes), len(g.edges), len(g.iips))
            try:
                if where == 0:
                    g.add_node("bad", "t/NoSuchComponent")
                elif where == 1:
                    g.add_edge("a", "out", "z", "nosuchport")
                else:
                    g.add_iip(1, "z", "nosuchport")
            except rf.ReflowError:
                self.refused += 1
            else:
                raise AssertionError("an edit the network cannot apply was accepted")
            assert (len(g.nodes), len(g.edges), len(g.iips)) == before
        else:
            for _ in range(where):
                await trio.sleep(0)


def _check_books(net: rf.Network, sent: list[int]) -> None:
    out = net.outputs("result").drain()
    dead = net.dead_letters()
    assert {d.reason for d in dead} <= {"node removed"}, {d.reason for d in dead}
    assert len(out) == len(set(out)), "a value was delivered twice"
    assert sorted(out + [d.value for d in dead]) == sorted(sent)
    ledger = net.statistics().ledger
    assert ledger.balanced and ledger.in_flight == 0, ledger


async def _sequence(edits: list[tuple[str, int, str]]) -> None:
    chain = _Chain()
    sent: list[int] = []
    # Nobody reads the output while the edits run: let it hold everything.
    async with rf.Network(chain.graph, registry(), capacity=4, output_capacity=10**9) as net:
        async with trio.open_nursery() as nursery:

            async def produce() -> None:
                for i in range(MESSAGES):
                    await net.send("input", i)
                    sent.append(i)

            nursery.start_soon(produce)
            for step in edits:
                await chain.apply(*step)
                ledger = net.statistics().ledger
                assert ledger.balanced, ledger
        await net.idle()
    assert len(sent) == MESSAGES
    _check_books(net, sent)


@settings(max_examples=EXAMPLES)
@given(st.lists(edit, min_size=1, max_size=30))
def test_random_live_edits_under_load_never_crash_or_lose(
    edits: list[tuple[str, int, str]],
) -> None:
    trio.run(_sequence, edits)


#: One long-running network: SEQUENCES random edit sequences, each applied while its
#: share of the load (MESSAGES_PER_SEQUENCE) flows; the ledger balances after each.
SEQUENCES = 1_000 if LONG else 60
MESSAGES_PER_SEQUENCE = 100
STATS = {"sequences": 0, "edits": 0, "refused": 0, "messages": 0, "dead_letters": 0}


async def test_a_thousand_edit_sequences_on_one_network_under_a_100k_message_load() -> None:
    """1,000 sequences x 100 messages = the issue's 100k-message load (CI: 60 x 100)."""
    rng = random.Random(9)
    chain = _Chain()
    sent: list[int] = []
    permits_in, permits_out = trio.open_memory_channel[None](math.inf)
    with trio.fail_after(3000 if LONG else 240):
        async with rf.Network(chain.graph, registry(), capacity=4,
                              output_capacity=10**9) as net:
            async with trio.open_nursery() as nursery:

                async def produce() -> None:
                    i = 0
                    async for _ in permits_out:
                        await net.send("input", i)
                        sent.append(i)
                        i += 1

                nursery.start_soon(produce)
                for _ in range(SEQUENCES):
                    for _ in range(MESSAGES_PER_SEQUENCE):
                        permits_in.send_nowait(None)
                    for _ in range(rng.randint(1, 12)):
                        kind = rng.choice(["insert", "insert", "remove", "remove", "bad",
                                           "flow", "flow"])
                        await chain.apply(kind, rng.randint(0, 30), rng.choice(COMPONENTS))
                        STATS["edits"] += 1
                    ledger = net.statistics().ledger
                    assert ledger.balanced, ledger
                    STATS["sequences"] += 1
                permits_in.close()
            await net.idle()
    assert len(sent) == SEQUENCES * MESSAGES_PER_SEQUENCE
    _check_books(net, sent)
    STATS["refused"] = chain.refused
    STATS["messages"] = len(sent)
    STATS["dead_letters"] = len(net.dead_letters())
    print(f"\nlive edits on one network: {STATS}")
