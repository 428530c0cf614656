"""Chaos on the gateways: stateful trajectories through three gateway processes behind a
round-robin balancer, three workers, while one gateway is killed -9 and restarted and the
other two are rolled (SIGTERM, restart). Afterwards every trajectory's state is intact (its
counter went 1, 2 … N: no call lost, none run twice) and its ledger is exact.

The balancer is httpx-level round-robin: each request goes to the next gateway, and to the
one after when a gateway refuses the connection (what HAProxy's ``option redispatch`` with
retries does; the compose stack's balancer is a real HAProxy, see deploy/compose). A request whose
gateway died under it is sent again by the client with the same idempotency key.

Scale: issue 19's 200 trajectories x 20 calls (about two minutes on a loaded 2-core
machine); ``TOOLFLEET_CHAOS_SCALE=0.5`` runs half as many.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.helpers import ROOT, free_port
from tests.helpers.cluster import Cluster

SCALE = float(os.environ.get("TOOLFLEET_CHAOS_SCALE", "1"))
TRAJECTORIES = max(10, int(200 * SCALE))
CALLS = 20
RETRY_S = 0.2
RETRIABLE = (httpx.TransportError,)


class Gateways:
    """Gateway processes (``toolfleet serve``) of one cluster, each on a port of its own."""

    def __init__(self, cluster: Cluster, count: int) -> None:
        self.cluster = cluster
        self.ports = [free_port() for _ in range(count)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self.starts = 0

    def start(self, n: int) -> None:
        log = (self.cluster.logs / f"gateway-{n}-{self.starts}.log").open("wb")
        self.starts += 1
        self.procs[n] = subprocess.Popen(
            [sys.executable, "-m", "toolfleet.client.cli", "serve"],
            cwd=ROOT,
            env=self.cluster.env(port=self.ports[n], host="127.0.0.1", shutdown_grace_s=20),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, n: int, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=5) as client:
            while time.monotonic() < deadline:
                try:
                    r = await client.get(f"http://127.0.0.1:{self.ports[n]}/readyz")
                    if r.status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"gateway {n} did not get ready")

    def signal(self, n: int, sig: int) -> None:
        proc = self.procs[n]
        assert proc is not None
        proc.send_signal(sig)

    async def wait_exit(self, n: int, timeout_s: float = 60.0) -> int:
        proc = self.procs[n]
        assert proc is not None
        return await asyncio.to_thread(proc.wait, timeout_s)

    def close(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


class RoundRobin(httpx.AsyncBaseTransport):
    """Each request to the next gateway; a refused connection moves on to the next one."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.turn = 0
        self.transport = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=400, max_keepalive_connections=400)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(len(self.ports) * 3):
            port = self.ports[self.turn % len(self.ports)]
            self.turn += 1
            request.url = request.url.copy_with(host="127.0.0.1", port=port)
            try:
                return await self.transport.handle_async_request(request)
            except httpx.ConnectError:
                await asyncio.sleep(0.05)  # that gateway is down: the next one
        raise httpx.ConnectError("no gateway accepted the connection")

    async def aclose(self) -> None:
        await self.transport.aclose()


