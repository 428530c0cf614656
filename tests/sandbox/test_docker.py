"""The docker backend for real: kernels in containers through the sandbox's tools, the
containers' isolation and limits, and that no container outlives its family or its service.

Needs a Docker engine and the image (deploy/docker/install-docker.sh, build-images.sh). Without
them the tests skip, except under CI (env CI set), where they fail.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio
from toolfleet.core.state import SessionStates
from toolfleet.core.tool import CallContext, Tool, ToolResult
from toolfleet.sandbox import docker as docker_backend
from toolfleet.sandbox.backend import SandboxUnavailableError
from toolfleet.sandbox.service import STATE_KEY, Sandbox
from toolfleet.sandbox.settings import SandboxSettings

from tests.helpers import PYTHON, ROOT, free_port, wait_healthy
from tests.sandbox import programs as P

pytestmark = pytest.mark.asyncio(loop_scope="module")

IMAGE = SandboxSettings().docker_image  # TOOLFLEET_SANDBOX_DOCKER_IMAGE overrides it
SETTINGS: dict[str, Any] = dict(
    backend="docker",
    pool_size=1,
    docker_pool_size=1,
    memory_mb=256,
    disk_mb=64,
    processes=32,
    family_memory_mb=256,
)


# Code that prints the id of the container it runs in (cgroup v1 names it in /proc/self/cgroup,
# and the mount of /etc/hostname names it in /proc/self/mountinfo).
CONTAINER_ID = (
    "import re\n"
    "text = open('/proc/self/cgroup').read() + open('/proc/self/mountinfo').read()\n"
    "print(re.search(r'[0-9a-f]{64}', text).group(0))"
)


def _engine() -> Any:
    """A client of the Docker engine with the sandbox image; skip (fail under CI) without."""
    problem = None
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:
        problem = f"no Docker engine ({exc}): run deploy/docker/install-docker.sh"
    else:
        try:
            client.images.get(IMAGE)
        except Exception as exc:
            problem = f"no image {IMAGE} ({exc}): run deploy/docker/build-images.sh"
    if problem is None:
        return client
    if os.environ.get("CI"):
        pytest.fail(problem, pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="module")
def engine() -> Any:
    client = _engine()
    yield client
    client.close()


def ours(engine: Any, **labels: str) -> list[Any]:
    """Containers (also stopped ones) with the backend's labels."""
    wanted = [f"{k}={v}" for k, v in labels.items()] or [docker_backend.LABEL]
    return engine.containers.list(all=True, sparse=True, filters={"label": wanted})


def gone(engine: Any, container_id: str) -> bool:
    import docker.errors

    try:
        engine.api.inspect_container(container_id)
    except docker.errors.NotFound:
        return True
    return False


async def eventually(check: Any, within_s: float = 15.0) -> bool:
    """Poll ``check()`` (blocking) until true or ``within_s`` elapsed."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return True
        await asyncio.sleep(0.1)
    return bool(await asyncio.to_thread(check))


class Box:
    """The sandbox's tools over one backend, called the way the executor calls them."""

    def __init__(self, tools: list[Tool]) -> None:
        self.tools = {t.name: t for t in tools}
        self.states = SessionStates()
        self.backend: docker_backend.DockerBackend = tools[0].sandbox.pool.backend  # type: ignore[attr-defined]

    async def call(
        self, tool: str, session: str | None, timeout_s: float = 30, **arguments: Any
    ) -> ToolResult:
        t = self.tools[tool]
        ctx = CallContext(
            call_id=uuid.uuid4().hex,
            tenant="test",
            session_id=session,
            trajectory_id=None,
            timeout_s=timeout_s,
            deadline=time.monotonic() + timeout_s,
            states=self.states,
        )
        return await t.call(t.Arguments(**arguments), ctx)

    async def python(self, code: str, session: str | None = None, **kw: Any) -> ToolResult:
        return await self.call("python", session, code=code, **kw)

    async def bash(self, command: str, session: str | None = None) -> ToolResult:
        return await self.call("bash", session, command=command)

    def container(self, session: str) -> docker_backend.Container:
        """The container that runs a session's kernel."""
        return self.states.get(session, STATE_KEY).family.container


@asynccontextmanager
async def sandbox(tmp_path: Any, **overrides: Any) -> AsyncIterator[Box]:
    """Started sandbox tools on the docker backend; stopped (every container removed) after."""
    service = Sandbox(SandboxSettings(**{**SETTINGS, "state_dir": tmp_path, **overrides}))
    box = Box(service.tools())
    await service.start()
    try:
        yield box
    finally:
        await box.states.close_all()
        await service.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def box(engine: Any, tmp_path_factory: Any) -> AsyncIterator[Box]:
    """One sandbox for the module's functional tests (a container takes seconds to start)."""
    async with sandbox(tmp_path_factory.mktemp("docker")) as b:
        yield b


