"""What a supervisor's child does between ``fork`` and running model code: leave the
supervisor's world (session, descriptors, signals, privileges), then exec a program, run a
Python program in the warm interpreter, or serve as a kernel."""

from __future__ import annotations

import atexit
import base64
import builtins
import ctypes
import dataclasses
import io
import marshal
import os
import signal
import sys
import traceback
import types
from typing import Any

from toolfleet.box import jail


@dataclasses.dataclass
class Confinement:
    """How a family's processes that run model code are confined."""

    uid: int
    limits: jail.Limits
    base_vm_bytes: int  # the template's address space (the memory limit comes on top)
    seccomp: bytes | None
    uid_limits: bool  # RLIMIT_NPROC per uid (the family's own uid)


def enter(
    confinement: Confinement,
    stdio: tuple[int, int, int],
    keep: tuple[int, ...],
    cwd: str,
    env: dict[str, str],
    memory_bytes: int = 0,
    warm: bool = True,
    traced: bool = False,
) -> None:
    """Become a confined process of the family: a process group of its own, ``stdio`` as 0/1/2,
    only ``keep`` besides, ``cwd`` and ``env``, the family's uid and limits, seccomp.
    ``memory_bytes`` overrides the per-process memory limit; ``warm``: the process keeps the
    template's libraries mapped (the limit counts on top of them), else it will exec.
    ``traced``: the supervisor traces this process (before seccomp forbids ptrace), so that
    it hears of the exit before the process's children can (see ``Supervisor._traced``)."""
    # A process group of its own, in the supervisor's session: never an orphaned group, so
    # the kernel never sends it SIGHUP and SIGCONT (which would wake a frozen kernel) when a
    # member exits while it is stopped; and, as a group leader, it cannot leave the session.
    os.setpgid(0, 0)
    jail.prctl(jail.PR_SET_PDEATHSIG, signal.SIGKILL)
    if not signals_default:
        default_signals()
    # Model code is the OOM killer's first choice, host-wide and in the instance's ceiling,
    # before any zygote (raising a score needs no privilege; lowering one may be refused)
    jail.set_oom_score(1000)
    for target, fd in enumerate(stdio):
        if fd != target:
            os.dup2(fd, target)
    jail.close_all_but(keep)
    os.chdir(cwd)
    set_environ(env)
    limits = confinement.limits
    if memory_bytes:
        limits = dataclasses.replace(limits, memory_bytes=memory_bytes)
    base = confinement.base_vm_bytes if warm else 0
    if traced:
        # An orphan of its tree comes back to it, not to the supervisor: below it, where the
        # sweep at its exit finds (and charges it with) whatever it left (``Supervisor._sweep``)
        jail.subreaper()
        jail.prctl(jail.PR_SET_DUMPABLE, 1)  # the supervisor is not: gVisor checks the tracee
        jail.ptrace(jail.PTRACE_TRACEME, 0)
        os.kill(os.getpid(), signal.SIGSTOP)  # the supervisor sets its options here
    jail.drop_privileges(confinement.uid, limits, base, confinement.uid_limits)
    jail.prctl(jail.PR_SET_PDEATHSIG, signal.SIGKILL)  # the uid change cleared it
    # The family's own process (not the supervisor's non-dumpable state it was forked with):
    # /proc shows it as the family's, which is how stragglers are found by uid.
    jail.prctl(jail.PR_SET_DUMPABLE, 1)
    if confinement.seccomp is not None:
        jail.load_seccomp(confinement.seccomp)


signals_default = False  # set in a process whose signals are the defaults already


def default_signals() -> None:
    """The signals the supervisor handles or ignores (Python ignores SIGPIPE) back to their
    defaults, as a program starts with them, in this process and the ones it forks (the fork
    server does it once for all its children)."""
    global signals_default
    for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    signals_default = True


