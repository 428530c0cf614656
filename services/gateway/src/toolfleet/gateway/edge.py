"""What every HTTP request meets first: one pure ASGI middleware, outermost, applying in order

1. its request id (:mod:`toolfleet.gateway.request_id`), set for the request's handling and
   sent back on every response, the refusals below included;
2. the refusal of a cross-site request a browser sends without a preflight
   (:mod:`toolfleet.gateway.origins`, 403);
3. the body limit (:mod:`toolfleet.gateway.body_limit`, 413);
4. a POST body declared JSON whatever its Content-Type (:mod:`toolfleet.gateway.json_body`).

One layer rather than one per rule (each layer costs every request a coroutine call, and a
``send`` wrapper most of them). A body with a ``Content-Length`` within the limit goes
through untouched (the HTTP server reads no more than it declares); only a body streamed
without one is counted as it comes.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from toolfleet.core import logs
from toolfleet.gateway import body_limit, json_body, origins, request_id


class EdgeMiddleware:
    """The gateway's request id, cross-site refusal, body limit and JSON body (see the
    module's docstring); ``paths`` gives exact paths a body limit of their own."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        paths: dict[str, int] | None = None,
        allowed_origins: list[str] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.paths = dict(paths or {})
        self.allowed_origins = list(allowed_origins or [])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id.of(scope)
        header = (request_id.HEADER, rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = logs.request_id.set(rid)
        try:
            await self._checked(scope, receive, send_with_id)
        finally:
            logs.request_id.reset(token)

    async def _checked(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = origins.foreign_origin(scope, self.allowed_origins)
        if origin is not None:
            await origins.refusal(scope["method"], origin)(scope, receive, send)
            return
        limit = self.paths.get(scope["path"], self.max_bytes)
        length, encoded = body_limit.declared(scope)
        if length is not None and length > limit:
            await body_limit.refusal(limit)(scope, receive, send)
            return
        if scope["method"] == "POST":
            scope = json_body.declared_json(scope)
        if length is not None and not encoded:
            await self.app(scope, receive, send)
            return
        await self._counted(scope, receive, send, limit)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """The app, with a body streamed without a length counted: once past ``limit`` the
        413 is answered here, the app is told the client left, and what it still sends is
        dropped."""
        seen = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    await body_limit.refusal(limit)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise
