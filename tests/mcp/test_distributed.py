"""The mcp service in worker processes (``toolfleet worker mcp`` over this machine's Redis):
a stateful upstream's calls reach the worker holding the session's server, find_tools
in a worker searches the whole deployment's catalogue, read from Redis, and a model tool's
tokens and cost are booked in the shared ledger; a worker whose upstream's tool list changes
announces its new tool table, which the gateway serves."""

from __future__ import annotations

import json

from tests.helpers import call, free_port, serve_app
from tests.helpers.cluster import Cluster
from tests.helpers.mcp import synthetic
from tests.mcp.test_llm import stand_in
from tests.mcp.test_tool_changes import WEATHER, eventually, tools


async def test_mcp_workers(cluster: Cluster) -> None:
    upstreams = json.dumps([synthetic("syn", stateful=True, sandbox=False)])
    port = free_port()
    model = {"name": "planner", "url": f"http://127.0.0.1:{port}/v1", "model": "tiny-1",
             "price_input": 0.5, "price_output": 2.0}  # fmt: skip
    for _ in range(2):
        cluster.start_worker(
            "mcp",
            command=("toolfleet.client.cli", "worker"),
            mcp_upstreams=upstreams,
            mcp_llm=json.dumps([model]),
        )
    cluster.wait_workers(2, timeout_s=180)
    app, _ = stand_in()
    with serve_app(app, port):
        async with cluster.gateway() as client:
            # booked by the worker with its answer, and (an idempotency key) by the gateway
            first = await call(client, "planner", {"prompt": "one two"}, trajectory_id="llm")
            assert first["ok"] and first["usage"]["input_tokens"] == 2, first
            keyed = await call(
                client, "planner", {"prompt": "a b c"}, trajectory_id="llm", idempotency_key="k"
            )
            assert keyed["ok"] and keyed["usage"]["output_tokens"] == 3, keyed
            usage = (await client.get("/v1/trajectories/llm/usage")).json()["tools"]["planner"]
            assert (usage["calls"], usage["input_tokens"], usage["output_tokens"]) == (2, 5, 5)
            assert usage["cost"] == 5 * 0.5 + 5 * 2.0
    async with cluster.gateway() as client:
        tools = {t["name"] for t in (await client.get("/v1/tools")).json()["tools"]}
        assert {"syn.counter", "syn.echo", "find_tools"} <= tools
        sessions = [(await client.post("/v1/sessions")).json()["session_id"] for _ in range(4)]
        for sid in sessions:
            counts = [
                (await call(client, "syn.counter", {}, session_id=sid))["data"]["calls"]
                for _ in range(3)
            ]
            assert counts == [1, 2, 3]  # one server process per session, always reached
        found = await call(client, "find_tools", {"query": "counts the calls", "top_k": 3})
        assert found["ok"] and found["data"]["tools"][0]["name"] == "syn.counter"
        found = await call(client, "find_tools", {"query": "tally"})
        assert "tally" in [t["name"] for t in found["data"]["tools"]]  # another service's tool
        for sid in sessions:
            assert (await client.delete(f"/v1/sessions/{sid}")).status_code == 200


async def test_a_worker_announces_its_upstreams_changed_tools(cluster: Cluster) -> None:
    upstreams = json.dumps([synthetic("syn", changing=True, sandbox=False)])
    cluster.start_worker("mcp", command=("toolfleet.client.cli", "worker"), mcp_upstreams=upstreams)
    cluster.wait_workers(1, timeout_s=180)
    async with cluster.gateway() as client:
        assert "syn.weather" not in await tools(client)
        added = await call(client, "syn.add_tool", {"name": "weather", "properties": WEATHER})
        assert added["ok"], added

        async def listed() -> bool:
            return "syn.weather" in await tools(client)

        await eventually(listed)
        obs = await call(client, "syn.weather", {"city": "Oslo"})
        assert obs["ok"] and '"city": "Oslo"' in obs["content"][0]["text"], obs
        assert (await call(client, "syn.remove_tool", {"name": "weather"}))["ok"]

        async def unlisted() -> bool:
            return not await listed()

        await eventually(unlisted)
        gone = await client.post("/v1/tools/syn.weather/call", json={"arguments": {}})
        assert gone.status_code == 404
        assert "syn MCP server no longer lists it" in gone.json()["error"]["message"], gone.text
        assert "syn.echo" in await tools(client)  # the rest of the table stays
