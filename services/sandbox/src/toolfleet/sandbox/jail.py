"""Isolation of kernels, run inside the sandbox by the zygote (never in the service).

The zygote runs as PID 1 of fresh pid, mount, net, ipc and uts namespaces (made by
``unshare``). There it builds a minimal root: read-only bind mounts of the system and Python
directories, a private /proc, /dev with a few device nodes, an empty /tmp, and /box, under
which each family of kernels (a session and its forks) gets a size-limited tmpfs owned by a
uid of its own. Each kernel then drops to that uid and gets resource limits, a cgroup where
one is writable, and a seccomp filter.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import shutil
import sys
import tempfile
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
PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
MNT_DETACH = 2

BOX_ROOT = "/box"
DEVICES = ("null", "zero", "full", "random", "urandom")


@dataclass
class Limits:
    """Per-family and per-kernel limits (bytes, seconds, counts)."""

    memory_bytes: int = 512 * 1024 * 1024
    disk_bytes: int = 256 * 1024 * 1024
    file_bytes: int = 64 * 1024 * 1024
    processes: int = 64
    open_files: int = 256
    cpu_seconds: int = 3600


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


def bind_readonly(path: str, root: str) -> None:
    """Make ``path`` visible, read-only, at the same place under ``root``."""
    target = root + path
    if os.path.islink(path):
        if not os.path.lexists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(os.readlink(path), target)
        return
    if os.path.isdir(path):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        Path(target).touch()
    mount(path, target, None, MS_BIND | MS_REC, None)
    mount("none", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)


def build_root(
    root: str, paths: list[str], hide: list[str] = (), tmp_bytes: int = 16 * 1024 * 1024
) -> None:
    """Build the kernels' root under ``root`` and chroot into it (as root in the namespaces).

    ``paths`` are the directories to expose read-only (system and Python directories);
    ``hide`` are files or directories under them to cover (the service's config file).
    """
    mount("none", "/", None, MS_REC | MS_PRIVATE, None)
    os.makedirs(root, exist_ok=True)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m")
    # /tmp first: exposed paths may lie under it (a checkout in /tmp); it turns read-only after
    os.makedirs(root + "/tmp", exist_ok=True)
    mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    for path in sorted(set(paths), key=len):
        # a path under an earlier one is visible already
        if os.path.lexists(path) and not os.path.lexists(root + path):
            bind_readonly(path, root)
    for path in hide:
        target = root + os.path.realpath(path)
        if os.path.isdir(target):
            mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k")
        elif os.path.exists(target):
            mount("/dev/null", target, None, MS_BIND, None)
    os.makedirs(root + "/proc", exist_ok=True)
    # hidepid=2: a kernel sees only its own family's processes
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
    os.makedirs(root + "/dev/shm")
    mount("tmpfs", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={tmp_bytes}")
    # /tmp is not shared between families: it is not writable; TMPDIR points at the workspace.
    mount("none", root + "/tmp", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
    os.makedirs(root + BOX_ROOT, exist_ok=True)
    mount("tmpfs", root + BOX_ROOT, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0711,size=1m")
    os.chroot(root)
    os.chdir("/")


def family_dir(fid: int, box_root: str = BOX_ROOT) -> str:
    """The directory a family of kernels shares (its sessions' workspaces live inside)."""
    return f"{box_root}/{fid}"


def make_family(
    fid: int, uid: int, limits: Limits, own_mounts: bool, box_root: str = BOX_ROOT
) -> str:
    """Create the family's directory, owned by ``uid``, mode 0700: a tmpfs of ``disk_bytes``
    when we may mount (in the jail), a plain directory otherwise."""
    path = family_dir(fid, box_root)
    os.makedirs(path, exist_ok=True)
    if own_mounts:
        mount(
            "tmpfs",
            path,
            "tmpfs",
            MS_NOSUID | MS_NODEV,
            f"mode=0700,uid={uid},gid={uid},size={limits.disk_bytes}",
        )
    else:
        os.chmod(path, 0o700)
        os.chown(path, uid, uid)
    return path


def new_workspace(family: str, owner: int | None = None) -> str:
    """A new, empty working directory ``w<n>`` (mode 0700) in a family's directory."""
    n = 1
    while True:
        path = os.path.join(family, f"w{n}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            n += 1
            continue
        if owner is not None:
            os.chown(path, owner, owner)
        return path


def remove_family(fid: int, own_mounts: bool, box_root: str = BOX_ROOT) -> None:
    """Delete the family's files (its processes are killed by the caller)."""
    path = family_dir(fid, box_root)
    if own_mounts:
        umount(path)
    shutil.rmtree(path, ignore_errors=True)


def drop_privileges(uid: int, limits: Limits, base_rss_bytes: int) -> None:
    """In a new kernel: resource limits, then the family's uid, then no new privileges."""
    # The address space already holds the zygote's preloaded libraries; the memory limit is
    # counted on top of them.
    address_space = base_rss_bytes + limits.memory_bytes
    for kind, value in (
        (resource.RLIMIT_AS, address_space),
        (resource.RLIMIT_FSIZE, limits.file_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_CPU, limits.cpu_seconds),
    ):
        resource.setrlimit(kind, (value, value))
    if os.getuid() == 0 and uid != 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def compile_seccomp() -> bytes | None:
    """The kernels' seccomp filter as a BPF program, built once in the zygote. It refuses the
    system calls a kernel never needs (EPERM), and IP, packet and netlink sockets
    (EAFNOSUPPORT). None when libseccomp is not available."""
    try:
        import pyseccomp as sc
    except (ImportError, OSError):
        return None
    flt = sc.SyscallFilter(defaction=sc.ALLOW)
    for name in (
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "unshare",
        "setns",
        "keyctl",
        "add_key",
        "request_key",
        "bpf",
        "perf_event_open",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "reboot",
        "swapon",
        "swapoff",
        "acct",
        "userfaultfd",
        "syslog",
        "open_by_handle_at",
        "name_to_handle_at",
        "quotactl",
        "fanotify_init",
        "settimeofday",
        "clock_settime",
        "adjtimex",
        "sethostname",
        "setdomainname",
        "lookup_dcookie",
        "vhangup",
        "iopl",
        "ioperm",
    ):
        try:
            flt.add_rule(sc.ERRNO(errno.EPERM), name)
        except (RuntimeError, ValueError, OSError):
            continue  # not a syscall on this architecture
    for family in (2, 10, 17, 16):  # AF_INET, AF_INET6, AF_PACKET, AF_NETLINK
        flt.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), "socket", sc.Arg(0, sc.EQ, family))
    with tempfile.TemporaryFile() as f:
        flt.export_bpf(f)
        f.seek(0)
        return f.read()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_seccomp(program: bytes) -> None:
    """Install a BPF program from :func:`compile_seccomp` (needs no_new_privs first)."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")


MADV_HUGEPAGE = 14
MADV_COLLAPSE = 25
HUGE_PAGE = 2 << 20


def collapse_huge_pages() -> int:
    """Back the zygote's anonymous memory with 2 MiB pages where the kernel can (best effort,
    MADV_COLLAPSE needs Linux 6.1+): fork(2) then copies one page-table entry per 2 MiB
    instead of 512. Returns the bytes collapsed."""
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


def python_paths() -> list[str]:
    """Directories the kernels' Python needs: its prefixes and every import path."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable)}
    paths.update(p for p in sys.path if p and os.path.isdir(p))
    real = {os.path.realpath(sys.executable)}
    paths.update(os.path.dirname(p) for p in real)
    return sorted(p for p in paths if p != "/")


SYSTEM_PATHS = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc"]
