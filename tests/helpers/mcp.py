"""The mcp service's tests: upstream configurations (the generated server, the reference
servers from npm and PyPI that ``make mcp-servers`` installs) and registries serving them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from toolfleet.core.registry import ToolRegistry
from toolfleet.mcp.service import McpService
from toolfleet.mcp.settings import McpSettings

from tests.helpers import ROOT, free_port

SYNTHETIC = ROOT / "tests" / "mcp" / "servers" / "synthetic.py"
"""The generated MCP server (``--tools N``, ``--http PORT``)."""
PREFIX = Path("/opt/toolfleet/mcp")
"""Where deploy/mcp/install-servers.sh puts the npm and PyPI servers."""


def installed() -> None:
    """Fail (never skip) when the servers are not installed, saying how to install them."""
    missing = [
        p
        for p in ("npm/bin/mcp-server-memory", "python/bin/mcp-server-time")
        if not (PREFIX / p).exists()
    ]
    assert not missing, f"run `make mcp-servers` (missing in {PREFIX}: {missing})"


def python_show() -> list[str]:
    """What the jail must show for this interpreter and the repository (the generated
    server runs on the tests' own Python, with the mcp SDK of the project's venv)."""
    return [str(ROOT), str(Path(sys.base_prefix).resolve())]


def synthetic(
    name: str = "syn", tools: int = 0, changing: bool = False, **fields: Any
) -> dict[str, Any]:
    """The generated server as a stdio upstream (jailed unless ``sandbox=False``; with
    ``changing``, its add_tool and remove_tool change its tool list)."""
    return {
        "name": name,
        "command": sys.executable,
        "args": [str(SYNTHETIC), "--tools", str(tools), *(["--changing"] if changing else [])],
        "show": python_show(),
        **fields,
    }


def reference_servers() -> list[dict[str, Any]]:
    """npm's memory (stateful: a graph per session), filesystem and everything, and PyPI's
    time, all jailed."""
    return [
        {
            "name": "memory",
            "command": "mcp-server-memory",
            "stateful": True,
            "env": {"MEMORY_FILE_PATH": "/tmp/memory.jsonl"},
        },
        {"name": "filesystem", "command": "mcp-server-filesystem", "args": ["/tmp"]},
        {"name": "everything", "command": "mcp-server-everything", "args": ["stdio"]},
        {"name": "time", "command": "mcp-server-time", "args": ["--local-timezone", "UTC"]},
    ]


def mcp_registry(**settings: Any) -> ToolRegistry:
    """A registry of the mcp service configured with ``settings`` (its tools listed)."""
    return ToolRegistry(McpService(McpSettings(**settings)).tools())


def toml_value(value: Any) -> str:
    """A TOML value (strings, numbers, booleans, lists, inline tables)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def toml_config(services: list[str], **mcp: Any) -> str:
    """A config file serving ``services``, with ``mcp`` as its ``[mcp]`` table (lists of
    tables, ``upstreams`` and ``llm``, as ``[[mcp.upstreams]]``)."""
    lines = [f"services = {toml_value(services)}", "", "[mcp]"]
    tables = {k: mcp.pop(k) for k in ("upstreams", "llm") if k in mcp}
    lines += [f"{k} = {toml_value(v)}" for k, v in mcp.items()]
    for key, items in tables.items():
        for item in items:
            lines += ["", f"[[mcp.{key}]]", *(f"{k} = {toml_value(v)}" for k, v in item.items())]
    return "\n".join(lines) + "\n"


@contextmanager
def synthetic_http(
    tools: int = 0, port: int | None = None, changing: bool = False
) -> Iterator[str]:
    """The generated server over Streamable HTTP in a process of its own (on ``port``, or a
    free one); its /mcp URL."""
    port = port or free_port()
    extra = ["--changing"] if changing else []
    proc = subprocess.Popen(
        [sys.executable, str(SYNTHETIC), "--tools", str(tools), "--http", str(port), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the generated HTTP server did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
