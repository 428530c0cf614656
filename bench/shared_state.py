"""Sessions, ledger and idempotency records in Redis (issue 19): what they cost, in one run.

Prints:
1. the Redis state's cost per stateful call: the same trajectory call (``counter``, a
   stateful test tool, with a trajectory id; then also with an idempotency key) through the
   Redis dispatcher and one worker, with the state in the gateway's memory (the distributed
   path before issue 19) vs in Redis. Runtime-level (no HTTP), sequential, the two runtimes
   interleaved in blocks so the machine's load hits both alike: p50/p99 and the added p50;
2. stateful p50/p99 and calls/s over HTTP through 1 vs 3 gateway processes (round-robin per
   request, a client-side balancer), 3 workers, ``--concurrency`` trajectories;
3. Redis memory per session (its session hash, expiry entry, trajectory binding and usage
   ledger), measured with MEMORY USAGE over ``--sessions`` sessions.

Uses the machine's Redis (TOOLFLEET_BENCH_REDIS_URL, default redis://127.0.0.1:6379/0) under
a key prefix of its own, deleted afterwards. Asserts nothing.

Usage: .venv/bin/python bench/shared_state.py [--calls 2000] [--duration 15]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import redis

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _cluster import PREFIX, REDIS_URL, ROOT, clean, free_port, gateway, stop, worker  # noqa: E402

sys.path.insert(0, str(ROOT))
from toolfleet.core import Settings  # noqa: E402
from toolfleet.core.protocol import CallRequest  # noqa: E402
from toolfleet.core.redis_dispatch import RedisDispatcher  # noqa: E402
from toolfleet.core.runtime import Runtime  # noqa: E402


def test_worker(n: int) -> subprocess.Popen[bytes]:
    return worker("--tools-from", "tests.helpers.tools:distributed_tools", "--id", f"bench-w{n}")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def wait_ready(port: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"gateway on {port} not ready")


# ---------------------------------------------------------------- 1. the state's cost


async def state_cost(calls: int) -> None:
    settings = Settings(redis_url=REDIS_URL, redis_prefix=PREFIX, log_level="warning")
    runtimes = {
        "memory (before)": Runtime(settings, RedisDispatcher(settings), shared_state=False),
        "Redis (shared)": Runtime(settings, RedisDispatcher(settings), shared_state=True),
    }
    for rt in runtimes.values():
        await rt.start()
        while not rt.has_tool("counter"):  # noqa: ASYNC110 - the tools come by heartbeat
            await asyncio.sleep(0.1)
    try:
        for keyed in (False, True):
            samples: dict[str, list[float]] = {name: [] for name in runtimes}
            for name, rt in runtimes.items():  # warm: sessions bound, scripts loaded
                for i in range(20):
                    await rt.call("t", "counter", _request(name, i, keyed, "warm"))
            block = 50
            for start_at in range(0, calls, block):
                for name, rt in runtimes.items():
                    for i in range(start_at, start_at + block):
                        t0 = time.perf_counter()
                        obs = await rt.call("t", "counter", _request(name, i, keyed, "run"))
                        samples[name].append((time.perf_counter() - t0) * 1000)
                        assert obs.ok, obs
            label = "trajectory call + idempotency key" if keyed else "trajectory call"
            p50 = {}
            for name, s in samples.items():
                p50[name] = statistics.median(s)
                print(f"  {label:<36}{name:<18}{p50[name]:>9.3f}{pct(s, 0.99):>9.3f}{len(s):>8}")
            added = p50["Redis (shared)"] - p50["memory (before)"]
            print(f"  -> the Redis state adds {added:.3f} ms p50 ({label})")
    finally:
        for rt in runtimes.values():
            await rt.stop()


def _request(name: str, i: int, keyed: bool, phase: str) -> CallRequest:
    tag = "m" if name.startswith("memory") else "r"
    return CallRequest(
        arguments={"add": 1},
        trajectory_id=f"bench-{tag}-{int(keyed)}",
        idempotency_key=f"{tag}-{phase}-{i}" if keyed else None,
    )


# ---------------------------------------------------------------- 2. 1 vs 3 gateways


async def through_gateways(ports: list[int], concurrency: int, duration: float) -> None:
    latencies: list[float] = []
    turn = 0
    async with httpx.AsyncClient(
        timeout=60, limits=httpx.Limits(max_connections=concurrency * 2)
    ) as client:

        async def trajectory(n: int) -> None:
            nonlocal turn
            tid = f"gw{len(ports)}-{n}-{uuid.uuid4().hex[:6]}"
            end = time.monotonic() + duration
            while time.monotonic() < end:
                port = ports[turn % len(ports)]
                turn += 1
                body = {"arguments": {"add": 1}, "trajectory_id": tid}
                t0 = time.perf_counter()
                r = await client.post(f"http://127.0.0.1:{port}/v1/tools/counter/call", json=body)
                latencies.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200 and r.json()["ok"], r.text

        started = time.monotonic()
        await asyncio.gather(*(trajectory(n) for n in range(concurrency)))
        elapsed = time.monotonic() - started
    print(
        f"  {len(ports)} gateway{'s' if len(ports) > 1 else ' '}, {concurrency} trajectories"
        f"{statistics.median(latencies):>12.3f}{pct(latencies, 0.99):>9.3f}"
        f"{len(latencies) / elapsed:>10.0f}"
    )


# ---------------------------------------------------------------- 3. memory per session


async def memory_per_session(count: int) -> None:
    settings = Settings(redis_url=REDIS_URL, redis_prefix=f"{PREFIX}-mem", log_level="warning")
    from toolfleet.core.protocol import Observation, Usage
    from toolfleet.core.redis_state import RedisState

    state = RedisState(settings)
    for i in range(count):
        session = await state.sessions.for_trajectory("tenant-a", f"trajectory-{i:06d}")
        obs = Observation(ok=True, tool="python", call_id=uuid.uuid4().hex, usage=Usage(run_ms=3))
        await state.ledger.record("tenant-a", f"trajectory-{i:06d}", obs)
        assert session.session_id
    client = redis.Redis.from_url(REDIS_URL)
    total = 0
    for key in client.scan_iter(f"{PREFIX}-mem:*", count=1000):
        total += client.memory_usage(key, samples=0) or 0
    client.close()
    await state.close()
    print(
        f"  {count} sessions, each with a trajectory binding and a one-tool ledger: "
        f"{total / count:.0f} bytes per session (MEMORY USAGE; plus Redis' own overhead)"
    )


async def amain(args: argparse.Namespace) -> None:
    procs = [test_worker(n) for n in range(3)]
    try:
        print(f"Redis state cost: runtime-level, sequential, {args.calls} calls per row")
        print(f"  {'what':<36}{'state':<18}{'p50 ms':>9}{'p99 ms':>9}{'calls':>8}")
        await state_cost(args.calls)
        print(f"\nstateful counter calls over HTTP, {args.duration:g} s per row")
        print(f"  {'what':<36}{'p50 ms':>9}{'p99 ms':>9}{'calls/s':>10}")
        for count in (1, 3):
            ports = [free_port() for _ in range(count)]
            gateways = [gateway(p) for p in ports]
            try:
                await asyncio.gather(*(wait_ready(p) for p in ports))
                await through_gateways(ports, args.concurrency, args.duration)
            finally:
                stop(gateways)
        print("\nRedis memory")
        await memory_per_session(args.sessions)
    finally:
        stop(procs)
        clean()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sessions", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(amain(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
