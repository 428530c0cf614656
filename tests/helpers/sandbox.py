"""Helpers for sandbox tests: calls through the REST API and looks at this host's processes."""

from __future__ import annotations

import os
from typing import Any

from tests.helpers import call


async def run(client, code: str, **options: Any) -> dict[str, Any]:
    """Call the python tool; the observation."""
    return await call(client, "python", {"code": code}, **options)


async def bash(client, command: str, **options: Any) -> dict[str, Any]:
    """Call the bash tool; the observation."""
    return await call(client, "bash", {"command": command}, **options)


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


def fork_servers(below: int) -> list[int]:
    """The zygotes' fork servers (``toolfleet.box.forker``) among the descendants of ``below``:
    root processes started by a zygote from the zygote's own command line."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                commands[int(entry)] = f.read().replace(b"\0", b" ").decode()
            with open(f"/proc/{entry}/status") as f:  # its real uid (a process that is
                uid = next(line for line in f if line.startswith("Uid:")).split()[1]
            if uid == "0":  # not dumpable, a judge's case server, shows /proc as root's)
                parents[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
        except OSError:
            continue
    below_us = {below}
    grew = True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in below_us} - below_us
        below_us |= more
        grew = bool(more)

    def zygote(pid: int) -> bool:
        return "toolfleet.box.zygote" in commands.get(pid, "")

    return [
        pid for pid, parent in parents.items() if pid in below_us and zygote(pid) and zygote(parent)
    ]
