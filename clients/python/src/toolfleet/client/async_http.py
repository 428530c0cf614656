"""The asynchronous client of the gateway's REST v1 API: the methods of
:class:`~toolfleet.client.http.ToolfleetClient`, awaited, over one pooled ``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import httpx
from toolfleet.client import endpoints
from toolfleet.client.endpoints import Plan
from toolfleet.client.errors import GatewayError
from toolfleet.client.http import http_options, request_kwargs
from toolfleet.client.models import FileInfo, FileListing
from toolfleet.client.retry import RetryEvent, RetryPolicy
from toolfleet.client.sessions import AsyncSession, AsyncTrajectory
from toolfleet.protocol import (
    Observation,
    SessionCreate,
    SessionFork,
    SessionInfo,
    ToolCall,
    ToolSpec,
    TrajectoryUsage,
)

__all__ = ["AsyncToolfleetClient"]

T = TypeVar("T")


class AsyncToolfleetClient:
    """Calls a toolfleet gateway from asyncio code (a rollout worker driving many
    trajectories at once). Options as :class:`~toolfleet.client.ToolfleetClient`; use it as
    an async context manager, or await :meth:`aclose`.
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
        transport: httpx.AsyncBaseTransport | None = None,
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
        self._http = httpx.AsyncClient(transport=transport, **options)

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return str(self._http.base_url)

    async def __aenter__(self) -> AsyncToolfleetClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # ------------------------------------------------------------------ transport

    async def send(self, plan: Plan[T], retry: RetryPolicy | None = None) -> T:
        """Execute ``plan`` with the client's retry policy (or ``retry``); raises
        :class:`GatewayError`."""
        policy = retry or self.retry
        attempt = 1
        while True:
            response = await self._http.request(
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
                await asyncio.sleep(delay)
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
            await asyncio.sleep(delay)
            attempt += 1
            plan = follow

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send any request and return its JSON body (or text); raises :class:`GatewayError`.
        Not retried."""
        response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise GatewayError.from_response(response)
        try:
            return response.json()
        except ValueError:
            return response.text

    # ------------------------------------------------------------------ tools and calls

    async def tools(self) -> list[ToolSpec]:
        """Every tool the gateway serves, with its JSON Schema."""
        return await self.send(endpoints.tools())

    async def openai_tools(self) -> list[dict[str, Any]]:
        """The tools as OpenAI function-calling specs."""
        return await self.send(endpoints.openai_tools())

    async def call(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        session_id: str | None = None,
        trajectory_id: str | None = None,
        timeout_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> Observation:
        """Call a tool; a tool's failure is an observation with ``ok`` false."""
        body = endpoints.call_request(
            arguments,
            session_id=session_id,
            trajectory_id=trajectory_id,
            timeout_s=timeout_s,
            idempotency_key=idempotency_key,
        )
        return await self.send(endpoints.call(tool, body))

    async def batch(
        self,
        calls: Iterable[ToolCall | Mapping[str, Any]],
        *,
        session_id: str | None = None,
        trajectory_id: str | None = None,
        timeout_s: float | None = None,
    ) -> list[Observation]:
        """Run calls concurrently on the gateway; observations in the calls' order."""
        prepared = [
            endpoints.tool_call(
                c, session_id=session_id, trajectory_id=trajectory_id, timeout_s=timeout_s
            )
            for c in calls
        ]
        if not prepared:
            return []
        return await self.send(endpoints.batch(prepared))

    # ------------------------------------------------------------------ sessions

    async def create_session(
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
        return await self.send(endpoints.create_session(body))

    async def get_session(self, session_id: str) -> SessionInfo:
        """Describe a live session."""
        return await self.send(endpoints.get_session(session_id))

    async def delete_session(self, session_id: str) -> SessionInfo:
        """End a session and release what its tools hold."""
        return await self.send(endpoints.delete_session(session_id))

    async def fork_session(
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
        return await self.send(endpoints.fork_session(session_id, body))

    def session(
        self,
        *,
        ttl_s: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        trajectory_id: str | None = None,
    ) -> AsyncSession:
        """A new session as an async context manager: opened on enter, ended on exit."""
        return AsyncSession(self, ttl_s=ttl_s, metadata=metadata, trajectory_id=trajectory_id)

    async def attach(self, session_id: str) -> AsyncSession:
        """A handle on an existing session."""
        return AsyncSession.attached(self, await self.get_session(session_id))

    # ------------------------------------------------------------------ files

    async def upload(self, session_id: str, path: str, data: bytes | str) -> FileInfo:
        """Write ``data`` to ``path`` in the session's working directory."""
        return await self.send(endpoints.upload(session_id, path, data))

    async def download(self, session_id: str, path: str) -> bytes:
        """The bytes of a file of the session's working directory."""
        return await self.send(endpoints.download(session_id, path))

    async def list_files(self, session_id: str) -> FileListing:
        """Every file of the session's working directory."""
        return await self.send(endpoints.list_files(session_id))

    # ------------------------------------------------------------------ trajectories

    async def usage(self, trajectory_id: str) -> TrajectoryUsage:
        """The usage ledger of a trajectory so far (404 before its first call)."""
        return await self.send(endpoints.usage(trajectory_id))

    async def release(self, trajectory_id: str) -> TrajectoryUsage:
        """End every session of the trajectory; its final usage."""
        return await self.send(endpoints.release(trajectory_id))

    def trajectory(self, trajectory_id: str) -> AsyncTrajectory:
        """A trajectory as an async context manager: calls booked to it, released on exit."""
        return AsyncTrajectory(self, trajectory_id)

    # ------------------------------------------------------------------ operations

    async def health(self) -> bool:
        """True when the gateway's process answers ``/healthz``."""
        try:
            body = await self.send(endpoints.health(), RetryPolicy.none())
        except (GatewayError, httpx.TransportError):
            return False
        return body.get("status") == "ok"

    async def readiness(self) -> dict[str, Any]:
        """``/readyz``; raises :class:`GatewayError` (503) while not ready."""
        return await self.send(endpoints.readiness(), RetryPolicy.none())

    async def wait_ready(self, timeout_s: float = 60.0, interval_s: float = 0.2) -> dict[str, Any]:
        """Poll ``/readyz`` until the gateway is ready; raises :class:`TimeoutError`."""
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                return await self.readiness()
            except (GatewayError, httpx.TransportError) as exc:
                last = exc
            await asyncio.sleep(interval_s)
        raise TimeoutError(f"{self.url} not ready after {timeout_s} s: {last}")
