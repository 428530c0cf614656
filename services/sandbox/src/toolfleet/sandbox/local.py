"""The local backend: zygotes on this host in their own namespaces; families are uids.

With root (or user namespaces) each zygote is started by ``toolfleet.box.launch`` under
``unshare`` as PID 1 of new pid, mount, net, ipc and uts namespaces, chrooted into a minimal
read-only root that shows the sandbox's own Python runtime and nothing of the service. Every
family gets a uid of the instance's slot (``instance.py``), namespaces of its own (IPC, net,
mount: its own ``/box``, ``/tmp``, ``/dev/shm``, ``/mnt``) and, where the host's cgroups are
writable (root), a cgroup under the instance's memory ceiling. Without namespaces
(``isolation = "none"`` or ``auto`` falling back) processes still get resource limits,
seccomp, a private directory and a supervisor, but share the host's namespaces: use the
docker backend there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

from toolfleet.box import cgroups
from toolfleet.sandbox import instance, runtime
from toolfleet.sandbox.backend import (
    Backend,
    Family,
    SandboxUnavailableError,
    ZygoteClient,
    remove_stale_state,
    state_dir_of,
    zygote_init,
)
from toolfleet.sandbox.seccomp import compile_filter
from toolfleet.sandbox.settings import SandboxSettings

log = logging.getLogger(__name__)

UNSHARE = ["unshare", "--mount", "--net", "--ipc", "--uts", "--pid", "--fork", "--kill-child"]


class LocalFamily(Family):
    """A uid of the instance's slot, served by a supervisor the zygote forks."""

    async def _close(self) -> None:
        # The zygote answers once no process of the family is left: only then is the uid
        # free to be given to another family.
        with contextlib.suppress(SandboxUnavailableError):
            await self.zygote.request({"op": "end_family", "fid": self.fid})


