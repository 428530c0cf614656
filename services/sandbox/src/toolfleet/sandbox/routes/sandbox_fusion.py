"""SandboxFusion's ``POST /run_code``, drop-in: code runs as a program (``python main.py``,
``pytest main.py``, ``bash main.sh``, and whatever other languages the sandbox's
``run_program`` tool runs) in a fresh sandbox, with its stdin, files in and out (relative to
the run's directory, or absolute under the run's own ``/tmp`` and ``/mnt``), time and memory
limits, and the answer in SandboxFusion's shape (``status`` Success / Failed / SandboxError,
``run_result`` {status Finished / Error / TimeLimitExceeded, execution_time, return_code,
stdout, stderr}, ``files``).

The route is one call of the sandbox's ``run_program`` tool through the runtime (so it works
in distributed mode), ``language`` passed through (the tool says which it runs): the
family's supervisor writes the files, runs the program, and takes its exit status, time and
output from its own records (``wait4``, the pipes it reads), and fetches the files after
every process of the run is gone. Nothing the program or a process it leaves behind does can
change the verdict.

Where it departs from SandboxFusion, it says so in ``message`` (empty there unless the
sandbox failed), never in ``stdout``, which graders parse: output cut at the sandbox's
output cap, files not written or not fetched, a request over the sandbox's caps (memory,
time), a run that ran into one (memory, file size, processes, disk).

The body is read here, not by the framework: it may be large (a grader's stdin and files;
its limit is the gateway's ``path_body_bytes["/run_code"]``), and it is JSON whatever the
content type says, as SandboxFusion's clients send it.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from toolfleet.core.protocol import CallRequest, ErrorKind
from toolfleet.gateway.auth import Tenant
from toolfleet.gateway.errors import error_response
from toolfleet.gateway.openapi_docs import examples
from toolfleet.gateway.routes.tools import runtime

router = APIRouter(tags=["compatibility"])

# SandboxFusion's names for what run_program calls otherwise; any other is passed through.
ALIASES = {"python3": "python", "sh": "bash"}
# SandboxFusion's languages: one the sandbox does not run is its SandboxError, any other
# name a 422, as SandboxFusion's request model refuses it
SANDBOX_FUSION_LANGUAGES = frozenset(
    [
        "python",
        "cpp",
        "nodejs",
        "go",
        "go_test",
        "java",
        "php",
        "csharp",
        "bash",
        "typescript",
        "sql",
        "rust",
        "cuda",
        "lua",
        "R",
        "perl",
        "D_ut",
        "ruby",
        "scala",
        "julia",
        "pytest",
        "junit",
        "kotlin_script",
        "jest",
        "verilog",
        "python_gpu",
        "lean",
        "swift",
        "racket",
    ]
)
EXAMPLE = {"code": "print(int(input()) * 2)", "language": "python", "stdin": "21", "run_timeout": 5}
ANSWER = {
    "status": "Success",
    "message": "",
    "compile_result": None,
    "run_result": {
        "status": "Finished",
        "execution_time": 0.01,
        "return_code": 0,
        "stdout": "42\n",
        "stderr": "",
    },
    "executor_pod_name": None,
    "files": {},
}


class RunCodeRequest(BaseModel):
    """SandboxFusion's run_code request. Fields it does not know are ignored, as
    SandboxFusion ignores them, and named in the answer's ``message`` (a misspelt
    ``run_timout`` must not pass unnoticed)."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="The program's source.")
    language: str = Field(
        description="python (python3), pytest, bash, or another language the sandbox runs."
    )
    compile_timeout: float = Field(default=10, description="Compile time limit (s).")
    run_timeout: float = Field(default=10, gt=0, description="Run time limit (s).")
    memory_limit_MB: int = Field(default=-1, description="Memory limit (MiB); -1: the cap.")
    stdin: str | None = Field(default=None, description="Standard input of the program.")
    files: dict[str, str | None] = Field(
        default_factory=dict,
        description="Files to create first: path (relative, or under /tmp or /mnt) -> base64.",
    )
    fetch_files: list[str] = Field(
        default_factory=list, description="Files to return after the run (base64)."
    )


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


def _message(body: RunCodeRequest, notes: list[str]) -> str:
    """The answer's ``message``: ``notes``, then the request's fields not read here."""
    if body.model_extra:
        names = ", ".join(sorted(body.model_extra))
        notes = [*notes, f"fields not read (ignored, as SandboxFusion does): {names}"]
    return "; ".join(notes)


def _sandbox_error(message: str) -> RunCodeResponse:
    return RunCodeResponse(status="SandboxError", message=message)


async def _parse(request: Request) -> RunCodeRequest:
    """The request body, as JSON whatever its content type; 422 in the gateway's shape."""
    raw = await request.body()
    try:
        body: Any = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestValidationError(
            [{"loc": ("body",), "msg": f"the body is not JSON: {exc}", "type": "json_invalid"}]
        ) from exc
    del raw
    try:
        return RunCodeRequest.model_validate(body)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from exc


@router.post(
    "/run_code",
    summary="SandboxFusion run_code (drop-in)",
    response_model=RunCodeResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": RunCodeRequest.model_json_schema(),
                    "example": EXAMPLE,
                }
            },
        },
        **examples(EXAMPLE, ANSWER),
    },
)
async def run_code(request: Request, tenant: Tenant) -> RunCodeResponse | JSONResponse:
    """Run a program as SandboxFusion does."""
    body = await _parse(request)
    rt = runtime(request)
    if not rt.has_tool("run_program"):
        return _sandbox_error("the sandbox service is not served by this gateway")
    arguments: dict[str, Any] = {
        "language": ALIASES.get(body.language, body.language),
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
        said = [obs.error.message] if obs.error else []
        return RunCodeResponse(status="Failed", message=_message(body, said),
                               compile_result=compiled)  # fmt: skip
    if "status" not in data:
        error = obs.error.message if obs.error else "unknown"
        if obs.error is not None and obs.error.kind is ErrorKind.invalid_arguments:
            language = arguments["language"]
            if language not in SANDBOX_FUSION_LANGUAGES:
                return error_response(422, "invalid_request", error)
            if "language" in error:
                return _sandbox_error(f"language {language!r} is not run here: {error}")
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
        message=_message(body, data.get("notes") or []),
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
