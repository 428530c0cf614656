"""Control groups of a sandbox instance and of its families (cgroup v1 or v2).

The service makes one cgroup per instance (``prepare_instance``: a ceiling on the memory of
every family together) and hands the launcher its directories; the launcher keeps them open
across the chroot, so the zygote and the family supervisors reach them by descriptor. Each
family gets a child cgroup (``f<fid>``): memory — which counts its tmpfs pages, so files in
``/box``, ``/tmp`` and ``/dev/shm`` are bounded like RAM —, processes and an equal CPU weight.
A cgroup also lists every process of the family wherever it was reparented, which is how the
zygote makes sure none is left before the family's uid is given out again.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import time

ROOT = "/sys/fs/cgroup"
ZYGOTES = "zygotes"
V1_CONTROLLERS = ("memory", "pids", "cpu")
V2_CONTROLLERS = ("memory", "pids", "cpu")


def detect() -> str | None:
    """ "v1", "v2", or None when this process cannot manage cgroups (not root, read-only)."""
    if os.geteuid() != 0:
        return None
    mounts = _mounts()
    if all(c in mounts.get("cgroup", {}) for c in V1_CONTROLLERS):
        ok = all(os.access(mounts["cgroup"][c], os.W_OK) for c in V1_CONTROLLERS)
        return "v1" if ok else None
    unified = mounts.get("cgroup2", {}).get("", "")
    if unified and os.access(unified, os.W_OK):
        with contextlib.suppress(OSError), open(f"{unified}/cgroup.controllers") as f:
            if set(V2_CONTROLLERS) <= set(f.read().split()):
                return "v2"
    return None


def _mounts() -> dict[str, dict[str, str]]:
    """cgroup mount points: {"cgroup": {controller: path}, "cgroup2": {"": path}}."""
    found: dict[str, dict[str, str]] = {"cgroup": {}, "cgroup2": {}}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _, options = [*right.split(), "", "", ""][:3]
            point = left.split()[4]
            if fstype == "cgroup2":
                found["cgroup2"].setdefault("", point)
            elif fstype == "cgroup":
                for option in options.split(","):
                    if option in V1_CONTROLLERS:
                        found["cgroup"].setdefault(option, point)
    return found


def _own_path(controller: str) -> str:
    """This process's cgroup in a v1 controller's hierarchy ("" for v2's)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            if controller in names.split(",") or (controller == "" and names == ""):
                return path.rstrip("/")
    return ""


def prepare_instance(name: str, total_memory_bytes: int) -> tuple[str, dict[str, str]] | None:
    """Make (or reclaim) the instance's cgroup ``name`` with its memory ceiling; returns the
    version and its directories per controller, or None when cgroups are not usable here.
    v1: under this process's own cgroup of each controller (the host's limits on the service
    still hold); v2: under the root (a cgroup with processes may not have controlled
    children)."""
    version = detect()
    if version is None:
        return None
    mounts = _mounts()
    try:
        if version == "v1":
            dirs = {c: f"{mounts['cgroup'][c]}{_own_path(c)}/{name}" for c in V1_CONTROLLERS}
        else:
            root = mounts["cgroup2"][""]
            _enable_v2(root)
            dirs = {"": f"{root}/{name}"}
            os.makedirs(dirs[""], exist_ok=True)
            _enable_v2(dirs[""])
        for path in dirs.values():
            if os.path.isdir(path):
                clear(path)
            os.makedirs(path, exist_ok=True)
        memory = dirs.get("memory", dirs.get(""))
        limit_file = "memory.limit_in_bytes" if version == "v1" else "memory.max"
        _write(f"{memory}/{limit_file}", str(total_memory_bytes))
        for path in dirs.values():  # a leaf for the zygotes (v2 allows no process above)
            os.makedirs(f"{path}/{ZYGOTES}", exist_ok=True)
    except OSError:
        return None
    return version, dirs


def join_zygotes(fds: dict[str, int]) -> None:
    """Move this process (a zygote being launched) into the instance's zygote leaf: all it
    forks is then under the instance's ceiling without a move of its own."""
    for fd in fds.values():
        _write(f"{ZYGOTES}/cgroup.procs", str(os.getpid()), fd)


def _enable_v2(path: str) -> None:
    with open(f"{path}/cgroup.subtree_control", "w") as f:
        f.write(" ".join(f"+{c}" for c in V2_CONTROLLERS))


def remove_instance(dirs: dict[str, str]) -> None:
    """Kill whatever is left in the instance's cgroups and remove them."""
    for path in dirs.values():
        with contextlib.suppress(OSError):
            clear(path)
            os.rmdir(path)


def clear(path: str, within_s: float = 5.0) -> None:
    """Kill every process in the cgroup at ``path`` and its children, then remove those."""
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False):
            clear(entry.path, within_s)
            _rmdir_when_empty(entry.path, within_s)


