"""The hidden ``media`` tool: adds, lists and reads a session's images and videos.

The gateway's ``/v1/sessions/{id}/media`` routes call it, so an upload travels through the
dispatcher like any call and lands in the process that holds the session (in distributed
mode, the vision worker bound to it). Models never see it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import ClassVar, Literal

from pydantic import Field
from toolfleet.core.protocol import ErrorKind
from toolfleet.core.tool import CallContext, ToolArguments, ToolError, ToolResult
from toolfleet.vision.service import VisionTool, b64
from toolfleet.vision.sources import fetch_url, read_path

INLINE_B64 = 1 << 20  # base64 text shorter than this is decoded on the event loop


class MediaArgs(ToolArguments):
    """A media operation on a session (used by the REST media API)."""

    action: Literal["add", "list", "get"] = Field(description="What to do.")
    data: str | None = Field(default=None, description="add: the file, base64.")
    path: str | None = Field(
        default=None, max_length=4096, description="add: a file under the media root."
    )
    url: str | None = Field(
        default=None, max_length=4096, description="add: an http(s) URL on an allowed host."
    )
    ref: int | str | None = Field(default=None, description="get: an index or an id.")
    kind: Literal["image", "video"] = Field(default="image", description="get: which list.")


class MediaTool(VisionTool[MediaArgs]):
    """A session's media files. Hidden from the model's tool list."""

    name = "media"
    description = "Add, list and read the images and videos of a session."
    Arguments = MediaArgs
    hidden: ClassVar[bool] = True
    cost = 0.0

    async def call(self, args: MediaArgs, ctx: CallContext) -> ToolResult:
        if ctx.session_id is None:
            raise ToolError(ErrorKind.invalid_arguments, "media needs a session")
        vision = self.vision
        if args.action == "list":
            described = vision.media(ctx).describe()
            return ToolResult(data={k: [i.model_dump() for i in v] for k, v in described.items()})
        if args.action == "get":
            if args.ref is None:
                raise ToolError(ErrorKind.invalid_arguments, "get needs ref (an index or an id)")
            index, blob = vision.media(ctx).resolve(args.ref, args.kind)
            info = blob.info.model_copy(update={"index": index})
            if blob.size < INLINE_B64:
                text = b64(blob.data)
            else:
                text = await vision.pool.run(ctx.deadline, b64, blob.data)
            return ToolResult(data={"info": info.model_dump(), "data": text})
        data = await self._source(args, ctx)
        info = await vision.add_upload(ctx, data)
        return ToolResult(data=info.model_dump())

    async def _source(self, args: MediaArgs, ctx: CallContext) -> bytes:
        """The bytes to add: from exactly one of data, path and url."""
        given = [name for name in ("data", "path", "url") if getattr(args, name) is not None]
        if len(given) != 1:
            raise ToolError(
                ErrorKind.invalid_arguments,
                "add needs exactly one of data (base64), path or url"
                + (f"; got {', '.join(given)}" if given else ""),
            )
        s = self.vision.settings
        if args.path is not None:
            return await asyncio.to_thread(read_path, args.path, s)
        if args.url is not None:
            return await asyncio.to_thread(fetch_url, args.url, s)
        text = args.data or ""
        limit = max(s.max_image_bytes, s.max_video_bytes)
        if len(text) * 3 // 4 > limit + 3:
            raise ToolError(
                ErrorKind.output_limit,
                f"the upload is about {len(text) * 3 // 4} bytes, over the limit of {limit}",
            )
        if len(text) < INLINE_B64:
            return _b64decode(text)
        return await self.vision.pool.run(ctx.deadline, _b64decode, text)


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ToolError(ErrorKind.invalid_arguments, f"data is not base64: {exc}") from None
