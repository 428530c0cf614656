"""Optional bearer-token auth. Tokens map to tenants; sessions and usage belong to a tenant.

Off when ``api_keys`` is empty (the default): every caller is the tenant ``default``.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

DEFAULT_TENANT = "default"


async def tenant_of(request: Request) -> str:
    """The caller's tenant; raises 401 when auth is on and the key is missing or wrong."""
    keys: dict[str, str] = request.app.state.settings.api_keys
    if not keys:
        return DEFAULT_TENANT
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        for known, tenant in keys.items():
            if hmac.compare_digest(known.encode(), token.strip().encode()):
                return tenant
    raise HTTPException(
        status_code=401,
        detail="missing or invalid API key: send 'Authorization: Bearer <key>'",
        headers={"WWW-Authenticate": "Bearer"},
    )


Tenant = Annotated[str, Depends(tenant_of)]
"""The caller's tenant, as a FastAPI dependency."""
