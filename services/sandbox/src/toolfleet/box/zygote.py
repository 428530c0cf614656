"""The zygote: a template interpreter that forks a sandbox's processes, and supervises them.

Started by a backend on the sandbox's own Python runtime — by ``launch.py`` in the local
backend's jail, as a container's PID 1 in the docker backend. The service's first message
(``init``) says what to preload and the seccomp program of the processes that run model
code; the zygote imports the heavy libraries once, freezes them out of the garbage
collector's reach, backs them with huge pages, answers ``ready``, and from then on is the
:class:`~toolfleet.box.supervisor.Supervisor` of every family the service opens on it: it
forks their kernels and programs from this template (a fork shares the preloaded pages
copy-on-write), and produces everything the trainer trusts about them. As PID 1 (or a child
subreaper) it collects every orphan; when the service goes away it exits, which ends every
process of the namespace.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import importlib
import os
import socket
import sys
from typing import Any

from toolfleet.box import jail, kernel, wire
from toolfleet.box.cgroups import FamilyCgroups
from toolfleet.box.supervisor import Supervisor


def kernel_env() -> dict[str, str]:
    """The environment every process of a family starts from (``python`` is the runtime's)."""
    runtime_bin = os.path.dirname(sys.executable)
    return {
        "PATH": f"{runtime_bin}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def preload(modules: list[str]) -> list[str]:
    """Import what the model's code will want, once; the names that imported."""
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:
            print(f"zygote: cannot preload {name}: {exc!r}", file=sys.stderr, flush=True)
    pil = sys.modules.get("PIL.Image")
    if pil is not None:  # Image.show() displays in the call's output
        pil.Image.show = kernel.show_image
    return loaded


def start(control: socket.socket, args: argparse.Namespace) -> Supervisor:
    """Answer the service's ``init`` (preload, template, what is in force); the supervisor."""
    msg, _ = wire.recv(control)
    if msg.get("op") != "init":
        raise SystemExit(f"zygote: expected init, got {msg.get('op')!r}")
    seccomp = base64.b64decode(msg["seccomp"]) if msg.get("seccomp") else None
    loaded = preload([str(m) for m in msg.get("preload") or []])
    namespaces = jail.Namespaces(args.jail_root) if args.isolate and args.jail_root else None
    cgroups = FamilyCgroups.from_arg(args.cgroups) if args.cgroups else None
    pid_one = os.getpid() == 1
    if not pid_one:
        jail.prctl(jail.PR_SET_CHILD_SUBREAPER, 1)  # orphans come back to us
    gc.collect()
    gc.freeze()  # keep the template's objects out of the children's collections
    if msg.get("huge_pages"):
        jail.collapse_huge_pages()
    supervisor = Supervisor(
        control,
        args.box_root,
        namespaces,
        cgroups,
        private_tmp=args.private_tmp or namespaces is not None,
        base_vm_bytes=jail.vm_size(),
        seccomp=seccomp,
        uid_limits=bool(msg.get("uid_limits", True)),
        env=kernel_env(),
        preloaded=tuple(loaded),
    )
    ready: dict[str, Any] = {
        "op": "ready",
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "loaded": loaded,
        "jailed": args.jailed,
        "isolated_families": namespaces is not None,
        "cgroups": cgroups.version if cgroups else None,
        "seccomp": seccomp is not None,
        "pid_namespace": pid_one,
        # how children are confined and forked (libconfine, fork_loop.c; else Python's steps)
        "confine": "libconfine" if supervisor.confine is not None else "python",
        "fork_server": supervisor.fork_loop if supervisor.forker is not None else None,
        # judges' case servers of programs that import no preload: from a fresh interpreter
        "case_forker": supervisor.case_forker is not None,
    }
    wire.send(control, ready)
    return supervisor


def _listen(path: str) -> socket.socket:
    """Accept the one control connection on a Unix socket at ``path`` (docker backend)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)
    umask = os.umask(0o177)  # the socket is created 0600 (gVisor refuses chmod on it)
    try:
        server.bind(path)
    finally:
        os.umask(umask)
    server.listen(1)
    server.settimeout(60)  # a service that never connects leaves no zygote behind
    try:
        control, _ = server.accept()
    finally:
        server.close()
    control.setblocking(True)
    return control


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toolfleet-zygote")
    parser.add_argument("--fd", type=int, help="inherited control socket")
    parser.add_argument("--listen", help="Unix socket path to accept one control connection on")
    parser.add_argument("--box-root", default=jail.BOX_ROOT, help="where families live")
    parser.add_argument("--jailed", action="store_true", help="launch.py built the jail")
    parser.add_argument("--jail-root", help="the jail's root in our mount namespace")
    parser.add_argument("--isolate", action="store_true", help="namespaces per family")
    parser.add_argument(
        "--private-tmp", action="store_true", help="/tmp and /mnt are the family's own"
    )
    parser.add_argument("--cgroups", help="v1:memory=FD,pids=FD,cpu=FD or v2:=FD")
    args = parser.parse_args(argv)

    os.environ.clear()
    os.environ.update(kernel_env())
    with contextlib.suppress(OSError, AttributeError):
        # everything of the sandbox (this supervisor, its fork server, kernels, programs) is
        # batch work to the scheduler: woken, it does not preempt the gateway (a reply it
        # sends, a request of another session), which then goes on serving meanwhile
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    try:
        control = socket.socket(fileno=args.fd) if args.fd is not None else _listen(args.listen)
    except TimeoutError:
        return 1
    os.makedirs(args.box_root, mode=0o711, exist_ok=True)
    # matplotlib and fontconfig build their caches at import: give them a private directory
    cache = os.path.join(args.box_root, ".zygote-cache")
    os.makedirs(cache, mode=0o700, exist_ok=True)
    os.environ["MPLCONFIGDIR"] = os.environ["XDG_CACHE_HOME"] = cache
    with contextlib.suppress(wire.ChannelClosedError):
        start(control, args).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
