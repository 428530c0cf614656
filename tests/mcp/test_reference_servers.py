"""The reference MCP servers from npm (memory, filesystem, everything) and PyPI (time), run
jailed by ``toolfleet serve`` from a config file, listed and called through REST, ``/mcp``
(the official client) and verl-tool's ``/get_observation`` (``mcp_interface``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.helpers import serving, text
from tests.helpers.mcp import installed, reference_servers, toml_config


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    installed()
    config: Path = tmp_path_factory.mktemp("mcp") / "toolfleet.toml"
    config.write_text(toml_config(["mcp"], upstreams=reference_servers()))
    with serving("--config", str(config), timeout_s=300) as base:
        yield base


def call(client: httpx.Client, tool: str, arguments: dict, **options: object) -> dict:
    response = client.post(f"/v1/tools/{tool}/call", json={"arguments": arguments, **options})
    assert response.status_code == 200, response.text
    return response.json()


def test_tools_are_listed_under_their_prefix_with_their_schemas(url: str) -> None:
    with httpx.Client(base_url=url, timeout=120) as client:
        tools = {t["name"]: t for t in client.get("/v1/tools").json()["tools"]}
        openai = client.get("/v1/tools", params={"format": "openai"}).json()
        ready = client.get("/readyz").json()
    assert {"memory.create_entities", "memory.read_graph", "filesystem.write_file",
            "everything.echo", "time.get_current_time", "find_tools"} <= set(tools)  # fmt: skip
    entities = tools["memory.create_entities"]
    assert entities["service"] == "mcp" and entities["stateful"] is True
    assert entities["input_schema"]["properties"]["entities"]["type"] == "array"
    assert entities["input_schema"]["additionalProperties"] is False
    assert tools["time.convert_time"]["stateful"] is False
    names = {f["function"]["name"] for f in openai}
    assert "time.get_current_time" in names
    upstreams = ready["services"]["mcp"]["upstreams"]
    assert upstreams["time"]["transport"] == "stdio" and upstreams["time"]["pool_alive"] == 1


def test_calls_through_rest(url: str) -> None:
    with httpx.Client(base_url=url, timeout=120) as client:
        now = call(client, "time.get_current_time", {"timezone": "Europe/Paris"})
        assert now["ok"], now
        assert json.loads(text(now))["timezone"] == "Europe/Paris"
        echo = call(client, "everything.echo", {"message": "hello upstream"})
        assert echo["ok"] and "hello upstream" in text(echo)
        total = call(client, "everything.get-sum", {"a": 2, "b": 40})
        assert total["ok"] and "42" in text(total)
        image = call(client, "everything.get-tiny-image", {})
        assert image["ok"] and any(p["type"] == "image" for p in image["content"])
        # the filesystem server's /tmp is its jail's own
        wrote = call(client, "filesystem.write_file", {"path": "/tmp/a.txt", "content": "abc"})
        assert wrote["ok"], wrote
        read = call(client, "filesystem.read_text_file", {"path": "/tmp/a.txt"})
        assert read["ok"] and text(read) == "abc"
        outside = call(client, "filesystem.read_text_file", {"path": "/etc/passwd"})
        assert not outside["ok"] and outside["error"]["kind"] == "runtime_error"
        assert "denied" in outside["error"]["message"].lower()
        # validated against the server's schema before it goes out
        bad = call(client, "time.get_current_time", {"timezone": 3})
        assert bad["error"]["kind"] == "invalid_arguments" and "timezone" in bad["error"]["message"]
        unknown = call(client, "time.get_current_time", {"timezone": "UTC", "tz": "x"})
        assert (
            unknown["error"]["kind"] == "invalid_arguments"
            and "'tz'" in unknown["error"]["message"]
        )
        # usage is booked to the trajectory like any call
        call(client, "time.get_current_time", {"timezone": "UTC"}, trajectory_id="t-usage")
        usage = client.get("/v1/trajectories/t-usage/usage").json()
        assert usage["tools"]["time.get_current_time"]["calls"] == 1


def test_a_stateful_server_per_session_and_a_fresh_one_for_a_fork(url: str) -> None:
    entity = {"entities": [{"name": "Ada", "entityType": "person", "observations": ["math"]}]}
    with httpx.Client(base_url=url, timeout=120) as client:
        a = client.post("/v1/sessions").json()["session_id"]
        b = client.post("/v1/sessions").json()["session_id"]
        assert call(client, "memory.create_entities", entity, session_id=a)["ok"]
        graph_a = call(client, "memory.read_graph", {}, session_id=a)
        assert "Ada" in text(graph_a)
        graph_b = call(client, "memory.read_graph", {}, session_id=b)
        assert graph_b["ok"] and "Ada" not in text(graph_b)  # a server of its own
        fork = client.post(f"/v1/sessions/{a}/fork").json()["session_id"]
        forked = call(client, "memory.read_graph", {}, session_id=fork)
        assert forked["ok"] and "Ada" not in text(forked)
        assert "This session was forked" in forked["content"][0]["text"]
        assert "Ada" in text(call(client, "memory.read_graph", {}, session_id=a))
        # without a session, a stateful server's tool says what it needs
        alone = call(client, "memory.read_graph", {})
        assert (
            alone["error"]["kind"] == "invalid_arguments" and "session" in alone["error"]["message"]
        )
        for session in (a, b, fork):
            assert client.delete(f"/v1/sessions/{session}").status_code == 200


async def test_calls_through_mcp_with_the_official_client(url: str) -> None:
    async with (
        streamable_http_client(f"{url}/mcp") as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        listed = {t.name: t for t in (await session.list_tools()).tools}
        assert "everything.echo" in listed and "memory.create_entities" in listed
        assert listed["time.convert_time"].input_schema["required"] == [
            "source_timezone", "time", "target_timezone"
        ]  # fmt: skip
        result = await session.call_tool(
            "time.convert_time",
            {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"},
        )
        assert result.is_error is False
        assert json.loads(result.content[0].text)["target"]["datetime"].endswith("21:00:00+09:00")
        memory = await session.call_tool(
            "memory.create_entities",
            {"entities": [{"name": "Bob", "entityType": "p", "observations": []}],
             "_toolfleet": {"trajectory_id": "t-mcp"}},
        )  # fmt: skip
        assert memory.is_error is False
        graph = await session.call_tool(
            "memory.read_graph", {"_toolfleet": {"trajectory_id": "t-mcp"}}
        )
        assert "Bob" in graph.content[0].text


def test_verl_tool_mcp_interface(url: str) -> None:
    def turn(trajectory: str, action: str) -> tuple[object, bool, bool]:
        body = {"trajectory_ids": [trajectory], "actions": [action], "finish": [False]}
        answer = httpx.post(f"{url}/get_observation", json=body, timeout=120).json()
        return answer["observations"][0], answer["dones"][0], answer["valids"][0]

    full = (
        '<tool_call>{"name": "time.get_current_time", "arguments": {"timezone": "UTC"}}</tool_call>'
    )
    obs, done, valid = turn("v1", full)
    assert valid and not done and obs.startswith("\n<mcp_response>\n```result\n")
    payload = json.loads(obs.split("```result\n")[1].split("\n```")[0])
    assert payload["server"] == "time" and json.loads(payload["result"])["timezone"] == "UTC"
    by_server = (
        '<tool_call>{"server": "memory", "name": "create_entities", "arguments": '
        '{"entities": [{"name": "Cy", "entityType": "p", "observations": []}]}}</tool_call>'
    )
    assert turn("v2", by_server)[2]
    graph = turn(
        "v2", '<tool_call>{"server": "memory", "name": "read_graph", "arguments": {}}</tool_call>'
    )
    assert "Cy" in graph[0]  # the trajectory's own memory server
    other = turn(
        "v3", '<tool_call>{"server": "memory", "name": "read_graph", "arguments": {}}</tool_call>'
    )
    assert "Cy" not in other[0]
    short = turn(
        "v4",
        '<tool_call>{"name": "get_current_time", "arguments": {"timezone": "UTC"}}</tool_call>',
    )
    assert '"server": "time"' in short[0]
    bad_call = {"server": "time", "name": "get_current_time", "arguments": {"timezone": 1}}
    failed = turn("v5", f"<tool_call>{json.dumps(bad_call)}</tool_call>")
    assert '"error_type": "MCPToolError"' in failed[0] and failed[2]
    missing = turn(
        "v6", '<tool_call>{"server": "github", "name": "x", "arguments": {}}</tool_call>'
    )
    assert "no MCP server named github" in missing[0]
