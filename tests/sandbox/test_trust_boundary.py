"""The trust boundary, attacked: whatever the trainer trusts is produced outside the process
that runs model code, and a family shares nothing with another family.

Each attack runs on the local backend, the docker backend and gVisor (where it applies),
and each test asserts both that the attack fails and that a benign session keeps working.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio
from toolfleet.core.registry import ToolRegistry
from toolfleet.core.surrogates import REPLACED_NOTE
from toolfleet.sandbox import tools_for
from toolfleet.sandbox.settings import SandboxSettings

from tests.helpers import gateway, new_session, text
from tests.helpers.sandbox import bash, run

pytestmark = pytest.mark.asyncio(loop_scope="module")

COMMON: dict[str, Any] = dict(
    pool_size=1, light_pool_size=1, memory_mb=256, disk_mb=64, processes=48,
    max_output_chars=20_000,
)  # fmt: skip
BACKENDS = {
    "local": dict(backend="local", zygotes=1),
    "docker": dict(backend="docker", docker_pool_size=2),
    "gvisor": dict(backend="docker", docker_pool_size=2, docker_runtime="runsc"),
}


@asynccontextmanager
async def sandbox_gateway(**settings: Any) -> AsyncIterator[Any]:
    registry = ToolRegistry(tools_for(SandboxSettings(**{**COMMON, **settings})))
    async with gateway(registry) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=list(BACKENDS))
async def client(request):
    async with sandbox_gateway(**BACKENDS[request.param]) as c:
        c.backend = request.param
        yield c


@pytest_asyncio.fixture(loop_scope="module")
async def bystander(client):
    """A benign session holding state; after each attack it must be intact and answering."""
    sid = await new_session(client)
    obs = await run(client, "kept = 41\nopen('kept.txt', 'w').write('mine')", session_id=sid)
    assert obs["ok"], obs
    yield sid
    obs = await run(client, "print(kept + 1, open('kept.txt').read())", session_id=sid)
    assert obs["data"]["stdout"] == "42 mine\n", obs
    assert (await client.get("/healthz")).status_code == 200


async def run_code(client, code: str, **extra: Any) -> dict[str, Any]:
    r = await client.post("/run_code", json={"code": code, "language": "python", **extra})
    assert r.status_code == 200, r.text
    return r.json()


# --------------------------------------------------------------------------- verdicts


FORGER = """
import os, sys, time
if os.fork() == 0:
    # the left-behind child: outlives the program, tries to rewrite what the grader reads
    os.setsid()
    program = os.getppid()
    while os.getppid() == program:  # until the program has failed and exited
        time.sleep(0.001)
    for _ in range(200):
        for path in ('result.txt', '.toolfleet-run.json', '/tmp/result.txt'):
            try:
                open(path, 'w').write('PASSED')
            except OSError:
                pass
        try:
            os.write(1, b'all tests passed\\n')
        except OSError:
            pass
        time.sleep(0.01)
    os._exit(0)
open('result.txt', 'w').write('FAILED')
assert 1 + 1 == 3, 'wrong answer'
"""


async def test_a_left_behind_child_cannot_forge_a_run_code_verdict(client, bystander):
    for _ in range(5):  # it used to win 2-5 times in 5
        out = await run_code(client, FORGER, fetch_files=["result.txt"], run_timeout=5)
        assert out["status"] == "Failed", out
        assert out["run_result"]["status"] == "Finished"
        assert out["run_result"]["return_code"] == 1
        assert "AssertionError: wrong answer" in out["run_result"]["stderr"]
        assert "all tests passed" not in out["run_result"]["stdout"]
        assert base64.b64decode(out["files"]["result.txt"]) == b"FAILED"


async def test_exit_status_comes_from_the_process_not_from_what_it_prints(client, bystander):
    code = 'print(\'{"status": "Success", "return_code": 0}\')\nimport os\nos._exit(7)'
    out = await run_code(client, code)
    assert out["status"] == "Failed" and out["run_result"]["return_code"] == 7
    obs = await client.post(
        "/v1/tools/run_program/call",
        json={"arguments": {"language": "python", "code": "import os\nos.kill(os.getpid(), 9)"}},
    )
    data = obs.json()["data"]
    assert data["exit_code"] is None and data["signal"] == 9


# --------------------------------------------------------------------------- self-patching

PATCH_KERNEL = """
import sys, os
import toolfleet.box.kernel as k
def forged(self, msg):
    return {"op": "done", "result": "'forged'", "stdout": "FORGED STDOUT", "error": None,
            "images": [], "shown": 0}
