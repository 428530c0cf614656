"""API keys, tenants and isolation between tenants."""

from __future__ import annotations

import pytest

KEYS = {"key-a": "team-a", "key-b": "team-b"}
A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


@pytest.fixture
async def authed(make_gateway):
    async with make_gateway(api_keys=KEYS) as client:
        yield client


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic a2V5LWE="}]
)
async def test_missing_or_wrong_key_is_401(authed, headers):
    r = await authed.post("/v1/tools/echo/call", json={"arguments": {"text": "x"}}, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    assert (await authed.get("/v1/tools", headers=headers)).status_code == 401


async def test_valid_key_calls(authed):
    r = await authed.post("/v1/tools/echo/call", json={"arguments": {"text": "x"}}, headers=A)
    assert r.json()["ok"] is True


async def test_probes_need_no_key(authed):
    assert (await authed.get("/healthz")).status_code == 200
    assert (await authed.get("/readyz")).status_code == 200


async def test_other_tenants_session_is_404(authed):
    sid = (await authed.post("/v1/sessions", headers=A)).json()["session_id"]
    assert (await authed.get(f"/v1/sessions/{sid}", headers=B)).status_code == 404
    assert (await authed.post(f"/v1/sessions/{sid}/fork", headers=B)).status_code == 404
    assert (await authed.delete(f"/v1/sessions/{sid}", headers=B)).status_code == 404
    r = await authed.post(
        "/v1/tools/counter/call", json={"arguments": {}, "session_id": sid}, headers=B
    )
    assert r.status_code == 404
    # still alive for its owner
    assert (await authed.get(f"/v1/sessions/{sid}", headers=A)).status_code == 200


async def test_trajectories_are_per_tenant(authed):
    body = {"arguments": {"add": 1}, "trajectory_id": "shared-name"}
    for _ in range(3):
        await authed.post("/v1/tools/counter/call", json=body, headers=A)
    r = await authed.post("/v1/tools/counter/call", json=body, headers=B)
    assert r.json()["content"][0]["data"] == {"value": 1}  # B's own state
    usage_a = (await authed.get("/v1/trajectories/shared-name/usage", headers=A)).json()
    usage_b = (await authed.get("/v1/trajectories/shared-name/usage", headers=B)).json()
    assert usage_a["total"]["calls"] == 3 and usage_b["total"]["calls"] == 1
    await authed.delete("/v1/trajectories/shared-name", headers=B)
    usage_a = (await authed.get("/v1/trajectories/shared-name/usage", headers=A)).json()
    assert usage_a["total"]["calls"] == 3


async def test_idempotency_keys_are_per_tenant(authed):
    body = {"arguments": {"text": "x"}, "idempotency_key": "same"}
    a = (await authed.post("/v1/tools/echo/call", json=body, headers=A)).json()
    b = (await authed.post("/v1/tools/echo/call", json=body, headers=B)).json()
    assert a["call_id"] != b["call_id"]
