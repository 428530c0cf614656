"""Distributed mode for real: docker-compose.yml with the host-network override
(deploy/compose/host-network.yml) brings up Redis, two gateway replicas behind the HAProxy
balancer and workers of every service (two of the sandbox), and calls go through the
balancer and the gateways to the workers in their containers.

Every container is in the host's network namespace and all traffic is on 127.0.0.1, on free
ports given to the override. The stack is one compose project of its own
(``toolfleet-test-<pid>``), taken down (containers and volumes) at the end; stacks of earlier
test runs whose process is gone are taken down first.

Needs a Docker engine, Compose v2 and the images (deploy/docker/compose-images.sh, which
`make test` runs). The module refreshes the images from the working tree first (cached layers:
seconds). Without those it skips, except under CI (env CI set), where it fails.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.helpers import ROOT, free_port

COMPOSE_FILES = (ROOT / "docker-compose.yml", ROOT / "deploy/compose/host-network.yml")
IMAGES = (
    "toolfleet-redis:latest",
    "toolfleet-lb:latest",
    "toolfleet-gateway:latest",
    "toolfleet-sandbox:latest",
    "toolfleet-search:latest",
    "toolfleet-sql:latest",
    "toolfleet-vision:latest",
    "toolfleet-mcp:latest",
)
SERVICES = ("sandbox", "search", "sql", "vision", "mcp")
SANDBOX_WORKERS = 2
PROJECT_PREFIX = "toolfleet-test-"
READY_WITHIN_S = 120.0  # compose up to a gateway that answers calls
REGISTERED_WITHIN_S = 90.0  # then every service's workers listed by /readyz


def _run(cmd: list[str], timeout_s: float, env: dict[str, str] | None = None) -> str:
    """Run a command; its stdout. Raises with stdout and stderr when it fails."""
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited with {proc.returncode}\n{proc.stdout[-3000:]}"
            f"\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


def _compose_or_problem() -> tuple[list[str], str | None]:
    """The compose command (``docker compose`` v2), or what is missing."""
    if shutil.which("docker") is None:
        return [], "no docker command: run deploy/docker/install-docker.sh"
    try:
        _run(["docker", "info"], 30)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return [], f"no Docker engine ({exc}): run deploy/docker/install-docker.sh"
    try:
        _run(["docker", "compose", "version"], 30)
    except (RuntimeError, subprocess.TimeoutExpired):
        return [], "no Docker Compose v2: run deploy/docker/install-compose.sh"
    missing = []
    for image in IMAGES:
        try:
            _run(["docker", "image", "inspect", image], 30)
        except RuntimeError:
            missing.append(image)
    if missing:
        return [], f"no image {', '.join(missing)}: run deploy/docker/compose-images.sh"
    return ["docker", "compose", "--ansi", "never"], None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _down_stale_stacks(compose: list[str]) -> None:
    """Take down the stacks of earlier runs of this module whose process is gone."""
    out = _run(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            "label=com.docker.compose.project",
            "--format",
            '{{.Label "com.docker.compose.project"}}',
        ],
        30,
    )
    for project in sorted(set(out.split())):
        pid = project.removeprefix(PROJECT_PREFIX)
        if project.startswith(PROJECT_PREFIX) and pid.isdigit() and not _alive(int(pid)):
            _run([*compose, "-p", project, "down", "-v", "--remove-orphans", "-t", "5"], 120)


def _ports() -> tuple[int, int, int, int]:
    """Four distinct free ports on 127.0.0.1: the balancer's, Redis's, the two gateways'."""
    ports: list[int] = []
    while len(ports) < 4:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports[0], ports[1], ports[2], ports[3]