k.Kernel.run_cell = forged
"""


async def test_a_patched_kernel_cannot_forge_output_or_files(client, bystander):
    sid = await new_session(client)
    obs = await run(client, PATCH_KERNEL, session_id=sid)
    assert obs["ok"], obs
    # From now on the kernel answers whatever it likes: only its own report is forged.
    obs = await run(client, "print('real')", session_id=sid)
    assert obs["data"]["stdout"] == ""  # nothing was printed: the supervisor read the pipe
    assert "FORGED STDOUT" not in json.dumps(obs)
    assert obs["data"]["result"] == "'forged'"  # the kernel's report, labelled as such
    # The files API is the supervisor's: what is on disk, whatever the kernel says.
    await client.put(f"/v1/sessions/{sid}/files/f.txt", content=b"uploaded")
    got = await client.get(f"/v1/sessions/{sid}/files/f.txt")
    assert got.content == b"uploaded"
    listed = (await client.get(f"/v1/sessions/{sid}/files")).json()
    assert [f["path"] for f in listed["files"]] == ["f.txt"]


FORGE_FORK = """
import os, socket
import toolfleet.box.kernel as k
import toolfleet.box.wire as w
held = []
def forged(self, workspace, fds):
    # no fork: the supervisor's own pid named as the new kernel, its hello sent from here
    chan = socket.socket(fileno=fds[0])
    held.append(chan)
    w.send(chan, {"op": "hello", "pid": os.getppid()})
    return {"op": "done", "pid": os.getppid()}
k.Kernel.fork = forged
"""


async def test_a_patched_kernel_cannot_name_another_process_as_its_fork(client, bystander):
    """A session's fork is the kernel's own ``os.fork``, so the kernel says which pid the new
    kernel has: a patched one names the supervisor. Adopted, it would be stopped like an
    idle kernel (every session of the zygote stalls) and killed with the fork."""
    sid = await new_session(client)
    assert (await run(client, FORGE_FORK, session_id=sid))["ok"]
    r = await client.post(f"/v1/sessions/{sid}/fork")
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "fork_failed" and "not a process of" in r.text, r.text
    obs = await run(client, "print('still here')", session_id=sid)
    assert obs["data"]["stdout"] == "still here\n", obs
    assert (await client.delete(f"/v1/sessions/{sid}")).status_code < 300
    obs = await run(client, "print(kept)", session_id=bystander)
    assert obs["data"]["stdout"] == "41\n", obs


SILENT_FORK = """
import os, time
import toolfleet.box.kernel as k
def silent(self, workspace, fds):
    pid = os.fork()
    if pid == 0:  # the new kernel never says hello
        time.sleep(60)
        os._exit(0)
    for fd in fds:
        os.close(fd)
    return {"op": "done", "pid": pid}
