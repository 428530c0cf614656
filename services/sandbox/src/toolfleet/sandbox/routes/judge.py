"""``POST /v1/judge``: the judge tool with its arguments as the body (one program, N test
cases, one round trip). The answer is the call's observation, as ``/v1/tools/judge/call``
gives it: ``data`` holds the verdict, ``passed``/``total`` and the per-case results."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from toolfleet.core.protocol import CallRequest, Observation
from toolfleet.gateway.auth import Tenant
from toolfleet.gateway.openapi_docs import OBSERVATION, examples
from toolfleet.gateway.routes.tools import runtime

router = APIRouter(tags=["sandbox"])

MARGIN_S = 30.0  # compile, checker and the sandbox's own overhead beyond the cases' time


EXAMPLES = examples(
    {"language": "python", "code": "print(sum(map(int, input().split())))",
     "cases": [{"stdin": "2 3", "expected_stdout": "5"}], "checker": "whitespace"},
    {**OBSERVATION, "tool": "judge", "content": [{"type": "text", "text": "AC: 1/1 passed"}],
     "data": {"verdict": "AC", "passed": 1, "total": 1, "score": 1.0, "cases": [{"index": 0,
     "verdict": "AC", "time_s": 0.012, "cpu_s": 0.01, "memory_mb": 9.5, "exit_code": 0,
     "signal": None, "stdout": "5\n", "stderr": "", "message": ""}], "compile": None,
     "wall_s": 0.02}},
)  # fmt: skip


@router.post(
    "/v1/judge",
    summary="Judge a program against test cases",
    response_model=None,
    openapi_extra=EXAMPLES,
)
async def judge(
    request: Request, tenant: Tenant, body: Annotated[dict[str, Any], Body()]
) -> Observation:
    """Judge a program: the body holds the judge tool's arguments (``language``, ``code``,
    ``cases``, ``checker`` ...) and an optional ``timeout_s`` for the whole call."""
    arguments = dict(body)
    timeout = arguments.pop("timeout_s", None)
    if timeout is None:
        cases = arguments.get("cases")
        per_case = arguments.get("time_limit_s", 5.0)
        count = len(cases) if isinstance(cases, list) else 1
        if isinstance(per_case, int | float):
            timeout = min(600.0, MARGIN_S + float(per_case) * max(1, count // 2))
    request_body = CallRequest(arguments=arguments)
    if isinstance(timeout, int | float) and timeout > 0:
        request_body = CallRequest(arguments=arguments, timeout_s=float(timeout))
    return await runtime(request).call(tenant, "judge", request_body)