def _rmdir_when_empty(path: str, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while True:
        for pid in _read_pids(f"{path}/cgroup.procs"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        try:
            os.rmdir(path)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _read_pids(path: str, dir_fd: int | None = None) -> list[int]:
    try:
        fd = os.open(path, os.O_RDONLY, dir_fd=dir_fd)
    except FileNotFoundError:
        return []
    try:
        return [int(p) for p in os.read(fd, 1 << 20).split()]
    finally:
        os.close(fd)


def _write(path: str, value: str, dir_fd: int | None = None) -> None:
    fd = os.open(path, os.O_WRONLY, dir_fd=dir_fd)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


class FamilyCgroups:
    """The families' cgroups of one instance, reached through directory descriptors that
    stay valid after the chroot. ``fds`` maps controller (v1) or "" (v2) to a descriptor.

    A family's cgroups are directories that outlive it: once every process of an ended
    family is gone, its directories wait (up to ``SPARE``, oldest first) for a new family,
    which saves their making and removal (a third of a millisecond of CPU, and the
    kernel's deferred work of taking a memory cgroup down). A reused one is empty — no
    process is let into another family's — and its OOM count is taken as the new start."""

    SPARE = 64

    def __init__(self, version: str, fds: dict[str, int]) -> None:
        self.version = version
        self.fds = fds
        self.names: dict[int, str] = {}  # family id -> its directories' name
        self.spare: collections.deque[str] = collections.deque()
        self._limits: dict[str, tuple[int, int]] = {}  # name -> the limits written there

    @classmethod
    def from_arg(cls, arg: str) -> FamilyCgroups:
        """From ``v1:memory=5,pids=6,cpu=7`` or ``v2:=5`` (the launcher's argument)."""
        version, _, pairs = arg.partition(":")
        fds = {}
        for pair in pairs.split(","):
            name, _, fd = pair.partition("=")
            fds[name] = int(fd)
        return cls(version, fds)

    def create(self, fid: int, memory_bytes: int, processes: int) -> bool:
        """The family's cgroups with their limits; True when they were an ended family's."""
        reused = bool(self.spare)
        name = self.spare.popleft() if reused else f"f{fid}"
        if not reused:
            for fd in self.fds.values():
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_fd=fd)
        self.names[fid] = name
        if self._limits.get(name) == (memory_bytes, processes):
            return reused
        if self.version == "v1":
            if memory_bytes:
                _write(f"{name}/memory.limit_in_bytes", str(memory_bytes), self.fds["memory"])
            _write(f"{name}/pids.max", str(processes), self.fds["pids"])
        else:
            fd = self.fds[""]
            if memory_bytes:
                _write(f"{name}/memory.max", str(memory_bytes), fd)
                with contextlib.suppress(OSError):
                    _write(f"{name}/memory.swap.max", "0", fd)
            _write(f"{name}/pids.max", str(processes), fd)
        self._limits[name] = (memory_bytes, processes)
        return reused

    def name(self, fid: int) -> str:
        """The family's directories' name (under each hierarchy's instance directory)."""
        return self.names[fid]

    def join(self, name: str, pid: int) -> None:
        """Move ``pid`` (and the children it forks from now on) into the cgroups ``name``
        (a family's, passed to its new process: a forked copy of this object is stale)."""
        for fd in self.fds.values():
            _write(f"{name}/cgroup.procs", str(pid), fd)

    def tasks_file(self, fid: int) -> int:
        """An open descriptor of the family's task count (``pids.current``: threads
        included), to ``pread`` cheaply after every call."""
        fd = self.fds.get("pids", self.fds.get(""))
        return os.open(f"{self.names[fid]}/pids.current", os.O_RDONLY | os.O_CLOEXEC, dir_fd=fd)

    def procs(self, fid: int) -> list[int]:
        """Every process of the family."""
        fd = self.fds.get("pids", self.fds.get(""))
        name = self.names.get(fid)
        return [] if name is None else _read_pids(f"{name}/cgroup.procs", fd)

    def oom_kills(self, fid: int) -> int:
        """How many processes the OOM killer has killed in the family's cgroup so far."""
        fd = self.fds.get("memory", self.fds.get(""))
        name = "memory.oom_control" if self.version == "v1" else "memory.events"
        try:
            handle = os.open(f"{self.names[fid]}/{name}", os.O_RDONLY, dir_fd=fd)
        except (OSError, KeyError):
            return 0
        try:
            text = os.read(handle, 4096).decode()
        finally:
            os.close(handle)
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self, fid: int, within_s: float = 5.0) -> bool:
        """Kill every process of the family and let go of its cgroups (kept for a new family,
        else removed); False when some are still there after ``within_s`` (0: one
        attempt) — processes still exiting."""
        name = self.names.get(fid)
        if name is None:
            return True
        keep = len(self.spare) < self.SPARE
        deadline = time.monotonic() + within_s
        while not self._let_go(name, keep):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        del self.names[fid]
        if keep:
            self.spare.append(name)
        else:
            self._limits.pop(name, None)
        return True

    def _let_go(self, name: str, keep: bool) -> bool:
        """One attempt: kill what is left in the cgroups ``name``; True once they are empty
        in every hierarchy (to be kept) or removed from each."""
        done = True
        for fd in self.fds.values():
            pids = _read_pids(f"{name}/cgroup.procs", fd)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if keep:
                done = done and not pids
                continue
            try:
                os.rmdir(name, dir_fd=fd)
            except FileNotFoundError:
                pass
            except OSError:
                done = False
        return done