k.Kernel.fork = silent
"""


async def test_a_fork_that_never_says_hello_holds_up_no_other_session(client, bystander):
    """A patched kernel forks a child that never greets the supervisor: the fork request
    fails when its time is up, and meanwhile every other session is answered (the loop
    waited for the hello, up to 10 s, and every session of the zygote with it)."""
    sid = await new_session(client)
    assert (await run(client, SILENT_FORK, session_id=sid))["ok"]
    fork = asyncio.create_task(client.post(f"/v1/sessions/{sid}/fork"))
    await asyncio.sleep(1)  # the fork is waiting for its hello
    obs = await run(client, "print(kept)", session_id=bystander)
    assert obs["data"]["stdout"] == "41\n", obs
    assert not fork.done()  # answered while the fork still waited
    r = await fork
    assert r.status_code >= 400 and "hello" in r.text, r.text
    obs = await run(client, "print('still here')", session_id=sid)
    assert obs["data"]["stdout"] == "still here\n", obs


async def test_a_fork_killed_and_reaped_by_its_parent_is_let_go(client, bystander):
    """A forked kernel is a child of its parent kernel, which can kill and reap it: the
    supervisor then holds a pid that may be reused, and must reach it only through the
    process it adopted. The fork's next call is told its interpreter is gone; the parent,
    a new fork of it and the bystander keep working."""
    sid = await new_session(client)
    assert (await run(client, "import os, signal\nx = 7", session_id=sid))["ok"]
    r = await client.post(f"/v1/sessions/{sid}/fork")
    assert r.status_code == 201, r.text
    fork = r.json()["session_id"]
    pid = (await run(client, "print(os.getpid())", session_id=fork))["data"]["stdout"]
    reap = f"os.kill({int(pid)}, signal.SIGKILL)\nprint(os.waitpid({int(pid)}, 0)[0])"
    obs = await run(client, reap, session_id=sid)
    assert obs["data"]["stdout"].strip() == pid.strip(), obs
    obs = await run(client, "print(x)", session_id=fork)
    assert not obs["ok"] and "interpreter" in obs["error"]["message"], obs
    assert (await run(client, "print(x)", session_id=sid))["data"]["stdout"] == "7\n"
    r = await client.post(f"/v1/sessions/{sid}/fork")
    assert r.status_code == 201, r.text
    again = r.json()["session_id"]
    assert (await run(client, "print(x + 1)", session_id=again))["data"]["stdout"] == "8\n"
    for s in (sid, fork, again):
        await client.delete(f"/v1/sessions/{s}")
    obs = await run(client, "print(kept)", session_id=bystander)
    assert obs["data"]["stdout"] == "41\n", obs


# A child left behind runs on until the supervisor has handled its program's exit event:
# under gVisor with the CPUs busy, up to ~0.3 s (bench/late_writes.py), milliseconds else.
# What it writes meanwhile is the program's output; a child that waits longer never writes.
PY_FORGERS = {
    # a child left behind writes the answer once the program has exited
    "left behind": "import os, sys, time\nif os.fork() == 0:\n    time.sleep(1)\n"
    "    print(8)\n    sys.stdout.flush()\n    os._exit(0)\n",
    # the same, out of the program's process group and session (found by the sweep alone)
    "left behind, in a session of its own": "import os, sys, time\nif os.fork() == 0:\n"
    "    os.setsid()\n    time.sleep(1)\n    print(8)\n    sys.stdout.flush()\n"
    "    os._exit(0)\n",
    # an answer printed, then a crash: the exit status is the supervisor's
    "crash": "import os\nprint(8, flush=True)\nos.abort()\n",
}
# kills the process that forked it (a judge's case server), then answers right
PARENT_KILLER = "import os, signal\ntry:\n    os.kill(os.getppid(), signal.SIGKILL)\n"
PARENT_KILLER += "except OSError:\n    pass\nprint(8)\n"


async def test_a_judged_python_program_cannot_forge_its_verdict(client, bystander):
    """A judge's Python cases are forked by one process that loaded the program (its case
    server): each is traced by the supervisor before its first line, so nothing it leaves
    behind outlives it and its status is the supervisor's; a case that kills the server
    leaves the other cases judged (they run as any program)."""
    cases = [{"stdin": "1 7\n", "expected_stdout": "8\n"}] * 6

    async def judge(code: str) -> dict[str, Any]:
        body = {"language": "python", "code": code, "cases": cases, "time_limit_s": 10,
                "stop_on_failure": False, "timeout_s": 120}  # fmt: skip
        r = await client.post("/v1/judge", json=body)
        assert r.status_code == 200 and r.json()["data"] is not None, r.text
        return r.json()["data"]

    for name, code in PY_FORGERS.items():
        data = await judge(code)
        assert data["passed"] == 0, (name, data)
        assert {c["verdict"] for c in data["cases"]} <= {"WA", "RE"}, (name, data["cases"])
    data = await judge(PARENT_KILLER)
    assert data["verdict"] == "AC" and data["passed"] == 6, data["cases"]
    obs = await run(client, "print(kept)", session_id=bystander)
    assert obs["data"]["stdout"] == "41\n", obs


SIBLING = (
    "import ctypes, os, time\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    "pid = libc.syscall(56, 0x8000 | 17, 0, 0, 0, 0)\n"  # clone(CLONE_PARENT | SIGCHLD)
    "if pid == 0:\n    time.sleep(5)\n    os._exit(0)\n"
    "print('refused' if pid < 0 else 'cloned')\n"
)


async def test_no_process_can_be_made_a_sibling_of_its_parent(client, bystander):
    """A child made with CLONE_PARENT would be out of the tree the supervisor sweeps below a
    program (a judge's case, whose parent is its case server, could leave one no sweep
    finds): seccomp refuses it, in a cell and in a judged program."""
    assert (await run(client, SIBLING))["data"]["stdout"] == "refused\n"
    cases = [{"stdin": "", "expected_stdout": "refused\n"}] * 3
    r = await client.post("/v1/judge", json={"language": "python", "code": SIBLING,
                                             "cases": cases, "timeout_s": 120})  # fmt: skip
    assert r.json()["data"]["passed"] == 3, r.text
    obs = await run(client, "print(kept)", session_id=bystander)
    assert obs["data"]["stdout"] == "41\n", obs


async def test_the_output_cap_holds_against_raw_writes_and_patched_streams(client, bystander):
    sid = await new_session(client)
    flood = (
        "import os, sys\n"
        "sys.stdout.write = lambda s: 0\n"  # patching the stream changes nothing
        "chunk = b'x' * 65536\n"
        "for _ in range(2000):\n"  # 125 MB straight to the descriptor
        "    os.write(1, chunk)\n"
    )
    started = time.monotonic()
    r = await client.post(
        "/v1/tools/python/call",
        json={"arguments": {"code": flood}, "session_id": sid, "timeout_s": 20},
    )
    assert len(r.content) < 200_000, len(r.content)  # bounded whatever the code wrote
    obs = r.json()
    assert obs["error"]["kind"] == "output_limit", obs["error"]
    assert obs["truncated"] is True
    assert len(obs["data"]["stdout"]) <= COMMON["max_output_chars"]
    assert any("stdout was cut" in n for n in obs["data"]["notes"])
    assert time.monotonic() - started < 15
    obs = await run(client, "os.write(1, b'after\\n')", session_id=sid)
    assert obs["data"]["stdout"] == "after\n"


async def stamps_in(client, sid: str, name: str, low: float, high: float) -> list[float]:
    """Timestamps (one per line, seconds) a session wrote to ``name`` between low and high,
    read through the files API (the supervisor's, not the kernel's)."""
    r = await client.get(f"/v1/sessions/{sid}/files/{name}")
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    stamps = [float(x) for x in r.text.split()]
    return [s for s in stamps if low < s < high]


CHANNEL = """
import os
def link(fd):
    try:
        return os.readlink(f'/proc/self/fd/{fd}')
    except OSError:
        return ''
