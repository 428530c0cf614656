"""Routes that are a tool call underneath (session files, media, drop-in compat routes): the
call goes through the runtime like any other, and a failed observation becomes an HTTP error
in the gateway's one shape, its status chosen by the diagnostic's kind."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from toolfleet.core.protocol import CallRequest, ErrorKind, Observation
from toolfleet.gateway.errors import error_response

STATUS = {
    ErrorKind.invalid_arguments: 400,
    ErrorKind.not_found: 404,
    ErrorKind.session_expired: 404,
    ErrorKind.permission_denied: 403,
    ErrorKind.output_limit: 413,
    ErrorKind.memory_limit: 413,
    ErrorKind.rate_limited: 429,
    ErrorKind.unavailable: 503,
    ErrorKind.timeout: 504,
}


async def call_tool(
    request: Request,
    tenant: str,
    tool: str,
    arguments: dict[str, Any],
    *,
    session_id: str | None = None,
    missing: str | None = None,
) -> Observation | Response:
    """The tool's observation, or the HTTP error to answer with (404 with ``missing`` when
    the tool is not served, else the diagnostic's status)."""
    rt = request.app.state.runtime
    if missing is not None and not rt.has_tool(tool):
        return error_response(404, f"no_{tool}", missing)
    obs = await rt.call(tenant, tool, CallRequest(arguments=arguments, session_id=session_id))
    if not obs.ok and obs.error is not None:
        return error_response(
            STATUS.get(obs.error.kind, 400),
            obs.error.kind.value,
            obs.error.message,
            hint=obs.error.hint,
        )
    return obs
