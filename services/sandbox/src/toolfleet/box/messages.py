"""Typed messages of the three channels inside the sandbox (framing in ``wire.py``).

- **control** (service ↔ zygote), one request at a time: ``init``/``ready``, ``family``
  (open a family: its namespaces, cgroup and root; its channel travels with the request),
  ``end_family``, ``ping``.
- **family** (service ↔ the supervisor, about one family), multiplexed: every request
  carries an ``id`` its reply repeats, so calls of a session and of its forks run at once.
- **kernel** (supervisor ↔ one kernel), one request at a time; the service never talks to a
  kernel.

Only the kernel's own reports (``CellReport``) come from a process that runs model code; the
supervisor validates and bounds them and says which fields they fed.
"""

from __future__ import annotations

from typing import Literal, TypedDict

# ------------------------------------------------------------------ control channel


class LimitsMsg(TypedDict):
    """Limits of a family and of each of its processes (see ``jail.Limits``)."""

    memory_bytes: int
    disk_bytes: int
    file_bytes: int
    processes: int
    open_files: int
    cpu_seconds: int
    family_memory_bytes: int


class InitRequest(TypedDict):
    """The service's first message to a zygote."""

    op: Literal["init"]
    preload: list[str]
    seccomp: str | None  # the kernels' BPF program, base64 (compiled by the service)
    huge_pages: bool
    uid_limits: bool  # set RLIMIT_NPROC per family uid (false where uids are shared)


class Ready(TypedDict):
    """The zygote's answer to ``init``: what isolation is in force."""

    op: Literal["ready"]
    pid: int
    python: str
    loaded: list[str]
    jailed: bool
    isolated_families: bool
    cgroups: str | None
    seccomp: bool
    pid_namespace: bool
    confine: str  # "libconfine" (children confine themselves in C), else "python"
    fork_server: str | None  # its loop: "c", "python"; None: the supervisor forks itself
    case_forker: bool  # judges' case servers of programs that import no preload: fresh


class FamilyRequest(TypedDict):
    """Open a new family (its channel's far end is passed with it). ``cgroup``: one of its
    own (sessions), or the zygotes' (a stateless call's family)."""

    op: Literal["family"]
    fid: int
    uid: int
    limits: LimitsMsg
    cgroup: bool


class EndFamilyRequest(TypedDict):
    """End a family: every process of it, its cgroup; answered once all are gone."""

    op: Literal["end_family"]
    fid: int


# ------------------------------------------------------------------ family channel


class ErrorMsg(TypedDict, total=False):
    """A failure as the supervisor or a kernel describes it (the service maps it to a
    diagnostic; ``kind`` is one of toolfleet's error kinds)."""

    kind: str
    message: str
    detail: str | None
    type: str
    line: int | None
    column: int | None


class _Image(TypedDict):
    mime_type: str
    data: str  # base64
    width: int
    height: int


class ImageMsg(_Image, total=False):
    """A PNG the kernel rendered, checked by the supervisor (signature, size, dimensions)."""

    downscaled_from: list[int]  # [width, height] before the kernel shrank it to fit


class SpawnRequest(TypedDict):
    """A new kernel in the family, in a new, empty workspace."""

    id: int
    op: Literal["spawn"]


class KernelInfo(TypedDict):
    """A kernel of the family."""

    id: int
    ok: bool
    kernel: int
    pid: int
    workspace: str


class PythonRequest(TypedDict):
    """Run a cell in a kernel."""

    id: int
    op: Literal["python"]
    kernel: int
    code: str
    stdin: str | None
    timeout_s: float
    max_output: int
    max_images: int
    max_image_bytes: int
    max_result: int


class PythonReply(TypedDict):
    """A cell's outcome. ``stdout``/``stderr``, timing, ``ended`` and ``threads`` are the
    supervisor's; ``result``, ``images`` and ``error`` are the kernel's report."""

    id: int
    ok: bool
    stdout: str
    stderr: str
    output_bytes: int
    truncated: bool
    result: str | None
    images: list[ImageMsg]
    images_dropped: list[str]
    error: ErrorMsg | None
    ended: Literal["timeout", "output_limit", "killed", "memory_limit"] | None
    kernel_alive: bool
    threads: int
    elapsed_ms: float
    cpu_ms: float
    notes: list[str]


class BashRequest(TypedDict):
    """Run a bash command in the session's working directory and environment."""

    id: int
    op: Literal["bash"]
    kernel: int
    command: str
    timeout_s: float
    max_output: int