@dataclass
class Stack:
    """A running compose project and what the tests need of it."""

    compose: list[str]  # docker compose -p ... -f ... -f ...
    env: dict[str, str]
    url: str
    redis_port: int
    gateway_ports: tuple[int, int]

    def logs(self) -> str:
        """The containers' last lines, for failure messages."""
        try:
            return _run([*self.compose, "logs", "--no-color", "--tail", "40"], 60, self.env)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            return f"(no logs: {exc})"

    def containers(self) -> list[dict[str, Any]]:
        """``docker compose ps`` of every container of the project (also stopped ones)."""
        out = _run([*self.compose, "ps", "-a", "--format", "json"], 60, self.env).strip()
        if out.startswith("["):  # older compose: one JSON array
            return json.loads(out)
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def _wait_ready(stack: Stack, client: httpx.Client) -> None:
    """Until /readyz is 200 and lists sandbox workers (bounded)."""
    deadline = time.monotonic() + READY_WITHIN_S
    last: object = None
    while time.monotonic() < deadline:
        try:
            r = client.get("/readyz", timeout=2)
            last = (r.status_code, r.text[:500])
            if r.status_code == 200 and "sandbox" in (r.json().get("services") or {}):
                return
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.5)
    pytest.fail(
        f"the gateway was not ready within {READY_WITHIN_S:.0f}s (last: {last!r})\n{stack.logs()}"
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """The whole stack, host network, SANDBOX_WORKERS sandbox workers; down after."""
    compose, problem = _compose_or_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    # The images are the working tree's (a no-op but for edited layers, after make test's).
    _run(
        ["bash", str(ROOT / "deploy/docker/compose-images.sh")],
        900,
        {**os.environ, "NO_INSTALL": "1"},
    )
    _down_stale_stacks(compose)

    gateway_port, redis_port, first, second = _ports()
    env = {
        **os.environ,
        "TOOLFLEET_COMPOSE_GATEWAY_PORT": str(gateway_port),
        "TOOLFLEET_COMPOSE_REDIS_PORT": str(redis_port),
        "TOOLFLEET_COMPOSE_GATEWAY_1_PORT": str(first),
        "TOOLFLEET_COMPOSE_GATEWAY_2_PORT": str(second),
    }
    files = [arg for path in COMPOSE_FILES for arg in ("-f", str(path))]
    project = [*compose, "-p", f"{PROJECT_PREFIX}{os.getpid()}", *files]
    stack = Stack(project, env, f"http://127.0.0.1:{gateway_port}", redis_port, (first, second))
    try:
        up = ["up", "-d", "--no-build", "--scale", f"sandbox={SANDBOX_WORKERS}"]
        _run([*project, *up], 180, env)
        with httpx.Client(base_url=stack.url) as client:
            _wait_ready(stack, client)
        yield stack
    finally:
        _run([*project, "down", "-v", "--remove-orphans", "-t", "20"], 180, env)


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=60) as c:
        yield c


def call(client: httpx.Client, tool: str, stack: Stack, **body: Any) -> dict[str, Any]:
    """One call through the gateway; the observation (a tool's failure fails the test)."""
    r = client.post(f"/v1/tools/{tool}/call", json=body)
    assert r.status_code == 200, f"{r.status_code} {r.text}\n{stack.logs()}"
    obs = r.json()
    assert obs["ok"], f"{obs}\n{stack.logs()}"
    return obs


# ------------------------------------------------------------------ the stack itself


def test_every_container_runs(stack: Stack) -> None:
    running: dict[str, int] = {}
    for container in stack.containers():
        assert container["State"] == "running", f"{container}\n{stack.logs()}"
        running[container["Service"]] = running.get(container["Service"], 0) + 1
    expected = {"redis": 1, "lb": 1, "gateway": 1, "gateway-2": 1, "search": 1, "sql": 1}
    expected |= {"vision": 1, "mcp": 1}
    assert running == {**expected, "sandbox": SANDBOX_WORKERS}


def test_redis_answers_on_loopback(stack: Stack) -> None:
    with socket.create_connection(("127.0.0.1", stack.redis_port), timeout=5) as s:
        s.sendall(b"PING\r\n")
        assert s.recv(64) == b"+PONG\r\n"


def test_every_service_has_live_workers(stack: Stack, client: httpx.Client) -> None:
    deadline = time.monotonic() + REGISTERED_WITHIN_S
    while True:
        ready = client.get("/readyz")
        services = ready.json().get("services") or {} if ready.status_code == 200 else {}
        sandbox = len(services.get("sandbox", {}).get("workers", []))
        registered = set(SERVICES) <= set(services) and sandbox == SANDBOX_WORKERS
        if registered or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert ready.status_code == 200, ready.text
    assert set(SERVICES) <= set(services), f"{ready.text}\n{stack.logs()}"
    assert len(services["sandbox"]["workers"]) == SANDBOX_WORKERS, ready.text
    # the local backend inside the worker containers, with all its isolation
    sandbox = services["sandbox"]
    assert sandbox["backend"] == "local"
    assert sandbox["jailed"] is True and sandbox["pid_namespace"] is True, ready.text
    assert sandbox["seccomp"] is True, ready.text


# ------------------------------------------------------------------ calls through it


def test_tools_are_listed(client: httpx.Client) -> None:
    r = client.get("/v1/tools")
    assert r.status_code == 200, r.text
    names = {tool["name"] for tool in r.json()["tools"]}
    assert {"python", "bash"} <= names


