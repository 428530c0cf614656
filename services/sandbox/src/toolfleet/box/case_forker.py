"""The case forker: a fresh interpreter, started once beside the fork server, that forks the
case servers of judges whose program imports none of the template's preloads.

A case is a fork of its case server (``cases.py``), and a fork's cost grows with what the
forking process has mapped: the kernel copies its page tables, and tears them down again when
the case exits. A case server forked from the template holds the template's whole heap (the
supervisor's own modules, the preloaded libraries: ~35 MiB resident in the light template),
which its program mostly never touches. This interpreter holds only the modules a case
server needs (~15 MiB): on 2 CPUs a case forked from it cost ~0.3 ms of CPU less (fork, exit,
page copies) than one forked from the template.

It is the supervisor's child, started (``start``) by a fork of the supervisor that execs the
sandbox's own Python runtime at once, before any family exists, and runs no model code. It
serves as the fork server does (``forker.py``): its loop is libconfine's (``fork_loop.c``),
each child cloned with ``CLONE_PARENT`` (the supervisor's child, traced, reaped and swept as
any), and each child confines itself in the family with the words the supervisor made
(``children.confine_in_c``). Then it imports what its program imports (the runtime's modules
only: its working directory is not on the path then) and serves its cases (``cases.serve``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from typing import Any

from toolfleet.box import cases, children, forker, jail, wire

BOOT = (
    "import sys; sys.path.insert(0, {lib!r}); from toolfleet.box.case_forker import main; "
    "main({fd}, {library!r})"
)
LIB = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start(library: str, held: list[int], timeout_s: float) -> tuple[forker.ForkServer, int] | None:
    """Start the case forker (from the supervisor: a fork that execs the runtime), which
    keeps ``held`` (the descriptors the supervisor's words name: the seccomp program, the
    cgroups); the end of it the supervisor asks, and its virtual memory size once ready
    (what a case server's memory limit adds, as the template's ``base_vm`` does). None,
    having said why on stderr, where it does not start or its children are not ours."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        try:
            fd = theirs.fileno()
            kept = (fd, *(h for h in held if h >= 0))
            for k in kept:
                os.set_inheritable(k, True)
            jail.close_all_but(kept)
            python = sys.executable
            boot = BOOT.format(lib=LIB, fd=fd, library=library)
            os.execve(python, [python, "-I", "-c", boot], dict(os.environ))
        finally:
            os._exit(127)
    theirs.close()
    server = forker.ForkServer(ours, pid)
    try:
        ours.settimeout(timeout_s)
        ready, _ = wire.recv(ours, max_frame=4096)
        server.ask({"run": "probe"}, [])
        os.waitpid(server.answer(), 0)  # ChildProcessError: not our child
        ours.settimeout(None)
        return server, int(ready["vm"])
    except (OSError, ValueError, KeyError, forker.ForkRefused) as exc:
        print(f"supervisor: no case forker ({exc!r}): case servers are forked from the template",
              file=sys.stderr, flush=True)  # fmt: skip
        server.close()
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        return None


def main(fd: int, library: str) -> None:
    """The case forker's own process (``BOOT``). Never returns."""
    try:
        jail.prctl(jail.PR_SET_PDEATHSIG, signal.SIGKILL)  # never outlives the supervisor
        children.default_signals()  # once here, not in every child
        confine = children.load_confine(library)
        chan = socket.socket(fileno=fd)
        wire.send(chan, {"vm": jail.vm_size()})
        child = forker.fork_loop_in_c(chan, library)
        if child is not None:
            _born(*child, confine=confine, library=library)
    finally:
        os._exit(126)


def _born(birth: dict[str, Any], fds: list[int], confine: Any, library: str) -> None:
    """A case server, still root: confined in its family, then serving. Never returns."""
    if birth["run"] == "probe":
        os._exit(0)
    try:
        ns_fds = fds[-len(jail.Namespaces.KINDS) :] if birth["namespaces"] else []
        ns = jail.ns_words(ns_fds, birth.get("jail_root"))
        children.confine_in_c(confine, {**birth, "keep": True}, fds, ns)
        cases.serve(socket.socket(fileno=fds[3]), birth["script"], birth["compiled"], library,
                    preimport=True)  # fmt: skip
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(2, f"the sandbox could not start the process: {exc!r}\n".encode())
    finally:
        os._exit(126)
