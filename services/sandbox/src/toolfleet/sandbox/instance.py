"""Several sandbox services on one host: each claims a slot of its own.

A slot is a range of uids for its families and the name of its cgroups, held by an
``flock`` on a file in a host-wide directory for as long as the service lives (the kernel
drops the lock when the process dies, however it dies). Two instances with default settings
therefore never share a uid — whose process limit and files they would otherwise share — nor
a cgroup; an instance given an explicit ``uid_base`` claims exactly that range, or fails to
start saying which process holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

UID_BASE = 200_000
UID_MAX = 2**31 - 1
SLOTS_SCANNED = 256


class SlotTakenError(RuntimeError):
    """The uid range asked for is held by another live instance."""


@dataclass
class Slot:
    """What this instance holds: its uids and the name of its cgroups."""

    name: str
    uid_base: int
    uid_count: int
    _fd: int

    def release(self) -> None:
        """Give the slot up (also happens when the process exits)."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


def lock_dir() -> Path:
    """The host-wide directory of slot locks (root's under /run, else per user in /tmp)."""
    if os.geteuid() == 0 and os.access("/run", os.W_OK):
        path = Path("/run/toolfleet-sandbox")
    else:
        path = Path(f"/tmp/toolfleet-sandbox-{os.geteuid()}")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text().strip() or "?"
    return "?"


def claim(uid_count: int, uid_base: int | None = None, start: int = 0) -> Slot:
    """Claim a slot: exactly ``uid_base`` when given, else the first free one from
    ``start`` (a distributed worker starts at its ordinal)."""
    directory = lock_dir()
    if uid_base is not None:
        path = directory / f"uids-{uid_base}-{uid_count}.lock"
        fd = _try_lock(path)
        if fd is None:
            raise SlotTakenError(
                f"uids {uid_base}..{uid_base + uid_count - 1} are in use by another toolfleet "
                f"sandbox (pid {_holder(path)}); give this one another uid_base, or leave it "
                "unset to have a free range chosen"
            )
        return Slot(f"toolfleet-u{uid_base}", uid_base, uid_count, fd)
    slots = max(1, (UID_MAX - UID_BASE) // uid_count)
    for i in range(min(slots, SLOTS_SCANNED)):
        k = (start + i) % slots
        fd = _try_lock(directory / f"slot-{k}-{uid_count}.lock")
        if fd is not None:
            return Slot(f"toolfleet-s{k}", UID_BASE + k * uid_count, uid_count, fd)
    raise SlotTakenError(
        f"no free sandbox slot among {SLOTS_SCANNED} (every one is held by a live toolfleet "
        f"sandbox; see {directory})"
    )
