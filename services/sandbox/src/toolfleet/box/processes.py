"""Process trees inside the sandbox: find, kill and reap (used by the zygote and kernels)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Container, Iterator
from dataclasses import dataclass, field

_CHILDREN_FILES = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


@dataclass
class _Table:
    """Every process's parent and real uid, from one read of each status file."""

    children: dict[int, list[int]] = field(default_factory=dict)
    uids: dict[int, int] = field(default_factory=dict)


_scan: _Table | None = None  # while ``one_scan`` holds: the table read at its start


def _read_table() -> _Table:
    """Every process this namespace shows (not threads: gVisor lists them too), from one
    read of each status file."""
    table = _Table()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        read = status_fields(pid, ("Tgid", "PPid", "Uid"))
        if read.get("Tgid") == pid and "PPid" in read and "Uid" in read:
            table.children.setdefault(read["PPid"], []).append(pid)
            table.uids[pid] = read["Uid"]
    return table


@contextlib.contextmanager
def one_scan() -> Iterator[None]:
    """Within it, where the kernel has no children files (gVisor), ``children`` and
    ``uid_of`` answer from one pass over /proc made at its start (one status read per
    process) instead of a pass per question: a sweep asks for the children of every process
    it finds. Elsewhere each answer is read when asked (a children file is exact and cheap)."""
    global _scan
    if _CHILDREN_FILES or _scan is not None:
        yield
        return
    _scan = _read_table()
    try:
        yield
    finally:
        _scan = None


