"""The ``run_program`` tool: a program run once from source, in a fresh sandbox, as the
supervisor saw it (and what the judge shares with it: the language enum, compile errors)."""

from __future__ import annotations

import base64
import copy
from typing import Any, Literal

from pydantic import BaseModel, Field
from toolfleet.core.protocol import ErrorDiagnostic, ErrorKind, TextPart, ToolSpec
from toolfleet.core.tool import CallContext, ToolArguments, ToolError, ToolResult
from toolfleet.sandbox import caps, languages
from toolfleet.sandbox.pool import KernelHandle, later
from toolfleet.sandbox.programs import Compiled
from toolfleet.sandbox.programs import run as programs_run
from toolfleet.sandbox.render import (
    _diagnose,
    _diagnostic,
    _process_error,
    _render,
    _strings,
    _text,
)
from toolfleet.sandbox.service import SandboxTool

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
        if language in ("python", "pytest"):  # the fresh kernel becomes the program
            kernel = await self.sandbox._take(not self.sandbox.needs_full(args.code))
        else:
            kernel = await self.sandbox.take_family(light=True)
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
            if "python" in fields and isinstance(kernel, KernelHandle):
                fields["kernel"] = kernel.kid  # the fresh kernel becomes it: warm imports
            limit = min(limit, self.sandbox.time_left(ctx))
            reply = await programs_run(kernel.family, limit, prepared.artifacts, **fields)
        finally:
            later(kernel.close())
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
