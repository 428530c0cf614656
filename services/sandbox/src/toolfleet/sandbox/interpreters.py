"""The sandbox's tools: ``python``, ``bash``, ``run_program``, and the workspace file
operations behind the REST files API.

Every answer is built from what a family's supervisor reports: output it read from the
kernel's pipes, exit statuses from ``wait4``, times it measured, files it read itself. What
the interpreter says of a cell (the trailing value, images, the exception) is the model's own
process's report; it is checked and bounded by the supervisor and used only for those fields.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import binascii
import copy
import logging
import signal
import time
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field
from toolfleet.core.protocol import ErrorDiagnostic, ErrorKind, ImagePart, TextPart, ToolSpec
from toolfleet.core.service import Service
from toolfleet.core.tool import ArgsT, CallContext, Tool, ToolArguments, ToolError, ToolResult
from toolfleet.sandbox import caps, languages, runtime
from toolfleet.sandbox.backend import Backend, SandboxUnavailableError
from toolfleet.sandbox.kernels import KernelDiedError, KernelHandle, KernelPool
from toolfleet.sandbox.programs import Compiled, Programs
from toolfleet.sandbox.programs import run as programs_run
from toolfleet.sandbox.settings import SandboxSettings

log = logging.getLogger(__name__)

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
            from toolfleet.sandbox.backend import make_backend

            backend = make_backend(settings)
        self.backend = backend
        self.pool = KernelPool(backend, settings.pool_size)
        # Stateless calls that import none of the heavy libraries fork from a lighter template.
        light_size = settings.light_pool_size if backend.light_templates else 0
        self.light_pool = KernelPool(backend, light_size, light=True)
        self.heavy_modules = {m.split(".")[0] for m in settings.preload} - {
            m.split(".")[0] for m in settings.light_preload
        }
        self.programs = Programs(self)

    def tools(self) -> list[Tool]:
        """python, bash, run_program, judge and workspace (the files API), over this one
        pool."""
        from toolfleet.sandbox.judge import JudgeTool

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
        try:
            await self.programs.probe()
        except (ToolError, SandboxUnavailableError) as exc:  # python and bash still serve
            log.error("sandbox: the toolchain probe failed: %s", exc)

    async def stop(self) -> None:
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
                _later(kernel.close())
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


# ---------------------------------------------------------------------- python


class PythonArgs(ToolArguments):
    """Arguments of the python tool."""

    code: str = Field(max_length=1_000_000, description="Python source to run.")
    stdin: str | None = Field(default=None, max_length=1_000_000, description="Standard input.")


class PythonOutput(BaseModel):
    """Structured output of the python tool. ``stdout`` and ``stderr`` are what the
    interpreter's process wrote, captured outside it; ``result`` and the images are what the
    interpreter reported (produced by the model's code)."""

    stdout: str = Field(description="What the code printed (captured by the supervisor).")
    stderr: str = Field(description="What the code wrote to stderr (warnings, logs).")
    result: str | None = Field(
        description="repr of the trailing expression, as Jupyter shows, as the interpreter "
        "reported it."
    )
    images: int = Field(description="Number of image parts (figures, displayed PIL images).")
    restarted: bool = Field(description="True when the session's interpreter was restarted.")
    notes: list[str] = Field(
        default_factory=list, description="What was cut, dropped or changed, and why."
    )


class PythonTool(SandboxTool[PythonArgs]):
    """Run Python like a Jupyter cell."""

    name = "python"
    description = (
        "Run Python code. With a session or trajectory, state persists between calls like a "
        "Jupyter notebook (variables, imports, files in the working directory); without one, "
        "each call starts clean. numpy, scipy, pandas, sympy, matplotlib, PIL, networkx and "
        "scikit-learn are available; the value of a trailing expression is shown, and "
        "matplotlib figures and displayed PIL images come back as images. No network."
    )
    Arguments = PythonArgs
    Output = PythonOutput
    cost = 1.0

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__(sandbox)
        # The packages of the runtime the code runs in, with their versions, so a model
        # (and the person choosing tools) knows what it may import; a runtime of the user's
        # own (runtime_dir) is described only by the generic sentence.
        if sandbox.settings.runtime_dir is None:
            listed = ", ".join(f"{n} {v}" for n, v in runtime.packages().items())
            self.description = f"{self.description} Runtime packages: {listed}."

    async def call(self, args: PythonArgs, ctx: CallContext) -> ToolResult:
        s = self.sandbox.settings
        reply, restarted = await self.sandbox.request(
            ctx,
            "python",
            light=ctx.session_id is None and not self.sandbox.needs_full(args.code),
            code=args.code,
            stdin=args.stdin,
            max_output=s.max_output_chars,
            max_images=s.max_images,
            max_image_bytes=s.max_image_bytes,
            max_result=20_000,
        )
        stdout, stderr = _text(reply, "stdout"), _text(reply, "stderr")
        result = reply.get("result") if isinstance(reply.get("result"), str) else None
        error = self._diagnostic(reply, ctx)
        images = [_image(i) for i in reply.get("images") or [] if isinstance(i, dict)]
        images = [i for i in images if i is not None][: s.max_images]
        notes = _strings(reply.get("notes")) + _strings(reply.get("images_dropped"))
        text = _render(restarted, stdout, stderr, result, error, notes)
        return ToolResult(
            content=[TextPart(text=text), *images] if text else list(images),
            data=PythonOutput(
                stdout=stdout,
                stderr=stderr,
                result=result,
                images=len(images),
                restarted=restarted,
                notes=notes,
            ).model_dump(),
            error=error,
            truncated=bool(reply.get("truncated")) or bool(reply.get("images_dropped")),
        )

    def _diagnostic(self, reply: dict[str, Any], ctx: CallContext) -> ErrorDiagnostic | None:
        """The supervisor's account of how the cell ended, else the interpreter's report."""
        s = self.sandbox.settings
        ended = reply.get("ended")
        alive = bool(reply.get("kernel_alive"))
        lost = (
            ""
            if ctx.session_id is None
            else "; its interpreter is restarted at the next call (the session's state is lost)"
        )
        if ended == "timeout":
            if reply.get("threads_restart"):
                how = (
                    "it was interrupted, but threads it started were still running, so the "
                    f"interpreter was restarted{lost}"
                )
            elif alive:
                how = "it was interrupted (the session's state is kept)"
            else:
                how = f"it did not stop when interrupted and was killed{lost}"
            return _diagnose(
                ErrorKind.timeout,
                f"the call ran out of time (its limit is {ctx.timeout_s:g} s): {how}",
            )
        if ended == "output_limit":
            return _diagnose(
                ErrorKind.output_limit,
                f"the output passed the limit of {s.max_output_chars} bytes per call, so the "
                "code was stopped" + ("" if alive else f" and the interpreter killed{lost}"),
            )
        if ended == "memory_limit":
            return _diagnose(
                ErrorKind.memory_limit,
                "the interpreter was killed for using more memory than allowed (the session's "
                f"limit is {self.sandbox.settings.limits().family_memory_bytes >> 20} MiB, files "
                f"in the working directory included; the sandbox's total is bounded too){lost}",
            )
        if ended == "killed":
            return _diagnose(
                ErrorKind.memory_limit,
                "the interpreter was killed (it crashed, or passed a limit: "
                f"{s.memory_mb} MiB of memory, {s.cpu_seconds} s of CPU time per "
                f"interpreter){lost}",
            )
        raw = reply.get("error")
        if not isinstance(raw, dict):
            return None
        diagnostic = _diagnostic(raw)
        if diagnostic is not None and diagnostic.kind is ErrorKind.memory_limit:
            diagnostic.message = (
                f"MemoryError: the code ran out of memory (the limit is {s.memory_mb} MiB "
                "per interpreter)"
            )
        return diagnostic


# ---------------------------------------------------------------------- bash


class BashArgs(ToolArguments):
    """Arguments of the bash tool."""

    command: str = Field(max_length=1_000_000, description="Bash command(s) to run.")


class BashOutput(BaseModel):
    """Structured output of the bash tool (captured by the supervisor)."""

    stdout: str = Field(description="Standard output.")
    stderr: str = Field(description="Standard error.")
    exit_code: int | None = Field(description="Exit status of the command (None: a signal).")
    cwd: str | None = Field(description="Working directory after the command.")
    notes: list[str] = Field(default_factory=list, description="What was cut or changed, and why.")


class BashTool(SandboxTool[BashArgs]):
    """Run bash in the session's working directory."""

    name = "bash"
    description = (
        "Run a bash command in the session's workspace. The working directory and exported "
        "environment variables persist between calls of a session. `python` is the "
        "sandbox's Python with its packages. No network."
    )
    Arguments = BashArgs
    Output = BashOutput
    cost = 1.0

    async def call(self, args: BashArgs, ctx: CallContext) -> ToolResult:
        s = self.sandbox.settings
        reply, restarted = await self.sandbox.request(
            ctx, "bash", light=True, command=args.command, max_output=s.max_output_chars
        )
        stdout, stderr = _text(reply, "stdout"), _text(reply, "stderr")
        exit_code = reply.get("exit_code") if isinstance(reply.get("exit_code"), int) else None
        notes = _strings(reply.get("notes"))
        family_mib = s.limits().family_memory_bytes >> 20
        error = _process_error(reply, ctx, s.max_output_chars, memory_mib=family_mib)
        if error is not None and error.kind is ErrorKind.runtime_error:
            error.hint = "The command failed; read stderr, fix the command and run again."
        text = _render(restarted, stdout, stderr, None, None, notes)
        if exit_code:
            text += f"\n[exit status {exit_code}]" if text else f"[exit status {exit_code}]"
        elif error is not None:
            text += f"\n{error.message}" if text else error.message
        return ToolResult(
            content=[TextPart(text=text)] if text else [],
            data=BashOutput(
                stdout=stdout,
                stderr=stderr,
                exit_code=exit_code,
                cwd=reply.get("cwd") if isinstance(reply.get("cwd"), str) else None,
                notes=notes,
            ).model_dump(),
            error=error,
            truncated=bool(reply.get("truncated")),
        )


# ---------------------------------------------------------------------- files


class FileArgs(ToolArguments):
    """A workspace file operation (used by the REST files API)."""

    action: Literal["write", "read", "list"] = Field(description="What to do.")
    path: str = Field(default="", max_length=4096, description="Path in the workspace.")
    data: str | None = Field(default=None, description="base64 content to write.")


FILE_OPS = {"write": "write_file", "read": "read_file", "list": "list_files"}


class WorkspaceTool(SandboxTool[FileArgs]):
    """Session workspace files. Hidden from the model's tool list; the
    ``/v1/sessions/{id}/files`` routes (:mod:`toolfleet.sandbox.routes.files`) call it. Done
    by the supervisor, never by the interpreter: what it reads is what is on the session's
    disk."""

    name = "workspace"
    description = "Read, write and list files in a session's working directory."
    Arguments = FileArgs
    hidden: ClassVar[bool] = True

    async def call(self, args: FileArgs, ctx: CallContext) -> ToolResult:
        if ctx.session_id is None:
            raise ToolError(ErrorKind.invalid_arguments, "workspace files need a session")
        limit = self.sandbox.settings.max_file_bytes
        fields: dict[str, Any] = {"path": args.path}
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
            fields["data"] = args.data or ""
        elif args.action == "read":
            fields["max_bytes"] = limit
        reply, _ = await self.sandbox.request(ctx, FILE_OPS[args.action], **fields)
        if not reply.get("ok"):
            error = _diagnostic(reply.get("error")) or _diagnose(ErrorKind.internal, "failed")
            raise ToolError(error.kind, error.message)
        data = {k: v for k, v in reply.items() if k not in ("id", "ok")}
        return ToolResult(data=data)


# ---------------------------------------------------------------------- programs

# pytest runs the program's file as `pytest main.py ARGS` does, in the warm interpreter
PYTEST_MAIN = "import sys\nimport pytest\n\nsys.exit(pytest.main())\n"


class ProgramArgs(ToolArguments):
    """Arguments of the run_program tool."""

    language: str = Field(
        max_length=40,
        description="The program's language (SandboxFusion's names and aliases: python, pytest "
        "(the file's tests, run by pytest), bash, cpp, c, java, go, rust, nodejs, typescript, "
        "...; the ones offered are listed).",
    )
    code: str = Field(max_length=8_000_000, description="The program's source.")
    stdin: str | None = Field(
        default=None, max_length=128 << 20, description="Standard input of the program."
    )
    args: list[str] = Field(default_factory=list, description="Command-line arguments.")
    files: dict[str, str] = Field(
        default_factory=dict,
        description="Files to create first: path (relative to the working directory, or "
        "under /tmp or /mnt) -> content.",
    )
    files_encoding: Literal["utf-8", "base64"] = Field(
        default="utf-8", description="How the contents in `files` are given."
    )
    fetch_files: list[str] = Field(
        default_factory=list,
        description="Files to return after the run (base64 in data.files).",
    )
    time_limit_s: float | None = Field(
        default=None,
        gt=0,
        description="Run time limit of the program (default and ceiling: the call's timeout).",
    )
    memory_limit_mb: int | None = Field(
        default=None, gt=0, description="Memory limit of the program (at most the sandbox's)."
    )


class ProgramOutput(BaseModel):
    """How a program ended, from the supervisor's records (never from the program)."""

    status: Literal["finished", "time_limit", "output_limit", "memory_limit", "compile_error"] = (
        Field(description="finished: it exited (any status) or was killed by a signal.")
    )
    exit_code: int | None = Field(description="Its exit status (None if killed by a signal).")
    signal: int | None = Field(description="The signal that killed it, if one did.")
    stdout: str = Field(description="Standard output (capped).")
    stderr: str = Field(description="Standard error (capped).")
    time_s: float = Field(description="Wall-clock time from start to exit.")
    cpu_s: float = Field(description="CPU time it used.")
    memory_mb: float = Field(description="Peak memory of its main process (RSS).")
    files: dict[str, str] = Field(default_factory=dict, description="Fetched files, base64.")
    missing_files: list[str] = Field(default_factory=list, description="Files not fetched.")
    notes: list[str] = Field(default_factory=list, description="What was cut, and why.")
    compile: dict[str, Any] | None = Field(
        default=None,
        description="The compile step of compiled languages: status ok/error/time_limit, "
        "exit_code, stdout, stderr, time_s, cached (taken from the compile cache).",
    )


class RunProgramTool(SandboxTool[ProgramArgs]):
    """Run a program from source, once, in a fresh sandbox: its verdict, output, time and
    memory as the supervisor saw them."""

    name = "run_program"
    description = (
        "Run a program once, in a fresh sandbox, with optional stdin, arguments and files; "
        "compiled languages are compiled first (compile errors are reported with the "
        "compiler's file:line:col). Returns its exit status, output, time and memory. "
        "Stateless."
    )
    Arguments = ProgramArgs
    Output = ProgramOutput
    stateful = False
    cost = 1.0

    def spec(self) -> ToolSpec:
        """The schema lists the languages offered here (probed at start)."""
        return with_languages(super().spec(), self.sandbox.programs.offered)

    async def call(self, args: ProgramArgs, ctx: CallContext) -> ToolResult:
        s = self.sandbox.settings
        programs = self.sandbox.programs
        language = programs.lookup(args.language)
        files: dict[str, str] = {}
        for path, content in args.files.items():
            files[path] = (
                content
                if args.files_encoding == "base64"
                else base64.b64encode(content.encode()).decode()
            )
        cap = self.sandbox.time_left(ctx)
        limit = cap if args.time_limit_s is None else min(cap, args.time_limit_s)
        memory_mb = min(args.memory_limit_mb or s.memory_mb, s.memory_mb)
        light = language not in ("python", "pytest") or not self.sandbox.needs_full(args.code)
        kernel = await self.sandbox._take(light)
        try:
            prepared = await programs.prepare(
                kernel.family, language, args.code, files, self.sandbox.time_left(ctx), memory_mb
            )
            compiled = prepared.compiled
            if compiled is not None and not compiled.ok:
                return compile_failure(language, compiled)
            fields: dict[str, Any] = {
                "memory_bytes": memory_mb << 20,
                **prepared.fields,
                "stdin": args.stdin or "",
                "max_output": s.max_program_output_bytes,
                "fetch": args.fetch_files,
            }
            if prepared.cwd:
                fields["cwd"] = prepared.cwd
            if language == "pytest":  # the runner is the program, the code its test file
                fields.update(
                    python=PYTEST_MAIN, script="pytest", args=[fields["script"], *args.args]
                )
            elif "python" in fields:
                fields["args"] = args.args
            else:
                fields["argv"] = [*fields["argv"], *args.args]
            if "python" in fields:  # the fresh kernel becomes the program: no fork, warm imports
                fields["kernel"] = kernel.kid
            limit = min(limit, self.sandbox.time_left(ctx))
            reply = await programs_run(kernel.family, limit, **fields)
        finally:
            _later(kernel.close())
        result = program_result(reply, limit, s.max_program_output_bytes)
        if compiled is not None and isinstance(result.data, dict):
            result.data["compile"] = compiled.describe()
        if result.data is not None:  # what the sandbox's caps did to this run, said
            notes = caps.requested(s, args.memory_limit_mb, args.time_limit_s, cap)
            notes += caps.hit(s, result.data, memory_mb)
            result.data["notes"] = [*result.data["notes"], *notes]
            if notes and result.content and isinstance(result.content[0], TextPart):
                extra = "\n".join(f"[{note}]" for note in notes)
                result.content[0] = TextPart(text=f"{result.content[0].text}\n{extra}")
        return result


def with_languages(spec: ToolSpec, offered: list[str]) -> ToolSpec:
    """A tool's spec whose ``language`` argument enumerates the offered languages."""
    schema = copy.deepcopy(spec.input_schema)
    prop = schema.get("properties", {}).get("language")
    if isinstance(prop, dict):
        prop["enum"] = offered
    return spec.model_copy(update={"input_schema": schema})


def compile_failure(language: str, compiled: Compiled) -> ToolResult:
    """A program that did not compile: a ``compile_error`` at the compiler's first error."""
    output = (compiled.stderr + compiled.stdout).strip()
    if compiled.timed_out:
        message = "the compiler ran out of time"
    else:
        first = languages.parse_compile_error(output)
        where = first.where()
        message = f"{where}: {first.message}" if where else first.message
    error = ErrorDiagnostic(
        kind=ErrorKind.compile_error,
        message=f"{language} compile error: {message}"[:2000],
        detail=output[:10_000] or None,
        hint="Fix the error at the file:line:col the compiler gives, then run again.",
    )
    data = ProgramOutput(
        status="compile_error",
        exit_code=None,
        signal=None,
        stdout="",
        stderr="",
        time_s=0.0,
        cpu_s=0.0,
        memory_mb=0.0,
        compile=compiled.describe(),
    )
    text = "\n".join(p for p in (error.message, output[:10_000]) if p)
    return ToolResult(content=[TextPart(text=text)], data=data.model_dump(), error=error)


def program_result(reply: dict[str, Any], limit_s: float, max_output: int) -> ToolResult:
    """A program's outcome as an observation (shared by run_program and the judge)."""
    if reply.get("error") and reply.get("exit_code") is None and reply.get("signal") is None:
        error = _diagnostic(reply["error"]) or _diagnose(ErrorKind.internal, "run failed")
        raise ToolError(error.kind, error.message, retryable=error.kind is ErrorKind.internal)
    stdout, stderr = _text(reply, "stdout"), _text(reply, "stderr")
    notes = _strings(reply.get("notes")) + _strings(reply.get("missing"))
    if reply.get("timed_out"):
        status = "time_limit"
    elif reply.get("memory_limit"):
        status = "memory_limit"
    elif reply.get("output_limit"):
        status = "output_limit"
    else:
        status = "finished"
    exit_code = reply.get("exit_code") if isinstance(reply.get("exit_code"), int) else None
    signum = reply.get("signal") if isinstance(reply.get("signal"), int) else None
    output = ProgramOutput(
        status=status,
        exit_code=exit_code,
        signal=signum,
        stdout=stdout,
        stderr=stderr,
        time_s=round(float(reply.get("elapsed_ms") or 0) / 1000, 6),
        cpu_s=round(float(reply.get("cpu_ms") or 0) / 1000, 6),
        memory_mb=round(int(reply.get("max_rss_bytes") or 0) / (1 << 20), 2),
        files=reply.get("files") if isinstance(reply.get("files"), dict) else {},
        missing_files=_strings(reply.get("missing")),
        notes=notes,
    )
    error = _process_error(reply, None, max_output, limit_s)
    text = _render(False, stdout, stderr, None, None, notes)
    if error is not None:
        text = f"{text}\n{error.message}" if text else error.message
    return ToolResult(
        content=[TextPart(text=text)] if text else [],
        data=output.model_dump(),
        error=error,
        truncated=bool(reply.get("truncated")),
    )


def tools_for(settings: SandboxSettings) -> list[Tool]:
    """The sandbox's tools over one shared pool (a new :class:`Sandbox` of ``settings``)."""
    return Sandbox(settings).tools()


# ---------------------------------------------------------------------- rendering


def _text(reply: dict[str, Any], key: str) -> str:
    value = reply.get(key)
    return value if isinstance(value, str) else ""


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _diagnose(kind: ErrorKind, message: str) -> ErrorDiagnostic:
    return ErrorDiagnostic(kind=kind, message=message, hint=HINTS.get(kind))


def _diagnostic(raw: Any) -> ErrorDiagnostic | None:
    """A reported error as a diagnostic."""
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


def _process_error(
    reply: dict[str, Any],
    ctx: CallContext | None,
    max_output: int,
    limit_s: float | None = None,
    memory_mib: int | None = None,
) -> ErrorDiagnostic | None:
    """How a process the supervisor ran failed, in its words (bash, programs), each limit
    named with its value where the caller knows it."""
    limit = limit_s if limit_s is not None else (ctx.timeout_s if ctx else 0.0)
    if reply.get("timed_out"):
        return _diagnose(
            ErrorKind.timeout, f"the command ran out of time (its limit is {limit:g} s)"
        )
    if reply.get("memory_limit"):
        limit_said = f" (the limit is {memory_mib} MiB)" if memory_mib else ""
        return _diagnose(
            ErrorKind.memory_limit, f"it was killed for using too much memory{limit_said}"
        )
    if reply.get("output_limit") and ctx is not None:  # a program's output is cut, not stopped
        return _diagnose(
            ErrorKind.output_limit, f"the output passed the limit of {max_output} bytes"
        )
    signum = reply.get("signal")
    if isinstance(signum, int):
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = "unknown"
        return _diagnose(ErrorKind.runtime_error, f"killed by signal {signum} ({name})")
    code = reply.get("exit_code")
    if isinstance(code, int) and code != 0:
        return _diagnose(ErrorKind.runtime_error, f"exit status {code}")
    return None


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
    restarted: bool,
    stdout: str,
    stderr: str,
    result: str | None,
    error: ErrorDiagnostic | None,
    notes: list[str] | None = None,
) -> str:
    """The text the model reads: output, then the trailing value, then the error, then what
    was cut or dropped."""
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
    parts += [f"[{note}]" for note in notes or []]
    return "\n".join(parts)


_pending: set[asyncio.Task[Any]] = set()


def _later(coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _pending.add(task)
    task.add_done_callback(_pending.discard)
