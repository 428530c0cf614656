"""The exec shim on its own (``toolfleet/box/exec_shim.c``), and ``jail.close_all_but`` (its
step in Python): what a program it starts gets, and that it fails closed. Run unprivileged
here (no namespaces, no uid change); the sandbox suites (hostile, trust boundary, languages,
judge) run every program through it."""

from __future__ import annotations

import errno
import os
import platform
import struct
import subprocess

import pytest
from toolfleet.box import jail, shim

LIMITS = ["as=1073741824", "fsize=1048576", "nofile=64", "cpu=30", f"uid={os.getuid()}"]


@pytest.fixture(scope="module")
def binary() -> str:
    return shim.build()  # CI has gcc (the C toolchain): a shim that does not build fails


def spawn(binary: str, *args: str, cwd: str = "/", env: dict[str, str] | None = None):
    return subprocess.run(
        [binary, f"cwd={cwd}", *LIMITS, *args],
        capture_output=True,
        text=True,
        env=env if env is not None else {"PATH": "/usr/bin:/bin"},
        timeout=60,
    )


def test_runs_the_program_confined(binary, tmp_path):
    leaked = os.open("/dev/null", os.O_RDONLY)  # inheritable: the program must not get it
    try:
        script = "ulimit -n; ulimit -f; ulimit -c; pwd; ls /proc/self/fd; echo $X"
        done = subprocess.run(
            [binary, f"cwd={tmp_path}", *LIMITS, "--", "bash", "-c", script],
            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "X": "y"},
            close_fds=False, timeout=60,
        )  # fmt: skip
    finally:
        os.close(leaked)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[:4] == ["64", "1024", "0", str(tmp_path)]  # bash counts -f in kB
    assert lines[4:-1] == ["0", "1", "2", "3"]  # stdio, and ls's own directory
    assert lines[-1] == "y"


def test_program_lookup_is_os_execvpe(binary, tmp_path):
    missing = spawn(binary, "--", "no-such-program")
    assert missing.returncode == 127
    assert missing.stderr == "no-such-program: No such file or directory\n"
    plain = tmp_path / "plain"
    plain.write_text("echo hi\n")  # no #!: not run by sh (os.execvpe does not either)
    plain.chmod(0o755)
    refused = spawn(binary, "--", "plain", env={"PATH": f"/nonexistent:{tmp_path}"})
    assert refused.returncode == 127
    assert refused.stderr == "plain: Exec format error\n"


@pytest.mark.parametrize(
    "bad",
    [["cwd=/nonexistent"], ["ns=99:0"], ["cg=99:cgroup.procs"], ["seccomp=99:8"], ["bogus=1"]],
)
def test_any_failed_step_stops_before_the_program(binary, tmp_path, bad):
    marker = tmp_path / "ran"
    done = spawn(binary, *bad, "--", "touch", str(marker))
    assert done.returncode == 126
    assert done.stderr.startswith("the sandbox could not start the process: ")
    assert not marker.exists()


def test_missing_arguments_fail_closed(binary):
    done = subprocess.run([binary, "cwd=/", "--", "true"], capture_output=True, timeout=60)
    assert done.returncode == 126  # no limits given: nothing runs


CLOSE = {"x86_64": 3, "aarch64": 57}[platform.machine()]


def without_close_range() -> None:
    """In a child: close_range(2) answers ENOSYS, as under gVisor, and a close(2) of a number
    from 1000 up kills the process: it would be closing numbers that are not open one by one
    (65,536 closes, a trap each under gVisor: ~2.5 s of CPU a program)."""
    code = [
        (0x20, 0, 0, 0),  # the syscall's number
        (0x15, 0, 1, jail.SYS_CLOSE_RANGE),
        (0x06, 0, 0, 0x00050000 | errno.ENOSYS),
        (0x15, 0, 3, CLOSE),
        (0x20, 0, 0, 16),  # its first argument
        (0x35, 0, 1, 1000),
        (0x06, 0, 0, 0x80000000),  # killed
        (0x06, 0, 0, 0x7FFF0000),  # allowed
    ]
    jail.prctl(jail.PR_SET_NO_NEW_PRIVS, 1)
    jail.load_seccomp(b"".join(struct.pack("<HBBI", *op) for op in code))


def test_without_close_range_the_open_descriptors_are_closed_all_the_same(binary, tmp_path):
    """Where the kernel has no close_range (gVisor), the descriptors /proc/self/fd lists are
    closed, and no other number."""
    leaked = [os.open("/dev/null", os.O_RDONLY) for _ in range(5)]
    leaked.append(os.dup2(leaked[0], 900))
    try:
        done = subprocess.run(
            [binary, f"cwd={tmp_path}", *LIMITS, "--", "ls", "/proc/self/fd"],
            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, close_fds=False,
            preexec_fn=without_close_range, timeout=60,
        )  # fmt: skip
    finally:
        for fd in leaked:
            os.close(fd)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "1", "2", "3"]  # stdio, and ls's own directory


@pytest.mark.parametrize("close_range", [True, False])
def test_a_forked_child_keeps_only_what_it_is_told(close_range):
    """``jail.close_all_but``, which every process forked from the template runs in Python
    where libconfine is not built: with close_range and without it."""
    keep = os.dup2(os.open("/dev/null", os.O_RDONLY), 700)
    others = [os.open("/dev/null", os.O_RDONLY) for _ in range(4)] + [os.dup(keep)]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if not close_range:
                without_close_range()
            jail.close_all_but((keep, write))
            os.write(write, " ".join(sorted(os.listdir("/proc/self/fd"), key=int)).encode())
        finally:
            os._exit(0)
    os.close(write)
    listed = os.read(read, 4096).decode().split()
    os.waitpid(pid, 0)
    for fd in (read, keep, *others):
        os.close(fd)
    assert listed[:3] == ["0", "1", "2"]
    assert set(listed[3:]) - {str(keep), str(write)} == {listed[3]}  # and the listing's own
    assert {str(keep), str(write)} <= set(listed)
