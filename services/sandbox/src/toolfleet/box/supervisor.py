"""The supervisor: the trusted side of every call that runs model code.

It runs in the zygote (root in the sandbox, outside every limit it enforces) and serves the
zygote's control channel and one channel per family (a session and its forks), multiplexed
by request id. A family is a uid, a cgroup, namespaces of its own and a ``/box`` tmpfs — made
by the supervisor itself, without a process (``jail.Namespaces``) — and the processes that
run in it: its kernels, and the bash commands and programs of its calls. Every one of them
is the supervisor's child (or, orphaned, comes back to it: it is PID 1 or a child subreaper),
enters the family's namespaces and drops to its uid before it runs anything of the model's.

For each request:

- **cells** (``python``): continues the kernel, hands it the cell, reads the kernel's stdout
  and stderr pipes under the output cap, interrupts it at the deadline or past the cap and
  kills it if it does not stop, and when the kernel reports back, kills whatever the cell
  left running, stops the kernel again (SIGSTOP), drains the pipes, checks the kernel's
  report (value, images, exception) and answers;
- **bash** and **programs** (``bash``, ``run``): starts the process as its own child (the exec
  shim, or a clone by the fork server, ``forker.py``), confined and traced, so its exit
  status, signals, time and memory come from ``wait4``, never from the process, and nothing
  it leaves behind outlives its exit event;
- **forks** of a session, and the **files API**, which it does itself (``files.py``).

Between calls no process of a family runs: kernels are stopped, everything else is killed.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import fcntl
import marshal
import os
import select
import selectors
import shutil
import signal
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

from toolfleet.box import case_forker, cases, children, files, jail, processes, shim, wire
from toolfleet.box.artifacts import Artifacts
from toolfleet.box.capture import Output, check_png
from toolfleet.box.cgroups import FamilyCgroups
from toolfleet.box.forker import ForkRefused, ForkServer
from toolfleet.box.jail import FamilyRoot, Namespaces, new_workspace
from toolfleet.box.kernel import Kernel
from toolfleet.box.verdicts import CaseBatch, case_run, crowded

BASH = "/bin/bash"
STATE_TRAP = (
    'trap \'__tf_s=$?; pwd > "$__TF_STATE/cwd"; env -0 > "$__TF_STATE/env"; exit $__tf_s\' EXIT\n'
)
MAX_STATE_BYTES = 1 << 20
HELLO_TIMEOUT_S = 10.0  # a forked kernel's, waited for in the loop
# a spawned kernel's (a loaded machine; the loop serves others meanwhile): under the service's
# wait for the spawn's answer (3 x ANSWER_MARGIN_S), so that a failure is answered, not lost
HATCH_TIMEOUT_S = 20.0
KERNEL_IO_TIMEOUT_S = 5.0  # a fresh kernel or a case server that stalls in a frame is broken
CASE_FORKER_START_S = 60.0  # an interpreter's start, on a loaded machine
EXITED_NOT_REAPED = os.WEXITED | os.WNOHANG | os.WNOWAIT
FORK_TIMEOUT_S = 60.0
SWEEP_INTERVAL_S = 1.0
# a call's output pipes are watched from this long after its start on (its output is read at
# its end anyway): a quick cell's print does not wake the loop once more before its report
WATCH_OUTPUT_AFTER_S = 0.002
CONTINUE_AFTER_BYTES = 32 << 10  # a request this big is sent to a kernel already continued
SERVING = ("kernel", "cases")  # births that serve on a channel (kept open, not traced)
COMPILED_MAX_CHARS = 16 << 10  # Python sources compiled here once for all their runs
COMPILED_KEPT = 32  # ... the last ones run
TRACE_OPTIONS = jail.PTRACE_O_TRACEEXIT | jail.PTRACE_O_TRACEEXEC | jail.PTRACE_O_EXITKILL
SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
# signals the supervisor handles or ignores (Python ignores SIGPIPE): a program starts with
# their defaults
DEFAULT_SIGNALS = (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE)
ERROR_KINDS = {
    "syntax_error",
    "runtime_error",
    "timeout",
    "memory_limit",
    "output_limit",
    "not_found",
    "permission_denied",
    "internal",
}


@dataclass
class Family:
    """A family: its channel, its uid and limits, its root and namespaces."""

    fid: int
    chan: socket.socket
    conf: children.Confinement
    root: FamilyRoot
    oom_seen: int = 0  # the cgroup's OOM kills counted so far
    kernels: set[int] = field(default_factory=set)  # kernel ids
    cgroup: bool = False  # a cgroup of its own (else its processes stay in the zygotes')
    tasks: int | None = None  # descriptor of its cgroup's task count, where there is one
    frames: wire.FrameBuffer = field(default_factory=wire.FrameBuffer)  # its requests, framed


@dataclass
class Job:
    """One request being served: a cell, a fork, a bash command or a program."""

    id: int
    kind: str
    family: Family
    output: Output
    deadline: float
    grace_s: float
    started: float = field(default_factory=time.monotonic)
    interrupted: str | None = None  # "timeout" / "output_limit": why we stopped it
    kill_at: float | None = None
    watch_at: float | None = None  # when its kernel's output pipes are to be watched
    pid: int | None = None  # the process of a bash command or program
    status: int | None = None  # its wait status
    usage: Any = None  # its resource usage (wait4)
    pipes: dict[int, str] = field(default_factory=dict)  # open read ends -> stream
    cpu_before: float = 0.0
    oom_before: int = 0  # the family's OOM kills as its process began (``_outcome``)
    request: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class KernelState:
    """A kernel of a family: its channel, its output pipes, its session's bash state."""

    kid: int
    pid: int
    family: Family
    chan: socket.socket
    out: int
    err: int
    workspace: str
    bash_cwd: str
    bash_env: dict[str, str]
    job: Job | None = None
    exit_status: int | None = None
    cpu_ms: float = 0.0  # its CPU time when its last call ended (it is stopped between calls)
    stat: int = -1  # descriptor of /proc/<pid>/stat, read after every call
    handle: int = -1  # its pidfd (-1 without pidfds): a forked kernel is not our child, so
    # its pid could be reused once its parent kernel reaped it, before we hear it is gone
    frames: wire.FrameBuffer = field(default_factory=wire.FrameBuffer)  # what it sent, framed
    owed: int = 0  # answers due to ``_reap_for``'s requests (not a call's report)
    watched: bool = False  # its output pipes are in the loop's selector (``_watch_output``)
    outbox: bytearray = field(default_factory=bytearray)  # sent to it once its channel takes it
    outbox_at: int = 0  # how much of the outbox went

    def send(self, sig: int) -> None:
        """Signal the kernel itself, never a later process with its pid."""
        _send(self.pid, self.handle, sig)

    def alive(self) -> bool:
        """Whether the kernel has not exited (a look at its children is a look at its own)."""
        if self.handle < 0:
            return True  # its stat descriptor reads nothing once it is gone
        return not select.select([self.handle], [], [], 0)[0]

    def await_exit(self, within_s: float = 1.0) -> None:
        """Wait until the kernel has exited: its exit may continue other kernels (an
        orphaned process group gets SIGCONT), so they are stopped after it."""
        if self.handle >= 0:
            select.select([self.handle], [], [], within_s)  # readable once it has exited
            return
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                        return
            except (OSError, IndexError):
                return
            time.sleep(0.001)


@dataclass(eq=False)
class CaseServer:
    """A judge's Python program loaded in a process of its family, which forks its cases
    (``cases.py``); the cases sent to it whose pid it has not named yet, in order."""

    key: tuple[int, str, str, int]  # family, script, source, memory limit
    family: Family
    pid: int
    chan: socket.socket
    env: dict[str, str]  # its environment: a case's request says what differs
    waiting: collections.deque[Job] = field(default_factory=collections.deque)


@dataclass(eq=False)  # compared by identity (``Supervisor.births``)
class Hatching:
    """A kernel being started: forked, not yet greeted (its spawn or fork request waits)."""

    rid: int
    family: Family
    chan: socket.socket
    out: int
    err: int
    pid: int
    workspace: str
    env: dict[str, str]
    deadline: float = field(default_factory=lambda: time.monotonic() + HATCH_TIMEOUT_S)
    bash_cwd: str | None = None  # a fork's: its parent's, moved to its workspace
    handle: int | None = None  # a fork's pidfd (it is its parent kernel's child, not ours)