chan = [int(fd) for fd in os.listdir('/proc/self/fd') if link(fd).startswith('socket:')][0]
"""  # the kernel's channel to the supervisor (its only socket), in a cell


async def test_a_forged_report_on_the_channel_does_not_outlive_the_call(client, bystander):
    """The cell writes a fake 'done' frame on the kernel's own channel and keeps running: the
    call is answered early, but the rest of the cell stays frozen until a call pays for it."""
    sid = await new_session(client)
    fake = CHANNEL + (
        "import json, struct, time\n"
        "frame = json.dumps({'op': 'done', 'result': \"'early'\", 'images': [], 'shown': 0,"
        " 'error': None}).encode()\n"
        "os.write(chan, struct.pack('!I', len(frame)) + frame)\n"
        "with open('stamps.txt', 'a') as f:\n"
        "    for _ in range(300):\n"
        "        f.write(f'{time.time()}\\n')\n"
        "        f.flush()\n"
        "        time.sleep(0.01)\n"
    )
    obs = await run(client, fake, session_id=sid, timeout_s=30)
    answered = time.time()
    assert obs["ok"], obs
    assert obs["data"]["result"] == "'early'"
    await asyncio.sleep(1.5)
    assert await stamps_in(client, sid, "stamps.txt", answered + 0.2, answered + 1.4) == []


async def test_half_a_frame_on_the_channel_holds_up_no_other_session(client, bystander):
    """The cell writes the start of a frame on the kernel's channel and stays in the call:
    the supervisor reads what comes as it comes, so the session next door is answered at
    once (it waited for the rest of the frame, and every session of the zygote with it)."""
    sid = await new_session(client)
    half = CHANNEL + (
        "import struct, time\n"
        "os.write(chan, struct.pack('!I', 1000) + b'{\"op\": \"done\"')\n"
        "time.sleep(60)\n"
    )
    hostile = asyncio.create_task(run(client, half, session_id=sid, timeout_s=8))
    await asyncio.sleep(1)  # its half frame is on the channel
    obs = await run(client, "print(kept)", session_id=bystander)
    assert obs["data"]["stdout"] == "41\n", obs
    assert not hostile.done()  # answered while the hostile call still ran
    obs = await hostile
    assert not obs["ok"], obs  # its call ended at its deadline, not with the half frame


async def test_a_frame_nested_too_deep_ends_only_its_own_kernel(client, bystander):
    """The cell writes a report nested past json's recursion limit on the kernel's channel
    (a RecursionError where other garbage is a ValueError): its own kernel is lost and its
    call fails; the supervisor reading it, and the session next door, go on (a supervisor's
    loop ended on it, and every session it held lost its state)."""
    sid = await new_session(client)
    deep = CHANNEL + (
        "import struct, time\n"
        "p = b'{\"a\":' + b'[' * 100_000 + b']' * 100_000 + b'}'\n"
        "os.write(chan, struct.pack('!I', len(p)) + p)\n"
        "time.sleep(5)\n"
    )
    obs = await run(client, deep, session_id=sid, timeout_s=20)
    assert not obs["ok"] and obs["error"]["kind"] != "unavailable", obs
    obs = await run(client, "print(kept)", session_id=bystander)
    assert obs["data"]["stdout"] == "41\n", obs


async def test_a_kernel_that_stops_reading_holds_up_no_other_session(client, bystander):
    """The cell answers its call with a forged report and never returns to read the
    channel; the next call's request (bigger than the channel's buffer) cannot all be sent.
    The supervisor keeps the rest and sends it as the channel drains, an event of its loop:
    the session next door is answered at once (the supervisor waited to send it all, and
    every session of the zygote with it, up to 5 s, then killed the kernel)."""
    sid = await new_session(client)
    stuck = CHANNEL + (
        "import json, struct, time\n"
        "frame = json.dumps({'op': 'done', 'result': None, 'images': [], 'shown': 0,"
        " 'error': None}).encode()\n"
        "os.write(chan, struct.pack('!I', len(frame)) + frame)\n"
        "time.sleep(600)\n"
    )
    assert (await run(client, stuck, session_id=sid))["ok"]
    big = "# " + "x" * 900_000 + "\nprint('read')"  # a request of ~900 KB: over the buffer
    hostile = asyncio.create_task(run(client, big, session_id=sid, timeout_s=8))
    await asyncio.sleep(0.5)  # its request is being sent
    asked = time.monotonic()
    obs = await run(client, "print(kept)", session_id=bystander)
    waited = time.monotonic() - asked
    assert obs["data"]["stdout"] == "41\n", obs
    assert waited < 3.5, waited  # it was ~4.5 s (the rest of a 5 s send timeout)
    assert not hostile.done()  # answered while the hostile call still ran
    obs = await hostile
    assert not obs["ok"], obs  # that call ended at its deadline, its request never read


async def test_output_written_between_calls_is_said_to_be(client, bystander):
    """A fork keeps a descriptor of its parent's output pipe that a cell made, and writes
    into it while the parent is stopped between calls: the parent's next call shows those
    bytes first and says they were written between calls (it showed them as its own)."""
    sid = await new_session(client)
    assert (await run(client, "import os\nkept = os.dup(1)", session_id=sid))["ok"]
    child = (await client.post(f"/v1/sessions/{sid}/fork")).json()["session_id"]
    obs = await run(client, "os.write(kept, b'from the fork\\n')", session_id=child)
    assert obs["ok"] and obs["data"]["stdout"] == "", obs
    obs = await run(client, "print('mine')", session_id=sid)
    assert obs["data"]["stdout"] == "from the fork\nmine\n", obs
    assert any("14 bytes of stdout were written between calls" in n for n in obs["data"]["notes"])
    obs = await run(client, "print('again')", session_id=sid)
    assert obs["data"]["stdout"] == "again\n" and not obs["data"].get("notes"), obs


TICKER = """
import threading, time, os, subprocess
def tick():
    with open('thread.txt', 'a') as f:
        while True:
            f.write(f'{time.time()}\\n')
            f.flush()
            time.sleep(0.005)
