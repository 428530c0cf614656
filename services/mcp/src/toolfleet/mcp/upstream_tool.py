"""A tool of an MCP upstream, served under its prefix (``memory.create_entities``).

Its schema is the server's ``inputSchema``, as the server lists it (closed: unknown keys are
refused, as for every toolfleet tool). The executor validates arguments with a model made
from that schema's properties (names, required ones), so an unknown or missing key is the
usual ``invalid_arguments`` naming it; the full schema (types, enums, ranges) is checked
with ``jsonschema`` before the call goes out. The result's content becomes the observation's
parts (text, images, resources as text), ``structuredContent`` its ``data``, and
``isError`` a ``runtime_error`` diagnostic carrying the server's words.

A call that fails (an error result, a JSON-RPC error) may have named a tool the server no
longer has: its tools are listed again (unless listed in the last ``RELIST_AFTER_ERROR_S``)
and, when the tool is gone, the call answers ``not_found`` naming the upstream (the tool
leaves the catalogue with that listing).
"""

from __future__ import annotations

import base64
import copy
import time
from typing import Any

import jsonschema
import mcp_types as types
from pydantic import BaseModel, ConfigDict, Field, create_model
from toolfleet.core.errors import ToolError
from toolfleet.core.protocol import ErrorDiagnostic, ErrorKind, ImagePart, TextPart, ToolSpec
from toolfleet.core.tool import CallContext, Tool, ToolResult, closed_schema
from toolfleet.mcp.upstream import (
    Connection,
    SessionLost,
    SessionServer,
    Upstream,
    UpstreamDown,
    down_error,
)

from mcp.shared.exceptions import MCPError

#: A failed call lists its upstream's tools again unless they were listed this recently.
RELIST_AFTER_ERROR_S = 2.0