class Supervisor:
    """Serves the zygote's control channel and every family's channel."""

    def __init__(
        self,
        control: socket.socket,
        box_root: str,
        namespaces: Namespaces | None,
        cgroups: FamilyCgroups | None,
        private_tmp: bool,
        base_vm_bytes: int,
        seccomp: bytes | None,
        uid_limits: bool,
        env: dict[str, str],
        preloaded: tuple[str, ...] = (),
    ) -> None:
        self.control = control
        self.box_root = box_root
        self.namespaces = namespaces
        self.cgroups = cgroups
        self.private_tmp = private_tmp
        self.base_vm = base_vm_bytes
        self.seccomp = seccomp
        self.uid_limits = uid_limits
        self.env = env
        self.families: dict[int, Family] = {}
        # Where a program cannot be the subreaper of its tree (gVisor), an orphan of it that
        # ends comes back to us: its uid is peeked at before it is reaped (``_reap``).
        self.orphans_come_back = not jail.subreapers_below_init()
        self.swept: set[int] = set()  # charged by a sweep already (then orphans: not again)
        # our children not reaped yet that are no orphan of a program's: a job's process that
        # ended at its exit event (``_exiting``), an ended case server and the cases it named
        # to nobody (killed)
        self.doomed: set[int] = set()
        self.kernels: dict[int, KernelState] = {}
        self.kernel_pids: set[int] = set()
        self.busy: dict[int, KernelState] = {}  # kernels running a call, by id
        self.hatching: dict[int, Hatching] = {}  # kernels started, not yet greeted: by channel
        # pids due from the fork server, in the order asked: kernels', and jobs' processes
        self.births: collections.deque[Hatching | Job] = collections.deque()
        self.procs: dict[int, Job] = {}  # pid -> the bash or program job it runs
        self.artifacts = Artifacts()  # compiled programs, sent once (``artifacts.py``)
        self.case_servers: dict[tuple[int, str, str, int], CaseServer] = {}
        # where a case could not be traced (gVisor lets a tracer seize only its own children,
        # and has no pidfds), judges' cases are forked from the template
        self.case_servers_fail = not processes.has_pidfds()
        # Python programs run lately, compiled (``_compiled``)
        self.compiled: collections.OrderedDict[tuple[str, str], str | None] = (
            collections.OrderedDict()
        )
        self.next_kid = 1
        # the cases of judges' batches being run: their requests' ids (below 0) -> the batch,
        # the case's index and the case (``_run_cases``)
        self.batched: dict[int, tuple[CaseBatch, int, dict[str, Any]]] = {}
        self.next_batched = -1
        # batches a case of which ended this turn: their next cases start once the turn's
        # events are handled (a fork is slow under gVisor: other cases' exits come first)
        self.to_fill: list[CaseBatch] = []
        self.hearing_stops = True  # whether a child's stop sends SIGCHLD (``_hear_children``)
        self.sel = selectors.DefaultSelector()
        self.devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        self.base_rss = (processes.status_field(os.getpid(), "VmRSS") or 0) * 1024
        self.last_sweep = time.monotonic()
        self.ending: dict[int, int] = {}  # ended families' cgroups still to remove: fid -> uid
        self.shim, self.seccomp_fd = self._find_shim()
        self.confine_library = shim.find_library()
        self.confine = self._load_confine()
        self.fork_loop: str | None = None  # the fork server's loop: "c", "python" (or none)
        # last: the fork server is a copy of the template as it is now
        self.forker: ForkServer | None = self._fork_server(control)
        # judges' case servers of programs that import none of the preloads (``case_forker``)
        self.preloaded = {name.split(".")[0] for name in preloaded}
        self.case_forker: ForkServer | None = None
        self.case_forker_vm = 0  # its virtual memory size: a case server's memory limit adds it
        if self.forker is not None and self.confine_library and not self.case_servers_fail:
            held = [self.seccomp_fd, *(self.cgroups.fds.values() if self.cgroups else ())]
            started = case_forker.start(self.confine_library, held, CASE_FORKER_START_S)
            if started is not None:
                self.case_forker, self.case_forker_vm = started

    def _fork_server(self, control: socket.socket) -> ForkServer | None:
        """The fork server, once a child it clones is seen to be ours (gVisor, for one, does
        not give it to us); else None: the supervisor forks itself, as it says."""
        try:
            library = self.confine_library if self.confine is not None else None
            server = ForkServer.start(self._born, (control.fileno(),), library)
            self.fork_loop = "c" if library else "python"
        except OSError as exc:
            print(f"supervisor: no fork server ({exc!r}), forking directly",
                  file=sys.stderr, flush=True)  # fmt: skip
            return None
        try:
            server.ask({"run": "probe"}, [])
            os.waitpid(server.answer(), 0)  # ChildProcessError: not our child
            return server
        except (OSError, ValueError, ForkRefused) as exc:
            print(f"supervisor: the fork server's children are not ours ({exc!r}), "
                  "forking directly", file=sys.stderr, flush=True)  # fmt: skip
            server.close()
            _signal(server.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(server.pid, 0)
            return None

    def _find_shim(self) -> tuple[str | None, int]:
        """The exec shim that starts programs without a fork of this process (``shim.py``),
        and a sealed memfd holding the seccomp program it loads; (None, -1) where there is
        none: programs are then forked."""
        path = shim.find()
        # devnull took the lowest free number: above 2, stdio is open, so no descriptor we
        # pass the shim can be one its stdio replaces
        if path is None or self.devnull < 3:
            print("supervisor: no exec shim, programs are forked", file=sys.stderr, flush=True)
            return None, -1
        if self.seccomp is None:
            return path, -1
        fd = -1
        try:
            fd = os.memfd_create("seccomp", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            os.write(fd, self.seccomp)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
        except OSError as exc:
            _close(fd)
            print(f"supervisor: no exec shim ({exc!r}), programs are forked",
                  file=sys.stderr, flush=True)  # fmt: skip
            return None, -1
        return path, fd

    def _load_confine(self) -> Any:
        """libconfine's ``tf_confine``, loaded here in the template (a child's dlopen would
        copy pages); None without it or without the shim's seccomp memfd (it reads the
        filter from there): children are then confined in Python."""
        path = self.confine_library
        if path is None or self.shim is None or (self.seccomp is not None and self.seccomp_fd < 0):
            print("supervisor: no libconfine, children confine themselves in Python",
                  file=sys.stderr, flush=True)  # fmt: skip
            return None
        try:
            return children.load_confine(path)
        except (OSError, AttributeError) as exc:
            print(f"supervisor: libconfine does not load ({exc!r})", file=sys.stderr, flush=True)
            return None

    # ------------------------------------------------------------------ loop

    def serve(self) -> None:
        """The event loop: control and family requests, kernels' reports, output pipes,
        exits, deadlines; until the service closes the control channel."""
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.sel.register(self.control, selectors.EVENT_READ, ("control", None))
        self.sel.register(wake_r, selectors.EVENT_READ, ("wakeup", None))
        if self.forker is not None:
            self.sel.register(self.forker.chan, selectors.EVENT_READ, ("forked", None))
        while True:
            for key, mask in self.sel.select(self._next_timer()):
                if self.sel.get_map().get(key.fd) is not key:
                    # handling an earlier event of this batch closed that descriptor (and
                    # its number may already be another's): the event is stale
                    continue
                what, owner = key.data
                if what == "kernel" and mask & selectors.EVENT_WRITE:
                    self._flush(owner)
                    if not mask & selectors.EVENT_READ or self.kernels.get(owner.kid) is not owner:
                        continue
                if what == "family":
                    self._on_family(owner)
                elif what == "control":
                    self._on_control()
                elif what == "wakeup":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                    self._reap()
                elif what == "kernel":
                    self._on_kernel(owner)
                elif what == "hello":
                    self._hatched(owner)
                elif what == "cases":
                    try:
                        self._case_answered(owner)
                    except Exception as exc:  # never the loop's end: its cases are forked
                        print(f"supervisor: a case server failed ({exc!r})", file=sys.stderr,
                              flush=True)  # fmt: skip
                        self._drop_case_server(owner)
                elif what == "forked":
                    # readiness seen with other events of this turn may be stale: a fork
                    # asked for meanwhile read every answer due (``_forked_all``)
                    if self.forker is not None and _readable(self.forker.chan):
                        if self.births:
                            self._clone_answered()
                        else:
                            self._forker_gone(ConnectionError("it spoke unasked"))
                else:
                    self._on_output(key.fd, what, owner)
            while self.to_fill:
                self._more_cases(self.to_fill.pop(0))
            self._timers()
            self._hear_children()

    def _hear_children(self) -> None:
        """Have SIGCHLD come for a child's stop only while a process that stops for the loop
        can exist: a traced one (a program, a bash command, a judge's case) or one whose pid
        is not read yet. Otherwise the only children that stop are kernels, stopped after
        every call and continued for the next: each stop and continue would wake the loop
        once more (a signal, the wakeup pipe, a turn) for nothing. Exits are always heard."""
        need = (
            bool(self.procs)
            or any(isinstance(e, Job) for e in self.births)
            or any(server.waiting for server in self.case_servers.values())
        )
        if need == self.hearing_stops:
            return
        if processes.hear_child_stops(need):
            self.hearing_stops = need
            if need:
                self._reap()  # what stopped while nobody listened

    def _next_timer(self) -> float:
        moments = [
            m for j in self._jobs() for m in (j.deadline, j.kill_at, j.watch_at) if m is not None
        ]
        moments += [egg.deadline for egg in self.hatching.values()]
        moments.append(self.last_sweep + SWEEP_INTERVAL_S)
        return max(0.0, min(moments) - time.monotonic())

    def _jobs(self) -> list[Job]:
        jobs = [k.job for k in self.busy.values() if k.job is not None]
        jobs += [e for e in self.births if isinstance(e, Job)]
        for server in self.case_servers.values():
            jobs += server.waiting
        return jobs + list(self.procs.values())

    def _reply(self, family: Family, msg: dict[str, Any]) -> None:
        if msg.get("id", 0) < 0:  # a case of a batch: its end is the batch's
            batched = self.batched.pop(msg["id"], None)
            if batched is not None:
                self._case_done(*batched, msg)
            return
        try:
            wire.send(family.chan, msg)
        except OSError:
            self._end_family(family)

    def _fail(self, family: Family, rid: int, kind: str, message: str) -> None:
        self._reply(family, {"id": rid, "ok": False, "error": {"kind": kind, "message": message}})

    # ------------------------------------------------------------------ control

    def _on_control(self) -> None:
        try:
            msg, fds = wire.recv(self.control)
        except (wire.ChannelClosedError, OSError):
            sys.exit(0)  # the service is gone: as PID 1 our exit ends the whole namespace
        try:
            reply = self._control(msg, fds)
        except Exception as exc:
            for fd in fds:
                _close(fd)
            reply = {"ok": False, "error": repr(exc)}
        wire.send(self.control, reply)

    def _control(self, msg: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        op = msg.get("op")
        if op == "family":
            cgroup = bool(msg.get("cgroup", True)) and self.cgroups is not None
            fid, uid = int(msg["fid"]), int(msg["uid"])
            return self._new_family(fid, uid, msg["limits"], fds[0], cgroup)
        if op == "end_family":
            family = self.families.get(int(msg["fid"]))
            if family is not None:
                self._end_family(family)
            return {"ok": True}
        if op == "ping":
            return {"ok": True, "families": len(self.families), "kernels": len(self.kernels)}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def _new_family(
        self, fid: int, uid: int, limits: dict[str, Any], fd: int, cgroup: bool
    ) -> dict[str, Any]:
        if fid in self.families:
            _close(fd)
            return {"ok": False, "error": f"family {fid} exists"}
        for other in self.families.values():
            if other.conf.uid == uid and self.namespaces is not None:
                _close(fd)
                return {"ok": False, "error": f"uid {uid} belongs to family {other.fid}"}
        conf = children.Confinement(
            uid, jail.Limits(**limits), self.base_vm, self.seccomp, self.uid_limits
        )
        self._wait_gone(uid)  # a uid is a new family's only once its last process is gone
        reused = False
        if cgroup and self.cgroups is not None:
            limits = (conf.limits.family_memory_bytes, conf.limits.processes + 4)
            reused = self.cgroups.create(fid, *limits)
        try:
            if self.namespaces is not None:
                root = self.namespaces.create(uid, conf.limits.disk_bytes)
            else:
                root = jail.family_directory(self.box_root, fid, uid, self.private_tmp)
        except BaseException:
            _close(fd)
            if cgroup and self.cgroups is not None:
                with contextlib.suppress(OSError):
                    self.cgroups.remove(fid)
            raise
        chan = socket.socket(fileno=fd)
        chan.setblocking(True)
        family = Family(fid, chan, conf, root, cgroup=cgroup)
        if cgroup and self.cgroups is not None:
            family.tasks = self.cgroups.tasks_file(fid)
            if reused:  # its OOM count starts where the ended family's stopped
                family.oom_seen = self.cgroups.oom_kills(fid)
        self.families[fid] = family
        self.sel.register(chan, selectors.EVENT_READ, ("family", family))
        return {"ok": True}

    def _end_family(self, family: Family) -> None:
        """End every process of the family, let go of its namespaces and files."""
        if self.families.pop(family.fid, None) is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(family.chan)
        family.chan.close()
        self._forked_all()  # its jobs' processes all known, to be killed below
        for rid in [r for r, (batch, _, _) in self.batched.items() if batch.family is family]:
            del self.batched[rid]
        for server in [c for c in self.case_servers.values() if c.family is family]:
            self._drop_case_server(server)
        for kid in list(family.kernels):
            self.kernels[kid].send(signal.SIGKILL)
            self._drop_kernel(self.kernels[kid])
        for egg in [e for e in self.hatching.values() if e.family is family]:
            self._addled(egg, "its session ended")
        for pid, job in list(self.procs.items()):
            if job.family is family:
                _signal(pid, signal.SIGKILL)
                for fd in list(job.pipes):
                    self._close_pipe(job, fd)
                del self.procs[pid]
        for pid in self._members(family):
            _signal(pid, signal.SIGKILL)
        if self.namespaces is not None:
            self.namespaces.release(family.root)  # killed: its network namespace may serve again
        family.root.close()
        if family.tasks is not None:
            _close(family.tasks)
        if family.cgroup:
            self.ending[family.fid] = family.conf.uid  # removed once its processes have exited
        if not family.root.namespaces:
            # a plain directory (no namespace of its own to take the files along)
            shutil.rmtree(family.root.view, ignore_errors=True)

    def _members(self, family: Family) -> list[int]:
        """Every process of the family: its cgroup's; else (a family without one) what its
        kernels and jobs started and its orphans; in a container (one family), its uid's."""
        if family.cgroup and self.cgroups is not None:
            return [p for p in self.cgroups.procs(family.fid) if p != os.getpid()]
        if self.namespaces is None and self.private_tmp:
            return processes.owned_by(family.conf.uid)
        found = [k.pid for k in (self.kernels[i] for i in family.kernels)]
        found += [pid for pid, job in self.procs.items() if job.family is family]
        found += self._orphans(family, self.kernel_pids | set(self.procs))
        for pid in list(found):
            found += processes.descendants(pid)
        return found

    def _wait_gone(self, uid: int, within_s: float = 5.0) -> None:
        """Before a uid goes to a new family: its ended family's processes are all gone (its
        cgroup could be removed). Uids are handed out oldest first, so this rarely waits."""
        deadline = time.monotonic() + within_s
        for fid in [f for f, u in self.ending.items() if u == uid]:
            while self.cgroups is not None and not self.cgroups.remove(fid, within_s=0):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"processes of uid {uid} do not end")
                self._reap()
                time.sleep(0.002)
            del self.ending[fid]

    # ------------------------------------------------------------------ family requests

    def _on_family(self, family: Family) -> None:
        """The service's requests on a family's channel, as they come (none carries a
        descriptor)."""
        try:
            requests = family.frames.feed(wire.recv_available(family.chan))
        except BlockingIOError:
            return
        except (wire.ChannelClosedError, OSError, ValueError):
            self._end_family(family)
            return
        for msg in requests:
            if self.families.get(family.fid) is not family:
                return  # ended by an earlier request of the batch
            self._request(family, msg)

    def _request(self, family: Family, msg: dict[str, Any]) -> None:
        rid = int(msg.get("id", 0))
        op = msg.get("op")
        handler = {
            "spawn": self._spawn,
            "python": self._python,
            "bash": self._bash,
            "run": self._run,
            "run_cases": self._run_cases,
            "fork": self._fork,
            "read_file": self._files,
            "write_file": self._files,
            "list_files": self._files,
            "end_kernel": self._end_kernel,
        }.get(op)
        if op == "ping":
            self._reply(family, {"id": rid, "ok": True})
            return
        if handler is None:
            self._fail(family, rid, "internal", f"unknown op {op!r}")
            return
        try:
            handler(family, msg)
        except Exception as exc:
            self._fail(family, rid, "internal", f"{op} failed in the supervisor: {exc!r}")

    def _kernel(self, family: Family, msg: dict[str, Any], idle: bool = True) -> KernelState | None:
        kernel = self.kernels.get(int(msg.get("kernel", 0)))
        if kernel is None or kernel.family is not family:  # never another family's kernel
            self._fail(family, int(msg["id"]), "not_found", "the session's interpreter is gone")
            return None
        if idle and kernel.job is not None:
            self._fail(
                family, int(msg["id"]), "internal", "the interpreter is busy with another call"
            )
            return None
        return kernel

    # ------------------------------------------------------------------ kernels

    def _spawn(self, family: Family, msg: dict[str, Any]) -> None:
        """Start a kernel; the request is answered when it says hello (``_hatched``): the
        supervisor serves every other request meanwhile (a kernel takes milliseconds to
        enter its family and confine itself, which a pool refill must not add to calls)."""
        workspace = new_workspace(family.root, family.conf.uid)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = _pipe()
        err_r, err_w = _pipe()
        env = self._env(family, workspace)
        birth = {"run": "kernel", "cwd": workspace, "env": env}
        egg = Hatching(int(msg["id"]), family, ours, out_r, err_r, 0, workspace, env)
        try:
            # the fork server's answer (the pid) is read when it comes (``_clone_answered``): the
            # clone of the template does not hold up the loop
            egg.pid = self._new_process(
                family, birth, [self.devnull, out_w, err_w, theirs.fileno()], later=egg
            )
        finally:
            theirs.close()
            os.close(out_w)
            os.close(err_w)
        if egg.pid:
            self.kernel_pids.add(egg.pid)  # spared by sweeps from now on
        self.hatching[ours.fileno()] = egg
        self.sel.register(ours, selectors.EVENT_READ, ("hello", egg))

    def _hatched(self, egg: Hatching) -> None:
        """A spawned kernel said hello (or died first): taken in, and its request answered."""
        if not self._born_pid(egg):
            return
        self._unhatch(egg)
        try:
            kernel = self._adopt(
                egg.family, egg.chan, egg.out, egg.err, egg.pid, egg.workspace,
                egg.bash_cwd or egg.workspace, egg.env, egg.handle,
            )  # fmt: skip
        except (OSError, ConnectionError, ValueError) as exc:
            self._fail(egg.family, egg.rid, "internal", f"the kernel could not start: {exc}")
            return
        if egg.handle is not None:
            self._freeze_idle(egg.family)  # a fork: its parent's siblings stay stopped
        self._reply(
            egg.family,
            {"id": egg.rid, "ok": True, "kernel": kernel.kid, "pid": kernel.pid,
             "workspace": kernel.workspace},
        )  # fmt: skip

    def _unhatch(self, egg: Hatching) -> None:
        self.hatching.pop(egg.chan.fileno(), None)
        self.kernel_pids.discard(egg.pid)  # _adopt adds it back when it is a kernel
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(egg.chan)

    def _addled(self, egg: Hatching, why: str) -> None:
        """A kernel that never said hello (past HATCH_TIMEOUT_S, or its family ended), or
        that the fork server could not clone."""
        if egg.chan.fileno() < 0:
            return  # already given up
        self._born_pid(egg)
        self._unhatch(egg)
        if egg.handle is not None:
            _send(egg.pid, egg.handle, signal.SIGKILL)
            _close(egg.handle)
        elif egg.pid:
            _signal(egg.pid, signal.SIGKILL)
        egg.chan.close()
        for fd in (egg.out, egg.err):
            _close(fd)
        if egg.family.fid in self.families:
            self._fail(egg.family, egg.rid, "internal", f"the kernel could not start: {why}")

    def _busy(self, kernel: KernelState, job: Job | None) -> None:
        kernel.job = job
        if job is None:
            self.busy.pop(kernel.kid, None)
            if kernel.watched:
                kernel.watched = False
                for fd in (kernel.out, kernel.err):
                    with contextlib.suppress(KeyError, ValueError):
                        self.sel.unregister(fd)
        else:
            self.busy[kernel.kid] = kernel
            job.watch_at = job.started + WATCH_OUTPUT_AFTER_S

    def _watch_output(self, kernel: KernelState) -> None:
        """Read the busy kernel's output as it comes (and cap it while the call runs): from
        ``WATCH_OUTPUT_AFTER_S`` into a call on. Until then the pipes hold what it writes
        (64 KiB each: a kernel that writes more waits for them that long at most)."""
        if kernel.job is not None:
            kernel.job.watch_at = None
        if not kernel.watched:
            kernel.watched = True
            self.sel.register(kernel.out, selectors.EVENT_READ, ("stdout", kernel))
            self.sel.register(kernel.err, selectors.EVENT_READ, ("stderr", kernel))

    def _env(self, family: Family, workspace: str) -> dict[str, str]:
        tmp = "/tmp" if family.root.namespaces or self.private_tmp else workspace
        return {**self.env, "HOME": workspace, "TMPDIR": tmp, "MPLCONFIGDIR": workspace}

    def _new_process(
        self,
        family: Family,
        birth: dict[str, Any],
        fds: list[int],
        later: Hatching | Job | None = None,
    ) -> int:
        """A new process of the family, the supervisor's child, that runs ``birth``
        (``_born``) with ``fds``: stdin, stdout, stderr, then a kernel's channel. Cloned by
        the fork server (``forker.py``), else forked by the supervisor itself. Its pid; 0
        when ``later`` is given and the fork server will answer (``_clone_answered`` sets
        ``later.pid``): the loop goes on meanwhile (other jobs' exits, other requests)."""
        birth, fds = self._prepared(family, birth, fds, self.base_vm)
        if later is None:
            self._forked_all()  # answers come in order: the ones asked before are read first
        if self.forker is not None:
            try:
                self.forker.ask(birth, fds)
                if later is None:
                    return self.forker.answer()
                self.births.append(later)
                return 0
            except ForkRefused:
                raise
            except (OSError, ValueError) as exc:
                self._forker_gone(exc)
        pid = os.fork()
        if pid == 0:
            self._born(birth, fds)
        return pid

    def _prepared(
        self, family: Family, birth: dict[str, Any], fds: list[int], base_vm: int
    ) -> tuple[dict[str, Any], list[int]]:
        """``birth`` as a forker's child of the family reads it (the words that confine it,
        made here), and ``fds`` with the family's namespaces. ``base_vm``: what the process
        it is forked from has mapped, which its memory limit adds where it is warm."""
        limits = family.conf.limits
        cgroup = self._cgroup_name(family)
        birth = {
            **birth,
            "fid": family.fid,
            "namespaces": bool(family.root.namespaces and self.namespaces is not None),
        }
        if self.confine is not None:  # its words made here: the child only adds descriptors
            kernel = birth["run"] in SERVING
            memory = int(birth.get("memory_bytes") or 0) or limits.memory_bytes
            if birth.get("warm", True):
                memory += base_vm  # the template's mappings count too (children.enter)
            words = self._words(family.conf.uid, limits, cgroup, str(birth["cwd"]), memory,
                                trace=not kernel)  # fmt: skip
            words += ["pgid=1", f"status={1 if kernel else 126}"]
            birth["confine"] = "\0".join(words)
        else:
            birth["uid"], birth["cgroup"] = family.conf.uid, cgroup
            birth["limits"] = {f.name: getattr(limits, f.name) for f in dataclass_fields(limits)}
        if birth["namespaces"]:
            fds = fds + [family.root.namespaces[name] for name, _ in Namespaces.KINDS]
        return birth, fds

    def _clone_answered(self) -> None:
        """The fork server answered a kernel's spawn or a job's process: its pid (or why it
        has none)."""
        egg = self.births.popleft()
        try:
            assert self.forker is not None
            egg.pid = self.forker.answer()
        except ForkRefused as exc:
            self._unborn(egg, exc)
            return
        except (OSError, ValueError) as exc:
            self._forker_gone(exc)
            self._unborn(egg, ConnectionError(f"the fork server is gone: {exc}"))
            return
        if isinstance(egg, Job):
            self.procs[egg.pid] = egg  # its stops and exit are heard from now on
        elif egg.chan.fileno() >= 0:
            self.kernel_pids.add(egg.pid)
        else:
            _signal(egg.pid, signal.SIGKILL)  # given up on meanwhile (its family ended)

    def _forked_all(self) -> None:
        """Every answer still due from the fork server (before a look at our children)."""
        while self.births and self.forker is not None:
            self._clone_answered()

    def _born_pid(self, egg: Hatching) -> bool:
        """The spawned kernel's pid is known (its answer read now if it was due)."""
        while not egg.pid and egg in self.births and self.forker is not None:
            self._clone_answered()
        return bool(egg.pid)

    def _unborn(self, egg: Hatching | Job, exc: Exception) -> None:
        """What the fork server could not clone: a kernel's spawn fails; a job ends with
        the error its request would have met, had the clone been waited for."""
        if isinstance(egg, Hatching):
            self._addled(egg, f"clone: {exc}" if isinstance(exc, ForkRefused) else str(exc))
            return
        for fd in list(egg.pipes):
            self._close_pipe(egg, fd)
        if egg.family.fid in self.families:
            self._fail(egg.family, egg.id, "internal",
                       f"{egg.kind} failed in the supervisor: {exc!r}")  # fmt: skip

    def _forker_gone(self, exc: BaseException) -> None:
        """The fork server broke: the supervisor forks itself from now on; the spawns it
        did not answer fail (their pools spawn again)."""
        if self.forker is None:
            return
        print(f"supervisor: the fork server failed ({exc!r}), forking directly",
              file=sys.stderr, flush=True)  # fmt: skip
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(self.forker.chan)
        self.forker.close()
        self.forker = None
        while self.births:
            self._unborn(self.births.popleft(), ConnectionError(f"the fork server is gone: {exc}"))

    def _born(self, birth: dict[str, Any], fds: list[int]) -> None:
        """In a new process of a family, still root (a child of the fork server's or ours):
        enter the family's namespaces and cgroup, confine, run what ``birth`` says. Never
        returns."""
        if birth["run"] == "probe":  # the fork server's first child (``_fork_server``)
            os._exit(0)
        kernel = birth["run"] in SERVING
        try:
            ns_fds = fds[-len(Namespaces.KINDS) :] if birth["namespaces"] else []
            if self.confine is not None:
                self._confine_in_c(birth, fds, ns_fds)
            else:
                self._enter_in_python(birth, fds, ns_fds)
            if birth["run"] == "cases":
                chan = socket.socket(fileno=fds[3])
                assert self.confine_library is not None  # a case server needs libconfine
                cases.serve(chan, birth["script"], birth["compiled"], self.confine_library)
            elif kernel:
                Kernel(socket.socket(fileno=fds[3]), str(birth["cwd"])).serve()
            elif birth["run"] == "python":
                children.run_python_main(
                    birth["script"], birth["source"], birth["args"], birth.get("compiled")
                )
            else:
                then = birth.get("then_cwd")
                if then and os.path.isdir(then):
                    os.chdir(then)
                children.exec_program(birth["argv"], birth["env"])
        except BaseException as exc:
            what = "kernel could not start" if kernel else "sandbox could not start the process"
            with contextlib.suppress(OSError):
                os.write(2, f"the {what}: {exc!r}\n".encode())
        finally:
            os._exit(1 if kernel else 126)

    def _words(
        self,
        uid: int,
        limits: jail.Limits,
        cgroup: str,
        cwd: str,
        address_space: int,
        trace: bool = True,
    ) -> list[str]:
        """The confinement of a family's new process as ``exec_shim.c`` reads it (the shim's
        arguments, libconfine's words), but its namespaces (``jail.ns_words``): ``cgroup`` the
        name of the family's cgroups ("" where it has none)."""
        words: list[str] = []
        if cgroup and self.cgroups is not None:
            words += [f"cg={fd}:{cgroup}/cgroup.procs" for fd in self.cgroups.fds.values()]
        words += [f"cwd={cwd}", f"trace={int(trace)}", f"as={address_space}",
                  f"fsize={limits.file_bytes}", f"nofile={limits.open_files}",
                  f"cpu={limits.cpu_seconds}", f"uid={uid}"]  # fmt: skip
        if self.uid_limits:
            words.append(f"nproc={limits.processes}")
        if self.seccomp_fd >= 0:
            words.append(f"seccomp={self.seccomp_fd}:{len(self.seccomp or b'')}")
        return words

    def _cgroup_name(self, family: Family) -> str:
        """The name of the family's cgroups; "" where it has none."""
        if family.cgroup and self.cgroups is not None:
            return self.cgroups.name(family.fid)
        return ""

    def _jail_root(self) -> str | None:
        """The jail's root in our mount namespace, where families have namespaces."""
        return self.namespaces.jail_root if self.namespaces is not None else None

    def _confine_in_c(self, birth: dict[str, Any], fds: list[int], ns_fds: list[int]) -> None:
        """``_enter_in_python``'s steps in one call of libconfine (``children.confine_in_c``)
        with the words ``_new_process`` made and the descriptors this process received."""
        ns = jail.ns_words(ns_fds, self._jail_root())
        children.confine_in_c(self.confine, {**birth, "keep": birth["run"] in SERVING}, fds, ns)

    def _enter_in_python(self, birth: dict[str, Any], fds: list[int], ns_fds: list[int]) -> None:
        """Where libconfine is not built: the same steps in Python."""
        kernel = birth["run"] in SERVING
        if ns_fds and self.namespaces is not None:
            kinds = [name for name, _ in Namespaces.KINDS]
            self.namespaces.enter(dict(zip(kinds, ns_fds, strict=True)))
        if birth["cgroup"] and self.cgroups is not None:
            self.cgroups.join(str(birth["cgroup"]), os.getpid())
        conf = children.Confinement(
            int(birth["uid"]), jail.Limits(**birth["limits"]), self.base_vm, self.seccomp,
            self.uid_limits,
        )  # fmt: skip
        keep = (fds[3],) if kernel else ()
        children.enter(
            conf, (fds[0], fds[1], fds[2]), keep, str(birth["cwd"]), birth["env"],
            int(birth.get("memory_bytes") or 0), bool(birth.get("warm", True)), not kernel,
        )  # fmt: skip

    def _adopt(
        self,
        family: Family,
        chan: socket.socket,
        out: int,
        err: int,
        pid: int,
        workspace: str,
        bash_cwd: str,
        bash_env: dict[str, str],
        handle: int | None = None,
    ) -> KernelState:
        """Take a new kernel (spawned or forked) in once it has said hello; stop it.
        ``handle`` is its pidfd if the caller holds one (opened here otherwise)."""
        handle = processes.open_handle(pid) if handle is None else handle
        try:
            # called once its channel is readable: a hello is one small write, all there
            # (the rest of a frame never waited for: the loop serves every family)
            chan.settimeout(0)
            hello, fds = wire.recv(chan, max_frame=4096)
            for fd in fds:
                os.close(fd)
            if hello.get("op") != "hello":
                raise ConnectionError(f"unexpected greeting {hello!r}")
        except BaseException as exc:
            said = b""
            with contextlib.suppress(OSError):
                os.set_blocking(err, False)
                said = os.read(err, 4000)
            for fd in (out, err):
                os.close(fd)
            chan.close()
            _send(pid, handle, signal.SIGKILL)
            if handle >= 0:
                os.close(handle)
            if said and isinstance(exc, Exception):
                said_text = said.decode(errors="replace")
                raise ConnectionError(f"{exc!r}; it said: {said_text}") from exc
            raise
        for fd in (out, err):
            os.set_blocking(fd, False)
        kernel = KernelState(
            self.next_kid, pid, family, chan, out, err, workspace, bash_cwd, bash_env,
            handle=handle,
        )  # fmt: skip
        self.next_kid += 1
        self.kernels[kernel.kid] = kernel
        self.kernel_pids.add(pid)
        family.kernels.add(kernel.kid)
        self.sel.register(chan, selectors.EVENT_READ, ("kernel", kernel))
        state = self._bash_state(kernel)
        with contextlib.suppress(FileExistsError):
            os.mkdir(state[1], 0o700, dir_fd=state[0])
        if os.getuid() == 0:
            os.chown(state[1], family.conf.uid, family.conf.uid, dir_fd=state[0])
        kernel.send(signal.SIGSTOP)
        with contextlib.suppress(OSError):
            kernel.stat = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        _, kernel.cpu_ms = processes.threads_and_cpu(pid, kernel.stat)
        return kernel

    def _end_kernel(self, family: Family, msg: dict[str, Any]) -> None:
        kernel = self.kernels.get(int(msg.get("kernel", 0)))
        if kernel is not None and kernel.family is family:
            self._kill_tree(kernel, wait=len(family.kernels) > 1)  # its exit could continue
            self._drop_kernel(kernel)  # the others
            self._freeze_idle(family)
        self._reply(family, {"id": msg["id"], "ok": True})

    def _kill_kernel(self, kernel: KernelState) -> None:
        self._kill_tree(kernel)
        self._freeze_idle(kernel.family)

    def _kill_tree(self, kernel: KernelState, wait: bool = True) -> None:
        """Kill the kernel and everything it started (but other kernels), and wait for its
        exit if asked."""
        if kernel.alive():
            self._kill_below(kernel.pid)
        kernel.send(signal.SIGKILL)
        if wait:
            kernel.await_exit()

    def _drop_kernel(self, kernel: KernelState) -> None:
        self.kernels.pop(kernel.kid, None)
        self.busy.pop(kernel.kid, None)
        self.kernel_pids.discard(kernel.pid)
        kernel.family.kernels.discard(kernel.kid)
        for fd in (kernel.out, kernel.err):
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(kernel.chan)
        kernel.chan.close()
        for fd in (kernel.stat, kernel.handle):
            if fd >= 0:
                _close(fd)
        kernel.stat = kernel.handle = -1

    # ------------------------------------------------------------------ cells

    def _python(self, family: Family, msg: dict[str, Any]) -> None:
        kernel = self._kernel(family, msg)
        if kernel is None:
            return
        job = self._job(family, msg, "python")
        job.cpu_before = kernel.cpu_ms
        self._late_output(kernel, job)
        self._busy(kernel, job)
        cell = {
            "op": "python",
            "code": msg["code"],
            "stdin": msg.get("stdin"),
            "max_images": int(msg["max_images"]),
            "max_image_bytes": int(msg["max_image_bytes"]),
            "max_result": int(msg["max_result"]),
        }
        self._send_continued(kernel, cell)

    def _late_output(self, kernel: KernelState, job: Job) -> None:
        """What the stopped kernel's pipes hold as its call starts: written after its last
        call had ended — by a thread of it after its report, before the stop reached it (a
        stop is asynchronous: a thread on the other CPU runs on a moment), or by another
        process of the session that holds its output (a fork keeps the descriptors a cell
        made). This call's first output, said so."""
        for fd, stream in ((kernel.out, "stdout"), (kernel.err, "stderr")):
            before = job.output.total[stream]
            self._drain(job, fd, stream)
            if late := job.output.total[stream] - before:
                job.extra.setdefault("notes", []).append(
                    f"the first {late} bytes of {stream} were written between calls (after "
                    "the session's previous call had ended, by a thread still running as "
                    "it was stopped or by another process holding its output)"
                )

    def _send_continued(
        self, kernel: KernelState, msg: dict[str, Any], fds: list[int] | None = None
    ) -> None:
        """Send the stopped kernel a request and continue it. A frame that fits in the
        channel's buffer goes first, so that the kernel wakes once, with its request there
        (continued first, it would wake in its wait for it, and again when it comes)."""
        frame = wire.encode(msg)
        first = len(frame) > CONTINUE_AFTER_BYTES  # it must read as we write
        if first:
            kernel.send(signal.SIGCONT)
        if not self._to_kernel(kernel, frame, fds):
            self._kernel_gone(kernel)
            return
        if not first:
            kernel.send(signal.SIGCONT)

    def _to_kernel(self, kernel: KernelState, frame: bytes, fds: list[int] | None = None) -> bool:
        """Send a kernel a frame without waiting for it to read: a kernel is model code, and
        one that stops reading would hold up the loop (every family of the zygote). What its
        channel does not take now is kept and sent as the channel drains, an event of the
        loop (``_flush``); its call's deadline bounds the wait. False when the kernel is gone
        or its channel is still full of an earlier frame and ``fds`` must go (it answered
        without reading its request: broken)."""
        if kernel.outbox:
            if fds:
                return False
            kernel.outbox += frame
            return True
        try:
            sent = wire.send_available(kernel.chan, frame, fds)
        except OSError:
            return False
        if sent < len(frame):
            kernel.outbox += memoryview(frame)[sent:]
            self.sel.modify(kernel.chan, selectors.EVENT_READ | selectors.EVENT_WRITE,
                            ("kernel", kernel))  # fmt: skip
        return True

    def _flush(self, kernel: KernelState) -> None:
        """The kernel's channel takes more: send it more of its outbox."""
        try:
            kernel.outbox_at += wire.send_available(
                kernel.chan, memoryview(kernel.outbox)[kernel.outbox_at :]
            )
        except OSError:
            self._kernel_gone(kernel)
            return
        if kernel.outbox_at >= len(kernel.outbox):
            kernel.outbox.clear()
            kernel.outbox_at = 0
            self.sel.modify(kernel.chan, selectors.EVENT_READ, ("kernel", kernel))

    def _job(self, family: Family, msg: dict[str, Any], kind: str) -> Job:
        now = time.monotonic()
        return Job(
            id=int(msg["id"]),
            kind=kind,
            family=family,
            output=Output(int(msg.get("max_output", 100_000))),
            deadline=now + float(msg.get("timeout_s", 30.0)),
            grace_s=float(msg.get("grace_s", 0.5)),
            request=msg,
        )

    def _on_kernel(self, kernel: KernelState) -> None:
        """What a kernel sent: read as it comes, never waited for (a kernel that stops in
        the middle of a frame holds up its own call, not the loop), each whole frame
        handled."""
        limit = 8 << 20
        if kernel.job is not None and kernel.job.kind == "python":
            r = kernel.job.request
            limit += (int(r["max_images"]) + 1) * int(r["max_image_bytes"]) * 4 // 3
            limit += int(r["max_result"]) * 4
        kernel.frames.max_frame = limit
        try:
            reports = kernel.frames.feed(wire.recv_available(kernel.chan))
        except BlockingIOError:
            return  # the readiness was stale
        except (wire.ChannelClosedError, OSError, ValueError):
            self._kill_kernel(kernel)
            self._kernel_gone(kernel)
            return
        for report in reports:
            job = kernel.job
            if kernel.owed:
                kernel.owed -= 1  # the answer to ``_reap_for``'s request
                if job is not None and "report" in job.extra:
                    self._cell_done(kernel, job, job.extra["report"])  # its children collected
                continue
            if job is None or self.kernels.get(kernel.kid) is not kernel:
                return  # a kernel speaking out of turn (continued by a sibling): not heard
            if job.kind == "fork":
                self._forked(kernel, job, report)
            else:
                self._cell_done(kernel, job, report)

    def _cell_done(self, kernel: KernelState, job: Job, report: dict[str, Any]) -> None:
        family = kernel.family
        threads, cpu = processes.threads_and_cpu(kernel.pid, kernel.stat)
        if not self._alone(family, kernel, threads) and kernel.alive():
            direct = [c for c in processes.children(kernel.pid) if c not in self.kernel_pids]
            killed = bool(direct) and self._kill_below(kernel.pid)
            self._kill_orphans(family)
            if killed and "report" not in job.extra and self._reap_for(kernel, direct):
                job.extra["report"] = report
                return  # the call ends once the kernel has collected them (``_on_kernel``)
        kernel.send(signal.SIGSTOP)
        self._drain(job, kernel.out, "stdout")
        self._drain(job, kernel.err, "stderr")
        self._busy(kernel, None)
        kernel.cpu_ms = cpu
        reply = self._cell_reply(job, report, threads, cpu - job.cpu_before, alive=True)
        self._freeze_idle(family, but=kernel)
        self._reply(family, reply)

    def _alone(self, family: Family, kernel: KernelState, threads: int) -> bool:
        """True when the family's kernels are all there is of it (its cgroup counts no
        other task): nothing to look for after a call. One ``pread`` (and one per other
        kernel of the family: ``kernel`` has ``threads``)."""
        if family.tasks is None or any(j.family is family for j in self.procs.values()):
            return False
        try:
            count = int(os.pread(family.tasks, 32, 0))
        except (OSError, ValueError):
            return False
        others = [self.kernels[k] for k in family.kernels if k != kernel.kid]
        return count == threads + sum(processes.threads_and_cpu(k.pid, k.stat)[0] for k in others)

    def _cell_reply(
        self, job: Job, report: dict[str, Any], threads: int, cpu: float, alive: bool
    ) -> dict[str, Any]:
        notes = job.extra.get("notes", []) + job.output.notes()
        stdout, stderr = job.output.text("stdout"), job.output.text("stderr")
        r = job.request
        images, dropped = [], []
        reported = report.get("images")
        for image in reported if isinstance(reported, list) else []:
            if len(images) >= int(r["max_images"]):
                break
            checked, why = check_png(image, int(r["max_image_bytes"]))
            if checked is None:
                dropped.append(f"an image was dropped: {why}")
                continue
            if isinstance(image.get("downscaled_from"), list):
                w, h = image["downscaled_from"][:2]
                notes.append(
                    f"image {len(images) + 1} was downscaled from {w}x{h} to "
                    f"{checked['width']}x{checked['height']} to fit the limit of "
                    f"{r['max_image_bytes']} bytes"
                )
            images.append(checked)
        shown = report.get("shown")
        if isinstance(shown, int) and shown > len(images) + len(dropped):
            extra = shown - len(images) - len(dropped)
            dropped.append(
                f"{extra} image(s) were dropped: at most {r['max_images']} are returned per call"
            )
        result = report.get("result")
        max_result = int(r["max_result"]) + 128  # room for the note saying it was cut
        result = result[:max_result] if isinstance(result, str) else None
        error = _checked_error(report.get("error"))
        ended = job.interrupted
        if not alive and ended is None:
            ended = "memory_limit" if self._oom_since(job.family) else "killed"
        return {
            "id": job.id,
            "ok": error is None and ended is None,
            "stdout": stdout,
            "stderr": stderr,
            "output_bytes": sum(job.output.total.values()),
            "truncated": job.output.exceeded,
            "result": result,
            "images": images,
            "images_dropped": dropped,
            "error": error,
            "ended": ended,
            "kernel_alive": alive,
            "threads": threads,
            "elapsed_ms": (time.monotonic() - job.started) * 1000,
            "cpu_ms": cpu,
            "notes": notes,
        }

    def _oom_kills(self, family: Family) -> int:
        """How many processes the OOM killer has killed in the family so far (0 without a
        cgroup of its own)."""
        if not family.cgroup or self.cgroups is None:
            return 0
        return self.cgroups.oom_kills(family.fid)

    def _oom_since(self, family: Family) -> bool:
        """True when the OOM killer has killed in the family since we last looked."""
        seen = family.oom_seen
        return self._oom_seen(family) > seen

    def _oom_seen(self, family: Family) -> int:
        """The family's OOM kills so far, as read now and counted as seen."""
        family.oom_seen = max(family.oom_seen, self._oom_kills(family))
        return family.oom_seen

    def _reap_for(self, kernel: KernelState, pids: list[int]) -> bool:
        """Have the kernel collect the children we just killed (only a parent can; their
        zombies would count against the family's process limit). Its answer is an event of
        the loop (``_on_kernel``), which then ends the call: a kernel that does not answer
        holds up only its own call, until its deadline. False when it could not be asked
        (the call ends now: a kernel that does not read keeps its zombies)."""
        if not self._to_kernel(kernel, wire.encode({"op": "reap", "pids": pids})):
            return False
        kernel.owed += 1
        return True

    def _kernel_gone(self, kernel: KernelState) -> None:
        """The kernel's channel closed: it died (killed by us, a limit, or itself)."""
        job = kernel.job
        self._kill_tree(kernel)
        if job is not None:
            self._drain(job, kernel.out, "stdout")
            self._drain(job, kernel.err, "stderr")
        self._drop_kernel(kernel)
        family = kernel.family
        self._kill_orphans(family)
        if job is None:
            return
        self._busy(kernel, None)
        if job.kind == "fork":
            self._fail(family, job.id, "internal", "the interpreter died while forking")
            return
        reply = self._cell_reply(job, {}, 0, 0.0, alive=False)
        self._freeze_idle(family)
        self._reply(family, reply)

    # ------------------------------------------------------------------ output

    def _on_output(self, fd: int, stream: str, owner: KernelState | Job) -> None:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        job = owner.job if isinstance(owner, KernelState) else owner
        if not data:
            if isinstance(owner, Job):
                self._close_pipe(owner, fd)
                self._maybe_finish(owner)
            else:
                with contextlib.suppress(KeyError, ValueError):
                    self.sel.unregister(fd)
            return
        if job is None:
            return  # stray output of a stopped kernel continued by a sibling
        job.output.add(stream, data)
        if job.output.exceeded and job.interrupted is None and job.kind in ("python", "bash"):
            self._interrupt(job, "output_limit", owner)

    def _drain(self, job: Job, fd: int, stream: str) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while True:
                data = os.read(fd, 1 << 16)
                if data:
                    job.output.add(stream, data)
                if len(data) < 1 << 16:
                    return  # that read emptied the pipe

    # ------------------------------------------------------------------ deadlines

    def _timers(self) -> None:
        now = time.monotonic()
        if any(isinstance(e, Job) and now >= e.deadline for e in self.births):
            self._forked_all()  # a job out of time is killed by its pid
        for server in list(self.case_servers.values()):
            if server.waiting and now >= server.waiting[0].deadline:
                self._drop_case_server(server)  # it named no pid in time: it is stuck
        for kernel in list(self.busy.values()):
            job = kernel.job
            if job is None:
                continue
            if job.watch_at is not None and now >= job.watch_at:
                self._watch_output(kernel)
            if job.kill_at is not None and now >= job.kill_at:
                self._kill_kernel(kernel)  # its channel closes: _kernel_gone answers
                job.kill_at = None
            elif job.interrupted is None and now >= job.deadline:
                self._interrupt(job, "timeout", kernel)
        for job in list(self.procs.values()):
            if job.interrupted is None and now >= job.deadline:
                self._interrupt(job, "timeout", job)
        for egg in list(self.hatching.values()):
            if now >= egg.deadline and self._born_pid(egg):
                where = processes.state_of(egg.pid)
                self._addled(egg, f"no hello in time (it was {where})")
        if now >= self.last_sweep + SWEEP_INTERVAL_S:
            self._sweep_strays()

    def _interrupt(self, job: Job, why: str, owner: KernelState | Job) -> None:
        """Stop a job that ran out of time or output: a cell is interrupted (it keeps its
        state if it stops within the grace period, else the kernel is killed); a process
        is killed with everything it started."""
        job.interrupted = why
        if isinstance(owner, KernelState):
            if job.kind == "fork":
                job.kill_at = time.monotonic()
                return
            owner.send(signal.SIGINT)
            job.kill_at = time.monotonic() + job.grace_s
        elif job.pid is not None and (why == "timeout" or job.kind == "bash"):
            self._sweep([job.pid], None, charge=job if job.kind == "run" else None)
            _signal(job.pid, signal.SIGKILL)

    def _sweep_strays(self) -> None:
        """Every second: kill processes that came back to us (orphans) and belong to no
        live family — what was left of an ended one."""
        self.last_sweep = time.monotonic()
        self._forked_all()  # a child whose pid is not read yet is no stray
        for fid in list(self.ending):
            with contextlib.suppress(OSError):
                if self.cgroups is None or self.cgroups.remove(fid, within_s=0):
                    del self.ending[fid]
        known = self.kernel_pids | set(self.procs)
        for server in (self.forker, self.case_forker):
            if server is not None:
                known.add(server.pid)
        live = {f.conf.uid for f in self.families.values()}
        with processes.one_scan():
            ours = processes.children(os.getpid())
            strays = [p for p in ours if p not in known and processes.uid_of(p) not in live]
        # a doomed pid is dropped once reaped; one that died as another's child (an ended
        # server's, which reaped it itself) is not ours to reap: dropped here, long before
        # its pid could be given again
        self.doomed.intersection_update(ours)
        for pid in strays:
            processes.kill_tree(pid)

    # ------------------------------------------------------------------ processes

    def _reap(self) -> None:
        while True:
            uid = None
            try:
                if self.orphans_come_back:
                    seen = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                    if seen is None:
                        return
                    uid = seen.si_uid
                    pid, status, usage = os.wait4(seen.si_pid, os.WNOHANG)
                else:
                    pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            ended_job = pid in self.doomed  # a job's, ended at its exit event
            self.doomed.discard(pid)
            if pid not in self.procs and any(isinstance(e, Job) for e in self.births):
                self._forked_all()  # a job's process can stop before its pid is read
            job = self.procs.get(pid)
            if job is not None and os.WIFSTOPPED(status):
                self._traced(job, pid, status)
            elif job is not None:
                job.status, job.usage = status, usage
                self._kill_below(pid)
                self._kill_orphans(job.family)
                self._maybe_finish(job)
            elif pid in self.kernel_pids:
                for kernel in self.kernels.values():
                    if kernel.pid == pid:
                        kernel.exit_status = status
            elif uid is not None and not ended_job and not os.WIFSTOPPED(status):
                if pid in self.swept:
                    self.swept.discard(pid)
                else:
                    self._orphan_ended(uid, usage)

    def _orphan_ended(self, uid: int, usage: Any) -> None:
        """An orphan of a family (its uid) reaped here, where programs cannot be subreapers:
        its CPU time is charged to the family's oldest running program (a judge's cases are
        all one program), as it would be had the program's sweep found it (``_charge``)."""
        runs = [j for j in self.procs.values() if j.kind == "run" and j.family.conf.uid == uid]
        if runs:
            _add_left_cpu(
                min(runs, key=lambda j: j.started), (usage.ru_utime + usage.ru_stime) * 1000
            )

    def _traced(self, job: Job, pid: int, status: int) -> None:
        """A stop of a traced process (bash, programs). At its exit event — before the
        kernel hands its children to a new parent and before we hear of its death — every
        other process of the job is stopped and killed: nothing the process left behind can
        write, print or run once it has ended, however fast it is."""
        event, sig = status >> 16, os.WSTOPSIG(status)
        inject = 0
        if event == jail.PTRACE_EVENT_EXIT:
            # first, before anything is read: what is still in its process group (the
            # children that did not leave it, the common case) stops at once, where the
            # sweep's pass over /proc takes milliseconds (tens under gVisor, which has no
            # children files); the exiting process drops the signal. Nothing is continued
            # after the sweep: a process not below it that joined the group (setpgid needs
            # only the same session) chose to, and a group SIGCONT would also wake a frozen
            # kernel that had joined it between calls
            processes.signal_group(pid, signal.SIGSTOP)
            # its peak memory, read while its memory still exists: after an exec, wait4's
            # figure would still count the template it was forked from
            read = processes.status_fields(pid, ("VmHWM", "PPid"))
            job.extra.update(peak_kb=read.get("VmHWM"), parent=read.get("PPid"))
            self._sweep([pid], job.family, charge=job if job.kind == "run" else None)
            if job.kind == "run":
                self._exiting(job, pid)
        elif event == 0 and not job.extra.get("traced"):
            job.extra["traced"] = True  # the first stop, raised by the child itself
            with contextlib.suppress(OSError):
                jail.ptrace(jail.PTRACE_SETOPTIONS, pid, TRACE_OPTIONS)
        elif event == 0:
            inject = sig  # a signal on its way to the process: deliver it
        with contextlib.suppress(OSError):
            jail.ptrace(jail.PTRACE_CONT, pid, inject)

    def _exiting(self, job: Job, pid: int) -> None:
        """A program at its exit event, everything it left killed: if it is exiting (not
        killed) with no other thread, its job ends now — status from the event, CPU and
        peak memory from /proc, output drained (its pipes hold all it wrote) — instead of
        once the operating system has torn its address space down (milliseconds for a
        process of the warm template). Its death is reaped later, for no job."""
        try:
            status = jail.ptrace_event_message(pid)
        except OSError:
            return
        threads, cpu = processes.threads_and_cpu(pid, reaped=True)
        peak_kb = job.extra.get("peak_kb")  # read at this event (``_traced``)
        if not os.WIFEXITED(status) or threads != 1 or peak_kb is None:
            return
        job.status = status
        job.usage = ExitUsage(cpu / 1000, peak_kb)
        # Until reaped it is no orphan of its family's (whose sweeps would charge it to
        # another program): where it is our child, as all but a case server's case are (or
        # a case whose server ended; a live server's are reaped there)
        if not job.extra.get("server") or job.extra.get("parent") == os.getpid():
            self.doomed.add(pid)
        self._maybe_finish(job)

    def _maybe_finish(self, job: Job) -> None:
        """A process job is done once it has exited; its pipes are drained then (what is
        still open is held by processes just killed)."""
        if job.status is None or job.pid not in self.procs:
            return
        for fd, stream in list(job.pipes.items()):
            self._drain(job, fd, stream)
            self._close_pipe(job, fd)
        del self.procs[job.pid]
        if job.kind == "bash":
            self._bash_done(job)
        else:
            self._run_done(job)
        self._freeze_idle(job.family)

    def _close_pipe(self, job: Job, fd: int) -> None:
        if job.pipes.pop(fd, None) is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(fd)
            os.close(fd)

    def _start_process(
        self,
        job: Job,
        stdin: int,
        cwd: str,
        env: dict[str, str],
        birth: dict[str, Any],
        memory_bytes: int = 0,
        warm: bool = False,
    ) -> None:
        """Start a confined, traced process of the job's family that runs ``birth`` (a
        Python program in the warm interpreter, or ``argv`` executed, in ``then_cwd`` when
        that is a directory) in a fork of the template — or, for a program where the exec
        shim is built, spawns the shim, which does the same and execs it; its pipes are the
        job's."""
        family = job.family
        out_r, out_w = _pipe()
        err_r, err_w = _pipe()
        job.oom_before = self._oom_kills(family)
        pid = 0
        if birth["run"] == "exec" and self.shim is not None:
            pid = self._spawn_shim(family, (stdin, out_w, err_w), cwd, env, birth["argv"],
                                   birth.get("then_cwd"), memory_bytes)  # fmt: skip
        if not pid:
            try:
                pid = self._new_process(family, {**birth, "cwd": cwd, "env": env,
                                          "memory_bytes": memory_bytes, "warm": warm},
                                 [stdin, out_w, err_w], later=job)  # fmt: skip
            except BaseException:
                for fd in (out_r, out_w, err_r, err_w):
                    _close(fd)
                raise
        for fd in (out_w, err_w):
            os.close(fd)
        job.started = time.monotonic()
        job.pipes = {out_r: "stdout", err_r: "stderr"}
        if pid:  # else the fork server's answer names it (``_clone_answered``)
            job.pid = pid
            self.procs[pid] = job
        for fd, stream in job.pipes.items():
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, (stream, job))

    def _spawn_shim(
        self,
        family: Family,
        stdio: tuple[int, int, int],
        cwd: str,
        env: dict[str, str],
        argv: list[str],
        then_cwd: str | None,
        memory_bytes: int,
    ) -> int:
        """``posix_spawn`` the exec shim for a program: the steps of ``_enter`` and
        ``children.enter`` (the same order, the same limits) without copying this process.
        Its descriptors are passed by number (a dup2 onto itself clears close-on-exec in
        the spawned process only); it closes them before the program runs. 0 if it could
        not be spawned (from then on programs are forked)."""
        assert self.shim is not None
        conf = family.conf
        ns_fds = []
        if family.root.namespaces and self.namespaces is not None:
            ns_fds = [family.root.namespaces[name] for name, _ in Namespaces.KINDS]
        cgroup = self._cgroup_name(family)
        memory = memory_bytes or conf.limits.memory_bytes
        args = [self.shim, *jail.ns_words(ns_fds, self._jail_root()),
                *self._words(conf.uid, conf.limits, cgroup, cwd, memory)]  # fmt: skip
        passed = list(ns_fds)
        if cgroup and self.cgroups is not None:
            passed += self.cgroups.fds.values()
        if self.seccomp_fd >= 0:
            passed.append(self.seccomp_fd)
        if then_cwd is not None:
            args.append(f"then={then_cwd}")
        args += ["--", *argv]
        actions = [(os.POSIX_SPAWN_DUP2, fd, fd) for fd in passed]
        actions += [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(stdio)]
        try:
            return os.posix_spawn(
                self.shim, args, env, file_actions=actions, setpgroup=0,
                setsigdef=DEFAULT_SIGNALS,
            )  # fmt: skip
        except ValueError:
            return 0  # a NUL in an argument or a bad variable name: the fork says so (126)
        except OSError as exc:
            print(f"supervisor: the exec shim failed ({exc!r}), programs are forked",
                  file=sys.stderr, flush=True)  # fmt: skip
            self.shim = None
            return 0

    def _outcome(self, job: Job) -> dict[str, Any]:
        """How a process job ended, from the supervisor's own records."""
        status = job.status or 0
        signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        usage = job.usage
        cpu = (usage.ru_utime + usage.ru_stime) * 1000 - job.cpu_before if usage else 0.0
        cpu += job.extra.get("left_cpu_ms", 0.0)  # what it left behind ran (``_sweep``)
        rss = usage.ru_maxrss * 1024 if usage else 0
        if job.extra.get("warm"):
            rss = max(0, rss - self.base_rss)  # the template's pages are not the program's
        elif job.extra.get("peak_kb"):
            rss = int(job.extra["peak_kb"]) * 1024  # an exec'd program's own peak
        # Killed by the OOM killer if it has killed in the family since this process began:
        # each process against its own count, never one the family's processes consume (a
        # judge's cases run at once: one that ended, or began, between another's kill and
        # its end took that kill, and the killed case was told "killed", not crowded out).
        oom = signum == signal.SIGKILL and self._oom_seen(job.family) > job.oom_before
        stdout, stderr = job.output.text("stdout"), job.output.text("stderr")
        return {
            "exit_code": code,
            "signal": signum,
            "timed_out": job.interrupted == "timeout",
            "output_limit": job.output.exceeded,
            "memory_limit": oom,
            "elapsed_ms": (time.monotonic() - job.started) * 1000,
            "cpu_ms": cpu,
            "max_rss_bytes": rss,
            "stdout": stdout,
            "stderr": stderr,
            "stdout_bytes": job.output.total["stdout"],
            "stderr_bytes": job.output.total["stderr"],
            "truncated": job.output.exceeded,
            "notes": job.output.notes() + _left_note(job.extra.get("left_running", 0)),
        }

    # ------------------------------------------------------------------ bash

    def _bash_state(self, kernel: KernelState) -> tuple[int, str]:
        """The kernel's bash state directory: (the family's root, its name there)."""
        return kernel.family.root.box, f".bash-{kernel.kid}"

    def _bash(self, family: Family, msg: dict[str, Any]) -> None:
        kernel = self._kernel(family, msg)
        if kernel is None:
            return
        job = self._job(family, msg, "bash")
        job.extra["kernel"] = kernel
        box, state = self._bash_state(kernel)
        for name in ("cwd", "env"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{state}/{name}", dir_fd=box)
        cwd = kernel.bash_cwd
        env = {**kernel.bash_env, "__TF_STATE": f"{family.root.view.rstrip('/')}/{state}"}
        script = STATE_TRAP + str(msg["command"])

        # in the command's last directory, else (gone) the kernel's workspace
        birth = {"run": "exec", "argv": [BASH, "-c", script], "then_cwd": cwd}
        self._start_process(job, self.devnull, kernel.workspace, env, birth)

    def _bash_done(self, job: Job) -> None:
        kernel: KernelState = job.extra["kernel"]
        box, state = self._bash_state(kernel)
        try:
            with files.opened_directory(box, state) as directory:
                cwd = files.read_file(directory, "cwd", 8192).decode(errors="replace").strip()
                raw = files.read_file(directory, "env", MAX_STATE_BYTES)
        except files.FileRefused:
            pass  # the command replaced the shell (exec) or removed the state: keep the old
        else:
            kernel.bash_cwd = cwd or kernel.bash_cwd
            pairs = [p.split(b"=", 1) for p in raw.split(b"\0") if b"=" in p]
            env = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}
            for name in ("__TF_STATE", "SHLVL", "_", "OLDPWD", "PWD"):
                env.pop(name, None)
            kernel.bash_env = env
        outcome = self._outcome(job)
        self._reply(job.family, {"id": job.id, "ok": outcome["exit_code"] == 0,
                                 "cwd": kernel.bash_cwd, **outcome})  # fmt: skip

    # ------------------------------------------------------------------ programs

    def _run(self, family: Family, msg: dict[str, Any]) -> None:
        brought = self.artifacts.keep(msg.get("store") or {})
        stored, missing = self.artifacts.take(msg.get("stored") or {}, brought)
        if missing:  # asked before anything is made: the service sends them and asks again
            self._fail(family, int(msg["id"]), "artifact_missing", " ".join(missing))
            return
        kernel = None
        if "python" in msg and msg.get("kernel"):  # a fresh kernel to become the program
            kernel = self._kernel(family, msg)
            if kernel is None:
                return
        job = self._job(family, msg, "run")
        cwd = str(
            msg.get("cwd")
            or (kernel.workspace if kernel else new_workspace(family.root, family.conf.uid))
        )
        skipped = []
        sent = [(path, data) for path, data in (msg.get("files") or {}).items() if data is not None]
        for path, data in [*sent, *stored.items()]:  # base64 strings, then the held bytes
            where = self._where(family, cwd, path)
            if where is None:
                skipped.append(f"{path} was not written: only the working directory, /tmp and "
                               "/mnt are writable")  # fmt: skip
                continue
            try:
                raw = data if isinstance(data, bytes) else base64.b64decode(data)
                files.write_file(where[0], where[1], raw, family.conf.uid, _mode(raw))
            except (files.FileRefused, binascii.Error, ValueError) as exc:
                skipped.append(f"{path} was not written: {exc}")
        job.extra.update(cwd=cwd, skipped=skipped)
        stdin = self._stdin(family, msg.get("stdin") or "")
        env = {**self._env(family, cwd), **(msg.get("env") or {})}
        memory = int(msg.get("memory_bytes") or 0)
        if "python" in msg:
            script = str(msg.get("script") or "main.py")
            where = self._where(family, cwd, script)
            if where is not None:
                files.write_file(where[0], where[1], str(msg["python"]).encode(), family.conf.uid)
            source, args = str(msg["python"]), [str(a) for a in msg.get("args") or []]
            job.extra["warm"] = True
            if kernel is not None and self._become_program(job, kernel, stdin, memory, script):
                return
            compiled = self._compiled(script, source)  # then its child needs no source
            birth = {"run": "python", "script": script, "source": "" if compiled else source,
                     "args": args, "compiled": compiled}  # fmt: skip
            if compiled and msg.get("case_server"):
                job.extra["birth"] = (stdin, cwd, env, birth, memory)
                server = self._case_server(family, script, source, compiled, memory)
                if server is not None and self._send_case(server, job):
                    return  # its stdin, kept for a fallback, is closed once it is traced
                del job.extra["birth"]
        else:
            birth = {"run": "exec", "argv": [str(a) for a in msg["argv"]]}
        try:
            self._start_process(job, stdin, cwd, env, birth, memory, "python" in msg)
        finally:
            os.close(stdin)

    def _run_cases(self, family: Family, msg: dict[str, Any]) -> None:
        """A judge's cases from one request: each run as its own ``run`` request would be
        (a new directory, its process traced, its output read here), ``parallel`` at a
        time; its record checked here against its expected output, so that with
        ``stop_on_failure`` no case starts after a failure. One answer, every case's record
        (or why it was skipped). Saves the service a request and a reply per case."""
        cases = [c if isinstance(c, dict) else {} for c in msg.pop("cases", None) or []]
        base = {k: v for k, v in msg.items() if k not in ("parallel", "stop_on_failure",
                "compare", "tolerance", "time_limit_s", "wall_limit_s", "budget_s",
                "shown_chars")}  # fmt: skip
        batch = CaseBatch(
            int(msg["id"]), family, base, collections.deque(enumerate(cases)),
            [None] * len(cases), time.monotonic() + float(msg["budget_s"]),
            max(1, int(msg.get("parallel") or 1)), float(msg["time_limit_s"]),
            float(msg.get("wall_limit_s") or msg["time_limit_s"]),
            bool(msg.get("stop_on_failure", True)), str(msg.get("compare") or "whitespace"),
            float(msg.get("tolerance") or 0.0), int(msg.get("shown_chars") or 2000),
        )  # fmt: skip
        batch.most = batch.parallel
        self._more_cases(batch)

    def _more_cases(self, batch: CaseBatch) -> None:
        """Start the batch's next cases (up to ``parallel`` at once); answer once all have
        ended."""
        family = batch.family
        if batch.filling or self.families.get(family.fid) is not family:
            return
        batch.filling = True
        try:
            while batch.running < batch.parallel and batch.pending:
                left = batch.deadline - time.monotonic()
                if batch.failed and batch.stop_on_failure:
                    batch.skip_rest("an earlier case failed")
                elif left < 0.2:
                    batch.skip_rest("the judge ran out of time")
                else:
                    self._start_case(batch, min(batch.wall_limit_s, left))
        finally:
            batch.filling = False
        if not batch.running and not batch.pending and self.families.get(family.fid) is family:
            self._reply(family, {"id": batch.id, "ok": True, "cases": batch.results})

    def _start_case(self, batch: CaseBatch, timeout_s: float) -> None:
        """The batch's next case, as a ``run`` request of its own (an id below 0: its
        answer is the batch's, ``_reply``)."""
        index, case = batch.pending.popleft()
        rid, self.next_batched = self.next_batched, self.next_batched - 1
        args = [str(a) for a in case.get("args") or []]
        sub = case_run(batch.base, str(case.get("stdin") or ""), args)
        sub.update(op="run", id=rid, timeout_s=timeout_s)
        self.batched[rid] = (batch, index, case)
        batch.running += 1
        batch.overlap.start(index)
        self._request(batch.family, sub)  # its end may be answered at once

    def _case_done(
        self, batch: CaseBatch, index: int, case: dict[str, Any], reply: dict[str, Any]
    ) -> None:
        batch.running -= 1
        shared = batch.overlap.end(index)
        if shared and not batch.own_doing and crowded(reply, batch.time_limit_s):
            # Ended by what the cases running at once share (memory, CPUs): not its
            # verdict. It runs again alone, and the cases after it one at a time, until
            # one run alone fails as it had among others (then the failures are its own).
            batch.parallel = 1
            batch.alone.add(index)
            batch.pending.appendleft((index, case))
        else:
            if index in batch.alone and not shared:
                reply["rerun_alone"] = True
                if crowded(reply, batch.time_limit_s):
                    batch.own_doing, batch.parallel = True, batch.most
            expected = case.get("expected")
            if batch.settle(reply, None if expected is None else str(expected)):
                batch.failed = True
            batch.results[index] = reply
        if batch not in self.to_fill:
            self.to_fill.append(batch)

    def _compiled(self, script: str, source: str) -> str | None:
        """``source`` compiled as the file ``script``, marshalled (base64), once for all its
        runs here: a judge's cases, a resubmitted program. Loading it costs a forked child
        less than compiling it (~0.3 ms of a judge case's CPU). None — the child compiles
        it — for a long source (compiled here, it would hold up every family's calls for
        milliseconds: a 16 KiB source compiles in a few), and
        for one that does not compile or warns: the child compiles it and says so on the
        program's stderr, as ``python`` would. Compiling runs none of its code."""
        if len(source) > COMPILED_MAX_CHARS:
            return None
        key = (script, source)
        if key in self.compiled:
            self.compiled.move_to_end(key)
            return self.compiled[key]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a warning: the child shows it
                code = compile(source, script, "exec", dont_inherit=True)
            blob: str | None = base64.b64encode(marshal.dumps(code)).decode()
        except Exception:  # SyntaxError, ValueError (a NUL), RecursionError, MemoryError...
            blob = None
        self.compiled[key] = blob
        while len(self.compiled) > COMPILED_KEPT:
            self.compiled.popitem(last=False)
        return blob

    # ------------------------------------------------------------------ case servers

    def _case_server(
        self, family: Family, script: str, source: str, compiled: str, memory: int
    ) -> CaseServer | None:
        """The family's case server for this program (started with its first case), or None
        where cases are forked from the template (no libconfine, or a case could not be
        traced here)."""
        if self.case_servers_fail or self.confine is None:
            return None
        key = (family.fid, script, source, memory)
        server = self.case_servers.get(key)
        if server is not None:
            return server
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sink = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        workspace = new_workspace(family.root, family.conf.uid)
        env = self._env(family, workspace)
        birth = {"run": "cases", "cwd": workspace, "env": env, "script": script,
                 "compiled": compiled, "memory_bytes": memory}  # fmt: skip
        fds = [self.devnull, sink, sink, theirs.fileno()]
        try:
            pid = self._lean_case_server(family, birth, fds, compiled)
            if pid is None:
                pid = self._new_process(family, birth, fds)
        except (OSError, ValueError, ForkRefused):
            ours.close()
            return None
        finally:
            theirs.close()
            os.close(sink)
        ours.settimeout(KERNEL_IO_TIMEOUT_S)
        server = CaseServer(key, family, pid, ours, env)
        self.case_servers[key] = server
        self.kernel_pids.add(pid)  # spared by sweeps, as kernels are
        self.sel.register(ours, selectors.EVENT_READ, ("cases", server))
        return server

    def _lean_case_server(
        self, family: Family, birth: dict[str, Any], fds: list[int], compiled: str
    ) -> int | None:
        """A case server from the case forker (``case_forker.py``), for a program that imports
        none of the template's preloads: its pid. None where the template forks it: another
        program, or no case forker (it broke: from now on, none)."""
        if self.case_forker is None:
            return None
        code = marshal.loads(base64.b64decode(compiled))
        if {name.split(".")[0] for name in cases.imported(code)} & self.preloaded:
            return None
        birth, fds = self._prepared(
            family, {**birth, "jail_root": self._jail_root()}, fds, self.case_forker_vm
        )
        try:
            self.case_forker.ask(birth, fds)
            return self.case_forker.answer()
        except ForkRefused:
            raise
        except (OSError, ValueError) as exc:
            print(f"supervisor: the case forker failed ({exc!r}): case servers are forked "
                  "from the template", file=sys.stderr, flush=True)  # fmt: skip
            self.case_forker.close()
            _signal(self.case_forker.pid, signal.SIGKILL)
            self.case_forker = None
            return None

    def _send_case(self, server: CaseServer, job: Job) -> bool:
        """Hand a case to its server: its stdin, new output pipes, and the pipe its process
        waits on until it is traced. False (nothing sent) if the server is gone, or cannot
        be given the case (a NUL in its arguments)."""
        stdin, cwd, env, birth, _ = job.extra["birth"]
        try:
            frame = wire.frame(cases.request(cwd, birth["args"], env, server.env))
        except ValueError:
            return False
        out_r, out_w = _pipe()
        err_r, err_w = _pipe()
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        try:
            wire.send_frame(server.chan, frame, [stdin, out_w, err_w, go_r])
        except OSError:
            for fd in (out_r, err_r, go_w):
                _close(fd)
            self._drop_case_server(server)
            return False
        finally:
            for fd in (out_w, err_w, go_r):
                _close(fd)
        job.extra["go"] = go_w
        job.oom_before = self._oom_kills(job.family)
        job.started = time.monotonic()
        job.pipes = {out_r: "stdout", err_r: "stderr"}
        for fd, stream in job.pipes.items():
            self.sel.register(fd, selectors.EVENT_READ, (stream, job))
        server.waiting.append(job)
        return True

    def _case_answered(self, server: CaseServer) -> None:
        """The case server named the pid of the case it forked: checked (its child, of the
        family's uid, no process we know), traced, then let go to run the program."""
        try:
            reply, fds = wire.recv(server.chan, max_frame=4096)
        except (wire.ChannelClosedError, OSError, ValueError):
            self._drop_case_server(server)
            return
        for fd in fds:
            _close(fd)
        if not server.waiting:
            self._drop_case_server(server)  # it spoke unasked
            return
        job = server.waiting.popleft()
        pid = reply.get("pid")
        valid = isinstance(pid, int) and pid > 0
        known = not valid or pid in self.procs or pid in self.kernel_pids
        uid = server.family.conf.uid
        handle = None if known else processes.child_handle(pid, server.pid, uid)
        if handle is None:
            self._case_fallback(job)  # it could not fork, or named another process
            self._drop_case_server(server)
            return
        try:
            jail.ptrace(jail.PTRACE_SEIZE, pid, TRACE_OPTIONS)
        except OSError:  # gVisor lets a tracer seize only its own children
            _send(pid, handle, signal.SIGKILL)
            self.case_servers_fail = True  # not traceable here: cases are forked from now on
            self._case_fallback(job)
            self._drop_case_server(server)
            return
        finally:
            if handle >= 0:  # -1: no pidfds (gVisor)
                os.close(handle)
        job.pid = pid
        job.extra.update(traced=True, server=server.pid)
        self.procs[pid] = job
        go = job.extra.pop("go")
        with contextlib.suppress(OSError):
            os.write(go, b"g")
        _close(go)
        _close(job.extra.pop("birth")[0])  # its stdin: the process has its own

    def _case_fallback(self, job: Job) -> None:
        """A case its server did not run: it runs as any program, forked from the template."""
        for fd in list(job.pipes):
            self._close_pipe(job, fd)
        _close(job.extra.pop("go", -1))
        stdin, cwd, env, birth, memory = job.extra.pop("birth")
        try:
            if job.family.fid in self.families:
                self._start_process(job, stdin, cwd, env, birth, memory, True)
        except Exception as exc:
            self._fail(job.family, job.id, "internal", f"run failed in the supervisor: {exc!r}")
        finally:
            _close(stdin)

    def _drop_case_server(self, server: CaseServer) -> None:
        """End a case server (its family ended, it died, failed or lied): the cases it named
        no pid for run as any program."""
        if self.case_servers.pop(server.key, None) is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(server.chan)
        server.chan.close()
        self.kernel_pids.discard(server.pid)
        _signal(server.pid, signal.SIGKILL)  # our child: its pid is not reused before we reap
        self.doomed.add(server.pid)
        self._sweep_unnamed(server)
        while server.waiting:
            self._case_fallback(server.waiting.popleft())

    def _sweep_unnamed(self, server: CaseServer) -> None:
        """The cases an ended server forked but did not name to us (each waits to be traced,
        before its program): killed, charged to nobody. Its children until it is reaped,
        then the family's orphans (ours): swept here, not by a sweep of another case, which
        would count them as left running by that case."""
        spare = self.kernel_pids | set(self.procs)
        found: set[int] = set()
        for _ in range(200):
            seen = {p for p in processes.children(server.pid) if p not in spare}
            seen.update(self._orphans(server.family, spare))
            if seen <= found:
                break
            found |= seen
        for pid in found:
            _signal(pid, signal.SIGKILL)
        self.doomed |= found

    def _drop_ended_case_servers(self, family: Family) -> None:
        """Drop the family's case servers that have ended (a case killed one: our child, it
        is a zombie until reaped, its children ours already) before the family's orphans
        are looked for: the cases it had not named to us (a pid it sent may be unread) are
        its, not the orphans of whichever case is swept next."""
        for server in [c for c in self.case_servers.values() if c.family is family]:
            try:
                ended = os.waitid(os.P_PID, server.pid, EXITED_NOT_REAPED) is not None
            except ChildProcessError:
                ended = True
            if ended:
                self._drop_case_server(server)

    def _become_program(
        self, job: Job, kernel: KernelState, stdin: int, memory: int, script: str
    ) -> bool:
        """Run a Python program in a fresh kernel of the family (one that has run nothing of
        the model's): it is already forked, confined and warm, so the run costs no fork. The
        kernel stops being one: traced from now on (``PTRACE_SEIZE``, the options a program
        gets), its pipes the job's, its channel closed once the program is handed over, so
        its exit status, time and output come from our records as for any process job.
        False (nothing changed) if it cannot be traced: the caller forks instead."""
        family, pid = job.family, kernel.pid
        _signal(pid, signal.SIGCONT)  # it waits on its channel, stopped as idle kernels are
        try:
            jail.ptrace(jail.PTRACE_SEIZE, pid, TRACE_OPTIONS)
        except OSError:
            _signal(pid, signal.SIGSTOP)
            return False
        self.kernels.pop(kernel.kid, None)
        self.kernel_pids.discard(pid)
        family.kernels.discard(kernel.kid)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(kernel.chan)
        job.pipes = {kernel.out: "stdout", kernel.err: "stderr"}
        for fd, stream in job.pipes.items():
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(fd)
            self.sel.register(fd, selectors.EVENT_READ, (stream, job))
        # what it used before the program, read now (its figure of its last call is older:
        # a kernel born for this family has warmed up since), waited-for children included
        # as in the figures of its end (``wait4``, ``_exiting``)
        cpu_before = processes.threads_and_cpu(pid, kernel.stat, reaped=True)[1]
        for fd in (kernel.stat, kernel.handle):
            if fd >= 0:
                _close(fd)
        job.oom_before = self._oom_kills(family)
        job.extra["traced"] = True
        job.pid, job.cpu_before, job.started = pid, cpu_before, time.monotonic()
        self.procs[pid] = job
        limit = family.conf.limits.memory_bytes
        request = {
            "op": "program",
            "cwd": job.extra["cwd"],
            "script": script,
            "source": str(job.request["python"]),
            "args": [str(a) for a in job.request.get("args") or []],
            "address_space": self.base_vm + memory if 0 < memory < limit else 0,
        }
        try:
            kernel.chan.settimeout(KERNEL_IO_TIMEOUT_S)  # a fresh kernel: it reads
            wire.send(kernel.chan, request, [stdin])
        except OSError:
            _signal(pid, signal.SIGKILL)  # reaped as the job's process: it ends the job
        finally:
            kernel.chan.close()
            os.close(stdin)
        return True

    def _stdin(self, family: Family, text: str) -> int:
        """A descriptor reading ``text``: an unlinked file in the family's tmpfs (no pipe to
        keep fed, any size the family's disk holds)."""
        if not text:
            return os.dup(self.devnull)
        name = f".stdin-{time.monotonic_ns()}"
        box = family.root.box
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=box)
        try:
            os.unlink(name, dir_fd=box)
            view = memoryview(text.encode(errors="surrogatepass"))
            while view:
                view = view[os.write(fd, view) :]
            os.lseek(fd, 0, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _where(self, family: Family, cwd: str, path: str) -> tuple[int, str] | None:
        """Where a program's file may go: the run's directory (relative paths), or the
        family's root, /tmp or /mnt where they are its own."""
        return family.root.where(path if path.startswith("/") else f"{cwd}/{path}")

    def _run_done(self, job: Job) -> None:
        outcome = self._outcome(job)
        family = job.family
        cwd = job.extra["cwd"]
        fetched, missing = {}, []
        for path in job.request.get("fetch") or []:
            where = self._where(family, cwd, str(path))
            try:
                if where is None:
                    raise files.FileRefused("permission_denied", "not in the run's directories")
                data = files.read_file(where[0], where[1], family.conf.limits.file_bytes)
                fetched[str(path)] = base64.b64encode(data).decode()
            except files.FileRefused as exc:
                missing.append(f"{path}: {exc}")
        outcome["notes"] = job.extra["skipped"] + outcome["notes"]
        self._reply(
            family,
            {
                "id": job.id,
                "ok": outcome["exit_code"] == 0 and not outcome["timed_out"],
                "cwd": cwd,
                "files": fetched,
                "missing": missing,
                **outcome,
            },
        )

    # ------------------------------------------------------------------ forks

    def _fork(self, family: Family, msg: dict[str, Any]) -> None:
        kernel = self._kernel(family, msg)
        if kernel is None:
            return
        job = self._job(family, {**msg, "timeout_s": FORK_TIMEOUT_S}, "fork")
        workspace = new_workspace(family.root, family.conf.uid)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = _pipe()
        err_r, err_w = _pipe()
        job.extra.update(chan=ours, out=out_r, err=err_r, workspace=workspace)
        self._busy(kernel, job)
        try:
            request = {"op": "fork", "workspace": workspace}
            self._send_continued(kernel, request, [theirs.fileno(), out_w, err_w])
        finally:
            theirs.close()
            os.close(out_w)
            os.close(err_w)

    def _forked(self, kernel: KernelState, job: Job, report: dict[str, Any]) -> None:
        kernel.send(signal.SIGSTOP)
        self._busy(kernel, None)
        family = kernel.family
        x = job.extra
        pid = report.get("pid")
        try:
            if not isinstance(pid, int) or pid <= 0:
                raise ConnectionError(f"the interpreter could not fork: {report.get('error')}")
            known = pid in self.procs or pid in self.kernel_pids  # a job's, or a kernel
            handle = None if known else processes.child_handle(pid, kernel.pid, family.conf.uid)
            if handle is None:
                raise ConnectionError(f"the kernel named pid {pid} as its fork, which is not "
                                      "a process of this session")  # fmt: skip
            old = kernel.workspace

            def moved(value: str) -> str:
                return x["workspace"] + value[len(old) :] if value.startswith(old) else value

            env = {k: moved(v) for k, v in kernel.bash_env.items()}
        except (OSError, ConnectionError, ValueError) as exc:
            x["chan"].close()
            for fd in (x["out"], x["err"]):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fail(family, job.id, "internal", str(exc))
            return
        # taken in when it says hello (``_hatched``), an event of the loop: a fork that
        # never does (its parent is model code) holds up nothing but its own request
        egg = Hatching(
            job.id, family, x["chan"], x["out"], x["err"], pid, x["workspace"], env,
            time.monotonic() + HELLO_TIMEOUT_S, moved(kernel.bash_cwd), handle,
        )  # fmt: skip
        self.kernel_pids.add(pid)
        self.hatching[egg.chan.fileno()] = egg
        self.sel.register(egg.chan, selectors.EVENT_READ, ("hello", egg))
        if _readable(egg.chan):
            self._hatched(egg)  # it has said it already (a turn of the loop less)

    # ------------------------------------------------------------------ files

    def _files(self, family: Family, msg: dict[str, Any]) -> None:
        kernel = self._kernel(family, msg, idle=False)
        if kernel is None:
            return
        rid, op = msg["id"], msg["op"]
        where = family.root.where(kernel.workspace)
        try:
            if where is None:
                raise files.FileRefused("not_found", "the session's working directory is gone")
            with files.opened_directory(*where) as workspace:
                if op == "list_files":
                    # names that are not UTF-8 come as surrogate escapes: the service says so
                    listed, cut = files.list_files(workspace)
                    reply: dict[str, Any] = {"files": listed, "truncated": cut}
                elif op == "read_file":
                    data = files.read_file(workspace, str(msg["path"]), int(msg["max_bytes"]))
                    reply = {"size": len(data), "data": base64.b64encode(data).decode()}
                else:
                    raw = base64.b64decode(str(msg.get("data") or ""))
                    path = files.write_file(workspace, str(msg["path"]), raw, family.conf.uid)
                    reply = {"path": path, "size": len(raw)}
        except files.FileRefused as exc:
            self._fail(family, rid, exc.kind, str(exc))
            return
        self._reply(family, {"id": rid, "ok": True, **reply})

    # ------------------------------------------------------------------ a family's processes

    def _kill_below(self, pid: int) -> int:
        """Kill everything ``pid`` started, but other kernels (forked sessions)."""
        return self._sweep([pid], None)

    def _kill_orphans(self, family: Family) -> int:
        """Kill the family's processes that left their parent (they came back to us) and are
        no kernel and no running job: daemons, which would otherwise run between calls."""
        return self._sweep([], family)

    def _sweep(self, roots: list[int], family: Family | None, charge: Job | None = None) -> int:
        """Stop (SIGSTOP) every process below ``roots`` — and the orphans of ``family`` —
        until no new one appears, so that a fork loop cannot outrun us, then kill them all.
        Kernels and the processes of running jobs (and their trees) are spared. The CPU time
        the stopped ones used (and their children's that they waited for) is ``charge``'s:
        what a program left behind ran for it, as its waited-for children count in its
        ``wait4`` figures. Returns how many died."""
        kernels = self.kernel_pids
        spare = kernels | set(self.procs)
        found: set[int] = set()
        for _ in range(200):
            seen: set[int] = set()
            with processes.one_scan():
                for root in roots:
                    seen.update(processes.descendants(root, spare=kernels))
                if family is not None:
                    for orphan in self._orphans(family, spare):
                        seen.add(orphan)
                        seen.update(processes.descendants(orphan, spare=kernels))
            new = seen - found
            if not new:
                break
            for pid in new:
                _signal(pid, signal.SIGSTOP)
            found |= new
        if charge is not None:
            _charge(charge, found)
            if self.orphans_come_back:  # those whose parents die come back to be reaped
                if len(self.swept) > 100_000:  # reaped by their parents: never seen here
                    self.swept.clear()
                self.swept |= found
        for pid in found:
            _signal(pid, signal.SIGKILL)
        return len(found)

    def _orphans(self, family: Family, spare: set[int]) -> list[int]:
        """The family's processes that are our children (orphans come back to us) but no
        kernel and no job. With cgroups, only when the family has more processes than those
        (the common case costs one read)."""
        self._drop_ended_case_servers(family)  # first: the cases it had run as programs
        if any(egg.family is family for egg in self.births):
            self._forked_all()  # a process of the family whose pid is not read yet is no orphan
            spare = spare | set(self.procs)
        if family.cgroup and self.cgroups is not None:
            members = set(self.cgroups.procs(family.fid))
            if members <= spare:
                return []
        uid = family.conf.uid
        return [
            p
            for p in processes.children(os.getpid())
            if p not in spare
            and p not in self.kernel_pids
            and p not in self.doomed
            and processes.uid_of(p) == uid
        ]

    def _freeze_idle(self, family: Family, but: KernelState | None = None) -> None:
        """Stop every kernel of the family with no call (``but`` one stopped already):
        between calls nothing of the family runs."""
        for kid in family.kernels:
            kernel = self.kernels[kid]
            if kernel.job is None and kernel is not but:
                kernel.send(signal.SIGSTOP)


def _charge(job: Job, stopped: set[int]) -> None:
    """The CPU time of the processes a program left (stopped by a sweep) is the program's,
    each counted once (a timeout's sweep, then its exit event's, may find the same ones);
    those found alive at its exit are named in its result."""
    x = job.extra
    fresh = stopped - x.setdefault("charged", set())
    x["charged"] |= fresh
    seen = [processes.live_and_cpu(pid) for pid in fresh]
    _add_left_cpu(job, sum(cpu for _, cpu in seen))
    if job.interrupted is None:  # at its exit, not stopped by us
        x["left_running"] = x.get("left_running", 0) + sum(live for live, _ in seen)


def _add_left_cpu(job: Job, cpu_ms: float) -> None:
    """CPU time of processes a program left, charged to it (``_outcome`` adds it)."""
    job.extra["left_cpu_ms"] = job.extra.get("left_cpu_ms", 0.0) + cpu_ms


def _left_note(running: int) -> list[str]:
    """What a program's result says of the processes it left running at its exit."""
    if not running:
        return []
    return [
        f"{running} process(es) it left running when it exited were killed then: their "
        "CPU time is counted in its own, what they wrote until then is in its output"
    ]


@dataclass
class ExitUsage:
    """What ``_outcome`` reads of a process's resource usage, measured at its exit event."""

    ru_utime: float  # user + system CPU seconds
    ru_maxrss: int  # peak resident set, kB
    ru_stime: float = 0.0


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _send(pid: int, handle: int, sig: int) -> None:
    """Signal ``pid`` through its pidfd ``handle`` if there is one (-1: by its pid)."""
    if handle < 0:
        _signal(pid, sig)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        signal.pidfd_send_signal(handle, sig)


def _readable(sock: socket.socket) -> bool:
    """Whether ``sock`` holds something to read, or has closed (without waiting)."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
    return True


def _pipe() -> tuple[int, int]:
    """An output pipe: the read end (ours) never blocks the loop, the write end (the child's
    stdout or stderr) blocks as a program expects."""
    read, write = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(read, False)
    return read, write


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _mode(data: bytes) -> int:
    """Files a run receives are executable when they are programs (ELF, a #! script)."""
    return 0o755 if data[:4] == b"\x7fELF" or data[:2] == b"#!" else 0o644


def _checked_error(raw: Any) -> dict[str, Any] | None:
    """A kernel's exception report, bounded and typed (it is the model's own account)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        return {"kind": "runtime_error", "message": "the code failed"}
    kind = raw.get("kind") if raw.get("kind") in ERROR_KINDS else "runtime_error"
    error: dict[str, Any] = {"kind": kind, "message": str(raw.get("message", "the code failed"))}
    error["message"] = error["message"][:2000]
    for key, cap in (("detail", 10_000), ("type", 200)):
        if isinstance(raw.get(key), str):
            error[key] = raw[key][:cap]
    for key in ("line", "column"):
        if isinstance(raw.get(key), int):
            error[key] = raw[key]
    return error
