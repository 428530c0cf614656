"""The seccomp filter of every process that runs model code, compiled by the service.

libseccomp (``pyseccomp``) is a dependency of the service, not of the sandbox's runtime: the
service compiles the filter to a BPF program once and sends it to each zygote, which installs
it in every process it confines (``toolfleet.box.jail.load_seccomp``).
"""

from __future__ import annotations

import errno
import tempfile

REFUSED = (
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
)
SOCKET_FAMILIES = (2, 10, 17, 16)  # AF_INET, AF_INET6, AF_PACKET, AF_NETLINK
# A child made with CLONE_PARENT is its parent's sibling: out of the tree below the process
# that made it, which is where the supervisor looks for what a program leaves behind (a
# judge's case, whose parent is its case server, would leave a process no sweep finds).
# clone3's flags are in memory a filter cannot read: it answers ENOSYS, and the C library
# falls back to clone (as Docker's default profile has it).
CLONE_PARENT = 0x00008000
# A program is the subreaper of its tree (``children.enter``): the orphans of its children stay
# below it, where the sweep at its exit finds them and charges it with their CPU time. No
# process may stop being one (which would send those orphans out of the tree).
PR_SET_CHILD_SUBREAPER = 36


def compile_filter(sockets: bool = True) -> bytes | None:
    """The filter as a BPF program: the system calls a sandboxed process never needs fail
    with EPERM (and ``clone`` with CLONE_PARENT; ``clone3`` with ENOSYS), IP, packet and
    netlink sockets with EAFNOSUPPORT (``sockets=False``: those are left alone, for a
    program given a relayed loopback port). None when libseccomp is not available."""
    try:
        import pyseccomp as sc
    except (ImportError, OSError):
        return None
    flt = sc.SyscallFilter(defaction=sc.ALLOW)
    for name in REFUSED:
        try:
            flt.add_rule(sc.ERRNO(errno.EPERM), name)
        except (RuntimeError, ValueError, OSError):
            continue  # not a syscall on this architecture
    flt.add_rule(
        sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_PARENT, CLONE_PARENT)
    )
    flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    flt.add_rule(
        sc.ERRNO(errno.EPERM), "prctl",
        sc.Arg(0, sc.EQ, PR_SET_CHILD_SUBREAPER), sc.Arg(1, sc.EQ, 0),
    )  # fmt: skip
    for family in SOCKET_FAMILIES if sockets else ():
        flt.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), "socket", sc.Arg(0, sc.EQ, family))
    with tempfile.TemporaryFile() as f:
        flt.export_bpf(f)
        f.seek(0)
        return f.read()
