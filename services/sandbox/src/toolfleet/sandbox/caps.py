"""What a program run says about the sandbox's own caps: a request over one (it ran with the
cap instead), or a run that hit one (memory, file size, processes, disk). A grader that sees
``MemoryError`` or ``Resource temporarily unavailable`` must be able to tell the sandbox's
limit from the program's bug, and what the limit is."""

from __future__ import annotations

from typing import Any

from toolfleet.sandbox.settings import SandboxSettings

# What a program's stderr says when it runs into a cap (the run's status is the
# supervisor's; these only choose which cap to name).
SIGNS = (
    ("MemoryError", "memory"),
    ("Cannot allocate memory", "memory"),
    ("std::bad_alloc", "memory"),
    ("File too large", "file size"),
    ("Resource temporarily unavailable", "processes"),
    ("No space left on device", "disk"),
)


def requested(settings: SandboxSettings, memory_mb: int | None, time_s: float | None,
              time_cap_s: float) -> list[str]:  # fmt: skip
    """Notes for a request over a cap: what was asked, the cap, what the run got."""
    notes = []
    if memory_mb is not None and memory_mb > settings.memory_mb:
        notes.append(
            f"a memory limit of {memory_mb} MiB was asked, over the sandbox's cap of "
            f"{settings.memory_mb} MiB: the program ran with {settings.memory_mb} MiB"
        )
    if time_s is not None and time_s > time_cap_s + 1e-6:
        notes.append(
            f"a time limit of {time_s:g} s was asked, over the call's cap of {time_cap_s:g} s: "
            f"the program ran with {time_cap_s:g} s"
        )
    return notes


def hit(settings: SandboxSettings, output: dict[str, Any], memory_mb: int) -> list[str]:
    """Notes for a run that ran into a cap of the sandbox (``memory_mb``: the memory it
    ran with)."""
    caps = {
        "memory": f"the memory cap is {memory_mb} MiB per program",
        "file size": f"the file size cap is {settings.file_mb} MiB per file",
        "processes": f"the process cap is {settings.processes} processes per run",
        "disk": f"the disk cap is {settings.disk_mb} MiB per run (files, stdin, /tmp, /mnt)",
    }
    found: list[str] = []
    if output.get("status") == "memory_limit":
        found.append("memory")
    if output.get("status") == "finished" and output.get("exit_code") != 0:
        tail = str(output.get("stderr") or "")[-4000:]
        found += [cap for sign, cap in SIGNS if sign in tail and cap not in found]
    return [f"the program may have hit a sandbox cap: {caps[cap]}" for cap in found]
