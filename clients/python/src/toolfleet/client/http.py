"""A synchronous HTTP client of the gateway's REST v1 API (httpx, pooled connections)."""

from __future__ import annotations

import os
from typing import Any

import httpx
from toolfleet.core.protocol import Observation, ToolSpec

DEFAULT_URL = "http://127.0.0.1:8000"


class GatewayError(Exception):
    """The gateway answered with an HTTP error; ``body`` is its JSON error object."""

    def __init__(self, status_code: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"HTTP {status_code}: {error.get('message', body)}")
        self.status_code = status_code
        self.body = body


class ToolfleetClient:
    """Calls a gateway. URL and API key default to ``TOOLFLEET_URL`` and ``TOOLFLEET_API_KEY``."""

    def __init__(
        self, url: str | None = None, api_key: str | None = None, timeout_s: float = 330.0
    ) -> None:
        api_key = api_key or os.environ.get("TOOLFLEET_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=url or os.environ.get("TOOLFLEET_URL", DEFAULT_URL),
            headers=headers,
            timeout=timeout_s,
        )

    def __enter__(self) -> ToolfleetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and return its JSON body; raises :class:`GatewayError`."""
        response = self._http.request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise GatewayError(response.status_code, body)
        return body

    def tools(self) -> list[ToolSpec]:
        """Every tool the gateway serves."""
        return [ToolSpec.model_validate(t) for t in self.request("GET", "/v1/tools")["tools"]]

    def openai_tools(self) -> list[dict[str, Any]]:
        """The tools as OpenAI function-calling specs."""
        return self.request("GET", "/v1/tools", params={"format": "openai"})

    def call(
        self, tool: str, arguments: dict[str, Any] | None = None, **options: Any
    ) -> Observation:
        """Call a tool; ``options`` are session_id, trajectory_id, timeout_s, idempotency_key."""
        body = {"arguments": arguments or {}, **{k: v for k, v in options.items() if v is not None}}
        return Observation.model_validate(self.request("POST", f"/v1/tools/{tool}/call", json=body))
