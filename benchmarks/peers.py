"""reflowpy beside the libraries its users would pick instead, in ONE run.

    python -m benchmarks peers [--peers2 DIR] [--workdir DIR] [--rounds 3]
                               [--only W1,W2,W3,W4,W5,W6] [--baseline REV] [--out FILE]

Ratios only mean something inside one run on one machine, so this runs reflowpy's own
workloads (``benchmarks.kernel`` W1-W5, ``benchmarks.w6``) and the peers' equivalents
(asyncio, asyncio+uvloop, streamz, bytewax; from ``shared/bench/peers2`` and
``shared/bench/peers``, found next to the checkout or given with ``--peers2``), each
(system, workload) in a fresh process, the systems of a workload interleaved round by
round in an order rotated each round. Ray is never run (minutes per workload).

The peers run in their own virtual environments under ``--workdir`` (created on first
use with pip; bytewax 0.21.1 in one, the pinned peer libraries without Ray in the
other). ``--baseline REV`` also runs reflowpy at git revision ``REV`` (its
``reflowpy/`` package with today's ``benchmarks/``), so a before/after table comes from
the same run; ``--head REV`` runs the "reflowpy" rows from a snapshot of ``REV`` the
same way (the working tree may then change during the run). Every result line is
printed and appended to ``--out`` as JSON with ``round`` and ``sys`` added; the last
lines are ``{"summary": ...}`` medians per (workload, system) with the ratio to the
best peer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GROUPS = ("W1", "W2", "W3", "W4", "W5", "W6")
#: Per workload: the figure compared, and whether larger is better.
FIGURES = {"W1": ("msgs_per_s", True), "W2": ("msgs_per_s", True), "W3": ("p50_us", False),
           "W4": ("kib_per_actor", False), "W5": ("peak_growth_mb", False),
           "W6": ("msgs_per_s", True)}
#: The peer each goal of issue 15 names, per workload (ratios to it are printed too).
GOAL_PEER = {"W2": "asyncio+uvloop", "W6": "bytewax"}
Variant = tuple[str, str, list[str], dict[str, str], str | None]  # group, sys, argv, env, cwd


def _find_peers2(given: str | None) -> Path:
    candidates = [Path(given)] if given else [
        ROOT.parent / "shared" / "bench" / "peers2",
        ROOT.parent.parent / "shared" / "bench" / "peers2",
    ]
    for c in candidates:
        if (c / "h2.py").is_file():
            return c.resolve()
    raise SystemExit(f"peers2 benchmarks not found (looked in {', '.join(map(str, candidates))});"
                     " pass --peers2 DIR")


def _venv(path: Path, packages: list[str]) -> str:
    py = path / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *packages], check=True)
    return str(py)


def _baseline(rev: str, workdir: Path) -> str:
    """A tree with ``reflowpy/`` at ``rev`` and today's ``benchmarks/``."""
    dest = workdir / f"base-{rev.replace('/', '_')}"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "reflowpy"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    shutil.copytree(ROOT / "benchmarks", dest / "benchmarks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return str(dest)


def variants(peers2: Path, peers_py: str, bytewax_py: str, logs: str,
             baseline: str | None, head: str | None = None) -> list[Variant]:
    old = peers2.parent / "peers"
    me = sys.executable
    v: list[Variant] = []
    trees = [("reflowpy", head or str(ROOT))]
    if baseline:
        trees.append(("reflowpy@base", baseline))
    for label, cwd in trees:
        k = [me, "-m", "benchmarks", "kernel", "--runs", "1", "--only"]
        v += [("W1", label, [*k, "W1"], {}, cwd), ("W2", label, [*k, "W2"], {}, cwd),
              ("W3", label, [*k, "W3"], {}, cwd), ("W4", label, [*k, "W4"], {}, cwd),
              ("W5", label, [*k, "W5"], {}, cwd)]
        w6 = [me, "-m", "benchmarks", "w6", "--path", logs, "--runs", "1", "--only"]
        v += [("W6", f"{label}(plain)", [*w6, "plain"], {}, cwd),
              ("W6", f"{label}(std)", [*w6, "std"], {}, cwd),
              ("W6", f"{label}(expr)", [*w6, "expr"], {}, cwd)]
    uv = {"PEERBENCH_UVLOOP": "1"}
    for lib, env in (("asyncio", {}), ("asyncio+uvloop", uv)):
        script = str(old / "asyncio_raw.py")
        v += [("W1", lib, [peers_py, script, "W1_pipeline"], env, None),
              ("W2", lib, [peers_py, script, "W2_fanout"], env, None),
              ("W3", lib, [peers_py, script, "W3_pingpong"], env, None)]
    v += [("W4", "asyncio", [peers_py, str(old / "asyncio_raw.py"), "W4_many_actors"],
           {"PEERBENCH_ACTORS": "10000"}, None),
          ("W4", "streamz(sync)", [peers_py, str(old / "streamz_bench.py"), "W4_many_actors"],
           {"PEERBENCH_ACTORS": "10000"}, None),
          ("W5", "asyncio", [peers_py, str(peers2 / "peers_w.py"), "asyncio", "W5"], {}, None),
          ("W6", "asyncio", [peers_py, str(peers2 / "peers_w.py"), "asyncio", "W6", logs], {},
           None),
          ("W6", "streamz(sync)",
           [peers_py, str(peers2 / "peers_w.py"), "streamz-sync", "W6", logs], {}, None),
          ("W6", "bytewax", [bytewax_py, str(peers2 / "bytewax_w6.py"), logs], {}, None),
          ("W6", "python-loop", [peers_py, str(peers2 / "h2.py"), "ref", logs], {}, None)]
    return v


def _run(argv: list[str], env: dict[str, str], cwd: str | None,
         timeout: float) -> tuple[list[dict[str, Any]], str | None]:
    full = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **env)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        cpu0 = _child_cpu()
        p = subprocess.Popen(argv, stdout=out, stderr=err, env=full, cwd=cwd,
                             start_new_session=True)
        status = None
        try:
            p.wait(timeout=timeout)
            if p.returncode:
                status = f"exit {p.returncode}"
        except subprocess.TimeoutExpired:
            status = f"timeout {timeout:g}s"
            os.killpg(p.pid, signal.SIGKILL)  # the group of the process started above
            p.wait()
        cpu = round(_child_cpu() - cpu0, 3)
        out.seek(0)
        err.seek(0)
        lines = []
        for line in out.read().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(line) | {"process_cpu_s": cpu})
        if status:
            lines.append({"error": status, "stderr_tail": err.read()[-600:]})
        elif not lines:
            lines.append({"error": "no output", "stderr_tail": err.read()[-600:]})
        return lines, status


