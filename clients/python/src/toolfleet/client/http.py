"""The synchronous client of the gateway's REST v1 API (httpx, one pooled connection set)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import httpx
from toolfleet.client import endpoints
from toolfleet.client.endpoints import Plan
from toolfleet.client.errors import GatewayError
from toolfleet.client.models import FileInfo, FileListing
from toolfleet.client.retry import RetryEvent, RetryPolicy
from toolfleet.client.sessions import Session, Trajectory
from toolfleet.protocol import (
    Observation,
    SessionCreate,
    SessionFork,
    SessionInfo,
    ToolCall,
    ToolSpec,
    TrajectoryUsage,
)

__all__ = ["DEFAULT_URL", "GatewayError", "ToolfleetClient"]

DEFAULT_URL = "http://127.0.0.1:8000"
T = TypeVar("T")


def http_options(
    url: str | None,
    api_key: str | None,
    timeout_s: float,
    connect_timeout_s: float,
    max_connections: int,
    max_keepalive_connections: int,
    keepalive_expiry_s: float,
    headers: Mapping[str, str] | None,
) -> dict[str, Any]:
    """Keyword arguments of ``httpx.Client`` / ``httpx.AsyncClient`` for the gateway."""
    api_key = api_key or os.environ.get("TOOLFLEET_API_KEY")
    all_headers = {"user-agent": "toolfleet-client", **(headers or {})}
    if api_key:
        all_headers["authorization"] = f"Bearer {api_key}"
    return {
        "base_url": url or os.environ.get("TOOLFLEET_URL", DEFAULT_URL),
        "headers": all_headers,
        "timeout": httpx.Timeout(timeout_s, connect=connect_timeout_s),
        "limits": httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive_connections,
            keepalive_expiry=keepalive_expiry_s,
        ),
    }


def request_kwargs(plan: Plan[Any], client_timeout: httpx.Timeout) -> dict[str, Any]:
    """Keyword arguments of ``request`` for ``plan``."""
    kwargs: dict[str, Any] = {}
    if plan.json is not None:
        kwargs["json"] = plan.json
    if plan.params is not None:
        kwargs["params"] = plan.params
    if plan.content is not None:
        kwargs["content"] = plan.content
    if plan.timeout_s is not None and (
        client_timeout.read is None or plan.timeout_s > client_timeout.read
    ):
        kwargs["timeout"] = httpx.Timeout(plan.timeout_s, connect=client_timeout.connect)
    return kwargs


class ToolfleetClient:
    """Calls a toolfleet gateway, synchronously; safe to share between threads.

    ``url`` and ``api_key`` default to ``TOOLFLEET_URL`` and ``TOOLFLEET_API_KEY``.
    Connections are pooled (``max_connections``; idle ones are dropped after
    ``keepalive_expiry_s``, below uvicorn's 5 s keep-alive, so a reused connection is not one
    the server is closing). ``timeout_s`` is the read timeout of a request; a call with a
    longer ``timeout_s`` of its own waits that long plus a grace. ``retry`` says what is sent
    again (see :class:`RetryPolicy`: 429/503 and retryable diagnostics, bounded).

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 330.0,
        *,
        connect_timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        max_connections: int = 256,
        max_keepalive_connections: int = 64,
        keepalive_expiry_s: float = 4.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        options = http_options(
            url,
            api_key,
            timeout_s,
            connect_timeout_s,
            max_connections,
            max_keepalive_connections,
            keepalive_expiry_s,
            headers,
        )
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(transport=transport, **options)

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return str(self._http.base_url)

    def __enter__(self) -> ToolfleetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # ------------------------------------------------------------------ transport

    def send(self, plan: Plan[T], retry: RetryPolicy | None = None) -> T:
        """Execute ``plan`` with the client's retry policy (or ``retry``); raises
        :class:`GatewayError`."""
        policy = retry or self.retry
        attempt = 1
        while True:
            response = self._http.request(
                plan.method, plan.path, **request_kwargs(plan, self._http.timeout)
            )
            if response.status_code >= 400:
                error = GatewayError.from_response(response)
                delay = None
                if policy.should_retry_status(response.status_code, attempt):
                    delay = policy.delay(attempt, error.retry_after_s)
                if delay is None:
                    raise error
                policy.notify(
                    RetryEvent(
                        attempt,
                        delay,
                        "status",
                        plan.method,
                        plan.path,
                        status_code=response.status_code,
                        retry_after_s=error.retry_after_s,
                    )
                )
                time.sleep(delay)
                attempt += 1
                continue
            result = plan.parse(response)
            follow = None
            if plan.retry is not None and policy.retries_diagnostics(attempt):
                follow = plan.retry(result)
            if follow is None:
                return result
            delay = policy.backoff(attempt)
            kinds = plan.retry_kinds(result) if plan.retry_kinds else ()
            policy.notify(
                RetryEvent(attempt, delay, "diagnostic", plan.method, plan.path, kinds=kinds)
            )
            time.sleep(delay)
            attempt += 1
            plan = follow

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send any request and return its JSON body (or text); raises :class:`GatewayError`.
        Not retried."""
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise GatewayError.from_response(response)
        try:
            return response.json()
        except ValueError:
            return response.text

    # ------------------------------------------------------------------ tools and calls

    def tools(self) -> list[ToolSpec]:
        """Every tool the gateway serves, with its JSON Schema."""
        return self.send(endpoints.tools())

    def openai_tools(self) -> list[dict[str, Any]]:
        """The tools as OpenAI function-calling specs (``tools=`` of a chat completion)."""
        return self.send(endpoints.openai_tools())

    def call(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        session_id: str | None = None,
        trajectory_id: str | None = None,
        timeout_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> Observation:
        """Call a tool. A tool's failure is an observation with ``ok`` false, not an
        exception; an unknown tool or session raises :class:`GatewayError` (404)."""
        body = endpoints.call_request(
            arguments,
            session_id=session_id,
            trajectory_id=trajectory_id,
            timeout_s=timeout_s,
            idempotency_key=idempotency_key,
        )
        return self.send(endpoints.call(tool, body))

    def batch(
        self,
        calls: Iterable[ToolCall | Mapping[str, Any]],
        *,
        session_id: str | None = None,
        trajectory_id: str | None = None,
        timeout_s: float | None = None,
    ) -> list[Observation]:
        """Run calls concurrently on the gateway; observations in the calls' order. The
        keyword options fill in what a call leaves unset. Problems of one call (unknown tool
        or session, a full queue) are that call's observation."""
        prepared = [
            endpoints.tool_call(
                c, session_id=session_id, trajectory_id=trajectory_id, timeout_s=timeout_s
            )
            for c in calls
        ]
        if not prepared:
            return []
        return self.send(endpoints.batch(prepared))

    # ------------------------------------------------------------------ sessions

    def create_session(
        self,
        *,
        ttl_s: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        trajectory_id: str | None = None,
    ) -> SessionInfo:
        """Open a session (prefer :meth:`session`, which also ends it)."""
        body = SessionCreate(
            ttl_s=ttl_s, metadata=dict(metadata or {}), trajectory_id=trajectory_id
        )
        return self.send(endpoints.create_session(body))

    def get_session(self, session_id: str) -> SessionInfo:
        """Describe a live session (404 once it ended or expired)."""
        return self.send(endpoints.get_session(session_id))

    def delete_session(self, session_id: str) -> SessionInfo:
        """End a session and release what its tools hold."""
        return self.send(endpoints.delete_session(session_id))

    def fork_session(
        self,
        session_id: str,
        *,
        ttl_s: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        trajectory_id: str | None = None,
    ) -> SessionInfo:
        """Copy a session, tool state included, into a new session."""
        body = SessionFork(
            ttl_s=ttl_s,
            metadata=None if metadata is None else dict(metadata),
            trajectory_id=trajectory_id,
        )
        return self.send(endpoints.fork_session(session_id, body))

    def session(
        self,
        *,
        ttl_s: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        trajectory_id: str | None = None,
    ) -> Session:
        """A new session as a context manager: opened on enter, ended on exit.

        ``with client.session() as s: s.call("python", {"code": "x = 1"})``"""
        return Session(self, ttl_s=ttl_s, metadata=metadata, trajectory_id=trajectory_id)

    def attach(self, session_id: str) -> Session:
        """A handle on an existing session (ended on exit when used as a context manager)."""
        return Session.attached(self, self.get_session(session_id))

    # ------------------------------------------------------------------ files

    def upload(self, session_id: str, path: str, data: bytes | str) -> FileInfo:
        """Write ``data`` to ``path`` in the session's working directory."""
        return self.send(endpoints.upload(session_id, path, data))

    def download(self, session_id: str, path: str) -> bytes:
        """The bytes of a file of the session's working directory."""
        return self.send(endpoints.download(session_id, path))

    def list_files(self, session_id: str) -> FileListing:
        """Every file of the session's working directory."""
        return self.send(endpoints.list_files(session_id))

    # ------------------------------------------------------------------ trajectories

    def usage(self, trajectory_id: str) -> TrajectoryUsage:
        """The usage ledger of a trajectory so far (404 before its first call)."""
        return self.send(endpoints.usage(trajectory_id))

    def release(self, trajectory_id: str) -> TrajectoryUsage:
        """End every session of the trajectory; its final usage."""
        return self.send(endpoints.release(trajectory_id))

    def trajectory(self, trajectory_id: str) -> Trajectory:
        """A trajectory as a context manager: calls booked to it, released on exit (its
        final usage is then in ``.final_usage``)."""
        return Trajectory(self, trajectory_id)

    # ------------------------------------------------------------------ operations

    def health(self) -> bool:
        """True when the gateway's process answers ``/healthz``."""
        try:
            return self.send(endpoints.health(), RetryPolicy.none()).get("status") == "ok"
        except (GatewayError, httpx.TransportError):
            return False

    def readiness(self) -> dict[str, Any]:
        """``/readyz``: tools, sessions, calls in flight, each service's status; raises
        :class:`GatewayError` (503) while the gateway starts or stops."""
        return self.send(endpoints.readiness(), RetryPolicy.none())

    def wait_ready(self, timeout_s: float = 60.0, interval_s: float = 0.2) -> dict[str, Any]:
        """Poll ``/readyz`` until the gateway is ready; raises :class:`TimeoutError`."""
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                return self.readiness()
            except (GatewayError, httpx.TransportError) as exc:
                last = exc
            time.sleep(interval_s)
        raise TimeoutError(f"{self.url} not ready after {timeout_s} s: {last}")
