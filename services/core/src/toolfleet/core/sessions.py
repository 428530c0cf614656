"""Sessions: the state one trajectory owns across turns, with an idle TTL and an owner.

This module keeps the sessions' bookkeeping (ids, tenants, expiry, trajectory binding) behind
one interface, :class:`SessionStore`: in this process's memory (embedded mode, here) or in
Redis, shared by every gateway replica (distributed mode, :mod:`toolfleet.core.redis_state`).
What tools keep inside a session lives in :mod:`toolfleet.core.state`, next to the tools.

Rules both stores keep:

- A trajectory has one session unless the caller names another: the first session opened
  with (or forked into) a trajectory id becomes the trajectory's session, and calls that
  carry only the trajectory id run in it; a trajectory without one gets one on first use.
- A session whose TTL passed is ended once (by one sweeper, cluster-wide) and remembered as
  expired for a while: the next call that would have run in it is told so
  (:class:`SessionExpiredError`) instead of silently running in a fresh session.
"""

from __future__ import annotations

import abc
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from toolfleet.core.errors import SessionExpiredError, SessionLimitError, SessionNotFoundError
from toolfleet.core.protocol import SessionInfo


def new_session_id() -> str:
    """A fresh, unguessable session id."""
    return "s-" + secrets.token_urlsafe(12)


@dataclass
class Session:
    """One session's bookkeeping. ``expires_at`` is wall-clock time (``time.time()``), so
    every gateway of a deployment reads it alike."""

    session_id: str
    tenant: str
    ttl_s: float
    created_at: float = field(default_factory=time.time)
    expires_at: float = 0.0
    trajectory_id: str | None = None
    parent_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.expires_at:
            self.expires_at = self.created_at + self.ttl_s

    def expired(self, now: float) -> bool:
        """True when the idle TTL has passed at wall-clock time ``now``."""
        return now > self.expires_at

    def touch(self, now: float) -> None:
        """Renew the idle TTL."""
        self.expires_at = now + self.ttl_s

    def info(self) -> SessionInfo:
        """The session as the API shows it."""
        return SessionInfo(
            session_id=self.session_id,
            created_at=datetime.fromtimestamp(self.created_at, UTC),
            expires_at=datetime.fromtimestamp(self.expires_at, UTC),
            ttl_s=self.ttl_s,
            trajectory_id=self.trajectory_id,
            parent_id=self.parent_id,
            metadata=self.metadata,
        )


