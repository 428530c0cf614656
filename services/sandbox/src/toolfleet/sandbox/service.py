"""What the sandbox's tools share: the :class:`Sandbox` service (the kernel pools, the
session kernels, the toolchains) and :class:`SandboxTool`, the base of its tools."""

from __future__ import annotations

import ast
import logging
import time
from typing import Any

from toolfleet.core.protocol import ErrorKind
from toolfleet.core.service import Service
from toolfleet.core.tool import ArgsT, CallContext, Tool, ToolError
from toolfleet.sandbox import runtime
from toolfleet.sandbox.backend import Backend, SandboxUnavailableError
from toolfleet.sandbox.pool import (
    FamilyHandle,
    FamilyPool,
    KernelDiedError,
    KernelHandle,
    KernelPool,
    later,
)
from toolfleet.sandbox.programs import Programs
from toolfleet.sandbox.settings import SandboxSettings

log = logging.getLogger(__name__)

STATE_KEY = "sandbox.kernel"


class Sandbox(Service[SandboxSettings]):
    """The sandbox service: what its tools share (the kernel pools, session kernels)."""

    name = "sandbox"
    Settings = SandboxSettings

    def __init__(
        self, settings: SandboxSettings | None = None, backend: Backend | None = None
    ) -> None:
        super().__init__(settings)
        settings = self.settings
        if backend is None:
            from toolfleet.sandbox.backend import make_backend

            backend = make_backend(settings)
        self.backend = backend
        self.pool = KernelPool(backend, settings.pool_size)
        # Stateless calls that import none of the heavy libraries fork from a lighter template.
        light_size = settings.light_pool_size if backend.light_templates else 0
        self.light_pool = KernelPool(backend, light_size, light=True)
        # Programs that are not Python (and judges) need a family, not an interpreter in it.
        self.family_pool = FamilyPool(backend, light_size, light=True)
        self.heavy_modules = {m.split(".")[0] for m in settings.preload} - {
            m.split(".")[0] for m in settings.light_preload
        }
        self.programs = Programs(self)

    def tools(self) -> list[Tool]:
        """python, bash, run_program, judge and workspace (the files API), over this one
        pool."""
        from toolfleet.sandbox.bash import BashTool
        from toolfleet.sandbox.judge import JudgeTool
        from toolfleet.sandbox.python import PythonTool
        from toolfleet.sandbox.run_program import RunProgramTool
        from toolfleet.sandbox.workspace import WorkspaceTool

        return [
            PythonTool(self),
            BashTool(self),
            RunProgramTool(self),
            JudgeTool(self),
            WorkspaceTool(self),
        ]

    async def start(self) -> None:
        await self.backend.start()
        await self.pool.start()
        await self.light_pool.start()
        await self.family_pool.start()
        try:
            await self.programs.probe()
        except (ToolError, SandboxUnavailableError) as exc:  # python and bash still serve
            log.error("sandbox: the toolchain probe failed: %s", exc)

    async def stop(self) -> None:
        await self.family_pool.stop()
        await self.light_pool.stop()
        await self.pool.stop()
        await self.backend.stop()

    def status(self) -> dict[str, Any]:
        """The backend's isolation in force, how full the kernel pools are, the languages
        offered (toolchain versions) and the compile cache."""
        return {
            **self.backend.describe(),
            "pool_ready": self.pool.ready,
            "pool_size": self.pool.size,
            "light_pool_ready": self.light_pool.ready,
            "light_pool_size": self.light_pool.size,
            "family_pool_ready": self.family_pool.ready,
            "family_pool_size": self.family_pool.size,
            "packages": runtime.packages() if self.settings.runtime_dir is None else None,
            "languages": dict(self.programs.versions),
            "compile_cache": {
                "entries": len(self.programs.cache),
                "bytes": self.programs.cache.bytes,
                "hits": self.programs.cache.hits,
                "misses": self.programs.cache.misses,
            },
        }

    def needs_full(self, code: str) -> bool:
        """True when the code imports a library only the full template preloads."""
        try:
            tree = ast.parse(code)
        except (SyntaxError, ValueError):
            return False
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            else:
                continue
            if any(name.split(".")[0] in self.heavy_modules for name in names):
                return True
        return False

    async def session_kernel(self, ctx: CallContext) -> KernelHandle:
        """The session's kernel, started (or restarted) on first use."""
        kernel: KernelHandle | None = ctx.state(STATE_KEY)
        if kernel is not None and kernel.alive:
            return kernel
        fresh = await self._take()
        fresh.restarted = kernel is not None
        ctx.set_state(STATE_KEY, fresh)
        return fresh

    async def _take(self, light: bool = False) -> KernelHandle:
        try:
            use_light = light and self.light_pool.size > 0
            return await (self.light_pool if use_light else self.pool).take()
        except SandboxUnavailableError as exc:
            raise ToolError(
                ErrorKind.unavailable, f"the sandbox cannot start a kernel: {exc}", retryable=True
            ) from exc

    async def take_family(self, light: bool) -> KernelHandle | FamilyHandle:
        """A fresh family for stateless programs (``.family``, ``.close()``): one with no
        kernel from the family pool (light template), else a fresh kernel's."""
        if not light or self.family_pool.size == 0:
            return await self._take(light)
        try:
            return await self.family_pool.take()
        except SandboxUnavailableError as exc:
            raise ToolError(
                ErrorKind.unavailable, f"the sandbox cannot open a family: {exc}", retryable=True
            ) from exc

    def time_left(self, ctx: CallContext) -> float:
        """The time the supervisor may give the request: it stops the code early enough that,
        if the code ignores the interrupt, it is killed and the call answered before the
        call's own deadline."""
        late = ctx.deadline - self.settings.interrupt_grace_s - 0.1
        return max(0.05, late - time.monotonic())

    async def request(
        self, ctx: CallContext, op: str, light: bool = False, **fields: Any
    ) -> tuple[dict[str, Any], bool]:
        """One request about the session's kernel (or a throw-away one without a session,
        from the light template when ``light``). Returns the supervisor's reply and whether
        the kernel was restarted before it."""
        stateless = ctx.session_id is None
        kernel = await self._take(light) if stateless else await self.session_kernel(ctx)
        restarted, kernel.restarted = kernel.restarted, False
        try:
            reply = await kernel.request(
                op, self.time_left(ctx), grace_s=self.settings.interrupt_grace_s, **fields
            )
        except KernelDiedError as exc:
            raise ToolError(
                ErrorKind.unavailable,
                "the sandbox that held this session went away"
                + ("" if stateless else "; the session's state is lost"),
                detail=str(exc),
                retryable=True,
            ) from exc
        finally:
            if stateless:
                later(kernel.close())
        if (
            not stateless
            and reply.get("ended") == "timeout"
            and reply.get("kernel_alive")
            and int(reply.get("threads") or 1) > 1
        ):
            # Threads of the interrupted code would go on at the next call: end them.
            await kernel.kill()
            reply["kernel_alive"] = False
            reply["threads_restart"] = True
        return reply, restarted


class SandboxTool(Tool[ArgsT]):
    """A tool that runs in the sandbox's kernels (they share one :class:`Sandbox`)."""

    stateful = True

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__(sandbox)
        self.sandbox = sandbox
