"""Every POST route of the gateway takes a JSON body, whatever the request's Content-Type
says: ``curl -d '{...}'`` sends ``application/x-www-form-urlencoded``, and the servers the
drop-in routes stand in for (Search-R1's retriever, SandboxFusion, verl-tool) read such a
body as JSON. This middleware declares the body JSON before the routes parse it, so those
commands work verbatim (FastAPI would otherwise answer 422 "Input should be a valid
dictionary"). ``/mcp`` keeps its own rule (the MCP transport asks for application/json), and
cross-site requests have been refused before this runs (:mod:`toolfleet.gateway.origins`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

JSON = b"application/json"
KEEP = (b"application/json", b"multipart/")  # declared JSON already, or a real form upload


class JsonBodyMiddleware:
    """Rewrites the Content-Type of POST requests (but ``/mcp``'s) to application/json."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] != "/mcp":
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            declared = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
            if not declared.lower().startswith(KEEP):
                scope = {**scope, "headers": [*headers, (b"content-type", JSON)]}
        await self.app(scope, receive, send)