class LocalBackend(Backend):
    """Kernels as processes on this host, forked from ``settings.zygotes`` zygotes."""

    name = "local"

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.light_templates = settings.light_pool_size > 0
        self.limits = settings.limits()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.zygotes: list[ZygoteClient] = []
        self.light: list[ZygoteClient] = []  # preload settings.light_preload only
        self.jailed = False
        self.slot: instance.Slot | None = None
        self.cgroup_dirs: dict[str, str] = {}
        self.cgroup_version: str | None = None
        self.runtime_dir: Path | None = None
        self._turn = 0
        self._free_uids: deque[int] = deque()
        self._next_uid = 0
        self._families = 0
        self._state_dir = state_dir_of(settings.state_dir, "local")

    async def start(self) -> None:
        self.runtime_dir = self.settings.runtime_dir or runtime.default_dir()
        why = runtime.problem(self.runtime_dir)
        if why is not None:
            raise SandboxUnavailableError(
                f"the sandbox's Python runtime is missing ({why}): build it with "
                "`make runtime` (python -m toolfleet.sandbox.runtime build), or set "
                "TOOLFLEET_SANDBOX_RUNTIME_DIR to a virtualenv"
            )
        remove_stale_state(self.settings.state_dir, "local")
        self._state_dir.mkdir(parents=True, exist_ok=True)
        mode = self.settings.isolation
        if mode in ("auto", "jail"):
            try:
                await self._start_zygotes(jail=True)
                return
            except (SandboxUnavailableError, instance.SlotTakenError) as exc:
                if mode == "jail" or isinstance(exc, instance.SlotTakenError):
                    raise SandboxUnavailableError(str(exc)) from exc
                log.warning(
                    "sandbox: namespaces unavailable (%s); kernels run with limits "
                    "only. Use the docker backend for isolation.",
                    exc,
                )
        await self._start_zygotes(jail=False)

    @property
    def parallelism(self) -> int:
        return max(1, len(self.zygotes))

    async def _start_zygotes(self, jail: bool) -> None:
        """Claim a slot, make its cgroups, start ``settings.zygotes`` zygotes per template."""
        if self.slot is None and (jail or os.geteuid() == 0):
            s = self.settings
            self.slot = instance.claim(s.uid_count, s.uid_base, start=s.worker_ordinal())
            self._next_uid = self.slot.uid_base
        if jail and self.slot is not None:
            prepared = cgroups.prepare_instance(self.slot.name, self._total_memory())
            if prepared is not None:
                self.cgroup_version, self.cgroup_dirs = prepared
        seccomp = compile_filter()
        if seccomp is None:
            log.warning("sandbox: libseccomp is missing: kernels run WITHOUT a seccomp filter")
        starts = [self._start_zygote(jail, i, seccomp) for i in range(self.settings.zygotes)]
        if self.light_templates:
            n = self.settings.zygotes
            starts += [self._start_zygote(jail, n + i, seccomp, light=True) for i in range(n)]
        results = await asyncio.gather(*starts, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.stop(keep_state=True)
            raise failed[0]

    def _total_memory(self) -> int:
        if self.settings.total_memory_mb:
            return self.settings.total_memory_mb << 20
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.8)

    def _command(self, jail: bool, index: int, fd: int) -> list[str]:
        assert self.runtime_dir is not None
        cmd = [sys.executable, "-m", "toolfleet.box.launch", "--fd", str(fd),
               "--runtime", str(self.runtime_dir)]  # fmt: skip
        if not jail:
            return [*cmd, "--box-root", str(self._state_dir / "box")]
        root = self._state_dir / f"root-{index}"
        root.mkdir(exist_ok=True)
        cmd += ["--root", str(root), "--cgroup-version", self.cgroup_version or "v1"]
        for name, path in self.cgroup_dirs.items():
            cmd += ["--cgroup", f"{name}={path}"]
        base = runtime.base_prefix(self.runtime_dir)
        if base is not None:
            cmd += ["--show", str(base)]
        config = os.environ.get("TOOLFLEET_CONFIG")
        if config:  # the service's settings may hold secrets
            cmd += ["--hide", os.path.join(os.getcwd(), config)]
        prefix = list(UNSHARE) if os.geteuid() == 0 else [*UNSHARE, "--user", "--map-root-user"]
        return [*prefix, *cmd]

    async def _start_zygote(
        self, jail: bool, index: int, seccomp: bytes | None, light: bool = False
    ) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log_path = self._state_dir / f"zygote-{index}{'' if jail else '-unjailed'}.log"
        with log_path.open("ab") as zygote_log:  # what the zygote says, for operators
            process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                self._command(jail, index, theirs.fileno()),
                pass_fds=[theirs.fileno()],
                env=_launcher_env(),
                stdin=subprocess.DEVNULL,
                cwd="/",  # with -m, the working directory joins sys.path
                stdout=zygote_log,
                stderr=zygote_log,
            )
        theirs.close()
        zygote = ZygoteClient(ours)
        init = zygote_init(
            self.settings.light_preload if light else self.settings.preload,
            seccomp,
            huge_pages=self.settings.huge_pages,
            uid_limits=jail,
        )
        try:
            info = await zygote.handshake(init, timeout_s=180)
        except (TimeoutError, SandboxUnavailableError, OSError, ValueError) as exc:
            zygote.close()
            if process.poll() is None:
                process.kill()
            process.wait()
            said = log_path.read_text(errors="replace")[-2000:]
            raise SandboxUnavailableError(f"zygote did not start ({exc!r}): {said}") from exc
        self.processes.append(process)
        (self.light if light else self.zygotes).append(zygote)
        self.jailed = bool(info.get("jailed"))
        log.info("sandbox: local zygote ready: %s", info)

    async def stop(self, keep_state: bool = False) -> None:
        for zygote in [*self.zygotes, *self.light]:
            zygote.close()  # the zygote exits, and with it the whole namespace
        for process in self.processes:
            try:
                await asyncio.to_thread(process.wait, 10)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        self.zygotes, self.processes, self.light = [], [], []
        if self.cgroup_dirs:
            await asyncio.to_thread(cgroups.remove_instance, self.cgroup_dirs)
            self.cgroup_dirs = {}
        if self.slot is not None and not keep_state:
            self.slot.release()
            self.slot = None
        if not keep_state:
            shutil.rmtree(self._state_dir, ignore_errors=True)

    async def new_family(self, light: bool = False) -> Family:
        if not self.zygotes:
            raise SandboxUnavailableError("the sandbox is not running")
        self._turn = (self._turn + 1) % len(self.zygotes)
        templates = self.light if light and self.light else self.zygotes
        zygote = templates[self._turn % len(templates)]
        uid = self._take_uid()
        self._families += 1
        family = LocalFamily(
            zygote,
            uid,
            self.limits,
            on_close=self._free_uids.append if self.jailed else None,
            fid=self._families,
        )
        try:
            await family.open()
        except BaseException:
            await family.close()
            raise
        return family

    def _take_uid(self) -> int:
        if not self.jailed:
            # Without namespaces one uid serves every family (the slot's first if we are
            # root): the limits hold, the isolation between families does not.
            return self.slot.uid_base if self.slot is not None else os.geteuid()
        # Fresh uids first, then the oldest released: a uid comes back as late as possible,
        # and only once its family has no process left (the zygote checks).
        assert self.slot is not None
        if self._next_uid < self.slot.uid_base + self.slot.uid_count:
            self._next_uid += 1
            return self._next_uid - 1
        if self._free_uids:
            return self._free_uids.popleft()
        raise SandboxUnavailableError("no free sandbox uid (too many live sessions)")

    def describe(self) -> dict[str, Any]:
        info = dict(self.zygotes[0].info) if self.zygotes else {}
        info.pop("op", None)
        return {
            "backend": self.name,
            "zygotes": len(self.zygotes),
            "runtime": str(self.runtime_dir),
            "cgroup_dirs": self.cgroup_dirs or None,
            "uids": (
                f"{self.slot.uid_base}-{self.slot.uid_base + self.slot.uid_count - 1}"
                if self.slot
                else None
            ),
            **info,
        }


def _launcher_env() -> dict[str, str]:
    """A clean environment: nothing of the service's settings or secrets reaches the sandbox."""
    keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k in keep}