threading.Thread(target=tick, daemon=True).start()
loop = 'while true; do echo $(date +%s.%N) >> {}; sleep 0.01; done'
subprocess.Popen(['sh', '-c', loop.format('child.txt')])
os.system(f"(setsid sh -c '{loop.format('daemon.txt')}' &)")
time.sleep(0.3)
"""


async def test_nothing_of_a_session_runs_between_its_calls(client, bystander):
    sid = await new_session(client)
    obs = await run(client, TICKER, session_id=sid, timeout_s=30)
    assert obs["ok"], obs
    gap_start = time.time()
    await asyncio.sleep(1.5)
    for name in ("thread.txt", "child.txt", "daemon.txt"):
        assert await stamps_in(client, sid, name, gap_start + 0.2, time.time()) == [], name
    assert await stamps_in(client, sid, "thread.txt", 0, gap_start)  # it did run in its call


# --------------------------------------------------------------------------- families apart


SHARE = """
import os, socket, ctypes, mmap
libc = ctypes.CDLL(None, use_errno=True)
open('/dev/shm/secret', 'w').write('family-a')
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind('\\0tf-abstract')
s.listen(1)
shmid = libc.shmget(0x7f11, 4096, 0o1666)
print(shmid >= 0)
"""

PROBE = """
import os, socket, ctypes
libc = ctypes.CDLL(None, use_errno=True)
found = []
if os.path.exists('/dev/shm/secret'):
    found.append('shm file')
try:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect('\\0tf-abstract')
    found.append('abstract socket')
except OSError:
    pass
if libc.shmget(0x7f11, 0, 0) >= 0:
    found.append('sysv segment')
