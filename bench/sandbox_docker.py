"""Code interpreter figures, docker backend, calling the sandbox's tools in-process.

Prints p50/p99 of:
- new session + first ``print(1+1)``, with a ready kernel (pool_size > 0: a kernel already
  forked in a warm container) and with a warm container only (pool_size = 0: the family is
  a warm container, the kernel is forked on demand);
- stateful ``print(1+1)`` in a warm session;
- a container started on demand (no warm one): start, zygote import of its libraries, ready.
Before each new-session sample the pools are given time to refill (the figure is the latency
from a warm pool, not the refill rate). Asserts nothing. Needs the Docker engine and image
(deploy/docker/install-docker.sh, build-images.sh).

Usage: .venv/bin/python bench/sandbox_docker.py [--iterations 50] [--runtime runsc]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from toolfleet.core.state import SessionStates
from toolfleet.core.tool import CallContext, Tool
from toolfleet.sandbox.service import Sandbox
from toolfleet.sandbox.settings import SandboxSettings

REFILL_WAIT_S = 30.0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def row(label: str, times: list[float]) -> None:
    print(f"{label:<58}{len(times):>5}{statistics.median(times):>9.2f}{pct(times, 0.99):>9.2f}")


def context(states: SessionStates, session: str | None) -> CallContext:
    return CallContext(
        call_id=uuid.uuid4().hex,
        tenant="bench",
        session_id=session,
        trajectory_id=None,
        timeout_s=30,
        deadline=time.monotonic() + 30,
        states=states,
    )


async def call(tool: Tool, states: SessionStates, session: str | None, code: str) -> None:
    result = await tool.call(tool.Arguments(code=code), context(states, session))
    if result.error is not None or result.data is None or result.data["stdout"] != "2\n":
        raise RuntimeError(f"unexpected result: {result}")


async def refilled(python: Tool) -> None:
    """Wait (bounded) until the kernel pool and the warm container pool are full."""
    pool = python.sandbox.pool  # type: ignore[attr-defined]
    backend = pool.backend
    deadline = time.monotonic() + REFILL_WAIT_S
    while time.monotonic() < deadline:
        if (
            pool._ready.qsize() >= pool.size
            and len(backend._ready) >= backend.settings.docker_pool_size
        ):
            return
        await asyncio.sleep(0.02)
    raise RuntimeError("the pools did not refill in time")


async def new_sessions(settings: SandboxSettings, iterations: int) -> list[float]:
    """New session + first call, each from full pools."""
    sandbox = Sandbox(settings)
    python, states = sandbox.tools()[0], SessionStates()
    await sandbox.start()
    times = []
    try:
        for _ in range(iterations):
            await refilled(python)
            session = uuid.uuid4().hex
            t = time.perf_counter()
            await call(python, states, session, "print(1+1)")
            times.append((time.perf_counter() - t) * 1000)
            await states.close(session)
    finally:
        await states.close_all()
        await sandbox.stop()
    return times


async def warm_session_and_cold_starts(
    settings: SandboxSettings, iterations: int, cold: int
) -> tuple[list[float], list[float]]:
    """Stateful calls in one session; then containers started on demand."""
    sandbox = Sandbox(settings)
    python, states = sandbox.tools()[0], SessionStates()
    await sandbox.start()
    try:
        await call(python, states, "warm", "print(1+1)")
        stateful = []
        for _ in range(iterations):
            t = time.perf_counter()
            await call(python, states, "warm", "print(1+1)")
            stateful.append((time.perf_counter() - t) * 1000)
        backend = python.sandbox.pool.backend  # type: ignore[attr-defined]
        starts = []
        for _ in range(cold):
            t = time.perf_counter()
            container = await backend._start_container()
            starts.append((time.perf_counter() - t) * 1000)
            await backend.discard(container)
    finally:
        await states.close_all()
        await sandbox.stop()
    return stateful, starts


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--cold", type=int, default=5, help="containers started on demand")
    parser.add_argument("--runtime", default=None, help="docker runtime, e.g. runsc")
    args = parser.parse_args()
    iterations = max(1, min(args.iterations, 1000))

    with tempfile.TemporaryDirectory(prefix="tf-bench-") as state_dir:
        base: dict[str, Any] = dict(
            backend="docker",
            docker_runtime=args.runtime,
            docker_pool_size=2,
            state_dir=Path(state_dir),
        )
        print(
            f"code interpreter, docker backend (runtime {args.runtime or 'default'}, image "
            f"{SandboxSettings(**base).docker_image}); in-process tool calls"
        )
        print(f"{'what':<58}{'n':>5}{'p50 ms':>9}{'p99 ms':>9}")
        times = await new_sessions(SandboxSettings(**base, pool_size=2), iterations)
        row("new session + first print(1+1), kernel ready", times)
        times = await new_sessions(SandboxSettings(**base, pool_size=0), iterations)
        row("new session + first print(1+1), warm container, fork", times)
        stateful, starts = await warm_session_and_cold_starts(
            SandboxSettings(**base, pool_size=1), max(iterations, 50), max(0, min(args.cold, 20))
        )
        row("stateful print(1+1), warm session", stateful)
        if starts:
            row("container started on demand (until the zygote is ready)", starts)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
