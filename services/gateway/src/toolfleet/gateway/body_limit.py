"""The request body limit: a body over it is refused with a JSON 413 (Starlette's own
body-limit middleware answers in plain text; every error here is JSON) and nothing past the
limit is read into memory. :mod:`toolfleet.gateway.edge` applies it: a ``Content-Length``
over the limit is refused before the body is read, and a body streamed without one is
counted as it comes."""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import Scope
from toolfleet.gateway.errors import error_response


def declared(scope: Scope) -> tuple[int | None, bool]:
    """The request's ``Content-Length`` (None when it has none, or not a number) and whether
    it says ``Transfer-Encoding``."""
    length, encoded = None, False
    for name, value in scope["headers"]:
        if name == b"content-length" and length is None:
            length = int(value) if value.isdigit() else None
        elif name == b"transfer-encoding":
            encoded = True
    return length, encoded


def refusal(limit: int) -> Response:
    """The 413 that refuses a body over ``limit`` bytes (the connection closed after it: the
    rest of the body is never read)."""
    message = f"request body is larger than the limit of {limit} bytes"
    return error_response(413, "payload_too_large", message, headers={"connection": "close"},
                          limit_bytes=limit)  # fmt: skip
