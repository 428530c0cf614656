"""The sandbox's Python runtime: a virtualenv of its own for the model's code.

Kernels, Python programs and ``python`` in bash run this environment, never the service's:
its packages are a chosen set (``runtime.txt``, listed in ``GET /v1/tools`` and
docs/sandbox.md), the service's dependencies are not importable, and the jail shows it at
``/opt/toolfleet/runtime`` whatever its host path. It is built from the requirements by
``python -m toolfleet.sandbox.runtime build`` (``make runtime``; the sandbox image runs the
same), into a directory named after a hash of them, so several checkouts and instances on
one host share one build per requirement set and never replace one another's. Users point
``TOOLFLEET_SANDBOX_RUNTIME_DIR`` at a virtualenv of their own instead.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("runtime.txt")
STAMP = ".toolfleet-runtime"


def requirements_hash() -> str:
    """A short hash of the requirements: the runtime directory's name."""
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]


def default_dir() -> Path:
    """Where the runtime of these requirements lives by default."""
    if os.geteuid() == 0:
        base = Path("/opt/toolfleet")
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "toolfleet"
    return base / f"runtime-{requirements_hash()}"


def packages() -> dict[str, str]:
    """The packages of the default runtime and their versions."""
    found = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[name.strip()] = version.strip()
    return found


def problem(path: Path) -> str | None:
    """Why ``path`` is not a usable runtime, or None."""
    python = path / "bin" / "python"
    if not python.exists():
        return f"no Python at {python}"
    if not (path / "pyvenv.cfg").exists():
        return f"{path} is not a virtualenv (no pyvenv.cfg)"
    return None


def base_prefix(path: Path) -> Path | None:
    """The installation the runtime's interpreter comes from (``home`` in pyvenv.cfg, one
    level up), when it lies outside the system directories the jail shows anyway."""
    for line in (path / "pyvenv.cfg").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            prefix = Path(value.strip()).parent
            if not str(prefix).startswith(("/usr", "/bin", "/lib")):
                return prefix
    return None


def build(dest: Path, python: str | None = None, uv: str | None = None) -> Path:
    """Build the runtime at ``dest`` (atomically; nothing to do if it is there)."""
    if (dest / STAMP).exists():
        return dest
    uv = uv or os.environ.get("UV") or shutil.which("uv")
    if not uv:
        raise SystemExit("building the sandbox runtime needs uv (pip install uv)")
    python = python or _system_python()
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = dest.with_name(f"{dest.name}.building-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    try:
        subprocess.run(
            [uv, "venv", "--quiet", "--relocatable", "--python", python, str(work)], check=True
        )
        subprocess.run(
            [uv, "pip", "install", "--quiet", "--compile-bytecode",
             "--python", str(work / "bin" / "python"), "-r", str(REQUIREMENTS)],
            check=True,
        )  # fmt: skip
        (work / STAMP).write_text(REQUIREMENTS.read_text())
        try:
            os.rename(work, dest)
        except OSError:
            if not (dest / STAMP).exists():  # not another build that finished first
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def _system_python() -> str:
    """The distribution's python3 where there is one (the jail shows /usr anyway), else the
    interpreter this service runs on."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    return getattr(sys, "_base_executable", sys.executable)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m toolfleet.sandbox.runtime", description="the sandbox's Python runtime"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("build", help="build the runtime (idempotent)")
    make.add_argument("--dest", type=Path, help="where (default: the hashed default directory)")
    make.add_argument("--python", help="the base interpreter (default: /usr/bin/python3)")
    sub.add_parser("path", help="print the default runtime directory")
    args = parser.parse_args(argv)
    if args.command == "path":
        print(default_dir())
        return 0
    print(build(args.dest or default_dir(), args.python))
    return 0


if __name__ == "__main__":
    sys.exit(main())
