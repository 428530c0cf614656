"""``/v1/trajectories``: the usage ledger of a trajectory, and its release."""

from __future__ import annotations

from fastapi import APIRouter, Request
from toolfleet.core.protocol import TrajectoryUsage
from toolfleet.gateway.auth import Tenant
from toolfleet.gateway.routes.tools import runtime

router = APIRouter(prefix="/v1/trajectories", tags=["trajectories"])


@router.get("/{trajectory_id}/usage", summary="Usage of a trajectory")
async def get_usage(trajectory_id: str, request: Request, tenant: Tenant) -> TrajectoryUsage:
    """Calls, errors, cost and run time per tool, and their total."""
    return await runtime(request).usage(tenant, trajectory_id)


@router.delete("/{trajectory_id}", summary="Release a trajectory")
async def release(trajectory_id: str, request: Request, tenant: Tenant) -> TrajectoryUsage:
    """End every session of the trajectory and return its final usage."""
    return await runtime(request).release_trajectory(tenant, trajectory_id)