class SessionStore(abc.ABC):
    """Live sessions of every tenant, with their trajectory bindings and expiry."""

    def __init__(self, default_ttl_s: float, max_ttl_s: float, max_sessions: int) -> None:
        self.default_ttl_s = default_ttl_s
        self.max_ttl_s = max_ttl_s
        self.max_sessions = max_sessions

    def _ttl(self, ttl_s: float | None) -> float:
        return min(ttl_s or self.default_ttl_s, self.max_ttl_s)

    @abc.abstractmethod
    async def count(self) -> int:
        """Live sessions (of the whole deployment, for a shared store)."""

    @abc.abstractmethod
    async def create(
        self,
        tenant: str,
        *,
        ttl_s: float | None = None,
        metadata: dict[str, Any] | None = None,
        trajectory_id: str | None = None,
        parent_id: str | None = None,
    ) -> Session:
        """Open a new session; with ``trajectory_id`` it becomes the trajectory's session
        unless the trajectory has one. Raises :class:`SessionLimitError`."""

    @abc.abstractmethod
    async def get(self, tenant: str, session_id: str, *, touch: bool = True) -> Session:
        """The caller's live session, its TTL renewed unless ``touch`` is false. Raises
        :class:`SessionExpiredError` for one that expired, else :class:`SessionNotFoundError`."""

    @abc.abstractmethod
    async def for_trajectory(self, tenant: str, trajectory_id: str) -> Session:
        """The session a trajectory's calls run in, opened on first use. Raises
        :class:`SessionExpiredError` once when that session expired (the next call opens a
        fresh one)."""

    @abc.abstractmethod
    async def remove(self, session_id: str) -> Session | None:
        """Forget a session (its tool state is released by the caller)."""

    @abc.abstractmethod
    async def of_trajectory(self, tenant: str, trajectory_id: str) -> list[str]:
        """Ids of every live session bound to the trajectory."""

    @abc.abstractmethod
    async def forget_trajectory(self, tenant: str, trajectory_id: str) -> None:
        """Drop the trajectory's binding and expiry marker (it was released)."""

    @abc.abstractmethod
    async def take_expired(self) -> list[str]:
        """Remove the sessions whose TTL passed, remember them as expired, and return their
        ids. Each id is returned once, to one caller, even with several gateways."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class MemorySessionStore(SessionStore):
    """The sessions of one process (embedded mode)."""

    def __init__(self, default_ttl_s: float, max_ttl_s: float, max_sessions: int) -> None:
        super().__init__(default_ttl_s, max_ttl_s, max_sessions)
        self._sessions: dict[str, Session] = {}
        self._by_trajectory: dict[tuple[str, str], set[str]] = {}
        self._bound: dict[tuple[str, str], str] = {}  # the trajectory's session
        # expired session id -> (tenant, when); trajectory -> its expired session id
        self._expired: dict[str, tuple[str, float]] = {}
        self._expired_bound: dict[tuple[str, str], str] = {}
        self._unreleased: list[str] = []  # expired, tool state not released yet

    def __len__(self) -> int:
        return len(self._sessions)

    async def count(self) -> int:
        return len(self._sessions)

    async def create(
        self,
        tenant: str,
        *,
        ttl_s: float | None = None,
        metadata: dict[str, Any] | None = None,
        trajectory_id: str | None = None,
        parent_id: str | None = None,
    ) -> Session:
        if len(self._sessions) >= self.max_sessions:
            raise SessionLimitError(f"session limit reached ({self.max_sessions} live sessions)")
        session = Session(
            session_id=new_session_id(),
            tenant=tenant,
            ttl_s=self._ttl(ttl_s),
            trajectory_id=trajectory_id,
            parent_id=parent_id,
            metadata=dict(metadata or {}),
        )
        self._sessions[session.session_id] = session
        if trajectory_id is not None:
            key = (tenant, trajectory_id)
            self._by_trajectory.setdefault(key, set()).add(session.session_id)
            if key not in self._bound:
                self._bound[key] = session.session_id
                self._expired_bound.pop(key, None)
        return session

    async def get(self, tenant: str, session_id: str, *, touch: bool = True) -> Session:
        session = self._sessions.get(session_id)
        now = time.time()
        if session is not None and session.tenant == tenant and session.expired(now):
            self._mark_expired(session)  # not swept yet: report it as the sweep would
        if session is None or session.tenant != tenant or session.expired(now):
            expired = self._expired.get(session_id)
            if expired is not None and expired[0] == tenant:
                raise SessionExpiredError(session_id)
            raise SessionNotFoundError(session_id)
        if touch:
            session.touch(now)
        return session

    async def for_trajectory(self, tenant: str, trajectory_id: str) -> Session:
        key = (tenant, trajectory_id)
        session_id = self._bound.get(key)
        if session_id is not None:
            session = self._sessions.get(session_id)
            if session is not None and not session.expired(time.time()):
                session.touch(time.time())
                return session
            # expired but not swept yet: sweep it now, so it is reported once
            if session is not None:
                self._mark_expired(session)
        expired = self._expired_bound.pop(key, None)
        if expired is not None:
            raise SessionExpiredError(expired, trajectory_id=trajectory_id)
        return await self.create(tenant, trajectory_id=trajectory_id)

    async def remove(self, session_id: str) -> Session | None:
        return self._drop(session_id)

    def _drop(self, session_id: str) -> Session | None:
        session = self._sessions.pop(session_id, None)
        if session is not None and session.trajectory_id is not None:
            key = (session.tenant, session.trajectory_id)
            members = self._by_trajectory.get(key)
            if members is not None:
                members.discard(session_id)
                if not members:
                    del self._by_trajectory[key]
            if self._bound.get(key) == session_id:
                del self._bound[key]
        return session

    async def of_trajectory(self, tenant: str, trajectory_id: str) -> list[str]:
        return sorted(self._by_trajectory.get((tenant, trajectory_id), ()))

    async def forget_trajectory(self, tenant: str, trajectory_id: str) -> None:
        self._bound.pop((tenant, trajectory_id), None)
        self._expired_bound.pop((tenant, trajectory_id), None)

    async def take_expired(self) -> list[str]:
        now = time.time()
        # expiry markers are kept as long as the longest TTL: later, "not found" is true
        for sid in [s for s, (_, when) in self._expired.items() if now - when > self.max_ttl_s]:
            del self._expired[sid]
        for session in [s for s in self._sessions.values() if s.expired(now)]:
            self._mark_expired(session)
        taken, self._unreleased = self._unreleased, []
        return taken

    def _mark_expired(self, session: Session) -> None:
        """Remember the session as expired and drop it; its tool state is released by whoever
        takes it from :meth:`take_expired` next."""
        if session.trajectory_id is not None:
            key = (session.tenant, session.trajectory_id)
            if self._bound.get(key) == session.session_id:
                self._expired_bound[key] = session.session_id
        self._expired[session.session_id] = (session.tenant, time.time())
        self._drop(session.session_id)
        self._unreleased.append(session.session_id)
