"""SandboxFusion's ``POST /run_code``, drop-in: code runs as a program (``python main.py`` or
``bash main.sh``) in a fresh sandbox session, with its stdin, files in and out, time and
memory limits, and the answer in SandboxFusion's shape (``status`` Success / Failed /
SandboxError, ``run_result`` {status Finished / Error / TimeLimitExceeded, execution_time,
return_code, stdout, stderr}, ``files``).

The route is three calls of the sandbox's tools through the runtime (so it works in
distributed mode): a session is opened, the ``python`` tool runs a small driver inside it
(it writes the files, runs the program with ``subprocess`` under the limits and saves the
outcome as JSON), the hidden ``workspace`` tool reads the outcome back, and the session ends.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from toolfleet.core.protocol import CallRequest, SessionCreate
from toolfleet.gateway.auth import Tenant
from toolfleet.gateway.routes.tools import runtime

router = APIRouter(tags=["compatibility"])

PROGRAMS = {
    "python": ("main.py", "python"),
    "python3": ("main.py", "python"),
    "bash": ("main.sh", "bash"),
    "sh": ("main.sh", "bash"),
}
OUTCOME = ".toolfleet-run.json"
MAX_SPEC_CHARS = 900_000  # the python tool takes up to 1,000,000 characters of code
MAX_STREAM_BYTES = 1 << 20  # stdout and stderr kept per run

DRIVER = """
import base64, json, os, resource, subprocess, sys, time
spec = json.loads(base64.b64decode({spec!r}))
for name, data in spec["files"].items():
    path = os.path.normpath(name)
    if data is None or path.startswith(("/", "..")):
        continue
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(base64.b64decode(data))
with open(spec["source"], "w") as f:
    f.write(spec["code"])
command = [sys.executable if spec["runner"] == "python" else "bash", spec["source"]]
limit = spec["memory_mb"]
def limits():
    if limit > 0:  # within the sandbox's own limit, which stays the hard one
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        soft = limit << 20 if hard == resource.RLIM_INFINITY else min(limit << 20, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
started = time.monotonic()
try:
    done = subprocess.run(command, input=spec["stdin"].encode(), capture_output=True,
                          timeout=spec["timeout"], preexec_fn=limits)
    status, code, out, err = "Finished", done.returncode, done.stdout, done.stderr
except subprocess.TimeoutExpired as exc:
    status, code, out, err = "TimeLimitExceeded", None, exc.stdout or b"", exc.stderr or b""
elapsed = time.monotonic() - started
cap = spec["max_bytes"]
fetched = {{}}
for name in spec["fetch"]:
    try:
        with open(os.path.normpath(name), "rb") as f:
            fetched[name] = base64.b64encode(f.read()).decode()
    except OSError:
        pass
with open({outcome!r}, "w") as f:
    json.dump({{"status": status, "return_code": code, "execution_time": elapsed,
               "stdout": out[:cap].decode("utf-8", "replace"),
               "stderr": err[:cap].decode("utf-8", "replace"), "files": fetched}}, f)
"""


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
    """Run a program as SandboxFusion does; python and bash."""
    rt = runtime(request)
    program = PROGRAMS.get(body.language.lower())
    if program is None:
        return _sandbox_error(f"language {body.language!r} is not supported here (python, bash)")
    if not rt.has_tool("python") or not rt.has_tool("workspace"):
        return _sandbox_error("the sandbox service is not served by this gateway")
    spec = {
        "code": body.code,
        "source": program[0],
        "runner": program[1],
        "stdin": body.stdin or "",
        "files": body.files,
        "fetch": body.fetch_files,
        "timeout": body.run_timeout,
        "memory_mb": body.memory_limit_MB,
        "max_bytes": MAX_STREAM_BYTES,
    }
    encoded = base64.b64encode(json.dumps(spec).encode()).decode()
    if len(encoded) > MAX_SPEC_CHARS:
        return _sandbox_error("code and files are too large (at most about 650 KB)")
    driver = DRIVER.format(spec=encoded, outcome=OUTCOME)
    session = rt.create_session(tenant, SessionCreate(ttl_s=body.run_timeout + 120))
    try:
        ran = await rt.call(
            tenant,
            "python",
            CallRequest(
                arguments={"code": driver},
                session_id=session.session_id,
                timeout_s=body.run_timeout + body.compile_timeout + 10,
            ),
        )
        if not ran.ok:
            error = ran.error.message if ran.error else "unknown"
            return _sandbox_error(f"the sandbox could not run the program: {error}")
        read = await rt.call(
            tenant,
            "workspace",
            CallRequest(
                arguments={"action": "read", "path": OUTCOME}, session_id=session.session_id
            ),
        )
        if not read.ok or read.data is None:
            return _sandbox_error("the program's outcome could not be read back")
        outcome: dict[str, Any] = json.loads(base64.b64decode(read.data["data"]))
    finally:
        await rt.delete_session(tenant, session.session_id)
    result = CommandRunResult(
        status=outcome["status"],
        execution_time=round(outcome["execution_time"], 6),
        return_code=outcome["return_code"],
        stdout=outcome["stdout"],
        stderr=outcome["stderr"],
    )
    success = result.status == "Finished" and result.return_code == 0
    return RunCodeResponse(
        status="Success" if success else "Failed",
        run_result=result,
        files=outcome["files"],
    )
