"""The ``python`` tool: Python run like a Jupyter cell, in the session's kernel."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from toolfleet.core.protocol import ErrorDiagnostic, ErrorKind, TextPart
from toolfleet.core.tool import CallContext, ToolArguments, ToolResult
from toolfleet.sandbox import runtime
from toolfleet.sandbox.render import _diagnose, _diagnostic, _image, _render, _strings, _text
from toolfleet.sandbox.service import Sandbox, SandboxTool


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
