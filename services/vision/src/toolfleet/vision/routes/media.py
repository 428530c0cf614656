"""``/v1/sessions/{id}/media``: images and videos uploaded into a session, for the vision
tools to work on.

The media live where the session's vision tools run, so these routes are calls of the vision
service's hidden ``media`` tool, carried by the dispatcher like any other call (in
distributed mode they reach the worker that holds the session). Files are stored
content-addressed (the same bytes are kept once) and released when the session ends; tools
name them by id or by their 1-based number in the session's image (or video) list.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from toolfleet.core.protocol import Observation
from toolfleet.gateway.auth import Tenant
from toolfleet.gateway.openapi_docs import examples
from toolfleet.gateway.responses import SafeJSONResponse
from toolfleet.gateway.tool_routes import call_tool

router = APIRouter(prefix="/v1/sessions/{session_id}/media", tags=["sessions"])

MEDIA_TOOL = "media"


class MediaSource(BaseModel):
    """Body of ``POST /v1/sessions/{id}/media``: exactly one source of the file."""

    model_config = ConfigDict(extra="forbid")

    data: str | None = Field(default=None, description="The file's bytes, base64.")
    path: str | None = Field(
        default=None, description="A file under the server's media root (relative to it)."
    )
    url: str | None = Field(
        default=None, description="An http(s) URL on an allowed host (when URL fetching is on)."
    )


async def _media(
    request: Request, tenant: str, session_id: str, **arguments: Any
) -> Observation | Response:
    return await call_tool(
        request,
        tenant,
        MEDIA_TOOL,
        arguments,
        session_id=session_id,
        missing="session media need the vision service, which is not served",
    )


MEDIA = {"index": 1, "id": "img-3f2a", "kind": "image", "width": 640, "height": 480}  # /docs


def _answer(obs: Observation | Response, status: int = 200) -> Any:
    if isinstance(obs, Response):
        return obs
    return SafeJSONResponse(obs.data or {}, status_code=status)


@router.put(
    "",
    status_code=201,
    summary="Upload an image or a video into a session",
    openapi_extra=examples(
        "<the image or video bytes>",
        MEDIA,
        raw_body="The image (PNG, JPEG, WebP ...) or video (MP4 ...).",
    ),
)
async def upload_media(session_id: str, request: Request, tenant: Tenant) -> Any:
    """The request body (the file's raw bytes) is checked (a supported, decodable image or
    video within the size and pixel limits), stored, and appended to the session's image or
    video list. Answers its id, its number in the list, size and (videos) duration, fps and
    frame count."""
    data = await request.body()
    obs = await _media(
        request, tenant, session_id, action="add", data=base64.b64encode(data).decode()
    )
    return _answer(obs, 201)


@router.post(
    "",
    status_code=201,
    summary="Add media to a session from base64, a path or a URL",
    openapi_extra=examples({"data": "iVBORw0KGgo..."}, MEDIA),
)
async def add_media(session_id: str, body: MediaSource, request: Request, tenant: Tenant) -> Any:
    """Like the upload, from base64 ``data``, a ``path`` under the server's media root, or a
    ``url`` on an allowed host (only when URL fetching is on)."""
    arguments = body.model_dump(exclude_none=True)
    obs = await _media(request, tenant, session_id, action="add", **arguments)
    return _answer(obs, 201)


@router.get(
    "",
    summary="List a session's images and videos",
    openapi_extra=examples(None, {"images": [MEDIA], "videos": []}),
)
async def list_media(session_id: str, request: Request, tenant: Tenant) -> Any:
    """Every image (uploads and tool results, in list order) and video of the session."""
    return _answer(await _media(request, tenant, session_id, action="list"))


@router.get(
    "/{ref}",
    summary="Download an image or a video of a session",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "video/mp4": {}}}},
    openapi_extra=examples(None, MEDIA),
)
async def download_media(
    session_id: str,
    ref: str,
    request: Request,
    tenant: Tenant,
    kind: Annotated[Literal["image", "video"], Query()] = "image",
) -> Response:
    """The stored file, named by id or by its number in the session's image (or, with
    ``?kind=video``, video) list."""
    obs = await _media(request, tenant, session_id, action="get", ref=ref, kind=kind)
    if isinstance(obs, Response):
        return obs
    found = obs.data or {}
    return Response(
        base64.b64decode(found.get("data", "")),
        media_type=found.get("info", {}).get("mime_type", "application/octet-stream"),
    )
