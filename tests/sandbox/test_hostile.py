"""Hostile code in the local sandbox: each attack is contained, gets a clear diagnostic, the
service keeps serving and other sessions do not notice."""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import pytest_asyncio
from toolfleet.core.registry import ToolRegistry
from toolfleet.sandbox import tools_for
from toolfleet.sandbox.settings import SandboxSettings

from tests.helpers import ROOT, gateway, new_session
from tests.helpers.sandbox import bash, processes_of, run

pytestmark = pytest.mark.asyncio(loop_scope="module")
UID_BASE = 210_000
UIDS = range(UID_BASE, UID_BASE + 1000)


CONFIG = Path(f"/etc/toolfleet-test-{os.getpid()}.toml")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client():
    # a service config file in a directory the jail shows (/etc): it must stay hidden
    CONFIG.write_text('# a secret the model must not see: very-secret-key\nlog_level = "info"\n')
    os.environ["TOOLFLEET_CONFIG"] = str(CONFIG)
    try:
        async with _gateway() as c:
            yield c
    finally:
        del os.environ["TOOLFLEET_CONFIG"]
        CONFIG.unlink()


@asynccontextmanager
async def _gateway():
    settings = SandboxSettings(
        pool_size=1,
        memory_mb=256,
        disk_mb=32,
        file_mb=8,
        processes=24,
        max_output_chars=10_000,
        uid_base=UID_BASE,
        uid_count=1000,
    )
    async with gateway(ToolRegistry(tools_for(settings))) as c:
        info = await run(c, "import os\n(os.getuid(), os.getpid())")
        assert info["ok"], info
        yield c


@pytest_asyncio.fixture(loop_scope="module")
async def victim(client):
    """Another session holding a secret, which must stay intact."""
    sid = await new_session(client)
    obs = await run(
        client,
        "import os\nsecret = 'v-secret'\nopen('secret.txt', 'w').write(secret)"
        "\n(os.path.abspath('secret.txt'), os.getpid(), os.getuid())",
        session_id=sid,
    )
    path, pid, uid = eval(obs["data"]["result"])
    yield {"sid": sid, "path": path, "pid": pid, "uid": uid}
    obs = await run(client, "secret, open('secret.txt').read()", session_id=sid)
    assert obs["data"]["result"] == "('v-secret', 'v-secret')", "the victim session was disturbed"


async def settle(uid: int, count: int, within_s: float = 5) -> list:
    """The family's processes once there are ``count`` (the zygote sweeps escaped daemons
    every second), or when ``within_s`` has passed."""
    deadline = time.monotonic() + within_s
    while len(processes_of({uid})) != count and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return processes_of({uid})


async def assert_serving(client):
    assert (await client.get("/healthz")).status_code == 200
    assert (await run(client, "print(6*7)"))["data"]["stdout"] == "42\n"


@pytest.mark.parametrize(
    "code",
    [
        "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)",
        "import socket\nsocket.getaddrinfo('example.com', 80)",
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)",
        "import socket\ns = socket.socket(socket.AF_INET6)",
        "import subprocess\nsubprocess.run(['python3', '-c', 'import socket; "
        'socket.create_connection(("1.1.1.1", 53), timeout=2)\'], check=True)',
    ],
)
async def test_no_network(client, code):
    obs = await run(client, code, timeout_s=10)
    assert obs["ok"] is False
    assert obs["error"]["kind"] == "runtime_error"
    assert any(
        e in obs["error"]["message"]
        for e in (
            "Address family not supported",
            "CalledProcessError",
            "gaierror",
            "URLError",
            "Temporary failure",
            "Name or service not known",
        )
    )
    await assert_serving(client)


async def test_cannot_read_host_secrets_or_the_service(client):
    obs = await run(client, "open('/etc/shadow').read()")
    assert "PermissionError" in obs["error"]["message"]
    readme = str(ROOT / "README.md")
    assert Path(readme).exists()  # on the host
    obs = await run(client, f"import os\nos.path.exists({readme!r}), os.path.exists('/root')")
    assert obs["data"]["result"] == "(False, False)"  # the project tree is not visible
    obs = await run(client, "import sys\nsys.prefix, sys.executable")
    assert (
        obs["data"]["result"] == "('/opt/toolfleet/runtime', '/opt/toolfleet/runtime/bin/python')"
    )
    for module in ("toolfleet.core", "redis", "fastapi", "pyseccomp"):  # the service's own
        obs = await run(client, f"import {module}")
        assert "ModuleNotFoundError" in obs["error"]["message"], module
    obs = await run(client, "import os\nsorted(os.environ)")
    names = eval(obs["data"]["result"])
    assert not [n for n in names if n.startswith("TOOLFLEET") or "KEY" in n or "TOKEN" in n]
    obs = await run(client, f"open({str(CONFIG)!r}).read()")
    assert obs["ok"] is True and obs["data"]["result"] == "''"  # covered by /dev/null
    obs = await run(client, "open('/proc/1/environ').read()")
    assert obs["ok"] is False  # the zygote (root) is invisible and unreadable


