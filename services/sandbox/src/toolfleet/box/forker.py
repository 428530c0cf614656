"""The fork server: the zygote's quiet twin, which forks the families' processes for the
supervisor.

A ``fork`` write-protects every page of the process that forks. The supervisor runs its event
loop between forks, so after each one it copied back every page it then touched: about 500
pages per kernel, a millisecond of CPU on each stateless call. The fork server is forked from
the zygote once, after the preload and before any family exists, and does nothing but fork:
its pages stay shared with the kernels, and the supervisor's are its own after one copy.

Its children are cloned with ``CLONE_PARENT``: they are the supervisor's children (its
``wait4`` and rusage, its ptrace, their parent-death signal on it), exactly as if it had forked
them itself. The supervisor sends one request per process (what it runs, the family's
confinement) with its descriptors (the family's namespaces, stdio, a kernel's channel); the
server answers the pid, closes them, and keeps nothing of any family. It runs no model code.
Where ``CLONE_PARENT`` is refused (a sandbox kernel without it), the supervisor forks itself.

Where libconfine is built (``shim.py``), the server's loop is C (``fork_loop.c``): the same
protocol, but the server never returns to Python between clones, so it no longer copies back
the pages its interpreter touched after each one; only the child returns, decodes its
request and runs ``born``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import signal
import socket
from collections.abc import Callable
from typing import Any

from toolfleet.box import children, jail, wire

CLONE_PARENT = 0x00008000
SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(platform.machine())
_nogil = ctypes.PyDLL(None, use_errno=True)  # keeps the GIL across the call, as os.fork does
_nogil.syscall.restype = ctypes.c_long


def clone_sibling() -> int:
    """``fork()`` whose child is our parent's child (``CLONE_PARENT``), with the interpreter's
    own before/after-fork steps (import lock, ``os.register_at_fork`` hooks, threads).
    Only from a single-threaded process: glibc's own fork handlers do not run."""
    if SYS_CLONE is None:
        raise OSError(f"no clone system call number for {platform.machine()}")
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = _nogil.syscall(SYS_CLONE, CLONE_PARENT | signal.SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone: {os.strerror(err)}")
    return int(pid)


class ForkRefused(Exception):
    """The fork server could not clone (the error it met, e.g. no more processes)."""


class ForkServer:
    """The supervisor's end of a fork server."""

    def __init__(self, chan: socket.socket, pid: int) -> None:
        self.chan = chan
        self.pid = pid

    @classmethod
    def start(
        cls,
        born: Callable[[dict[str, Any], list[int]], None],
        drop: tuple[int, ...],
        library: str | None = None,
    ) -> ForkServer:
        """Fork the server from this process (the template, ready); ``born(request, fds)``
        runs in each child it makes; ``drop``: descriptors the server closes (the
        supervisor's own channels); ``library``: libconfine, whose loop in C serves (else
        the loop is Python's)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                for fd in drop:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                if library is not None:
                    _serve_in_c(theirs, born, library)
                _serve(theirs, born)
            finally:
                os._exit(1)
        theirs.close()
        return cls(ours, pid)

    def ask(self, request: dict[str, Any], fds: list[int]) -> None:
        """Ask for a new child of the supervisor that runs ``born(request, fds)``; answers
        come in the order asked (``answer``)."""
        wire.send(self.chan, request, fds)

    def answer(self) -> int:
        """The pid of the child asked for first and not yet answered. Raises ``ForkRefused``
        where the clone failed, ``OSError`` where the server is gone."""
        reply, _ = wire.recv(self.chan, max_frame=4096)
        if "pid" not in reply:
            raise ForkRefused(str(reply.get("error", "the fork server did not answer a pid")))
        return int(reply["pid"])

    def close(self) -> None:
        self.chan.close()


def _serve_in_c(
    chan: socket.socket, born: Callable[[dict[str, Any], list[int]], None], library: str
) -> None:
    """libconfine's loop (``fork_loop.c``) serves; it returns only in a child, which runs
    ``born``. Returns (to the Python loop) only where the library does not load."""
    _prepare_server()
    child = fork_loop_in_c(chan, library)
    if child is None:
        return
    try:
        born(*child)
    finally:
        os._exit(126)


def fork_loop_in_c(chan: socket.socket, library: str) -> tuple[dict[str, Any], list[int]] | None:
    """Serve requests for processes on ``chan`` in libconfine's loop (``fork_loop.c``):
    it never returns in this process, which touches no page of Python's again between
    clones. In each child it makes (our parent's: ``CLONE_PARENT``): returns the child's
    request and descriptors (``chan`` closed). None (at once) where the library does not
    load."""
    loop = _loop(library, "tf_fork_loop")
    if loop is None:
        return None
    data, size, count = ctypes.c_char_p(), ctypes.c_int(), ctypes.c_int()
    fds = (ctypes.c_int * 16)()
    _held_across(loop, chan, 1, ctypes.byref(data), ctypes.byref(size), fds,
                 len(fds), ctypes.byref(count))  # fmt: skip
    return json.loads(ctypes.string_at(data, size.value)), list(fds[: count.value])


def case_loop_in_c(chan: socket.socket, library: str) -> bytes | None:
    """A judge's case server's loop in libconfine (``fork_loop.c``'s ``tf_case_loop``): it
    never returns in this process. In each case it forks, set up there in C and traced
    already: returns the rest of the case's request (``cases.py`` reads it). None (at once)
    where the library does not load."""
    loop = _loop(library, "tf_case_loop")
    if loop is None:
        return None
    data, size = ctypes.c_char_p(), ctypes.c_int()
    _held_across(loop, chan, ctypes.byref(data), ctypes.byref(size), closed=True)
    return ctypes.string_at(data, size.value)


def _loop(library: str, name: str) -> Any:
    """A loop of libconfine's, called with the GIL held (as ``os.fork`` forks); None where
    the library does not load."""
    try:
        loop = getattr(ctypes.PyDLL(library), name)
    except (OSError, AttributeError):
        return None
    loop.restype = ctypes.c_int
    return loop


def _held_across(loop: Any, chan: socket.socket, *args: Any, closed: bool = False) -> None:
    """Run a fork loop that returns only in its children; there, ``chan`` is closed (by the
    loop already where ``closed``)."""
    # Held for every clone to come, as around one fork: the server itself never runs Python
    # again, so only the children (PyOS_AfterFork_Child) ever release them.
    ctypes.pythonapi.PyOS_BeforeFork()
    loop(chan.fileno(), *args)
    ctypes.pythonapi.PyOS_AfterFork_Child()
    if closed:
        chan.detach()
    else:
        chan.close()


def _prepare_server() -> None:
    jail.prctl(jail.PR_SET_PDEATHSIG, signal.SIGKILL)  # never outlives the supervisor
    children.default_signals()  # once here, not in every child


def _serve(chan: socket.socket, born: Callable[[dict[str, Any], list[int]], None]) -> None:
    _prepare_server()
    while True:
        try:
            request, fds = wire.recv(chan)
        except (wire.ChannelClosedError, OSError):
            os._exit(0)
        reply: dict[str, Any]
        try:
            pid = clone_sibling()
        except OSError as exc:
            reply = {"error": str(exc)}
        else:
            if pid == 0:
                chan.close()
                try:
                    born(request, fds)
                finally:
                    os._exit(126)
            reply = {"pid": pid}
        answer(chan, fds, reply)


def answer(chan: socket.socket, fds: list[int], reply: dict[str, Any]) -> None:
    """A server's answer to a request for a process: the request's descriptors closed (the
    child has its own), the reply sent; the server ends when the supervisor is gone."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    try:
        wire.send(chan, reply)
    except OSError:
        os._exit(0)
