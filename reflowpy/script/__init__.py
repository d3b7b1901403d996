"""Sandboxed script actors: user code behind one framed protocol.

``script/python`` runs a Python function in a Docker container or a confined local
subprocess (:mod:`~reflowpy.script.docker`, :mod:`~reflowpy.script.process`) via the
stdlib-only :mod:`~reflowpy.script.worker`; ``script/wasm`` runs a WebAssembly module
in wasmtime (:mod:`~reflowpy.script.wasm`). All of them implement
:class:`~reflowpy.script.host.ScriptHost`; :mod:`~reflowpy.script.actor` turns a host
into a graph node.

The kernel mechanisms they share live beside them: :mod:`~reflowpy.script.bounds`
(bounded decoding of anything a sandbox sends), :mod:`~reflowpy.script.seccomp`
(the syscall deny list, as BPF and as a Docker profile), :mod:`~reflowpy.script.uids`
(a leased uid per worker or container) and :mod:`~reflowpy.script.cgroups` (memory,
pids and CPU over a worker's whole process tree).
"""
