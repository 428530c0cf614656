"""``/v1/sessions``: open, describe, end and fork sessions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request
from toolfleet.core.protocol import SessionCreate, SessionFork, SessionInfo
from toolfleet.gateway.auth import Tenant
from toolfleet.gateway.routes.tools import runtime

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


@router.post("", status_code=201, summary="Open a session")
async def create_session(
    request: Request, tenant: Tenant, body: Annotated[SessionCreate | None, Body()] = None
) -> SessionInfo:
    """Open a session; its id goes in later calls' ``session_id``."""
    return await runtime(request).create_session(tenant, body or SessionCreate())


@router.get("/{session_id}", summary="Describe a session")
async def get_session(session_id: str, request: Request, tenant: Tenant) -> SessionInfo:
    """A live session of the caller (404 for ended, expired or another tenant's)."""
    return await runtime(request).get_session(tenant, session_id)


@router.delete("/{session_id}", summary="End a session")
async def delete_session(session_id: str, request: Request, tenant: Tenant) -> SessionInfo:
    """End the session and release everything its tools held."""
    return await runtime(request).delete_session(tenant, session_id)


@router.post("/{session_id}/fork", status_code=201, summary="Fork a session")
async def fork_session(
    session_id: str,
    request: Request,
    tenant: Tenant,
    body: Annotated[SessionFork | None, Body()] = None,
) -> SessionInfo:
    """Copy the session, tool state included, into a new session (rollout-tree branching)."""
    return await runtime(request).fork_session(tenant, session_id, body or SessionFork())
