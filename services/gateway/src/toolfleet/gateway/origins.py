"""Which browser origins and Host names the gateway accepts, and the rule that refuses
cross-site requests a web page could send without the browser asking first (applied by
:mod:`toolfleet.gateway.edge`).

Auth is off by default and the gateway runs code: a page on any site could otherwise POST
``text/plain`` (or a form) to ``http://127.0.0.1:8000/v1/tools/python/call`` from a
developer's browser. Browsers send such "simple" requests without a CORS preflight, with an
``Origin`` header; a request whose Origin is not the gateway's own (nor an allowed one) and
whose body is of a simple type is refused with a JSON 403 before any route sees it. Requests
with ``application/json`` are preflighted by browsers, and the gateway answers no CORS, so
a browser never sends them cross-site; clients that are not browsers send no Origin.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.responses import Response
from starlette.types import Scope
from toolfleet.gateway.errors import error_response

#: Content types a browser sends cross-site without a preflight (the Fetch standard's list).
SIMPLE_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def matches(value: str, allowed: list[str]) -> bool:
    """True when ``value`` is in ``allowed``, where ``x:*`` stands for ``x`` on any port."""
    return any(
        value == pattern or (pattern.endswith(":*") and value.startswith(pattern[:-1]))
        for pattern in allowed
    )


def same_origin(origin: str, host: str | None) -> bool:
    """True when ``origin`` (``scheme://host:port``) names the Host the request was sent to."""
    if not host or origin == "null":
        return False
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return netloc.lower() == host.lower()


def header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (latin-1), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def foreign_origin(scope: Scope, allowed_origins: list[str]) -> str | None:
    """The ``Origin`` of a cross-site request of a simple content type (to be refused), else
    None."""
    if scope["method"] not in UNSAFE_METHODS:
        return None
    origin = header(scope, b"origin")
    if origin is None or same_origin(origin, header(scope, b"host")):
        return None
    if matches(origin, allowed_origins):
        return None
    kind = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
    return origin if kind in SIMPLE_TYPES or not kind else None


def refusal(method: str, origin: str) -> Response:
    """The 403 that refuses a cross-site request."""
    message = (
        f"a cross-site {method} from the origin {origin!r} with a form or text/plain body is "
        "refused (a web page may not run tools on this gateway); send the request from a "
        "client that is not a browser, or list the origin in TOOLFLEET_MCP_ALLOWED_ORIGINS"
    )
    return error_response(403, "cross_site_request", message, origin=origin)
