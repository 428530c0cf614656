"""The exec shim (``exec_shim.c``): a static C program the supervisor spawns to start a
program that is not Python — it confines itself as a forked child would and execs the
program, so that starting one costs a ``posix_spawn`` (vfork) instead of a ``fork`` of the
supervisor's ~37 MB interpreter (docs/sandbox.md).

The binary sits next to its source in this package (which the jail shows at
``/opt/toolfleet/lib/toolfleet/box``), named after a hash of the source: a binary built
from another version of it is never run. Built by ``make runtime`` and the sandbox image
(``python -m toolfleet.box.shim build``); where it is missing (no C compiler) the supervisor
forks as before.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "exec_shim.c")


def binary_path() -> str | None:
    """Where this version of the shim is (or would be) built; None without its source."""
    try:
        with open(SOURCE, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
    except OSError:
        return None
    return os.path.join(os.path.dirname(SOURCE), f"exec-shim-{digest}")


def find() -> str | None:
    """The built shim of this source, if it can run."""
    path = binary_path()
    return path if path is not None and os.access(path, os.X_OK) else None


def build(cc: str | None = None) -> str:
    """Compile the shim (static, so that it needs no loader); nothing to do if it is built.
    Older builds are removed."""
    path = binary_path()
    if path is None:
        raise SystemExit(f"no source at {SOURCE}")
    if os.access(path, os.X_OK):
        return path
    cc = cc or os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise SystemExit("building the exec shim needs a C compiler (gcc)")
    work = f"{path}.building-{os.getpid()}"
    try:
        subprocess.run([cc, "-O2", "-static", "-Wall", "-o", work, SOURCE], check=True)
        os.chmod(work, 0o755)
        os.rename(work, path)
    finally:
        if os.path.exists(work):
            os.unlink(work)
    here = os.path.dirname(path)
    for name in os.listdir(here):
        if name.startswith("exec-shim-") and os.path.join(here, name) != path:
            os.unlink(os.path.join(here, name))
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["build"]:
        print(build())
    elif args[:1] == ["path"]:
        print(binary_path())
    else:
        print("usage: python -m toolfleet.box.shim build|path", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
