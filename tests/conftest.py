"""Fixtures: the gateway app over real HTTP (httpx against the ASGI app, and live server
processes). Helpers are in :mod:`tests.helpers`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
import redis

from tests.helpers import ROOT, gateway, wait_healthy
from tests.helpers.cluster import Cluster


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A client of a gateway with default settings."""
    async with gateway() as c:
        yield c


@pytest.fixture
def make_gateway() -> Callable[..., object]:
    """``async with make_gateway(max_in_flight=2) as client: ...``"""
    return gateway


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


@pytest.fixture
def make_cluster() -> Iterator[Callable[..., Cluster]]:
    """``make_cluster(**settings)``: a distributed toolfleet over this machine's Redis (the
    test fails without it), closed after the test."""
    made: list[Cluster] = []

    def make(**settings: object) -> Cluster:
        c = Cluster(**settings)
        try:
            redis.Redis.from_url(c.redis_url).ping()
        except redis.ConnectionError as exc:
            pytest.fail(f"distributed tests need Redis at {c.redis_url}: {exc}")
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def cluster(make_cluster: Callable[..., Cluster]) -> Cluster:
    """A distributed toolfleet with the default test settings."""
    return make_cluster()
