"""What the supervisor learns of processes it did not start: a kernel's fork is checked
before it is adopted, and once adopted it is reached only through its pidfd."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from toolfleet.box import processes
from toolfleet.box.supervisor import KernelState


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_child_of_the_claimed_parent_and_uid_is_handed_over_with_a_pidfd() -> None:
    proc = sleeper()
    try:
        assert processes.child_handle(proc.pid, os.getppid(), os.getuid()) is None
        assert processes.child_handle(proc.pid, os.getpid(), os.getuid() + 1) is None
        assert processes.child_handle(os.getpid(), os.getpid(), os.getuid()) is None
        handle = processes.child_handle(proc.pid, os.getpid(), os.getuid())
        assert handle is not None and handle >= 0
        os.close(handle)
    finally:
        proc.kill()
        proc.wait()


def test_an_adopted_kernel_that_is_gone_is_not_signalled_by_its_pid() -> None:
    """Once the process behind a kernel has exited and been reaped, its pidfd says so:
    no look at its children, no wait, and a signal reaches nothing (not a process that
    took its pid since)."""
    proc = sleeper()
    chan, _ = socket.socketpair()
    kernel = KernelState(1, proc.pid, None, chan, -1, -1, "/w", "/w", {})  # type: ignore[arg-type]
    kernel.handle = processes.open_handle(proc.pid)
    assert kernel.handle >= 0 and kernel.alive()
    kernel.send(signal.SIGKILL)
    started = time.monotonic()
    kernel.await_exit(within_s=30)
    assert time.monotonic() - started < 10
    assert not kernel.alive()
    proc.wait()  # reaped: the pid may be handed out again
    kernel.send(signal.SIGKILL)  # through the pidfd: nothing, and no error
    os.close(kernel.handle)
    chan.close()
