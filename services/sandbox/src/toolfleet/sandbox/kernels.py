"""The service's handle on a kernel, and the pool of ready kernels.

A :class:`KernelHandle` is a session's state (it has ``fork`` and ``close``): requests go over
its channel one at a time, a request past its deadline is interrupted (SIGINT) and, if the
kernel does not answer within a grace period, killed. A dead kernel is replaced by a fresh one
on the next call; the observation then says the state was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from typing import Any

from toolfleet.sandbox import wire
from toolfleet.sandbox.backend import Backend, Family, SandboxUnavailableError, open_channel

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 256 << 20
TAKE_TIMEOUT_S = 60.0


class KernelDiedError(RuntimeError):
    """The kernel went away during a request (killed: memory, CPU limit, or by us)."""


class KernelHandle:
    """One live kernel process and its channel."""

    def __init__(self, family: Family, sock: socket.socket, pid: int, grace_s: float) -> None:
        self.family = family
        self.sock = sock
        self.pid = pid
        self.grace_s = grace_s
        self.alive = True
        self.restarted = False  # set on a replacement kernel: the session lost its state
        self._lock = asyncio.Lock()

    async def request(
        self, msg: dict[str, Any], deadline: float, fds: list[int] | None = None
    ) -> dict[str, Any]:
        """Send one request; past ``deadline`` (monotonic) interrupt, then kill. Returns the
        kernel's reply, or raises KernelDiedError / TimeoutError (kernel killed)."""
        async with self._lock:
            if not self.alive:
                raise KernelDiedError("the kernel is not running")
            try:
                await wire.asend(self.sock, msg, fds)
                return await self._reply(deadline)
            except asyncio.CancelledError:
                # The caller gave up (its own timeout): the kernel may still be busy.
                self._kill_soon()
                raise
            except TimeoutError:  # killed after ignoring the interrupt (an OSError subclass)
                raise
            except (OSError, wire.ChannelClosedError) as exc:
                self._mark_dead()
                raise KernelDiedError(str(exc)) from exc

    async def _reply(self, deadline: float) -> dict[str, Any]:
        recv = asyncio.ensure_future(wire.arecv(self.sock, MAX_REPLY_BYTES))
        try:
            done, _ = await asyncio.wait({recv}, timeout=max(0.0, deadline - time.monotonic()))
            if done:
                return recv.result()
            await self.family.signal(self.pid, signal.SIGINT)
            done, _ = await asyncio.wait({recv}, timeout=self.grace_s)
            if done:
                return recv.result()
            await self.kill()
            raise TimeoutError("the kernel did not stop when interrupted and was killed")
        finally:
            if not recv.done():
                recv.cancel()
                with contextlib.suppress(BaseException):
                    await recv

    async def fork(self) -> KernelHandle:
        """A copy of this kernel (its globals and files) in the same family."""
        ours, pid = await open_channel(
            lambda fd: self.request({"op": "fork"}, time.monotonic() + 60, fds=[fd]), "fork"
        )
        try:
            await self.family.adopt(pid)
        except BaseException:
            ours.close()
            raise
        return KernelHandle(self.family, ours, pid, self.grace_s)

    async def close(self) -> None:
        """End the kernel (and its family with its last member)."""
        await self.kill()

    async def kill(self) -> None:
        if not self.alive:
            return
        self._mark_dead()
        with contextlib.suppress(SandboxUnavailableError):
            await self.family.kill(self.pid)

    def _mark_dead(self) -> None:
        self.alive = False
        self.sock.close()

    def _kill_soon(self) -> None:
        task = asyncio.get_running_loop().create_task(self.kill())
        _background.add(task)
        task.add_done_callback(_background.discard)


_background: set[asyncio.Task[Any]] = set()


class KernelPool:
    """Fresh kernels, each in a family of its own, kept ready so a new session or a
    stateless call does not wait for a fork."""

    def __init__(self, backend: Backend, size: int, grace_s: float, light: bool = False) -> None:
        self.backend = backend
        self.light = light
        self.size = size
        self.grace_s = grace_s
        self._ready: asyncio.Queue[KernelHandle] = asyncio.Queue()
        self._refills: list[asyncio.Task[None]] = []
        self._wakeup = asyncio.Event()

    @property
    def ready(self) -> int:
        """Kernels ready to be taken now."""
        return self._ready.qsize()

    async def start(self) -> None:
        """Start filling (the backend is started by its owner)."""
        if self.size:
            self._refills = [
                asyncio.create_task(self._keep_filled(), name=f"kernel-pool-{i}")
                for i in range(self.backend.parallelism)
            ]

    async def stop(self) -> None:
        for task in self._refills:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._ready.empty():
            await self._ready.get_nowait().close()

    async def take(self) -> KernelHandle:
        """A fresh kernel: from the pool (waiting for the next one the refill makes when it is
        empty, rather than competing with it for the zygote), else spawned now."""
        if not self._refills or all(t.done() for t in self._refills):
            return await self.spawn()
        self._wakeup.set()
        while True:
            try:
                kernel = await asyncio.wait_for(self._ready.get(), TAKE_TIMEOUT_S)
            except TimeoutError:
                raise SandboxUnavailableError("no kernel could be started in time") from None
            self._wakeup.set()
            if kernel.alive:
                return kernel

    async def spawn(self) -> KernelHandle:
        """A fresh kernel in a new family."""
        family = await self.backend.new_family(light=self.light)
        try:
            sock, pid = await family.spawn()
        except BaseException:
            await family.close()
            raise
        return KernelHandle(family, sock, pid, self.grace_s)

    async def _keep_filled(self) -> None:
        while True:
            self._wakeup.clear()  # before looking: a take() from now on is not missed
            while self._ready.qsize() < self.size:
                try:
                    self._ready.put_nowait(await self.spawn())
                except SandboxUnavailableError as exc:
                    log.error("sandbox pool: %s", exc)
                    await asyncio.sleep(1)
            await self._wakeup.wait()
