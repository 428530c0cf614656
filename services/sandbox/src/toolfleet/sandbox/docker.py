"""The docker backend: one container per family of kernels, taken from a warm pool.

Each container runs the zygote as its PID 1 on the image's sandbox runtime (the container is
the jail: no network, a read-only root, tmpfs /box, /tmp and /mnt, its own IPC namespace and
/dev/shm, memory, pid and CPU limits, optionally gVisor). The zygote and the family's
supervisor run as the container's root with only the capabilities they need to confine and
watch the family (setuid/setgid, kill, file ownership); the processes that run model code
drop to uid 65532 with no capability at all. The zygote listens on a Unix socket in a host
directory bind-mounted at /run/toolfleet; the service connects to it from the host and from
then on speaks the same protocol as with the local backend (``family`` carries the
supervisor's channel with SCM_RIGHTS).

Containers are started ahead of need (``docker_pool_size``) so that a new family costs no
container start. Every container carries the labels of the service instance that made it:
``stop()`` removes all of this instance's, ``start()`` those of dead instances on this host.
The zygote exits when the service's end of its socket closes, even after a ``kill -9`` of the
service, and containers are started with auto-remove, so they do not outlive the service (one
caught between its start and the service's connect is removed by the next ``start()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolfleet.box.jail import LIB, RUNTIME
from toolfleet.box.launch import BOOT
from toolfleet.sandbox.backend import (
    Backend,
    Family,
    SandboxUnavailableError,
    ZygoteClient,
    remove_stale_state,
    state_dir_of,
    zygote_init,
)
from toolfleet.sandbox.pool import later
from toolfleet.sandbox.seccomp import compile_filter
from toolfleet.sandbox.settings import SandboxSettings

log = logging.getLogger(__name__)

CONTAINER_UID = 65532  # the image's `sandbox` user: the uid of every process of model code
# What the container's root (zygote, supervisor) keeps: dropping to the sandbox uid, signalling
# and reaping its processes, the files API on its files. Everything else is dropped.
CAPABILITIES = ["SETUID", "SETGID", "KILL", "CHOWN", "FOWNER", "DAC_OVERRIDE"]
SOCKET_DIR = "/run/toolfleet"
SOCKET_NAME = "zygote.sock"
BOX_ROOT = "/box"
TMP_SIZE = "16m"
ZYGOTE_HEADROOM_MB = 256  # the zygote's own memory (preloaded libraries) on top of a kernel's
PROCESS_MARGIN = 16  # the zygote and short-lived helpers on top of the kernels' processes
# Under gVisor the pids cgroup counts the sandbox's host threads: the Sentry's own (~50 idle)
# and, on the ptrace platform, about six per process inside.
GVISOR_THREADS = 128
GVISOR_THREADS_PER_PROCESS = 8
START_TIMEOUT_S = 60.0
MAX_PARALLEL_STARTS = 4

LABEL = "toolfleet.sandbox"  # value: the service instance's id
LABEL_OWNER = "toolfleet.sandbox.owner"  # hostname/pid-namespace of the service
LABEL_PROCESS = "toolfleet.sandbox.process"  # pid:start-time of the service


@dataclass
class Container:
    """A started container whose zygote has said it is ready."""

    name: str
    id: str
    directory: Path
    zygote: ZygoteClient
    uid: int
    info: dict[str, Any] = field(default_factory=dict)

    def alive(self) -> bool:
        """False when the zygote's end of the socket is closed (the container is gone)."""
        try:
            return self.zygote.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False


class DockerFamily(Family):
    """A container of its own: its zygote, its tmpfs, its limits."""

    def __init__(self, backend: DockerBackend, container: Container) -> None:
        super().__init__(container.zygote, container.uid, backend.limits, fid=1)
        self.backend = backend
        self.container = container

    async def _close(self) -> None:
        await self.backend.discard(self.container)


