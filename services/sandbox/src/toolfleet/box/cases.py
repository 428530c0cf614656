"""A judge's case server: a Python program loaded once in a process of its family, which
forks one process per test case.

A case forked from the template (``forker.py``) comes back into Python, decodes its request,
confines itself, and sets up ``__main__`` before the program's first line: ~500 of the ~530
pages it copies from the template come from there. The case server has done all of that once:
it is confined in the family (its uid, limits, namespaces, cgroup, seccomp) and holds the
program's code. Its child only takes its stdio, working directory and environment and runs
the program.

What the trainer trusts still comes from outside the processes that run model code: the
supervisor checks the pid the server names (a child of the server, of the family's uid, no
process it knows: ``processes.child_handle``), traces it (``PTRACE_SEIZE``: its exit event and
status, as for any program) before it runs a line of the program (it waits on the ``go`` pipe
until then), and reads its output from its own pipes. A case is the server's child, not the
supervisor's, so no sweep for the family's strays takes it for one before its pid is known;
the server ignores SIGCHLD, so a case is reaped once the supervisor, its tracer, has heard of
its exit. The server runs no model code and is not dumpable: its cases, which run as the
same uid, cannot read or write its memory (and seccomp refuses them ptrace). A case can kill
it; the supervisor then runs the remaining cases as it runs any program.
"""

from __future__ import annotations

import base64
import contextlib
import marshal
import os
import signal
import socket
import sys
from types import CodeType, ModuleType
from typing import Any

from toolfleet.box import children, forker, jail, wire


def serve(chan: socket.socket, script: str, compiled: str, library: str | None = None) -> None:
    """Load the program, then fork a case for each request (descriptors: stdin, stdout,
    stderr, the go pipe); answer each with its pid. Never returns. With ``library``
    (libconfine), the loop is ``fork_loop.c``'s: the server touches none of its pages
    between cases, so it copies none back after each fork (in Python it copied ~100,
    ~0.3 ms of CPU a case) and its cases copy fewer."""
    code = marshal.loads(base64.b64decode(compiled))
    main = children.prepare_main(script)  # once: each case is a fresh copy of it
    jail.prctl(jail.PR_SET_DUMPABLE, 0)  # its cases (the same uid) cannot reach its memory
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # its cases are reaped without it
    if library is not None:
        child = forker.fork_loop_in_c(chan, library, sibling=False)
        if child is not None:
            request, fds = child
            if len(fds) != 4:
                os._exit(126)  # never so: the supervisor sends each case four
            _case(request, fds, script, code, main)
    while True:
        try:
            request, fds = wire.recv(chan)
        except (wire.ChannelClosedError, OSError, ValueError):
            os._exit(0)
        reply: dict[str, Any]
        if len(fds) != 4:
            reply = {"error": f"a case needs 4 descriptors, got {len(fds)}"}
        else:
            try:
                pid = os.fork()
            except OSError as exc:
                reply = {"error": str(exc)}
            else:
                if pid == 0:
                    chan.close()
                    _case(request, fds, script, code, main)
                reply = {"pid": pid}
        forker.answer(chan, fds, reply)


def _case(
    request: dict[str, Any], fds: list[int], script: str, code: CodeType, main: ModuleType
) -> None:
    """In a case's process: its stdio, nothing else open but the go pipe, its directory and
    environment; wait until the supervisor traces it; run the program. Never returns."""
    status = 126
    try:
        stdin, out, err, go = fds
        for target, fd in enumerate((stdin, out, err)):
            os.dup2(fd, target)
        jail.close_all_but((go,))
        os.setpgid(0, 0)  # a group of its own, as every program (``children.enter``)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the program waits for its children
        jail.prctl(jail.PR_SET_DUMPABLE, 1)  # /proc shows it as the family's
        jail.subreaper()  # its orphans stay below it (``children.enter``)
        cwd = str(request["cwd"])
        os.chdir(cwd)
        sys.path[0] = cwd  # the script's directory, as ``prepare_main`` set it for the server
        sys.argv[1:] = [str(a) for a in request.get("args") or []]
        children.set_environ({str(k): str(v) for k, v in dict(request["env"]).items()})
        if os.read(go, 1) != b"g":
            os._exit(status)  # not traced: it never runs
        os.close(go)
        children.run_main(main, script, "", code=code)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(2, f"the sandbox could not start the process: {exc!r}\n".encode())
    finally:
        os._exit(status)
