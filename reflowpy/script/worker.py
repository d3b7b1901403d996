# mypy: ignore-errors
# ruff: noqa: UP031, E501, SIM105, SIM115
"""The in-sandbox worker of reflowpy's script actors (standard library only, one file).

This file is *injected* into the sandbox: the host runs ``python3 -I -c <this source>
<max_frame>`` inside a stock ``python:3.x-slim`` container or a local subprocess, so
it must not import reflowpy, msgspec or anything outside the standard library, and it
keeps to Python 3.8 syntax.

Wire format (see :mod:`reflowpy.script.protocol` for the host side): every frame is a
4-byte big-endian length followed by that many bytes of msgpack, one array whose first
element names the frame type::

    host -> worker   ["init", source, filename, entry, config, sandbox]
                     ["process", id, inputs, state | nil]     state nil: keep yours
                     ["ping", id]
    worker -> host   ["ready", pid, python_version]
                     ["output", id, port, value]              any number per process
                     ["result", id, outputs | nil, state | nil]   state nil: unchanged
                     ["error", id, kind, type, message, traceback]
                     ["log", level, message]
                     ["heartbeat", id, pid, max_rss_kb]

The original stdin/stdout (or a Unix socket named by a second argument) become
private protocol descriptors; fd 0 is /dev/null and
fds 1 and 2 both go to stderr, so ``print`` (even from C code) can never corrupt the
protocol: the host reads stderr as the node's log. A malformed frame from the host
ends the worker with exit code 3 and a message on stderr. End of input ends it with 0.
"""

import inspect
import linecache
import logging
import os
import struct
import sys
import threading
import traceback
import types

try:  # imported before the sandbox drops privileges (the stdlib may become unreadable)
    import resource
    import signal
except ImportError:  # pragma: no cover - non-POSIX
    resource = signal = None

_MAX_FRAME = 16 * 1024 * 1024
_SELF = globals().get("__file__", "<string>")
_PACK_LEN = struct.Struct(">I").pack
_UNPACK_LEN = struct.Struct(">I").unpack_from

# ---------------------------------------------------------------------- msgpack (subset)
# Enough of msgpack for message values: nil, bool, int (64-bit), float64, str, bin,
# array, map; tuples encode as arrays. Decoding also accepts float32 and ext-less data.


class EncodeError(TypeError):
    pass


def _pack_len(out, n, c8, c16):
    # The length header of a str/bin/map/array too long for a fix form (the callers
    # write those inline: they are the common case): the 8-bit form ``c8`` (0: the
    # type has none), else the 16-bit form ``c16``, else the 32-bit one, ``c16 + 1``.
    if c8 and n < 0x100:
        out += bytes((c8, n))
    elif n < 0x10000:
        out += bytes((c16,)) + n.to_bytes(2, "big")
    else:
        out += bytes((c16 + 1,)) + n.to_bytes(4, "big")


def _pack(obj, out):
    t = type(obj)
    if t is str:
        b = obj.encode("utf-8", "surrogatepass")
        n = len(b)
        if n < 32:
            out.append(0xA0 | n)
        else:
            _pack_len(out, n, 0xD9, 0xDA)
        out += b
    elif t is int:
        if 0 <= obj < 0x80:
            out.append(obj)
        elif -32 <= obj < 0:
            out.append(obj & 0xFF)
        elif 0 <= obj < 0x10000000000000000:
            out += b"\xcf" + obj.to_bytes(8, "big")
        elif -0x8000000000000000 <= obj < 0:
            out += b"\xd3" + obj.to_bytes(8, "big", signed=True)
        else:
            raise EncodeError("integer %d does not fit in 64 bits" % obj)
    elif obj is None:
        out.append(0xC0)
    elif obj is True:
        out.append(0xC3)
    elif obj is False:
        out.append(0xC2)
    elif t is float:
        out += b"\xcb" + struct.pack(">d", obj)
    elif t is dict or isinstance(obj, dict):
        n = len(obj)
        if n < 16:
            out.append(0x80 | n)
        else:
            _pack_len(out, n, 0, 0xDE)
        for k, v in obj.items():
            _pack(k, out)
            _pack(v, out)
    elif t is list or t is tuple or isinstance(obj, (list, tuple)):
        n = len(obj)
        if n < 16:
            out.append(0x90 | n)
        else:
            _pack_len(out, n, 0, 0xDC)
        for v in obj:
            _pack(v, out)
    elif t is bytes or t is bytearray or t is memoryview:
        b = bytes(obj)
        _pack_len(out, len(b), 0xC4, 0xC5)
        out += b
    elif isinstance(obj, bool):
        out.append(0xC3 if obj else 0xC2)
    elif isinstance(obj, int):
        _pack(int(obj), out)
    elif isinstance(obj, float):
        _pack(float(obj), out)
    elif isinstance(obj, str):
        _pack(str(obj), out)
    else:
        raise EncodeError(
            "a value of type %s cannot be sent (use None, bool, int, float, str, bytes,"
            " list, tuple or dict)" % type(obj).__name__
        )