async def test_cannot_read_or_write_another_sessions_files(client, victim):
    # Families on the same zygote see each other's directory but may not enter it; families
    # on another zygote (another mount namespace) do not see it at all.
    # Every family has a mount namespace of its own: the victim's path names, at most, a file
    # of the attacker's own family (the victim fixture checks the victim's file is intact).
    for _ in range(3):  # new sessions go to the zygotes in turn
        sid = await new_session(client)
        obs = await run(client, f"open({victim['path']!r}).read()", session_id=sid)
        assert "v-secret" not in str(obs)
        obs = await run(client, f"open({victim['path']!r}, 'w').write('x')", session_id=sid)
        obs = await bash(
            client,
            f"cat {victim['path']}; ls -a /box {Path(victim['path']).parent}",
            session_id=sid,
        )
        assert "v-secret" not in obs["data"]["stdout"]


@pytest.mark.parametrize(
    "path", ["/usr/evil", "/etc/evil", "/evil", "/opt/toolfleet/runtime/evil", "/dev/evil"]
)
async def test_cannot_write_outside_the_workspace(client, path):
    obs = await run(client, f"open({path!r}, 'w').write('x')")
    assert obs["ok"] is False
    assert any(e in obs["error"]["message"] for e in ("Read-only", "PermissionError"))


async def test_fork_bomb(client, victim):
    sid = await new_session(client)
    obs = await run(client, "import os\nwhile True:\n    os.fork()", session_id=sid, timeout_s=15)
    assert obs["ok"] is False
    assert obs["error"]["kind"] in ("runtime_error", "timeout")
    obs = await run(client, "import os\nprint('still here', os.getuid())", session_id=sid)
    uid = int(obs["data"]["stdout"].split()[-1])
    assert len(await settle(uid, 1)) == 1  # only the kernel
    await assert_serving(client)


async def test_disk_fill(client, victim):
    sid = await new_session(client)
    obs = await run(
        client,
        "n = 0\nwhile True:\n    open(f'fill{n}', 'wb').write(b'x' * (4 << 20))\n    n += 1",
        session_id=sid,
        timeout_s=20,
    )
    assert obs["error"]["kind"] == "runtime_error"
    assert "No space left on device" in obs["error"]["message"]
    obs = await run(client, "open('big', 'wb').write(b'x' * (9 << 20))")
    assert "File too large" in obs["error"]["message"]
    await assert_serving(client)


async def test_cpu_spin_in_threads_is_stopped(client, victim):
    sid = await new_session(client)
    spin = (
        "import threading, time\n"
        "def spin():\n    while True:\n        pass\n"
        "for _ in range(3):\n    threading.Thread(target=spin, daemon=True).start()\n"
        "time.sleep(60)"
    )
    task = asyncio.create_task(run(client, spin, session_id=sid, timeout_s=3))
    await asyncio.sleep(0.5)
    assert (await run(client, "sum(range(1000))"))["data"]["result"] == "499500"
    obs = await task
    assert obs["error"]["kind"] == "timeout"
    assert "restarted" in obs["error"]["message"]
    obs = await run(client, "import threading\nthreading.active_count()", session_id=sid)
    assert obs["data"]["result"] == "1"


async def test_cannot_signal_or_trace_other_processes(client, victim):
    obs = await run(client, "import os, signal\nos.kill(1, signal.SIGKILL)")
    assert "PermissionError" in obs["error"]["message"]
    obs = await run(client, f"import os\nos.kill({victim['pid']}, 9)")
    # the victim's pid is a number in its zygote's pid namespace: in the same one it names a
    # process not ours to signal; in the other it names nobody, or this very interpreter
    message = obs["error"]["message"]
    assert message.split(":")[0] in ("PermissionError", "ProcessLookupError") or (
        "interpreter was killed" in message
    )
    alive = await run(client, "os.getpid()", session_id=victim["sid"])
    assert alive["data"]["result"] == str(victim["pid"])  # the same process, not a restart
    obs = await run(
        client,
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "(libc.ptrace(0, 0, 0, 0), ctypes.get_errno())",
    )  # PTRACE_TRACEME
    assert obs["data"]["result"] == "(-1, 1)"  # EPERM
    obs = await run(
        client,
        f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"(libc.ptrace(16, {victim['pid']}, 0, 0), ctypes.get_errno())",
    )
    assert obs["data"]["result"] == "(-1, 1)"
    obs = await run(
        client, "import os\n[int(p) for p in os.listdir('/proc') if p.isdigit()] == [os.getpid()]"
    )
    assert obs["data"]["result"] == "True"  # no other family's process is visible


