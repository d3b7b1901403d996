#!/bin/sh
# What the process sandbox needs from Debian (make services runs every setup-*.sh):
#   bubblewrap  namespaces for each worker (user, pid, mount, ipc, uts, net)
#   util-linux  setpriv (run bwrap as the node's own uid)
# Idempotent and unattended; needs root and the Debian mirrors only when something is
# missing. Also checks what the kernel offers and prints it (user namespaces, cgroups).
set -eu
say() { echo "setup-sandbox: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else "$@"; fi; }

missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
command -v setpriv >/dev/null 2>&1 || missing="$missing util-linux"
if [ -n "$missing" ]; then
    say "installing$missing"
    as_root env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    as_root env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q $missing >/dev/null
fi

if bwrap --unshare-all --unshare-user --die-with-parent --ro-bind /usr /usr \
        --symlink usr/lib /lib --symlink usr/lib64 /lib64 --symlink usr/bin /bin \
        --proc /proc /usr/bin/true 2>/dev/null; then
    say "bubblewrap $(bwrap --version | cut -d' ' -f2): namespaces work"
else
    say "bubblewrap cannot create namespaces here (user namespaces disabled?);"
    say "  sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0"
    exit 1
fi
if [ -r /sys/fs/cgroup/cgroup.controllers ]; then
    say "cgroup v2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
else
    say "cgroup v1 controllers: $(ls /sys/fs/cgroup | tr '\n' ' ')"
fi
