"""What the tests share: paths, free ports, a started gateway in this process, a live server's
readiness, and calls and the parts of their observations.

The one home of test helpers (``conftest.py`` holds fixtures only). What belongs to one
service's tests is a submodule named after it (``tests.helpers.sql``, ``.vision``,
``.sandbox``); the test-only tools are ``tests.helpers.tools``; a distributed deployment of
workers over Redis is ``tests.helpers.cluster``.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
import types
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from asgi_lifespan import LifespanManager
from toolfleet.core import Settings
from toolfleet.core.protocol import Invocation
from toolfleet.core.registry import ToolRegistry
from toolfleet.gateway.app import create_app

from tests.helpers.tools import test_registry

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root."""
SHARED_DATA = ROOT.parent / "shared" / "data"
"""The real data sets the tests use (../shared/data: search, sql, vision)."""
PYTHON = sys.executable


@asynccontextmanager
async def gateway(
    registry: ToolRegistry | None = None, **overrides: object
) -> AsyncIterator[httpx.AsyncClient]:
    """A started gateway serving ``registry`` (default: the test tools), and a client of it."""
    settings = Settings(**overrides)
    app = create_app(settings, registry=registry or test_registry(settings))
    async with LifespanManager(app, startup_timeout=600, shutdown_timeout=120) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 300.0) -> None:
    """Wait until the server at ``url`` answers /readyz with 200 (raise if ``proc`` exits)."""
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


@contextmanager
def serving(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout_s: float = 300
) -> Iterator[str]:
    """``toolfleet serve ARGS --port P`` as a process of its own, its environment this one's
    without any TOOLFLEET_* variable (plus ``env``); its URL once ready; stopped after."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TOOLFLEET_")}
    proc = subprocess.Popen(
        [PYTHON, "-m", "toolfleet.client.cli", "serve", *args, "--port", str(port)],
        cwd=cwd,
        env={**clean, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, timeout_s=timeout_s)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def serve_app(app: Any, port: int) -> Iterator[None]:
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


async def call(
    client: httpx.AsyncClient, tool: str, arguments: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    """POST a call (``fields``: session_id, timeout_s ...); the observation (asserting 200)."""
    r = await client.post(f"/v1/tools/{tool}/call", json={"arguments": arguments, **fields})
    assert r.status_code == 200, r.text
    return r.json()


async def new_session(client: httpx.AsyncClient) -> str:
    """Open a session; its id."""
    r = await client.post("/v1/sessions")
    assert r.status_code == 201, r.text
    return r.json()["session_id"]


def text(obs: dict[str, Any]) -> str:
    """The text parts of an observation, joined."""
    return "\n".join(p["text"] for p in obs["content"] if p["type"] == "text")


def rpc(method: str, params: dict[str, Any] | None = None, id_: int = 1) -> dict[str, Any]:
    """A JSON-RPC request of ``/mcp``."""
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params or {}}


def invocation(tool: str, arguments: dict[str, Any] | None = None, **fields: Any) -> Invocation:
    """A resolved call as a dispatcher carries it (tenant ``t``, 5 s, submitted now)."""
    values: dict[str, Any] = {
        "call_id": uuid.uuid4().hex,
        "tool": tool,
        "arguments": arguments or {},
        "tenant": "t",
        "timeout_s": 5.0,
        "submitted_at": time.time(),
    }
    return Invocation(**{**values, **fields})


def module_from_file(path: Path, name: str) -> types.ModuleType:
    """Import a script that is not in a package (deploy/generate.py, examples/...) by its
    path, as ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
