"""A judge's case server: a Python program loaded once in a process of its family, which
forks one process per test case.

A case forked from the template (``forker.py``) comes back into Python, decodes its request,
confines itself, and sets up ``__main__`` before the program's first line: ~500 of the ~530
pages it copies from the template come from there. The case server has done all of that once:
it is confined in the family (its uid, limits, namespaces, cgroup, seccomp) and holds the
program's code. Its loop is C (``fork_loop.c``'s ``tf_case_loop``), and so is each case's
set-up: its stdio, nothing else open, its working directory, the wait until it is traced.
Its Python only takes its arguments and environment and runs the program: ~245 pages copied
a case, where the set-up in Python copied ~390.

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
import dis
import importlib
import marshal
import os
import socket
import sys
from types import CodeType, ModuleType

from toolfleet.box import children, forker, jail


def serve(
    chan: socket.socket, script: str, compiled: str, library: str, preimport: bool = False
) -> None:
    """Load the program, then fork a case for each request in libconfine's loop
    (``fork_loop.c``'s ``tf_case_loop``): the server touches none of its pages between cases,
    and each case is set up in C (its stdio, directory, the wait until it is traced) before
    its Python runs. ``preimport`` (a server of the case forker's): first import what the
    program imports, from the runtime only. Never returns."""
    code = marshal.loads(base64.b64decode(compiled))
    if preimport:
        _import(imported(code))
    main = children.prepare_main(script)  # once: each case is a fresh copy of it
    jail.prctl(jail.PR_SET_DUMPABLE, 0)  # its cases (the same uid) cannot reach its memory
    body = forker.case_loop_in_c(chan, library)
    if body is None:
        os._exit(126)  # the supervisor runs its cases as it runs any program
    _case(body, script, code, main)


def imported(code: CodeType) -> list[str]:
    """The modules a program's code imports by name (``import a.b``, ``from a import b``),
    in any of its functions and classes: the dotted names, in order, once each."""
    names: dict[str, None] = {}
    stack = [code]
    while stack:
        current = stack.pop()
        for ins in dis.get_instructions(current):
            if ins.opname == "IMPORT_NAME" and isinstance(ins.argval, str) and ins.argval:
                names[ins.argval] = None
        stack.extend(c for c in current.co_consts if isinstance(c, CodeType))
    return list(names)


def _import(names: list[str]) -> None:
    """Import ``names`` from the runtime, once for all the cases (what fails is left for the
    program to meet); none from the working directory, which is not on the path yet. A
    module that started a thread ends the server: a fork keeps only the forking thread, and
    a case could hang on a lock another one held (the supervisor then runs its cases as it
    runs any program)."""
    for name in names:
        with contextlib.suppress(BaseException):
            importlib.import_module(name)
    if len(os.listdir("/proc/self/task")) > 1:
        os._exit(126)


def request(cwd: str, args: list[str], env: dict[str, str], server_env: dict[str, str]) -> bytes:
    """A case's request body (``tf_case_loop`` reads the directory, ``_case`` the rest): its
    working directory, then each argument (``a``), each variable that differs from the
    server's environment (``e``) and each one it lacks (``u``), NUL-separated. ValueError
    where one holds a NUL (no process could be given it)."""
    items = [cwd, *("a" + a for a in args)]
    items += [f"e{k}={v}" for k, v in env.items() if server_env.get(k) != v]
    items += ["u" + k for k in server_env if k not in env]
    if any("\0" in item for item in items):
        raise ValueError("a case's directory, arguments and environment hold no NUL")
    return "".join(item + "\0" for item in items).encode("utf-8", "surrogatepass")


def _case(body: bytes, script: str, code: CodeType, main: ModuleType) -> None:
    """In a case's process, set up and traced (``tf_case_loop``): its arguments and
    environment (``request``); run the program. Never returns."""
    status = 126
    try:
        args = []
        for item in body.decode("utf-8", "surrogatepass").split("\0")[:-1]:
            kind, value = item[:1], item[1:]
            if kind == "a":
                args.append(value)
            elif kind == "e":
                key, _, value = value.partition("=")
                os.environ[key] = value
            elif kind == "u":
                del os.environ[value]
        sys.path[0] = os.getcwd()  # the script's directory, as ``prepare_main`` set it
        sys.argv[1:] = args
        children.run_main(main, script, "", code=code)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(2, f"the sandbox could not start the process: {exc!r}\n".encode())
    finally:
        os._exit(status)