class ProcessOutcome(TypedDict):
    """How a process the supervisor started ended (from waitpid, never from the process)."""

    exit_code: int | None  # None when killed by a signal
    signal: int | None
    timed_out: bool
    output_limit: bool  # the output passed its cap (the process was stopped, or cut)
    memory_limit: bool  # killed for memory (cgroup OOM, or allocation failure by signal)
    elapsed_ms: float
    cpu_ms: float
    max_rss_bytes: int
    stdout: str
    stderr: str
    stdout_bytes: int
    stderr_bytes: int
    truncated: bool
    notes: list[str]


class BashReply(ProcessOutcome):
    """A bash command's outcome and the session's working directory after it."""

    id: int
    ok: bool
    cwd: str


class RunRequest(TypedDict, total=False):
    """Run a program in a fresh working directory of the family (``run_program``, the judge,
    ``/run_code``). Either ``argv`` (exec'd) or ``python`` (source run as ``__main__`` in a
    warm interpreter, with ``python main.py`` semantics)."""

    id: int
    op: Literal["run"]
    argv: list[str]
    python: str
    script: str  # the file name the python source is saved as (and shown in tracebacks)
    args: list[str]
    files: dict[str, str | None]  # path (relative, or absolute under /tmp or /mnt) -> base64
    stored: dict[str, str]  # path -> the key of a compiled file the supervisor holds
    store: dict[str, str]  # key -> base64: compiled files for the supervisor to hold first
    stdin: str
    timeout_s: float
    memory_bytes: int  # 0: the family's limit
    max_output: int
    fetch: list[str]
    cwd: str  # an existing directory of the family (default: a new one)
    env: dict[str, str]


class RunReply(ProcessOutcome, total=False):
    """A program's outcome, the files fetched after it and those that were not."""

    id: int
    ok: bool
    cwd: str
    files: dict[str, str]
    missing: list[str]


class ForkRequest(TypedDict):
    """Copy a kernel (``fork(2)``: its globals) and its workspace into a new session."""

    id: int
    op: Literal["fork"]
    kernel: int


class FileRequest(TypedDict, total=False):
    """The files API, done by the supervisor (never by the kernel)."""

    id: int
    op: Literal["read_file", "write_file", "list_files"]
    kernel: int
    path: str
    data: str  # base64, for write_file
    max_bytes: int


class EndKernelRequest(TypedDict):
    """End one kernel (its session ended) and whatever it still runs."""

    id: int
    op: Literal["end_kernel"]
    kernel: int


# ------------------------------------------------------------------ kernel channel


class CellRequest(TypedDict):
    """Supervisor → kernel: run a cell."""

    op: Literal["python"]
    code: str
    stdin: str | None
    max_images: int
    max_image_bytes: int
    max_result: int


class CellReport(TypedDict, total=False):
    """Kernel → supervisor: what the kernel says of a cell (model-produced)."""

    op: Literal["done"]
    result: str | None
    images: list[ImageMsg]
    shown: int  # images and figures the cell displayed, kept or not
    error: ErrorMsg | None


class ProgramRequest(TypedDict):
    """Supervisor → a fresh kernel: become a Python program (stdin passed with it); the
    kernel closes its channel and never answers."""

    op: Literal["program"]
    cwd: str
    script: str  # the file name the program's tracebacks give
    source: str
    args: list[str]
    address_space: int  # RLIMIT_AS to lower to (0: the family's)


class ReapRequest(TypedDict):
    """Supervisor → kernel, after a cell: collect the children the supervisor killed."""

    op: Literal["reap"]
    pids: list[int]


class KernelFork(TypedDict):
    """Supervisor → kernel: fork; the copy serves the channel and pipes sent with it, in
    ``workspace`` (a copy of this kernel's, made by the kernel before it forks)."""

    op: Literal["fork"]
    workspace: str


class KernelDone(TypedDict, total=False):
    """Kernel → supervisor: the answer to ``fork`` (the copy's pid), ``reap`` (how many it
    collected), or to a request that failed (``error``)."""

    op: Literal["done"]
    pid: int
    reaped: int
    error: ErrorMsg


class Hello(TypedDict):
    """A new kernel's greeting on its channel."""

    op: Literal["hello"]
    pid: int


#: What a kernel is asked, one request at a time (``op`` tells which).
KernelRequest = CellRequest | ProgramRequest | KernelFork | ReapRequest
