"""The HTTP edges of ``/mcp`` and what a result says: every refusal a JSON-RPC error in JSON,
Host and Origin checked each by its own list, GET refused at once, batches per protocol
version, output schemas listed, call options checked by name, each fact said once."""

from __future__ import annotations

import time
from typing import Any

import httpx
from toolfleet.core.protocol import ErrorDiagnostic, ErrorKind, Observation, TablePart, TextPart
from toolfleet.gateway.mcp_endpoint import to_result

from tests.helpers import gateway, new_session, rpc

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
OLD = {"mcp-protocol-version": "2025-03-26"}
NEW = {"mcp-protocol-version": "2025-06-18"}


def call(name: str, arguments: dict[str, Any], meta: dict | None = None, id_: int = 1) -> dict:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if meta is not None:
        params["_meta"] = meta
    return rpc("tools/call", params, id_)


def assert_jsonrpc_error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["jsonrpc"] == "2.0" and body["error"]["data"]["code"] == code
    return body["error"]["message"]


async def test_allowed_origins_alone_leave_every_host_served() -> None:
    async with gateway(mcp_allowed_origins=["https://app.example.org"]) as http:
        listed = await http.post("/mcp", json=rpc("tools/list"), headers={**HEADERS, **NEW})
        assert listed.status_code == 200, listed.text
        allowed = {**HEADERS, **NEW, "Origin": "https://app.example.org"}
        assert (await http.post("/mcp", json=rpc("tools/list"), headers=allowed)).status_code == 200
        foreign = await http.post(
            "/mcp", json=rpc("tools/list"), headers={**allowed, "Origin": "https://evil.example"}
        )
        assert "evil.example" in assert_jsonrpc_error(foreign, 403, "forbidden_origin")


async def test_host_refusal_is_json() -> None:
    async with gateway(mcp_allowed_hosts=["tools.example.org"]) as http:
        r = await http.post("/mcp", json=rpc("tools/list"), headers={**HEADERS, **NEW})
        assert "gateway" in assert_jsonrpc_error(r, 421, "misdirected_request")
        ok = await http.post(
            "/mcp", json=rpc("tools/list"), headers={**HEADERS, **NEW, "Host": "tools.example.org"}
        )
        assert ok.status_code == 200


async def test_unauthorized_is_a_jsonrpc_error() -> None:
    async with gateway(api_keys={"s3cret": "team-a"}) as http:
        r = await http.post("/mcp", json=rpc("tools/list"), headers={**HEADERS, **NEW})
        assert "Bearer" in assert_jsonrpc_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"


async def test_get_answers_405_at_once() -> None:
    async with gateway() as http:
        started = time.monotonic()
        r = await http.get("/mcp", headers={"Accept": "text/event-stream"})
        assert time.monotonic() - started < 5
        assert "POST" in assert_jsonrpc_error(r, 405, "method_not_allowed")
        assert r.headers["allow"] == "POST, DELETE"


async def test_non_json_post_is_refused_in_json() -> None:
    async with gateway() as http:
        r = await http.post("/mcp", content=b"{}", headers={**NEW, "Content-Type": "text/plain"})
        assert_jsonrpc_error(r, 415, "unsupported_media_type")


async def test_batches_by_protocol_version() -> None:
    batch = [call("echo", {"text": "a"}, id_=1), rpc("tools/list", id_=2)]
    async with gateway() as http:
        r = await http.post("/mcp", json=batch, headers={**HEADERS, **OLD})
        assert r.status_code == 200, r.text
        answers = {a["id"]: a for a in r.json()}
        assert answers[1]["result"]["content"][0]["text"] == "a"
        assert "tools" in answers[2]["result"]
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        only_notes = await http.post("/mcp", json=[note], headers={**HEADERS, **OLD})
        assert only_notes.status_code == 202
        refused = await http.post("/mcp", json=batch, headers={**HEADERS, **NEW})
        assert "2025-06-18" in assert_jsonrpc_error(refused, 400, "batch_not_supported")


async def test_tools_list_has_output_schemas() -> None:
    async with gateway() as http:
        r = await http.post("/mcp", json=rpc("tools/list"), headers={**HEADERS, **NEW})
        tools = {t["name"]: t for t in r.json()["result"]["tools"]}
        assert tools["echo"]["outputSchema"]["properties"]["length"]["type"] == "integer"
        assert "outputSchema" not in tools["noop"] or tools["noop"]["outputSchema"] is None


async def test_malformed_call_options_are_errors_naming_them() -> None:
    async with gateway() as http:
        sid = await new_session(http)
        h = {**HEADERS, **NEW}

        async def error_of(body: dict) -> str:
            r = await http.post("/mcp", json=body, headers=h)
            assert r.status_code == 200, r.text
            assert "result" not in r.json(), r.json()
            return r.json()["error"]["message"]

        as_string = await error_of(call("counter", {"add": 1, "_toolfleet": sid}))
        assert "_toolfleet must be an object" in as_string
        misspelt = await error_of(call("counter", {"add": 1, "_toolfleet": {"sessionId": sid}}))
        assert "'sessionId'" in misspelt and "did you mean 'session_id'" in misspelt
        meta = await error_of(call("counter", {"add": 1}, meta={"toolfleet/sesion_id": sid}))
        assert "'sesion_id'" in meta and "session_id" in meta
        bad_value = await error_of(call("echo", {"text": "x", "_toolfleet": {"timeout_s": -1}}))
        assert "timeout_s" in bad_value
        # the right spelling still works, with _meta or _toolfleet
        ok = await http.post(
            "/mcp", json=call("counter", {"add": 2, "_toolfleet": {"session_id": sid}}), headers=h
        )
        assert '"value": 2' in ok.json()["result"]["content"][0]["text"]


async def test_failures_say_each_fact_once() -> None:
    async with gateway() as http:
        h = {**HEADERS, **NEW}
        r = await http.post("/mcp", json=call("echo", {}), headers=h)
        result = r.json()["result"]
        assert result["isError"] is True
        texts = [c["text"] for c in result["content"]]
        assert len(texts) == 1
        assert texts[0].count("Field required") == 1, texts
        unknown = await http.post("/mcp", json=call("ehco", {"text": "x"}), headers=h)
        assert "did you mean 'echo'" in unknown.json()["error"]["message"]


def test_a_table_with_its_text_is_sent_once() -> None:
    obs = Observation(
        ok=True,
        tool="sql",
        call_id="c",
        content=[
            TablePart(columns=["a"], rows=[[1]], row_count=1),
            TextPart(text="| a |\n|---|\n| 1 |"),
        ],
        data={"row_count": 1},
    )
    result = to_result(obs)
    assert [c.text for c in result.content] == ["| a |\n|---|\n| 1 |"]
    alone = to_result(obs.model_copy(update={"content": obs.content[:1]}))
    assert '"columns": ["a"]' in alone.content[0].text


def test_a_failure_without_content_gets_its_diagnostic_text() -> None:
    error = ErrorDiagnostic(kind=ErrorKind.not_found, message="no table 'x'", hint="Try 'xs'.")
    result = to_result(Observation.failure("sql", "c", error))
    assert [c.text for c in result.content] == ["Error (not_found): no table 'x'\nHint: Try 'xs'."]
