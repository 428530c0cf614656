"""Isolation of a sandbox's processes, done inside the sandbox (never in the service).

The launcher (``launch.py``) runs as PID 1 of fresh pid, mount, net, ipc and uts namespaces
(made by ``unshare``) and builds a minimal root there: read-only bind mounts of the system
directories, the sandbox's Python runtime at ``/opt/toolfleet/runtime``, this package at
``/opt/toolfleet/lib``, a private ``/proc``, ``/dev`` with a few device nodes, an empty
read-only ``/tmp``, ``/dev/shm`` and ``/mnt``, and ``/box``. Each family then gets
namespaces of its own (IPC: SysV and POSIX queues; net: abstract Unix sockets; mount: its own
``/box`` tmpfs with ``/tmp``, ``/dev/shm`` and ``/mnt`` inside it, see ``Namespaces``), and
each process that runs model code enters them and drops to the family's uid with resource
limits and a seccomp filter.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import os
import resource
from dataclasses import dataclass
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2
MNT_DETACH = 2
CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000

BOX_ROOT = "/box"
RUNTIME = "/opt/toolfleet/runtime"  # the sandbox's Python runtime, in the jail
LIB = "/opt/toolfleet/lib"  # where this package is, in the jail
DEVICES = ("null", "zero", "full", "random", "urandom")
SYSTEM_PATHS = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc"]
# A family's private directories, inside its /box tmpfs (one size limit for all of them)
FAMILY_DIRS = {"/tmp": ".tmp", "/dev/shm": ".shm", "/mnt": ".mnt"}


@dataclass
class Limits:
    """Per-family and per-process limits (bytes, seconds, counts)."""

    memory_bytes: int = 512 * 1024 * 1024  # address space of one process, over the template
    disk_bytes: int = 256 * 1024 * 1024  # the family's tmpfs: workspaces, /tmp, /dev/shm, /mnt
    file_bytes: int = 64 * 1024 * 1024
    processes: int = 64
    open_files: int = 256
    cpu_seconds: int = 3600
    family_memory_bytes: int = 0  # the family's cgroup (RAM incl. its tmpfs); 0: none


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    """mount(2); raises OSError."""
    rc = _libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def umount(target: str) -> None:
    """umount2(2) with MNT_DETACH; missing mounts are ignored."""
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {target}: {os.strerror(err)}")


def prctl(option: int, value: int) -> None:
    """prctl(2) with one argument."""
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


PTRACE_TRACEME = 0
PTRACE_CONT = 7
PTRACE_SETOPTIONS = 0x4200
PTRACE_SEIZE = 0x4206
PTRACE_GETEVENTMSG = 0x4201
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_TRACEEXIT = 0x40
PTRACE_O_EXITKILL = 0x100000
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_EXIT = 6
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long


def ptrace(request: int, pid: int, data: int = 0) -> None:
    """ptrace(2) with an integer ``data``; raises OSError."""
    if _libc.ptrace(request, pid, None, ctypes.c_void_p(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"ptrace: {os.strerror(err)}")


def ptrace_event_message(pid: int) -> int:
    """PTRACE_GETEVENTMSG: at an exit event, the wait status the process is exiting with."""
    value = ctypes.c_ulong()
    if _libc.ptrace(PTRACE_GETEVENTMSG, pid, None, ctypes.addressof(value)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"ptrace: {os.strerror(err)}")
    return value.value


SYS_CLOSE_RANGE = 436  # one number on every architecture (Linux 5.9)


def close_all_but(keep: tuple[int, ...] = ()) -> None:
    """Close every descriptor from 3 up but ``keep``: with close_range(2) where the kernel
    has it, else those /proc/self/fd lists. Not ``os.closerange``: without close_range it
    closes each of 65,536 numbers, and under gVisor (which has none) each is a trap, ~2.5 s
    of CPU for every program and case started."""
    low, ranges = 3, []
    for fd in sorted(k for k in keep if k >= 3):
        if fd > low:
            ranges.append((low, fd - 1))
        low = fd + 1
    ranges.append((low, 0xFFFFFFFF))
    closed = [_libc.syscall(SYS_CLOSE_RANGE, ctypes.c_uint(a), ctypes.c_uint(b), ctypes.c_uint(0))
              for a, b in ranges]  # fmt: skip
    if not any(closed):
        return
    try:
        listed = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: one number at a time
        listed = list(range(3, 1 << 16))
    for fd in listed:
        if fd >= 3 and fd not in keep:
            with contextlib.suppress(OSError):  # the listing's own descriptor, gone
                os.close(fd)


def unshare(flags: int) -> None:
    """unshare(2); raises OSError."""
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")


def bind_readonly(path: str, root: str, target: str | None = None) -> None:
    """Make ``path`` visible, read-only, under ``root`` at ``target`` (default: its own path)."""
    where = root + (target or path)
    if os.path.islink(path) and target is None:
        if not os.path.lexists(where):
            os.makedirs(os.path.dirname(where), exist_ok=True)
            os.symlink(os.readlink(path), where)
        return
    if os.path.isdir(path):
        os.makedirs(where, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(where), exist_ok=True)
        Path(where).touch()
    mount(path, where, None, MS_BIND | MS_REC, None)
    mount("none", where, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)


def build_root(
    root: str,
    system: list[str],
    binds: dict[str, str],
    hide: list[str] = (),
) -> None:
    """Build the jail's root under ``root`` and chroot into it (as root in the namespaces).

    ``system`` are directories shown read-only at their own path; ``binds`` maps jail paths
    to the host directories shown there (the runtime, this package); ``hide`` are files or
    directories under them to cover (the service's config file).
    """
    mount("none", "/", None, MS_REC | MS_PRIVATE, None)
    os.makedirs(root, exist_ok=True)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m")
    # /tmp first: exposed paths may lie under it (a checkout in /tmp); it turns read-only after
    os.makedirs(root + "/tmp", exist_ok=True)
    mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    for path in sorted(set(system), key=len):
        # a path under an earlier one is visible already
        if os.path.lexists(path) and not os.path.lexists(root + path):
            bind_readonly(path, root)
    for target, source in sorted(binds.items()):
        bind_readonly(source, root, target)
    for path in hide:
        target = root + os.path.realpath(path)
        if os.path.isdir(target):
            mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k")
        elif os.path.exists(target):
            mount("/dev/null", target, None, MS_BIND, None)
    os.makedirs(root + "/proc", exist_ok=True)
    # hidepid=2: a process sees only its own uid's processes (its family's)
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
    os.makedirs(root + "/dev", exist_ok=True)
    mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for name in DEVICES:
        Path(root + "/dev/" + name).touch()
        mount("/dev/" + name, root + "/dev/" + name, None, MS_BIND, None)
    for link, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{root}/dev/{link}")
    # Empty and read-only outside a family: each family mounts its own over them.
    os.makedirs(root + "/dev/shm")
    os.makedirs(root + "/mnt")
    os.chmod(root + "/dev", 0o755)
    mount("none", root + "/dev", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, None)
    mount("none", root + "/tmp", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
    os.makedirs(root + BOX_ROOT, exist_ok=True)
    mount("tmpfs", root + BOX_ROOT, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0711,size=1m")
    mount("none", root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
    os.chroot(root)
    os.chdir("/")


_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2); raises OSError."""
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@dataclass
class FamilyRoot:
    """Where a family's files are, and the namespaces a process enters to be in the family
    (none where the family has the sandbox to itself, as in a container).

    ``places`` maps each writable place of the family's view (its root, and its own ``/tmp``
    and ``/mnt`` where it has them) to an open directory and a path under it, so that the
    supervisor reaches them without entering the family."""

    box: int  # descriptor of the family's root directory
    view: str  # its path as the family's processes see it
    namespaces: dict[str, int]  # "ipc", "net", "mnt" -> descriptor, or empty
    places: dict[str, tuple[int, str]]  # view path -> (directory descriptor, path under it)
    workspaces: int = 0  # the number of the last working directory made (``new_workspace``)

    def close(self) -> None:
        """Let go of the family's namespaces and files (they end with their last user)."""
        fds = {self.box, *self.namespaces.values(), *(fd for fd, _ in self.places.values())}
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.namespaces, self.places = {}, {}

    def where(self, path: str) -> tuple[int, str] | None:
        """A path of the family's view as (directory descriptor, relative path); None
        outside the family's writable places."""
        norm = os.path.normpath(path)
        for prefix, (fd, under) in sorted(self.places.items(), key=lambda p: -len(p[0])):
            if norm == prefix or norm.startswith(prefix.rstrip("/") + "/"):
                rest = norm[len(prefix.rstrip("/")) + 1 :]
                return fd, "/".join(p for p in (under, rest) if p)
        return None


class Namespaces:
    """Makes and enters the families' namespaces, from the zygote (root in the sandbox).

    A family's namespaces are made by the zygote itself, without a process of their own: it
    unshares IPC, net and mount namespaces, mounts the family's ``/box`` tmpfs there (with its
    ``/tmp``, ``/dev/shm`` and ``/mnt`` inside), keeps descriptors of the new namespaces and
    of ``/box``, and returns to its own namespaces and jail. The descriptors keep the
    namespaces and files alive until the family ends; every process of the family enters them
    (``enter``) before it drops its privileges.

    Network namespaces are recycled: making one and tearing it down costs about a
    millisecond of CPU (a third of what the zygote spends on a stateless call), where IPC and
    mount namespaces cost a tenth of that. An ended family's network namespace waits in a
    queue (``release``) behind up to ``SPARE_NETS`` others — by then every process of that
    family was killed long ago — and is given to a new family only if no socket is left in it
    (``/proc/net/unix`` read from inside). Nothing else of a family can stay in one: its
    processes cannot create IP, packet or netlink sockets (seccomp) or change the namespace
    (no capability), so an empty one is as new. A namespace with a socket left is dropped."""

    KINDS = (("ipc", CLONE_NEWIPC), ("net", CLONE_NEWNET), ("mnt", CLONE_NEWNS))
    SPARE_NETS = 32

    def __init__(self, jail_root: str) -> None:
        self.jail_root = jail_root  # the jail's root in the zygote's mount namespace
        self.home = {
            name: os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
            for name, _ in self.KINDS
        }
        self.spare_nets: collections.deque[int] = collections.deque()

    def create(self, uid: int, disk_bytes: int) -> FamilyRoot:
        """A family's namespaces and root (as root in the jail)."""
        net = self._spare_net()
        unshare(CLONE_NEWIPC | CLONE_NEWNS | (CLONE_NEWNET if net < 0 else 0))
        try:
            if net >= 0:
                setns(net, CLONE_NEWNET)
            mount("none", "/", None, MS_REC | MS_PRIVATE, None)
            mount(
                "tmpfs",
                BOX_ROOT,
                "tmpfs",
                MS_NOSUID | MS_NODEV,
                f"mode=0755,uid={uid},gid={uid},size={disk_bytes}",
            )
            for target, name in FAMILY_DIRS.items():
                path = f"{BOX_ROOT}/{name}"
                os.mkdir(path)
                os.chown(path, uid, uid)
                os.chmod(path, 0o1777)
                mount(path, target, None, MS_BIND, None)
            found = {
                name: os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
                for name, _ in self.KINDS
                if name != "net" or net < 0
            } | ({"net": net} if net >= 0 else {})
            box = os.open(BOX_ROOT, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except BaseException:
            if net >= 0:
                os.close(net)
            raise
        finally:
            self._home()
        places = {BOX_ROOT: (box, "")} | {t: (box, n) for t, n in FAMILY_DIRS.items()}
        return FamilyRoot(box, BOX_ROOT, found, places)

    def release(self, family: FamilyRoot) -> None:
        """An ended family's network namespace, queued for reuse (once every process of the
        family has been killed); the caller closes the rest."""
        net = family.namespaces.pop("net", -1)
        if net < 0:
            return
        self.spare_nets.append(net)
        while len(self.spare_nets) > self.SPARE_NETS:
            os.close(self.spare_nets.popleft())

    def _spare_net(self) -> int:
        """The oldest queued network namespace with no socket left in it, or -1. Only once
        the queue is full: the newest stay queued while their families' killed processes
        finish exiting."""
        while len(self.spare_nets) >= self.SPARE_NETS:
            net = self.spare_nets.popleft()
            try:
                setns(net, CLONE_NEWNET)
                with open("/proc/thread-self/net/unix", "rb") as table:
                    empty = len(table.read().splitlines()) <= 1  # the header only
            except OSError:
                empty = False
            finally:
                setns(self.home["net"], CLONE_NEWNET)
            if empty:
                return net
            os.close(net)
        return -1

    def _home(self) -> None:
        for name, kind in self.KINDS:
            setns(self.home[name], kind)
        os.chroot(self.jail_root)  # entering a mount namespace leaves the jail: back in
        os.chdir("/")

    def enter(self, namespaces: dict[str, int]) -> None:
        """In a new process of the family: its namespaces (descriptors by kind), in the
        jail."""
        for name, kind in self.KINDS:
            setns(namespaces[name], kind)
        os.chroot(self.jail_root)
        os.chdir("/")


def family_directory(box_root: str, fid: int, uid: int, private_tmp: bool) -> FamilyRoot:
    """A family's root where it cannot have namespaces of its own (a container, or no
    privileges): a directory owned by its uid. ``private_tmp``: the sandbox's /tmp and /mnt
    are the family's alone (a container per family)."""
    path = f"{box_root}/f{fid}"
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o700)
    if os.getuid() == 0:
        os.chown(path, uid, uid)
    box = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    places = {path: (box, "")}
    for shared in ("/tmp", "/mnt") if private_tmp else ():
        if os.path.isdir(shared):
            places[shared] = (os.open(shared, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), "")
    return FamilyRoot(box, path, {}, places)


def new_workspace(family: FamilyRoot, owner: int) -> str:
    """A new, empty working directory ``w<n>`` (mode 0700) in a family's root; its path in
    the family's view. Numbered on from the last one (a judge makes one per case: looking
    from ``w1`` up each time cost its 100th case 99 failed ``mkdir``s)."""
    n = family.workspaces
    while True:
        n += 1
        name = f"w{n}"
        try:
            os.mkdir(name, 0o700, dir_fd=family.box)
        except FileExistsError:
            continue
        family.workspaces = n
        if os.getuid() == 0:
            os.chown(name, owner, owner, dir_fd=family.box, follow_symlinks=False)
        return f"{family.view.rstrip('/')}/{name}"


def drop_privileges(uid: int, limits: Limits, base_vm_bytes: int, uid_limits: bool) -> None:
    """In a process about to run model code: resource limits, then the family's uid, then no
    new privileges. ``uid_limits``: also cap processes per uid (where the uid is the
    family's own; in a container sharing one uid, the container's pids limit does it)."""
    # The address space already holds the template's preloaded libraries; the memory limit
    # is counted on top of them.
    for kind, value in (
        (resource.RLIMIT_AS, base_vm_bytes + limits.memory_bytes),
        (resource.RLIMIT_FSIZE, limits.file_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_CPU, limits.cpu_seconds),
    ):
        resource.setrlimit(kind, (value, value))
    if os.getuid() == 0 and uid != 0:
        if uid_limits:
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def subreaper() -> bool:
    """This process becomes the subreaper of its tree: the orphans of its descendants come
    back to it. Not where it cannot be (gVisor has subreapers for its init alone: EINVAL,
    False); there they come back to the supervisor (``Supervisor._orphan_ended``)."""
    try:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        return False
    return True


def subreapers_below_init() -> bool:
    """Whether a process that is not its namespace's init can be a subreaper (gVisor: no),
    asked of a forked child."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if subreaper() else 1)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_seccomp(program: bytes) -> None:
    """Install a BPF program (compiled by the service) on this process (needs no_new_privs
    first)."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")


