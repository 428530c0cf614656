"""The usage ledger: calls, errors, cost and time per tool, per trajectory."""

from __future__ import annotations

from toolfleet.core.protocol import Observation, ToolUsage, TrajectoryUsage


class UsageLedger:
    """In-memory ledger keyed by (tenant, trajectory id)."""

    def __init__(self) -> None:
        self._books: dict[tuple[str, str], TrajectoryUsage] = {}

    def record(self, tenant: str, trajectory_id: str, obs: Observation) -> None:
        """Book one observation to its trajectory."""
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

    def touch(self, tenant: str, trajectory_id: str) -> None:
        """Make the trajectory known with zero usage (e.g. when a session binds to it)."""
        self._books.setdefault(
            (tenant, trajectory_id), TrajectoryUsage(trajectory_id=trajectory_id)
        )

    def get(self, tenant: str, trajectory_id: str) -> TrajectoryUsage | None:
        """The trajectory's usage so far, or None if it was never seen."""
        book = self._books.get((tenant, trajectory_id))
        return book.model_copy(deep=True) if book else None

    def pop(self, tenant: str, trajectory_id: str) -> TrajectoryUsage | None:
        """Remove and return the trajectory's final usage."""
        return self._books.pop((tenant, trajectory_id), None)