found
"""


async def test_sessions_share_no_ipc_shm_or_abstract_sockets(client, bystander):
    a = await new_session(client)
    obs = await run(client, SHARE, session_id=a)
    assert obs["data"]["stdout"] == "True\n", obs
    for _ in range(3):  # others, on every zygote / in other containers
        b = await new_session(client)
        obs = await run(client, PROBE, session_id=b)
        assert obs["data"]["result"] == "[]", obs
    # the owner still has them (they are real, just not shared)
    obs = await run(client, PROBE, session_id=a)
    assert obs["data"]["result"] == "['shm file', 'abstract socket', 'sysv segment']"


LEAVE_SOCKET = """
import os, socket
print(os.readlink('/proc/self/ns/net'))
# an abstract name on a socket that only an in-flight message holds: it can outlive us
held = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
held.bind('\\0tf-left-behind')
held.listen(1)
a, b = socket.socketpair()
socket.send_fds(a, [b'x'], [held.fileno(), b.fileno()])  # b holds itself
"""

NET_PROBE = """
import os, socket, time
time.sleep(float(os.environ.get('TF_HOLD', '0')))
try:
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect('\\0tf-left-behind')
    reached = True
except OSError:
    reached = False
print(os.readlink('/proc/self/ns/net'), reached)
"""


async def test_a_recycled_network_namespace_carries_nothing_to_its_next_family():
    """Network namespaces are reused (jail.Namespaces: making one costs a millisecond): never
    by two families at once, and never with anything of the previous family left in it."""
    async with sandbox_gateway(**BACKENDS["local"]) as client:
        obs = await run(client, LEAVE_SOCKET)
        assert obs["ok"], obs
        first = obs["data"]["stdout"].split()[0]
        seen = [first]
        for _ in range(45):  # past the queue of spare namespaces (32)
            obs = await run(client, NET_PROBE)
            net, reached = obs["data"]["stdout"].split()
            assert reached == "False", obs
            seen.append(net)
        assert len(set(seen)) < len(seen), "no network namespace was reused"
        hold = "import os\nos.environ['TF_HOLD'] = '1'\n"
        together = await asyncio.gather(*(run(client, hold + NET_PROBE) for _ in range(6)))
        nets = [obs["data"]["stdout"].split()[0] for obs in together]
        assert len(set(nets)) == len(nets), nets  # calls at the same time: one each


async def test_filling_dev_shm_breaks_no_other_session(client, bystander):
    a = await new_session(client)
    obs = await run(
        client,
        "n = 0\ntry:\n    while True:\n        open(f'/dev/shm/f{n}', 'wb').write(b'x' * (1 << 20))"
        "\n        n += 1\nexcept OSError as e:\n    print(e.strerror)",
        session_id=a,
        timeout_s=30,
    )
    assert "No space left" in obs["data"]["stdout"], obs
    b = await new_session(client)
    obs = await run(
        client,
        "import multiprocessing as mp\nwith mp.Pool(2) as p:\n    print(sum(p.map(abs, [-1, -2])))",
        session_id=b,
        timeout_s=30,
    )
    assert obs["data"]["stdout"] == "3\n", obs


async def test_a_reused_uid_finds_nothing_of_its_previous_family():
    """A few uids only, so the next families get the uids of ended ones; across tenants."""
    keys = {"key-a": "tenant-a", "key-b": "tenant-b"}
    settings = {**COMMON, **BACKENDS["local"], "uid_count": 3, "pool_size": 0}
    registry = ToolRegistry(tools_for(SandboxSettings(**settings)))
    async with gateway(registry, api_keys=keys) as client:
        a = {"authorization": "Bearer key-a"}
        b = {"authorization": "Bearer key-b"}
        uids = set()
        for _ in range(4):
            sid = (await client.post("/v1/sessions", headers=a)).json()["session_id"]
            obs = (
                await client.post(
                    "/v1/tools/python/call",
                    headers=a,
                    json={"session_id": sid, "arguments": {"code": SHARE + "print(os.getuid())"}},
                )
            ).json()
            uids.add(int(obs["data"]["stdout"].split()[-1]))
            assert (await client.delete(f"/v1/sessions/{sid}", headers=a)).status_code == 200
            await asyncio.sleep(0.3)  # the family ends in the background
            sid = (await client.post("/v1/sessions", headers=b)).json()["session_id"]
            obs = (
                await client.post(
                    "/v1/tools/python/call",
                    headers=b,
                    json={"session_id": sid, "arguments": {"code": PROBE + "\nfound, os.getuid()"}},
                )
            ).json()
            found, uid = eval(obs["data"]["result"])
            assert found == [], (found, uid)
            uids.add(uid)
            await client.delete(f"/v1/sessions/{sid}", headers=b)
        assert len(uids) <= 3  # uids were reused, and nothing was left to find


# --------------------------------------------------------------------------- memory counted


async def test_workspace_files_count_as_the_familys_memory():
    """tmpfs pages are RAM: with a family limit below its disk, writing files ends in the
    memory limit, stated, and the service and other sessions are fine."""
    settings = {**COMMON, **BACKENDS["local"], "disk_mb": 512, "family_memory_mb": 160}
    async with sandbox_gateway(**settings) as client:
        if (await client.get("/readyz")).json()["services"]["sandbox"].get("cgroups") is None:
            pytest.fail("cgroups are not writable here: this host must allow them (root)")
        sid = await new_session(client)
        obs = await run(
            client,
            "for i in range(40):\n    open(f'f{i}', 'wb').write(b'x' * (8 << 20))",
            session_id=sid,
            timeout_s=30,
        )
        assert obs["error"]["kind"] == "memory_limit", obs["error"]
        assert "MiB" in obs["error"]["message"]
        other = await new_session(client)
        assert (await run(client, "print(1)", session_id=other))["data"]["stdout"] == "1\n"


async def test_a_reused_cgroup_starts_clean():
    """An ended family's cgroup serves a new family: none of the old family's processes is
    in it, and its OOM kill is not the new family's (a kernel that dies of something else
    is told "killed", not "memory limit")."""
    settings = {**COMMON, **BACKENDS["local"], "disk_mb": 512, "family_memory_mb": 160}
    async with sandbox_gateway(**settings) as client:
        old = await new_session(client)
        bomb = "x = []\nwhile True:\n    x.append(bytearray(8 << 20))"
        obs = await run(client, bomb, session_id=old, timeout_s=30)
        assert "more memory than allowed" in obs["error"]["message"], obs["error"]
        await client.delete(f"/v1/sessions/{old}")
        await asyncio.sleep(1.5)  # its processes gone, its cgroup is a spare
        suicide = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"
        # the pool's kernel (made before the release), then the one made after it, in the
        # ended family's cgroup
        for _ in range(3):
            sid = await new_session(client)
            obs = await run(client, suicide, session_id=sid, timeout_s=30)
            assert "interpreter was killed (it crashed" in obs["error"]["message"], obs
            await client.delete(f"/v1/sessions/{sid}")
        sid = await new_session(client)
        assert (await run(client, "print(2)", session_id=sid))["data"]["stdout"] == "2\n"


def zygotes_memory_mb(status: dict[str, Any]) -> int:
    """What the instance's zygotes (the templates) hold, from its memory cgroup."""
    memory = status["cgroup_dirs"]["memory"]
    with open(f"{memory}/zygotes/memory.usage_in_bytes") as f:
        return int(f.read()) >> 20