class DockerBackend(Backend):
    """Kernels in containers, one container per family, from a pool of started ones."""

    name = "docker"

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.limits = settings.limits()
        self.cpus = settings.docker_cpus
        self.instance = secrets.token_hex(4)
        self.uid = CONTAINER_UID
        self.seccomp: bytes | None = None
        self.client: Any = None  # docker.DockerClient
        self.info: dict[str, Any] = {}
        self._dir = state_dir_of(settings.state_dir, "docker")
        self._ready: list[Container] = []
        self._serial = 0
        self._refill: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._threads: set[asyncio.Future[Any]] = set()  # blocking docker calls in flight
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._stopping = False
        try:
            await self._start()
        except BaseException:
            await self.stop()  # nothing half-started stays behind
            raise
        log.info("sandbox: docker backend ready: %s", self.describe())

    async def _start(self) -> None:
        self.seccomp = compile_filter()
        self.client = await self._blocking(_connect)
        await self._blocking(self._check_image_and_runtime)
        removed = await self._blocking(self._remove_stale_containers)
        if removed:
            log.info("sandbox: removed %d containers of dead service instances", removed)
        remove_stale_state(self.settings.state_dir, "docker")
        # 0700: no other user of the host reaches a zygote's socket before the service does
        self._dir.mkdir(parents=True, exist_ok=True)
        self._dir.chmod(0o700)
        # One container now: a broken image or runtime fails here, with the zygote's output.
        try:
            first = await self._start_container()
        except SandboxUnavailableError as exc:
            # Again without auto-remove, so that the output of a zygote that exits is kept.
            log.warning("sandbox: first container failed (%s); trying once more", exc)
            first = await self._start_container(auto_remove=False)
        self.info = first.info
        self._ready.append(first)
        self._refill = asyncio.create_task(self._keep_filled(), name="docker-pool")

    async def stop(self) -> None:
        self._stopping = True
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill
            self._refill = None
        if self._threads:  # a container being created: let it finish, then sweep it too
            await asyncio.wait(set(self._threads), timeout=START_TIMEOUT_S)
        ready, self._ready = self._ready, []
        for container in ready:
            container.zygote.close()
        if self.client is not None:
            await self._blocking(self._remove_containers, {"label": f"{LABEL}={self.instance}"})
            await asyncio.to_thread(self.client.close)
            self.client = None
        shutil.rmtree(self._dir, ignore_errors=True)

    async def new_family(self, light: bool = False) -> Family:
        if self.client is None or self._stopping:
            raise SandboxUnavailableError("the sandbox is not running")
        container = None
        while self._ready:
            candidate = self._ready.pop(0)
            if candidate.alive():
                container = candidate
                break
            later(self.discard(candidate))
        self._wakeup.set()
        if container is None:
            container = await self._start_container()
        family = DockerFamily(self, container)
        try:
            await family.open()
        except BaseException:
            await family.close()
            raise
        return family

    def pids_limit(self) -> int:
        """The containers' pids limit: the family's processes, and the runtime's threads."""
        if "runsc" in (self.settings.docker_runtime or ""):
            return GVISOR_THREADS + GVISOR_THREADS_PER_PROCESS * self.settings.processes
        return self.settings.processes + PROCESS_MARGIN

    def describe(self) -> dict[str, Any]:
        info = dict(self.info)
        info.pop("op", None)
        return {
            "backend": self.name,
            "image": self.settings.docker_image,
            "runtime": self.settings.docker_runtime or "default",
            "warm_containers": len(self._ready),
            **info,
        }

    async def discard(self, container: Container) -> None:
        """Remove a container (its kernels die with its zygote) and its host directory."""
        try:
            await self._blocking(self._remove_container, container.id)
        finally:
            container.zygote.close()
            shutil.rmtree(container.directory, ignore_errors=True)

    # ------------------------------------------------------------------ the pool

    async def _keep_filled(self) -> None:
        backoff = 1.0
        while not self._stopping:
            missing = self.settings.docker_pool_size - len(self._ready)
            if missing <= 0:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            starts = [self._start_container() for _ in range(min(missing, MAX_PARALLEL_STARTS))]
            results = await asyncio.gather(*starts, return_exceptions=True)
            failed = False
            for result in results:
                if isinstance(result, Container):
                    self._ready.append(result)
                elif isinstance(result, Exception):
                    failed = True
                    log.error("sandbox: docker pool: %s", result)
                else:
                    raise result
            if failed:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            else:
                backoff = 1.0

    async def _start_container(self, auto_remove: bool = True) -> Container:
        """Create and start a container, connect to its zygote and wait until it is ready."""
        self._serial += 1
        name = f"toolfleet-sbx-{self.instance}-{self._serial}"
        directory = self._dir / name
        directory.mkdir(mode=0o755)  # root's: the container's root binds the socket in it
        deadline = time.monotonic() + START_TIMEOUT_S
        create = self._blocking(self._create_container, name, directory, auto_remove)
        try:
            container_id = await asyncio.shield(create)
        except asyncio.CancelledError:
            # The thread goes on: remove what it creates once it is done.
            create.add_done_callback(self._remove_orphan)
            shutil.rmtree(directory, ignore_errors=True)
            raise
        except Exception as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise SandboxUnavailableError(f"cannot start a sandbox container: {exc}") from exc
        try:
            sock = await self._connect(container_id, directory / SOCKET_NAME, deadline)
            zygote = ZygoteClient(sock)
            init = zygote_init(
                self.settings.preload, self.seccomp, huge_pages=False, uid_limits=False
            )
            try:
                info = await zygote.handshake(init, max(0.1, deadline - time.monotonic()))
            except BaseException:
                zygote.close()
                raise
        except BaseException as exc:
            logs = await self._logs(container_id)
            await asyncio.shield(self._blocking(self._remove_container, container_id))
            shutil.rmtree(directory, ignore_errors=True)
            if isinstance(exc, Exception):
                raise SandboxUnavailableError(
                    f"sandbox container {name} did not start ({exc!r}); its output: "
                    f"{logs or '(none)'}"
                ) from exc
            raise
        return Container(name, container_id, directory, zygote, self.uid, info)

    def _remove_orphan(self, create: asyncio.Future[Any]) -> None:
        if not create.cancelled() and create.exception() is None:
            later(self._blocking(self._remove_container, create.result()))

    async def _connect(self, container_id: str, path: Path, deadline: float) -> socket.socket:
        """Connect to the zygote's socket once it appears (it binds it right after start)."""
        next_check = time.monotonic() + 0.5
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                _connect_unix(sock, path)
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
            except BaseException:
                sock.close()
                raise
            now = time.monotonic()
            if now > deadline:
                raise SandboxUnavailableError(f"no zygote socket at {path}")
            if now > next_check:
                next_check = now + 0.5
                state = await self._blocking(self._state, container_id)
                if state != "running":
                    raise SandboxUnavailableError(f"the container is {state}")
            await asyncio.sleep(0.005)

    # ------------------------------------------------------------------ blocking docker calls

    def _blocking(self, func: Any, *args: Any) -> asyncio.Future[Any]:
        """Run a blocking docker call in a thread; stop() waits for those still running."""
        future = asyncio.ensure_future(asyncio.to_thread(func, *args))
        self._threads.add(future)
        future.add_done_callback(self._threads.discard)
        return future

    def _create_container(self, name: str, directory: Path, auto_remove: bool = True) -> str:
        s = self.settings
        api = self.client.api
        memory = f"{(self.limits.family_memory_bytes >> 20) + ZYGOTE_HEADROOM_MB}m"
        host_config = api.create_host_config(
            binds={str(directory): {"bind": SOCKET_DIR, "mode": "rw"}},
            # exec: compiled programs run from the workspace (Docker's tmpfs default is noexec)
            tmpfs={
                BOX_ROOT: f"rw,exec,nosuid,nodev,size={s.disk_mb}m,mode=0755",
                "/tmp": f"rw,exec,nosuid,nodev,size={TMP_SIZE},mode=1777",
                "/mnt": f"rw,exec,nosuid,nodev,size={TMP_SIZE},mode=1777",
            },
            network_mode="none",
            read_only=True,
            mem_limit=memory,
            memswap_limit=memory,
            pids_limit=self.pids_limit(),
            nano_cpus=int(self.cpus * 1e9),
            cap_drop=["ALL"],
            cap_add=CAPABILITIES,
            security_opt=["no-new-privileges"],
            auto_remove=auto_remove,
            runtime=s.docker_runtime or None,
            log_config={"Type": "json-file", "Config": {"max-size": "1m"}},
        )
        created = api.create_container(
            s.docker_image,
            command=_zygote_command(),
            name=name,
            user="0:0",
            hostname="sandbox",
            working_dir=BOX_ROOT,
            labels={
                LABEL: self.instance,
                LABEL_OWNER: _owner(),
                LABEL_PROCESS: _process_id(os.getpid()) or "",
            },
            host_config=host_config,
        )
        api.start(created["Id"])
        return str(created["Id"])

    def _state(self, container_id: str) -> str:
        import docker.errors

        try:
            return str(self.client.api.inspect_container(container_id)["State"]["Status"])
        except docker.errors.NotFound:
            return "removed"

    def _remove_container(self, container_id: str) -> None:
        import docker.errors

        try:
            self.client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: auto-removal already under way
                raise
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.wait(container_id, timeout=30, condition="removed")

    def _remove_containers(self, filters: dict[str, Any]) -> int:
        import docker.errors

        found = self.client.api.containers(all=True, filters=filters)
        for entry in found:
            with contextlib.suppress(docker.errors.APIError):
                self._remove_container(entry["Id"])
        return len(found)

    def _remove_stale_containers(self) -> int:
        """Remove containers made by service instances on this host that are gone."""
        found = self.client.api.containers(all=True, filters={"label": f"{LABEL_OWNER}={_owner()}"})
        stale = 0
        for entry in found:
            process = (entry.get("Labels") or {}).get(LABEL_PROCESS, "")
            pid = process.split(":", 1)[0]
            if pid.isdigit() and _process_id(int(pid)) == process:
                continue  # its service is alive
            self._remove_container(entry["Id"])
            stale += 1
        return stale

    def _check_image_and_runtime(self) -> None:
        import docker.errors

        s = self.settings
        try:
            self.client.api.inspect_image(s.docker_image)
        except docker.errors.ImageNotFound as exc:
            raise SandboxUnavailableError(
                f"the sandbox image {s.docker_image} is not on this Docker engine: build it with "
                "deploy/docker/build-images.sh"
            ) from exc
        if s.docker_runtime:
            runtimes = self.client.api.info().get("Runtimes") or {}
            if s.docker_runtime not in runtimes:
                raise SandboxUnavailableError(
                    f"the Docker engine has no runtime {s.docker_runtime!r} (it has "
                    f"{', '.join(sorted(runtimes))}): register it in /etc/docker/daemon.json, "
                    "see deploy/docker/install-docker.sh"
                )

    async def _logs(self, container_id: str) -> str:
        def read() -> str:
            try:
                data = self.client.api.logs(container_id, tail=40)
            except Exception:
                return ""
            return data.decode(errors="replace").strip()[-2000:]

        return await asyncio.to_thread(read)


