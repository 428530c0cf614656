"""Request ids: every HTTP request gets one, and every call it carries is logged with it.

A pure ASGI middleware (no per-request objects beyond the id): it takes the client's
``X-Request-ID`` when it is a usable id (:func:`toolfleet.core.logs.clean_request_id`), else
makes one, holds it in :data:`toolfleet.core.logs.request_id` while the request is handled
(the runtime copies it into each :class:`~toolfleet.core.protocol.Invocation`, so it travels to
the worker and into the call log), and sends it back in the response's ``X-Request-ID``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from toolfleet.core import logs

_HEADER = logs.REQUEST_ID_HEADER.encode()


class RequestIdMiddleware:
    """Sets the request id of each HTTP request (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or logs.request_id.get() is not None:
            await self.app(scope, receive, send)  # not HTTP, or an outer instance set it
            return
        rid = None
        for name, value in scope["headers"]:
            if name == _HEADER:
                rid = logs.clean_request_id(value.decode("latin-1"))
                break
        rid = rid or logs.new_request_id()
        header = (_HEADER, rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = logs.request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logs.request_id.reset(token)
