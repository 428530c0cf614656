"""Sessions: the state one trajectory owns across turns, with an idle TTL and an owner.

This module keeps the sessions' bookkeeping (ids, tenants, expiry, trajectory binding).
What tools keep inside a session lives in :mod:`toolfleet.core.state`, next to the tools.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from toolfleet.core.errors import SessionLimitError, SessionNotFoundError
from toolfleet.core.protocol import SessionInfo


@dataclass
class Session:
    """One session's bookkeeping."""

    session_id: str
    tenant: str
    ttl_s: float
    created_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    trajectory_id: str | None = None
    parent_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def expired(self, now: float) -> bool:
        """True when the idle TTL has passed at monotonic time ``now``."""
        return now - self.last_used > self.ttl_s

    def info(self) -> SessionInfo:
        """The session as the API shows it."""
        idle = time.monotonic() - self.last_used
        return SessionInfo(
            session_id=self.session_id,
            created_at=datetime.fromtimestamp(self.created_at, UTC),
            expires_at=datetime.fromtimestamp(time.time() - idle + self.ttl_s, UTC),
            ttl_s=self.ttl_s,
            trajectory_id=self.trajectory_id,
            parent_id=self.parent_id,
            metadata=self.metadata,
        )


class SessionTable:
    """Live sessions of every tenant, with an index by trajectory."""

    def __init__(self, default_ttl_s: float, max_ttl_s: float, max_sessions: int) -> None:
        self.default_ttl_s = default_ttl_s
        self.max_ttl_s = max_ttl_s
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}
        self._by_trajectory: dict[tuple[str, str], set[str]] = {}
        self._implicit: dict[tuple[str, str], str] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(
        self,
        tenant: str,
        *,
        ttl_s: float | None = None,
        metadata: dict[str, Any] | None = None,
        trajectory_id: str | None = None,
        parent_id: str | None = None,
    ) -> Session:
        """Open a new session."""
        if len(self._sessions) >= self.max_sessions:
            raise SessionLimitError(f"session limit reached ({self.max_sessions} live sessions)")
        session = Session(
            session_id="s-" + secrets.token_urlsafe(12),
            tenant=tenant,
            ttl_s=min(ttl_s or self.default_ttl_s, self.max_ttl_s),
            trajectory_id=trajectory_id,
            parent_id=parent_id,
            metadata=dict(metadata or {}),
        )
        self._sessions[session.session_id] = session
        if trajectory_id is not None:
            self._by_trajectory.setdefault((tenant, trajectory_id), set()).add(session.session_id)
        return session

    def get(self, tenant: str, session_id: str, *, touch: bool = True) -> Session:
        """The caller's live session; raises :class:`SessionNotFoundError`.

        An expired session that the sweeper has not removed yet is reported as not found.
        """
        session = self._sessions.get(session_id)
        now = time.monotonic()
        if session is None or session.tenant != tenant or session.expired(now):
            raise SessionNotFoundError(session_id)
        if touch:
            session.last_used = now
        return session

    def for_trajectory(self, tenant: str, trajectory_id: str) -> Session:
        """The session a trajectory's calls run in, opened on first use."""
        session_id = self._implicit.get((tenant, trajectory_id))
        if session_id is not None:
            try:
                return self.get(tenant, session_id)
            except SessionNotFoundError:
                pass
        session = self.create(tenant, trajectory_id=trajectory_id)
        self._implicit[(tenant, trajectory_id)] = session.session_id
        return session

    def remove(self, session_id: str) -> Session | None:
        """Forget a session (its tool state is released by the caller)."""
        session = self._sessions.pop(session_id, None)
        if session is not None and session.trajectory_id is not None:
            key = (session.tenant, session.trajectory_id)
            members = self._by_trajectory.get(key)
            if members is not None:
                members.discard(session_id)
                if not members:
                    del self._by_trajectory[key]
            if self._implicit.get(key) == session_id:
                del self._implicit[key]
        return session

    def of_trajectory(self, tenant: str, trajectory_id: str) -> list[str]:
        """Ids of every session bound to the trajectory."""
        return sorted(self._by_trajectory.get((tenant, trajectory_id), ()))

    def expired(self) -> list[str]:
        """Ids of the sessions whose TTL has passed."""
        now = time.monotonic()
        return [sid for sid, s in self._sessions.items() if s.expired(now)]