def read_proc(path: str) -> bytes:
    """A /proc file's bytes. ``open()`` would build a text file object for each (~6 us
    more a read, several reads for every program and judge case)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 16384)
        # to its end: a file of records (a task's children) comes a page of them a read
        while data and (more := os.read(fd, 16384)):
            data += more
        return data
    finally:
        os.close(fd)


def children(pid: int) -> list[int]:
    """Direct children of ``pid``: from /proc/<pid>/task/*/children, or where the kernel has
    no such file (gVisor) from every process's parent (``one_scan``'s if one holds)."""
    if _scan is not None or not _CHILDREN_FILES:
        return list((_scan or _read_table()).children.get(pid, ()))
    found: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            found.extend(int(c) for c in read_proc(f"/proc/{pid}/task/{tid}/children").split())
    return found


def descendants(pid: int, spare: Container[int] = ()) -> list[int]:
    """Every process below ``pid``, deepest first, except ``spare`` ones and their trees."""
    found: list[int] = []
    for child in children(pid):
        if child in spare:
            continue
        found.extend(descendants(child, spare))
        found.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and everything below it."""
    for target in [*descendants(pid), pid]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signal.SIGKILL)


def signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to a process group (nothing when it is gone)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def reap() -> list[int]:
    """Collect every child that has exited; their pids."""
    reaped = []
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append(pid)


def parent_of(pid: int) -> int | None:
    """The parent pid of ``pid`` (None when it is gone)."""
    try:
        return int(read_proc(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def child_handle(pid: int, parent: int, uid: int) -> int | None:
    """A pidfd of ``pid`` if it is a child of ``parent`` running as ``uid`` — what a process
    that claims to have forked ``pid`` (a kernel: model code may have patched it) must show
    before anything signals or adopts it; None if it is not. The check goes through the
    pidfd, so that the process checked is the one that was named, not a later one that
    reused its pid, and the caller keeps the pidfd to signal it (-1 where the kernel has no
    pidfds, as under gVisor: /proc only)."""
    handle = open_handle(pid)
    try:
        if status_fields(pid, ("PPid", "Uid")) != {"PPid": parent, "Uid": uid}:
            raise ProcessLookupError(pid)
        if handle >= 0:
            signal.pidfd_send_signal(handle, 0)  # still the process that was looked at
        return handle
    except OSError:
        if handle >= 0:
            os.close(handle)
        return None


def has_pidfds() -> bool:
    """Whether this kernel has pidfds (gVisor has none)."""
    handle = open_handle(os.getpid())
    if handle < 0:
        return False
    os.close(handle)
    return True


def open_handle(pid: int) -> int:
    """A pidfd of ``pid``, or -1 where the kernel has none (gVisor) or ``pid`` is gone."""
    try:
        return os.pidfd_open(pid)
    except OSError:
        return -1


def owned_by(uid: int) -> list[int]:
    """Every process of ``uid`` this namespace shows."""
    return [pid for pid, owner in (_scan or _read_table()).uids.items() if owner == uid]


def uid_of(pid: int) -> int | None:
    """The real uid of ``pid`` (from its status: /proc/<pid> itself is root's for a process
    that is not dumpable); ``one_scan``'s if one holds."""
    if _scan is not None:
        return _scan.uids.get(pid)
    return status_field(pid, "Uid")


def status_field(pid: int, name: str) -> int | None:
    """An integer field of /proc/<pid>/status (``Threads``, ``VmRSS`` in kB ...)."""
    return status_fields(pid, (name,)).get(name)


def status_fields(pid: int, names: tuple[str, ...]) -> dict[str, int]:
    """Integer fields of /proc/<pid>/status from one read (the first figure of each: the
    real uid of ``Uid``); those it lacks are missing, all of them when it is gone."""
    try:
        text = b"\n" + read_proc(f"/proc/{pid}/status")
    except OSError:
        return {}
    found = {}
    for name in names:
        at = text.find(f"\n{name}:".encode())
        with contextlib.suppress(ValueError, IndexError):
            if at >= 0:
                found[name] = int(text[at + len(name) + 2 :].split(maxsplit=1)[0])
    return found


def state_of(pid: int) -> str:
    """What a process is doing, for a diagnostic: its state and where it waits (wchan)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/wchan") as f:
            return f"{state} in {f.read().strip() or '-'}"
    except (OSError, IndexError):
        return "gone"


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def threads_and_cpu(pid: int, stat: int = -1, reaped: bool = False) -> tuple[int, float]:
    """How many threads ``pid`` has and the CPU time (ms) it has used — with ``reaped``,
    that of the children it has waited for too, as ``wait4`` counts — in one read (of
    ``stat``, an open descriptor of its /proc/<pid>/stat, when given)."""
    _, threads, cpu = _stat(pid, stat, reaped)
    return threads, cpu


def live_and_cpu(pid: int) -> tuple[bool, float]:
    """Whether ``pid`` is alive (no zombie) and the CPU time (ms) it and the children it
    waited for have used; (False, 0) when it is gone."""
    state, _, cpu = _stat(pid, -1, reaped=True)
    return state not in (b"", b"Z", b"X"), cpu


def _stat(pid: int, stat: int, reaped: bool) -> tuple[bytes, int, float]:
    """Its state, threads and CPU time (ms; with ``reaped``, its waited-for children's too)
    from one read of /proc/<pid>/stat (``stat``: an open descriptor of it, or -1); empty
    figures when it is gone."""
    try:
        text = os.pread(stat, 4096, 0) if stat >= 0 else read_proc(f"/proc/{pid}/stat")
        fields = text.rsplit(b")", 1)[1].split()
        ticks = sum(int(f) for f in fields[11 : 15 if reaped else 13])
        return fields[0], int(fields[17]), ticks * 1000.0 / CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return b"", 0, 0.0


# glibc's struct sigaction (x86_64 and aarch64 alike): the handler, a 1024-bit mask, the flags
_SIGACTION_SIZE, _SA_FLAGS_AT, _SA_NOCLDSTOP = 152, 8 + 128, 1


def hear_child_stops(on: bool) -> bool:
    """Whether SIGCHLD comes when a child stops or continues (``SA_NOCLDSTOP`` cleared), as
    well as when it exits: the handler Python installed stays, only that flag changes. A
    tracer must hear its tracees' stops; a process that stops its children itself need not.
    False when it could not be changed (the signal's handling is left as it was)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        action = ctypes.create_string_buffer(_SIGACTION_SIZE)
        if libc.sigaction(signal.SIGCHLD, None, action) != 0:
            return False
        flags = int.from_bytes(action.raw[_SA_FLAGS_AT : _SA_FLAGS_AT + 4], "little")
        flags = flags & ~_SA_NOCLDSTOP if on else flags | _SA_NOCLDSTOP
        ctypes.memmove(ctypes.addressof(action) + _SA_FLAGS_AT, flags.to_bytes(4, "little"), 4)
        return libc.sigaction(signal.SIGCHLD, action, None) == 0
    except (OSError, AttributeError):
        return False
