"""Upstreams whose tool list changes while toolfleet runs: the generated server adds and
removes tools on request and says so (``notifications/tools/list_changed``), or does not (a
call of a removed tool finds out), or restarts with another list; REST, OpenAI format,
``/mcp`` tools/list and find_tools follow."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.helpers import call, free_port, gateway, new_session, text
from tests.helpers.mcp import mcp_registry, synthetic, synthetic_http

MCP_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "mcp-protocol-version": "2025-06-18",
}
WEATHER = {"city": {"type": "string", "description": "The city."}}


async def tools(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """GET /v1/tools, by name."""
    listed = (await client.get("/v1/tools")).json()["tools"]
    return {t["name"]: t for t in listed}


async def eventually(check: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    """Await ``check()`` until it answers something true."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, "the change was not seen in time"
        await asyncio.sleep(0.1)


async def mcp_tools(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """toolfleet's own /mcp tools/list, by name."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    answer = (await client.post("/mcp", json=body, headers=MCP_HEADERS)).json()
    return {t["name"]: t for t in answer["result"]["tools"]}


async def found(client: httpx.AsyncClient, query: str) -> list[str]:
    obs = await call(client, "find_tools", {"query": query, "top_k": 3})
    assert obs["ok"], obs
    return [t["name"] for t in obs["data"]["tools"]]


async def test_a_stdio_upstream_that_adds_changes_and_removes_tools() -> None:
    # a long catalogue period: the index must follow the change itself, not the period
    registry = mcp_registry(
        upstreams=[synthetic(changing=True)], find_tools=True, catalogue_refresh_s=600
    )
    async with gateway(registry) as client:
        assert "syn.weather" not in await tools(client)
        added = await call(
            client,
            "syn.add_tool",
            {
                "name": "weather",
                "description": "Tells the weather forecast.",
                "properties": WEATHER,
            },
        )
        assert added["ok"], added
        # the server's list_changed: listed again, served everywhere
        listed = await eventually(lambda: _has(client, "syn.weather"))
        assert listed["input_schema"]["properties"] == WEATHER
        openai = (await client.get("/v1/tools", params={"format": "openai"})).json()
        assert "syn.weather" in [f["function"]["name"] for f in openai]
        assert "syn.weather" in await mcp_tools(client)
        obs = await call(client, "syn.weather", {"city": "Oslo"})
        assert obs["ok"] and '"city": "Oslo"' in text(obs), obs
        assert (await eventually(lambda: found(client, "weather forecast")))[0] == "syn.weather"

        # a changed schema is the one used: a new argument is accepted
        refused = await call(client, "syn.weather", {"city": "Oslo", "days": 3})
        assert refused["error"]["kind"] == "invalid_arguments"
        days = {**WEATHER, "days": {"type": "integer"}}
        await call(client, "syn.add_tool", {"name": "weather", "properties": days})
        await eventually(
            lambda: _has(client, "syn.weather", lambda t: "days" in t["input_schema"]["properties"])
        )
        assert (await call(client, "syn.weather", {"city": "Oslo", "days": 3}))["ok"]
        wrong = await call(client, "syn.weather", {"city": "Oslo", "days": "three"})
        assert wrong["error"]["kind"] == "invalid_arguments"

        # removed: gone from the lists and the index, and a call says why, naming the server
        assert (await call(client, "syn.remove_tool", {"name": "weather"}))["ok"]
        await eventually(lambda: _lacks(client, "syn.weather"))
        assert "syn.weather" not in await mcp_tools(client)
        gone = await client.post("/v1/tools/syn.weather/call", json={"arguments": {}})
        assert gone.status_code == 404
        error = gone.json()["error"]
        assert error["code"] == "unknown_tool" and error["removed"], error
        assert "syn MCP server no longer lists it" in error["message"], error
        batch = await client.post(
            "/v1/calls", json={"calls": [{"tool": "syn.weather", "arguments": {}}]}
        )
        error = batch.json()["observations"][0]["error"]
        assert error["kind"] == "not_found" and "syn MCP server" in error["message"], error
        await eventually(lambda: _not_found(client, "weather forecast", "syn.weather"))

        # removed without a word: the call that finds out says so, and the lists follow
        assert (await call(client, "syn.remove_tool", {"name": "echo", "notify": False}))["ok"]
        assert "syn.echo" in await tools(client)
        silent = await call(client, "syn.echo", {"text": "hi"})
        assert silent["error"]["kind"] == "not_found", silent
        assert "syn MCP server no longer has the tool 'echo'" in silent["error"]["message"]
        assert "syn.echo" not in await tools(client)
        # an error result of a tool still listed stays the tool's error
        failed = await call(client, "syn.fail", {"why": "disk full"})
        assert failed["error"]["kind"] == "runtime_error"

        status = (await client.get("/readyz")).json()["services"]["mcp"]["upstreams"]["syn"]
        assert status["tool_list_changes"] == 4, status
        assert status["tools"] == len([n for n in await tools(client) if n.startswith("syn.")])


async def test_a_stateful_upstreams_session_server_announces_its_change() -> None:
    registry = mcp_registry(upstreams=[synthetic(changing=True, stateful=True)])
    async with gateway(registry) as client:
        sid = await new_session(client)
        added = await call(
            client, "syn.add_tool", {"name": "weather", "properties": WEATHER}, session_id=sid
        )
        assert added["ok"], added
        # one list per upstream: the announcing session's server's
        await eventually(lambda: _has(client, "syn.weather"))
        obs = await call(client, "syn.weather", {"city": "Oslo"}, session_id=sid)
        assert obs["ok"], obs


async def test_an_http_upstream_notifies_and_a_restarted_one_is_listed_again() -> None:
    port = free_port()
    with contextlib.ExitStack() as first:
        url = first.enter_context(synthetic_http(port=port, changing=True))
        registry = mcp_registry(upstreams=[{"name": "r", "url": url}])
        async with gateway(registry) as client:
            await call(client, "r.add_tool", {"name": "weather", "properties": WEATHER})
            await eventually(lambda: _has(client, "r.weather"))
            assert (await call(client, "r.weather", {"city": "Oslo"}))["ok"]
            first.close()
            # restarted: a new process, without the added tool; the reconnection lists again
            with synthetic_http(port=port, changing=True):
                assert (await call(client, "r.echo", {"text": "back"}))["ok"]
                await eventually(lambda: _lacks(client, "r.weather"))
                gone = await client.post("/v1/tools/r.weather/call", json={"arguments": {}})
                assert gone.status_code == 404 and "r MCP server" in gone.json()["error"]["message"]


async def _has(
    client: httpx.AsyncClient, name: str, check: Callable[[dict[str, Any]], bool] | None = None
) -> dict[str, Any] | None:
    tool = (await tools(client)).get(name)
    return tool if tool is not None and (check is None or check(tool)) else None


async def _lacks(client: httpx.AsyncClient, name: str) -> bool:
    return name not in await tools(client)


async def _not_found(client: httpx.AsyncClient, query: str, name: str) -> bool:
    return name not in await found(client, query)
