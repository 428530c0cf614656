"""The local backend: one zygote on this host in its own namespaces; families are uids.

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

from toolfleet.sandbox.backend import Backend, Family, SandboxUnavailableError, ZygoteClient
from toolfleet.sandbox.settings import SandboxSettings

log = logging.getLogger(__name__)

UNSHARE = ["unshare", "--mount", "--net", "--ipc", "--uts", "--pid", "--fork", "--kill-child"]


class LocalFamily(Family):
    """A uid of its own and a tmpfs under /box, served by the shared zygote."""

    async def _close(self) -> None:
        with contextlib.suppress(SandboxUnavailableError):
            await self.zygote.request({"op": "remove_family", "uid": self.uid})


class LocalBackend(Backend):
    """Kernels as processes on this host, forked from one zygote."""

    name = "local"

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.limits = settings.limits()
        self.process: subprocess.Popen[bytes] | None = None
        self.zygote: ZygoteClient | None = None
        self.jailed = False
        self._free_uids: list[int] = []
        self._next_uid = settings.uid_base
        self._state_dir = settings.state_dir / f"local-{os.getpid()}"

    async def start(self) -> None:
        _remove_stale_state(self.settings.state_dir)
        self._state_dir.mkdir(parents=True, exist_ok=True)
        mode = self.settings.isolation
        if mode in ("auto", "jail"):
            try:
                await self._start_zygote(jail=True)
                return
            except SandboxUnavailableError as exc:
                if mode == "jail":
                    raise
                log.warning(
                    "sandbox: namespaces unavailable (%s); kernels run with limits "
                    "only. Use the docker backend for isolation.",
                    exc,
                )
        await self._start_zygote(jail=False)

    async def _start_zygote(self, jail: bool) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cmd = [
            sys.executable,
            "-m",
            "toolfleet.sandbox.zygote",
            "--fd",
            str(theirs.fileno()),
            "--preload",
            ",".join(self.settings.preload),
        ]
        if not jail:
            cmd += ["--box-root", str(self._state_dir / "box")]
        if self.settings.huge_pages:
            cmd.append("--huge-pages")
        if jail:
            root = self._state_dir / "root"
            root.mkdir(exist_ok=True)
            prefix = list(UNSHARE) if os.geteuid() == 0 else [*UNSHARE, "--user", "--map-root-user"]
            cmd = [*prefix, *cmd, "--jail-root", str(root)]
            config = os.environ.get("TOOLFLEET_CONFIG")
            if config:  # the service's settings may hold secrets
                cmd += ["--hide", os.path.join(os.getcwd(), config)]
        log_path = self._state_dir / ("zygote.log" if jail else "zygote-unjailed.log")
        with log_path.open("ab") as zygote_log:  # what the zygote says, for operators
            self.process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
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
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            said = log_path.read_text(errors="replace")[-2000:]
            raise SandboxUnavailableError(f"zygote did not start ({exc!r}): {said}") from exc
        self.zygote = zygote
        self.jailed = bool(info.get("jailed"))
        log.info("sandbox: local zygote ready: %s", info)

    async def stop(self) -> None:
        if self.zygote is not None:
            self.zygote.close()  # the zygote exits, and with it the whole namespace
            self.zygote = None
        if self.process is not None:
            try:
                await asyncio.to_thread(self.process.wait, 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)
            self.process = None
        shutil.rmtree(self._state_dir, ignore_errors=True)

    async def new_family(self) -> Family:
        if self.zygote is None:
            raise SandboxUnavailableError("the sandbox is not running")
        uid = self._take_uid()
        release = self._free_uids.append if self.jailed else None
        return LocalFamily(self.zygote, uid, self.limits, on_close=release)

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
        info = dict(self.zygote.info) if self.zygote else {}
        info.pop("op", None)
        return {"backend": self.name, **info}


def _zygote_env() -> dict[str, str]:
    """A clean environment: nothing of the service's settings or secrets reaches kernels."""
    keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k in keep}


def _remove_stale_state(state_dir: Any) -> None:
    """Delete state directories of local backends whose process is gone."""
    if not state_dir.is_dir():
        return
    for entry in state_dir.glob("local-*"):
        pid = entry.name.removeprefix("local-")
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(entry, ignore_errors=True)
