"""SandboxFusion's ``POST /run_code``, drop-in: code runs as a program (``python main.py``
or ``bash main.sh``) in a fresh sandbox, with its stdin, files in and out, time and memory
limits, and the answer in SandboxFusion's shape (``status`` Success / Failed /
SandboxError, ``run_result`` {status Finished / Error / TimeLimitExceeded, execution_time,
return_code, stdout, stderr}, ``files``).

The route is one call of the sandbox's ``run_program`` tool through the runtime (so it works
in distributed mode): the family's supervisor writes the files, runs the program, and takes
its exit status, time and output from its own records (``wait4``, the pipes it
reads), and fetches the files after every process of the run is gone. Nothing the program or
a process it leaves behind does can change the verdict.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from toolfleet.core.protocol import CallRequest
from toolfleet.gateway.auth import Tenant
from toolfleet.gateway.routes.tools import runtime
from toolfleet.sandbox.languages import resolve

router = APIRouter(tags=["compatibility"])


class RunCodeRequest(BaseModel):
    """SandboxFusion's run_code request."""

    code: str
    language: str = "python"
    compile_timeout: float = 10
    run_timeout: float = 10
    memory_limit_MB: int = -1
    stdin: str | None = None
    files: dict[str, str | None] = Field(default_factory=dict)
    fetch_files: list[str] = Field(default_factory=list)


class CommandRunResult(BaseModel):
    """SandboxFusion's result of one command."""

    status: Literal["Finished", "Error", "TimeLimitExceeded"]
    execution_time: float | None = None
    return_code: int | None = None
    stdout: str | None = None
    stderr: str | None = None


class RunCodeResponse(BaseModel):
    """SandboxFusion's run_code response."""

    status: Literal["Success", "Failed", "SandboxError"]
    message: str = ""
    compile_result: CommandRunResult | None = None
    run_result: CommandRunResult | None = None
    executor_pod_name: str | None = None
    files: dict[str, str] = Field(default_factory=dict)


def _sandbox_error(message: str) -> RunCodeResponse:
    return RunCodeResponse(status="SandboxError", message=message)


@router.post("/run_code", summary="SandboxFusion run_code (drop-in)")
async def run_code(body: RunCodeRequest, request: Request, tenant: Tenant) -> RunCodeResponse:
    """Run a program as SandboxFusion does, in any language the sandbox offers."""
    rt = runtime(request)
    language = resolve(body.language)
    if language is None:
        return _sandbox_error(f"language {body.language!r} is not supported here")
    if not rt.has_tool("run_program"):
        return _sandbox_error("the sandbox service is not served by this gateway")
    arguments = {
        "language": language,
        "code": body.code,
        "stdin": body.stdin or "",
        "files": {k: v for k, v in body.files.items() if v is not None},
        "files_encoding": "base64",
        "fetch_files": body.fetch_files,
        "time_limit_s": body.run_timeout,
    }
    if body.memory_limit_MB > 0:
        arguments["memory_limit_mb"] = body.memory_limit_MB
    obs = await rt.call(
        tenant,
        "run_program",
        CallRequest(arguments=arguments, timeout_s=body.run_timeout + body.compile_timeout + 10),
    )
    data = obs.data or {}
    compiled = _command_result(data["compile"]) if data.get("compile") else None
    if data.get("status") == "compile_error":
        return RunCodeResponse(status="Failed", message=obs.error.message if obs.error else "",
                               compile_result=compiled)  # fmt: skip
    if "status" not in data:
        error = obs.error.message if obs.error else "unknown"
        return _sandbox_error(f"the sandbox could not run the program: {error}")
    exit_code, signum = data.get("exit_code"), data.get("signal")
    timed_out = data["status"] == "time_limit"
    if exit_code is None and signum and not timed_out:
        exit_code = -signum  # as SandboxFusion's subprocess reports a signal
    result = CommandRunResult(
        status="TimeLimitExceeded" if timed_out else "Finished",
        execution_time=data.get("time_s"),
        return_code=exit_code,
        stdout=data.get("stdout", ""),
        stderr=data.get("stderr", ""),
    )
    success = result.status == "Finished" and result.return_code == 0
    return RunCodeResponse(
        status="Success" if success else "Failed",
        message="; ".join(data.get("notes") or []),
        compile_result=compiled,
        run_result=result,
        files=data.get("files") or {},
    )


def _command_result(step: dict[str, Any]) -> CommandRunResult:
    """A compile step in SandboxFusion's shape (Error: it did not compile)."""
    status = step.get("status")
    return CommandRunResult(
        status="Finished"
        if status == "ok"
        else "TimeLimitExceeded"
        if status == "time_limit"
        else "Error",
        execution_time=step.get("time_s"),
        return_code=step.get("exit_code"),
        stdout=step.get("stdout", ""),
        stderr=step.get("stderr", ""),
    )
