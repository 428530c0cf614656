"""Settings of the sandbox service: ``TOOLFLEET_SANDBOX_*`` environment variables, or the
``[sandbox]`` table of the TOML config file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from toolfleet.box.jail import Limits
from toolfleet.core.settings import WORKER_ORDINAL_ENV, ServiceSettings


class SandboxSettings(ServiceSettings):
    """How kernels are isolated, limited and pooled."""

    model_config = SettingsConfigDict(env_prefix="TOOLFLEET_SANDBOX_", extra="forbid")
    section = "sandbox"

    backend: Literal["local", "docker"] = Field(
        default="local", description="local: namespaces on this host; docker: containers."
    )
    isolation: Literal["auto", "jail", "none"] = Field(
        default="auto",
        description="local backend: jail = namespaces + chroot + per-family uid (needs root or "
        "user namespaces); none = limits only; auto = jail when possible.",
    )
    pool_size: int = Field(default=4, ge=0, description="Fresh kernels kept ready.")
    light_pool_size: int = Field(
        default=4,
        ge=0,
        description="Local backend: fresh kernels of the light template "
        "(stateless calls that import none of the heavy preloads); 0 turns it off.",
    )
    light_preload: list[str] = Field(
        default=["numpy"], description="What the light template preloads."
    )
    zygotes: int = Field(
        default=2,
        ge=1,
        description="Local backend: zygotes per template (full, light) forking in parallel.",
    )
    preload: list[str] = Field(
        default=["numpy", "sympy", "pandas", "matplotlib", "matplotlib.pyplot", "PIL.Image"],
        description="Modules the zygote imports once so kernels start with them loaded.",
    )
    huge_pages: bool = Field(
        default=True,
        description="Back the zygote's memory with 2 MiB pages (Linux 6.1+): kernels fork "
        "about a third faster.",
    )
    memory_mb: int = Field(default=1024, gt=0, description="Memory per kernel (MiB).")
    disk_mb: int = Field(default=256, gt=0, description="Workspace disk per family (MiB).")
    file_mb: int = Field(default=64, gt=0, description="Largest file a kernel may write.")
    processes: int = Field(default=64, gt=0, description="Processes per family.")
    open_files: int = Field(default=256, gt=0, description="Open files per process.")
    cpu_seconds: int = Field(default=3600, gt=0, description="CPU seconds per kernel lifetime.")
    max_output_chars: int = Field(
        default=100_000, gt=0, description="stdout+stderr bytes per call (UTF-8)."
    )
    max_program_output_bytes: int = Field(
        default=16 << 20,
        gt=0,
        description="stdout+stderr kept per program run (run_program, /run_code, the judge); "
        "a program's output past it is cut (and said), the program is not stopped.",
    )
    compile_cache_mb: int = Field(
        default=256,
        ge=0,
        description="Compiled programs kept by the service (language, toolchain version, "
        "command, source and files), so a resubmitted program is not compiled again.",
    )
    judge_parallel: int = Field(
        default=0,
        ge=0,
        description="Cases of one judgement run at once; 0: more than the CPUs a family may "
        "use (two more than the host's on the local backend, one more than docker_cpus on "
        "docker), so that a CPU does not wait while a finished case's verdict goes back and "
        "the next case's request comes.",
    )
    max_images: int = Field(default=16, ge=0, description="Images returned per call.")
    max_image_bytes: int = Field(default=8 << 20, gt=0, description="Largest image returned.")
    max_file_bytes: int = Field(default=32 << 20, gt=0, description="Largest upload/download.")
    uid_base: int | None = Field(
        default=None,
        gt=0,
        description="First uid given to a family. Unset: the instance claims a free range of "
        "its own on this host (a distributed worker starts looking at its ordinal), so that "
        "two services on one host never share a uid and its process limit; set: exactly this "
        "range, or the service refuses to start while another instance holds it.",
    )
    uid_count: int = Field(default=60_000, gt=0, description="Uids available to families.")
    family_memory_mb: int = Field(
        default=0,
        ge=0,
        description="Memory of a family (a session and its forks) in its cgroup, its tmpfs "
        "files included; 0: 2 x memory_mb + disk_mb. Where cgroups are not available, only "
        "the per-process and disk limits hold.",
    )
    total_memory_mb: int = Field(
        default=0,
        ge=0,
        description="Ceiling on the memory of every family of this instance together "
        "(cgroup); 0: 80% of the host's memory.",
    )
    runtime_dir: Path | None = Field(
        default=None,
        description="The Python environment the model's code runs in (a virtualenv). Unset: "
        "the runtime built from toolfleet's own requirements (make runtime).",
    )
    state_dir: Path = Field(
        default=Path("/tmp/toolfleet-sandbox"), description="Where the service keeps its sockets."
    )
    interrupt_grace_s: float = Field(
        default=0.5, gt=0, description="Wait after interrupting a late call before killing it."
    )
    docker_image: str = Field(default="toolfleet-sandbox:latest", description="Kernel image.")
    docker_runtime: str | None = Field(default=None, description="e.g. runsc for gVisor.")
    docker_pool_size: int = Field(default=2, ge=0, description="Warm containers kept ready.")
    docker_cpus: float = Field(default=1.0, gt=0, description="CPUs per container.")

    def worker_ordinal(self) -> int:
        """This process's ordinal among a deployment's workers (0 outside one)."""
        ordinal = os.environ.get(WORKER_ORDINAL_ENV, "")
        return int(ordinal) if ordinal.isdigit() else 0

    def limits(self) -> Limits:
        """The per-family and per-kernel limits these settings give."""
        return Limits(
            memory_bytes=self.memory_mb << 20,
            disk_bytes=self.disk_mb << 20,
            file_bytes=self.file_mb << 20,
            processes=self.processes,
            open_files=self.open_files,
            cpu_seconds=self.cpu_seconds,
            family_memory_bytes=(self.family_memory_mb or 2 * self.memory_mb + self.disk_mb) << 20,
        )