def stdout(result: ToolResult) -> str:
    assert result.data is not None
    return result.data["stdout"]


# ------------------------------------------------------------------ kernels in containers


async def test_print_stateless(box: Box) -> None:
    result = await box.python("print(1+1)")
    assert result.error is None
    assert stdout(result) == "2\n"


async def test_the_images_toolchains_compile_run_and_judge(box: Box) -> None:
    # the probe ran in a container: the image's toolchains are what the service offers
    offered = set(box.tools["run_program"].sandbox.programs.offered)  # type: ignore[attr-defined]
    assert set(P.LANGUAGE_NAMES) <= offered, set(P.LANGUAGE_NAMES) - offered
    ran = await box.call("run_program", None, timeout_s=180, language="cpp", code=P.SUM["cpp"],
                         stdin="2 40\n", time_limit_s=60)  # fmt: skip
    assert ran.error is None and stdout(ran) == "42\n", ran
    # cached: the binary goes to the new container's supervisor by key, with the run
    again = await box.call("run_program", None, timeout_s=180, language="cpp",
                           code=P.SUM["cpp"], stdin="1 2\n", time_limit_s=60)  # fmt: skip
    assert again.data is not None and again.data["compile"]["cached"] is True, again
    assert stdout(again) == "3\n", again
    wrong = await box.call("run_program", None, timeout_s=180, language="c",
                           code=P.COMPILE_ERROR["c"], time_limit_s=60)  # fmt: skip
    assert wrong.error is not None and wrong.error.kind == "compile_error", wrong
    cases = [{"stdin": f"{i} {i}\n", "expected_stdout": f"{2 * i}\n"} for i in range(3)]
    for language in ("java", "cpp"):  # cpp: cached, settled from the store once
        judged = await box.call("judge", None, timeout_s=240, language=language,
                                code=P.SUM[language], cases=cases, time_limit_s=30)  # fmt: skip
        assert judged.data is not None, judged
        assert judged.data["verdict"] == "AC" and judged.data["passed"] == 3, judged.data


async def test_print_stateful_and_state_persists(box: Box) -> None:
    assert stdout(await box.python("print(1+1)", session="s-state")) == "2\n"
    await box.python("import math\nx = 41", session="s-state")
    result = await box.python("x + 1", session="s-state")
    assert result.data is not None and result.data["result"] == "42"
    bash = await box.bash("echo kept > f.txt; export V=7", session="s-state")
    assert bash.error is None
    assert stdout(await box.bash("cat f.txt; echo $V", session="s-state")) == "kept\n7\n"
    await box.states.close("s-state")


async def test_kernel_runs_as_the_container_user_in_its_workspace(box: Box) -> None:
    result = await box.python(
        "import os\nppid = os.getppid()\n"
        "print(os.getuid(), os.getcwd(), ppid, os.stat(f'/proc/{ppid}').st_uid)"
    )
    uid, cwd, ppid, parent_uid = stdout(result).split()
    assert int(uid) == box.backend.uid != 0
    assert cwd.startswith("/box/")
    # forked by the zygote (PID 1, root), which supervises the family
    assert ppid == "1" and parent_uid == "0"


async def test_fork_copies_globals_in_the_same_container(box: Box) -> None:
    await box.python("data = {'k': [1, 2, 3]}\nopen('a.txt', 'w').write('file')", session="s-a")
    await box.states.fork("s-a", "s-b")
    assert box.container("s-a") is box.container("s-b")
    result = await box.python("data['k'].append(4)\nprint(data, open('a.txt').read())", "s-b")
    assert stdout(result) == "{'k': [1, 2, 3, 4]} file\n"
    assert stdout(await box.python("print(data)", session="s-a")) == "{'k': [1, 2, 3]}\n"
    container = box.container("s-a")
    await box.states.close("s-b")
    assert stdout(await box.python("print(len(data['k']))", session="s-a")) == "3\n"
    assert not gone(box.backend.client, container.id)  # the family still has a member
    await box.states.close("s-a")
    assert gone(box.backend.client, container.id)


async def test_sessions_get_containers_of_their_own(box: Box) -> None:
    await box.python("x = 1", session="s-1")
    await box.python("x = 2", session="s-2")
    one, two = box.container("s-1"), box.container("s-2")
    assert one.id != two.id
    await box.states.close("s-1")
    await box.states.close("s-2")


# ------------------------------------------------------------------ isolation


