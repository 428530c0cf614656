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
import re
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from toolfleet.core import __version__
from toolfleet.core.errors import SessionNotFoundError, UnknownToolError, closest_names
from toolfleet.core.protocol import (
    CallOptions,
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
from toolfleet.gateway import mcp_http
from toolfleet.gateway.auth import tenant_of
from toolfleet.protocol.diagnostics import with_diagnostic_text

TENANT = "toolfleet.tenant"  # where the endpoint leaves the caller's tenant in the scope


class MCPEndpoint:
    """The ASGI app mounted at exactly ``/mcp`` (no redirect to ``/mcp/``)."""

    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self.runtime = runtime
        self.server: Server[Any] = Server(
            "toolfleet",
            version=__version__,
            # the services are installed plugins: tools/list says which this gateway serves
            instructions="Sandboxed tools for language models (tools/list gives those served "
            "here). Tool failures come back as results with isError and a diagnostic.",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self.allowed_hosts = settings.mcp_allowed_hosts
        self.allowed_origins = settings.mcp_allowed_origins
        self.manager = StreamableHTTPSessionManager(
            self.server,
            stateless=True,
            json_response=True,
            # Host and Origin are checked in __call__, each by its own list, in JSON
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
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
        refusal = (
            mcp_http.host_refusal(scope, self.allowed_hosts, self.allowed_origins)
            or mcp_http.method_refusal(scope)
            or mcp_http.content_type_refusal(scope)
        )
        if refusal is None:
            try:
                tenant = await tenant_of(Request(scope, receive))
            except HTTPException as exc:  # 401, as a JSON-RPC error clients print
                refusal = mcp_http.jsonrpc_error(
                    exc.status_code, "unauthorized", str(exc.detail), headers=exc.headers
                )
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        scope.setdefault("state", {})[TENANT] = tenant
        if scope["method"] != "POST":
            await self.manager.handle_request(scope, receive, send)
            return
        body = await mcp_http.read_body(receive)
        if body.lstrip()[:1] == b"[":
            try:
                messages = json.loads(body)
            except ValueError:
                messages = None  # not JSON: the SDK answers its parse error
            if isinstance(messages, list):
                await mcp_http.serve_batch(scope, messages, self.manager.handle_request, send)
                return
        await self.manager.handle_request(scope, mcp_http.replay(body, receive), send)

    # ------------------------------------------------------------------ handlers

    async def _list_tools(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        tools = [
            types.Tool(
                name=spec.name,
                description=spec.description,
                input_schema=spec.input_schema,
                output_schema=spec.output_schema,  # what structuredContent holds
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
                CallRequest(arguments=arguments, **options.model_dump(exclude_none=True)),
            )
        except UnknownToolError as exc:
            raise MCPError(
                types.INVALID_PARAMS,
                str(exc),
                {"available": exc.available, "closest": exc.closest},
            ) from exc
        except SessionNotFoundError as exc:
            raise MCPError(types.INVALID_PARAMS, str(exc)) from exc
        return to_result(obs)


def to_result(obs: Observation) -> types.CallToolResult:
    """An observation as an MCP tool result (its text made valid first: the SDK serialises
    it after this returns, where a lone surrogate could no longer become a result).

    Each fact once: a table or JSON part becomes text only when the observation has no text
    part (a tool that writes text writes its rendering of the same result, as the sql tool's
    markdown table), and a failure's diagnostic is said by the tool's text or by the part the
    runtime added, with its hint."""
    obs = with_diagnostic_text(scrub_observation(obs))
    has_text = any(isinstance(p, TextPart) for p in obs.content)
    content: list[types.ContentBlock] = []
    for part in obs.content:
        if isinstance(part, TextPart):
            content.append(types.TextContent(text=part.text))
        elif isinstance(part, ImagePart):
            content.append(types.ImageContent(data=part.data, mime_type=part.mime_type))
        elif isinstance(part, TablePart | JsonPart) and not has_text:
            content.append(types.TextContent(text=json.dumps(part.model_dump(exclude={"type"}))))
    said = "\n".join(c.text for c in content if isinstance(c, types.TextContent))
    if obs.error is not None and obs.error.hint and obs.error.hint not in said:
        # the text is all an MCP host shows its model: the hint too, once
        content.append(types.TextContent(text=f"Hint: {obs.error.hint}"))
    # a failed result has no data: the diagnostic is in the text
    structured = dict(obs.data) if obs.ok and obs.data is not None else None
    if not content:
        content.append(types.TextContent(text="(no output)"))
    return types.CallToolResult(content=content, structured_content=structured, is_error=not obs.ok)


OPTION_KEYS = tuple(CallOptions.model_fields)


def _options(params: types.CallToolRequestParams, arguments: dict[str, Any]) -> CallOptions:
    """toolfleet's call options (session, trajectory, timeout, idempotency key): from
    ``_meta`` keys ``toolfleet/session_id`` …, or, for clients that cannot set ``_meta``,
    from a ``_toolfleet`` object in the arguments (removed before the tool sees them).
    An unknown key (``toolfleet/sessionId``) or a malformed value is an error naming it,
    never dropped: a call meant for a session must not run without one."""
    found: dict[str, Any] = {}
    meta: Any = params.meta or {}
    if not isinstance(meta, dict):
        meta = meta.model_dump(by_alias=True)
    for key, value in meta.items():
        if isinstance(key, str) and key.startswith("toolfleet/"):
            found[key.removeprefix("toolfleet/")] = value
    if "_toolfleet" in arguments:
        extra = arguments.pop("_toolfleet")
        if not isinstance(extra, dict):
            raise MCPError(
                types.INVALID_PARAMS,
                f"_toolfleet must be an object of call options ({', '.join(OPTION_KEYS)}), "
                f"not {type(extra).__name__}: {json.dumps(extra, default=str)[:100]}",
            )
        found.update(extra)
    try:
        return CallOptions.model_validate(found)
    except ValidationError as exc:
        raise MCPError(types.INVALID_PARAMS, _options_problem(exc)) from None


def _options_problem(exc: ValidationError) -> str:
    """What is wrong with the call options, each key named (with the closest known key)."""
    problems = []
    for err in exc.errors(include_url=False):
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            close = closest_names(key.replace("-", "_"), list(OPTION_KEYS), n=1)
            if not close:  # sessionId → session_id
                snake = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
                close = [snake] if snake in OPTION_KEYS else []
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown call option {key!r}{guess}")
        else:
            problems.append(f"call option {key!r}: {err['msg']}")
    return (
        "; ".join(problems)
        + f". Call options (the _meta keys toolfleet/<option> or a _toolfleet object): "
        f"{', '.join(OPTION_KEYS)}"
    )


def _tenant(ctx: Any) -> str:
    request = getattr(ctx, "request", None)
    state = getattr(request, "scope", {}).get("state", {}) if request is not None else {}
    return state.get(TENANT, "default")
