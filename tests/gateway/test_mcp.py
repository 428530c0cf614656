"""``/mcp`` against a running gateway, with the official MCP client from the ``mcp`` package,
and with raw JSON-RPC requests as older clients send them."""

from __future__ import annotations

import sys
from collections.abc import Callable

import httpx
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.helpers import free_port, new_session, rpc
from tests.helpers.tools import PNG_1x1


@pytest.fixture
def base_url(live_server: Callable[..., str]) -> str:
    port = free_port()
    return live_server(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "tests.helpers.tools:make_app",
            "--port",
            str(port),
        ],
        port,
        {"TOOLFLEET_MCP_ALLOWED_HOSTS": f'["127.0.0.1:{port}", "localhost:{port}"]'},
    )


async def test_official_client_lists_and_calls_every_kind_of_result(base_url: str) -> None:
    async with (
        streamable_http_client(f"{base_url}/mcp") as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        listed = await session.list_tools()
        names = {t.name for t in listed.tools}
        assert {"echo", "picture", "fail", "counter", "sleep"} <= names
        echo = next(t for t in listed.tools if t.name == "echo")
        assert echo.input_schema["properties"]["text"]["type"] == "string"
        assert echo.input_schema["required"] == ["text"]

        text = await session.call_tool("echo", {"text": "hi", "times": 2})
        assert text.is_error is False
        assert text.content[0].text == "hihi"
        assert text.structured_content == {"length": 2}

        image = await session.call_tool("picture", {})
        assert image.content[0].type == "image"
        assert image.content[0].mime_type == "image/png"
        assert image.content[0].data == PNG_1x1

        failed = await session.call_tool("fail", {})
        assert failed.is_error is True
        assert "Error (runtime_error): division by zero" in failed.content[0].text
        assert "Hint: check the divisor" in failed.content[0].text

        bad_arguments = await session.call_tool("echo", {"text": 5})
        assert bad_arguments.is_error is True
        assert "invalid_arguments" in bad_arguments.content[0].text

        with pytest.raises(MCPError) as unknown:
            await session.call_tool("no_such_tool", {})
        assert "no_such_tool" in str(unknown.value)


async def test_session_state_through_mcp_with_toolfleet_options(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        sid = await new_session(http)
    async with (
        streamable_http_client(f"{base_url}/mcp") as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        first = await session.call_tool("counter", {"add": 3, "_toolfleet": {"session_id": sid}})
        assert '"value": 3' in first.content[0].text
        second = await session.call_tool("counter", {"add": 3}, meta={"toolfleet/session_id": sid})
        assert '"value": 6' in second.content[0].text


HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def test_older_protocol_clients_and_json_rpc_errors(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, headers=HEADERS) as http:
        init = await http.post(
            "/mcp",
            json=rpc(
                "initialize",
                {
                    "protocolVersion": "2025-03-26",
                    "capabilities": {},
                    "clientInfo": {"name": "old-client", "version": "1"},
                },
            ),
        )
        assert init.status_code == 200  # exactly /mcp: no redirect
        assert init.json()["result"]["protocolVersion"] == "2025-03-26"
        headers = {"mcp-protocol-version": "2025-03-26"}
        session = init.headers.get("mcp-session-id")
        if session:
            headers["mcp-session-id"] = session
        await http.post(
            "/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
        )
        listed = await http.post("/mcp", json=rpc("tools/list", id_=2), headers=headers)
        assert "echo" in {t["name"] for t in listed.json()["result"]["tools"]}
        called = await http.post(
            "/mcp",
            json=rpc("tools/call", {"name": "echo", "arguments": {"text": "x"}}, id_=3),
            headers=headers,
        )
        assert called.json()["result"]["content"][0]["text"] == "x"
        malformed = await http.post("/mcp", content=b"{not json", headers=headers)
        assert malformed.json()["error"]["code"] == -32700  # JSON-RPC parse error


async def test_host_check_from_settings(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, headers=HEADERS) as http:
        r = await http.post(
            "/mcp",
            json=rpc("tools/list"),
            headers={"Host": "evil.example", "mcp-protocol-version": "2025-03-26"},
        )
        assert r.status_code in (403, 421)


@pytest.mark.parametrize("path", ["/mcp"])
async def test_auth_applies_to_mcp(live_server: Callable[..., str], path: str) -> None:
    port = free_port()
    url = live_server(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "tests.helpers.tools:make_app",
            "--port",
            str(port),
        ],
        port,
        {"TOOLFLEET_API_KEYS": '{"s3cret": "team-a"}'},
    )
    async with httpx.AsyncClient(base_url=url, headers=HEADERS) as http:
        denied = await http.post(path, json=rpc("tools/list"))
        assert denied.status_code == 401
    auth = httpx.AsyncClient(headers={"Authorization": "Bearer s3cret"})
    async with (
        auth,
        streamable_http_client(f"{url}/mcp", http_client=auth) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        assert (await session.call_tool("echo", {"text": "ok"})).content[0].text == "ok"


async def test_any_replica_answers_any_request(live_server: Callable[..., str]) -> None:
    """No MCP session is kept: a client initialised on one replica calls through another."""
    urls = []
    for _ in range(2):
        port = free_port()
        urls.append(
            live_server(
                [sys.executable, "-m", "uvicorn", "--factory", "tests.helpers.tools:make_app",
                 "--port", str(port)],
                port,
            )
        )  # fmt: skip
    async with httpx.AsyncClient(headers=HEADERS) as http:
        init = await http.post(
            f"{urls[0]}/mcp",
            json=rpc(
                "initialize",
                {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "lb-client", "version": "1"},
                },
            ),
        )
        assert "mcp-session-id" not in init.headers
        headers = {"mcp-protocol-version": "2025-06-18"}
        called = await http.post(
            f"{urls[1]}/mcp",
            json=rpc("tools/call", {"name": "echo", "arguments": {"text": "via B"}}, id_=2),
            headers=headers,
        )
        assert called.json()["result"]["content"][0]["text"] == "via B"