async def test_no_network(box: Box, engine: Any) -> None:
    code = (
        "import os, socket\n"
        "print(sorted(os.listdir('/sys/class/net')))\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=3)\n"
        "    print('connected')\n"
        "except OSError as exc:\n"
        "    print('refused', type(exc).__name__)\n"
    )
    result = await box.python(code, session="s-net")
    lines = stdout(result).splitlines()
    assert lines[0] == "['lo']"
    assert lines[1].startswith("refused")
    config = engine.api.inspect_container(box.container("s-net").id)["HostConfig"]
    assert config["NetworkMode"] == "none"
    await box.states.close("s-net")


async def test_read_only_root_and_writable_workspace(box: Box) -> None:
    result = await box.bash(
        'touch /usr/x 2>&1; echo "usr=$?"; touch /etc/x 2>/dev/null; echo "etc=$?"; '
        'touch /run/toolfleet/x 2>/dev/null; echo "run=$?"; '
        "touch here /tmp/t && echo ok"
    )
    out = stdout(result)
    assert "Read-only file system" in out
    assert "usr=1" in out and "etc=1" in out
    assert "run=1" in out  # the host directory of the zygote's socket is sealed
    assert out.rstrip().endswith("ok")


async def test_container_options(box: Box, engine: Any) -> None:
    await box.python("x = 1", session="s-opts")
    attrs = engine.api.inspect_container(box.container("s-opts").id)
    host = attrs["HostConfig"]
    s = box.backend.settings
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert sorted(host["CapAdd"]) == sorted(docker_backend.CAPABILITIES)
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] == (s.family_memory_mb + docker_backend.ZYGOTE_HEADROOM_MB) << 20
    assert host["PidsLimit"] == box.backend.pids_limit() == s.processes + 16
    assert host["NanoCpus"] == int(box.backend.cpus * 1e9)
    assert set(host["Tmpfs"]) == {"/box", "/tmp", "/mnt"}
    # the zygote and supervisor are the container's root; model code runs as box.backend.uid
    assert attrs["Config"]["User"] == "0:0"
    assert attrs["Config"]["Labels"][docker_backend.LABEL] == box.backend.instance
    await box.states.close("s-opts")


async def test_memory_limit(box: Box) -> None:
    # Past the kernel's own limit: a MemoryError, and the session lives on.
    result = await box.python("x = bytearray(2 << 30)", session="s-mem")
    assert result.error is not None and result.error.kind == "memory_limit"
    assert stdout(await box.python("print('alive')", session="s-mem")) == "alive\n"
    # Past the container's limit (the cgroup's, for every process of the family together):
    # the kernel's child process is killed by the OOM killer.
    code = (
        "import subprocess, sys\n"
        "r = subprocess.run([sys.executable, '-c', \"x = b'x' * (480 << 20)\"])\n"
        "print(r.returncode)"
    )
    assert stdout(await box.python(code, session="s-mem")) == "-9\n"
    assert stdout(await box.python("print('still alive')", session="s-mem")) == "still alive\n"
    await box.states.close("s-mem")


# ------------------------------------------------------------------ start errors


async def test_start_without_engine_image_or_runtime_says_so(
    engine: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"docker_image": "toolfleet-sandbox:no-such-tag"}, "build-images.sh"),
        ({"docker_runtime": "no-such-runtime"}, "no runtime 'no-such-runtime'"),
    ]
    for overrides, message in cases:
        backend = docker_backend.DockerBackend(
            SandboxSettings(**{**SETTINGS, "state_dir": tmp_path, **overrides})
        )
        with pytest.raises(SandboxUnavailableError, match=message):
            await backend.start()
        assert backend.client is None
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    backend = docker_backend.DockerBackend(SandboxSettings(**{**SETTINGS, "state_dir": tmp_path}))
    with pytest.raises(SandboxUnavailableError, match="cannot reach the Docker engine"):
        await backend.start()


# ------------------------------------------------------------------ lifetime of containers


async def test_stateless_call_container_is_removed(box: Box) -> None:
    container_id = stdout(await box.python(CONTAINER_ID)).strip()
    assert await eventually(lambda: gone(box.backend.client, container_id))


async def test_stop_removes_every_container_and_file(engine: Any, tmp_path: Any) -> None:
    async with sandbox(tmp_path) as b:
        await b.python("x = 1", session="s-stop")
        instance = b.backend.instance
        # the session's container and the pools' (refilled in the background)
        assert await eventually(
            lambda: len(ours(engine, **{docker_backend.LABEL: instance})) >= 2, within_s=30
        )
    assert ours(engine, **{docker_backend.LABEL: instance}) == []
    assert list(tmp_path.iterdir()) == []