def _child_cpu() -> float:
    """CPU seconds (user + system) of the children waited for so far: around one
    child's run, its whole process (start-up and imports included; the machine's
    load inflates wall times, much less CPU times)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _figure(group: str, d: dict[str, Any]) -> float | None:
    key, _ = FIGURES[group]
    if group == "W3":
        value = d.get("p50_us", d.get("rtt_p50_us"))
    elif group == "W4":
        value = d.get("kib_per_actor", d.get("kb_per_actor"))
    elif group == "W6" and d.get("workload") == "W6 expression":
        return None
    else:
        value = d.get(key)
    if group in ("W1", "W2", "W4") and d.get("n") not in (None, 200_000, 10_000):
        return None
    if group == "W1" and d.get("behaviour") not in (None, "def", "async def"):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def _ratio(a: float, b: float, bigger: bool) -> float:
    return round(a / b if bigger else b / a, 3) if a and b else 0.0


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians per (workload, system), and the ratio to the best peer both of the
    medians and paired per round (median of each round's own ratio, steadier on a
    shared, noisy machine)."""
    table: dict[tuple[str, str], dict[int, float]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    for d in results:
        group = d["group"]
        value = _figure(group, d)
        if value is None:
            continue
        name = d["sys"] + (f" ({d['behaviour']})" if d.get("behaviour") else "")
        table.setdefault((group, name), {})[d.get("round", 0)] = value
        if isinstance(d.get("process_cpu_s"), (int, float)):
            cpus.setdefault((group, name), []).append(d["process_cpu_s"])
    out = []
    for group in GROUPS:
        rows = {name: vs for (g, name), vs in table.items() if g == group}
        if not rows:
            continue
        _, bigger = FIGURES[group]
        medians = {name: statistics.median(vs.values()) for name, vs in rows.items()}
        peers = {k: v for k, v in medians.items() if not k.startswith("reflowpy")
                 and k != "python-loop"}
        best = (max if bigger else min)(peers.items(), key=lambda kv: kv[1]) if peers else None

        for name, value in sorted(medians.items()):
            line: dict[str, Any] = {"summary": group, "sys": name, FIGURES[group][0]: value,
                                    "rounds": len(rows[name])}
            if cpus.get((group, name)):
                line["process_cpu_s"] = statistics.median(cpus[(group, name)])
            if best is not None and best[1]:
                line["best_peer"] = best[0]
                line["ratio_to_best_peer"] = _ratio(value, best[1], bigger)
                paired = [_ratio(v, rows[best[0]][r], bigger) for r, v in rows[name].items()
                          if r in rows[best[0]]]
                if paired:
                    line["paired_ratio_to_best_peer"] = round(statistics.median(paired), 3)
            goal = GOAL_PEER.get(group)
            if goal in rows:
                paired = [_ratio(v, rows[goal][r], bigger) for r, v in rows[name].items()
                          if r in rows[goal]]
                if paired:
                    line[f"paired_ratio_to_{goal}"] = round(statistics.median(paired), 3)
            out.append(line)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks peers")
    parser.add_argument("--peers2", help="shared/bench/peers2 (default: found near the checkout)")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "reflowpy-peers"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(GROUPS))
    parser.add_argument("--baseline", help="also run reflowpy at this git revision")
    parser.add_argument("--head", help="run 'reflowpy' from this git revision, not the"
                                       " working tree (so the tree may change meanwhile)")
    parser.add_argument("--out", help="append every JSON line here too")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--summarize", metavar="FILE",
                        help="only print the summary of the JSON lines in FILE")
    args = parser.parse_args(argv)
    if args.summarize:
        with open(args.summarize) as f:
            lines = [json.loads(line) for line in f if line.startswith("{")]
        for line in summarize([d for d in lines if "error" not in d and "summary" not in d]):
            print(json.dumps(line), flush=True)
        return
    only = [g for g in GROUPS if g in {w.strip().upper() for w in args.only.split(",")}]
    peers2 = _find_peers2(args.peers2)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    reqs = [r for r in (peers2.parent / "peers" / "requirements.txt").read_text().splitlines()
            if r.strip() and not r.startswith(("#", "ray"))]
    peers_py = _venv(workdir / "peers", reqs)
    bytewax_py = _venv(workdir / "bytewax", ["bytewax==0.21.1", "psutil"])
    logs = workdir / "logs200k.jsonl"
    if not logs.exists():
        from benchmarks.w6 import generate

        generate(str(logs), 200_000)
    baseline = _baseline(args.baseline, workdir) if args.baseline else None
    head = _baseline(args.head, workdir) if args.head else None
    vs = [v for v in variants(peers2, peers_py, bytewax_py, str(logs), baseline, head)
          if v[0] in only]
    sink = open(args.out, "a") if args.out else None  # noqa: SIM115
    results: list[dict[str, Any]] = []
    failed: set[tuple[str, str]] = set()
    for rnd in range(1, args.rounds + 1):
        for group in only:
            gv = [v for v in vs if v[0] == group]
            k = (rnd - 1) % max(len(gv), 1)
            for g, name, argv_, env, cwd in gv[k:] + gv[:k]:
                if (g, name) in failed:
                    continue
                print(f"# {time.strftime('%H:%M:%S')} round {rnd} {g} {name}", file=sys.stderr,
                      flush=True)
                lines, status = _run(argv_, env, cwd, args.timeout)
                if status or any("error" in d for d in lines):
                    failed.add((g, name))
                for d in lines:
                    d.update(round=rnd, group=g, sys=name)
                    results.append(d)
                    text = json.dumps(d)
                    print(text, flush=True)
                    if sink:
                        sink.write(text + "\n")
    for line in summarize([d for d in results if "error" not in d]):
        text = json.dumps(line)
        print(text, flush=True)
        if sink:
            sink.write(text + "\n")
    if sink:
        sink.close()


if __name__ == "__main__":
    main()
