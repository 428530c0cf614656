"""Sessions, fork, expiry, trajectories and the usage ledger."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from tests.helpers import new_session
from tests.helpers.tools import CounterState


async def count(client, add=1, **options):
    r = await client.post("/v1/tools/counter/call", json={"arguments": {"add": add}, **options})
    assert r.status_code == 200, r.text
    return r.json()["content"][0]["data"]["value"]


async def test_create_get_delete_session(client):
    r = await client.post("/v1/sessions", json={"ttl_s": 60, "metadata": {"task": "t1"}})
    assert r.status_code == 201
    info = r.json()
    sid = info["session_id"]
    created = datetime.fromisoformat(info["created_at"])
    expires = datetime.fromisoformat(info["expires_at"])
    assert 59 <= (expires - created).total_seconds() <= 61
    got = (await client.get(f"/v1/sessions/{sid}")).json()
    assert got["metadata"] == {"task": "t1"} and got["ttl_s"] == 60

    assert await count(client, session_id=sid) == 1
    assert await count(client, session_id=sid) == 2  # state persists across calls

    closed_before = len(CounterState.closed)
    r = await client.delete(f"/v1/sessions/{sid}")
    assert r.status_code == 200
    assert len(CounterState.closed) == closed_before + 1  # its tool state was released
    assert (await client.get(f"/v1/sessions/{sid}")).status_code == 404
    assert (await client.delete(f"/v1/sessions/{sid}")).status_code == 404
    r = await client.post("/v1/tools/counter/call", json={"arguments": {}, "session_id": sid})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "session_not_found"


async def test_session_without_body_uses_defaults(client):
    r = await client.post("/v1/sessions")
    assert r.status_code == 201
    assert r.json()["ttl_s"] == 1800


async def test_session_ttl_is_capped(make_gateway):
    async with make_gateway(max_session_ttl_s=100) as client:
        r = await client.post("/v1/sessions", json={"ttl_s": 10_000})
        assert r.json()["ttl_s"] == 100


async def test_bad_session_body_is_422(client):
    r = await client.post("/v1/sessions", json={"ttl_s": -1})
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["path"] == "body.ttl_s"


async def test_session_expires_and_releases_state(make_gateway):
    async with make_gateway(session_sweep_s=0.05) as client:
        sid = (await client.post("/v1/sessions", json={"ttl_s": 0.3})).json()["session_id"]
        assert await count(client, session_id=sid) == 1
        closed_before = len(CounterState.closed)
        await asyncio.sleep(0.6)
        assert (await client.get(f"/v1/sessions/{sid}")).status_code == 404
        assert len(CounterState.closed) == closed_before + 1
        metrics = (await client.get("/metrics")).text
        assert "toolfleet_sessions 0.0" in metrics


async def test_use_renews_session_ttl(make_gateway):
    async with make_gateway(session_sweep_s=0.05) as client:
        sid = (await client.post("/v1/sessions", json={"ttl_s": 0.5})).json()["session_id"]
        for _ in range(4):  # 0.8 s in all, each call within the TTL of the last
            await asyncio.sleep(0.2)
            await count(client, session_id=sid)
        assert (await client.get(f"/v1/sessions/{sid}")).status_code == 200


async def test_fork_copies_state_then_branches_diverge(client):
    sid = await new_session(client)
    await count(client, 10, session_id=sid)
    r = await client.post(f"/v1/sessions/{sid}/fork", json={"metadata": {"branch": "b"}})
    assert r.status_code == 201
    child = r.json()
    assert child["session_id"] != sid
    assert child["parent_id"] == sid
    assert child["metadata"] == {"branch": "b"}
    assert await count(client, 1, session_id=child["session_id"]) == 11
    assert await count(client, 100, session_id=sid) == 110
    assert await count(client, 1, session_id=child["session_id"]) == 12
    # deleting the parent leaves the fork alive
    await client.delete(f"/v1/sessions/{sid}")
    assert await count(client, 1, session_id=child["session_id"]) == 13


async def test_fork_of_unknown_session_is_404(client):
    r = await client.post("/v1/sessions/s-nope/fork")
    assert r.status_code == 404


async def test_trajectory_opens_session_implicitly_and_keeps_state(client):
    assert await count(client, 2, trajectory_id="traj-1") == 2
    obs = (
        await client.post(
            "/v1/tools/counter/call", json={"arguments": {"add": 3}, "trajectory_id": "traj-1"}
        )
    ).json()
    assert obs["content"][0]["data"] == {"value": 5}
    assert obs["trajectory_id"] == "traj-1"
    assert obs["session_id"].startswith("s-")
    # another trajectory has its own state
    assert await count(client, 1, trajectory_id="traj-2") == 1


async def test_usage_ledger_per_tool(client):
    for text in ("a", "b"):
        await client.post(
            "/v1/tools/echo/call", json={"arguments": {"text": text}, "trajectory_id": "u1"}
        )
    await client.post("/v1/tools/fail/call", json={"arguments": {}, "trajectory_id": "u1"})
    await client.post("/v1/tools/echo/call", json={"arguments": {}, "trajectory_id": "u1"})
    await client.post("/v1/tools/echo/call", json={"arguments": {"text": "x"}})  # no trajectory
    usage = (await client.get("/v1/trajectories/u1/usage")).json()
    assert usage["trajectory_id"] == "u1"
    assert usage["tools"]["echo"]["calls"] == 3
    assert usage["tools"]["echo"]["errors"] == 1
    assert usage["tools"]["echo"]["cost"] == 2.0  # invalid arguments are not charged
    assert usage["tools"]["fail"] == pytest.approx(
        {
            "calls": 1,
            "errors": 1,
            "cost": 0.0,
            "run_ms": usage["tools"]["fail"]["run_ms"],
            "queue_ms": usage["tools"]["fail"]["queue_ms"],
            "input_tokens": 0,
            "output_tokens": 0,
        }
    )
    assert usage["total"]["calls"] == 4 and usage["total"]["errors"] == 2


async def test_batch_calls_are_booked_to_their_trajectories(client):
    calls = [
        {"tool": "echo", "arguments": {"text": "a"}, "trajectory_id": "b1"},
        {"tool": "echo", "arguments": {"text": "a"}, "trajectory_id": "b2"},
        {"tool": "nope", "arguments": {}, "trajectory_id": "b2"},
    ]
    await client.post("/v1/calls", json={"calls": calls})
    assert (await client.get("/v1/trajectories/b1/usage")).json()["total"]["calls"] == 1
    assert (await client.get("/v1/trajectories/b2/usage")).json()["total"]["calls"] == 1


async def test_release_trajectory_ends_its_sessions_and_returns_usage(client):
    await count(client, 4, trajectory_id="r1")
    bound = (await client.post("/v1/sessions", json={"trajectory_id": "r1"})).json()
    await count(client, 1, session_id=bound["session_id"])
    implicit_sid = (
        await client.post("/v1/tools/counter/call", json={"arguments": {}, "trajectory_id": "r1"})
    ).json()["session_id"]
    closed_before = len(CounterState.closed)

    r = await client.delete("/v1/trajectories/r1")
    assert r.status_code == 200
    assert r.json()["tools"]["counter"]["calls"] == 3
    assert len(CounterState.closed) == closed_before + 2
    for sid in (bound["session_id"], implicit_sid):
        assert (await client.get(f"/v1/sessions/{sid}")).status_code == 404
    assert (await client.get("/v1/trajectories/r1/usage")).status_code == 404
    assert (await client.delete("/v1/trajectories/r1")).status_code == 404
    # the id can be used again, from a clean slate
    assert await count(client, 1, trajectory_id="r1") == 1


async def test_unknown_trajectory_is_404(client):
    r = await client.get("/v1/trajectories/never/usage")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "trajectory_not_found"


async def test_session_limit_is_503(make_gateway):
    async with make_gateway(max_sessions=2) as client:
        for _ in range(2):
            assert (await client.post("/v1/sessions")).status_code == 201
        r = await client.post("/v1/sessions")
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "session_limit"
