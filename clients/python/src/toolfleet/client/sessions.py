"""Handles on a session and on a trajectory, sync and async, as context managers.

A :class:`Session` is opened on enter and ended on exit; its calls run in it, and
:meth:`Session.fork` copies it (tool state included) into a new handle. A :class:`Trajectory`
books calls to a trajectory id (the gateway opens its session on first use) and releases it
on exit, keeping the final usage ledger for the reward.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from toolfleet.client.errors import GatewayError
from toolfleet.client.models import FileInfo, FileListing
from toolfleet.protocol import Observation, SessionInfo, ToolCall, TrajectoryUsage

if TYPE_CHECKING:
    from toolfleet.client.async_http import AsyncToolfleetClient
    from toolfleet.client.http import ToolfleetClient

log = logging.getLogger(__name__)

CallLike = ToolCall | Mapping[str, Any]


class _SessionBase:
    def __init__(
        self,
        *,
        ttl_s: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        trajectory_id: str | None = None,
        info: SessionInfo | None = None,
    ) -> None:
        self._ttl_s, self._metadata, self._trajectory_id = ttl_s, metadata, trajectory_id
        self.info: SessionInfo | None = info
        """The session as the gateway described it when opened (or forked)."""
        self.closed = False
        """True once :meth:`close` ran."""

    @property
    def id(self) -> str:
        """The session's id (the session must be open)."""
        if self.info is None:
            raise RuntimeError("the session is not open yet: use it in a with block or open()")
        return self.info.session_id

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("open" if self.info else "new")
        name = self.info.session_id if self.info else "-"
        return f"<{type(self).__name__} {name} {state}>"


def _gone(exc: GatewayError) -> bool:
    """The session or trajectory no longer exists (expired, released, never used)."""
    return exc.status_code == 404