async def test_the_instance_ceiling_bounds_all_families_together():
    """The ceiling (``total_memory_mb``) holds the zygotes and every family: set 300 MiB above
    what the zygotes take, the third session writing 128 MiB of files is stopped."""
    settings = {**COMMON, **BACKENDS["local"], "disk_mb": 256}
    async with sandbox_gateway(**settings) as client:
        status = (await client.get("/readyz")).json()["services"]["sandbox"]
        templates = zygotes_memory_mb(status)
    settings["total_memory_mb"] = templates + 300
    async with sandbox_gateway(**settings) as client:
        results = []
        for _ in range(3):
            sid = await new_session(client)
            obs = await run(
                client,
                "for i in range(16):\n    open(f'f{i}', 'wb').write(b'x' * (8 << 20))\nprint('ok')",
                session_id=sid,
                timeout_s=30,
            )
            results.append(obs["data"]["stdout"] == "ok\n" or obs["error"]["kind"])
        assert results[:1] == [True] and "memory_limit" in results, results


# --------------------------------------------------------------------------- utf-8


async def test_invalid_utf8_output_and_file_names_are_stated_not_fatal(client, bystander):
    sid = await new_session(client)
    obs = await run(
        client, "print('a\\ud800b')\nimport os\nos.write(1, b'c\\xff\\xfed\\n')", session_id=sid
    )
    assert obs["data"]["stdout"] == "a\ufffdb\nc\ufffd\ufffdd\n", obs
    assert REPLACED_NOTE in text(obs)
    obs = await run(client, "open(b'bad\\xff\\xfe.txt', 'w').write('x')", session_id=sid)
    listed = await client.get(f"/v1/sessions/{sid}/files")
    assert listed.status_code == 200, listed.text
    assert [f["path"] for f in listed.json()["files"]] == ["bad\ufffd\ufffd.txt"]
    assert listed.json()["notes"] == [REPLACED_NOTE]


