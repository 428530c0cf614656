"""The hidden ``workspace`` tool: a session's files, for the REST files API."""

from __future__ import annotations

import base64
import binascii
from typing import Any, ClassVar, Literal

from pydantic import Field
from toolfleet.core.protocol import ErrorKind
from toolfleet.core.tool import CallContext, ToolArguments, ToolError, ToolResult
from toolfleet.sandbox.render import _diagnose, _diagnostic
from toolfleet.sandbox.service import SandboxTool


class FileArgs(ToolArguments):
    """A workspace file operation (used by the REST files API)."""

    action: Literal["write", "read", "list"] = Field(description="What to do.")
    path: str = Field(default="", max_length=4096, description="Path in the workspace.")
    data: str | None = Field(default=None, description="base64 content to write.")


FILE_OPS = {"write": "write_file", "read": "read_file", "list": "list_files"}


class WorkspaceTool(SandboxTool[FileArgs]):
    """Session workspace files. Hidden from the model's tool list; the
    ``/v1/sessions/{id}/files`` routes (:mod:`toolfleet.sandbox.routes.files`) call it. Done
    by the supervisor, never by the interpreter: what it reads is what is on the session's
    disk."""

    name = "workspace"
    description = "Read, write and list files in a session's working directory."
    Arguments = FileArgs
    hidden: ClassVar[bool] = True

    async def call(self, args: FileArgs, ctx: CallContext) -> ToolResult:
        if ctx.session_id is None:
            raise ToolError(ErrorKind.invalid_arguments, "workspace files need a session")
        limit = self.sandbox.settings.max_file_bytes
        fields: dict[str, Any] = {"path": args.path}
        if args.action == "write":
            try:
                data = base64.b64decode(args.data or "", validate=True)
            except binascii.Error as exc:
                raise ToolError(ErrorKind.invalid_arguments, f"data is not base64: {exc}") from exc
            if len(data) > limit:
                raise ToolError(
                    ErrorKind.output_limit,
                    f"the file is {len(data)} bytes, over the limit of {limit}",
                )
            fields["data"] = args.data or ""
        elif args.action == "read":
            fields["max_bytes"] = limit
        reply, _ = await self.sandbox.request(ctx, FILE_OPS[args.action], **fields)
        if not reply.get("ok"):
            error = _diagnostic(reply.get("error")) or _diagnose(ErrorKind.internal, "failed")
            raise ToolError(error.kind, error.message)
        data = {k: v for k, v in reply.items() if k not in ("id", "ok")}
        return ToolResult(data=data)
