"""The zygote: a template interpreter that forks kernels, inside the sandbox.

Started by a backend (``python -m toolfleet.sandbox.zygote``), usually as PID 1 of fresh
namespaces made by ``unshare``. It builds the jail, imports the heavy libraries once, then
serves its control channel: ``spawn`` forks a kernel into a family (uid) with its limits and
hands it the channel descriptor that came with the request; ``signal`` and ``kill`` reach a
kernel; ``remove_family`` ends a family and deletes its files. As PID 1 it also reaps
orphans and kills processes that escaped their kernel (daemons), and when the service goes
away it exits, which ends every process of the namespace.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from toolfleet.sandbox import jail, processes, wire
from toolfleet.sandbox.kernel import Kernel

SWEEP_INTERVAL_S = 1.0
KERNEL_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
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
        self, control: socket.socket, jailed: bool, seccomp: bytes | None, box_root: str
    ) -> None:
        self.control = control
        self.box_root = box_root
        self.jailed = jailed
        self.seccomp = seccomp
        self.pid_one = os.getpid() == 1
        self.kernels: dict[int, int] = {}  # pid -> family uid
        self.families: dict[int, int] = {}  # family id -> uid
        self.base_vm = _vm_size()
        self.removed: set[int] = set()  # uids of ended families, swept of stragglers
        self.last_sweep = time.monotonic()

    def serve(self) -> None:
        wire.send(
            self.control,
            {
                "op": "ready",
                "pid": os.getpid(),
                "jailed": self.jailed,
                "seccomp": self.seccomp is not None,
                "pid_namespace": self.pid_one,
                "base_vm_bytes": self.base_vm,
            },
        )
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
                return  # the service is gone: exiting ends every kernel of the namespace
            try:
                reply = self.handle(msg, fds)
            except Exception as exc:
                for fd in fds:
                    _close(fd)
                reply = {"ok": False, "error": repr(exc)}
            wire.send(self.control, reply)

    def handle(self, msg: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        op = msg["op"]
        if op == "spawn":
            uid = int(msg["uid"])
            fid = int(msg.get("family", uid))
            return self.spawn(uid, fid, jail.Limits(**msg["limits"]), fds[0])
        if op == "signal":
            return {"ok": self._signal(int(msg["pid"]), int(msg["uid"]), int(msg["sig"]))}
        if op == "register":
            self.kernels[int(msg["pid"])] = int(msg["uid"])
            return {"ok": True}
        if op == "kill":
            pid, uid = int(msg["pid"]), int(msg["uid"])
            for child in processes.descendants(pid, spare=self.kernels):  # not its forks
                self._signal(child, uid, signal.SIGKILL)
            ok = self._signal(pid, uid, signal.SIGKILL)
            self.kernels.pop(pid, None)
            return {"ok": ok}
        if op == "remove_family":
            uid = int(msg["uid"])
            fid = int(msg.get("family", uid))
            if self.families.pop(fid, None) is not None:
                jail.remove_family(fid, own_mounts=self.jailed, box_root=self.box_root)
            if uid not in self.families.values():
                for pid in [p for p, u in self.kernels.items() if u == uid]:
                    self.kernels.pop(pid)
                if self.jailed:
                    self.removed.add(uid)
            return {"ok": True}
        if op == "ping":
            return {"ok": True, "kernels": len(self.kernels), "families": len(self.families)}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def spawn(self, uid: int, fid: int, limits: jail.Limits, fd: int) -> dict[str, Any]:
        if fid not in self.families:
            jail.make_family(fid, uid, limits, own_mounts=self.jailed, box_root=self.box_root)
            self.families[fid] = uid
        workspace = jail.new_workspace(jail.family_dir(fid, self.box_root), owner=uid)
        pid = os.fork()
        if pid == 0:  # the kernel
            try:
                self._become_kernel(uid, limits, fd, workspace)
            finally:
                os._exit(1)
        _close(fd)
        self.kernels[pid] = uid
        return {"ok": True, "pid": pid}

    def _become_kernel(self, uid: int, limits: jail.Limits, fd: int, workspace: str) -> None:
        self.control.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        jail.prctl(jail.PR_SET_PDEATHSIG, signal.SIGKILL)
        env = {**KERNEL_ENV, "HOME": workspace, "TMPDIR": workspace, "MPLCONFIGDIR": workspace}
        os.environ.clear()
        os.environ.update(env)
        os.chdir(workspace)
        jail.drop_privileges(uid, limits, self.base_vm)
        if self.seccomp is not None:
            jail.load_seccomp(self.seccomp)
        Kernel(socket.socket(fileno=fd), workspace, env).serve()

    def _signal(self, pid: int, uid: int, sig: int) -> bool:
        """Signal ``pid`` only if it still belongs to the family (pids get reused)."""
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid and uid != 0:
                return False
            os.kill(pid, sig)
            return True
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return False

    def _reap(self) -> None:
        for pid in processes.reap():
            self.kernels.pop(pid, None)

    def _sweep(self) -> None:
        """Kill processes that left their kernel (reparented to PID 1) and are no kernel,
        and whatever is left of ended families."""
        self.last_sweep = time.monotonic()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in self.kernels or entry == "1":
                continue
            try:
                uid = os.stat(f"/proc/{entry}").st_uid
            except OSError:
                continue
            ended = uid in self.removed and uid not in self.families.values()
            if ended or processes.parent_of(int(entry)) == 1:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry), signal.SIGKILL)
        self.removed.clear()


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def preload(modules: list[str]) -> list[str]:
    """Import what kernels will want, once; the names that imported."""
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:
            print(f"zygote: cannot preload {name}: {exc!r}", file=sys.stderr, flush=True)
    pil = sys.modules.get("PIL.Image")
    if pil is not None:  # Image.show() displays in the call's output
        pil.Image.show = _show_image
    return loaded


def _show_image(image: Any, *args: Any, **kwargs: Any) -> None:
    from toolfleet.sandbox.kernel import CURRENT

    if CURRENT is not None:
        CURRENT._display(image)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toolfleet-zygote")
    parser.add_argument("--fd", type=int, help="inherited control socket")
    parser.add_argument("--listen", help="Unix socket path to accept one control connection on")
    parser.add_argument("--jail-root", help="build the jail with its root mounted here")
    parser.add_argument("--bind", action="append", default=[], help="extra read-only path")
    parser.add_argument("--hide", action="append", default=[], help="path to cover in the jail")
    parser.add_argument("--preload", default="", help="comma-separated modules to import")
    parser.add_argument("--no-seccomp", action="store_true")
    parser.add_argument("--huge-pages", action="store_true", help="back the template with THP")
    parser.add_argument("--box-root", default=jail.BOX_ROOT, help="where families live")
    args = parser.parse_args(argv)

    os.environ.update(KERNEL_ENV)
    if args.fd is not None:
        control = socket.socket(fileno=args.fd)
    else:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(args.listen):
            os.unlink(args.listen)
        umask = os.umask(0o177)  # the socket is created 0600 (gVisor refuses chmod on it)
        try:
            server.bind(args.listen)
        finally:
            os.umask(umask)
        server.listen(1)
        server.settimeout(60)  # a service that never connects leaves no zygote behind
        try:
            control, _ = server.accept()
        except TimeoutError:
            return 1
        finally:
            server.close()
        control.setblocking(True)
    jailed = False
    if args.jail_root:
        jail.build_root(
            args.jail_root, jail.SYSTEM_PATHS + jail.python_paths() + args.bind, args.hide
        )
        jailed = True
    os.makedirs(args.box_root, mode=0o711, exist_ok=True)
    # matplotlib and fontconfig build their caches at import: give them a private directory
    cache = os.path.join(args.box_root, ".zygote-cache")
    os.makedirs(cache, mode=0o700, exist_ok=True)
    os.environ["MPLCONFIGDIR"] = os.environ["XDG_CACHE_HOME"] = cache
    preload([m for m in args.preload.split(",") if m])
    seccomp = None if args.no_seccomp else jail.compile_seccomp()
    if seccomp is None and not args.no_seccomp:
        print(
            "zygote: libseccomp is not available: kernels run WITHOUT a seccomp filter",
            file=sys.stderr,
            flush=True,
        )
    gc.collect()
    gc.freeze()  # keep the template's objects out of the kernels' collections (shared pages)
    if args.huge_pages:
        jail.collapse_huge_pages()
    Zygote(control, jailed, seccomp, args.box_root).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
