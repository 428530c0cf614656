"""Helpers for sandbox tests: calls through the REST API and looks at this host's processes."""

from __future__ import annotations

import os
from typing import Any


async def run(client, code: str, **options: Any) -> dict[str, Any]:
    """Call the python tool; the observation."""
    r = await client.post("/v1/tools/python/call", json={"arguments": {"code": code}, **options})
    assert r.status_code == 200, r.text
    return r.json()


async def bash(client, command: str, **options: Any) -> dict[str, Any]:
    """Call the bash tool; the observation."""
    body = {"arguments": {"command": command}, **options}
    r = await client.post("/v1/tools/bash/call", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def text(obs: dict[str, Any]) -> str:
    """The observation's text parts."""
    return "\n".join(p["text"] for p in obs["content"] if p["type"] == "text")


async def new_session(client) -> str:
    """A new session's id."""
    return (await client.post("/v1/sessions")).json()["session_id"]


def processes_of(uids: range | set[int]) -> list[tuple[int, int, str]]:
    """(pid, uid, command) of every process on this host whose owner is in ``uids``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            uid = os.stat(f"/proc/{entry}").st_uid
            if uid in uids:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    found.append((int(entry), uid, f.read().replace(b"\0", b" ").decode()))
        except OSError:
            continue
    return found
