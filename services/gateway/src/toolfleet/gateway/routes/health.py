"""Probes and metrics: ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from toolfleet.core.metrics import CONTENT_TYPE
from toolfleet.gateway.errors import error_response
from toolfleet.gateway.routes.tools import runtime

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness", response_model=None)
async def readyz(request: Request) -> dict[str, object] | Response:
    """The runtime has started and can take calls: in distributed mode, Redis answers and
    every configured service has a live worker."""
    if not getattr(request.app.state, "ready", False):
        return error_response(503, "not_ready", "the gateway is starting or stopping")
    rt = runtime(request)
    why = await rt.readiness()
    if why is not None:
        return error_response(503, "not_ready", why, services=rt.status())
    return {
        "status": "ready",
        "tools": len(rt.specs()),
        "sessions": await rt.session_count(),
        "in_flight": rt.in_flight,
        "services": rt.status(),
    }


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    """The Prometheus text exposition format."""
    return Response(runtime(request).metrics.render(), media_type=CONTENT_TYPE)
