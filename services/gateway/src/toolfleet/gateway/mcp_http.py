"""The HTTP edge of ``/mcp``, in front of the SDK's transport: every refusal is a JSON-RPC
error in a JSON body (a client prints its message, not "Server returned an error response"),
Host and Origin are checked each by its own list, ``GET`` (the server-sent event stream a
stateless server never writes to) answers 405 at once, and JSON-RPC batches are served to the
protocol versions that have them (2025-03-26 and older) and refused by name to later ones.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send
from toolfleet.gateway.origins import header, matches

#: Protocol versions whose JSON-RPC allows batches (2025-06-18 removed them). A request with
#: no MCP-Protocol-Version header is taken as 2025-03-26, as the specification says.
BATCH_VERSIONS = ("2024-11-05", "2025-03-26")
SERVER_ERROR = -32000  # JSON-RPC's implementation-defined server errors start here
INVALID_REQUEST = -32600

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


def jsonrpc_error(
    status: int,
    code: str,
    message: str,
    *,
    rpc_code: int = SERVER_ERROR,
    headers: dict[str, str] | None = None,
    request_id: Any = None,
) -> Response:
    """A JSON-RPC error response; ``data.code`` is the gateway's error code."""
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {"code": rpc_code, "message": message, "data": {"code": code}},
    }
    return Response(
        json.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def host_refusal(scope: Scope, hosts: list[str], origins: list[str]) -> Response | None:
    """The 421 or 403 for a Host or Origin not allowed (each list checked only when set;
    an absent Origin is a client that is not a browser), else None."""
    host = header(scope, b"host") or ""
    if hosts and not matches(host, hosts):
        return jsonrpc_error(
            421,
            "misdirected_request",
            f"the Host {host!r} is not one this server answers to on /mcp "
            "(TOOLFLEET_MCP_ALLOWED_HOSTS)",
        )
    origin = header(scope, b"origin")
    if origins and origin is not None and not matches(origin, origins):
        return jsonrpc_error(
            403,
            "forbidden_origin",
            f"the Origin {origin!r} may not use /mcp (TOOLFLEET_MCP_ALLOWED_ORIGINS)",
        )
    return None


def method_refusal(scope: Scope) -> Response | None:
    """405 for GET (no event stream: the transport is stateless and never sends one; legacy
    HTTP+SSE clients fail at once instead of waiting) and methods /mcp does not take."""
    if scope["method"] in ("POST", "DELETE"):
        return None
    return jsonrpc_error(
        405,
        "method_not_allowed",
        f"{scope['method']} /mcp is not served: this is the Streamable HTTP transport, "
        "stateless, with no server-sent event stream; POST JSON-RPC messages to /mcp "
        "(the 2024-11-05 HTTP+SSE transport is not served)",
        headers={"Allow": "POST, DELETE"},
    )


def content_type_refusal(scope: Scope) -> Response | None:
    """415 for a POST whose body is not declared JSON."""
    kind = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
    if scope["method"] != "POST" or kind == "application/json":
        return None
    return jsonrpc_error(
        415,
        "unsupported_media_type",
        f"POST /mcp takes 'Content-Type: application/json', not {kind or 'none'!r}",
        rpc_code=INVALID_REQUEST,
    )


async def read_body(receive: Receive) -> bytes:
    """The whole request body (the gateway's body limit has already bounded it)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, then: Receive | None = None) -> Receive:
    """A ``receive`` that gives ``body`` once, then passes on ``then`` (the client's own, so
    a disconnect is still seen), or without one waits like a client that stays."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if then is not None:
            return await then()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    return receive


async def serve_batch(scope: Scope, messages: list[Any], handle: Handler, send: Send) -> None:
    """Answer a JSON-RPC batch: each message through ``handle`` as its own POST, the
    responses gathered in one array (202 when all were notifications)."""
    version = header(scope, b"mcp-protocol-version") or "2025-03-26"
    if version not in BATCH_VERSIONS:
        response = jsonrpc_error(
            400,
            "batch_not_supported",
            f"JSON-RPC batches are not part of MCP protocol version {version} (they were "
            f"removed after 2025-03-26): send one message per request",
            rpc_code=INVALID_REQUEST,
        )
        await response(scope, replay(b""), send)
        return
    if not messages:
        await jsonrpc_error(
            400, "empty_batch", "an empty JSON-RPC batch", rpc_code=INVALID_REQUEST
        )(scope, replay(b""), send)
        return
    answers: list[Any] = []
    for message in messages:
        status, body = await _one(scope, message, handle)
        if body.strip():
            try:
                answers.append(json.loads(body))
            except ValueError:
                answers.append(
                    json.loads(
                        jsonrpc_error(status, "http_error", body.decode(errors="replace")).body
                    )
                )
    if not answers:
        await Response(status_code=202)(scope, replay(b""), send)
        return
    await Response(json.dumps(answers), media_type="application/json")(scope, replay(b""), send)


async def _one(scope: Scope, message: Any, handle: Handler) -> tuple[int, bytes]:
    status = 500
    chunks: list[bytes] = []

    async def capture(event: Message) -> None:
        nonlocal status
        if event["type"] == "http.response.start":
            status = event["status"]
        elif event["type"] == "http.response.body":
            chunks.append(event.get("body", b""))

    sub = {**scope, "headers": [h for h in scope["headers"] if h[0] != b"content-length"]}
    await handle(sub, replay(json.dumps(message).encode()), capture)
    return status, b"".join(chunks)
