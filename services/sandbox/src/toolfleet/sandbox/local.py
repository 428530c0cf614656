"""The local backend: zygotes on this host in their own namespaces; families are uids.

With root (or user namespaces) the zygote runs under ``unshare`` as PID 1 of new pid, mount,
net, ipc and uts namespaces, chrooted into a minimal read-only root; every family gets its own
uid and a size-limited tmpfs. Without them (``isolation = "none"`` or ``auto`` falling back)
kernels still get resource limits, seccomp and a private directory, but share the host's
namespaces: use the docker backend there.
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
from typing import Any

from toolfleet.sandbox.backend import (
    Backend,
    Family,
    SandboxUnavailableError,
    ZygoteClient,
    remove_stale_state,
)
from toolfleet.sandbox.settings import SandboxSettings

log = logging.getLogger(__name__)

UNSHARE = ["unshare", "--mount", "--net", "--ipc", "--uts", "--pid", "--fork", "--kill-child"]


class LocalFamily(Family):
    """A uid of its own and a tmpfs under /box, served by the shared zygote."""

    async def _close(self) -> None:
        with contextlib.suppress(SandboxUnavailableError):
            await self.zygote.request({"op": "remove_family", "family": self.fid, "uid": self.uid})


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
        self._turn = 0
        self._free_uids: list[int] = []
        self._next_uid = settings.uid_base
        self._families = 0
        self._state_dir = settings.state_dir / f"local-{os.getpid()}"

    async def start(self) -> None:
        remove_stale_state(self.settings.state_dir, "local")
        self._state_dir.mkdir(parents=True, exist_ok=True)
        mode = self.settings.isolation
        if mode in ("auto", "jail"):
            try:
                await self._start_zygotes(jail=True)
                return
            except SandboxUnavailableError as exc:
                if mode == "jail":
                    raise
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
        """Start ``settings.zygotes`` zygotes at once (they fork kernels in parallel)."""
        starts = [self._start_zygote(jail, i) for i in range(self.settings.zygotes)]
        if self.light_templates:
            starts += [
                self._start_zygote(jail, self.settings.zygotes + i, light=True)
                for i in range(self.settings.zygotes)
            ]
        results = await asyncio.gather(*starts, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.stop(keep_state=True)
            raise failed[0]

    async def _start_zygote(self, jail: bool, index: int, light: bool = False) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cmd = [
            sys.executable,
            "-m",
            "toolfleet.sandbox.zygote",
            "--fd",
            str(theirs.fileno()),
            "--preload",
            ",".join(self.settings.light_preload if light else self.settings.preload),
        ]
        if not jail:
            cmd += ["--box-root", str(self._state_dir / "box")]
        if self.settings.huge_pages:
            cmd.append("--huge-pages")
        if jail:
            root = self._state_dir / f"root-{index}"
            root.mkdir(exist_ok=True)
            prefix = list(UNSHARE) if os.geteuid() == 0 else [*UNSHARE, "--user", "--map-root-user"]
            cmd = [*prefix, *cmd, "--jail-root", str(root)]
            config = os.environ.get("TOOLFLEET_CONFIG")
            if config:  # the service's settings may hold secrets
                cmd += ["--hide", os.path.join(os.getcwd(), config)]
        log_path = self._state_dir / f"zygote-{index}{'' if jail else '-unjailed'}.log"
        with log_path.open("ab") as zygote_log:  # what the zygote says, for operators
            process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                cmd,
                pass_fds=[theirs.fileno()],
                env=_zygote_env(),
                stdin=subprocess.DEVNULL,
                cwd="/",  # with -m, the working directory joins sys.path and would be exposed
                stdout=zygote_log,
                stderr=zygote_log,
            )
        theirs.close()
        zygote = ZygoteClient(ours)
        try:
            info = await zygote.handshake(timeout_s=120)
        except (TimeoutError, SandboxUnavailableError, OSError, ValueError) as exc:
            zygote.close()
            if process.poll() is None:
                process.kill()
            process.wait()
            said = log_path.read_text(errors="replace")[-2000:]
            raise SandboxUnavailableError(f"zygote did not start ({exc!r}): {said}") from exc
        self.processes.append(process)
        if light:
            self.light.append(zygote)
        else:
            self.zygotes.append(zygote)
        self.jailed = bool(info.get("jailed"))
        log.info("sandbox: local zygote ready: %s", info)
        if not info.get("seccomp"):
            log.warning("sandbox: kernels run without a seccomp filter (libseccomp missing)")

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
        if not keep_state:
            shutil.rmtree(self._state_dir, ignore_errors=True)

    async def new_family(self, light: bool = False) -> Family:
        if not self.zygotes:
            raise SandboxUnavailableError("the sandbox is not running")
        self._turn = (self._turn + 1) % len(self.zygotes)
        templates = self.light if light and self.light else self.zygotes
        zygote = templates[self._turn % len(templates)]
        uid = self._take_uid()
        release = self._free_uids.append if self.jailed else None
        self._families += 1
        return LocalFamily(
            zygote,
            uid,
            self.limits,
            on_close=release,
            fid=uid if self.jailed else self._families,
        )

    def _take_uid(self) -> int:
        if not self.jailed:
            # Without namespaces one uid serves every family (an unprivileged one if we are
            # root): the limits hold, the isolation between families does not.
            return self.settings.uid_base if os.geteuid() == 0 else os.geteuid()
        if self._free_uids:
            return self._free_uids.pop(0)
        if self._next_uid >= self.settings.uid_base + self.settings.uid_count:
            raise SandboxUnavailableError("no free sandbox uid (too many live sessions)")
        self._next_uid += 1
        return self._next_uid - 1

    def describe(self) -> dict[str, Any]:
        info = dict(self.zygotes[0].info) if self.zygotes else {}
        info.pop("op", None)
        return {"backend": self.name, "zygotes": len(self.zygotes), **info}


def _zygote_env() -> dict[str, str]:
    """A clean environment: nothing of the service's settings or secrets reaches kernels."""
    keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k in keep}
