"""``/v1/sessions/{id}/files``: upload into and download out of a session's workspace.

The files live where the session's sandbox kernel runs, so these routes are calls of the
sandbox's hidden ``workspace`` tool, carried by the dispatcher like any other call.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Request, Response
from toolfleet.core.protocol import Observation, TextPart
from toolfleet.core.surrogates import NOTE_PREFIX as NOTE
from toolfleet.gateway.auth import Tenant
from toolfleet.gateway.openapi_docs import examples
from toolfleet.gateway.tool_routes import call_tool

router = APIRouter(prefix="/v1/sessions/{session_id}/files", tags=["sessions"])

WORKSPACE_TOOL = "workspace"
FILE = {"path": "data.csv", "size": 12}  # /docs examples
CSV = "a,b\n1,2\n3,4\n"


async def _workspace(
    request: Request, tenant: str, session_id: str, **arguments: Any
) -> Observation | Response:
    return await call_tool(
        request,
        tenant,
        WORKSPACE_TOOL,
        arguments,
        session_id=session_id,
        missing="session files need the sandbox service, which is not served",
    )


@router.get("", summary="List a session's files", openapi_extra=examples(None, {"files": [FILE]}))
async def list_files(session_id: str, request: Request, tenant: Tenant) -> Any:
    """Every file in the session's working directory, with its size. A name that is not
    valid UTF-8 is shown with U+FFFD in place of its bad bytes, and ``notes`` says so."""
    obs = await _workspace(request, tenant, session_id, action="list")
    if isinstance(obs, Response):
        return obs
    notes = [p.text for p in obs.content if isinstance(p, TextPart) and p.text.startswith(NOTE)]
    return {**(obs.data or {}), "notes": notes} if notes else obs.data


@router.put(
    "/{path:path}",
    summary="Upload a file into a session",
    openapi_extra=examples(CSV, FILE, raw_body="The file's bytes (any type)."),
)
async def upload(session_id: str, path: str, request: Request, tenant: Tenant) -> Any:
    """The request body (raw bytes) becomes the file at ``path`` (parents are created)."""
    data = await request.body()
    obs = await _workspace(
        request, tenant, session_id, action="write", path=path, data=base64.b64encode(data).decode()
    )
    return obs if isinstance(obs, Response) else obs.data


@router.get(
    "/{path:path}",
    summary="Download a file from a session",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
    openapi_extra=examples(None, CSV),
)
async def download(session_id: str, path: str, request: Request, tenant: Tenant) -> Response:
    """The file's bytes."""
    obs = await _workspace(request, tenant, session_id, action="read", path=path)
    if isinstance(obs, Response):
        return obs
    return Response(
        base64.b64decode((obs.data or {}).get("data", "")), media_type="application/octet-stream"
    )