async def test_stale_containers_of_dead_instances_are_removed_at_start(
    engine: Any, tmp_path: Any
) -> None:
    probe = await asyncio.create_subprocess_exec("true")  # a service instance, exited
    await probe.wait()
    owner = docker_backend._owner()
    labels = {
        docker_backend.LABEL: "deadbeef",
        docker_backend.LABEL_OWNER: owner,
        docker_backend.LABEL_PROCESS: f"{probe.pid}:1",
    }
    alive_labels = {
        docker_backend.LABEL: "alive",
        docker_backend.LABEL_OWNER: owner,
        docker_backend.LABEL_PROCESS: docker_backend._process_id(os.getpid()) or "",
    }
    command = ["python", "-c", "import time; time.sleep(300)"]
    options = dict(detach=True, network_mode="none", read_only=True, auto_remove=False)
    stale = engine.containers.run(IMAGE, command, labels=labels, **options)
    live = engine.containers.run(IMAGE, command, labels=alive_labels, **options)
    try:
        async with sandbox(tmp_path):
            assert gone(engine, stale.id)
            assert not gone(engine, live.id)  # its service (this process) is alive
    finally:
        for c in (stale, live):
            if not gone(engine, c.id):
                c.remove(force=True)


async def test_kill_9_of_the_service_leaves_no_container(engine: Any, tmp_path: Any) -> None:
    """The killed service's connected containers go at once (their zygote sees its socket
    close and exits; auto-remove); one caught between start and connect goes when the next
    service instance starts."""
    import httpx

    port = free_port()
    env = {
        **os.environ,
        "TOOLFLEET_SANDBOX_BACKEND": "docker",
        "TOOLFLEET_SANDBOX_POOL_SIZE": "1",
        "TOOLFLEET_SANDBOX_DOCKER_POOL_SIZE": "2",
        "TOOLFLEET_SANDBOX_STATE_DIR": str(tmp_path / "killed"),
    }
    proc = subprocess.Popen(  # noqa: ASYNC220  (wait_healthy polls a Popen)
        [PYTHON, "-m", "toolfleet.client.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def of_service() -> list[Any]:
        process = docker_backend.LABEL_PROCESS
        return [
            c
            for c in ours(engine)
            if c.attrs.get("Labels", {}).get(process, "").startswith(f"{proc.pid}:")
        ]

    try:
        url = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(wait_healthy, url, proc, 120)
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            r = await client.post(
                "/v1/tools/python/call",
                json={"arguments": {"code": CONTAINER_ID}, "trajectory_id": "t-kill"},
            )
        assert r.json()["ok"], r.text
        session_container = r.json()["data"]["stdout"].strip()
        assert await eventually(lambda: len(of_service()) >= 3)  # session + warm pool
    finally:
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
    assert await eventually(lambda: gone(engine, session_container), within_s=30)
    async with sandbox(tmp_path / "next"):
        assert of_service() == []


# ------------------------------------------------------------------ gVisor


async def test_runsc(engine: Any, tmp_path: Any) -> None:
    runtimes = engine.api.info().get("Runtimes") or {}
    if "runsc" not in runtimes:
        if os.environ.get("CI"):
            pytest.fail("runsc is not registered: run deploy/docker/install-docker.sh")
        pytest.skip("runsc (gVisor) is not registered with the Docker engine")
    started = sandbox(tmp_path, docker_runtime="runsc")
    b = await started.__aenter__()
    try:
        assert b.backend.describe()["runtime"] == "runsc"
        assert stdout(await b.python("print(1+1)", session="g")) == "2\n"
        await b.python("y = 'forked'", session="g")
        await b.states.fork("g", "g2")
        forked = await b.python("print(y)", session="g2")
        assert stdout(forked) == "forked\n", forked
        # gVisor's own kernel answers, not the host's
        release = stdout(await b.python("import os\nprint(os.uname().release)", session="g"))
        assert release.strip() != os.uname().release
        result = await b.python(
            "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=3)\n"
            "except OSError as exc:\n    print('refused')",
            session="g",
        )
        assert stdout(result) == "refused\n"
        out = stdout(
            await b.bash(
                'touch /usr/x 2>/dev/null; echo "usr=$?"; '
                'touch /run/toolfleet/x 2>/dev/null; echo "run=$?"; touch here && echo ok'
            )
        )
        assert out == "usr=1\nrun=1\nok\n"
        memory = await b.python("x = bytearray(2 << 30)", session="g")
        assert memory.error is not None and memory.error.kind == "memory_limit"
        container = b.container("g")
        attrs = engine.api.inspect_container(container.id)
        assert attrs["HostConfig"]["Runtime"] == "runsc"
        await b.states.close("g")
        after = await b.python("print(y)", session="g2")
        assert stdout(after) == "forked\n", after
        await b.states.close("g2")
        assert gone(engine, container.id)
    finally:
        await started.__aexit__(None, None, None)
