"""Calling tools through REST v1: success, failures as observations, HTTP errors."""

from __future__ import annotations

import asyncio

from tests.helpers.tools import PNG_1x1


async def test_list_tools_with_schemas(client):
    r = await client.get("/v1/tools")
    assert r.status_code == 200
    tools = {t["name"]: t for t in r.json()["tools"]}
    assert {"echo", "counter", "sleep"} <= tools.keys()
    echo = tools["echo"]
    assert echo["input_schema"]["properties"]["text"]["type"] == "string"
    assert echo["input_schema"]["required"] == ["text"]
    assert tools["counter"]["stateful"] is True


async def test_list_tools_openai_format(client):
    r = await client.get("/v1/tools", params={"format": "openai"})
    assert r.status_code == 200
    entries = {e["function"]["name"]: e for e in r.json()}
    assert entries["echo"]["type"] == "function"
    assert entries["echo"]["function"]["description"] == "Sends the text back."
    assert entries["echo"]["function"]["parameters"]["properties"]["times"]["maximum"] == 10


async def test_list_tools_unknown_format_is_422(client):
    r = await client.get("/v1/tools", params={"format": "yaml"})
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["path"] == "query.format"


async def test_call_returns_observation(client):
    r = await client.post("/v1/tools/echo/call", json={"arguments": {"text": "ab", "times": 2}})
    assert r.status_code == 200
    obs = r.json()
    assert obs["ok"] is True
    assert obs["tool"] == "echo"
    assert obs["content"] == [{"type": "text", "text": "abab"}]
    assert obs["data"] == {"length": 2}
    assert obs["error"] is None
    assert obs["usage"]["cost"] == 1.0
    assert obs["usage"]["run_ms"] >= 0
    assert len(obs["call_id"]) == 32


async def test_call_image_part(client):
    obs = (await client.post("/v1/tools/picture/call", json={})).json()
    assert obs["content"] == [
        {
            "type": "image",
            "mime_type": "image/png",
            "data": PNG_1x1,
            "width": 1,
            "height": 1,
            "ref": None,
        }
    ]


async def test_call_without_body_means_no_arguments(client):
    r = await client.post("/v1/tools/noop/call")
    assert r.status_code == 200
    assert r.json()["ok"] is True


async def test_tool_failure_is_200_with_diagnostic(client):
    r = await client.post("/v1/tools/fail/call", json={"arguments": {}})
    assert r.status_code == 200
    obs = r.json()
    assert obs["ok"] is False
    assert obs["error"] == {
        "kind": "runtime_error",
        "message": "division by zero",
        "detail": "line 1",
        "hint": "check the divisor",
        "retryable": False,
    }


async def test_tool_crash_is_internal_and_retryable(client):
    obs = (await client.post("/v1/tools/fail/call", json={"arguments": {"how": "crash"}})).json()
    assert obs["ok"] is False
    assert obs["error"]["kind"] == "internal"
    assert obs["error"]["retryable"] is True
    assert "boom" in obs["error"]["detail"]
    # the service keeps serving
    assert (await client.post("/v1/tools/noop/call")).json()["ok"] is True


async def test_bad_tool_arguments_are_an_observation_naming_the_field(client):
    r = await client.post("/v1/tools/echo/call", json={"arguments": {"times": "many"}})
    assert r.status_code == 200
    obs = r.json()
    assert obs["ok"] is False
    assert obs["error"]["kind"] == "invalid_arguments"
    assert "text: Field required" in obs["error"]["detail"]
    assert "times: Input should be a valid integer" in obs["error"]["detail"]
    assert obs["usage"]["cost"] == 0


