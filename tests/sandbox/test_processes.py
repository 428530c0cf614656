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


HEARING = """
import os, signal, subprocess, sys, time
from toolfleet.box import processes
heard = []
signal.signal(signal.SIGCHLD, lambda *_: heard.append(1))
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
def count(sig):
    before = len(heard)
    os.kill(child.pid, sig)
    time.sleep(0.3)
    return len(heard) - before
print(count(signal.SIGSTOP), count(signal.SIGCONT))  # heard by default
print(processes.hear_child_stops(False), count(signal.SIGSTOP), count(signal.SIGCONT))
print(processes.hear_child_stops(True), count(signal.SIGSTOP), count(signal.SIGCONT))
processes.hear_child_stops(False)
before = len(heard)
child.kill()
time.sleep(0.3)
print(len(heard) - before, child.wait())  # an exit is heard all the same
"""


def test_a_childs_stops_can_go_unheard_and_its_exit_is_heard() -> None:
    """The supervisor stops and continues a kernel after every call: it hears of those stops
    only while it traces a program (``Supervisor._hear_children``); Python's handler stays."""
    out = subprocess.run([sys.executable, "-c", HEARING], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split("\n")  # fmt: skip
    assert out[0] == "1 1"
    assert out[1] == "True 0 0"
    assert out[2] == "True 1 1"
    assert out[3] == f"1 -{signal.SIGKILL}"


def test_working_directories_are_numbered_on_and_skip_what_is_there(tmp_path) -> None:
    """Each run of a judge gets a fresh directory: numbered on from the last one (not looked
    for from ``w1`` up each time), past a name the family made itself."""
    from toolfleet.box import jail

    root = jail.family_directory(str(tmp_path), 7, os.getuid(), private_tmp=False)
    try:
        first = jail.new_workspace(root, os.getuid())
        os.mkdir(tmp_path / "f7" / "w2")  # the family's own, in its root
        second = jail.new_workspace(root, os.getuid())
        assert (first, second) == (f"{tmp_path}/f7/w1", f"{tmp_path}/f7/w3")
        os.rmdir(first)  # a freed name is not handed out again
        assert jail.new_workspace(root, os.getuid()) == f"{tmp_path}/f7/w4"
        assert processes.status_field(os.getpid(), "Tgid") == os.getpid()
        assert processes.status_field(os.getpid(), "NoSuchField") is None
    finally:
        root.close()


def test_every_child_of_a_big_tree_is_found() -> None:
    """A task's children file comes a page of pids a read: all of them are read (a sweep that
    saw the first ~600 would leave the rest running)."""
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys\n"
         "kids = [subprocess.Popen(['sleep', '60']) for _ in range(800)]\n"
         "print('ready', flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert parent.stdout is not None and parent.stdout.readline() == b"ready\n"
        found = processes.children(parent.pid)
        assert len(found) == 800 and len(set(found)) == 800
        assert all(processes.parent_of(pid) == parent.pid for pid in found[::50])
    finally:
        processes.kill_tree(parent.pid)
        parent.wait()


def test_one_scan_answers_as_the_files_do_where_there_are_no_children_files(
    monkeypatch,
) -> None:
    """Where the kernel has no children files (gVisor), a sweep's questions are answered
    from one pass over /proc: the same children and uids as each file read on its own, and
    a process started after the pass is in the next one, not this one."""
    tree = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys\n"
         "kids = [subprocess.Popen(['sleep', '60']) for _ in range(3)]\n"
         "print('ready', flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    late = None
    try:
        assert tree.stdout is not None and tree.stdout.readline() == b"ready\n"
        expected = sorted(processes.descendants(os.getpid()))
        assert tree.pid in expected and len(expected) >= 4
        monkeypatch.setattr(processes, "_CHILDREN_FILES", False)
        with processes.one_scan():
            assert sorted(processes.descendants(os.getpid())) == expected
            assert processes.uid_of(tree.pid) == os.getuid()
            late = sleeper()
            assert late.pid not in processes.children(os.getpid())
        assert late.pid in processes.children(os.getpid())  # read afresh, the slow way
    finally:
        processes.kill_tree(tree.pid)
        tree.wait()
        if late is not None:
            late.kill()
            late.wait()
