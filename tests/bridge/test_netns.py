"""A bridge across network namespaces the test creates (``ip netns`` + veth), with
packet loss and delay, and the link taken down and up mid-stream: delivery stays exact.

Loss and delay come from ``tc netem`` where the kernel has it. Where it does not (no
``sch_netem``, no module loading, as in some containers), the test says so with a
warning and uses what the kernel has: random loss from an iptables ``statistic`` rule
and queueing delay from a ``tbf`` rate limit.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator

import pytest
import trio

from reflowpy.bridge import BridgedNetwork, Peer, Peers
from tests.bridge.helpers import check_exact, pipeline, registry
from tests.bridge.procs import peer_process
from tests.scale import long_scale

NS = f"rfb{os.getpid() % 100000}"
HOST, PEER = "10.231.7.1", "10.231.7.2"
VETH, VPEER = f"{NS}a", f"{NS}b"
TOKEN = "netns-token"


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def _netem_missing_why(error: str) -> str:
    """Why ``tc netem`` failed, as precisely as this machine can tell."""
    why = f"`tc qdisc add dev {VETH} root netem delay 3ms 1ms loss 2%` failed: {error!r}"
    try:
        config = subprocess.run(["zcat", "/proc/config.gz"], capture_output=True,
                                text=True, check=False).stdout
    except OSError:
        config = ""
    line = next((x for x in config.splitlines() if "CONFIG_NET_SCH_NETEM" in x), "")
    if line:
        why += f"; kernel {os.uname().release} has {line!r}"
    if not os.path.isdir(f"/lib/modules/{os.uname().release}"):
        why += " and no loadable modules (/lib/modules missing), so sch_netem cannot be loaded"
    return why


def _impair() -> str:
    """Loss + delay both ways; returns how it was done."""
    netem = sh("tc", "qdisc", "add", "dev", VETH, "root", "netem", "delay", "3ms", "1ms",
               "loss", "2%", check=False)
    if netem.returncode == 0:
        sh("ip", "netns", "exec", NS, "tc", "qdisc", "add", "dev", VPEER, "root", "netem",
           "delay", "3ms", "1ms", "loss", "2%")
        return "tc netem: delay 3ms +-1ms, loss 2% each way"
    why = _netem_missing_why(netem.stderr.strip())
    if os.environ.get("REFLOWPY_REQUIRE_NETEM") == "1":
        pytest.fail(f"tc netem is required (REFLOWPY_REQUIRE_NETEM=1): {why}")
    notice = (f"NOTICE: tc netem unavailable: {why}. Using iptables statistic loss 2% and"
              " a tbf rate limit for delay instead (set REFLOWPY_REQUIRE_NETEM=1 to fail).")
    print(notice, file=sys.stderr)
    warnings.warn(notice, stacklevel=2)
    for prefix in ([], ["ip", "netns", "exec", NS]):
        sh(*prefix, "iptables", "-A", "INPUT", "-i", VETH if not prefix else VPEER,
           "-m", "statistic", "--mode", "random", "--probability", "0.02", "-j", "DROP")
        sh(*prefix, "tc", "qdisc", "add", "dev", VETH if not prefix else VPEER, "root",
           "tbf", "rate", "40mbit", "burst", "32kbit", "latency", "20ms")
    return "iptables statistic loss 2% each way + tbf 40mbit (netem unavailable)"


def _remove_stale() -> None:
    """Namespaces and host veths an interrupted earlier run left (same subnet: a stale
    10.231.7.1 route makes this run's peer unreachable)."""
    try:
        names = sh("ip", "netns", "list", check=False).stdout.split()
        links = sh("ip", "-o", "link", "show", check=False).stdout
    except OSError:
        return
    for name in names:
        if name.startswith("rfb") and name[3:].isdigit():
            sh("ip", "netns", "del", name, check=False)
    for line in links.splitlines():
        dev = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if dev.startswith("rfb") and dev.endswith("a") and dev[3:-1].isdigit():
            sh("ip", "link", "del", dev, check=False)


def _cleanup(*steps: tuple[str, ...]) -> None:
    # every step, even when an earlier one fails or its tool is missing (iptables)
    for step in steps:
        with contextlib.suppress(OSError):
            sh(*step, check=False)


@pytest.fixture
def namespace() -> Iterator[str]:
    if os.geteuid() == 0:
        _remove_stale()
    if os.geteuid() != 0 or sh("ip", "netns", "add", NS, check=False).returncode != 0:
        if os.environ.get("REFLOWPY_REQUIRE_NETNS") == "1":
            pytest.fail("cannot create a network namespace (needs root and iproute2)")
        pytest.skip("cannot create a network namespace (needs root and iproute2;"
                    " scripts/setup-iproute2.sh installs it)")
    try:
        sh("ip", "link", "add", VETH, "type", "veth", "peer", "name", VPEER)
        sh("ip", "link", "set", VPEER, "netns", NS)
        sh("ip", "addr", "add", f"{HOST}/24", "dev", VETH)
        sh("ip", "link", "set", VETH, "up")
        sh("ip", "netns", "exec", NS, "ip", "addr", "add", f"{PEER}/24", "dev", VPEER)
        sh("ip", "netns", "exec", NS, "ip", "link", "set", VPEER, "up")
        sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")
        yield _impair()
    finally:
        _cleanup(("ip", "link", "del", VETH), ("ip", "netns", "del", NS),
                 ("iptables", "-D", "INPUT", "-i", VETH, "-m", "statistic", "--mode",
                  "random", "--probability", "0.02", "-j", "DROP"))


async def test_exact_delivery_across_namespaces_with_loss_delay_and_flaps(
        namespace: str) -> None:
    n = long_scale(20_000)
    flaps = 3
    async with peer_process(TOKEN, host=PEER, prefix=["ip", "netns", "exec", NS]) as (url, _):
        bn = BridgedNetwork(pipeline({"b": "remote:A", "c": "remote:A"}, capacity=64),
                            registry(), peers=Peers({"A": Peer(url, TOKEN)}),
                            ping_interval=0.2, liveness=1.0)
        got: list[object] = []
        async with bn:
            session = bn.session("remote:A")
            async with trio.open_nursery() as nursery:
                async def feed() -> None:
                    for i in range(n):
                        await bn.network.send("in", [0, i])

                nursery.start_soon(feed)
                done_flaps = 0
                async for v in bn.network.outputs("out"):
                    got.append(v)
                    if done_flaps < flaps and len(got) >= (done_flaps + 1) * n // (flaps + 1):
                        sh("ip", "link", "set", VETH, "down")
                        while session.state == "up":  # the liveness timeout notices
                            await session.changed()
                        sh("ip", "link", "set", VETH, "up")
                        done_flaps += 1
                    if len(got) == n:
                        break
        check_exact(got, n)
        s = bn.statistics()["bridges"]["remote:A"]
        assert s.reconnects >= flaps, s
        print(f"\nnetns ({namespace}): {n} messages exact, {s.reconnects} reconnects,"
              f" rtt {s.rtt_ms:.1f} ms, resent"
              f" {sum(c.resent for c in s.channels)}")