class Session(_SessionBase):
    """A session of a :class:`~toolfleet.client.ToolfleetClient`: opened on enter, ended on
    exit. Its calls, batches and files all act on this session."""

    def __init__(self, client: ToolfleetClient, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client

    @classmethod
    def attached(cls, client: ToolfleetClient, info: SessionInfo) -> Session:
        """A handle on a session that already exists."""
        return cls(client, info=info)

    def open(self) -> SessionInfo:
        """Open the session (once)."""
        if self.info is None:
            self.info = self.client.create_session(
                ttl_s=self._ttl_s, metadata=self._metadata, trajectory_id=self._trajectory_id
            )
        return self.info

    def close(self) -> SessionInfo | None:
        """End the session; None when it was already gone (expired, or its trajectory was
        released)."""
        if self.info is None or self.closed:
            return None
        self.closed = True
        try:
            return self.client.delete_session(self.id)
        except GatewayError as exc:
            if _gone(exc):
                return None
            raise

    def __enter__(self) -> Session:
        self.open()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.close()
        except Exception:
            if exc is None:
                raise
            log.warning("ending session %s failed", self.info and self.info.session_id)

    def describe(self) -> SessionInfo:
        """The session as the gateway sees it now."""
        return self.client.get_session(self.id)

    def call(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> Observation:
        """Call a tool in this session."""
        return self.client.call(
            tool,
            arguments,
            session_id=self.id,
            timeout_s=timeout_s,
            idempotency_key=idempotency_key,
        )

    def batch(
        self, calls: Iterable[CallLike], *, timeout_s: float | None = None
    ) -> list[Observation]:
        """Run calls concurrently in this session (calls naming a session keep theirs)."""
        return self.client.batch(calls, session_id=self.id, timeout_s=timeout_s)

    def fork(
        self,
        *,
        ttl_s: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        trajectory_id: str | None = None,
    ) -> Session:
        """Copy this session, tool state included, into a new open session (a handle that
        ends the copy on exit when used as a context manager)."""
        info = self.client.fork_session(
            self.id, ttl_s=ttl_s, metadata=metadata, trajectory_id=trajectory_id
        )
        return Session.attached(self.client, info)

    def upload(self, path: str, data: bytes | str) -> FileInfo:
        """Write ``data`` to ``path`` in the session's working directory."""
        return self.client.upload(self.id, path, data)

    def download(self, path: str) -> bytes:
        """A file of the session's working directory."""
        return self.client.download(self.id, path)

    def files(self) -> FileListing:
        """Every file of the session's working directory."""
        return self.client.list_files(self.id)


class AsyncSession(_SessionBase):
    """A session of an :class:`~toolfleet.client.AsyncToolfleetClient`: opened on enter,
    ended on exit (``async with``)."""

    def __init__(self, client: AsyncToolfleetClient, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client

    @classmethod
    def attached(cls, client: AsyncToolfleetClient, info: SessionInfo) -> AsyncSession:
        """A handle on a session that already exists."""
        return cls(client, info=info)

    async def open(self) -> SessionInfo:
        """Open the session (once)."""
        if self.info is None:
            self.info = await self.client.create_session(
                ttl_s=self._ttl_s, metadata=self._metadata, trajectory_id=self._trajectory_id
            )
        return self.info

    async def close(self) -> SessionInfo | None:
        """End the session; None when it was already gone."""
        if self.info is None or self.closed:
            return None
        self.closed = True
        try:
            return await self.client.delete_session(self.id)
        except GatewayError as exc:
            if _gone(exc):
                return None
            raise

    async def __aenter__(self) -> AsyncSession:
        await self.open()
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            await self.close()
        except Exception:
            if exc is None:
                raise
            log.warning("ending session %s failed", self.info and self.info.session_id)

    async def describe(self) -> SessionInfo:
        """The session as the gateway sees it now."""
        return await self.client.get_session(self.id)

    async def call(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> Observation:
        """Call a tool in this session."""
        return await self.client.call(
            tool,
            arguments,
            session_id=self.id,
            timeout_s=timeout_s,
            idempotency_key=idempotency_key,
        )

    async def batch(
        self, calls: Iterable[CallLike], *, timeout_s: float | None = None
    ) -> list[Observation]:
        """Run calls concurrently in this session."""
        return await self.client.batch(calls, session_id=self.id, timeout_s=timeout_s)

    async def fork(
        self,
        *,
        ttl_s: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        trajectory_id: str | None = None,
    ) -> AsyncSession:
        """Copy this session, tool state included, into a new open session."""
        info = await self.client.fork_session(
            self.id, ttl_s=ttl_s, metadata=metadata, trajectory_id=trajectory_id
        )
        return AsyncSession.attached(self.client, info)

    async def upload(self, path: str, data: bytes | str) -> FileInfo:
        """Write ``data`` to ``path`` in the session's working directory."""
        return await self.client.upload(self.id, path, data)

    async def download(self, path: str) -> bytes:
        """A file of the session's working directory."""
        return await self.client.download(self.id, path)

    async def files(self) -> FileListing:
        """Every file of the session's working directory."""
        return await self.client.list_files(self.id)


class _TrajectoryBase:
    def __init__(self, trajectory_id: str) -> None:
        self.id = trajectory_id
        self.final_usage: TrajectoryUsage | None = None
        """The usage returned when the trajectory was released (None before)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"


class Trajectory(_TrajectoryBase):
    """Calls booked to one trajectory id; released (sessions ended) on exit."""

    def __init__(self, client: ToolfleetClient, trajectory_id: str) -> None:
        super().__init__(trajectory_id)
        self.client = client

    def __enter__(self) -> Trajectory:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.release()
        except Exception:
            if exc is None:
                raise
            log.warning("releasing trajectory %s failed", self.id)

    def call(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> Observation:
        """Call a tool in the trajectory's session (opened on first use)."""
        return self.client.call(
            tool,
            arguments,
            trajectory_id=self.id,
            timeout_s=timeout_s,
            idempotency_key=idempotency_key,
        )

    def batch(
        self, calls: Iterable[CallLike], *, timeout_s: float | None = None
    ) -> list[Observation]:
        """Run calls concurrently, booked to this trajectory."""
        return self.client.batch(calls, trajectory_id=self.id, timeout_s=timeout_s)

    def session(
        self, *, ttl_s: float | None = None, metadata: Mapping[str, Any] | None = None
    ) -> Session:
        """A further session bound to this trajectory (ended with it)."""
        return self.client.session(ttl_s=ttl_s, metadata=metadata, trajectory_id=self.id)

    def usage(self) -> TrajectoryUsage:
        """Usage so far (an empty ledger before the first call)."""
        try:
            return self.client.usage(self.id)
        except GatewayError as exc:
            if _gone(exc):
                return TrajectoryUsage(trajectory_id=self.id)
            raise

    def release(self) -> TrajectoryUsage:
        """End the trajectory's sessions; its final usage (also kept in ``final_usage``)."""
        try:
            self.final_usage = self.client.release(self.id)
        except GatewayError as exc:
            if not _gone(exc):
                raise
            self.final_usage = TrajectoryUsage(trajectory_id=self.id)
        return self.final_usage


class AsyncTrajectory(_TrajectoryBase):
    """Calls booked to one trajectory id; released on exit (``async with``)."""

    def __init__(self, client: AsyncToolfleetClient, trajectory_id: str) -> None:
        super().__init__(trajectory_id)
        self.client = client

    async def __aenter__(self) -> AsyncTrajectory:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            await self.release()
        except Exception:
            if exc is None:
                raise
            log.warning("releasing trajectory %s failed", self.id)

    async def call(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> Observation:
        """Call a tool in the trajectory's session (opened on first use)."""
        return await self.client.call(
            tool,
            arguments,
            trajectory_id=self.id,
            timeout_s=timeout_s,
            idempotency_key=idempotency_key,
        )

    async def batch(
        self, calls: Iterable[CallLike], *, timeout_s: float | None = None
    ) -> list[Observation]:
        """Run calls concurrently, booked to this trajectory."""
        return await self.client.batch(calls, trajectory_id=self.id, timeout_s=timeout_s)

    def session(
        self, *, ttl_s: float | None = None, metadata: Mapping[str, Any] | None = None
    ) -> AsyncSession:
        """A further session bound to this trajectory (ended with it)."""
        return self.client.session(ttl_s=ttl_s, metadata=metadata, trajectory_id=self.id)

    async def usage(self) -> TrajectoryUsage:
        """Usage so far (an empty ledger before the first call)."""
        try:
            return await self.client.usage(self.id)
        except GatewayError as exc:
            if _gone(exc):
                return TrajectoryUsage(trajectory_id=self.id)
            raise

    async def release(self) -> TrajectoryUsage:
        """End the trajectory's sessions; its final usage (also kept in ``final_usage``)."""
        try:
            self.final_usage = await self.client.release(self.id)
        except GatewayError as exc:
            if not _gone(exc):
                raise
            self.final_usage = TrajectoryUsage(trajectory_id=self.id)
        return self.final_usage
