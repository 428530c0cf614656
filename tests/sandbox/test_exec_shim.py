"""The exec shim on its own (``toolfleet/box/exec_shim.c``): what a program it starts gets,
and that it fails closed. Run unprivileged here (no namespaces, no uid change); the sandbox
suites (hostile, trust boundary, languages, judge) run every program through it."""

from __future__ import annotations

import os
import subprocess

import pytest
from toolfleet.box import shim

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
