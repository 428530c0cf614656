"""The usage ledger: calls, errors, cost and time per tool, per trajectory.

One interface, :class:`UsageLedger`: in this process's memory (embedded mode, here) or in
Redis, shared by every gateway replica (:mod:`toolfleet.core.redis_state`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from toolfleet.core.protocol import ErrorKind, Observation, ToolUsage, TrajectoryUsage


def books(obs: Observation) -> bool:
    """Whether the ledger books this answer. Not booked: a call that did not reach the tool,
    or whose answer did not come back (queue full, worker gone, Redis blip: a retryable
    ``unavailable`` or ``rate_limited``; sent again, it is booked then), and a session that
    expired (the platform's doing, not the model's error)."""
    error = obs.error
    if error is None:
        return True
    if error.kind is ErrorKind.session_expired:
        return False
    return not (error.retryable and error.kind in (ErrorKind.unavailable, ErrorKind.rate_limited))


class UsageLedger(abc.ABC):
    """Usage books keyed by (tenant, trajectory id)."""

    @abc.abstractmethod
    async def record(self, tenant: str, trajectory_id: str, obs: Observation) -> None:
        """Book one observation to its trajectory."""

    @abc.abstractmethod
    async def touch(self, tenant: str, trajectory_id: str) -> None:
        """Make the trajectory known with zero usage (e.g. when a session binds to it)."""

    @abc.abstractmethod
    async def get(self, tenant: str, trajectory_id: str) -> TrajectoryUsage | None:
        """The trajectory's usage so far, or None if it was never seen."""

    @abc.abstractmethod
    async def pop(self, tenant: str, trajectory_id: str) -> TrajectoryUsage | None:
        """Remove and return the trajectory's final usage."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


@dataclass(frozen=True)
class Booking:
    """Where a call's answer is booked: its tenant's trajectory in a ledger."""

    ledger: UsageLedger
    tenant: str
    trajectory_id: str

    async def book(self, obs: Observation) -> None:
        """Book the answer, unless :func:`books` says it is not one."""
        if books(obs):
            await self.ledger.record(self.tenant, self.trajectory_id, obs)


class MemoryUsageLedger(UsageLedger):
    """The ledger of one process (embedded mode)."""

    def __init__(self) -> None:
        self._books: dict[tuple[str, str], TrajectoryUsage] = {}

    async def record(self, tenant: str, trajectory_id: str, obs: Observation) -> None:
        book = self._books.get((tenant, trajectory_id))
        if book is None:
            book = self._books[(tenant, trajectory_id)] = TrajectoryUsage(
                trajectory_id=trajectory_id
            )
        tool = book.tools.get(obs.tool)
        if tool is None:
            tool = book.tools[obs.tool] = ToolUsage()
        tool.add(obs)
        book.total.add(obs)

    async def touch(self, tenant: str, trajectory_id: str) -> None:
        self._books.setdefault(
            (tenant, trajectory_id), TrajectoryUsage(trajectory_id=trajectory_id)
        )

    async def get(self, tenant: str, trajectory_id: str) -> TrajectoryUsage | None:
        book = self._books.get((tenant, trajectory_id))
        return book.model_copy(deep=True) if book else None

    async def pop(self, tenant: str, trajectory_id: str) -> TrajectoryUsage | None:
        return self._books.pop((tenant, trajectory_id), None)
