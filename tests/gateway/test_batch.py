"""``POST /v1/calls``: concurrent batches, in order, failures contained."""

from __future__ import annotations


async def test_batch_keeps_request_order(client):
    calls = [{"tool": "echo", "arguments": {"text": str(i)}} for i in range(20)]
    r = await client.post("/v1/calls", json={"calls": calls})
    assert r.status_code == 200
    texts = [o["content"][0]["text"] for o in r.json()["observations"]]
    assert texts == [str(i) for i in range(20)]


async def test_batch_runs_calls_concurrently(client):
    # Each barrier call returns only when all 4 wait at once: run one by one, they time out.
    calls = [{"tool": "barrier", "arguments": {"parties": 4}, "timeout_s": 5} for _ in range(4)]
    observations = (await client.post("/v1/calls", json={"calls": calls})).json()["observations"]
    assert [o["ok"] for o in observations] == [True] * 4


async def test_one_failing_call_never_fails_the_batch(client):
    calls = [
        {"tool": "echo", "arguments": {"text": "a"}},
        {"tool": "nope", "arguments": {}},
        {"tool": "echo", "arguments": {"times": 3}},
        {"tool": "fail", "arguments": {"how": "crash"}},
        {"tool": "counter", "arguments": {}, "session_id": "s-missing"},
        {"tool": "sleep", "arguments": {"seconds": 3}, "timeout_s": 0.05},
        {"tool": "echo", "arguments": {"text": "z"}},
    ]
    r = await client.post("/v1/calls", json={"calls": calls})
    assert r.status_code == 200
    obs = r.json()["observations"]
    assert [o["ok"] for o in obs] == [True, False, False, False, False, False, True]
    assert [o["error"]["kind"] for o in obs if not o["ok"]] == [
        "not_found",
        "invalid_arguments",
        "internal",
        "not_found",
        "timeout",
    ]
    assert "echo" in obs[1]["error"]["hint"]
    assert [o["tool"] for o in obs] == [c["tool"] for c in calls]


async def test_batch_envelope_errors_are_422(client):
    r = await client.post("/v1/calls", json={"calls": [{"arguments": {}}]})
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["path"] == "body.calls.0.tool"
    r = await client.post("/v1/calls", json={"calls": "echo"})
    assert r.status_code == 422


async def test_batch_over_limit_is_413(make_gateway):
    async with make_gateway(max_batch_calls=3) as client:
        calls = [{"tool": "noop", "arguments": {}}] * 4
        r = await client.post("/v1/calls", json={"calls": calls})
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "batch_too_large"


async def test_batch_over_in_flight_limit_is_429(make_gateway):
    async with make_gateway(max_in_flight=3) as client:
        calls = [{"tool": "noop", "arguments": {}}] * 4
        r = await client.post("/v1/calls", json={"calls": calls})
        assert r.status_code == 429
        assert "retry-after" in r.headers
