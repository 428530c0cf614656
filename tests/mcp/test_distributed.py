"""The mcp service in worker processes (``toolfleet worker mcp`` over this machine's Redis):
a stateful upstream's calls reach the worker holding the session's server, and find_tools
in a worker searches the whole deployment's catalogue, read from Redis."""

from __future__ import annotations

import json

from tests.helpers import call
from tests.helpers.cluster import Cluster
from tests.helpers.mcp import synthetic


async def test_mcp_workers(cluster: Cluster) -> None:
    upstreams = json.dumps([synthetic("syn", stateful=True, sandbox=False)])
    for _ in range(2):
        cluster.start_worker(
            "mcp", command=("toolfleet.client.cli", "worker"), mcp_upstreams=upstreams
        )
    cluster.wait_workers(2, timeout_s=180)
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
