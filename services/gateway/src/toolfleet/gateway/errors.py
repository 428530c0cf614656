"""How the gateway turns exceptions into HTTP errors. Every error body is JSON:
``{"error": {"code": ..., "message": ..., ...}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from toolfleet.core.errors import ToolfleetError
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
    """Register the handlers on ``app``: toolfleet's errors (each says its status, code and
    Retry-After), malformed requests, the framework's HTTP errors, and anything else."""

    @app.exception_handler(ToolfleetError)
    async def toolfleet_error(_: Request, exc: ToolfleetError) -> JSONResponse:
        return error_response(
            exc.status, exc.code, exc.message(), headers=exc.headers(), **exc.details()
        )

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
