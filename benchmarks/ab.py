"""A/B of kernel versions on process (CPU) time, interleaved in one run (noisy machines).

    python -m benchmarks ab ROUNDS N base=/path/to/old/src head=/path/to/new/src

Each ``name=root`` is a directory holding a ``reflowpy`` package (``git archive REV
reflowpy | tar -x -C DIR``); every workload of every round runs once per variant in a
fresh subprocess with ``PYTHONPATH=root``. Workloads (env ``WL``, default all): W1def,
W1async (10-stage chain, N messages), W2 (8-way fan-out, N), W3 (ping-pong, N/10), W4
(10,000 idle actors), W5 (slow sink for 2 s: CPU seconds per 1,000 messages). Prints one
JSON line per workload: median CPU seconds per variant, and median and min ratios
against the first variant (> 1 is slower).
"""
import gc
import json
import os
import statistics
import subprocess
import sys
import time


def run(workload, n):
    import trio

    import reflowpy as rf

    @rf.actor(inports=["in"], outports=["out"])
    def passthrough(ctx):
        return {"out": ctx.inputs["in"]}

    @rf.actor(inports=["in"], outports=["out"])
    async def passthrough_async(ctx):
        return {"out": ctx.inputs["in"]}

    class Source(rf.Actor):
        outports = [rf.Port("out", addressable=True)]

        async def run(self, ctx):
            n = int(ctx.config["n"])
            fanout = int(ctx.config.get("fanout", 0))
            send = ctx.send
            if fanout:
                for i in range(n):
                    await send("out", {"i": i, "payload": "x" * 32}, index=i % fanout)
            else:
                for i in range(n):
                    await send("out", {"i": i, "payload": "x" * 32})

    class Sink(rf.Actor):
        inports = ["in"]
        outports = ["count"]

        def __init__(self):
            self.n = 0

        async def process(self, ctx):
            self.n += 1

    class SlowSink(rf.Actor):
        inports = ["in"]

        def __init__(self):
            self.n = 0

        async def process(self, ctx):
            await trio.sleep(0.0002)
            self.n += 1

    class Pinger(rf.Actor):
        inports = ["pong"]
        outports = ["ping"]

        async def run(self, ctx):
            n = int(ctx.config["n"])
            for i in range(n):
                await ctx.send("ping", {"i": i, "payload": "x" * 32})
                await ctx.receive("pong")

    reg = rf.Registry()
    for k, v in (("b/Pass", passthrough), ("b/PassAsync", passthrough_async), ("b/Source", Source),
                 ("b/Sink", Sink), ("b/SlowSink", SlowSink), ("b/Pinger", Pinger)):
        reg.register(k, v)
    g = rf.Graph("w")
    if workload in ("W1def", "W1async"):
        comp = "b/Pass" if workload == "W1def" else "b/PassAsync"
        g.add_node("src", "b/Source", {"n": n})
        prev = "src"
        for i in range(10):
            g.add_node(f"p{i}", comp)
            g.add_edge(prev, "out", f"p{i}", "in")
            prev = f"p{i}"
        g.add_node("sink", "b/Sink")
        g.add_edge(prev, "out", "sink", "in")
    elif workload == "W2":
        g.add_node("src", "b/Source", {"n": n, "fanout": 8})
        g.add_node("sink", "b/Sink")
        for i in range(8):
            g.add_node(f"w{i}", "b/Pass")
            g.add_edge("src", "out", f"w{i}", "in", src_index=i)
            g.add_edge(f"w{i}", "out", "sink", "in")
    elif workload == "W3":
        g.add_node("ping", "b/Pinger", {"n": n})
        g.add_node("pong", "b/Pass")
        g.add_edge("ping", "ping", "pong", "in")
        g.add_edge("pong", "out", "ping", "pong")
    elif workload == "W4":
        for i in range(n):
            g.add_node(f"a{i}", "b/Pass")
        for i in range(1, n):
            g.add_edge(f"a{i - 1}", "out", f"a{i}", "in")
    elif workload == "W5":
        g.add_node("src", "b/Source", {"n": 10**12})
        g.add_node("sink", "b/SlowSink")
        g.add_edge("src", "out", "sink", "in")

    async def main():
        net = rf.Network(g, reg)
        t0 = time.process_time()
        async with net:
            if workload == "W5":
                await trio.sleep(n / 1000)
                processed = net._runners["sink"].actor.n
                await net.stop(drain=False)
                return time.process_time() - t0, processed
            await net.idle()
        el = time.process_time() - t0
        if workload in ("W1def", "W1async", "W2"):
            assert net._runners["sink"].actor.n == n
        return el, n

    gc.collect()
    el, count = trio.run(main)
    # W5: CPU seconds per 1000 messages processed (lower is better), others CPU seconds
    print(el / count * 1000 if workload == "W5" else el)


def ab(rounds, n, variants, workloads):
    res = {(v, w): [] for v, _ in variants for w in workloads}
    here = os.path.abspath(__file__)
    for _ in range(rounds):
        for w in workloads:
            nn = {"W3": n // 10, "W4": 10000, "W5": 2000}.get(w, n)
            for name, root in variants:
                env = dict(os.environ, PYTHONPATH=root)
                out = subprocess.check_output([sys.executable, here, "run", w, str(nn)],
                                              env=env, cwd="/tmp", timeout=600)
                res[(name, w)].append(float(out.split()[-1]))
    base = variants[0][0]
    for w in workloads:
        row = {"workload": w}
        b = statistics.median(res[(base, w)])
        for name, _ in variants:
            m = statistics.median(res[(name, w)])
            row[name] = round(m, 4)
            if name != base:
                row[f"{name}/{base}"] = round(m / b, 3)
                row[f"min {name}/{base}"] = round(min(res[(name, w)]) / min(res[(base, w)]), 3)
        print(json.dumps(row), flush=True)


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "run":
        run(args[1], int(args[2]))
        return
    rounds, n = int(args[0]), int(args[1])
    ws = os.environ.get("WL", "W1def,W1async,W2,W3,W4,W5").split(",")
    variants = [tuple(a.split("=", 1)) for a in args[2:]]
    ab(rounds, n, variants, ws)


if __name__ == "__main__":
    main()
