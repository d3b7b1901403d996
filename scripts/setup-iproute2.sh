#!/bin/sh
# iproute2 (and iptables) for the bridge tests across network namespaces (`ip netns` + veth) with loss
# and delay from `tc netem`. Idempotent and unattended (the Makefile's `test` target runs
# every scripts/setup-*.sh); needs root and the Debian mirrors only when `ip`/`tc` are
# missing. Also loads the netem qdisc module where modules can be loaded (ignored if not:
# the kernel may have it built in, and the test says so if it is missing).
set -eu

say() { echo "setup-iproute2: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else "$@"; fi; }

# iptables: random packet loss (statistic match) where the kernel lacks sch_netem
if ! command -v ip >/dev/null 2>&1 || ! command -v tc >/dev/null 2>&1 \
        || ! command -v iptables >/dev/null 2>&1; then
    say "installing iproute2 iptables"
    as_root env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -q >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive timeout 600 \
        apt-get install -y -q --no-install-recommends iproute2 iptables >/dev/null
fi
command -v modprobe >/dev/null 2>&1 && as_root modprobe sch_netem 2>/dev/null || true
say "ip: $(ip -V 2>&1 | head -1)"
# Say loudly whether tc netem works here (the netns test falls back without it).
ns="rfbsetup$$"
if as_root ip netns add "$ns" 2>/dev/null; then
    if err=$(as_root ip netns exec "$ns" tc qdisc add dev lo root netem delay 5ms loss 1% 2>&1); then
        say "tc netem: available"
    else
        cfg=$(zcat /proc/config.gz 2>/dev/null | grep CONFIG_NET_SCH_NETEM || true)
        say "NOTICE: tc netem unavailable in a network namespace: '$err'${cfg:+ (kernel $(uname -r): $cfg)};" \
            "tests/bridge/test_netns.py falls back to iptables loss + tbf"
    fi
    as_root ip netns del "$ns" 2>/dev/null || true
fi