async def test_malformed_json_is_422(client):
    r = await client.post(
        "/v1/tools/echo/call",
        content=b'{"arguments": {',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    body = r.json()
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["fields"][0]["type"] == "json_invalid"


async def test_wrong_request_types_are_422_with_field_path(client):
    r = await client.post("/v1/tools/echo/call", json={"arguments": [1, 2], "timeout_s": "soon"})
    assert r.status_code == 422
    paths = {f["path"] for f in r.json()["error"]["fields"]}
    assert paths == {"body.arguments", "body.timeout_s"}


async def test_unknown_request_field_is_422(client):
    r = await client.post("/v1/tools/echo/call", json={"arguments": {}, "sesion_id": "x"})
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["path"] == "body.sesion_id"


async def test_unknown_tool_is_404_listing_names(client):
    r = await client.post("/v1/tools/nope/call", json={"arguments": {}})
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "unknown_tool"
    assert "echo" in error["available"] and "counter" in error["available"]


async def test_unknown_route_and_method_are_json(client):
    r = await client.get("/v2/nothing")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    r = await client.delete("/v1/tools")
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "method_not_allowed"


async def test_timeout_becomes_timeout_diagnostic(client):
    r = await client.post(
        "/v1/tools/sleep/call", json={"arguments": {"seconds": 5}, "timeout_s": 0.1}
    )
    obs = r.json()
    assert obs["ok"] is False
    assert obs["error"]["kind"] == "timeout"
    assert "0.1 s" in obs["error"]["message"]


async def test_timeout_is_capped_by_settings(make_gateway):
    async with make_gateway(max_timeout_s=0.1) as client:
        r = await client.post(
            "/v1/tools/sleep/call", json={"arguments": {"seconds": 5}, "timeout_s": 100}
        )
        assert r.json()["error"]["kind"] == "timeout"


async def test_oversize_body_is_413(make_gateway):
    async with make_gateway(max_body_bytes=1000) as client:
        r = await client.post("/v1/tools/echo/call", json={"arguments": {"text": "x" * 2000}})
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "payload_too_large"
        assert r.json()["error"]["limit_bytes"] == 1000
        assert len(r.headers["x-request-id"]) == 32  # a refusal names its request too

        async def chunks():  # no Content-Length: counted as it streams
            yield b'{"arguments": {"text": "'
            for _ in range(10):
                yield b"y" * 200
            yield b'"}}'

        r = await client.post(
            "/v1/tools/echo/call", content=chunks(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413 and r.headers["connection"] == "close"

        async def small():  # streamed, within the limit
            yield b'{"arguments": {"text": "'
            yield b"z" * 500
            yield b'"}}'

        r = await client.post(
            "/v1/tools/echo/call", content=small(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 200 and r.json()["content"][0]["text"] == "z" * 500
        # small bodies still pass
        r = await client.post("/v1/tools/echo/call", json={"arguments": {"text": "ok"}})
        assert r.json()["ok"] is True


async def test_a_path_may_have_a_body_limit_of_its_own(make_gateway):
    limits = {"/v1/tools/echo/call": 5000}
    async with make_gateway(max_body_bytes=1000, path_body_bytes=limits) as client:
        text = {"arguments": {"text": "x" * 3000}}
        r = await client.post("/v1/tools/echo/call", json=text)
        assert r.status_code == 200 and r.json()["ok"] is True
        r = await client.post("/v1/tools/noop/call", json=text)  # the others keep the default
        assert r.status_code == 413 and r.json()["error"]["limit_bytes"] == 1000
        r = await client.post("/v1/tools/echo/call", json={"arguments": {"text": "x" * 6000}})
        assert r.status_code == 413 and r.json()["error"]["limit_bytes"] == 5000


async def test_too_many_in_flight_is_429_with_retry_after(make_gateway):
    async with make_gateway(max_in_flight=2, retry_after_s=3) as client:
        slow = [
            asyncio.create_task(
                client.post("/v1/tools/sleep/call", json={"arguments": {"seconds": 0.5}})
            )
            for _ in range(2)
        ]
        while client.app.state.runtime.in_flight < 2:
            await asyncio.sleep(0.01)
        r = await client.post("/v1/tools/noop/call")
        assert r.status_code == 429
        assert r.headers["retry-after"] == "3"
        assert r.json()["error"]["code"] == "overloaded"
        assert [r.json()["ok"] for r in await asyncio.gather(*slow)] == [True, True]
        # capacity is back once they finish
        assert (await client.post("/v1/tools/noop/call")).status_code == 200


async def test_idempotency_key_runs_once(client):
    body = {"arguments": {"add": 5}, "trajectory_id": "t-idem", "idempotency_key": "k1"}
    first, second = await asyncio.gather(
        client.post("/v1/tools/counter/call", json=body),
        client.post("/v1/tools/counter/call", json=body),
    )
    third = await client.post("/v1/tools/counter/call", json=body)
    assert first.json() == second.json() == third.json()
    assert first.json()["content"][0]["data"] == {"value": 5}
    other = await client.post("/v1/tools/counter/call", json={**body, "idempotency_key": "k2"})
    assert other.json()["content"][0]["data"] == {"value": 10}


async def test_idempotency_key_forgets_a_retryable_failure(client):
    body = {"arguments": {"how": "crash"}, "trajectory_id": "t-idem-fail", "idempotency_key": "f"}
    first = (await client.post("/v1/tools/fail/call", json=body)).json()
    assert first["error"]["retryable"] is True
    second = (await client.post("/v1/tools/fail/call", json=body)).json()
    assert second["call_id"] != first["call_id"]  # run again, not the remembered failure
    usage = (await client.get("/v1/trajectories/t-idem-fail/usage")).json()
    assert usage["tools"]["fail"]["calls"] == 2
