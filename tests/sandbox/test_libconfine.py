"""libconfine on its own (``exec_shim.c`` and ``fork_loop.c`` built as one library): the
confinement a forked child gives itself in one call, and the fork server's loop in C. Run in
this process's children, unprivileged steps only (no namespaces, no uid change); the sandbox
suites run every kernel and Python program through both."""

from __future__ import annotations

import ctypes
import json
import os
import resource

import pytest
from toolfleet.box import forker, shim

LIMITS = ["as=4294967296", "fsize=1048576", "nofile=64", "cpu=30", f"uid={os.getuid()}"]


@pytest.fixture(scope="module")
def library() -> str:
    shim.build()  # CI has gcc (the C toolchain): a library that does not build fails
    path = shim.find_library()
    assert path is not None
    return path


def confine_child(library: str, words: list[str], then) -> tuple[int, str, str]:
    """Fork; the child calls ``tf_confine`` with ``words`` (packed, NUL-ended) and its
    stdout and stderr on pipes, then ``then()``, whose string it prints. The child's exit
    status, stdout and stderr."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    devnull = os.open("/dev/null", os.O_RDONLY)
    pid = os.fork()
    if pid == 0:
        try:
            packed = "".join(f"{w}\0" for w in [*words, f"stdio={devnull}:{out_w}:{err_w}"])
            ctypes.CDLL(library).tf_confine(packed.encode(), len(packed))
            os.write(1, then().encode())
        finally:
            os._exit(0)
    for fd in (out_w, err_w, devnull):
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(out_r) as out, os.fdopen(err_r) as err:
        return os.waitstatus_to_exitcode(status), out.read(), err.read()


def test_a_child_confines_itself_in_one_call(library, tmp_path):
    keep = os.open("/dev/null", os.O_RDONLY)
    leaked = os.open("/dev/null", os.O_RDONLY)
    try:

        def report() -> str:
            with open("/proc/self/oom_score_adj") as f:
                oom = f.read().strip()
            return json.dumps({
                "cwd": os.getcwd(),
                "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                "fsize": resource.getrlimit(resource.RLIMIT_FSIZE)[0],
                "core": resource.getrlimit(resource.RLIMIT_CORE)[0],
                "group_leader": os.getpgid(0) == os.getpid(),
                "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
                "oom": oom,
            })  # fmt: skip

        status, out, err = confine_child(
            library, [f"cwd={tmp_path}", *LIMITS, "pgid=1", f"keep={keep}"], report
        )
    finally:
        os.close(keep)
        os.close(leaked)
    assert status == 0, err
    got = json.loads(out)
    assert got["cwd"] == str(tmp_path)
    assert (got["nofile"], got["fsize"], got["core"]) == (64, 1048576, 0)
    assert got["group_leader"] is True
    assert got["oom"] == "1000"
    # stdio, the kept descriptor, and listdir's own: nothing else of the parent's
    assert leaked not in got["fds"] and keep in got["fds"]
    assert [fd for fd in got["fds"] if fd not in (keep,)][:3] == [0, 1, 2]
    assert len(got["fds"]) == 5


@pytest.mark.parametrize("bad", [["cwd=/nonexistent"], ["ns=99:0"], ["keep=1"], ["bogus=1"]])
def test_a_failed_step_ends_the_child_with_its_status(library, tmp_path, bad):
    cwd = [] if bad[0].startswith("cwd=") else [f"cwd={tmp_path}"]
    status, out, err = confine_child(library, [*cwd, *LIMITS, "status=7", *bad], lambda: "ran")
    assert status == 7
    assert out == ""  # nothing after the failed step ran
    if not bad[0].startswith(("keep=", "bogus=")):  # words it cannot read: said to our stderr
        assert err.startswith("the sandbox could not start the process: "), err


@pytest.fixture
def server(library):
    """A fork server with the C loop, forked from this process; its children (ours, by
    CLONE_PARENT) write their request to the descriptor they were given."""

    def born(request: dict, fds: list[int]) -> None:
        os.write(fds[0], json.dumps(request).encode())
        os.close(fds[0])
        os._exit(3)

    started = forker.ForkServer.start(born, (), library)
    yield started
    started.close()
    _, status = os.waitpid(started.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # the channel closed: the server ends


def test_the_fork_loop_answers_each_request_with_a_child_of_ours(server):
    requests = [{"n": 1}, {"n": 2, "text": "é" * 10}, {"n": 3, "big": "x" * (1 << 20)}]
    pipes = []
    for request in requests:
        r, w = os.pipe()
        server.ask(request, [w])
        os.close(w)  # the server closes its copy after the clone
        pipes.append(r)
    for request, r in zip(requests, pipes, strict=True):
        pid = server.answer()
        with os.fdopen(r, "rb") as f:
            assert json.loads(f.read()) == request  # the 1 MiB one came through whole
        _, status = os.waitpid(pid, 0)  # our child: the loop clones with CLONE_PARENT
        assert os.waitstatus_to_exitcode(status) == 3
    assert os.waitpid(server.pid, os.WNOHANG) == (0, 0)  # still serving
