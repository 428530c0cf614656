"""The zygote: a template interpreter that forks family supervisors, inside the sandbox.

Started by a backend on the sandbox's own Python runtime — by ``launch.py`` in the local
backend's jail, as a container's PID 1 in the docker backend. The service's first message
(``init``) says what to preload and the kernels' seccomp program; the zygote imports the
heavy libraries once, freezes them out of the garbage collector's reach, and from then on
serves its control channel: ``family`` forks a supervisor for a new family (with namespaces
of its own where the zygote may make them, and a cgroup where it has them), ``end_family``
ends one and answers only once none of its processes is left (so its uid may be given out
again). As PID 1 it also reaps orphans and kills processes whose supervisor died. When the
service goes away it exits, which ends every process of the namespace.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import importlib
import os
import select
import shutil
import signal
import socket
import sys
import time
import traceback
from typing import Any

from toolfleet.box import children, jail, kernel, processes, wire
from toolfleet.box.cgroups import FamilyCgroups
from toolfleet.box.supervisor import Supervisor

SWEEP_INTERVAL_S = 1.0
END_TIMEOUT_S = 10.0


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


class Zygote:
    """Serves one control channel until it closes."""

    def __init__(
        self,
        control: socket.socket,
        box_root: str,
        jailed: bool,
        isolate: bool,
        cgroups: FamilyCgroups | None,
        private_tmp: bool,
    ) -> None:
        self.control = control
        self.box_root = box_root
        self.jailed = jailed
        self.isolate = isolate
        self.cgroups = cgroups
        self.private_tmp = private_tmp or isolate
        self.pid_one = os.getpid() == 1
        self.seccomp: bytes | None = None
        self.uid_limits = True
        self.base_vm = 0
        self.supervisors: dict[int, int] = {}  # family id -> supervisor pid
        self.uids: dict[int, int] = {}  # family id -> uid
        self.last_sweep = time.monotonic()

    def init(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Preload, prepare the template, and say what is in force."""
        seccomp = msg.get("seccomp")
        self.seccomp = base64.b64decode(seccomp) if seccomp else None
        self.uid_limits = bool(msg.get("uid_limits", True))
        loaded = preload([str(m) for m in msg.get("preload") or []])
        gc.collect()
        gc.freeze()  # keep the template's objects out of the children's collections
        if msg.get("huge_pages"):
            jail.collapse_huge_pages()
        self.base_vm = jail.vm_size()
        return {
            "op": "ready",
            "pid": os.getpid(),
            "python": sys.version.split()[0],
            "loaded": loaded,
            "jailed": self.jailed,
            "isolated_families": self.isolate,
            "cgroups": self.cgroups.version if self.cgroups else None,
            "seccomp": self.seccomp is not None,
            "pid_namespace": self.pid_one,
        }

    def serve(self) -> None:
        msg, _ = wire.recv(self.control)
        if msg.get("op") != "init":
            raise SystemExit(f"zygote: expected init, got {msg.get('op')!r}")
        wire.send(self.control, self.init(msg))
        while True:
            ready, _, _ = select.select([self.control], [], [], SWEEP_INTERVAL_S)
            self._reap()
            if self.pid_one and time.monotonic() - self.last_sweep >= SWEEP_INTERVAL_S:
                self._sweep()
            if not ready:
                continue
            try:
                msg, fds = wire.recv(self.control)
            except (wire.ChannelClosedError, OSError):
                return  # the service is gone: exiting ends every process of the namespace
            try:
                reply = self.handle(msg, fds)
            except Exception as exc:
                for fd in fds:
                    _close(fd)
                reply = {"ok": False, "error": repr(exc)}
            wire.send(self.control, reply)

    def handle(self, msg: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        op = msg["op"]
        if op == "family":
            return self.family(int(msg["fid"]), int(msg["uid"]), msg["limits"], fds[0])
        if op == "end_family":
            return self.end_family(int(msg["fid"]))
        if op == "ping":
            return {"ok": True, "families": len(self.supervisors)}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def family(self, fid: int, uid: int, limits: dict[str, Any], fd: int) -> dict[str, Any]:
        if fid in self.supervisors:
            _close(fd)
            return {"ok": False, "error": f"family {fid} exists"}
        confinement = children.Confinement(
            uid, jail.Limits(**limits), self.base_vm, self.seccomp, self.uid_limits
        )
        if self.cgroups is not None:
            memory = confinement.limits.family_memory_bytes
            self.cgroups.create(fid, memory, confinement.limits.processes + 8)
        pid = os.fork()
        if pid == 0:
            try:
                self._become_supervisor(fid, confinement, fd)
            except BaseException:
                print(f"zygote: family {fid} failed:", file=sys.stderr)
                traceback.print_exc()
                sys.stderr.flush()
            finally:
                os._exit(1)
        _close(fd)
        self.supervisors[fid] = pid
        self.uids[fid] = uid
        return {"ok": True, "pid": pid}

    def _become_supervisor(self, fid: int, confinement: children.Confinement, fd: int) -> None:
        self.control.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()  # the family's session: its processes' groups live in it (children.py)
        jail.prctl(jail.PR_SET_PDEATHSIG, signal.SIGKILL)
        if self.cgroups is not None:
            self.cgroups.join(fid, os.getpid())
        uid = confinement.uid
        if self.isolate:
            root = jail.isolate_family(uid, confinement.limits)
        else:
            root = jail.family_directory(self.box_root, fid, uid)
        try:
            jail.prctl(jail.PR_SET_CHILD_SUBREAPER, 1)
            subreaper = True
        except OSError:  # gVisor: orphans go to the zygote; the supervisor finds them by uid
            subreaper = False
        jail.prctl(jail.PR_SET_DUMPABLE, 0)  # not even its own uid may read its memory
        jail.set_oom_score(-1000)
        chan = socket.socket(fileno=fd)
        chan.setblocking(True)
        Supervisor(
            chan, fid, root, confinement, kernel_env(), self.cgroups, self.private_tmp, subreaper
        ).serve()

    def end_family(self, fid: int) -> dict[str, Any]:
        """Kill the family's supervisor and every process of the family; answer when none
        is left."""
        pid = self.supervisors.pop(fid, None)
        uid = self.uids.pop(fid, None)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + END_TIMEOUT_S
        if self.cgroups is not None:
            self.cgroups.remove(fid, within_s=END_TIMEOUT_S)
        elif uid is not None and self.pid_one:
            while self._kill_uid(uid) and time.monotonic() < deadline:
                time.sleep(0.005)
                self._reap()
        if pid is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        if not self.isolate:
            shutil.rmtree(f"{self.box_root}/f{fid}", ignore_errors=True)
        return {"ok": True}

    def _kill_uid(self, uid: int) -> int:
        """SIGKILL every process of ``uid`` in this namespace; how many there were."""
        found = 0
        for pid in processes.owned_by(uid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                found += 1
        return found

    def _reap(self) -> None:
        for pid in processes.reap():
            for fid, sup in list(self.supervisors.items()):
                if sup == pid:  # a supervisor died: its family is over
                    del self.supervisors[fid]

    def _sweep(self) -> None:
        """Kill processes reparented to PID 1 that belong to no live family (their
        supervisor died). A live family's own processes are its supervisor's to judge: where
        it cannot be their subreaper (gVisor) its forked kernels land here too."""
        self.last_sweep = time.monotonic()
        supervisors = set(self.supervisors.values())
        live = set(self.uids.values())
        for pid in processes.children(os.getpid()):
            if pid in supervisors:
                continue
            owner = processes.uid_of(pid)
            if owner is not None and owner not in live:
                processes.kill_tree(pid)


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


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
    parser.add_argument("--isolate", action="store_true", help="namespaces per family")
    parser.add_argument(
        "--private-tmp", action="store_true", help="/tmp and /mnt are the family's own"
    )
    parser.add_argument("--cgroups", help="v1:memory=FD,pids=FD,cpu=FD or v2:=FD")
    args = parser.parse_args(argv)

    os.environ.clear()
    os.environ.update(kernel_env())
    try:
        control = socket.socket(fileno=args.fd) if args.fd is not None else _listen(args.listen)
    except TimeoutError:
        return 1
    os.makedirs(args.box_root, mode=0o711, exist_ok=True)
    # matplotlib and fontconfig build their caches at import: give them a private directory
    cache = os.path.join(args.box_root, ".zygote-cache")
    os.makedirs(cache, mode=0o700, exist_ok=True)
    os.environ["MPLCONFIGDIR"] = os.environ["XDG_CACHE_HOME"] = cache
    cgroups = FamilyCgroups.from_arg(args.cgroups) if args.cgroups else None
    Zygote(control, args.box_root, args.jailed, args.isolate, cgroups, args.private_tmp).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
