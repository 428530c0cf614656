"""The service's handle on a kernel, and the pools of ready kernels and ready families.

A :class:`KernelHandle` is a session's state (it has ``fork`` and ``close``): one kernel of a
family, reached through the family's supervisor. Requests go one at a time; the supervisor
enforces each request's deadline (interrupt, then kill) and answers; a kernel that died is
replaced by a fresh one on the session's next call, and the observation says the state was
lost.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from typing import Any, Generic, TypeVar

from toolfleet.sandbox.backend import (
    ANSWER_MARGIN_S,
    Backend,
    Family,
    SandboxUnavailableError,
)

log = logging.getLogger(__name__)

TAKE_TIMEOUT_S = 60.0
FORK_WAIT_S = 90.0


class KernelDiedError(RuntimeError):
    """The kernel is gone (killed: memory or CPU limit, a crash, or ended)."""


class KernelHandle:
    """One kernel of a family."""

    def __init__(self, family: Family, kid: int, pid: int, workspace: str) -> None:
        self.family = family
        self.kid = kid
        self.pid = pid
        self.workspace = workspace
        self.alive = True
        self.restarted = False  # set on a replacement kernel: the session lost its state
        self._closed = False
        self._lock = asyncio.Lock()

    async def request(self, op: str, timeout_s: float, **fields: Any) -> dict[str, Any]:
        """One request about this kernel (``python``, ``bash``, files...); the supervisor's
        reply. ``timeout_s`` is the request's own deadline, which the supervisor enforces."""
        async with self._lock:
            if not self.alive:
                raise KernelDiedError("the kernel is not running")
            msg = {"op": op, "kernel": self.kid, "timeout_s": timeout_s, **fields}
            try:
                reply = await self.family.request(msg, timeout_s + ANSWER_MARGIN_S)
            except SandboxUnavailableError as exc:
                self.alive = False
                raise KernelDiedError(str(exc)) from exc
            except asyncio.CancelledError:
                # The caller gave up first: the kernel may be mid-call; end it.
                self.alive = False
                later(self.close())
                raise
            if reply.get("kernel_alive") is False or _gone(reply):
                self.alive = False
                later(self.close())
            return reply

    async def fork(self) -> KernelHandle:
        """A copy of this kernel (its globals and files) in the same family."""
        reply = await self.request("fork", FORK_WAIT_S)
        if not reply.get("ok"):
            raise SandboxUnavailableError(
                f"fork failed: {(reply.get('error') or {}).get('message')}"
            )
        self.family.adopt()
        return KernelHandle(
            self.family, int(reply["kernel"]), int(reply["pid"]), reply["workspace"]
        )

    async def close(self) -> None:
        """End the kernel (and its family with its last member)."""
        if self._closed:
            return
        self._closed = True
        self.alive = False
        with contextlib.suppress(SandboxUnavailableError):
            await self.family.end_kernel(self.kid)

    async def kill(self) -> None:
        """End the kernel now (its session's state is lost)."""
        await self.close()


class FamilyHandle:
    """A fresh family with no kernel: a stateless program's (its supervisor starts the
    program; no interpreter is forked for it). Has ``family`` and ``close`` as a
    :class:`KernelHandle` has."""

    def __init__(self, family: Family) -> None:
        self.family = family

    @property
    def alive(self) -> bool:
        """True until the family is closed."""
        return not self.family.closed

    async def close(self) -> None:
        """End the family (and whatever the program left in it)."""
        with contextlib.suppress(SandboxUnavailableError):
            await self.family.close()


def _gone(reply: dict[str, Any]) -> bool:
    error = reply.get("error") or {}
    return (
        not reply.get("ok")
        and error.get("kind") == "not_found"
        and "gone" in str(error.get("message"))
    )


_background: set[asyncio.Task[Any]] = set()


def later(coro: Any) -> None:
    """Run ``coro`` in the background (a reference is kept until it ends), e.g. a close
    nobody waits for."""
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


HandleT = TypeVar("HandleT", KernelHandle, FamilyHandle)


class ReadyPool(abc.ABC, Generic[HandleT]):
    """Fresh handles (each in a family of its own) kept ready so a call does not wait for
    them to be made; :meth:`spawn` makes one."""

    def __init__(self, backend: Backend, size: int, light: bool = False) -> None:
        self.backend = backend
        self.light = light
        self.size = size
        self._ready: asyncio.Queue[HandleT] = asyncio.Queue()
        self._refills: list[asyncio.Task[None]] = []
        self._wakeup = asyncio.Event()
        self._spawning = 0  # kernels the refill tasks are making now

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

    @abc.abstractmethod
    async def spawn(self) -> HandleT:
        """A fresh one, made now."""

    async def take(self) -> HandleT:
        """A fresh one: from the pool (waiting for the next one the refill makes when it is
        empty, rather than competing with it for the zygote), else spawned now."""
        if not self._refills or all(t.done() for t in self._refills):
            return await self.spawn()
        self._wakeup.set()
        while True:
            try:
                async with asyncio.timeout(TAKE_TIMEOUT_S):  # (see FamilyChannel.request)
                    kernel = await self._ready.get()
            except TimeoutError:
                raise SandboxUnavailableError("no kernel could be started in time") from None
            self._wakeup.set()
            if kernel.alive:
                return kernel

    async def _keep_filled(self) -> None:
        while True:
            self._wakeup.clear()  # before looking: a take() from now on is not missed
            # the kernels being made count: parallel refills never pass the pool's size
            # (readyz's pool_ready <= pool_size)
            while self._ready.qsize() + self._spawning < self.size:
                self._spawning += 1
                try:
                    self._ready.put_nowait(await self.spawn())
                except SandboxUnavailableError as exc:
                    log.error("sandbox pool: %s", exc)
                    await asyncio.sleep(1)
                finally:
                    self._spawning -= 1
            await self._wakeup.wait()


class KernelPool(ReadyPool[KernelHandle]):
    """Fresh kernels, each in a family of its own, for new sessions and stateless calls."""

    async def spawn(self) -> KernelHandle:
        """A fresh kernel in a new family."""
        family = await self.backend.new_family(light=self.light)
        try:
            info = await family.spawn()
        except BaseException:
            await family.close()
            raise
        return KernelHandle(family, int(info["kernel"]), int(info["pid"]), info["workspace"])


class FamilyPool(ReadyPool[FamilyHandle]):
    """Fresh families with no kernel, for programs that are not Python and for judges."""

    async def spawn(self) -> FamilyHandle:
        """A new family."""
        return FamilyHandle(await self.backend.new_family(light=self.light))