MADV_HUGEPAGE = 14
MADV_COLLAPSE = 25
HUGE_PAGE = 2 << 20


def collapse_huge_pages() -> int:
    """Back the template's anonymous memory with 2 MiB pages where the kernel can (best
    effort, MADV_COLLAPSE needs Linux 6.1+): fork(2) then copies one page-table entry per
    2 MiB instead of 512. Returns the bytes collapsed."""
    _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    collapsed = 0
    with open("/proc/self/maps") as maps:
        regions = [line.split() for line in maps]
    for fields in regions:
        path = fields[5] if len(fields) > 5 else ""
        if "rw" not in fields[1] or (path and path != "[heap]"):
            continue
        low, high = (int(x, 16) for x in fields[0].split("-"))
        low = (low + HUGE_PAGE - 1) // HUGE_PAGE * HUGE_PAGE
        high = high // HUGE_PAGE * HUGE_PAGE
        if high <= low:
            continue
        _libc.madvise(low, high - low, MADV_HUGEPAGE)
        if _libc.madvise(low, high - low, MADV_COLLAPSE) == 0:
            collapsed += high - low
    return collapsed


def set_oom_score(value: int) -> None:
    """Tell the OOM killer how to rank this process (1000: first; -1000: never)."""
    try:
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
        try:
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)
    except OSError:
        pass  # lowering needs CAP_SYS_RESOURCE, which root may lack: the others rank above


def ns_words(ns_fds: list[int], jail_root: str | None) -> list[str]:
    """libconfine's words that enter a family's namespaces (descriptors in
    ``Namespaces.KINDS`` order, none where it has none), then the jail."""
    if not ns_fds or jail_root is None:
        return []
    kinds = [kind for _, kind in Namespaces.KINDS]
    words = [f"ns={fd}:{kind}" for fd, kind in zip(ns_fds, kinds, strict=True)]
    return [*words, f"root={jail_root}"]


def vm_size() -> int:
    """This process's virtual memory size in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0