async def test_busy_children_do_not_outlive_the_call(client):
    sid = await new_session(client)
    obs = await run(
        client,
        "import os, subprocess\n"
        "subprocess.Popen(['sleep', '1000'])\n"
        "subprocess.Popen(['python3', '-c', 'while True: pass'])\n"
        "os.system('setsid sleep 1001 > /dev/null 2>&1 &')\n"
        "os.getuid()",
        session_id=sid,
    )
    uid = int(obs["data"]["result"])
    await bash(client, "nohup sleep 1002 > /dev/null 2>&1 &", session_id=sid)
    left = await settle(uid, 1)
    assert len(left) == 1 and "toolfleet.box.zygote" in left[0][2]  # only the kernel


async def test_ended_sessions_leave_no_process(client):
    sid = await new_session(client)
    obs = await run(client, "import os\nos.system('sleep 500 &')\nos.getuid()", session_id=sid)
    uid = int(obs["data"]["result"])
    child = (await client.post(f"/v1/sessions/{sid}/fork")).json()["session_id"]
    await run(client, "1", session_id=child)
    assert len(await settle(uid, 2)) == 2  # parent and fork share the family's uid
    await client.delete(f"/v1/sessions/{sid}")
    await client.delete(f"/v1/sessions/{child}")
    assert await settle(uid, 0) == []


# --------------------------------------------------------------- compiled programs

HOSTILE_C = r"""
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <unistd.h>
int main(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    printf("socket %d %d\n", s, s < 0 ? errno : 0);
    long t = ptrace(PTRACE_TRACEME, 0, 0, 0);
    printf("ptrace %ld %d\n", t, errno);
    FILE *f = fopen("/usr/evil", "w");
    printf("usr %d\n", f != NULL);
    printf("kill %d\n", kill(-1, SIGKILL) == 0 ? 0 : errno);
    printf("parent %d\n", kill(getppid(), SIGKILL) == 0 ? 0 : errno);
    return 0;
}
"""


async def program(client, language: str, code: str, **arguments):
    from tests.helpers import call

    args = {"language": language, "code": code, "time_limit_s": 30, **arguments}
    return await call(client, "run_program", args, timeout_s=90)


async def test_a_compiled_program_has_no_network_no_ptrace_no_system_writes(client, victim):
    obs = await program(client, "c", HOSTILE_C)
    assert obs["data"] is not None, obs
    out = {line.split()[0]: line.split()[1:] for line in obs["data"]["stdout"].splitlines()}
    assert out["socket"][0] == "-1", obs["data"]  # seccomp refuses IP sockets
    assert out["ptrace"][0] == "-1"
    assert out["usr"] == ["0"]
    await assert_serving(client)  # kill(-1) and kill(parent) reached nothing of ours


async def test_a_compiled_fork_bomb_is_contained(client, victim):
    bomb = "#include <unistd.h>\nint main(void) { for (;;) fork(); }\n"
    obs = await program(client, "c", bomb, time_limit_s=3)
    assert obs["data"] is not None, obs
    assert obs["data"]["status"] == "time_limit"
    await assert_serving(client)


async def test_a_compiler_cannot_be_turned_against_the_service(client, victim):
    # #include of the service's files and of another family's: not in the jail's view
    code = '#include "/proc/1/environ"\n#include "' + victim["path"] + '"\nint main() {}\n'
    obs = await program(client, "c", code)
    assert obs["error"]["kind"] == "compile_error", obs
    assert "v-secret" not in obs["error"]["detail"]


async def test_a_frame_nested_too_deep_ends_only_its_own_interpreter(client, victim):
    """A kernel that writes its supervisor a report nested past json's recursion limit (a
    RecursionError, not the ValueError of other garbage) loses its own interpreter; the
    supervisor, and the other sessions of its zygote, go on (they used to lose their state)."""
    code = (
        "import struct, time, toolfleet.box.kernel as k\n"
        "p = b'{\"a\":' + b'[' * 100_000 + b']' * 100_000 + b'}'\n"
        "k.CURRENT.chan.sendall(struct.pack('!I', len(p)) + p)\ntime.sleep(1)"
    )
    for _ in range(2):  # new sessions go to the zygotes in turn: the victim's is hit
        obs = await run(client, code, session_id=await new_session(client))
        assert not obs["ok"] and obs["error"]["kind"] != "unavailable", obs