def packb(obj):
    out = bytearray()
    _pack(obj, out)
    return bytes(out)


class DecodeError(ValueError):
    pass


class ChildrenLeft(RuntimeError):
    pass


def _unpack(buf, i):
    b = buf[i]
    i += 1
    if b < 0x80:
        return b, i
    if b >= 0xE0:
        return b - 0x100, i
    if 0xA0 <= b < 0xC0:
        n = b & 0x1F
        return str(buf[i : i + n], "utf-8", "surrogatepass"), i + n
    if 0x90 <= b < 0xA0:
        return _unpack_array(buf, i, b & 0x0F)
    if 0x80 <= b < 0x90:
        return _unpack_map(buf, i, b & 0x0F)
    if b == 0xC0:
        return None, i
    if b == 0xC2:
        return False, i
    if b == 0xC3:
        return True, i
    if b == 0xCB:
        return struct.unpack_from(">d", buf, i)[0], i + 8
    if b == 0xCA:
        return struct.unpack_from(">f", buf, i)[0], i + 4
    if 0xCC <= b <= 0xCF:
        n = 1 << (b - 0xCC)
        return int.from_bytes(buf[i : i + n], "big"), i + n
    if 0xD0 <= b <= 0xD3:
        n = 1 << (b - 0xD0)
        return int.from_bytes(buf[i : i + n], "big", signed=True), i + n
    if b in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
        w = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}[b]
        n = int.from_bytes(buf[i : i + w], "big")
        i += w
        if i + n > len(buf):
            raise DecodeError("truncated string/bytes")
        if b >= 0xD9:
            return str(buf[i : i + n], "utf-8", "surrogatepass"), i + n
        return bytes(buf[i : i + n]), i + n
    if b in (0xDC, 0xDD):
        w = 2 if b == 0xDC else 4
        return _unpack_array(buf, i + w, int.from_bytes(buf[i : i + w], "big"))
    if b in (0xDE, 0xDF):
        w = 2 if b == 0xDE else 4
        return _unpack_map(buf, i + w, int.from_bytes(buf[i : i + w], "big"))
    raise DecodeError("unsupported msgpack type byte 0x%02x" % b)


def _unpack_array(buf, i, n):
    if n > len(buf) - i:
        raise DecodeError("array length %d exceeds the frame" % n)
    items = []
    for _ in range(n):
        v, i = _unpack(buf, i)
        items.append(v)
    return items, i


def _unpack_map(buf, i, n):
    if n > len(buf) - i:
        raise DecodeError("map length %d exceeds the frame" % n)
    d = {}
    for _ in range(n):
        k, i = _unpack(buf, i)
        v, i = _unpack(buf, i)
        if isinstance(k, list):
            k = tuple(k)
        d[k] = v
    return d, i


def unpackb(data):
    try:
        value, end = _unpack(data, 0)
    except DecodeError:
        raise
    except (IndexError, struct.error, UnicodeDecodeError, TypeError) as exc:
        raise DecodeError("malformed msgpack: %s" % exc) from None
    if end != len(data):
        raise DecodeError("%d trailing bytes after the msgpack value" % (len(data) - end))
    return value