def set_environ(env: dict[str, str]) -> None:
    """``os.environ`` (and the C environment) becomes ``env``: only what differs changes
    (a fork's first touch of each page of the interpreter's costs a page copy)."""
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def load_confine(library: str) -> Any:
    """libconfine's ``tf_confine(words, len)``, loaded (OSError, AttributeError where it
    does not load). Loaded once in the process that forks (a child's dlopen copies pages)."""
    confine = ctypes.CDLL(library, use_errno=True).tf_confine
    confine.argtypes = [ctypes.c_char_p, ctypes.c_int]
    confine.restype = ctypes.c_int
    return confine


def confine_in_c(confine: Any, birth: dict[str, Any], fds: list[int], ns: list[str]) -> None:
    """A new process of a family confines itself with libconfine's ``tf_confine``: the words
    the supervisor made (``birth["confine"]``), its stdio, its family's namespaces (``ns``:
    ``jail.ns_words``), the channel of one that serves; then its environment. (A forked
    child's Python touching its pages costs more than the fork: one call does it all.)"""
    if not signals_default:
        default_signals()
    words = [birth["confine"], f"stdio={fds[0]}:{fds[1]}:{fds[2]}", *ns]
    if len(fds) > 3 and birth.get("keep"):
        words.append(f"keep={fds[3]}")
    packed = "\0".join(words).encode() + b"\0"
    confine(packed, len(packed))
    set_environ(birth["env"])


def exec_program(argv: list[str], env: dict[str, str]) -> None:
    """Replace this process with ``argv`` (looked up on PATH); 127 if it cannot run."""
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        os.write(2, f"{argv[0]}: {exc.strerror}\n".encode(errors="replace"))
    os._exit(127)


def run_python_main(path: str, source: str, args: list[str], compiled: str | None = None) -> None:
    """Run ``source`` as the program ``python path args...`` would, in this already-warm
    interpreter: ``__name__ == "__main__"``, ``sys.argv``, stdin, the exit status of
    ``SystemExit``, an uncaught exception's traceback on stderr and status 1, atexit
    handlers, non-daemon threads waited for. ``compiled``: the same source compiled already
    (marshalled, base64; ``Supervisor._compiled``), which costs less to load than compiling
    it here. Never returns."""
    main = prepare_main(path)
    sys.argv[1:] = args
    run_main(main, path, source, compiled)


def prepare_main(path: str) -> types.ModuleType:
    """What ``python path`` sets up before the program's first line: ``sys.argv``,
    ``sys.path[0]`` (the script's directory), a fresh ``__main__``, text stdio on 0/1/2, the
    SIGINT handler. A case server (``cases.py``) does it once for all the cases it forks."""
    sys.argv = [path]
    sys.path[0:0] = [os.path.dirname(os.path.abspath(path))]
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules["__main__"] = main
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8")
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace"
    )
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return main


def run_main(
    main: types.ModuleType,
    path: str,
    source: str,
    compiled: str | None = None,
    code: types.CodeType | None = None,
) -> None:
    """Run the program in ``main`` (``prepare_main``): ``code`` if loaded already, else
    ``compiled`` loaded, else ``source`` compiled; then exit as ``python`` does."""
    status = 0
    try:
        if code is None and compiled:
            code = marshal.loads(base64.b64decode(compiled))
        elif code is None:  # not this module's `from __future__ import annotations`
            code = compile(source, path, "exec", dont_inherit=True)
        exec(code, main.__dict__)
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException as exc:
        tb = exc.__traceback__
        if tb is not None and tb.tb_frame.f_code is run_main.__code__:
            tb = tb.tb_next  # this function's own frame: `python main.py` shows none
        exc.__traceback__ = tb  # the default hook prints the exception's own traceback
        try:
            sys.excepthook(type(exc), exc, tb)
        except BaseException:
            traceback.print_exception(type(exc), exc, tb)
        status = 1
    status = _finish(status)
    os._exit(status)


def _exit_status(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def _finish(status: int) -> int:
    """What the interpreter does at exit: wait for threads, run atexit, flush."""
    try:
        threading = sys.modules.get("threading")
        if threading is not None:
            threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException:
        traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            status = status or 120  # as Python does when flushing stdout fails at exit
    return status
