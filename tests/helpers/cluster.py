"""A distributed toolfleet for tests: worker processes and an in-process gateway over a
real Redis, under a key prefix of its own (removed afterwards)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import redis
from asgi_lifespan import LifespanManager
from toolfleet.core import Settings
from toolfleet.gateway.app import create_app

from tests.helpers import ROOT

REDIS_URL = os.environ.get("TOOLFLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# Short intervals so failures are noticed within a test's time — but not so short that a
# worker whose process a loaded machine stalls for a second is taken for dead.
FAST = {
    "heartbeat_s": 0.2,
    "worker_dead_after_s": 3.0,
    "claim_idle_s": 4.0,
    "reply_grace_s": 3.0,
}


class Cluster:
    """Workers started as processes (``python -m toolfleet.core.worker``) serving the test
    tools, and gateways made in this process, all sharing ``redis_url`` and one prefix."""

    def __init__(self, redis_url: str = REDIS_URL, **settings: Any) -> None:
        self.redis_url = redis_url
        self.prefix = f"tftest-{uuid.uuid4().hex[:10]}"
        self.values = {**FAST, **settings, "redis_url": redis_url, "redis_prefix": self.prefix}
        self.workers: list[subprocess.Popen[bytes]] = []
        self.logs = Path(tempfile.mkdtemp(prefix="toolfleet-cluster-"))

    def redis(self) -> redis.Redis:
        """A client of the cluster's Redis whose reads outlast the tests' blocking reads
        (redis-py 8 gives up on a socket read after 5 s by default)."""
        return redis.Redis.from_url(self.redis_url, socket_timeout=60)

    def settings(self, **overrides: Any) -> Settings:
        return Settings(**{**self.values, **overrides})

    def env(self, **overrides: Any) -> dict[str, str]:
        values = {**self.values, **overrides}
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLFLEET_")}
        env.update({f"TOOLFLEET_{k.upper()}": str(v) for k, v in values.items()})
        env["PYTHONPATH"] = str(ROOT)
        return env

    def start_worker(
        self, *args: str, command: tuple[str, ...] = ("toolfleet.core.worker",), **overrides: Any
    ) -> subprocess.Popen[bytes]:
        """A worker serving the test tools (plus ``args``: services, options), started as
        ``python -m <command>`` (``("toolfleet.client.cli", "worker")``: the CLI's)."""
        n = len(self.workers)
        log = (self.logs / f"worker-{n}.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                *command,
                "--tools-from",
                "tests.helpers.tools:distributed_tools",
                "--id",
                f"w{n}-{self.prefix}",
                *args,
            ],
            cwd=ROOT,
            env=self.env(**overrides),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(proc)
        return proc

    def worker_log(self, n: int) -> str:
        return (self.logs / f"worker-{n}.log").read_text(errors="replace")

    def wait_workers(self, count: int, timeout_s: float = 60.0) -> None:
        """Wait until ``count`` workers have a heartbeat."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                since = time.time() - self.values["worker_dead_after_s"]
                if client.zcount(f"{self.prefix}:workers", since, "+inf") >= count:
                    return
                for n, proc in enumerate(self.workers):
                    if proc.poll() is not None and proc.returncode not in (0, -9, -15):
                        raise RuntimeError(f"worker {n} exited: {self.worker_log(n)[-2000:]}")
                time.sleep(0.05)
            raise TimeoutError(f"{count} workers did not start")
        finally:
            client.close()

    @asynccontextmanager
    async def gateway(
        self, wait_tools: bool = True, **overrides: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        """A started gateway (Redis dispatcher) and a client of it; waits for the tools
        unless ``wait_tools`` is false."""
        app = create_app(self.settings(**overrides))
        async with LifespanManager(app, startup_timeout=300, shutdown_timeout=60) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://gateway", timeout=120
            ) as client:
                client.app = app  # type: ignore[attr-defined]
                deadline = time.monotonic() + 30
                while wait_tools and not app.state.runtime.dispatcher.has_tool("tally"):
                    if time.monotonic() > deadline:
                        raise TimeoutError("the gateway saw no worker's tools")
                    await asyncio.sleep(0.05)
                yield client

    def kill_worker(self, n: int, sig: int = signal.SIGKILL) -> None:
        self.workers[n].send_signal(sig)

    def close(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        client = redis.Redis.from_url(self.redis_url)
        try:
            keys = list(client.scan_iter(f"{self.prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
        except redis.ConnectionError:
            pass
        finally:
            client.close()
