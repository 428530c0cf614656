"""Chaos: a steady load through a gateway and three workers while one worker is killed -9
and Redis restarts (losing its data). Afterwards every call has exactly one final
observation (success or a retryable error), none was lost and none ran twice.

Redis here is a private ``redis-server`` on a free port (the machine's Redis is shared), with
no persistence, so its restart is the worst case: everything queued is gone.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.helpers import free_port
from tests.helpers.cluster import Cluster

CALLS = 2000
CONCURRENCY = 32
RETRY_BACKOFF_S = 0.5


class RedisServer:
    """A redis-server process of our own."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--protected-mode", "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("the chaos test needs redis-server (apt-get install redis-server)")
    server = RedisServer(free_port())
    server.start()
    yield server
    server.stop()


async def test_worker_kill_and_redis_restart_lose_nothing_and_run_nothing_twice(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    cluster = Cluster(private_redis.url)
    tally = tmp_path / "tally"
    outcomes: dict[str, str] = {}
    try:
        for _ in range(3):
            cluster.start_worker()
        cluster.wait_workers(3)
        async with cluster.gateway() as client:
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(CALLS):
                queue.put_nowait(i)

            async def drive() -> None:
                while not queue.empty():
                    token = f"t{queue.get_nowait()}"
                    r = await client.post(
                        "/v1/tools/tally/call",
                        json={
                            "arguments": {"path": str(tally), "token": token, "seconds": 0.005},
                            "timeout_s": 20,
                        },
                    )
                    assert r.status_code == 200, r.text
                    obs = r.json()
                    if obs["ok"]:
                        outcomes[token] = "ok"
                    else:
                        assert obs["error"]["retryable"], obs["error"]
                        outcomes[token] = obs["error"]["kind"]
                        # a trainer backs off before its next call: without it, calls that
                        # fail fast while the workers re-register after Redis lost their
                        # announcements would use up the queue at the speed of the machine
                        await asyncio.sleep(RETRY_BACKOFF_S)

            async def chaos() -> None:
                while len(outcomes) < CALLS // 4:
                    await asyncio.sleep(0.05)
                cluster.kill_worker(0)
                cluster.start_worker()
                while len(outcomes) < CALLS // 2:
                    await asyncio.sleep(0.05)
                private_redis.stop()
                await asyncio.sleep(0.5)
                private_redis.start()

            started = time.monotonic()
            async with asyncio.timeout(900):  # a loaded machine; the figure is printed
                await asyncio.gather(chaos(), *(drive() for _ in range(CONCURRENCY)))
            elapsed = time.monotonic() - started
    finally:
        cluster.close()
    await asyncio.sleep(1)  # replies of calls answered early (Redis lost them) still land
    ran = Counter(tally.read_text().split())
    twice = [t for t, n in ran.items() if n > 1]
    assert twice == [], f"ran twice: {twice[:10]}"
    assert len(outcomes) == CALLS  # every call answered
    for token, outcome in outcomes.items():
        if outcome == "ok":
            assert ran[token] == 1, token
    failed = Counter(o for o in outcomes.values() if o != "ok")
    print(f"\n{CALLS} calls in {elapsed:.1f} s; retryable errors: {dict(failed)}")
    assert sum(failed.values()) < CALLS // 4  # most calls still succeed


async def test_gateway_answers_in_flight_calls_when_redis_is_down(
    private_redis: RedisServer,
) -> None:
    """With Redis gone for good, calls end with a retryable diagnostic, never hang."""
    cluster = Cluster(private_redis.url)
    try:
        cluster.start_worker()
        cluster.wait_workers(1)
        async with cluster.gateway() as client:
            pending = asyncio.create_task(
                client.post(
                    "/v1/tools/sleep/call", json={"arguments": {"seconds": 3}, "timeout_s": 5}
                )
            )
            await asyncio.sleep(0.3)
            private_redis.stop()
            started = time.monotonic()
            r = await pending
            assert r.status_code == 200
            assert r.json()["error"]["retryable"] is True
            assert time.monotonic() - started < 15
            r = await client.post("/v1/tools/echo/call", json={"arguments": {"text": "x"}})
            assert r.status_code == 200
            assert r.json()["error"]["kind"] == "unavailable"
            assert r.json()["error"]["retryable"] is True
    finally:
        cluster.close()
