"""Every POST route of the gateway takes a JSON body, whatever the request's Content-Type
says: ``curl -d '{...}'`` sends ``application/x-www-form-urlencoded``, and the servers the
drop-in routes stand in for (Search-R1's retriever, SandboxFusion, verl-tool) read such a
body as JSON. :mod:`toolfleet.gateway.edge` declares the body JSON before the routes parse
it, so those commands work verbatim (FastAPI would otherwise answer 422 "Input should be a
valid dictionary"). ``/mcp`` keeps its own rule (the MCP transport asks for
application/json), and cross-site requests have been refused before
(:mod:`toolfleet.gateway.origins`).
"""

from __future__ import annotations

from starlette.types import Scope

JSON = b"application/json"
KEEP = (b"application/json", b"multipart/")  # declared JSON already, or a real form upload


def declared_json(scope: Scope) -> Scope:
    """A POST's scope with its Content-Type application/json (``/mcp``'s, a JSON one and a
    multipart upload's as they are)."""
    if scope["path"] == "/mcp":
        return scope
    declared = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
    if declared.lower().startswith(KEEP):
        return scope
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
    return {**scope, "headers": [*headers, (b"content-type", JSON)]}
