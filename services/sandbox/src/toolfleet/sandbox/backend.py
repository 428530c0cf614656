"""Where kernels run: the backend interface (and ``make_backend``, the one the settings name),
and the service's side of zygotes and families.

A backend (local namespaces, docker containers) provides *families*: a session and its
forks, which share a uid (or a container), a disk, a cgroup and namespaces of their own, and
nothing with any other family. A family is served by the supervisor (``toolfleet.box``, in
the zygote that opened it) that
the service talks to over one channel, multiplexed by request id: it runs cells in the
family's kernels, bash commands and programs, forks sessions and does the files API, and
everything it answers is produced outside the processes that run model code.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import itertools
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from toolfleet.box import wire
from toolfleet.box.jail import Limits
from toolfleet.sandbox.settings import SandboxSettings

MAX_REPLY_BYTES = 512 << 20
ANSWER_MARGIN_S = 10.0  # how long past a request's own deadline a supervisor may take


class SandboxUnavailableError(RuntimeError):
    """The backend cannot run kernels (zygote, supervisor or container gone)."""


class ZygoteClient:
    """The service's end of a zygote's control channel (one request at a time)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.info: dict[str, Any] = {}
        self.stored: set[str] = set()  # compiled files its supervisor holds (``box/artifacts``)
        self._lock = asyncio.Lock()

    async def handshake(self, init: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send ``init`` and wait until the zygote is ready (it imports its libraries)."""
        async with asyncio.timeout(timeout_s):
            await wire.asend(self.sock, {"op": "init", **init})
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


class FamilyChannel:
    """The service's end of a family's channel to its supervisor: requests carry an id, and
    the loop's reader callback hands each reply to the request that waits for it (no task
    in between: the reply resumes its request directly)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.closed = False
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._send_lock = asyncio.Lock()
        self._frames = wire.FrameBuffer(MAX_REPLY_BYTES)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    async def request(self, msg: dict[str, Any], answer_within_s: float) -> dict[str, Any]:
        """Send one request; its reply. The supervisor enforces the request's own deadline:
        no answer within ``answer_within_s`` means the family is broken (it is closed)."""
        if self.closed:
            raise SandboxUnavailableError("the session's sandbox is gone")
        rid = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._waiting[rid] = future
        try:
            async with self._send_lock:
                await wire.asend(self.sock, {**msg, "id": rid})
            # (not asyncio.wait_for: on Python 3.11 it returns the reply and loses the
            # cancellation when both come at once, e.g. a pool's refill stopped mid-spawn)
            async with asyncio.timeout(answer_within_s):
                return await future
        except (OSError, wire.ChannelClosedError) as exc:  # TimeoutError included
            self._waiting.pop(rid, None)  # failed here, not by close()
            self.close()
            if isinstance(exc, TimeoutError):
                raise SandboxUnavailableError("the sandbox did not answer in time") from None
            raise SandboxUnavailableError(f"the session's sandbox is gone: {exc}") from exc
        finally:
            self._waiting.pop(rid, None)

    def _readable(self) -> None:
        """The loop's callback: read what the supervisor sent, answer each complete reply."""
        try:
            data = self.sock.recv(1 << 20)
            if not data:
                raise wire.ChannelClosedError("channel closed")
            for reply in self._frames.feed(data):
                future = self._waiting.get(int(reply.get("id", -1)))
                if future is not None and not future.done():
                    future.set_result(reply)
        except (BlockingIOError, InterruptedError):
            return
        except (OSError, wire.ChannelClosedError, ValueError, TypeError):
            self._broken()

    def _broken(self) -> None:
        self.closed = True
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self.sock.fileno())
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(SandboxUnavailableError("the session's sandbox is gone"))

    def close(self) -> None:
        """Close the channel: the supervisor ends every process of the family."""
        if self.sock.fileno() >= 0:
            self._broken()
            self.sock.close()