class UpstreamArguments(BaseModel):
    """Base of the argument models made from upstream schemas."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)


def arguments_model(name: str, schema: dict[str, Any]) -> type[BaseModel]:
    """A model with one field per property of ``schema`` (any value: types are checked
    against the schema itself), required as the schema says; field names are safe
    identifiers, aliased to the property names."""
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    fields: dict[str, Any] = {}
    for i, prop in enumerate(properties):
        default = ... if prop in required else None
        fields[f"p{i}"] = (Any, Field(default=default, alias=prop))
    safe = "".join(c if c.isalnum() else "_" for c in name)
    return create_model(f"Args_{safe}", __base__=UpstreamArguments, **fields)


class UpstreamTool(Tool[BaseModel]):
    """One tool of an upstream MCP server."""

    name = "upstream"  # set per instance
    description = ""

    def __init__(self, service: Any, upstream: Upstream, tool: types.Tool, name: str) -> None:
        super().__init__(service)
        self.upstream = upstream
        self.remote_name = tool.name
        self.name = name  # type: ignore[misc]
        self.description = (tool.description or tool.title or tool.name).strip()  # type: ignore[misc]
        self.schema = copy.deepcopy(tool.input_schema or {"type": "object"})
        self.Arguments = arguments_model(name, self.schema)  # type: ignore[misc]
        self.stateful = upstream.config.stateful  # type: ignore[misc]
        self.cost = upstream.config.cost  # type: ignore[misc]
        self.output_schema = copy.deepcopy(tool.output_schema) if tool.output_schema else None
        self._validator = _validator(self.schema)
        self.state_key = f"mcp:{upstream.config.name}"

    def spec(self) -> ToolSpec:
        return ToolSpec(
            name=self.name,
            description=self.description,
            input_schema=closed_schema(copy.deepcopy(self.schema)),
            output_schema=self.output_schema,
            service=self.service,
            stateful=self.stateful,
        )

    async def call(self, args: BaseModel, ctx: CallContext) -> ToolResult:
        arguments = args.model_dump(by_alias=True, exclude_unset=True)
        self._check(arguments)
        # the SDK's own read timeout a little later than the call's: the executor's timeout
        # (a `timeout` diagnostic) is the one that fires
        timeout_s = max(0.05, ctx.deadline - time.monotonic()) + 1.0
        note = None
        if self.stateful:
            server: SessionServer | None = ctx.state(self.state_key)
            if server is None:
                server = SessionServer(self.upstream)
                ctx.set_state(self.state_key, server)  # needs a session: a clear error if none
            try:
                connection, note = await server.get()
                result = await self._call(connection, arguments, timeout_s)
            except UpstreamDown as exc:
                raise down_error(
                    exc, "the session gets a new server, which starts empty."
                ) from None
        else:
            try:
                connection, restarted = await self.upstream.pooled()
                try:
                    result = await self._call(connection, arguments, timeout_s)
                except SessionLost:
                    # the request was not run and no state is lost: sent again at once on a
                    # new session (the pool replaces the lost one)
                    connection, _ = await self.upstream.pooled()
                    result = await self._call(connection, arguments, timeout_s)
                    restarted = True
            except UpstreamDown as exc:
                raise down_error(exc, "the server is restarted for the next call.") from None
            if restarted:
                note = f"(the {self.upstream.config.name} server had stopped and was restarted)"
        out = to_tool_result(result, self.name)
        if note:
            out.content.insert(0, TextPart(text=note))
        return out

    async def _call(
        self, connection: Connection, arguments: dict[str, Any], timeout_s: float
    ) -> Any:
        """tools/call on ``connection``; a failure that the tool is gone explains is told as
        ``not_found``."""
        try:
            result = await connection.call(self.remote_name, arguments, timeout_s)
        except MCPError:
            await self._check_listed(connection)
            raise
        if result.is_error:
            await self._check_listed(connection)
        return result

    async def _check_listed(self, connection: Connection) -> None:
        """Raise ``not_found`` when the server no longer lists this tool."""
        upstream = self.upstream.config.name
        if await self.upstream.lacks(self.remote_name, connection, RELIST_AFTER_ERROR_S):
            raise ToolError(
                ErrorKind.not_found,
                f"{self.name}: the {upstream} MCP server no longer has the tool "
                f"{self.remote_name!r} (its tool list changed; toolfleet's list is updated)",
                hint="List the tools again (GET /v1/tools, tools/list or find_tools) and call "
                "one that is there.",
            )

    def _check(self, arguments: dict[str, Any]) -> None:
        if self._validator is None:
            return
        errors = sorted(self._validator.iter_errors(arguments), key=lambda e: list(e.path))
        if not errors:
            return
        problems = [
            f"{'.'.join(str(p) for p in e.path) or '(arguments)'}: {e.message}" for e in errors
        ]
        raise ToolError(
            ErrorKind.invalid_arguments,
            "the arguments do not match the tool's schema: " + "; ".join(problems[:5]),
            detail="\n".join(problems),
            hint="Fix the named arguments and call again; the tool list gives the schema.",
        )


def _validator(schema: dict[str, Any]) -> Any:
    """A JSON Schema validator of the upstream's schema (None when the schema is broken:
    the server then judges the arguments alone)."""
    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
        return cls(schema)
    except jsonschema.SchemaError:
        return None


def to_tool_result(result: Any, tool: str) -> ToolResult:
    """An MCP ``CallToolResult`` as a toolfleet result."""
    parts: list[Any] = []
    texts: list[str] = []
    for block in result.content or []:
        if isinstance(block, types.TextContent):
            parts.append(TextPart(text=block.text))
            texts.append(block.text)
        elif isinstance(block, types.ImageContent):
            parts.append(_image(block))
        elif isinstance(block, types.AudioContent):
            parts.append(TextPart(text=f"[audio {block.mime_type}, not shown]"))
        elif isinstance(block, types.EmbeddedResource):
            res = block.resource
            if isinstance(res, types.TextResourceContents):
                parts.append(TextPart(text=res.text))
                texts.append(res.text)
            else:
                parts.append(TextPart(text=f"[resource {res.uri} ({res.mime_type}), binary]"))
        elif isinstance(block, types.ResourceLink):
            parts.append(TextPart(text=f"[resource {block.name}: {block.uri}]"))
    structured = result.structured_content
    data = structured if isinstance(structured, dict) else None
    if structured is not None and data is None:
        data = {"result": structured}
    error = None
    if result.is_error:
        said = "\n".join(texts).strip()
        first = said.splitlines()[0] if said else "the tool reported an error"
        error = ErrorDiagnostic(
            kind=ErrorKind.runtime_error,
            message=f"{tool}: {first}"[:500],
            detail=said[:4000] or None,
            hint="The tool reported this error; read it, fix the call and try again.",
        )
    if not parts and data is None and error is None:
        parts.append(TextPart(text="(no output)"))
    return ToolResult(content=parts, data=data, error=error)


def _image(block: Any) -> ImagePart | TextPart:
    try:
        raw = base64.b64decode(block.data, validate=False)
    except ValueError:
        return TextPart(text=f"[image {block.mime_type}: undecodable]")
    width, height = image_size(raw)
    return ImagePart(mime_type=block.mime_type, data=block.data, width=width, height=height)


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG, GIF or JPEG from its header (0, 0 when unknown)."""
    from toolfleet.sandbox.routes.verl_tool_tools import image_size as jpeg_or_png

    if data[:6] in (b"GIF87a", b"GIF89a"):
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    return jpeg_or_png(data)
