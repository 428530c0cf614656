"""The exec shim (``exec_shim.c``): a static C program the supervisor spawns to start a
program that is not Python — it confines itself as a forked child would and execs the
program, so that starting one costs a ``posix_spawn`` (vfork) instead of a ``fork`` of the
supervisor's ~37 MB interpreter (docs/sandbox.md).

The same source built as a shared library, ``libconfine``, confines the processes the fork
server clones from the template (kernels, Python programs) in one call, before their Python
runs anything else; with it comes the fork server's loop (``fork_loop.c``). Done in Python,
the same steps cost a forked child ~250 page copies (every object the interpreter touches
is on a page shared with the template): about 2 ms of CPU per process on a virtual machine,
more than the fork itself (docs/sandbox.md).

Both sit next to their source in this package (which the jail shows at
``/opt/toolfleet/lib/toolfleet/box``), named after a hash of the source: a build of another
version of it is never used. Built by ``make runtime`` and the sandbox image
(``python -m toolfleet.box.shim build``); where they are missing (no C compiler) the
supervisor forks and confines in Python as before.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "exec_shim.c")
FORK_LOOP = os.path.join(HERE, "fork_loop.c")  # libconfine only: the fork server's loop


PREFIXES = ("exec-shim-", "libconfine-")
FLAGS = {
    "exec-shim-": ["-static", SOURCE],
    "libconfine-": ["-shared", "-fPIC", "-DTF_LIBRARY", SOURCE, FORK_LOOP],
}


def binary_path(prefix: str = "exec-shim-") -> str | None:
    """Where this version of the shim (or, with ``prefix="libconfine-"``, of the library)
    is (or would be) built; None without its source."""
    digest = hashlib.sha256()
    try:
        for source in (SOURCE, FORK_LOOP):
            with open(source, "rb") as f:
                digest.update(f.read())
    except OSError:
        return None
    suffix = ".so" if prefix == "libconfine-" else ""
    return os.path.join(HERE, f"{prefix}{digest.hexdigest()[:12]}{suffix}")


def find() -> str | None:
    """The built shim of this source, if it can run."""
    path = binary_path()
    return path if path is not None and os.access(path, os.X_OK) else None


def find_library() -> str | None:
    """The built libconfine of this source, if there is one."""
    path = binary_path("libconfine-")
    return path if path is not None and os.access(path, os.R_OK) else None


def build(cc: str | None = None) -> str:
    """Compile the shim (static, so that it needs no loader) and the library; nothing to do
    for what is built. Older builds are removed. Returns the shim's path."""
    import subprocess  # only to build: the zygote, which imports this module, never does

    paths = [binary_path(prefix) for prefix in PREFIXES]
    for prefix, path in zip(PREFIXES, paths, strict=True):
        if path is None:
            raise SystemExit(f"no source at {SOURCE}")
        if os.access(path, os.R_OK):
            continue
        cc = cc or os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
        if not cc:
            raise SystemExit("building the exec shim needs a C compiler (gcc)")
        work = f"{path}.building-{os.getpid()}"
        try:
            subprocess.run([cc, "-O2", "-Wall", *FLAGS[prefix], "-o", work], check=True)
            os.chmod(work, 0o755)
            os.rename(work, path)
        finally:
            if os.path.exists(work):
                os.unlink(work)
    for name in os.listdir(HERE):
        if name.startswith(PREFIXES) and os.path.join(HERE, name) not in paths:
            os.unlink(os.path.join(HERE, name))
    return str(paths[0])


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