# ---------------------------------------------------------------------------- channel


class Channel:
    """Frames over two raw descriptors; writes are serialized by a lock (log threads)."""

    def __init__(self, rfd, wfd, max_frame):
        self.rfd = rfd
        self.wfd = wfd
        self.max_frame = max_frame
        self.buf = bytearray()
        self.lock = threading.Lock()

    def read_frame(self):
        buf = self.buf
        while True:
            if len(buf) >= 4:
                (n,) = _UNPACK_LEN(buf, 0)
                if n > self.max_frame:
                    fatal("frame of %d bytes from the host exceeds the limit %d" % (n, self.max_frame))
                if len(buf) >= 4 + n:
                    frame = bytes(buf[4 : 4 + n])
                    del buf[: 4 + n]
                    return frame
            chunk = os.read(self.rfd, 1 << 16)
            if not chunk:
                if buf:
                    fatal("input ended inside a frame (%d bytes pending)" % len(buf))
                return None
            buf += chunk

    def write(self, message):
        data = packb(message)
        if len(data) > self.max_frame:
            raise EncodeError(
                "frame of %d bytes exceeds the limit of %d bytes" % (len(data), self.max_frame)
            )
        data = _PACK_LEN(len(data)) + data
        with self.lock:
            view = memoryview(data)
            while view:
                n = os.write(self.wfd, view)
                view = view[n:]


def fatal(message):
    try:
        os.write(2, ("reflowpy worker: fatal: %s\n" % message).encode("utf-8", "replace"))
    finally:
        os._exit(3)


# ---------------------------------------------------------------------------- sandbox

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000


