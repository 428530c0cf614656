"""The sandbox leaves nothing behind: not when sessions end, not when the service is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import httpx
from toolfleet.core.registry import ToolRegistry
from toolfleet.sandbox import tools_for
from toolfleet.sandbox.settings import SandboxSettings

from tests.helpers import PYTHON, ROOT, free_port, gateway, new_session, wait_healthy
from tests.helpers.sandbox import fork_servers, processes_of, run

UIDS = range(220_000, 220_100)


def serve(port: int, state_dir: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "TOOLFLEET_SANDBOX_UID_BASE": str(UIDS.start),
        "TOOLFLEET_SANDBOX_UID_COUNT": str(len(UIDS)),
        "TOOLFLEET_SANDBOX_POOL_SIZE": "2",
        "TOOLFLEET_SANDBOX_STATE_DIR": state_dir,
    }
    proc = subprocess.Popen(
        [PYTHON, "-m", "toolfleet.client.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_healthy(f"http://127.0.0.1:{port}", proc, timeout_s=120)
    return proc


def wait_until(check, within_s: float = 10) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_killing_the_service_leaves_no_process_or_state(tmp_path):
    port = free_port()
    proc = serve(port, str(tmp_path))
    try:
        url = f"http://127.0.0.1:{port}"
        for code in (
            "import subprocess\nsubprocess.Popen(['sleep', '1000'])\nx = 1",
            "import os\nos.system('setsid sleep 1001 &')",
        ):
            r = httpx.post(
                f"{url}/v1/tools/python/call",
                timeout=30,
                json={"arguments": {"code": code}, "trajectory_id": "t-kill"},
            )
            assert r.json()["ok"], r.text
        assert processes_of(UIDS)  # the session's kernel and the pool's
        assert list(tmp_path.glob("local-*"))
        servers = fork_servers(proc.pid)
        assert servers
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert wait_until(lambda: processes_of(UIDS) == []), processes_of(UIDS)
    assert wait_until(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in servers))
    assert wait_until(
        lambda: not [p for p in processes_of(range(0, 1 << 32)) if f"{tmp_path}/local-" in p[2]]
    )
    # a restarted service clears what the dead one left on disk
    proc = serve(port, str(tmp_path))
    try:
        assert [p.name for p in tmp_path.glob("local-*")] == [f"local-{proc.pid}-1"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert wait_until(lambda: processes_of(UIDS) == [])
    assert list(tmp_path.glob("local-*")) == []


async def test_the_supervisor_forks_itself_once_its_fork_server_is_gone():
    """The fork server (box/forker.py) killed: kernels, Python programs and judges are forked
    by the supervisor itself from then on; no call notices."""
    settings = SandboxSettings(backend="local", zygotes=1, pool_size=1, light_pool_size=1)
    others = set(fork_servers(os.getpid()))  # other tests' sandboxes in this process
    async with gateway(ToolRegistry(tools_for(settings))) as client:
        servers = set(fork_servers(os.getpid())) - others
        assert len(servers) == 2  # the full and the light template's
        for pid in servers:
            os.kill(pid, signal.SIGKILL)
        for _ in range(3):  # each takes a pooled kernel and spawns its replacement
            obs = await run(client, "print(6 * 7)")
            assert obs["data"]["stdout"] == "42\n", obs
        sid = await new_session(client)
        obs = await run(client, "x = 6 * 7\nprint(x)", session_id=sid)
        assert obs["data"]["stdout"] == "42\n", obs
        response = await client.post(
            "/v1/judge",
            json={"language": "python", "code": "print(int(input()) * 2)",
                  "cases": [{"stdin": "21", "expected_stdout": "42"},
                            {"stdin": "2", "expected_stdout": "4"}]},
        )  # fmt: skip
        assert response.json()["data"]["verdict"] == "AC", response.text
        r = await client.post("/run_code", json={"code": "import sys; sys.exit(3)",
                                                 "language": "python"})  # fmt: skip
        assert r.json()["run_result"]["return_code"] == 3, r.text
        for _ in range(50):  # a kernel the supervisor forks is root until it drops its uid
            if set(fork_servers(os.getpid())) <= others:
                break
            await asyncio.sleep(0.1)
        assert set(fork_servers(os.getpid())) <= others  # none came back


async def test_the_fork_servers_outlive_a_burst_of_concurrent_calls():
    """Under a burst of calls the supervisor reads some of the fork server's answers before its
    loop comes to their readiness, seen in the same turn: that stale readiness is no word
    unasked, and the fork servers serve on (before, the supervisor took it for a broken
    server within a second of load and forked itself from then on: ~500 page copies more
    on every later call)."""
    settings = SandboxSettings(backend="local", pool_size=2)
    others = set(fork_servers(os.getpid()))
    async with gateway(ToolRegistry(tools_for(settings))) as client:
        servers = set(fork_servers(os.getpid())) - others
        assert len(servers) == 4  # two zygotes of each template
        gate = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with gate:
                if i % 2:
                    obs = await run(client, f"print({i} * 2)")
                    assert obs["data"]["stdout"] == f"{i * 2}\n", obs
                else:
                    r = await client.post("/run_code", json={"code": f"print({i} * 2)",
                                                             "language": "python"})  # fmt: skip
                    assert r.json()["run_result"]["stdout"] == f"{i * 2}\n", r.text

        await asyncio.gather(*(one(i) for i in range(240)))
        assert servers <= set(fork_servers(os.getpid()))  # (a child being born looks alike)


async def test_without_namespaces_families_still_keep_their_files_apart():
    """isolation = "none" (no root, no user namespaces): limits only, one uid for all, but each
    family has its own directory and ending one leaves the others alone."""
    settings = SandboxSettings(isolation="none", pool_size=1, uid_base=230_000, uid_count=10)
    async with gateway(ToolRegistry(tools_for(settings))) as client:
        a, b = await new_session(client), await new_session(client)
        await run(client, "open('mine.txt', 'w').write('a')", session_id=a)
        await run(client, "open('mine.txt', 'w').write('b')", session_id=b)
        await client.delete(f"/v1/sessions/{a}")
        obs = await run(client, "open('mine.txt').read()", session_id=b)
        assert obs["data"]["result"] == "'b'"
        obs = await run(client, "import numpy, os\nprint(numpy.arange(3).sum(), os.getuid())")
        assert obs["data"]["stdout"] == "3 230000\n"  # dropped to an unprivileged uid
