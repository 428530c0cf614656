"""MCP upstream overhead: what toolfleet adds to a call of an upstream MCP server's tool, over
calling that server directly with the official client. Prints figures; asserts nothing.

The server is the tests' generated one (``tests/mcp/servers/synthetic.py``), its ``echo``
tool, called one at a time. For each transport (stdio: the server as a child process, jailed
by toolfleet as configured by default; Streamable HTTP: the server in a process of its own):

- direct: ``ClientSession.call_tool`` on a session of our own with the server;
- toolfleet: the same call as ``syn.echo`` through toolfleet's executor (argument validation,
  the schema check, the pool, the result's conversion: the upstream layer's own cost), the
  direct and toolfleet calls alternated so that the machine's load drift hits both alike;
- gateway: the same through ``POST /v1/tools/syn.echo/call`` of a gateway (uvicorn, in a
  process of its own) over HTTP, i.e. what a trainer sees, the gateway's HTTP included.

Usage: .venv/bin/python bench/mcp_overhead.py [--calls 2000] [--no-jail]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import free_port, wait_healthy  # noqa: E402
from tests.helpers.mcp import SYNTHETIC, synthetic, synthetic_http, toml_config  # noqa: E402


def figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": statistics.median(ordered) * 1000,
        "p99": ordered[int(len(ordered) * 0.99) - 1] * 1000,
    }


async def timed(call, n: int) -> list[float]:
    for _ in range(min(100, n // 10)):  # warm-up
        await call()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t)
    return out


async def direct_stdio(upstream: dict, n: int) -> tuple[list[float], list[float]]:
    params = StdioServerParameters(command=sys.executable, args=[str(SYNTHETIC)])
    async with stdio_client(params) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        return await paired(lambda: s.call_tool("echo", {"text": "hi"}), upstream, n)


async def direct_http(url: str, upstream: dict, n: int) -> tuple[list[float], list[float]]:
    async with streamable_http_client(url) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        return await paired(lambda: s.call_tool("echo", {"text": "hi"}), upstream, n)


async def paired(direct_call, upstream: dict, n: int) -> tuple[list[float], list[float]]:
    """Direct and through-toolfleet calls alternated (the machine's load drifts over a run:
    alternating makes both see the same), each list of times in seconds."""
    from toolfleet.core.executor import Executor
    from toolfleet.core.registry import ToolRegistry
    from toolfleet.mcp.service import McpService
    from toolfleet.mcp.settings import McpSettings

    from tests.helpers import invocation

    registry = ToolRegistry(McpService(McpSettings(upstreams=[upstream], find_tools=False)).tools())
    executor = Executor(registry)
    await executor.start()

    async def via() -> None:
        obs = await executor.run(invocation("syn.echo", {"text": "hi"}))
        assert obs.ok, obs

    try:
        for _ in range(min(100, n // 10)):
            await direct_call()
            await via()
        direct, through = [], []
        for _ in range(n):
            t = time.perf_counter()
            await direct_call()
            direct.append(time.perf_counter() - t)
            t = time.perf_counter()
            await via()
            through.append(time.perf_counter() - t)
        return direct, through
    finally:
        await executor.stop()


async def timed_direct_stdio(n: int) -> list[float]:
    params = StdioServerParameters(command=sys.executable, args=[str(SYNTHETIC)])
    async with stdio_client(params) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        return await timed(lambda: s.call_tool("echo", {"text": "hi"}), n)


async def timed_direct_http(url: str, n: int) -> list[float]:
    async with streamable_http_client(url) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        return await timed(lambda: s.call_tool("echo", {"text": "hi"}), n)


async def through_gateway(upstream: dict, n: int) -> list[float]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "toolfleet.toml"
        config.write_text(toml_config(["mcp"], upstreams=[upstream], find_tools=False))
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLFLEET_")}
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before the timed calls
            [sys.executable, "-m", "toolfleet.client.cli", "serve", "--config", str(config),
             "--port", str(port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc, timeout_s=180)
            async with httpx.AsyncClient(base_url=url) as client:

                async def one() -> None:
                    r = await client.post(
                        "/v1/tools/syn.echo/call", json={"arguments": {"text": "hi"}}
                    )
                    assert r.json()["ok"], r.text

                return await timed(one, n)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def show(label: str, direct: list[float], rows: dict[str, list[float]]) -> None:
    base = figures(direct)
    print(f"{label}: direct p50 {base['p50']:.3f} ms, p99 {base['p99']:.3f} ms")
    for name, samples in rows.items():
        f = figures(samples)
        print(
            f"{label}: {name:9s} p50 {f['p50']:.3f} ms, p99 {f['p99']:.3f} ms; "
            f"overhead p50 {f['p50'] - base['p50']:+.3f} ms"
        )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--no-jail", action="store_true", help="stdio servers not jailed")
    parser.add_argument("--no-gateway", action="store_true", help="skip the gateway rows")
    args = parser.parse_args()
    n = args.calls
    print(f"{n} sequential calls of echo each; os.cpu_count()={os.cpu_count()}")

    stdio = synthetic(sandbox=not args.no_jail)
    direct, through = await direct_stdio(stdio, n)
    label = "stdio" + ("" if args.no_jail else " (jailed)")
    show(label, direct, {"toolfleet": through})
    if not args.no_gateway:
        show(label, await timed_direct_stdio(n), {"gateway": await through_gateway(stdio, n)})
    with synthetic_http() as url:
        http = {"name": "syn", "url": url}
        direct, through = await direct_http(url, http, n)
        show("http", direct, {"toolfleet": through})
        if not args.no_gateway:
            show(
                "http", await timed_direct_http(url, n), {"gateway": await through_gateway(http, n)}
            )


if __name__ == "__main__":
    asyncio.run(main())