def _unshare_network():
    """Move this process into a new, empty network namespace (only loopback, down)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    flags = _CLONE_NEWNET if os.geteuid() == 0 else (_CLONE_NEWUSER | _CLONE_NEWNET)
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "unshare(network namespace) failed: %s" % os.strerror(err))


# Landlock (linux/landlock.h): the syscall numbers are the same on every architecture.
_LL_CREATE, _LL_ADD_RULE, _LL_RESTRICT = 444, 445, 446
_LL_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
# handled filesystem rights by ABI version: v1 has 13 rights, v2 adds REFER, v3
# TRUNCATE, v5 IOCTL_DEV; EXECUTE | READ_FILE | READ_DIR is what reading needs
_LL_FS_V1 = (1 << 13) - 1
_LL_READ = (1 << 0) | (1 << 2) | (1 << 3)
_LL_FILE_RIGHTS = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 14) | (1 << 15)


def _landlock(spec):
    """Restrict this process and its future children with a Landlock ruleset: read
    beneath ``read``, everything beneath ``write``, nothing else on the filesystem; no
    TCP bind/connect when ``deny_tcp`` (ABI >= 4); no signals to, and no abstract
    Unix sockets of, processes outside this domain (ABI >= 6)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long

    def fail(what):
        err = ctypes.get_errno()
        raise OSError(err, "landlock: %s failed: %s" % (what, os.strerror(err)))

    abi = libc.syscall(_LL_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        fail("ABI probe")
    fs = _LL_FS_V1 | (1 << 13 if abi >= 2 else 0) | (1 << 14 if abi >= 3 else 0) | (
        1 << 15 if abi >= 5 else 0)
    net = 3 if abi >= 4 and spec.get("deny_tcp") else 0  # BIND_TCP | CONNECT_TCP
    scoped = 3 if abi >= 6 else 0  # ABSTRACT_UNIX_SOCKET | SIGNAL
    if abi >= 6:
        attr = struct.pack("=QQQ", fs, net, scoped)
    elif abi >= 4:
        attr = struct.pack("=QQ", fs, net)
    else:
        attr = struct.pack("=Q", fs)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = libc.syscall(_LL_CREATE, buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        fail("create_ruleset")
    try:
        for rights, paths in ((_LL_READ, spec.get("read", ())), (fs, spec.get("write", ()))):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue  # absent here: nothing to allow
                try:
                    allowed = rights if os.path.isdir(path) else rights & _LL_FILE_RIGHTS
                    rule = ctypes.create_string_buffer(struct.pack("=Qi", allowed & fs, fd), 12)
                    if libc.syscall(_LL_ADD_RULE, ruleset, _LL_RULE_PATH_BENEATH, rule,
                                    ctypes.c_uint32(0)) != 0:
                        fail("add_rule(%s)" % path)
                finally:
                    os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            fail("PR_SET_NO_NEW_PRIVS")
        if libc.syscall(_LL_RESTRICT, ruleset, ctypes.c_uint32(0)) != 0:
            fail("restrict_self")
    finally:
        os.close(ruleset)


def apply_sandbox(spec):
    """Process-sandbox confinement, in an order that cannot be undone by user code."""
    if spec.get("unshare_network"):
        _unshare_network()
    gid = spec.get("gid")
    uid = spec.get("uid")
    if gid is not None:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
    if uid is not None:
        os.setresuid(uid, uid, uid)
    limits = spec.get("rlimits") or {}
    if limits:
        # Writes past RLIMIT_FSIZE then fail with EFBIG instead of killing the worker.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        for name, value in limits.items():
            which = getattr(resource, "RLIMIT_" + name.upper())
            resource.setrlimit(which, (value, value))
    cwd = spec.get("cwd")
    if cwd:
        os.chdir(cwd)
    if spec.get("landlock"):
        _landlock(spec["landlock"])


# ------------------------------------------------------------------------------ worker


class Worker:
    def __init__(self, channel):
        self.channel = channel
        self.fn = None
        self.arity = 3
        self.config = {}
        self.state = {}
        self.state_bytes = packb({})
        self.current = 0

    def send_output(self, port, value):
        """Send ``value`` out of ``port`` now; may be called any number of times."""
        if not isinstance(port, str):
            raise TypeError("send_output: port must be a str, got %s" % type(port).__name__)
        self.channel.write(["output", self.current, port, value])

    def log(self, *args, level="info"):
        """Send a log line to the node's log (``level``: debug, info, warning, error)."""
        self.channel.write(["log", str(level), " ".join(str(a) for a in args)])

    def init(self, frame):
        _, source, filename, entry, config, sandbox = frame
        try:
            apply_sandbox(sandbox or {})
        except Exception as exc:
            _error(self.channel, 0, "sandbox", exc, tb=False)
            os._exit(5)
        api = types.ModuleType("reflowpy_script")
        api.send_output = self.send_output
        api.log = self.log
        sys.modules["reflowpy_script"] = api
        _install_logging(self)
        namespace = {"__name__": "__reflowpy_script__", "send_output": self.send_output, "log": self.log}
        code = compile(source, filename, "exec")
        # Tracebacks show the script's lines (a compiled string has no file to read).
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(code, namespace)
        fn = namespace.get(entry)
        if not callable(fn):
            raise LookupError("the script defines no function %r (metadata 'entry')" % entry)
        self.fn = fn
        self.arity = _arity(fn)
        self.config = config if isinstance(config, dict) else {}

    def process(self, frame):
        _, mid, inputs, state = frame
        self.current = mid
        if state is not None:
            self.state = state
            self.state_bytes = packb(state)
        args = (inputs, self.config, self.state)[: self.arity]
        outputs = self.fn(*args)
        _after_call()
        if _live_children():
            raise ChildrenLeft("the script left processes running after it returned")
        if outputs is not None and not isinstance(outputs, dict):
            raise TypeError(
                "the script returned %s; return a dict {port: value} or None"
                % type(outputs).__name__
            )
        if not isinstance(self.state, dict):
            raise TypeError("state must stay a dict")
        new_state = packb(self.state)
        if new_state == self.state_bytes:
            self.channel.write(["result", mid, outputs, None])
        else:
            self.channel.write(["result", mid, outputs, self.state])
            self.state_bytes = new_state


def _arity(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 3
    n = 0
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            return 3
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return min(n, 3)


def _install_logging(worker):
    class _Handler(logging.Handler):
        def emit(self, record):
            try:
                worker.log(self.format(record), level=record.levelname.lower())
            except Exception:
                pass

    root = logging.getLogger()
    root.handlers[:] = [_Handler()]
    root.setLevel(logging.INFO)


def _error(channel, mid, kind, exc, tb=True):
    text = ""
    if tb:
        frames = traceback.extract_tb(exc.__traceback__)
        # Drop the worker's own frames: the user sees their script only.
        frames = [f for f in frames if f.filename not in ("<string>", _SELF)]
        text = "".join(traceback.format_list(frames))
    try:
        channel.write(["error", mid, kind, type(exc).__name__, str(exc)[:4000], text[-8000:]])
    except EncodeError as e:  # pragma: no cover - str() results always encode
        fatal("cannot report error: %s" % e)


_MAIN_PID = os.getpid()
_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper():
    """Orphans of the script's children reparent to us, so we can see leftovers."""
    if os.getpid() == 1:
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except Exception:
        pass


def _live_children():
    """Reap finished children; the number still running (0 when none)."""
    alive = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return alive
        if pid == 0:
            alive = 1
            return alive


def _after_call():
    if os.getpid() != _MAIN_PID:
        os._exit(0)  # a child the script forked must never speak the protocol


def main(argv):
    max_frame = int(argv[1]) if len(argv) > 1 else _MAX_FRAME
    # Private protocol descriptors; 0 -> /dev/null, 1 and 2 -> stderr (the log).
    if len(argv) > 2:
        # A Unix socket the host listens on (Docker's fast transport): the protocol
        # bypasses the engine's attach stream.
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(argv[2])
        # The host checks the peer's credentials and this per-start nonce before it
        # sends anything: a process that connected first is refused.
        nonce = os.environ.pop("REFLOWPY_CHANNEL_NONCE", "")
        if nonce:
            sock.sendall(nonce.encode("ascii"))
        rfd = os.dup(sock.fileno())
        wfd = rfd
        sock.close()
    else:
        rfd = os.dup(0)
        wfd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    os.set_inheritable(rfd, False)
    if wfd != rfd:
        os.set_inheritable(wfd, False)
    sys.stdin = open(os.devnull)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    _become_subreaper()
    channel = Channel(rfd, wfd, max_frame)
    worker = Worker(channel)
    initialized = False
    while True:
        data = channel.read_frame()
        if data is None:
            os._exit(0)
        try:
            frame = unpackb(data)
        except DecodeError as exc:
            fatal("malformed frame from the host: %s" % exc)
        if not isinstance(frame, list) or not frame or not isinstance(frame[0], str):
            fatal("a frame must be an array starting with its type, got %r" % (frame,)[:200])
        kind = frame[0]
        if kind == "process" and len(frame) == 4 and initialized:
            mid = frame[1]
            try:
                worker.process(frame)
            except MemoryError as exc:
                _after_call()
                _error(channel, mid, "memory", exc, tb=False)
                os._exit(4)
            except ChildrenLeft as exc:
                _error(channel, mid, "processes", exc, tb=False)
                os._exit(6)
            except EncodeError as exc:
                _after_call()
                _error(channel, mid, "encode", exc)
            except BaseException as exc:  # SystemExit too: the worker survives sys.exit()
                _after_call()
                if _live_children():
                    _error(channel, mid, "processes", exc)
                    os._exit(6)
                _error(channel, mid, "user", exc)
        elif kind == "ping" and len(frame) == 2:
            try:
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            except Exception:
                rss = 0
            channel.write(["heartbeat", frame[1], os.getpid(), rss])
        elif kind == "init" and len(frame) == 6 and not initialized:
            try:
                worker.init(frame)
            except MemoryError as exc:
                _error(channel, 0, "memory", exc, tb=False)
                os._exit(4)
            except BaseException as exc:
                _error(channel, 0, "init", exc)
                os._exit(5)
            initialized = True
            channel.write(["ready", os.getpid(), sys.version.split()[0]])
        else:
            fatal("unexpected frame %r (initialized=%s)" % (kind, initialized))


if __name__ == "__main__":
    main(sys.argv)
