"""The ``bash`` tool: a bash command in the session's workspace."""

from __future__ import annotations

from pydantic import BaseModel, Field
from toolfleet.core.protocol import ErrorKind, TextPart
from toolfleet.core.tool import CallContext, ToolArguments, ToolResult
from toolfleet.sandbox.render import _process_error, _render, _strings, _text
from toolfleet.sandbox.service import SandboxTool


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