def _connect() -> Any:
    """A client of the Docker engine named by the environment (DOCKER_HOST), pinged."""
    try:
        import docker
        import docker.errors
    except ImportError as exc:
        raise SandboxUnavailableError("the docker backend needs the `docker` package") from exc
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        raise SandboxUnavailableError(
            f"cannot reach the Docker engine ({exc}): start it, e.g. with "
            "deploy/docker/install-docker.sh"
        ) from exc
    return client


def _connect_unix(sock: socket.socket, path: Path) -> None:
    """connect(2) to a Unix socket, also at a path over the 107 bytes sockaddr_un holds."""
    if len(os.fsencode(path)) < 100:
        sock.connect(str(path))
        return
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        sock.connect(f"/proc/self/fd/{directory}/{path.name}")
    finally:
        os.close(directory)


def _zygote_command() -> list[str]:
    return [
        f"{RUNTIME}/bin/python", "-I", "-c", BOOT.format(lib=LIB),
        "--listen", f"{SOCKET_DIR}/{SOCKET_NAME}",
        "--box-root", BOX_ROOT,
        "--private-tmp",
    ]  # fmt: skip


def _owner() -> str:
    """This host and pid namespace: pids in LABEL_PROCESS are only meaningful within it."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}.{namespace}"


def _process_id(pid: int) -> str | None:
    """``pid:start-time``: tells a live process from a later one with the same pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            started = f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
    return f"{pid}:{started}"
