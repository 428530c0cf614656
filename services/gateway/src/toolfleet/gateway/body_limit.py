"""A pure ASGI middleware that refuses request bodies over a size limit with a JSON 413.

(Starlette's own body-limit middleware answers in plain text; every error here is JSON.)
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware:
    """Answers 413 when Content-Length, or the bytes actually streamed, pass ``max_bytes``
    (or the limit ``paths`` gives the request's exact path); nothing past the limit is read
    into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int, paths: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.paths = dict(paths or {})
        self._bodies = {limit: _refusal(limit) for limit in {max_bytes, *self.paths.values()}}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.paths.get(scope["path"], self.max_bytes)
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > limit:
                    await self._refuse(send, limit)
                    return
                break

        # Streamed without a length: count, and once past the limit answer 413 ourselves and
        # tell the app the client left, dropping whatever the app still tries to send.
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
                    await self._refuse(send, limit)
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

    async def _refuse(self, send: Send, limit: int) -> None:
        body = self._bodies[limit]
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _refusal(limit: int) -> bytes:
    error = {
        "code": "payload_too_large",
        "message": f"request body is larger than the limit of {limit} bytes",
        "limit_bytes": limit,
    }
    return json.dumps({"error": error}).encode()