def test_stateless_python(stack: Stack, client: httpx.Client) -> None:
    obs = call(client, "python", stack, arguments={"code": "print(1+1)"})
    assert obs["data"]["stdout"] == "2\n"


def test_session_state_and_fork(stack: Stack, client: httpx.Client) -> None:
    r = client.post("/v1/sessions")
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    call(client, "python", stack, session_id=sid, arguments={"code": "x = 41"})
    obs = call(client, "python", stack, session_id=sid, arguments={"code": "x + 1"})
    assert obs["data"]["result"] == "42"
    assert obs["session_id"] == sid

    r = client.post(f"/v1/sessions/{sid}/fork")
    assert r.status_code == 201, r.text
    child = r.json()["session_id"]
    assert child != sid and r.json()["parent_id"] == sid
    obs = call(client, "python", stack, session_id=child, arguments={"code": "x = x + 2\nx"})
    assert obs["data"]["result"] == "43"  # the fork has the parent's globals
    obs = call(client, "python", stack, session_id=sid, arguments={"code": "x"})
    assert obs["data"]["result"] == "41"  # and the parent does not see the fork's

    for session in (child, sid):
        assert client.delete(f"/v1/sessions/{session}").status_code == 200


def test_any_gateway_serves_any_session_and_the_balancer_spreads_requests(
    stack: Stack, client: httpx.Client
) -> None:
    """A session opened through one gateway is used, forked, read and released through the
    other and through the balancer: no sticky routing anywhere."""
    one, two = (
        httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=60) for p in stack.gateway_ports
    )
    with one, two:
        r = one.post("/v1/sessions", json={"trajectory_id": "compose-t"})
        assert r.status_code == 201, r.text
        sid = r.json()["session_id"]
        obs = two.post(
            "/v1/tools/python/call",
            json={"arguments": {"code": "x = 41"}, "trajectory_id": "compose-t"},
        ).json()
        assert obs["ok"] and obs["session_id"] == sid, obs
        for _ in range(4):  # through the balancer: round-robin over both gateways
            obs = call(client, "python", stack, session_id=sid, arguments={"code": "x"})
            assert obs["data"]["result"] == "41"
        fork = two.post(f"/v1/sessions/{sid}/fork").json()["session_id"]
        obs = call(client, "python", stack, session_id=fork, arguments={"code": "x + 1"})
        assert obs["data"]["result"] == "42"
        usage = one.get("/v1/trajectories/compose-t/usage").json()
        assert usage["total"]["calls"] == 5
        assert two.delete("/v1/trajectories/compose-t").json()["total"]["calls"] == 5
        assert one.get(f"/v1/sessions/{sid}").status_code == 404


def test_kernels_have_no_network_though_workers_share_the_hosts(
    stack: Stack, client: httpx.Client
) -> None:
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {stack.redis_port}), timeout=2)\n"
        "    print('connected')\n"
        "except OSError as exc:\n"
        "    print('refused', exc.errno)\n"
        "print(open('/proc/net/dev').read().count(':'))"
    )
    obs = call(client, "python", stack, arguments={"code": code})
    refused, interfaces = obs["data"]["stdout"].splitlines()
    assert refused.startswith("refused")
    assert interfaces == "1"  # lo only: the zygote's own, empty net namespace


def test_service_routes_are_served_by_the_gateway_image(stack: Stack, client: httpx.Client) -> None:
    """The gateway's image holds the services' packages (not their libraries) and mounts the
    routes they declare, which reach the workers: session files, SandboxFusion's /run_code
    (sandbox) and session media (vision)."""
    sid = client.post("/v1/sessions").json()["session_id"]
    r = client.put(f"/v1/sessions/{sid}/files/data.txt", content=b"41")
    assert r.status_code == 200, f"{r.text}\n{stack.logs()}"
    obs = call(
        client, "python", stack, session_id=sid, arguments={"code": "open('data.txt').read()"}
    )
    assert obs["data"]["result"] == "'41'"
    r = client.post("/run_code", json={"code": "print(6 * 7)", "language": "python"})
    assert r.status_code == 200 and r.json()["run_result"]["stdout"] == "42\n", r.text
    png = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(png, format="PNG")
    r = client.put(f"/v1/sessions/{sid}/media", content=png.getvalue())
    assert r.status_code == 201, f"{r.text}\n{stack.logs()}"
    assert (r.json()["width"], r.json()["height"]) == (40, 30)
    assert client.delete(f"/v1/sessions/{sid}").status_code == 200
