"""The mcp service in worker processes (``toolfleet worker mcp`` over this machine's Redis):
a stateful upstream's calls reach the worker holding the session's server, find_tools
in a worker searches the whole deployment's catalogue, read from Redis, and a model tool's
tokens and cost are booked in the shared ledger."""

from __future__ import annotations

import json

from tests.helpers import call, free_port, serve_app
from tests.helpers.cluster import Cluster
from tests.helpers.mcp import synthetic
from tests.mcp.test_llm import stand_in


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
