"""``/mcp``: the tools over the Model Context Protocol (official ``mcp`` SDK, Streamable HTTP).

``tools/list`` comes from the same registry as ``GET /v1/tools`` (``inputSchema`` from each
tool's arguments model); ``tools/call`` runs through the runtime like a REST call, its
observation becoming text and image content plus ``structuredContent``; a tool's failure is
a result with ``isError: true`` (the model reads the diagnostic), an unknown tool a JSON-RPC
error. The transport is stateless (no MCP session is kept between requests), so any gateway
replica answers any request, and both the current protocol and the older session-based
clients (2025-03-26 onwards) are served. Host and Origin are checked against settings
(``mcp_allowed_hosts``, ``mcp_allowed_origins``) against DNS rebinding.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from toolfleet.core import __version__
from toolfleet.core.errors import SessionNotFoundError, UnknownToolError
from toolfleet.core.protocol import (
    CallRequest,
    ImagePart,
    JsonPart,
    Observation,
    TablePart,
    TextPart,
)
from toolfleet.core.runtime import Runtime
from toolfleet.core.settings import Settings
from toolfleet.core.surrogates import scrub_observation
from toolfleet.gateway.auth import tenant_of
from toolfleet.gateway.errors import error_response

TENANT = "toolfleet.tenant"  # where the endpoint leaves the caller's tenant in the scope


class MCPEndpoint:
    """The ASGI app mounted at exactly ``/mcp`` (no redirect to ``/mcp/``)."""

    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self.runtime = runtime
        self.server: Server[Any] = Server(
            "toolfleet",
            version=__version__,
            instructions="Sandboxed tools for language models: code interpreter, search, SQL, "
            "vision. Tool failures come back as results with isError and a diagnostic.",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=bool(
                settings.mcp_allowed_hosts or settings.mcp_allowed_origins
            ),
            allowed_hosts=settings.mcp_allowed_hosts,
            allowed_origins=settings.mcp_allowed_origins,
        )
        self.manager = StreamableHTTPSessionManager(
            self.server,
            stateless=True,
            json_response=True,
            security_settings=security,
            max_request_body_size=settings.max_body_bytes,
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The SDK's lifespan (its task group); entered by the gateway's lifespan."""
        async with self.manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            tenant = await tenant_of(Request(scope, receive))
        except HTTPException as exc:  # 401, in the gateway's error shape
            response = error_response(
                exc.status_code, "unauthorized", str(exc.detail), headers=exc.headers
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[TENANT] = tenant
        await self.manager.handle_request(scope, receive, send)

    # ------------------------------------------------------------------ handlers

    async def _list_tools(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        tools = [
            types.Tool(
                name=spec.name,
                description=spec.description,
                input_schema=spec.input_schema,
            )
            for spec in self.runtime.specs()
        ]
        return types.ListToolsResult(tools=tools)

    async def _call_tool(
        self, ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        tenant = _tenant(ctx)
        arguments = dict(params.arguments or {})
        options = _options(params, arguments)
        try:
            obs = await self.runtime.call(
                tenant,
                params.name,
                CallRequest(
                    arguments=arguments,
                    session_id=options.get("session_id"),
                    trajectory_id=options.get("trajectory_id"),
                    timeout_s=options.get("timeout_s"),
                ),
            )
        except UnknownToolError as exc:
            raise MCPError(
                types.INVALID_PARAMS, f"unknown tool: {params.name}", {"available": exc.available}
            ) from exc
        except SessionNotFoundError as exc:
            raise MCPError(types.INVALID_PARAMS, str(exc)) from exc
        return to_result(obs)


def to_result(obs: Observation) -> types.CallToolResult:
    """An observation as an MCP tool result (its text made valid first: the SDK serialises
    it after this returns, where a lone surrogate could no longer become a result)."""
    obs = scrub_observation(obs)
    content: list[types.ContentBlock] = []
    for part in obs.content:
        if isinstance(part, TextPart):
            content.append(types.TextContent(text=part.text))
        elif isinstance(part, ImagePart):
            content.append(types.ImageContent(data=part.data, mime_type=part.mime_type))
        elif isinstance(part, TablePart | JsonPart):
            content.append(types.TextContent(text=json.dumps(part.model_dump(exclude={"type"}))))
    structured: dict[str, Any] | None = dict(obs.data) if obs.data is not None else None
    if obs.error is not None:
        error = obs.error
        text = f"{error.kind.value}: {error.message}"
        if error.detail:
            text += f"\n{error.detail}"
        if error.hint:
            text += f"\nHint: {error.hint}"
        content.append(types.TextContent(text=text))
        structured = None  # the diagnostic is in the text: a failed result has no data
    if not content:
        content.append(types.TextContent(text="(no output)"))
    return types.CallToolResult(content=content, structured_content=structured, is_error=not obs.ok)


OPTION_KEYS = ("session_id", "trajectory_id", "timeout_s")


def _options(params: types.CallToolRequestParams, arguments: dict[str, Any]) -> dict[str, Any]:
    """toolfleet's call options (session, trajectory, timeout): from ``_meta`` keys
    ``toolfleet/session_id`` …, or, for clients that cannot set ``_meta``, from a
    ``_toolfleet`` object in the arguments (removed before the tool sees them)."""
    found: dict[str, Any] = {}
    meta: Any = params.meta or {}
    if not isinstance(meta, dict):
        meta = meta.model_dump(by_alias=True)
    for key in OPTION_KEYS:
        if f"toolfleet/{key}" in meta:
            found[key] = meta[f"toolfleet/{key}"]
    extra = arguments.pop("_toolfleet", None)
    if isinstance(extra, dict):
        found.update({k: v for k, v in extra.items() if k in OPTION_KEYS})
    return found


def _tenant(ctx: Any) -> str:
    request = getattr(ctx, "request", None)
    state = getattr(request, "scope", {}).get("state", {}) if request is not None else {}
    return state.get(TENANT, "default")
