"""The sandbox's tools: ``python``, ``bash``, and the workspace file operations behind the
REST files API."""

from __future__ import annotations

import ast
import asyncio
import base64
import binascii
import time
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field
from toolfleet.core.protocol import ErrorDiagnostic, ErrorKind, ImagePart, TextPart
from toolfleet.core.service import Service
from toolfleet.core.tool import ArgsT, CallContext, Tool, ToolArguments, ToolError, ToolResult
from toolfleet.sandbox.backend import Backend, SandboxUnavailableError
from toolfleet.sandbox.kernels import KernelDiedError, KernelHandle, KernelPool
from toolfleet.sandbox.settings import SandboxSettings

STATE_KEY = "sandbox.kernel"
RESTARTED_NOTE = "[the session's interpreter was restarted: variables and imports are lost]\n"

HINTS = {
    ErrorKind.syntax_error: "Fix the syntax at the line and column given, then run again.",
    ErrorKind.runtime_error: "Read the traceback: fix the line it names, then run again.",
    ErrorKind.timeout: "Make the code faster or do less per call (e.g. smaller inputs); "
    "long loops and sleeps are stopped at the timeout.",
    ErrorKind.memory_limit: "Use less memory: smaller arrays, generators instead of lists.",
    ErrorKind.output_limit: "Print less: summaries, head() or slices instead of whole data.",
}


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
            from toolfleet.sandbox.backends import make_backend

            backend = make_backend(settings)
        self.backend = backend
        grace = settings.interrupt_grace_s
        self.pool = KernelPool(backend, settings.pool_size, grace)
        # Stateless calls that import none of the heavy libraries fork from a lighter template.
        light_size = settings.light_pool_size if backend.light_templates else 0
        self.light_pool = KernelPool(backend, light_size, grace, light=True)
        self.heavy_modules = {m.split(".")[0] for m in settings.preload} - {
            m.split(".")[0] for m in settings.light_preload
        }

    def tools(self) -> list[Tool]:
        """python, bash and workspace (the files API), over this one pool."""
        return [PythonTool(self), BashTool(self), WorkspaceTool(self)]

    async def start(self) -> None:
        await self.backend.start()
        await self.pool.start()
        await self.light_pool.start()

    async def stop(self) -> None:
        await self.light_pool.stop()
        await self.pool.stop()
        await self.backend.stop()

    def status(self) -> dict[str, Any]:
        """The backend's isolation in force, and how full the kernel pools are."""
        return {
            **self.backend.describe(),
            "pool_ready": self.pool.ready,
            "pool_size": self.pool.size,
            "light_pool_ready": self.light_pool.ready,
            "light_pool_size": self.light_pool.size,
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

    def interrupt_at(self, ctx: CallContext) -> float:
        """When to interrupt a late call: early enough that, if the kernel ignores the
        interrupt, it is killed and the call answered before the call's own deadline."""
        return ctx.deadline - self.settings.interrupt_grace_s - 0.1

    async def run(
        self, ctx: CallContext, msg: dict[str, Any], light: bool = False
    ) -> tuple[dict[str, Any], bool]:
        """Run one request in the session's kernel (or a throw-away one without a session,
        from the light template when ``light``). Returns the reply and whether the kernel was
        restarted before it."""
        stateless = ctx.session_id is None
        kernel = await self._take(light) if stateless else await self.session_kernel(ctx)
        restarted, kernel.restarted = kernel.restarted, False
        try:
            reply = await kernel.request(msg, self.interrupt_at(ctx))
        except TimeoutError as exc:
            raise ToolError(
                ErrorKind.timeout,
                f"the call did not finish within its {ctx.timeout_s:g} s timeout; the "
                "interpreter was stopped" + ("" if stateless else " and restarted (state lost)"),
                hint=HINTS[ErrorKind.timeout],
            ) from exc
        except KernelDiedError as exc:
            raise ToolError(
                ErrorKind.memory_limit,
                "the interpreter was killed (memory or CPU limit, or it crashed)"
                + ("" if stateless else "; the session's state is lost"),
                detail=str(exc),
                hint=HINTS[ErrorKind.memory_limit],
            ) from exc
        finally:
            if stateless:
                _later(kernel.close())
        error = reply.get("error")
        if (
            not stateless
            and isinstance(error, dict)
            and error.get("kind") == "timeout"
            and isinstance(reply.get("threads"), int)
            and reply["threads"] > 1
        ):
            # Threads of the interrupted code may still be running: stop them for good.
            await kernel.kill()
            error["message"] = (
                f"{error.get('message')}; threads it started were still "
                "running, so the interpreter was restarted (state lost)"
            )
        return reply, restarted


class SandboxTool(Tool[ArgsT]):
    """A tool that runs in the sandbox's kernels (they share one :class:`Sandbox`)."""

    stateful = True

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__(sandbox)
        self.sandbox = sandbox


class PythonArgs(ToolArguments):
    """Arguments of the python tool."""

    code: str = Field(max_length=1_000_000, description="Python source to run.")
    stdin: str | None = Field(default=None, max_length=1_000_000, description="Standard input.")


class PythonOutput(BaseModel):
    """Structured output of the python tool."""

    stdout: str = Field(description="What the code printed.")
    stderr: str = Field(description="What the code wrote to stderr (warnings, logs).")
    result: str | None = Field(description="repr of the trailing expression, as Jupyter shows.")
    images: int = Field(description="Number of image parts (figures, displayed PIL images).")
    restarted: bool = Field(description="True when the session's interpreter was restarted.")


class PythonTool(SandboxTool[PythonArgs]):
    """Run Python like a Jupyter cell."""

    name = "python"
    description = (
        "Run Python code. With a session or trajectory, state persists between calls like a "
        "Jupyter notebook (variables, imports, files in the working directory); without one, "
        "each call starts clean. numpy, pandas, sympy, matplotlib and PIL are available; the "
        "value of a trailing expression is shown, and matplotlib figures and displayed PIL "
        "images come back as images. No network."
    )
    Arguments = PythonArgs
    Output = PythonOutput
    cost = 1.0

    async def call(self, args: PythonArgs, ctx: CallContext) -> ToolResult:
        s = self.sandbox.settings
        reply, restarted = await self.sandbox.run(
            ctx,
            {
                "op": "python",
                "code": args.code,
                "stdin": args.stdin,
                "max_output": s.max_output_chars,
                "max_images": s.max_images,
                "max_image_bytes": s.max_image_bytes,
            },
            light=ctx.session_id is None and not self.sandbox.needs_full(args.code),
        )
        stdout, stderr = _text(reply, "stdout"), _text(reply, "stderr")
        result = reply.get("result") if isinstance(reply.get("result"), str) else None
        error = _diagnostic(reply.get("error"))
        images = [_image(i) for i in reply.get("images") or [] if isinstance(i, dict)]
        images = [i for i in images if i is not None][: s.max_images]
        text = _render(restarted, stdout, stderr, result, error)
        content: list[Any] = [TextPart(text=text)] if text else []
        return ToolResult(
            content=[*content, *images],
            data=PythonOutput(
                stdout=stdout, stderr=stderr, result=result, images=len(images), restarted=restarted
            ).model_dump(),
            error=error,
            truncated=bool(reply.get("truncated")),
        )


class BashArgs(ToolArguments):
    """Arguments of the bash tool."""

    command: str = Field(max_length=1_000_000, description="Bash command(s) to run.")


class BashOutput(BaseModel):
    """Structured output of the bash tool."""

    stdout: str = Field(description="Standard output.")
    stderr: str = Field(description="Standard error.")
    exit_code: int | None = Field(description="Exit status of the command.")
    cwd: str | None = Field(description="Working directory after the command.")


class BashTool(SandboxTool[BashArgs]):
    """Run bash in the session's working directory."""

    name = "bash"
    description = (
        "Run a bash command in the session's workspace. The working directory and exported "
        "environment variables persist between calls of a session. No network."
    )
    Arguments = BashArgs
    Output = BashOutput
    cost = 1.0

    async def call(self, args: BashArgs, ctx: CallContext) -> ToolResult:
        s = self.sandbox.settings
        remaining = max(0.05, self.sandbox.interrupt_at(ctx) - time.monotonic())
        reply, restarted = await self.sandbox.run(
            ctx,
            {
                "op": "bash",
                "command": args.command,
                "max_output": s.max_output_chars,
                "timeout_s": remaining,
            },
            light=True,  # bash needs no preloaded Python library
        )
        stdout, stderr = _text(reply, "stdout"), _text(reply, "stderr")
        error = _diagnostic(reply.get("error"))
        exit_code = reply.get("exit_code") if isinstance(reply.get("exit_code"), int) else None
        if error is not None and error.kind is ErrorKind.runtime_error:
            error.hint = "The command failed; read stderr, fix the command and run again."
        text = _render(restarted, stdout, stderr, None, None)
        if exit_code:
            text += f"\n[exit status {exit_code}]" if text else f"[exit status {exit_code}]"
        return ToolResult(
            content=[TextPart(text=text)] if text else [],
            data=BashOutput(
                stdout=stdout,
                stderr=stderr,
                exit_code=exit_code,
                cwd=reply.get("cwd") if isinstance(reply.get("cwd"), str) else None,
            ).model_dump(),
            error=error,
            truncated=bool(reply.get("truncated")),
        )


class FileArgs(ToolArguments):
    """A workspace file operation (used by the REST files API)."""

    action: Literal["write", "read", "list"] = Field(description="What to do.")
    path: str = Field(default="", max_length=4096, description="Path in the workspace.")
    data: str | None = Field(default=None, description="base64 content to write.")


FILE_OPS = {"write": "write_file", "read": "read_file", "list": "list_files"}


class WorkspaceTool(SandboxTool[FileArgs]):
    """Session workspace files. Hidden from the model's tool list; the
    ``/v1/sessions/{id}/files`` routes (:mod:`toolfleet.sandbox.routes.files`) call it."""

    name = "workspace"
    description = "Read, write and list files in a session's working directory."
    Arguments = FileArgs
    hidden: ClassVar[bool] = True

    async def call(self, args: FileArgs, ctx: CallContext) -> ToolResult:
        if ctx.session_id is None:
            raise ToolError(ErrorKind.invalid_arguments, "workspace files need a session")
        limit = self.sandbox.settings.max_file_bytes
        msg: dict[str, Any] = {"op": FILE_OPS[args.action], "path": args.path}
        if args.action == "write":
            try:
                data = base64.b64decode(args.data or "", validate=True)
            except binascii.Error as exc:
                raise ToolError(ErrorKind.invalid_arguments, f"data is not base64: {exc}") from exc
            if len(data) > limit:
                raise ToolError(
                    ErrorKind.output_limit,
                    f"the file is {len(data)} bytes, over the limit of {limit}",
                )
            msg["data"] = args.data or ""
        elif args.action == "read":
            msg["max_bytes"] = limit
        reply, _ = await self.sandbox.run(ctx, msg)
        error = _diagnostic(reply.get("error"))
        if error is not None:
            raise ToolError(error.kind, error.message)
        reply.pop("ok", None)
        return ToolResult(data=reply)


def tools_for(settings: SandboxSettings) -> list[Tool]:
    """The sandbox's tools over one shared pool (a new :class:`Sandbox` of ``settings``)."""
    return Sandbox(settings).tools()


# ---------------------------------------------------------------------- rendering


def _text(reply: dict[str, Any], key: str) -> str:
    value = reply.get(key)
    return value if isinstance(value, str) else ""


def _diagnostic(raw: Any) -> ErrorDiagnostic | None:
    """The kernel's error (untrusted) as a diagnostic."""
    if not isinstance(raw, dict):
        return None
    try:
        kind = ErrorKind(raw.get("kind"))
    except ValueError:
        kind = ErrorKind.runtime_error
    detail = raw.get("detail") if isinstance(raw.get("detail"), str) else None
    return ErrorDiagnostic(
        kind=kind,
        message=str(raw.get("message", "the code failed"))[:2000],
        detail=detail[:10_000] if detail else None,
        hint=HINTS.get(kind),
        retryable=False,
    )


def _image(raw: dict[str, Any]) -> ImagePart | None:
    try:
        return ImagePart(
            mime_type="image/png",
            data=raw["data"],
            width=int(raw["width"]),
            height=int(raw["height"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _render(
    restarted: bool, stdout: str, stderr: str, result: str | None, error: ErrorDiagnostic | None
) -> str:
    """The text the model reads: output, then the trailing value, then the error."""
    parts = [RESTARTED_NOTE.rstrip()] if restarted else []
    parts += [p.rstrip("\n") for p in (stdout, stderr) if p]
    if result is not None:
        parts.append(result)
    if error is not None:
        parts.append(
            error.detail
            if error.kind is ErrorKind.runtime_error and error.detail
            else error.message + (f"\n{error.detail}" if error.detail else "")
        )
    return "\n".join(parts)


_pending: set[asyncio.Task[Any]] = set()


def _later(coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _pending.add(task)
    task.add_done_callback(_pending.discard)
