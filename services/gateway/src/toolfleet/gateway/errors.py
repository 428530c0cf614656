"""How the gateway turns exceptions into HTTP errors. Every error body is JSON:
``{"error": {"code": ..., "message": ..., ...}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from toolfleet.core.dispatch import DispatchError, OverloadedError
from toolfleet.core.registry import UnknownToolError
from toolfleet.core.runtime import TrajectoryNotFoundError
from toolfleet.core.sessions import SessionLimitError, SessionNotFoundError
from toolfleet.gateway.responses import SafeJSONResponse

log = logging.getLogger(__name__)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A JSON error body in the gateway's one shape."""
    return SafeJSONResponse(
        {"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {
                "path": ".".join(str(p) for p in err["loc"]),
                "message": err["msg"],
                "type": err["type"],
            }
            for err in exc.errors()
        ]
        summary = "; ".join(f"{f['path']}: {f['message']}" for f in fields[:5])
        return error_response(422, "invalid_request", summary, fields=fields)

    @app.exception_handler(UnknownToolError)
    async def unknown_tool(_: Request, exc: UnknownToolError) -> JSONResponse:
        return error_response(404, "unknown_tool", str(exc), available=exc.available)

    @app.exception_handler(SessionNotFoundError)
    async def unknown_session(_: Request, exc: SessionNotFoundError) -> JSONResponse:
        return error_response(404, "session_not_found", str(exc), session_id=exc.session_id)

    @app.exception_handler(TrajectoryNotFoundError)
    async def unknown_trajectory(_: Request, exc: TrajectoryNotFoundError) -> JSONResponse:
        return error_response(
            404, "trajectory_not_found", str(exc), trajectory_id=exc.trajectory_id
        )

    @app.exception_handler(OverloadedError)
    async def overloaded(_: Request, exc: OverloadedError) -> JSONResponse:
        return error_response(
            429,
            "overloaded",
            f"too many calls in flight or queued ({exc}); retry later",
            headers={"Retry-After": str(exc.retry_after_s)},
            retry_after_s=exc.retry_after_s,
        )

    @app.exception_handler(SessionLimitError)
    async def session_limit(_: Request, exc: SessionLimitError) -> JSONResponse:
        return error_response(503, "session_limit", str(exc), headers={"Retry-After": "5"})

    @app.exception_handler(DispatchError)
    async def dispatch_failed(_: Request, exc: DispatchError) -> JSONResponse:
        return error_response(503, "unavailable", str(exc), headers={"Retry-After": "1"})

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal", f"internal error: {type(exc).__name__}")
