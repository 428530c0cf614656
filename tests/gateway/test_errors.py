"""Every error a caller must act on, answered in the gateway's one JSON shape: its status,
its whole body and its Retry-After, pinned."""

from __future__ import annotations

import httpx
from asgi_lifespan import LifespanManager
from toolfleet.core import Settings
from toolfleet.core.dispatch import InProcessDispatcher
from toolfleet.core.errors import DispatchError
from toolfleet.gateway.app import create_app

from tests.helpers import new_session
from tests.helpers.tools import test_registry


def answer(r: httpx.Response) -> tuple[int, dict, str | None]:
    return r.status_code, r.json(), r.headers.get("retry-after")


async def test_lookups_are_404_naming_what_was_not_found(client):
    r = await client.post("/v1/tools/nope/call", json={"arguments": {}})
    names = ["barrier", "counter", "echo", "fail", "noop", "picture", "sleep"]
    assert answer(r) == (
        404,
        {
            "error": {
                "code": "unknown_tool",
                "message": "unknown tool 'nope'; did you mean 'noop'?",
                "available": names,
                "closest": ["noop"],
            }
        },
        None,
    )
    r = await client.get("/v1/sessions/s-gone")
    message = "session 's-gone' not found (never existed, ended or expired)"
    assert answer(r) == (
        404,
        {"error": {"code": "session_not_found", "message": message, "session_id": "s-gone"}},
        None,
    )
    r = await client.get("/v1/trajectories/t-none/usage")
    assert answer(r) == (
        404,
        {
            "error": {
                "code": "trajectory_not_found",
                "message": "trajectory 't-none' not found",
                "trajectory_id": "t-none",
            }
        },
        None,
    )


async def test_overload_and_limits_say_when_to_retry(make_gateway):
    async with make_gateway(max_in_flight=1, retry_after_s=4, max_sessions=1) as client:
        calls = [{"tool": "echo", "arguments": {"text": "x"}}] * 2
        r = await client.post("/v1/calls", json={"calls": calls})
        message = "too many calls in flight or queued (0 calls in flight, limit 1); retry later"
        assert answer(r) == (
            429,
            {"error": {"code": "overloaded", "message": message, "retry_after_s": 4}},
            "4",
        )
        await new_session(client)
        r = await client.post("/v1/sessions")
        message = "session limit reached (1 live sessions)"
        assert answer(r) == (503, {"error": {"code": "session_limit", "message": message}}, "5")


class LostWorker(InProcessDispatcher):
    """Forks fail as when the worker holding the session is gone."""

    async def fork_session(self, source_id: str, new_id: str) -> None:
        raise DispatchError("fork on worker w-1 failed: it is gone")


async def test_a_lost_worker_is_503_unavailable():
    settings = Settings()
    app = create_app(settings, dispatcher=LostWorker(test_registry()))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://g") as client:
            sid = await new_session(client)
            r = await client.post(f"/v1/sessions/{sid}/fork")
            message = "fork on worker w-1 failed: it is gone"
            assert answer(r) == (503, {"error": {"code": "unavailable", "message": message}}, "1")
            r = await client.get(f"/v1/sessions/{sid}")
            assert r.status_code == 200  # the parent is untouched, and no child was kept
            assert len(app.state.runtime.sessions) == 1
