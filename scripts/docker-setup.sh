#!/bin/sh
# Make a Docker engine and the local Python image the script sandbox tests need.
#
# Idempotent and unattended (CI runs it through `make docker`):
#   0. installs clang + lld (C -> wasm32 for the WASM plugin tests) if missing;
#   1. installs the Debian package docker.io if `dockerd` is missing (needs root + apt);
#   2. starts dockerd in the background unless an engine already answers, and waits
#      for it (timeout $REFLOWPY_DOCKERD_TIMEOUT seconds, default 60);
#   3. builds the image $REFLOWPY_PYTHON_IMAGE (default reflowpy/python:3.11-slim)
#      without any registry: a root filesystem is assembled from this machine's Debian
#      python3 (the files of its dpkg packages plus every shared library they load)
#      and loaded with `docker import`. No pull, no Dockerfile, a few seconds.
#
# Environment: REFLOWPY_SETUP_WASM_TOOLCHAIN=0 skips step 0, REFLOWPY_PYTHON_IMAGE, REFLOWPY_DOCKERD_TIMEOUT, REFLOWPY_DOCKERD_ARGS
# (extra dockerd flags, e.g. "--storage-driver=vfs" where overlayfs is unavailable).
set -eu

IMAGE="${REFLOWPY_PYTHON_IMAGE:-reflowpy/python:3.11-slim}"
TIMEOUT="${REFLOWPY_DOCKERD_TIMEOUT:-60}"
LOG="${TMPDIR:-/tmp}/reflowpy-dockerd.log"

say() { echo "docker-setup: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else "$@"; fi; }

engine_up() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# 0. the WASM plugin toolchain the script tests compile C plugins with (clang + lld)
if [ "${REFLOWPY_SETUP_WASM_TOOLCHAIN:-1}" = 1 ] && { ! command -v clang >/dev/null 2>&1 || ! command -v wasm-ld >/dev/null 2>&1; }; then
    say "installing clang lld"
    as_root env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -q >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q clang lld >/dev/null
fi

# 1. the engine's packages
if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
    if engine_up 2>/dev/null; then :; else
        say "installing docker.io"
        as_root env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -q >/dev/null
        as_root env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q docker.io >/dev/null
    fi
fi

# 2. a running engine
if ! engine_up; then
    say "starting dockerd (log: $LOG)"
    # shellcheck disable=SC2086
    as_root sh -c "nohup dockerd ${REFLOWPY_DOCKERD_ARGS:-} >'$LOG' 2>&1 &"
    waited=0
    until engine_up; do
        waited=$((waited + 1))
        if [ "$waited" -ge "$TIMEOUT" ]; then
            say "dockerd did not answer within ${TIMEOUT}s; last log lines:"
            tail -n 30 "$LOG" >&2 || true
            exit 1
        fi
        sleep 1
    done
    say "dockerd is up after ${waited}s"
fi

# 3. the Python image, assembled from this machine's Debian python3
if timeout 30 docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "image $IMAGE present"
    exit 0
fi

PYBIN=/usr/bin/python3
if [ ! -x "$PYBIN" ]; then
    say "installing Debian python3-minimal"
    as_root env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q python3-minimal >/dev/null
fi
PYREAL="$(readlink -f "$PYBIN")"
PYVER="$("$PYREAL" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
say "building $IMAGE from $PYREAL (Python $PYVER)"

ROOT="$(mktemp -d "${TMPDIR:-/tmp}/reflowpy-rootfs.XXXXXX")"
trap 'rm -rf "$ROOT"' EXIT

# Debian's merged /usr first (/lib, /lib64, /bin point into /usr), so copies land there.
for d in lib lib64 bin sbin; do
    if [ -L "/$d" ]; then mkdir -p "$ROOT/usr/$d"; ln -s "usr/$d" "$ROOT/$d"; fi
done

# Every regular file and symlink of the packages that make up Debian's python3 stdlib.
for pkg in "python${PYVER}-minimal" "libpython${PYVER}-minimal" "libpython${PYVER}-stdlib" python3-minimal; do
    dpkg -L "$pkg" 2>/dev/null || true
done | while read -r f; do
    case "$f" in /usr/share/doc/*|/usr/share/man/*|/usr/share/lintian/*|*/__pycache__/*) continue ;; esac
    if [ -f "$f" ] || [ -L "$f" ]; then
        mkdir -p "$ROOT$(dirname "$f")"
        cp -a "$f" "$ROOT$f"
    fi
done
[ -e "$ROOT/usr/bin/python3" ] || ln -s "python$PYVER" "$ROOT/usr/bin/python3"

# The shared libraries the interpreter and its extension modules load (ldd, recursive).
{
    ldd "$PYREAL"
    find "/usr/lib/python$PYVER/lib-dynload" -name '*.so' -exec ldd {} \; 2>/dev/null
} | awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}' | sort -u | while read -r lib; do
    for path in "$lib" "$(readlink -f "$lib")"; do
        mkdir -p "$ROOT$(dirname "$path")"
        cp -a "$path" "$ROOT$path"
    done
done

mkdir -p "$ROOT/etc" "$ROOT/tmp" "$ROOT/home/nobody"
chmod 1777 "$ROOT/tmp"
printf 'root:x:0:0:root:/root:/nonexistent\nnobody:x:65534:65534:nobody:/home/nobody:/nonexistent\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOT/etc/group"
printf 'root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n' >"$ROOT/etc/shadow"
chmod 640 "$ROOT/etc/shadow"

# Prove the tree runs before importing it.
"$PYREAL" -c 'pass'
timeout 120 tar -C "$ROOT" -c . | timeout 120 docker import \
    --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' \
    --change "ENV PATH=/usr/local/bin:/usr/bin:/bin" - "$IMAGE-candidate" >/dev/null
# Tag only an image that runs the worker's imports, so a broken build is rebuilt next time.
timeout 60 docker run --rm --network none --user 65534:65534 "$IMAGE-candidate" \
    python3 -I -c 'import json, struct, resource, traceback, ctypes, signal, threading'
docker tag "$IMAGE-candidate" "$IMAGE"
docker rmi "$IMAGE-candidate" >/dev/null
say "image $IMAGE built ($(docker image inspect "$IMAGE" --format '{{.Size}}') bytes)"
