"""The one exception the client raises for an HTTP error answer of the gateway."""

from __future__ import annotations

from typing import Any

import httpx
from toolfleet.client.retry import retry_after_s


class GatewayError(Exception):
    """The gateway answered with an HTTP error: something the trainer must fix (422, 404, 413,
    401) or overload it did not wait out (429, 503).

    ``body`` is the decoded JSON error body (``{"error": {"code", "message", ...}}``) or the
    raw text when the body was not JSON. A tool's own failure is never a ``GatewayError``: it
    is an :class:`~toolfleet.protocol.Observation` with ``ok`` false.
    """

    def __init__(self, status_code: int, body: Any, retry_after: float | None = None) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        if not isinstance(error, dict):
            error = {}
        super().__init__(f"HTTP {status_code}: {error.get('message', body)}")
        self.status_code = status_code
        self.body = body
        self.code: str | None = error.get("code")
        self.message: str = str(error.get("message", body))
        self.retry_after_s = retry_after

    @property
    def detail(self) -> dict[str, Any]:
        """The error object of the body (``code``, ``message`` and what else the route adds,
        e.g. ``fields`` for a 422, ``available`` for an unknown tool)."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error if isinstance(error, dict) else {}

    @classmethod
    def from_response(cls, response: httpx.Response) -> GatewayError:
        """The error of an HTTP error response."""
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        return cls(response.status_code, body, retry_after_s(response.headers.get("retry-after")))
