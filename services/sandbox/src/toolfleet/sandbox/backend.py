"""Where kernels run: the backend interface, and the service's side of a zygote.

A backend (local namespaces, docker containers) provides *families*: a uid (or container) a
session and its forks share. A family spawns kernels through a zygote it talks to over a
Unix socket; the kernel's own channel is a socket pair whose far end travels with the
request (SCM_RIGHTS), so the service talks to each kernel directly.
"""

from __future__ import annotations

import abc
import asyncio
import os
import shutil
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from toolfleet.sandbox import wire
from toolfleet.sandbox.jail import Limits


class SandboxUnavailableError(RuntimeError):
    """The backend cannot run kernels (zygote or container gone)."""


class ZygoteClient:
    """The service's end of a zygote's control channel (one request at a time)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.info: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    async def handshake(self, timeout_s: float) -> dict[str, Any]:
        """Wait for the zygote's ready message (it imports its libraries first)."""
        async with asyncio.timeout(timeout_s):
            self.info = await wire.arecv(self.sock)
        if self.info.get("op") != "ready":
            raise SandboxUnavailableError(f"unexpected zygote greeting: {self.info}")
        return self.info

    async def request(self, msg: dict[str, Any], fds: list[int] | None = None) -> dict[str, Any]:
        """Send one request and wait for its reply."""
        async with self._lock:
            try:
                await wire.asend(self.sock, msg, fds)
                return await wire.arecv(self.sock)
            except (OSError, wire.ChannelClosedError) as exc:
                raise SandboxUnavailableError(f"the zygote is gone: {exc}") from exc

    def close(self) -> None:
        self.sock.close()


class Family(abc.ABC):
    """Kernels that share a uid (or a container): one session and its forks."""

    def __init__(
        self,
        zygote: ZygoteClient,
        uid: int,
        limits: Limits,
        on_close: Callable[[int], None] | None = None,
        fid: int | None = None,
    ) -> None:
        self.zygote = zygote
        self.uid = uid
        self.fid = uid if fid is None else fid  # the family's directory under /box
        self.limits = limits
        self.on_close = on_close
        self.members = 0
        self.closed = False

    async def spawn(self) -> tuple[socket.socket, int]:
        """A new kernel in this family: its channel (hello already read) and pid."""
        limits = asdict(self.limits)
        sock, pid = await open_channel(
            lambda fd: self.zygote.request(
                {"op": "spawn", "uid": self.uid, "family": self.fid, "limits": limits}, [fd]
            ),
            "spawn",
        )
        self.members += 1
        return sock, pid

    async def adopt(self, pid: int) -> None:
        """Count a forked kernel as a member (the zygote will not sweep it)."""
        self.members += 1
        await self.zygote.request({"op": "register", "pid": pid, "uid": self.uid})

    async def signal(self, pid: int, sig: int = signal.SIGINT) -> None:
        """Signal a member kernel."""
        await self.zygote.request({"op": "signal", "pid": pid, "uid": self.uid, "sig": sig})

    async def kill(self, pid: int) -> None:
        """Kill a member kernel and what it runs; the last one ends the family."""
        try:
            await self.zygote.request({"op": "kill", "pid": pid, "uid": self.uid})
        finally:
            self.members -= 1
            if self.members <= 0:
                await self.close()

    async def close(self) -> None:
        """End every process of the family and delete its files."""
        if self.closed:
            return
        self.closed = True
        try:
            await self._close()
        finally:
            if self.on_close is not None:
                self.on_close(self.uid)

    @abc.abstractmethod
    async def _close(self) -> None:
        """Release what the backend holds for the family."""


async def _hello(sock: socket.socket, timeout_s: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        hello = await wire.arecv(sock, max_frame=4096)
    if hello.get("op") != "hello" or not isinstance(hello.get("pid"), int):
        raise SandboxUnavailableError(f"unexpected kernel greeting: {hello}")
    return hello


class Backend(abc.ABC):
    """Where kernels run."""

    name: str

    @abc.abstractmethod
    async def start(self) -> None:
        """Start zygotes / containers; raise SandboxUnavailableError if impossible."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """End every kernel; leave no process, container or file behind."""

    @abc.abstractmethod
    async def new_family(self, light: bool = False) -> Family:
        """A fresh family, isolated from every other. ``light``: from a template with fewer
        libraries preloaded, which forks faster (the backend may ignore it)."""

    @property
    def parallelism(self) -> int:
        """How many kernels the backend can spawn at once."""
        return 1

    #: True when ``new_family(light=True)`` really forks from a lighter template.
    light_templates: bool = False

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """What isolation is in force (for /readyz and logs)."""


async def open_channel(
    ask: Callable[[int], Awaitable[dict[str, Any]]], what: str
) -> tuple[socket.socket, int]:
    """A new kernel's channel: ``ask`` sends the far end of a socket pair (to the zygote, or
    to a kernel that forks); the new kernel greets on it with its pid."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            reply = await ask(theirs.fileno())
        finally:
            theirs.close()
        if not reply.get("ok"):
            raise SandboxUnavailableError(f"{what} failed: {reply.get('error')}")
        ours.setblocking(False)
        return ours, int((await _hello(ours))["pid"])
    except BaseException:
        ours.close()
        raise


def remove_stale_state(state_dir: Path, prefix: str) -> None:
    """Delete ``<state_dir>/<prefix>-<pid>`` directories whose process is gone."""
    if not state_dir.is_dir():
        return
    for entry in state_dir.glob(f"{prefix}-*"):
        pid = entry.name.removeprefix(f"{prefix}-")
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(entry, ignore_errors=True)
