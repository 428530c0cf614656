"""Shared fixtures: the gateway app over real HTTP (httpx against the ASGI app, and a live
uvicorn process for end-to-end tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from toolfleet.core import Settings
from toolfleet.core.registry import ToolRegistry
from toolfleet.gateway.app import create_app

from tests.support import test_registry

ROOT = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def gateway(
    registry: ToolRegistry | None = None, **overrides: object
) -> AsyncIterator[httpx.AsyncClient]:
    """A started gateway serving ``registry`` (default: the test tools), and a client of it."""
    settings = Settings(**overrides)
    app = create_app(settings, registry=registry or test_registry(settings))
    async with LifespanManager(app, startup_timeout=180, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A client of a gateway with default settings."""
    async with gateway() as c:
        yield c


@pytest.fixture
def make_gateway() -> Callable[..., object]:
    """``async with make_gateway(max_in_flight=2) as client: ...``"""
    return gateway


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app: Any, port: int) -> Iterator[None]:
    """Serve an ASGI ``app`` on 127.0.0.1:``port`` in a thread (stand-ins of outside APIs)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the stand-in server did not start"
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not become ready")


@pytest.fixture
def live_server() -> Iterator[Callable[..., str]]:
    """Start a real server process: ``live_server([cmd...], env)`` -> base URL."""
    procs: list[subprocess.Popen] = []

    def start(cmd: list[str], port: int, env: dict[str, str] | None = None) -> str:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc)
        return url

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


PYTHON = sys.executable