@pytest.fixture
async def fleet() -> AsyncIterator[tuple[Cluster, Gateways]]:
    # liveness as in production: on a loaded machine, the tests' fast settings would take
    # busy workers for dead (this test is about gateways)
    cluster = Cluster(session_sweep_s=0.5, heartbeat_s=0.5, worker_dead_after_s=15, claim_idle_s=20)
    gateways = Gateways(cluster, 3)
    try:
        for _ in range(3):
            cluster.start_worker()
        cluster.wait_workers(3, timeout_s=240)  # a loaded CI machine starts them slowly
        for n in range(3):
            gateways.start(n)
        await asyncio.gather(*(gateways.wait_ready(n) for n in range(3)))
        yield cluster, gateways
    finally:
        gateways.close()
        cluster.close()


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST until a final answer: connections cut by a dying gateway, 5xx from one that
    stops, and retryable observations are sent again (same body, same idempotency key)."""
    deadline = time.monotonic() + 120
    last: object = None
    while True:
        try:
            r = await client.post(path, json=body)
            last = (r.status_code, r.text[:500])
            if r.status_code == 200:
                obs = r.json()
                if obs["ok"] or not obs["error"]["retryable"]:
                    return obs
            elif r.status_code not in (429, 502, 503):
                raise AssertionError(f"{r.status_code}: {r.text}")
        except RETRIABLE as exc:
            last = repr(exc)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no final answer for {body}: last {last}")
        await asyncio.sleep(RETRY_S)


async def test_gateway_kill_restart_and_roll_lose_no_state_no_call_and_run_none_twice(
    fleet: tuple[Cluster, Gateways],
) -> None:
    _, gateways = fleet
    done = 0
    values: dict[str, list[int]] = {}
    stage = 0  # chaos events so far; calls past a point wait for them, so each event
    # happens mid-run however slow the machine (a restart takes long on a loaded one)
    gates = [0] * 6 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * (CALLS - 18)

    async def trajectory(client: httpx.AsyncClient, i: int) -> None:
        nonlocal done
        tid = f"traj-{i}"
        seen = values.setdefault(tid, [])
        for k in range(CALLS):
            while stage < gates[k]:
                await asyncio.sleep(0.05)
            body = {
                "arguments": {"add": 1},
                "trajectory_id": tid,
                "idempotency_key": f"{tid}-{k}",
                "timeout_s": 10,
            }
            obs = await post(client, "/v1/tools/counter/call", body)
            assert obs["ok"], obs
            seen.append(obs["content"][0]["data"]["value"])
            done += 1

    total = TRAJECTORIES * CALLS
    events: list[str] = []

    async def chaos() -> None:
        nonlocal stage
        while done < total * 0.15:
            await asyncio.sleep(0.05)
        gateways.signal(0, signal.SIGKILL)
        await gateways.wait_exit(0)
        events.append(f"kill -9 gateway 0 at {done}")
        stage = 1
        await asyncio.sleep(1.0)
        gateways.start(0)
        await gateways.wait_ready(0)
        events.append(f"gateway 0 back at {done}")
        stage = 2
        for n in (1, 2):  # roll: stop (drain), start again, wait until ready
            await asyncio.sleep(0.5)
            gateways.signal(n, signal.SIGTERM)
            code = await gateways.wait_exit(n)
            events.append(f"gateway {n} drained (exit {code}) at {done}")
            gateways.start(n)
            await gateways.wait_ready(n)
            events.append(f"gateway {n} back at {done}")
            stage += 1

    balancer = RoundRobin(gateways.ports)
    started = time.monotonic()
    async with httpx.AsyncClient(
        transport=balancer, base_url="http://balancer", timeout=60
    ) as client:
        async with asyncio.timeout(900):
            await asyncio.gather(chaos(), *(trajectory(client, i) for i in range(TRAJECTORIES)))
        elapsed = time.monotonic() - started
        # every trajectory's state intact: its counter counted each call once, in order
        broken = {t: v for t, v in values.items() if v != list(range(1, CALLS + 1))}
        assert not broken, f"{len(broken)} trajectories off, e.g. {next(iter(broken.items()))}"
        # ledgers exact: every gateway answers every trajectory's usage, and it adds up
        for i in range(TRAJECTORIES):
            r = await client.get(f"/v1/trajectories/traj-{i}/usage")
            assert r.status_code == 200, r.text
            usage = r.json()
            assert usage["total"]["calls"] == CALLS, usage
            assert usage["total"]["errors"] == 0, usage
        r = await client.delete("/v1/trajectories/traj-0")
        assert r.json()["total"]["calls"] == CALLS
    print(
        f"\n{TRAJECTORIES} trajectories x {CALLS} calls through 3 gateways in {elapsed:.1f} s "
        f"({total / elapsed:.0f} calls/s); {'; '.join(events)}"
    )
    assert len(events) == 6