# --------------------------------------------------------------------------- host view


async def test_the_model_sees_its_runtime_not_the_service(client, bystander):
    obs = await run(client, "import sys, numpy, scipy, sklearn\nsys.prefix")
    assert obs["data"]["result"] == "'/opt/toolfleet/runtime'", obs
    obs = await run(client, "import toolfleet.core")
    assert "ModuleNotFoundError" in obs["error"]["message"]
    obs = await run(client, "1/0")
    assert "/work" not in json.dumps(obs) and ".venv" not in json.dumps(obs)
    obs = await bash(
        client,
        "cat /proc/self/cmdline | tr '\\0' ' '; echo; which python; python -c 'import numpy'",
    )
    assert obs["ok"], obs
    assert "/opt/toolfleet/runtime/bin/python" in obs["data"]["stdout"]
    obs = await run(client, "open('/proc/1/mem', 'rb').read(1)")
    assert obs["ok"] is False  # the zygote's (root's) memory is out of reach
    if client.backend == "local":  # hidepid: root's processes are not even listed
        obs = await run(client, "import os\nos.path.exists('/proc/1')")
        assert obs["data"]["result"] == "False"


# --------------------------------------------------------------------------- two instances


async def test_two_default_instances_on_one_host_do_not_collide():
    """Default settings twice: each claims its own uids and cgroup; one's processes do not
    eat the other's process limit."""
    settings = {**COMMON, **BACKENDS["local"], "processes": 24}
    async with sandbox_gateway(**settings) as one, sandbox_gateway(**settings) as two:
        info = [(await c.get("/readyz")).json()["services"]["sandbox"] for c in (one, two)]
        assert info[0]["uids"] != info[1]["uids"], info
        hog = await new_session(one)
        task = asyncio.create_task(
            run(
                one,
                "import subprocess, time\n"
                "ps = [subprocess.Popen(['sleep', '5']) for _ in range(20)]\n"
                "time.sleep(3)\nlen(ps)",
                session_id=hog,
                timeout_s=20,
            )
        )
        await asyncio.sleep(1.5)
        victim = await new_session(two)
        obs = await run(
            two,
            "import subprocess\n[subprocess.run(['true']).returncode for _ in range(15)]",
            session_id=victim,
        )
        assert obs["ok"], obs
        assert (await task)["data"]["result"] == "20"


UNREAPED = (  # stops being its tree's subreaper, then has its work done by an orphan
    "import ctypes, os, time\nrefused = ctypes.CDLL(None).prctl(36, 0, 0, 0, 0) != 0\n"
    "print('refused' if refused else 'cleared', flush=True)\n"
    "r, w = os.pipe()\nif os.fork() == 0:\n    if os.fork():\n        os._exit(0)\n"
    "    t = time.process_time()\n    while time.process_time() - t < 2.25:\n        pass\n"
    "    os.write(w, b'8\\n')\n    os._exit(0)\n"
    "print(os.read(r, 10).decode(), end='')\ntime.sleep(0.05)\n"
)


async def test_no_time_limit_is_dodged_by_an_orphan(client, bystander):
    """A program cannot stop being the subreaper of its tree (seccomp): an orphan that did
    its work and ended is reaped below it, and its CPU time is the program's (on gVisor,
    which has no subreapers but its init, it comes back to the supervisor, which knows its
    family by its uid before reaping it)."""
    warm = {"language": "python", "code": "print(1)", "timeout_s": 120,
            "cases": [{"stdin": "", "expected_stdout": "1\n"}]}  # fmt: skip
    assert (await client.post("/v1/judge", json=warm)).json()["data"]["passed"] == 1
    r = await client.post("/v1/judge", json={
        "language": "python", "code": UNREAPED, "time_limit_s": 2.0, "timeout_s": 120,
        "cases": [{"stdin": "", "expected_stdout": "refused\n8\n"}],
    })  # fmt: skip
    [case] = r.json()["data"]["cases"]
    # the orphan's answer comes unless the wall-time limit ends the program first (gVisor,
    # a loaded machine): either way its CPU time is the program's
    assert case["stdout"] in ("refused\n8\n", "refused\n") and case["verdict"] == "TLE", case
    if case["stdout"] == "refused\n8\n":  # it did all its work (2.25 s of CPU)
        assert case["cpu_s"] >= 2.1, case
    else:  # what it ran until the wall-time limit (it gets less CPU on a loaded machine)
        assert case["cpu_s"] >= 1.0, case
    obs = await run(client, "print(kept)", session_id=bystander)
    assert obs["data"]["stdout"] == "41\n", obs