class Family(abc.ABC):
    """One family, through its channel to the supervisor."""

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
        self.fid = uid if fid is None else fid
        self.limits = limits
        self.on_close = on_close
        self.channel: FamilyChannel | None = None
        self.members = 0
        self.closed = False

    async def open(self) -> None:
        """Have the zygote open the family, with its channel."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                msg = {
                    "op": "family",
                    "fid": self.fid,
                    "uid": self.uid,
                    "limits": asdict(self.limits),
                }
                reply = await self.zygote.request(msg, [theirs.fileno()])
            finally:
                theirs.close()
            if not reply.get("ok"):
                raise SandboxUnavailableError(f"a new family failed: {reply.get('error')}")
        except BaseException:
            ours.close()
            raise
        self.channel = FamilyChannel(ours)

    async def request(self, msg: dict[str, Any], answer_within_s: float) -> dict[str, Any]:
        """One request to the supervisor (see ``toolfleet.box.messages``)."""
        if self.channel is None:
            raise SandboxUnavailableError("the family is not open")
        return await self.channel.request(msg, answer_within_s)

    async def spawn(self) -> dict[str, Any]:
        """A new kernel in this family: its id, pid and workspace."""
        reply = await self.request({"op": "spawn"}, ANSWER_MARGIN_S * 3)
        if not reply.get("ok"):
            raise SandboxUnavailableError(f"spawn failed: {reply.get('error')}")
        self.members += 1
        return reply

    def adopt(self) -> None:
        """Count a forked kernel as a member."""
        self.members += 1

    async def end_kernel(self, kernel: int) -> None:
        """End a member kernel; the last one ends the family (with everything in it)."""
        if self.members <= 1:
            self.members = 0
            await self.close()
            return
        try:
            if self.channel is not None and not self.channel.closed:
                with contextlib.suppress(SandboxUnavailableError):
                    await self.request({"op": "end_kernel", "kernel": kernel}, ANSWER_MARGIN_S)
        finally:
            self.members -= 1
            if self.members <= 0:
                await self.close()

    async def close(self) -> None:
        """End every process of the family and release what it holds."""
        if self.closed:
            return
        self.closed = True
        if self.channel is not None:
            self.channel.close()
        try:
            await self._close()
        finally:
            if self.on_close is not None:
                self.on_close(self.uid)

    @abc.abstractmethod
    async def _close(self) -> None:
        """Release what the backend holds for the family (answers once nothing is left)."""


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
        """A fresh, open family, isolated from every other. ``light``: from a template with
        fewer libraries preloaded, which forks faster (the backend may ignore it)."""

    @property
    def parallelism(self) -> int:
        """How many families the backend can start at once."""
        return 1

    #: True when ``new_family(light=True)`` really forks from a lighter template.
    light_templates: bool = False

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """What isolation is in force (for /readyz and logs)."""


def zygote_init(preload: list[str], seccomp: bytes | None, **extra: Any) -> dict[str, Any]:
    """The ``init`` message a zygote gets (see ``toolfleet.box.messages.InitRequest``)."""
    return {
        "preload": preload,
        "seccomp": base64.b64encode(seccomp).decode() if seccomp else None,
        **extra,
    }


_BACKENDS = itertools.count(1)


def state_dir_of(state_dir: Path, prefix: str) -> Path:
    """A new backend's own directory, ``<state_dir>/<prefix>-<pid>-<n>``: two backends of
    one process (a gateway and a worker in one, the tests) never share one, nor remove
    each other's when they stop."""
    return state_dir / f"{prefix}-{os.getpid()}-{next(_BACKENDS)}"


def remove_stale_state(state_dir: Path, prefix: str) -> None:
    """Delete ``<state_dir>/<prefix>-<pid>[-<n>]`` directories whose process is gone."""
    if not state_dir.is_dir():
        return
    for entry in state_dir.glob(f"{prefix}-*"):
        pid = entry.name.removeprefix(f"{prefix}-").split("-")[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(entry, ignore_errors=True)


def make_backend(settings: SandboxSettings) -> Backend:
    """The backend ``settings.backend`` names."""
    if settings.backend == "docker":
        from toolfleet.sandbox.docker import DockerBackend

        return DockerBackend(settings)
    from toolfleet.sandbox.local import LocalBackend

    return LocalBackend(settings)
